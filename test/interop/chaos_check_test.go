package interop

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The chaos test's checker. Every sample reads the truth (each nsqd's own
// /stats: the nsqd that answer, with their topics and channels) and every
// lookupd the nemesis has not stopped or killed (/nodes, /topics, and
// /lookup of every topic either side names), and checks:
//
//   - convergence: after a fault heals, the lookupds agree with the truth
//     about what the fault touched (the nsqd; or, for a lookupd fault,
//     that lookupd about every nsqd not under a fault) within
//     convergenceBound of the last heal among them;
//   - stability: a lookupd and an nsqd that no fault has touched for
//     convergenceBound agree;
//   - disappearance: an nsqd cut off or frozen is gone from every lookupd
//     within disappearBound (counted from the fault, or from the
//     lookupd's own return if it was stopped or dead meanwhile);
//   - tombstones: a tombstoned connection is missing from /lookup of its
//     topic, and flagged in /nodes, for the tombstone's lifetime.
//
// "Agree" about nsqd N: if N is up, /nodes lists it once, with its
// topics (and tombstone flags as the tombstones in force say), /topics
// lists those topics, and /lookup of each lists N (unless tombstoned)
// with at least N's channels; if N is down, no answer lists it. A topic
// or channel that no nsqd has any more may stay listed without producers:
// nsqlookupd v1.3.0 keeps a registration its producers left, and so does
// this daemon. The chatter channel (keepaliveTopic's) is never compared:
// it comes and goes every chatter interval.

// chaosHTTP asks the daemons during the run: a stopped one holds a
// request no longer than this.
var (
	chaosHTTP       = &http.Client{Timeout: time.Second}
	chaosPostClient = &http.Client{Timeout: 2 * time.Second}
	// chaosFaultedHTTP reads the /stats of an nsqd under a fault, which
	// no check uses (only the report): a frozen one must not slow the
	// samples down
	chaosFaultedHTTP = &http.Client{Timeout: 300 * time.Millisecond}
)

// hostTruth is what one nsqd's /stats said.
type hostTruth struct {
	known  bool                // false: a live nsqd did not answer, so nothing is checked about it
	up     bool                // it answered
	topics map[string][]string // topic -> its channels, sorted
	err    string
}

func (ht hostTruth) topicNames() []string {
	var out []string
	for t := range ht.topics {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

func (ht hostTruth) same(o hostTruth) bool {
	if ht.known != o.known || ht.up != o.up || len(ht.topics) != len(o.topics) {
		return false
	}
	for t, ch := range ht.topics {
		if och, ok := o.topics[t]; !ok || (t != keepaliveTopic && !slices.Equal(ch, och)) {
			return false
		}
	}
	return true
}

// lookupdView is one lookupd's answers in a sample.
type lookupdView struct {
	asked   bool // false: stopped or dead, or a fault began or ended on it during the sample
	err     error
	nodes   []nodeInfo
	topics  []string
	lookups map[string]lookupAnswer // topics answered 200
}

// sample is one round of the checker.
type sample struct {
	at     time.Time // when the lookupds were asked
	before histState
	after  histState
	truth  [chaosNSQDs]hostTruth
	views  [chaosLookupds]lookupdView
	// active[i]: a fault was in progress on nsqd i, or began or ended,
	// during the sample
	active [chaosNSQDs]bool
}

// readTruth reads the /stats of each nsqd in which (all when nil); those
// with a fault in progress in st briefly.
func (k *checker) readTruth(which *[chaosNSQDs]bool, st histState) [chaosNSQDs]hostTruth {
	var out [chaosNSQDs]hostTruth
	var wg sync.WaitGroup
	for i, h := range k.c.hosts {
		if which != nil && !which[i] {
			continue
		}
		client := chaosHTTP
		if k.hostActive(st, i) {
			client = chaosFaultedHTTP
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = readStats(client, h)
		}()
	}
	wg.Wait()
	return out
}

func readStats(client *http.Client, h *chaosHost) hostTruth {
	var stats struct {
		Topics []struct {
			TopicName string `json:"topic_name"`
			Channels  []struct {
				ChannelName string `json:"channel_name"`
			} `json:"channels"`
		} `json:"topics"`
	}
	_, err := getJSONWith(client, h.httpURL("/stats?format=json&include_clients=false&include_mem=false"), &stats)
	if err != nil {
		return hostTruth{known: true, err: err.Error()}
	}
	ht := hostTruth{known: true, up: true, topics: map[string][]string{}}
	for _, t := range stats.Topics {
		chans := []string{}
		for _, c := range t.Channels {
			chans = append(chans, c.ChannelName)
		}
		slices.Sort(chans)
		ht.topics[t.TopicName] = chans
	}
	return ht
}

// readView asks lookupd l for /nodes, /topics and /lookup of every topic
// in also or in its /topics.
func readView(l *chaosLookupd, also []string) lookupdView {
	v := lookupdView{asked: true, lookups: map[string]lookupAnswer{}}
	var nodes nodesAnswer
	var topics topicsAnswer
	var errN, errT error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, errN = getJSONWith(chaosHTTP, l.d.url("/nodes"), &nodes) }()
	go func() { defer wg.Done(); _, errT = getJSONWith(chaosHTTP, l.d.url("/topics"), &topics) }()
	wg.Wait()
	if errN != nil || errT != nil {
		v.err = fmt.Errorf("/nodes: %v; /topics: %v", errN, errT)
		return v
	}
	v.nodes, v.topics = nodes.Producers, topics.Topics
	names := slices.Clone(also)
	names = append(names, v.topics...)
	slices.Sort(names)
	names = slices.Compact(names)
	var mu sync.Mutex
	for _, topic := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a lookupAnswer
			code, err := getJSONWith(chaosHTTP, l.d.url("/lookup?topic="+url.QueryEscape(topic)), &a)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				v.lookups[topic] = a
			case code == http.StatusNotFound:
			default:
				v.err = err
			}
		}()
	}
	wg.Wait()
	return v
}

// takeSample reads the truth, then the lookupds, then the truth again
// for the nsqd no fault touches: one that changed in between (a topic
// created) is left out of this sample.
func (k *checker) takeSample() *sample {
	s := &sample{before: k.h.snapshot()}
	first := k.readTruth(nil, s.before)
	var topics []string
	for _, ht := range first {
		topics = append(topics, ht.topicNames()...)
	}
	s.at = time.Now()
	var wg sync.WaitGroup
	for j, l := range k.c.lookupds {
		if s.before.down[j] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.views[j] = readView(l, topics)
		}()
	}
	wg.Wait()
	var quiet [chaosNSQDs]bool
	for i := range quiet {
		quiet[i] = !k.hostActive(s.before, i)
	}
	second := k.readTruth(&quiet, s.before)
	s.after = k.h.snapshot()
	for j := range s.views {
		if s.after.down[j] || s.after.lastLookupd[j] != s.before.lastLookupd[j] {
			s.views[j] = lookupdView{}
		}
	}
	for i := range s.truth {
		s.active[i] = k.hostActive(s.before, i) || k.hostActive(s.after, i) || s.after.lastNSQD[i] != s.before.lastNSQD[i]
		s.truth[i] = first[i]
		switch {
		case !s.active[i] && !first[i].up:
			// a live nsqd that did not answer: unknown, not down
			s.truth[i].known = false
		case !s.active[i] && !first[i].same(second[i]):
			s.truth[i] = hostTruth{err: "changed during the sample"}
		}
	}
	return s
}

// hostActive reports whether a timed fault was in progress on nsqd i.
func (k *checker) hostActive(st histState, i int) bool {
	return slices.ContainsFunc(st.active, func(f fault) bool { return f.onNSQD() && f.NSQD == i })
}

// queryable reports whether lookupd j was asked in s.
func (s *sample) queryable(j int) bool { return s.views[j].asked && s.views[j].err == nil }

// tombstoneState says whether a tombstone is in force.
type tombstoneState int

const (
	notTombstoned tombstoneState = iota
	tombstoned
	tombstoneUnsure // at its expiry, give or take a second
)

// tombstoneMargin: the lookupd's clock for a tombstone starts between the
// POST's request and answer, and a sample takes a moment.
const tombstoneMargin = time.Second

// tombstonedIn says whether nsqd i's connection remote is tombstoned in
// topic on lookupd j at the time of sample s.
func (k *checker) tombstonedIn(s *sample, j, i int, topic, remote string) tombstoneState {
	var rec *tombstoneRec
	for n := range s.after.tombs {
		r := &s.after.tombs[n]
		if r.f.Lookupd == j && r.f.NSQD == i && r.f.Topic == topic && r.remote == remote && r.sent.Before(s.at) {
			rec = r // the last one wins: a second tombstone renews the first
		}
	}
	switch {
	case rec == nil:
		return notTombstoned
	case s.at.Before(rec.sent.Add(rec.f.Dur - tombstoneMargin)):
		return tombstoned
	case s.at.After(rec.recv.Add(rec.f.Dur + tombstoneMargin)):
		return notTombstoned
	}
	return tombstoneUnsure
}

// diffHost lists how lookupd j's answers in s disagree with the truth
// about nsqd i; empty when they agree.
func (k *checker) diffHost(s *sample, j, i int) []string {
	v, ht, ip := &s.views[j], s.truth[i], k.c.hosts[i].ns.nsIP
	var out []string
	var entries []nodeInfo
	for _, e := range v.nodes {
		if e.BroadcastAddress == ip {
			entries = append(entries, e)
		}
	}
	listedIn := func(topic string) []producerInfo {
		var ps []producerInfo
		for _, p := range v.lookups[topic].Producers {
			if p.BroadcastAddress == ip {
				ps = append(ps, p)
			}
		}
		return ps
	}
	if !ht.up {
		if len(entries) > 0 {
			out = append(out, "in /nodes while down")
		}
		for _, topic := range sortedKeys(v.lookups) {
			if len(listedIn(topic)) > 0 {
				out = append(out, "in /lookup?topic="+topic+" while down")
			}
		}
		return out
	}
	if len(entries) != 1 {
		return append(out, fmt.Sprintf("in /nodes %d times, want once", len(entries)))
	}
	e := entries[0]
	if e.TCPPort != 4150 || e.HTTPPort != 4151 || e.Version != "1.3.0" {
		out = append(out, fmt.Sprintf("/nodes has ports %d/%d version %q, want 4150/4151 1.3.0", e.TCPPort, e.HTTPPort, e.Version))
	}
	want := ht.topicNames()
	if !slices.Equal(e.Topics, want) {
		out = append(out, fmt.Sprintf("/nodes lists topics %v, nsqd has %v", e.Topics, want))
	}
	for n, topic := range e.Topics {
		st := k.tombstonedIn(s, j, i, topic, e.RemoteAddress)
		if n < len(e.Tombstones) && st != tombstoneUnsure && e.Tombstones[n] != (st == tombstoned) {
			out = append(out, fmt.Sprintf("/nodes tombstone flag of %s is %v, want %v", topic, e.Tombstones[n], st == tombstoned))
		}
	}
	for _, topic := range want {
		if !slices.Contains(v.topics, topic) {
			out = append(out, "/topics lacks "+topic)
		}
		ps := listedIn(topic)
		st := k.tombstonedIn(s, j, i, topic, e.RemoteAddress)
		switch {
		case st == tombstoneUnsure:
		case st == tombstoned && len(ps) > 0:
			out = append(out, "in /lookup?topic="+topic+" though tombstoned")
		case st == notTombstoned && len(ps) != 1:
			out = append(out, fmt.Sprintf("in /lookup?topic=%s %d times, want once", topic, len(ps)))
		}
		if topic == keepaliveTopic {
			continue
		}
		got := v.lookups[topic].Channels
		for _, ch := range ht.topics[topic] {
			if !slices.Contains(got, ch) {
				out = append(out, fmt.Sprintf("/lookup?topic=%s lacks channel %s", topic, ch))
			}
		}
	}
	for _, topic := range sortedKeys(v.lookups) {
		if _, ok := ht.topics[topic]; !ok && len(listedIn(topic)) > 0 {
			out = append(out, "in /lookup?topic="+topic+", a topic it does not have")
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// convEvent is a healed fault whose convergence the checker awaits.
type convEvent struct {
	f        fault
	healAt   time.Time
	deadline time.Time
}

// violation is a broken property.
type violation struct {
	at   time.Duration // since the fault phase began
	what string
	dump string // the answers next to the truth, and the fault log
}

// checker checks every sample and keeps the figures of the report.
type checker struct {
	c    *chaosCluster
	h    *history
	tm   chaosTimings
	seed uint64

	mu         sync.Mutex
	nEvents    int
	pending    []*convEvent
	converged  [numFaultKinds][]time.Duration
	superseded [numFaultKinds]int
	late       [numFaultKinds]int // not converged within the bound: violations
	healed     [numFaultKinds]int
	gone       map[int]time.Duration // cut or stopped nsqd: how soon every lookupd dropped it, by fault ID
	goneKind   map[int]faultKind
	seen       map[int]bool    // a lookupd still listed the cut or stopped nsqd after the fault began
	goneFlag   map[[2]int]bool // (fault ID, lookupd) already reported
	tombFlag   map[int]bool    // tombstone fault IDs already reported
	outcomes   map[int]string  // what became of each heal, by fault ID
	pairBad    [chaosLookupds][chaosNSQDs]bool
	violations []violation
	samples    int
	failedAsks int // a lookupd not under a fault that did not answer in time
	last       *sample
}

func newChecker(c *chaosCluster, h *history, tm chaosTimings, seed uint64) *checker {
	return &checker{c: c, h: h, tm: tm, seed: seed,
		gone: map[int]time.Duration{}, goneKind: map[int]faultKind{}, seen: map[int]bool{},
		goneFlag: map[[2]int]bool{}, tombFlag: map[int]bool{}, outcomes: map[int]string{}}
}

// run samples until stop is closed.
func (k *checker) run(stop <-chan struct{}) {
	for {
		k.check(k.takeSample())
		select {
		case <-stop:
			return
		case <-time.After(k.tm.sample):
		}
	}
}

// violate records a broken property with the answers and the fault log.
func (k *checker) violate(s *sample, format string, a ...any) {
	v := violation{at: s.at.Sub(k.h.begin), what: fmt.Sprintf(format, a...)}
	if len(k.violations) < 5 { // the first few in full
		v.dump = k.dump(s) + "fault log up to here:\n" + k.h.log(k.outcomeLocked)
	}
	k.violations = append(k.violations, v)
}

// check checks one sample.
func (k *checker) check(s *sample) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.samples++
	k.last = s
	B := k.tm.convergenceBound()
	for j := range s.views {
		if s.views[j].asked && s.views[j].err != nil {
			k.failedAsks++
		}
	}

	// new events: heals await convergence; starts supersede the waits
	// of the same target
	for _, e := range k.h.eventsSince(k.nEvents) {
		k.nEvents++
		switch {
		case e.note != "":
		case e.heal:
			k.healed[e.f.Kind]++
			k.pending = append(k.pending, &convEvent{f: e.f, healAt: e.at, deadline: e.at.Add(B)})
		default:
			k.pending = slices.DeleteFunc(k.pending, func(p *convEvent) bool {
				if p.healAt.After(e.at) || !supersedes(e.f, p.f) {
					return false
				}
				k.superseded[p.f.Kind]++
				k.outcomes[p.f.ID] = fmt.Sprintf("superseded by #%d before converging", e.f.ID)
				return true
			})
		}
	}

	// convergence
	k.pending = slices.DeleteFunc(k.pending, func(p *convEvent) bool {
		if s.before.at.Before(p.healAt) {
			return false // the sample began before the heal
		}
		if k.inScope(s, p.f) {
			d := s.at.Sub(p.healAt)
			k.converged[p.f.Kind] = append(k.converged[p.f.Kind], d)
			k.outcomes[p.f.ID] = fmt.Sprintf("converged %.1fs later", d.Seconds())
			return true
		}
		// the bound runs from the last heal of anything in the scope
		last := s.after.lastHealNSQD[p.f.NSQD]
		for _, t := range s.after.lastHealLookupd {
			last = laterOf(last, t)
		}
		if p.f.Kind.onLookupd() {
			last = s.after.lastHealLookupd[p.f.Lookupd]
			for _, t := range s.after.lastHealNSQD {
				last = laterOf(last, t)
			}
		}
		p.deadline = laterOf(p.deadline, last.Add(B))
		if s.at.After(p.deadline) {
			k.late[p.f.Kind]++
			k.outcomes[p.f.ID] = "NOT CONVERGED within the bound"
			k.markBad(s, p.f) // reported here, not again as an unsettled pair
			k.violate(s, "%s: not converged %.1fs after it healed (bound %s from the last heal in its scope): %s",
				p.f, s.at.Sub(p.healAt).Seconds(), B, strings.Join(k.scopeDiffs(s, p.f), "; "))
			return true
		}
		return false
	})

	// stability: settled pairs agree (no fault in progress on either,
	// none for B, no heal of either awaiting its convergence)
	awaiting := func(j, i int) bool {
		return slices.ContainsFunc(k.pending, func(p *convEvent) bool {
			if p.f.Kind.onLookupd() {
				return p.f.Lookupd == j
			}
			return p.f.NSQD == i
		})
	}
	for j := range s.views {
		if !s.queryable(j) || s.at.Sub(s.after.lastLookupd[j]) < B {
			continue
		}
		for i := range s.truth {
			if s.active[i] || !s.truth[i].known || s.at.Sub(s.after.lastNSQD[i]) < B || awaiting(j, i) {
				continue
			}
			d := k.diffHost(s, j, i)
			if len(d) > 0 && !k.pairBad[j][i] {
				k.violate(s, "lookupd%d disagrees about nsqd%d, no fault on either for %s: %s", j+1, i+1, B, strings.Join(d, "; "))
			}
			k.pairBad[j][i] = len(d) > 0
		}
	}

	// disappearance of cut and frozen nsqd
	for _, f := range s.before.active {
		if f.Kind != linkCut && f.Kind != nsqdStop || !slices.ContainsFunc(s.after.active, func(g fault) bool { return g.ID == f.ID }) {
			continue
		}
		// the bound runs from the fault, or from a lookupd's return if it
		// was stopped or dead meanwhile (it could drop no one then)
		began := k.startOf(f)
		asked, gone, latest := 0, true, began
		for j := range s.views {
			if !s.queryable(j) {
				continue
			}
			asked++
			present := k.listsHost(s, j, f.NSQD)
			gone = gone && !present
			k.seen[f.ID] = k.seen[f.ID] || present
			from := laterOf(began, s.before.upSince[j])
			latest = laterOf(latest, from)
			if present && s.at.Sub(from) > k.tm.disappearBound() && !k.goneFlag[[2]int{f.ID, j}] {
				k.goneFlag[[2]int{f.ID, j}] = true
				k.violate(s, "%s: lookupd%d still lists nsqd%d %.1fs after the fault or its own return (bound %s)", f, j+1, f.NSQD+1, s.at.Sub(from).Seconds(), k.tm.disappearBound())
			}
		}
		if _, done := k.gone[f.ID]; asked > 0 && gone && k.seen[f.ID] && !done {
			k.gone[f.ID], k.goneKind[f.ID] = s.at.Sub(latest), f.Kind
			what := "the fault"
			if latest.After(began) {
				what = "the last return of a lookupd"
			}
			k.h.note(f, "gone from every lookupd asked %.1fs after %s", s.at.Sub(latest).Seconds(), what)
		}
	}

	// tombstones in force hide their connection
	for _, rec := range s.after.tombs {
		j, i := rec.f.Lookupd, rec.f.NSQD
		if !s.queryable(j) || k.tombFlag[rec.f.ID] || k.tombstonedIn(s, j, i, rec.f.Topic, rec.remote) != tombstoned {
			continue
		}
		idx := slices.IndexFunc(s.views[j].nodes, func(e nodeInfo) bool { return e.RemoteAddress == rec.remote })
		if idx < 0 {
			continue // that connection is gone: the tombstone went with it
		}
		e := s.views[j].nodes[idx]
		n := slices.Index(e.Topics, rec.f.Topic)
		if n < 0 {
			continue
		}
		var bad []string
		if n < len(e.Tombstones) && !e.Tombstones[n] {
			bad = append(bad, "/nodes does not flag it")
		}
		if slices.ContainsFunc(s.views[j].lookups[rec.f.Topic].Producers, func(p producerInfo) bool { return p.RemoteAddress == rec.remote }) {
			bad = append(bad, "/lookup lists it")
		}
		if len(bad) > 0 {
			k.tombFlag[rec.f.ID] = true
			k.violate(s, "%s: tombstoned %.1fs ago (lifetime %s): %s", rec.f, s.at.Sub(rec.recv).Seconds(), rec.f.Dur, strings.Join(bad, ", "))
		}
	}
}

// markBad marks the pairs of f's scope that disagree in s as reported.
func (k *checker) markBad(s *sample, f fault) {
	for j := range s.views {
		for i := range s.truth {
			inScope := (f.Kind.onLookupd() && j == f.Lookupd) || (!f.Kind.onLookupd() && i == f.NSQD)
			if inScope && s.queryable(j) && s.truth[i].known && len(k.diffHost(s, j, i)) > 0 {
				k.pairBad[j][i] = true
			}
		}
	}
}

// outcome says what became of fault id's heal.
func (k *checker) outcome(id int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.outcomeLocked(id)
}

func (k *checker) outcomeLocked(id int) string { return k.outcomes[id] }

// supersedes reports whether a fault g starting on a target ends the wait
// for the convergence of f, healed before: g touches what f's check looks at.
func supersedes(g, f fault) bool {
	switch {
	case !g.timed() && g.Kind != topicCreate && g.Kind != topicDelete:
		return false // a tombstone changes nothing the nsqd or lookupd do
	case f.Kind.onLookupd():
		return g.Kind.onLookupd() && g.Lookupd == f.Lookupd
	case f.Kind == tombstone:
		return (g.Kind.onLookupd() && g.Lookupd == f.Lookupd) || (g.onNSQD() && g.NSQD == f.NSQD)
	}
	return g.onNSQD() && g.NSQD == f.NSQD
}

// inScope reports whether the lookupds agree with the truth about what f
// touched: for an nsqd fault (or a tombstone), every lookupd asked about
// that nsqd; for a lookupd fault, that lookupd about every nsqd no fault
// is in progress on.
func (k *checker) inScope(s *sample, f fault) bool { return len(k.scopeDiffs(s, f)) == 0 }

// scopeDiffs lists the disagreements in f's scope; a scope that cannot be
// checked in s (nothing asked, truth unknown) is one.
func (k *checker) scopeDiffs(s *sample, f fault) []string {
	var out []string
	if f.Kind.onLookupd() {
		j := f.Lookupd
		if !s.queryable(j) {
			return []string{fmt.Sprintf("lookupd%d not asked", j+1)}
		}
		for i := range s.truth {
			if s.active[i] || !s.truth[i].known {
				continue
			}
			for _, d := range k.diffHost(s, j, i) {
				out = append(out, fmt.Sprintf("lookupd%d: nsqd%d %s", j+1, i+1, d))
			}
		}
		return out
	}
	i := f.NSQD
	if !s.truth[i].known {
		return []string{fmt.Sprintf("nsqd%d's truth unknown (%s)", i+1, s.truth[i].err)}
	}
	asked := 0
	for j := range s.views {
		if !s.queryable(j) || (f.Kind == tombstone && j != f.Lookupd) {
			continue
		}
		asked++
		for _, d := range k.diffHost(s, j, i) {
			out = append(out, fmt.Sprintf("lookupd%d: nsqd%d %s", j+1, i+1, d))
		}
	}
	if asked == 0 {
		return []string{"no lookupd asked"}
	}
	return out
}

// listsHost reports whether any answer of lookupd j lists nsqd i.
func (k *checker) listsHost(s *sample, j, i int) bool {
	ip := k.c.hosts[i].ns.nsIP
	v := &s.views[j]
	if slices.ContainsFunc(v.nodes, func(e nodeInfo) bool { return e.BroadcastAddress == ip }) {
		return true
	}
	for _, a := range v.lookups {
		if slices.ContainsFunc(a.Producers, func(p producerInfo) bool { return p.BroadcastAddress == ip }) {
			return true
		}
	}
	return false
}

// startOf returns when f began, from the history.
func (k *checker) startOf(f fault) time.Time {
	k.h.mu.Lock()
	defer k.h.mu.Unlock()
	for _, e := range k.h.events {
		if e.f.ID == f.ID && !e.heal && e.note == "" {
			return e.at
		}
	}
	return k.h.begin
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// agreeAll reports whether every lookupd was asked and agrees with the
// truth about every nsqd, as the run's end wants; else what differs.
func (k *checker) agreeAll(s *sample) []string {
	var out []string
	for j := range s.views {
		if !s.queryable(j) {
			out = append(out, fmt.Sprintf("lookupd%d not asked (%v)", j+1, s.views[j].err))
			continue
		}
		for i := range s.truth {
			if !s.truth[i].known {
				out = append(out, fmt.Sprintf("nsqd%d's truth unknown (%s)", i+1, s.truth[i].err))
				continue
			}
			for _, d := range k.diffHost(s, j, i) {
				out = append(out, fmt.Sprintf("lookupd%d: nsqd%d %s", j+1, i+1, d))
			}
		}
	}
	return out
}

// dump writes each lookupd's answers next to the truth.
func (k *checker) dump(s *sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d; at %.1fs into the fault phase; each lookupd's answers next to the truth (each nsqd's /stats):\n", k.seed, s.at.Sub(k.h.begin).Seconds())
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(w, "\tanswer\ttruth")
	for j, l := range k.c.lookupds {
		fmt.Fprintf(w, "\tlookupd%d (%s)", j+1, l.d.HTTPAddr)
	}
	fmt.Fprintln(w)
	name := func(ip string) string {
		for _, h := range k.c.hosts {
			if h.ns.nsIP == ip {
				return h.name()
			}
		}
		return ip
	}
	cell := func(j int, f func(v *lookupdView) string) string {
		v := &s.views[j]
		switch {
		case !v.asked:
			return "(not asked: stopped, dead, or a fault on it meanwhile)"
		case v.err != nil:
			return "(error: " + v.err.Error() + ")"
		}
		return f(v)
	}
	for i, h := range k.c.hosts {
		ht := s.truth[i]
		truth := "down: " + ht.err
		switch {
		case !ht.known:
			truth = "unknown: " + ht.err
		case ht.up:
			truth = "up: " + strings.Join(ht.topicNames(), " ")
		}
		if s.active[i] {
			truth += " [fault in progress]"
		}
		fmt.Fprintf(w, "\t/nodes %s %s\t%s", h.name(), h.ns.nsIP, truth)
		for j := range s.views {
			fmt.Fprintf(w, "\t%s", cell(j, func(v *lookupdView) string {
				var parts []string
				for _, e := range v.nodes {
					if e.BroadcastAddress != h.ns.nsIP {
						continue
					}
					var ts []string
					for n, topic := range e.Topics {
						if n < len(e.Tombstones) && e.Tombstones[n] {
							topic += "(tombstoned)"
						}
						ts = append(ts, topic)
					}
					parts = append(parts, fmt.Sprintf("%s from %s", strings.Join(ts, " "), e.RemoteAddress))
				}
				if len(parts) == 0 {
					return "absent"
				}
				return strings.Join(parts, " | ")
			}))
		}
		fmt.Fprintln(w)
	}
	var all []string
	for _, ht := range s.truth {
		all = append(all, ht.topicNames()...)
	}
	for j := range s.views {
		all = append(all, s.views[j].topics...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	fmt.Fprintf(w, "\t/topics\t%s", strings.Join(all, " "))
	for j := range s.views {
		fmt.Fprintf(w, "\t%s", cell(j, func(v *lookupdView) string { return strings.Join(v.topics, " ") }))
	}
	fmt.Fprintln(w)
	for _, topic := range all {
		var have []string
		for i, ht := range s.truth {
			if _, ok := ht.topics[topic]; ok {
				have = append(have, fmt.Sprintf("%s%v", k.c.hosts[i].name(), ht.topics[topic]))
			}
		}
		fmt.Fprintf(w, "\t/lookup?topic=%s\t%s", topic, strings.Join(have, " "))
		for j := range s.views {
			fmt.Fprintf(w, "\t%s", cell(j, func(v *lookupdView) string {
				a, ok := v.lookups[topic]
				if !ok {
					return "404"
				}
				var ps []string
				for _, p := range a.Producers {
					ps = append(ps, name(p.BroadcastAddress))
				}
				return fmt.Sprintf("%s channels%v", strings.Join(ps, " "), a.Channels)
			}))
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	return b.String()
}
