package interop

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The chaos test's generator: a seed becomes a schedule of faults, each
// with its start (from the beginning of the fault phase), its target and
// its duration. The whole schedule is drawn before the run, so a seed
// replays a run exactly: the same faults, in the same order, on the same
// targets, for the same durations (the timing of the processes varies).

// faultKind is one kind of fault the nemesis can play.
type faultKind int

const (
	nsqdRestart faultKind = iota // SIGTERM, then the same data directory and address
	nsqdStop                     // SIGSTOP, then SIGCONT
	linkCut                      // the namespace's end of the veth down, then up
	linkLossy                    // 30% of the namespace's outgoing packets lost, the rest 200 ms late
	lookupdStop                  // SIGSTOP, then SIGCONT
	lookupdKill                  // SIGKILL, then a restart on the same ports
	tombstone                    // POST /topic/tombstone on one lookupd
	topicCreate                  // a topic (with a channel) created on one nsqd
	topicDelete                  // one of those topics deleted from its nsqd
	numFaultKinds
)

var faultKindNames = [numFaultKinds]string{
	"nsqd-restart", "nsqd-stop", "link-cut", "link-lossy",
	"lookupd-stop", "lookupd-kill", "tombstone", "topic-create", "topic-delete",
}

func (k faultKind) String() string { return faultKindNames[k] }

// onLookupd reports whether the kind's target is a lookupd (else an nsqd).
func (k faultKind) onLookupd() bool { return k == lookupdStop || k == lookupdKill }

// The cluster's shape and the fixed names the generator uses.
const (
	chaosNSQDs    = 4
	chaosLookupds = 2
	// chaosTopic carries the numbered messages; it is never deleted.
	chaosTopic   = "chaos"
	chaosChannel = "c"
	// keepaliveTopic is where chatter toggles keepaliveChannel, so that a
	// live nsqd sends its lookupds a command more often than the read
	// timeout (nsqd's own PING comes every 15 s).
	keepaliveTopic   = "keepalive"
	keepaliveChannel = "k"
	// dynTopics: the topics the schedule creates and deletes, dyn0 to
	// dyn5, each with channel dynChannel and never a message.
	dynTopics  = 6
	dynChannel = "d"
)

// Duration ranges of each kind (inclusive, in tenths of a second), and how
// long a topic must exist before it is deleted: nsqd v1.3.0 sends its
// REGISTER and UNREGISTER from one goroutine each, which race for its
// lookup loop, so a topic created and deleted within a blocked loop's
// backlog could be registered last.
var faultDurations = [numFaultKinds][2]time.Duration{
	nsqdRestart: {0, 5 * time.Second}, // time down between exit and start
	nsqdStop:    {1 * time.Second, 30 * time.Second},
	linkCut:     {2 * time.Second, 40 * time.Second},
	linkLossy:   {2 * time.Second, 30 * time.Second},
	lookupdStop: {1 * time.Second, 30 * time.Second},
	lookupdKill: {0, 10 * time.Second}, // time down before the restart
}

const (
	minTopicLife = 10 * time.Second
	// maxConcurrent bounds the faults in progress at once, so that some
	// of the cluster is always whole.
	maxConcurrent = 4
	// targetGuard separates two faults on one target.
	targetGuard = 500 * time.Millisecond
	// restartTime: what the generator expects a restart to take beyond
	// its time down (exit, start, ready); the nemesis waits for the real
	// one before it touches the target again.
	restartTime = 2 * time.Second
)

// fault is one step of a schedule.
type fault struct {
	ID   int           // 1-based position in the schedule
	At   time.Duration // planned start, from the start of the fault phase
	Kind faultKind
	// NSQD is the target nsqd (0-based), or the tombstoned one; Lookupd
	// the target lookupd (0-based) of a lookupd fault or a tombstone.
	NSQD, Lookupd int
	// Dur: how long the fault lasts before it heals; a tombstone's is
	// the lookupds' --tombstone-lifetime, topic operations have none.
	Dur   time.Duration
	Topic string // tombstone, topic-create, topic-delete
}

// target names what the fault acts on.
func (f fault) target() string {
	switch f.Kind {
	case lookupdStop, lookupdKill:
		return fmt.Sprintf("lookupd%d", f.Lookupd+1)
	case tombstone:
		return fmt.Sprintf("lookupd%d: nsqd%d in %s", f.Lookupd+1, f.NSQD+1, f.Topic)
	case topicCreate, topicDelete:
		return fmt.Sprintf("nsqd%d: %s", f.NSQD+1, f.Topic)
	}
	return fmt.Sprintf("nsqd%d", f.NSQD+1)
}

func (f fault) String() string {
	s := fmt.Sprintf("#%d %s %s", f.ID, f.Kind, f.target())
	if f.Dur > 0 || f.Kind == nsqdRestart || f.Kind == lookupdKill {
		what := "for"
		if f.Kind == nsqdRestart || f.Kind == lookupdKill {
			what = "down"
		}
		s += fmt.Sprintf(" %s %.1fs", what, f.Dur.Seconds())
	}
	return s
}

// goString writes f as the Go literal a regression case keeps.
func (f fault) goString() string {
	return fmt.Sprintf("{At: %s, Kind: %s, NSQD: %d, Lookupd: %d, Dur: %s, Topic: %q}",
		goDuration(f.At), goKindNames[f.Kind], f.NSQD, f.Lookupd, goDuration(f.Dur), f.Topic)
}

var goKindNames = [numFaultKinds]string{
	"nsqdRestart", "nsqdStop", "linkCut", "linkLossy",
	"lookupdStop", "lookupdKill", "tombstone", "topicCreate", "topicDelete",
}

func goDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d * time.Second", d/time.Second)
	}
	return fmt.Sprintf("%d * time.Millisecond", d/time.Millisecond)
}

// scheduleGoString writes faults as a Go slice literal.
func scheduleGoString(faults []fault) string {
	var b strings.Builder
	b.WriteString("[]fault{\n")
	for _, f := range faults {
		b.WriteString("\t" + f.goString() + ",\n")
	}
	b.WriteString("}")
	return b.String()
}

// genOptions shape a generated schedule.
type genOptions struct {
	seed      uint64
	faults    int
	meanGap   time.Duration // mean time between two fault starts
	tombstone time.Duration // the lookupds' --tombstone-lifetime
}

// kindWeights: how often each kind is drawn, when it is possible.
var kindWeights = [numFaultKinds]int{
	nsqdRestart: 3, nsqdStop: 3, linkCut: 3, linkLossy: 2,
	lookupdStop: 2, lookupdKill: 2, tombstone: 2, topicCreate: 2, topicDelete: 2,
}

// genState is what the generator knows of the cluster at a planned time.
type genState struct {
	busyNSQD    [chaosNSQDs]time.Duration // target free from then on
	busyLookupd [chaosLookupds]time.Duration
	ends        []time.Duration // planned ends of the faults in progress
	// dyn[i][topic]: when that dynamic topic was created on nsqd i.
	dyn [chaosNSQDs]map[string]time.Duration
	// reserved[i][topic]: a tombstone there lasts until then; the topic
	// is not deleted before.
	reserved [chaosNSQDs]map[string]time.Duration
}

// generate draws a schedule of o.faults faults from o.seed.
func generate(o genOptions) []fault {
	r := rand.New(rand.NewPCG(o.seed, 0x6368616f73)) // "chaos"
	var st genState
	for i := range chaosNSQDs {
		st.dyn[i] = map[string]time.Duration{}
		st.reserved[i] = map[string]time.Duration{}
	}
	var out []fault
	now := time.Duration(0)
	for len(out) < o.faults {
		now += tenths(r, 0, 2*o.meanGap)
		// in progress at now
		st.ends = slices.DeleteFunc(st.ends, func(e time.Duration) bool { return e <= now })
		if len(st.ends) >= maxConcurrent {
			now = slices.Min(st.ends)
			continue
		}
		f, ok := st.draw(r, now, o)
		if !ok {
			now += time.Second // every target busy: wait for one
			continue
		}
		f.ID, f.At = len(out)+1, now
		out = append(out, f)
	}
	return out
}

// tenths draws a duration in [lo, hi], in whole tenths of a second.
func tenths(r *rand.Rand, lo, hi time.Duration) time.Duration {
	n := int64((hi - lo) / (100 * time.Millisecond))
	return lo + time.Duration(r.Int64N(n+1))*100*time.Millisecond
}

// draw picks a possible fault at now and records it in st.
func (st *genState) draw(r *rand.Rand, now time.Duration, o genOptions) (fault, bool) {
	freeNSQDs := func() []int {
		var out []int
		for i, b := range st.busyNSQD {
			if b <= now {
				out = append(out, i)
			}
		}
		return out
	}()
	var freeLookupds []int
	for j, b := range st.busyLookupd {
		if b <= now {
			freeLookupds = append(freeLookupds, j)
		}
	}
	// what each nsqd could have deleted: dynamic topics old enough and not
	// under a tombstone
	deletable := func(i int) []string {
		var out []string
		for topic, born := range st.dyn[i] {
			if now-born >= minTopicLife && st.reserved[i][topic] <= now {
				out = append(out, topic)
			}
		}
		slices.Sort(out)
		return out
	}
	var possible [numFaultKinds]bool
	for k := range numFaultKinds {
		switch k {
		case lookupdStop, lookupdKill:
			possible[k] = len(freeLookupds) > 0
		case tombstone:
			possible[k] = len(freeLookupds) > 0 && len(freeNSQDs) > 0
		case topicCreate:
			possible[k] = slices.ContainsFunc(freeNSQDs, func(i int) bool { return len(st.dyn[i]) < dynTopics })
		case topicDelete:
			possible[k] = slices.ContainsFunc(freeNSQDs, func(i int) bool { return len(deletable(i)) > 0 })
		default:
			possible[k] = len(freeNSQDs) > 0
		}
	}
	total := 0
	for k := range numFaultKinds {
		if possible[k] {
			total += kindWeights[k]
		}
	}
	if total == 0 {
		return fault{}, false
	}
	n := r.IntN(total)
	var kind faultKind
	for k := range numFaultKinds {
		if !possible[k] {
			continue
		}
		if n < kindWeights[k] {
			kind = k
			break
		}
		n -= kindWeights[k]
	}

	f := fault{Kind: kind}
	pick := func(from []int) int { return from[r.IntN(len(from))] }
	switch kind {
	case lookupdStop, lookupdKill:
		f.Lookupd = pick(freeLookupds)
		f.Dur = tenths(r, faultDurations[kind][0], faultDurations[kind][1])
		end := now + f.Dur
		if kind == lookupdKill {
			end += restartTime
		}
		st.busyLookupd[f.Lookupd] = end + targetGuard
		st.ends = append(st.ends, end)
	case tombstone:
		f.Lookupd, f.NSQD = pick(freeLookupds), pick(freeNSQDs)
		topics := []string{chaosTopic, keepaliveTopic}
		for topic := range st.dyn[f.NSQD] {
			topics = append(topics, topic)
		}
		slices.Sort(topics[2:])
		f.Topic = topics[r.IntN(len(topics))]
		f.Dur = o.tombstone
		st.reserved[f.NSQD][f.Topic] = now + f.Dur + targetGuard
		st.busyNSQD[f.NSQD] = now + targetGuard // the nemesis holds both while it tombstones
		st.busyLookupd[f.Lookupd] = now + targetGuard
	case topicCreate:
		f.NSQD = pick(slices.DeleteFunc(freeNSQDs, func(i int) bool { return len(st.dyn[i]) >= dynTopics }))
		var names []string
		for k := range dynTopics {
			name := fmt.Sprintf("dyn%d", k)
			if _, ok := st.dyn[f.NSQD][name]; !ok {
				names = append(names, name)
			}
		}
		f.Topic = names[r.IntN(len(names))]
		st.dyn[f.NSQD][f.Topic] = now
		st.busyNSQD[f.NSQD] = now + targetGuard
	case topicDelete:
		f.NSQD = pick(slices.DeleteFunc(freeNSQDs, func(i int) bool { return len(deletable(i)) == 0 }))
		d := deletable(f.NSQD)
		f.Topic = d[r.IntN(len(d))]
		delete(st.dyn[f.NSQD], f.Topic)
		st.busyNSQD[f.NSQD] = now + targetGuard
	default:
		f.NSQD = pick(freeNSQDs)
		f.Dur = tenths(r, faultDurations[kind][0], faultDurations[kind][1])
		end := now + f.Dur
		if kind == nsqdRestart {
			end += restartTime
		}
		st.busyNSQD[f.NSQD] = end + targetGuard
		st.ends = append(st.ends, end)
	}
	return f, true
}

// TestChaosSchedule: a seed gives the same schedule every time, and every
// schedule keeps the generator's rules: durations in their ranges, one
// fault at a time per target, at most maxConcurrent in progress, a topic
// deleted only where it was created at least minTopicLife before and no
// tombstone holds it.
func TestChaosSchedule(t *testing.T) {
	t.Parallel()
	o := genOptions{seed: 1, faults: 300, meanGap: 3500 * time.Millisecond, tombstone: 15 * time.Second}
	a, b := generate(o), generate(o)
	if !slices.Equal(a, b) {
		t.Fatal("one seed, two schedules")
	}
	o.seed = 2
	if slices.Equal(a, generate(o)) {
		t.Fatal("two seeds, one schedule")
	}
	for seed := range uint64(50) {
		o.seed = seed
		s := generate(o)
		if len(s) != o.faults {
			t.Fatalf("seed %d: %d faults, want %d", seed, len(s), o.faults)
		}
		checkSchedule(t, seed, s, o)
	}
}

func checkSchedule(t *testing.T, seed uint64, s []fault, o genOptions) {
	t.Helper()
	type span struct{ from, to time.Duration }
	var kinds [numFaultKinds]int
	busy := map[string][]span{}
	var timed []span
	created := map[string]time.Duration{} // "nsqdN topic" -> creation
	var tombs []fault
	for n, f := range s {
		kinds[f.Kind]++
		if f.ID != n+1 || (n > 0 && f.At < s[n-1].At) {
			t.Fatalf("seed %d: fault %d is %v at %s: out of order", seed, n, f, f.At)
		}
		if r := faultDurations[f.Kind]; f.timed() && (f.Dur < r[0] || f.Dur > r[1]) {
			t.Errorf("seed %d: %v: duration out of %v", seed, f, r)
		}
		end := f.At + f.Dur
		if f.Kind == nsqdRestart || f.Kind == lookupdKill {
			end += restartTime
		}
		var targets []string
		switch {
		case f.Kind.onLookupd():
			targets = []string{fmt.Sprint("l", f.Lookupd)}
		case f.Kind == tombstone:
			targets, end = []string{fmt.Sprint("l", f.Lookupd), fmt.Sprint("n", f.NSQD)}, f.At
		default:
			targets = []string{fmt.Sprint("n", f.NSQD)}
		}
		for _, tg := range targets {
			for _, sp := range busy[tg] {
				if f.At < sp.to && sp.from < end || f.At == sp.from {
					t.Errorf("seed %d: %v overlaps another fault on %s", seed, f, tg)
				}
			}
			busy[tg] = append(busy[tg], span{f.At, end})
		}
		if f.timed() {
			inProgress := 0
			for _, sp := range timed {
				if sp.from <= f.At && f.At < sp.to {
					inProgress++
				}
			}
			if inProgress >= maxConcurrent {
				t.Errorf("seed %d: %v starts with %d faults in progress", seed, f, inProgress)
			}
			timed = append(timed, span{f.At, end})
		}
		key := fmt.Sprint(f.NSQD, " ", f.Topic)
		switch f.Kind {
		case topicCreate:
			if _, ok := created[key]; ok {
				t.Errorf("seed %d: %v: the topic is there already", seed, f)
			}
			created[key] = f.At
		case topicDelete:
			born, ok := created[key]
			if !ok || f.At-born < minTopicLife {
				t.Errorf("seed %d: %v: not created, or less than %s before", seed, f, minTopicLife)
			}
			for _, tb := range tombs {
				if tb.NSQD == f.NSQD && tb.Topic == f.Topic && f.At < tb.At+tb.Dur {
					t.Errorf("seed %d: %v while %v holds it", seed, f, tb)
				}
			}
			delete(created, key)
		case tombstone:
			if _, ok := created[key]; !ok && f.Topic != chaosTopic && f.Topic != keepaliveTopic {
				t.Errorf("seed %d: %v: nsqd has no such topic", seed, f)
			}
			if f.Dur != o.tombstone {
				t.Errorf("seed %d: %v: want the tombstone lifetime %s", seed, f, o.tombstone)
			}
			tombs = append(tombs, f)
		}
	}
	for kind, n := range kinds {
		if n == 0 {
			t.Errorf("seed %d: no %s in %d faults", seed, faultKind(kind), len(s))
		}
	}
}
