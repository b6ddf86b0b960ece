package interop

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// TestChaos: a seeded schedule of random, overlapping faults against a
// real cluster (chaos_cluster_test.go), played by the nemesis
// (chaos_nemesis_test.go) while the checker (chaos_check_test.go) checks
// the lookupds against the truth after every fault; at the end every
// lookupd agrees with the truth, every message nsqd acknowledged has been
// consumed, and each lookupd's memory, goroutines and descriptors are back
// near their start. A failure prints the seed, the fault log, and each
// lookupd's answers next to the truth.
//
//	go test -run '^TestChaos$' -v -args -chaos.seed=7 -chaos.faults=300 -chaos.summary=chaos.txt
var (
	chaosSeed     = flag.Uint64("chaos.seed", 1, "seed of TestChaos's schedule (0: from the clock)")
	chaosFaults   = flag.Int("chaos.faults", 30, "faults in TestChaos's schedule")
	chaosGap      = flag.Duration("chaos.gap", 2500*time.Millisecond, "mean time between two fault starts")
	chaosSummary  = flag.String("chaos.summary", "", "write TestChaos's summary table to this file")
	chaosLogLevel = flag.String("chaos.lookupd-log-level", "warn", "the lookupds' --log-level (info logs every request)")
)

func TestChaos(t *testing.T) {
	t.Parallel()
	seed := *chaosSeed
	if seed == 0 {
		seed = rand.Uint64() >> 1
	}
	schedule := generate(genOptions{seed: seed, faults: *chaosFaults, meanGap: *chaosGap, tombstone: defaultTimings.tombstone})
	// make test's summary repeats this line if the test fails
	t.Logf("chaos: seed %d, %d faults; replay: make chaos SEED=%d FAULTS=%d", seed, len(schedule), seed, len(schedule))
	res := runChaos(t, seed, schedule, defaultTimings, nil)
	if *chaosSummary != "" {
		if err := os.WriteFile(*chaosSummary, []byte(res.summary()), 0o644); err != nil {
			t.Error(err)
		}
	}
	res.report(t)
}

// chaosRegressions are the schedules that once broke a property; each
// runs on every test run (TestChaosRegressions). The daemon has broken
// none yet; this one broke the checker: an nsqd cut while a lookupd was
// frozen stayed in that lookupd's answers past the bound counted from the
// cut, though the lookupd could drop no one while frozen. The bound now
// runs from the lookupd's return too.
var chaosRegressions = []struct {
	name     string
	seed     uint64
	schedule []fault
}{
	{"nsqd cut while a lookupd is frozen", 0, []fault{
		{At: time.Second, Kind: lookupdStop, Lookupd: 0, Dur: 10 * time.Second},
		{At: 2 * time.Second, Kind: linkCut, NSQD: 0, Dur: 15 * time.Second},
	}},
}

// TestChaosCatches: the checker, on a real cluster, reports a lookupd
// that keeps a dead nsqd: its lookupds run without a read timeout, and an
// nsqd's link is cut for 15 s.
func TestChaosCatches(t *testing.T) {
	t.Parallel()
	schedule := []fault{{ID: 1, At: time.Second, Kind: linkCut, NSQD: 0, Dur: 15 * time.Second}}
	res := runChaos(t, 0, schedule, defaultTimings, []string{"--producer-read-timeout=0"})
	found := slices.ContainsFunc(res.k.violations, func(v violation) bool {
		return strings.Contains(v.what, "still lists nsqd1") && strings.Contains(v.dump, "link-cut nsqd1")
	})
	if !found {
		t.Errorf("no violation says a lookupd still lists the cut nsqd1:\n%s", res.summary())
	}
}

func TestChaosRegressions(t *testing.T) {
	for _, rc := range chaosRegressions {
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			schedule := slices.Clone(rc.schedule)
			for n := range schedule {
				schedule[n].ID = n + 1
			}
			runChaos(t, rc.seed, schedule, defaultTimings, nil).report(t)
		})
	}
}

// chaosResult is what a run found.
type chaosResult struct {
	seed     uint64
	schedule []fault
	tm       chaosTimings
	k        *checker
	h        *history
	wall     time.Duration // the fault phase and the end
	// messages
	attempts, acked, consumed, lost, dups, unacked int
	lostSample                                     []string
	drain                                          time.Duration
	// resources of each lookupd at the start and at the end
	start, end [chaosLookupds]resources
	restarts   [chaosLookupds]int
	resBad     []string
	endBad     []string // the end's disagreements, if it never agreed
}

// runChaos runs schedule on a new cluster, whose lookupds get
// lookupdArgs after their usual flags.
func runChaos(t *testing.T, seed uint64, schedule []fault, tm chaosTimings, lookupdArgs []string) *chaosResult {
	t.Helper()
	c := startChaosCluster(t, tm, append([]string{"--log-level=" + *chaosLogLevel}, lookupdArgs...))
	res := &chaosResult{seed: seed, schedule: schedule, tm: tm}
	B := tm.convergenceBound()

	// the cluster as started: every lookupd lists every nsqd
	h := newHistory(time.Now())
	k := newChecker(c, h, tm, seed)
	res.k, res.h = k, h
	var diffs []string
	for end := time.Now().Add(B + 10*time.Second); ; time.Sleep(tm.sample) {
		if diffs = k.agreeAll(k.takeSample()); len(diffs) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the cluster as started never agreed: %s", strings.Join(diffs, "; "))
		}
	}
	for j, l := range c.lookupds {
		r, err := sampleResources(l)
		if err != nil {
			t.Fatalf("lookupd%d: %v", j+1, err)
		}
		res.start[j] = r
	}

	// the faults, checked all along
	began := time.Now()
	h = newHistory(began)
	k = newChecker(c, h, tm, seed)
	res.k, res.h = k, h
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.run(stop)
	}()
	go func() { // a line a minute, for long runs (-v shows it as it comes)
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			st := h.snapshot()
			k.mu.Lock()
			nv := len(k.violations)
			k.mu.Unlock()
			started := 0
			for _, e := range h.eventsSince(0) {
				if !e.heal && e.note == "" {
					started++
				}
			}
			t.Logf("chaos: %.0fs: %d of %d faults begun, %d in progress, %d violations so far", time.Since(began).Seconds(), started, len(schedule), len(st.active), nv)
		}
	}()
	newNemesis(c, h, seed).run(schedule)
	close(stop)
	<-done

	// the end: every lookupd agrees within the bound of the last heal
	lastHeal := began
	for _, e := range h.eventsSince(0) {
		lastHeal = laterOf(lastHeal, e.at)
	}
	deadline := lastHeal.Add(B)
	for {
		s := k.takeSample()
		k.check(s)
		k.mu.Lock()
		pending := len(k.pending)
		for _, p := range k.pending {
			deadline = laterOf(deadline, p.deadline)
		}
		k.mu.Unlock()
		diffs = k.agreeAll(s)
		if pending == 0 && len(diffs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			res.endBad = diffs
			k.mu.Lock()
			k.violate(s, "the end: the lookupds do not agree with the truth %s after the last heal: %s", B, strings.Join(diffs, "; "))
			k.mu.Unlock()
			break
		}
		time.Sleep(tm.sample)
	}

	// every acknowledged message consumed, after a drain
	for k := len(c.stops) - 1; k >= chaosNSQDs; k-- { // the publishers; chatter goes on
		c.stops[k]()
	}
	c.stops = c.stops[:chaosNSQDs]
	drainStart := time.Now()
	for drainEnd := drainStart.Add(chaosDrain); ; time.Sleep(100 * time.Millisecond) {
		c.msgs.mu.Lock()
		missing := 0
		for b := range c.msgs.acked {
			if c.msgs.consumed[b] == 0 {
				missing++
			}
		}
		c.msgs.mu.Unlock()
		if missing == 0 || time.Now().After(drainEnd) {
			break
		}
	}
	res.drain = time.Since(drainStart)
	c.msgs.mu.Lock()
	res.attempts, res.acked = c.msgs.attempts, len(c.msgs.acked)
	for b, n := range c.msgs.consumed {
		res.consumed++
		res.dups += n - 1
		if !c.msgs.acked[b] {
			res.unacked++
		}
	}
	for b := range c.msgs.acked {
		if c.msgs.consumed[b] == 0 {
			res.lost++
			res.lostSample = append(res.lostSample, b)
		}
	}
	c.msgs.mu.Unlock()
	slices.Sort(res.lostSample)

	// each lookupd's resources back near their start
	chaosHTTP.CloseIdleConnections()
	chaosPostClient.CloseIdleConnections()
	httpClient.CloseIdleConnections()
	for _, e := range h.eventsSince(0) {
		if e.heal && e.f.Kind == lookupdKill {
			res.restarts[e.f.Lookupd]++
		}
	}
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		res.resBad = nil
		for j, l := range c.lookupds {
			r, err := sampleResources(l)
			if err != nil {
				res.resBad = append(res.resBad, fmt.Sprintf("lookupd%d: %v", j+1, err))
				continue
			}
			res.end[j] = r
			res.resBad = append(res.resBad, res.start[j].regressions(r, fmt.Sprintf("lookupd%d", j+1))...)
		}
		if len(res.resBad) == 0 || time.Now().After(end) {
			break
		}
	}
	c.stopConsumer()
	res.wall = time.Since(began)
	return res
}

// chaosDrain bounds the wait for the last messages: the consumer's
// message timeout (10 s) twice over, and a convergence bound for an nsqd
// to be found again.
const chaosDrain = 2*10*time.Second + 25*time.Second

// resources are a lookupd's footprint: RSS and descriptors from /proc,
// goroutines and heap from /metrics.
type resources struct {
	rssKiB     int64
	fds        int
	goroutines int
	heapBytes  int64
}

// The margins within which a lookupd's footprint must come back. The
// goroutines and descriptors of its steady state are a few per nsqd
// connection and per HTTP client connection: the same cluster, the same
// clients, the same count, give or take connections being replaced at
// that moment. RSS grows with the heap's high-water mark, which a run of
// faults raises a little (a burst of reconnections).
const (
	goroutineMargin = 10
	fdMargin        = 10
	rssMarginKiB    = 16 << 10
)

func (r resources) regressions(end resources, name string) []string {
	var out []string
	if end.goroutines > r.goroutines+goroutineMargin {
		out = append(out, fmt.Sprintf("%s: %d goroutines at the end, %d at the start (margin %d)", name, end.goroutines, r.goroutines, goroutineMargin))
	}
	if end.fds > r.fds+fdMargin {
		out = append(out, fmt.Sprintf("%s: %d open descriptors at the end, %d at the start (margin %d)", name, end.fds, r.fds, fdMargin))
	}
	if end.rssKiB > r.rssKiB+rssMarginKiB {
		out = append(out, fmt.Sprintf("%s: RSS %.1f MiB at the end, %.1f MiB at the start (margin %d MiB)", name, mib(end.rssKiB), mib(r.rssKiB), rssMarginKiB>>10))
	}
	return out
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func sampleResources(l *chaosLookupd) (resources, error) {
	var r resources
	pid := l.getPID()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return r, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			r.rssKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return r, err
	}
	r.fds = len(fds)
	resp, err := chaosHTTP.Get(l.d.url("/metrics"))
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_goroutines":
			r.goroutines, _ = strconv.Atoi(value)
		case "go_memstats_heap_inuse_bytes":
			f, _ := strconv.ParseFloat(value, 64)
			r.heapBytes = int64(f)
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if r.goroutines == 0 {
		return r, fmt.Errorf("no go_goroutines in /metrics")
	}
	return r, nil
}

// violations counts the broken properties: the checker's, the nemesis's
// failures, lost messages (one), and each resource that did not return.
func (res *chaosResult) violations() int {
	n := len(res.k.violations) + len(res.h.failures) + len(res.resBad)
	if res.lost > 0 {
		n++
	}
	return n
}

// allConverged returns every convergence time of the run.
func (res *chaosResult) allConverged() []time.Duration {
	var all []time.Duration
	for _, d := range res.k.converged {
		all = append(all, d...)
	}
	return all
}

// quantiles returns the median, 99th percentile and maximum of ds, in
// seconds (nearest rank); zeros when ds is empty.
func quantiles(ds []time.Duration) (p50, p99, maximum float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		r := int(math.Ceil(p / 100 * float64(len(s))))
		return s[min(max(r, 1), len(s))-1]
	}
	return rank(50).Seconds(), rank(99).Seconds(), s[len(s)-1].Seconds()
}

// summary is the table of the run and, last, its one-line result.
func (res *chaosResult) summary() string {
	var b strings.Builder
	k, tm := res.k, res.tm
	fmt.Fprintf(&b, "chaos run: seed %d, %d faults, mean gap %s, %.0fs of faults and checks\n", res.seed, len(res.schedule), *chaosGap, res.wall.Seconds())
	fmt.Fprintf(&b, "cluster: 2 lookupds (--producer-read-timeout %s, --tombstone-lifetime %s), 4 nsqd v1.3.0 (--mem-queue-size=0) in network namespaces, 1 go-nsq consumer on both lookupds\n", tm.readTimeout, tm.tombstone)
	fmt.Fprintf(&b, "bounds: converge within %s of a heal (read timeout %s + nsqd heartbeat %s + 5s); cut or frozen nsqd gone within %s\n",
		tm.convergenceBound(), tm.readTimeout, nsqdHeartbeat, tm.disappearBound())
	fmt.Fprintf(&b, "checker: %d samples, %d answers from lookupds under no fault that failed or came late (>1s)\n\n", k.samples, k.failedAsks)

	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "fault\tcount\thealed\tconverged\tsuperseded\tlate\tp50 s\tp99 s\tmax s\tgone p50 s\tgone max s\t")
	var count [numFaultKinds]int
	for _, f := range res.schedule {
		count[f.Kind]++
	}
	gone := map[faultKind][]time.Duration{}
	for id, d := range k.gone {
		gone[k.goneKind[id]] = append(gone[k.goneKind[id]], d)
	}
	var tot [6]int
	for kind := range numFaultKinds {
		p50, p99, mx := quantiles(k.converged[kind])
		g50, _, gmx := quantiles(gone[kind])
		goneCols := "-\t-"
		if kind == linkCut || kind == nsqdStop {
			goneCols = fmt.Sprintf("%.1f\t%.1f", g50, gmx)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%s\t\n", kind, count[kind], k.healed[kind], len(k.converged[kind]), k.superseded[kind], k.late[kind], p50, p99, mx, goneCols)
		for n, v := range []int{count[kind], k.healed[kind], len(k.converged[kind]), k.superseded[kind], k.late[kind]} {
			tot[n] += v
		}
	}
	p50, p99, mx := quantiles(res.allConverged())
	fmt.Fprintf(w, "all\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t\t\t\n", tot[0], tot[1], tot[2], tot[3], tot[4], p50, p99, mx)
	w.Flush()
	fmt.Fprintln(&b, "(converged: the lookupds agreed with the truth again, seconds after the heal; superseded: another fault on the same target began first; late: past the bound, a violation; gone: how soon a cut or frozen nsqd left every lookupd, from the fault or the later return of a stopped or dead lookupd)")

	fmt.Fprintf(&b, "\nmessages: %d publish attempts, %d acknowledged, %d distinct consumed, %d lost, %d duplicate deliveries, %d consumed though not acknowledged (drain %.1fs)\n",
		res.attempts, res.acked, res.consumed, res.lost, res.dups, res.unacked, res.drain.Seconds())
	if res.lost > 0 {
		fmt.Fprintf(&b, "lost, first ones: %s\n", strings.Join(res.lostSample[:min(20, len(res.lostSample))], " "))
	}

	fmt.Fprintln(&b)
	w = tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "lookupd\trestarts\tRSS MiB start\tend\theap MiB start\tend\tgoroutines start\tend\tfds start\tend\t")
	for j := range res.start {
		s, e := res.start[j], res.end[j]
		fmt.Fprintf(w, "lookupd%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t\n", j+1, res.restarts[j],
			mib(s.rssKiB), mib(e.rssKiB), float64(s.heapBytes)/(1<<20), float64(e.heapBytes)/(1<<20), s.goroutines, e.goroutines, s.fds, e.fds)
	}
	w.Flush()
	fmt.Fprintf(&b, "(the end must be within %d goroutines, %d descriptors and %d MiB of RSS of the start; a restarted lookupd is compared with the first one's start)\n",
		goroutineMargin, fdMargin, rssMarginKiB>>10)

	fmt.Fprintf(&b, "\nviolations: %d\n", res.violations())
	for _, v := range k.violations {
		fmt.Fprintf(&b, "  %7.1fs  %s\n", v.at.Seconds(), v.what)
	}
	for _, f := range res.h.failures {
		fmt.Fprintf(&b, "  nemesis: %s\n", f)
	}
	if res.lost > 0 {
		fmt.Fprintf(&b, "  %d acknowledged messages never consumed\n", res.lost)
	}
	for _, r := range res.resBad {
		fmt.Fprintf(&b, "  resources: %s\n", r)
	}
	fmt.Fprintf(&b, "chaos: %d faults (seed %d), lost %d of %d messages, %d duplicated, converged p50/p99/max %.1f/%.1f/%.1f s, %d violations\n",
		len(res.schedule), res.seed, res.lost, res.acked, res.dups, p50, p99, mx, res.violations())
	return b.String()
}

// report logs the summary and fails the test on any violation, with the
// seed, the fault log and the answers next to the truth.
func (res *chaosResult) report(t *testing.T) {
	t.Helper()
	t.Logf("fault log:\n%s", res.h.log(res.k.outcome))
	t.Log("\n" + res.summary())
	if res.violations() == 0 {
		return
	}
	t.Errorf("chaos: %d violations with seed %d (%d faults)", res.violations(), res.seed, len(res.schedule))
	for _, v := range res.k.violations {
		if v.dump != "" {
			t.Errorf("at %.1fs: %s\n%s", v.at.Seconds(), v.what, v.dump)
		} else {
			t.Errorf("at %.1fs: %s", v.at.Seconds(), v.what)
		}
	}
	for _, f := range res.h.failures {
		t.Errorf("nemesis: %s", f)
	}
	if res.lost > 0 {
		t.Errorf("%d of %d acknowledged messages never consumed, e.g. %v", res.lost, res.acked, res.lostSample[:min(10, len(res.lostSample))])
	}
	for _, r := range res.resBad {
		t.Errorf("resources: %s", r)
	}
	t.Logf("the schedule, as a regression case:\n%s", scheduleGoString(res.schedule))
}
