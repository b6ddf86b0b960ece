package registry

import (
	"cmp"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// The registry against a reference model. The model keeps v1.3.0's shape,
// one map from a registration (kind, topic, channel) to the producers
// registered there, with no index and no order: each query scans and sorts everything, so it
// is obviously right. Both take the same random operations; after each one
// every query's answer is compared, and Check runs.

var (
	modelSeqs  = flag.Int("model.seqs", 100, "random operation sequences TestModel runs")
	modelSteps = flag.Int("model.steps", 200, "operations per sequence")
	modelSeed  = flag.Uint64("model.seed", 0, "run only this seed (0: seeds 1..model.seqs)")
)

// modelEntry is a producer in a registration.
type modelEntry struct {
	tombstoned bool
	at         int64 // unix ns; meaningful when tombstoned
}

type model struct {
	live map[string]*Producer                    // ID -> the producer now holding it
	regs map[Registration]map[string]*modelEntry // registration -> producers by ID
}

func newModel() *model {
	return &model{live: map[string]*Producer{}, regs: map[Registration]map[string]*modelEntry{}}
}

func (m *model) isLive(p *Producer) bool { return m.live[p.ID] == p }

func (m *model) ensure(r Registration) map[string]*modelEntry {
	if m.regs[r] == nil {
		m.regs[r] = map[string]*modelEntry{}
	}
	return m.regs[r]
}

// removeFrom removes id from r and reports whether it was there. An
// ephemeral registration left empty goes: when id was in it, or, with
// evenIfAbsent, whenever it is empty afterwards (v1.3.0's rule for the
// registration an UNREGISTER names).
func (m *model) removeFrom(r Registration, id string, evenIfAbsent bool) bool {
	producers, ok := m.regs[r]
	if !ok {
		return false
	}
	_, removed := producers[id]
	delete(producers, id)
	name := r.Channel
	if r.Kind == KindTopic {
		name = r.Topic
	}
	if len(producers) == 0 && protocol.IsEphemeral(name) && (removed || evenIfAbsent) {
		delete(m.regs, r)
	}
	return removed
}

func (m *model) addProducer(p *Producer) (*Producer, []Registration) {
	old := m.live[p.ID]
	var left []Registration
	if old != nil {
		left = m.removeProducer(old)
	}
	m.live[p.ID] = p
	return old, left
}

func (m *model) register(p *Producer, topic, channel string) (channelAdded, topicAdded bool) {
	if !m.isLive(p) {
		return false, false
	}
	if channel != "" {
		c := m.ensure(Registration{KindChannel, topic, channel})
		if c[p.ID] == nil {
			c[p.ID] = &modelEntry{}
			channelAdded = true
		}
	}
	t := m.ensure(Registration{KindTopic, topic, ""})
	if t[p.ID] == nil {
		t[p.ID] = &modelEntry{}
		topicAdded = true
	}
	return channelAdded, topicAdded
}

func (m *model) unregisterChannel(p *Producer, topic, channel string) bool {
	if !m.isLive(p) {
		return false
	}
	return m.removeFrom(Registration{KindChannel, topic, channel}, p.ID, true)
}

func (m *model) unregisterTopic(p *Producer, topic string) ([]string, bool) {
	if !m.isLive(p) {
		return nil, false
	}
	var channels []string
	for r := range m.regs {
		if r.Kind == KindChannel && r.Topic == topic {
			if _, in := m.regs[r][p.ID]; !in {
				continue
			}
			delete(m.regs[r], p.ID) // kept even if ephemeral and empty, as v1.3.0 keeps it
			channels = append(channels, r.Channel)
		}
	}
	return channels, m.removeFrom(Registration{KindTopic, topic, ""}, p.ID, true)
}

func (m *model) removeProducer(p *Producer) []Registration {
	if !m.isLive(p) {
		return nil
	}
	removed := []Registration{{Kind: KindProducer}}
	for r := range m.regs {
		if m.removeFrom(r, p.ID, false) {
			removed = append(removed, r)
		}
	}
	delete(m.live, p.ID)
	return removed
}

func (m *model) createTopic(topic string) { m.ensure(Registration{KindTopic, topic, ""}) }

func (m *model) createChannel(topic, channel string) {
	m.ensure(Registration{KindChannel, topic, channel})
	m.ensure(Registration{KindTopic, topic, ""})
}

func matches(pattern, name string) bool { return pattern == Wildcard || pattern == name }

func (m *model) deleteTopic(topic string) []Registration {
	var removed []Registration
	for r := range m.regs {
		if matches(topic, r.Topic) {
			delete(m.regs, r)
			removed = append(removed, r)
		}
	}
	return removed
}

func (m *model) deleteChannel(topic, channel string) bool {
	r := Registration{KindChannel, topic, channel}
	_, ok := m.regs[r]
	delete(m.regs, r)
	return ok
}

func (m *model) tombstone(topic string, now time.Time, addrs ...Address) int {
	n := 0
	for r, producers := range m.regs {
		if r.Kind != KindTopic || !matches(topic, r.Topic) {
			continue
		}
		for id, e := range producers {
			p := m.live[id]
			if slices.Contains(addrs, Address{p.BroadcastAddress, p.HTTPPort}) {
				*e = modelEntry{tombstoned: true, at: now.UnixNano()}
				n++
			}
		}
	}
	return n
}

func (m *model) topics() []string {
	names := []string{}
	for r := range m.regs {
		if r.Kind == KindTopic {
			names = append(names, r.Topic)
		}
	}
	slices.Sort(names)
	return names
}

func (m *model) channels(topic string) []string {
	names := []string{}
	for r := range m.regs {
		if r.Kind == KindChannel && matches(topic, r.Topic) {
			names = append(names, r.Channel)
		}
	}
	slices.Sort(names)
	return names
}

// modelProducer is a producer entry as both sides answer it.
type modelProducer struct {
	id         string
	lastUpdate int64
	tombstoned bool
	at         int64
}

func (m *model) state(id string, e *modelEntry) modelProducer {
	mp := modelProducer{id: id, lastUpdate: m.live[id].LastUpdate().UnixNano()}
	if e != nil && e.tombstoned {
		mp.tombstoned, mp.at = true, e.at
	}
	return mp
}

// lookup: for the wildcard, each producer once, in its least tombstoned
// entry: one without a tombstone, else the one with the oldest tombstone.
func (m *model) lookup(topic string) ([]string, []modelProducer, bool) {
	best := map[string]*modelEntry{}
	ok := false
	for r, producers := range m.regs {
		if r.Kind != KindTopic || !matches(topic, r.Topic) {
			continue
		}
		ok = true
		for id, e := range producers {
			b, seen := best[id]
			if !seen || (b.tombstoned && (!e.tombstoned || e.at < b.at)) {
				best[id] = e
			}
		}
	}
	if !ok {
		return nil, nil, false
	}
	var producers []modelProducer
	for _, id := range slices.Sorted(maps.Keys(best)) {
		producers = append(producers, m.state(id, best[id]))
	}
	return m.channels(topic), producers, true
}

// modelNode is a producer as /nodes lists it: its topics, and whether its
// tombstone in each is younger than the lifetime.
type modelNode struct {
	producer   modelProducer
	topics     []string
	tombstones []bool
}

func (m *model) nodes(now time.Time) []modelNode {
	nodes := []modelNode{}
	for _, id := range slices.Sorted(maps.Keys(m.live)) {
		n := modelNode{producer: m.state(id, nil), topics: []string{}, tombstones: []bool{}}
		for _, topic := range m.topics() {
			if e, ok := m.regs[Registration{KindTopic, topic, ""}][id]; ok {
				n.topics = append(n.topics, topic)
				n.tombstones = append(n.tombstones, e.tombstoned && now.Sub(time.Unix(0, e.at)) < modelLifetime)
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// nodes is the registry's answer in the model's terms, from Nodes and
// NodeTopics.
func nodes(db *DB, now time.Time) []modelNode {
	out := []modelNode{}
	for _, n := range db.Nodes() {
		topics, version, ok := db.NodeTopics(n.Producer)
		if !ok || version != n.Version {
			panic("a producer of Nodes has gone or changed since")
		}
		mn := modelNode{producer: out1(Entry{Producer: n.Producer}), topics: []string{}, tombstones: []bool{}}
		for _, t := range topics {
			mn.topics = append(mn.topics, t.Name)
			mn.tombstones = append(mn.tombstones, !t.Tombstoned.IsZero() && now.Sub(t.Tombstoned) < modelLifetime)
		}
		out = append(out, mn)
	}
	return out
}

// registrations lists every registration that has producers, with its
// producers by ID, and every topic name held.
func (m *model) registrations() []string {
	var out []string
	names := map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(m.live)) {
		if len(out) == 0 {
			out = append(out, fmt.Sprint(Registration{Kind: KindProducer}))
		}
		out[0] += fmt.Sprint(m.state(id, nil))
	}
	for r, producers := range m.regs {
		names[r.Topic] = true
		if len(producers) == 0 {
			continue
		}
		line := fmt.Sprint(r)
		for _, id := range slices.Sorted(maps.Keys(producers)) {
			line += fmt.Sprint(m.state(id, producers[id]))
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return append(out, fmt.Sprint("topics ", slices.Sorted(maps.Keys(names))))
}

// registrations is the same from the registry's walks: Nodes, TopicNames,
// EachChannel and Lookup. It notes a walk out of order.
func registrations(db *DB) []string {
	var out []string
	for _, n := range db.Nodes() {
		if len(out) == 0 {
			out = append(out, fmt.Sprint(Registration{Kind: KindProducer}))
		}
		out[0] += fmt.Sprint(out1(Entry{Producer: n.Producer}))
	}
	names := db.TopicNames()
	for _, t := range names {
		prev := ""
		db.EachChannel(t, func(c string, producers []Entry) bool {
			if c <= prev || !slices.IsSortedFunc(producers, func(a, b Entry) int { return strings.Compare(a.Producer.ID, b.Producer.ID) }) {
				out = append(out, fmt.Sprintf("EachChannel(%q): %q out of order", t, c))
			}
			prev = c
			line := fmt.Sprint(Registration{KindChannel, t, c})
			for _, e := range producers {
				line += fmt.Sprint(out1(e))
			}
			out = append(out, line)
			return true
		})
		if _, producers, _ := db.Lookup(t, nil, nil); len(producers) > 0 {
			line := fmt.Sprint(Registration{KindTopic, t, ""})
			for _, e := range producers {
				line += fmt.Sprint(out1(e))
			}
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return append(out, fmt.Sprint("topics ", names))
}

func (m *model) stats(now time.Time) Stats {
	s := Stats{Producers: len(m.live)}
	for r, producers := range m.regs {
		s.Registrations += len(producers)
		switch r.Kind {
		case KindTopic:
			s.Topics++
			for _, e := range producers {
				if e.tombstoned && now.Sub(time.Unix(0, e.at)) < modelLifetime {
					s.Tombstones++
				}
			}
		case KindChannel:
			s.Channels++
		}
	}
	return s
}

// The universe the random operations draw from: few names, so that
// operations collide; names that share prefixes, ephemeral ones, and
// producers that share a node.
var (
	modelTopics   = []string{"a", "a.b", "a-1", "b", "e#ephemeral", "f#ephemeral"}
	modelChannels = []string{"x", "y", "z#ephemeral", "w#ephemeral"}
	modelAddrs    = []Address{{"h0", 4151}, {"h1", 4151}, {"h2", 4151}, {"h0", 4150}, {"nobody", 1}}
)

const (
	modelIDs      = 5
	modelLifetime = 45 * time.Second
)

// modelInfo returns the Info of producer i; producers 0 and 1 share a node.
func modelInfo(i int) Info {
	return Info{
		ID:               fmt.Sprintf("10.0.0.%d:%d", i, 40000+i),
		BroadcastAddress: fmt.Sprintf("h%d", max(i-1, 0)),
		Hostname:         fmt.Sprintf("host%d", i),
		TCPPort:          4150,
		HTTPPort:         4151,
		Version:          "1.3.0",
	}
}

// modelRun drives a registry and the model with the same operations,
// comparing every answer after each one.
type modelRun struct {
	db        *DB
	m         *model
	now       time.Time
	producers [modelIDs]*Producer // the last producer made for each ID, live or not
	log       []string            // the operations so far, for a failure message
	err       error               // the first difference found
}

func newModelRun() *modelRun {
	return &modelRun{db: New(modelLifetime), m: newModel(), now: time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)}
}

// modelOp is one operation: what step does, and its three arguments.
type modelOp [4]int

// runModelOps runs ops on a new registry and model, and returns the first
// difference, with the operations that led to it.
func runModelOps(ops []modelOp) error {
	r := newModelRun()
	for _, op := range ops {
		if r.step(op); r.err != nil {
			return fmt.Errorf("after\n\t%s\n%w", strings.Join(r.log, "\n\t"), r.err)
		}
	}
	return nil
}

// shrinkModelOps returns a shorter sequence that still fails: it drops
// operations one at a time while the failure stays.
func shrinkModelOps(ops []modelOp) []modelOp {
	for i := len(ops) - 1; i >= 0; i-- {
		shorter := slices.Delete(slices.Clone(ops), i, i+1)
		if runModelOps(shorter) != nil {
			ops = shorter
		}
	}
	return ops
}

// checkModelOps fails t if ops make the registry and the model differ,
// reporting the shortest failing sequence it finds.
func checkModelOps(t testing.TB, name string, ops []modelOp) {
	t.Helper()
	if runModelOps(ops) == nil {
		return
	}
	short := shrinkModelOps(ops)
	t.Fatalf("%s: %d operations, shrunk to %d (as Go: %#v):\n%s", name, len(ops), len(short), short, runModelOps(short))
}

// same compares one answer of the registry (got) with the model's (want),
// keeping the first difference in r.err.
func (r *modelRun) same(what string, got, want any) {
	if r.err != nil {
		return
	}
	if g, w := fmt.Sprint(normalize(got)), fmt.Sprint(normalize(want)); g != w {
		r.err = fmt.Errorf("%s:\n\tgot  %s\n\twant %s", what, g, w)
	}
}

// removeProducer is RemoveProducer, returning what it reports.
func removeProducer(db *DB, p *Producer) []Registration {
	var left []Registration
	db.RemoveProducer(p, func(rs []Registration) { left = append(left, rs...) })
	return left
}

func out1(e Entry) modelProducer {
	mp := modelProducer{id: e.Producer.ID, lastUpdate: e.Producer.LastUpdate().UnixNano()}
	if !e.Tombstoned.IsZero() {
		mp.tombstoned, mp.at = true, e.Tombstoned.UnixNano()
	}
	return mp
}

// normalize turns answers into comparable values: producers by ID and
// state, registrations sorted, nil and empty slices alike.
func normalize(v any) any {
	switch v := v.(type) {
	case []Entry:
		out := []modelProducer{}
		for _, e := range v {
			out = append(out, out1(e))
		}
		return out
	case []modelProducer:
		if v == nil {
			return []modelProducer{}
		}
	case []string:
		if v == nil {
			return []string{}
		}
		return slices.Sorted(slices.Values(v))
	case []Registration:
		return slices.SortedFunc(slices.Values(v), func(a, b Registration) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), strings.Compare(a.Topic, b.Topic), strings.Compare(a.Channel, b.Channel))
		})
	}
	return v
}

// step applies one operation to both sides.
func (r *modelRun) step(o modelOp) {
	op, a, b, c := o[0], o[1], o[2], o[3]
	pick := func(list []string, i int) string { return list[i%len(list)] }
	i := a % modelIDs
	p := r.producers[i]
	topic, channel := pick(modelTopics, b), pick(modelChannels, c)
	var desc string
	switch op % 13 {
	case 0, 1: // a producer connects (a new one for the ID; the old one may be live)
		var left []Registration
		np, old := r.db.AddProducer(modelInfo(i), nil, r.now, func(rs []Registration) { left = append(left, rs...) })
		desc = fmt.Sprintf("AddProducer(%s)", np.ID)
		r.producers[i] = np
		mold, mleft := r.m.addProducer(np)
		r.same(desc, fmt.Sprint(old == mold, normalize(left)), fmt.Sprint(true, normalize(mleft)))
	case 2, 3, 4: // REGISTER T C, or REGISTER T
		if p == nil {
			return
		}
		if op%13 == 4 {
			channel = ""
		}
		desc = fmt.Sprintf("Register(%s, %q, %q)", p.ID, topic, channel)
		ca, ta := r.db.Register(p, topic, channel)
		mca, mta := r.m.register(p, topic, channel)
		r.same(desc, [2]bool{ca, ta}, [2]bool{mca, mta})
	case 5:
		if p == nil {
			return
		}
		desc = fmt.Sprintf("UnregisterChannel(%s, %q, %q)", p.ID, topic, channel)
		r.same(desc, r.db.UnregisterChannel(p, topic, channel), r.m.unregisterChannel(p, topic, channel))
	case 6:
		if p == nil {
			return
		}
		desc = fmt.Sprintf("UnregisterTopic(%s, %q)", p.ID, topic)
		chs, removed := r.db.UnregisterTopic(p, topic)
		mchs, mremoved := r.m.unregisterTopic(p, topic)
		r.same(desc, fmt.Sprint(normalize(chs), removed), fmt.Sprint(normalize(mchs), mremoved))
	case 7: // a connection ends
		if p == nil {
			return
		}
		desc = fmt.Sprintf("RemoveProducer(%s)", p.ID)
		r.same(desc, removeProducer(r.db, p), r.m.removeProducer(p))
	case 8:
		if c%2 == 0 {
			desc = fmt.Sprintf("CreateTopic(%q)", topic)
			r.db.CreateTopic(topic)
			r.m.createTopic(topic)
		} else {
			desc = fmt.Sprintf("CreateChannel(%q, %q)", topic, channel)
			r.db.CreateChannel(topic, channel)
			r.m.createChannel(topic, channel)
		}
	case 9:
		if c%5 == 0 {
			topic = Wildcard
		}
		desc = fmt.Sprintf("DeleteTopic(%q)", topic)
		r.same(desc, r.db.DeleteTopic(topic), r.m.deleteTopic(topic))
	case 10:
		desc = fmt.Sprintf("DeleteChannel(%q, %q)", topic, channel)
		r.same(desc, r.db.DeleteChannel(topic, channel), r.m.deleteChannel(topic, channel))
	case 11:
		if c%4 == 0 {
			topic = Wildcard
		}
		addrs := []Address{modelAddrs[a%len(modelAddrs)]}
		if b%3 == 0 {
			addrs = append(addrs, modelAddrs[b/3%len(modelAddrs)])
		}
		desc = fmt.Sprintf("Tombstone(%q, %v)", topic, addrs)
		r.same(desc, r.db.Tombstone(topic, r.now, addrs...), r.m.tombstone(topic, r.now, addrs...))
	case 12: // time passes; a producer PINGs
		d := time.Duration(b%4) * modelLifetime / 3
		r.now = r.now.Add(d)
		desc = fmt.Sprintf("advance(%s)", d)
		if p != nil && c%2 == 0 {
			r.db.Ping(p, r.now)
			desc += fmt.Sprintf(", Ping(%s)", p.ID)
		}
	}
	r.log = append(r.log, desc)
	r.compare()
}

// compare checks every query's answer, and the invariants.
func (r *modelRun) compare() {
	r.same("Topics", r.db.Topics(), r.m.topics())
	for _, topic := range append([]string{Wildcard}, modelTopics...) {
		r.same("Channels("+topic+")", r.db.Channels(topic), r.m.channels(topic))
		chs, ps, ok := r.db.Lookup(topic, nil, nil)
		mchs, mps, mok := r.m.lookup(topic)
		r.same("Lookup("+topic+")", fmt.Sprint(normalize(chs), normalize(ps), ok),
			fmt.Sprint(normalize(mchs), normalize(mps), mok))
	}
	r.same("Nodes", nodes(r.db, r.now), r.m.nodes(r.now))
	r.same("registrations", registrations(r.db), r.m.registrations())
	r.same("Stats", r.db.Stats(r.now), r.m.stats(r.now))
	if err := r.db.Check(); err != nil && r.err == nil {
		r.err = err
	}
}

// modelSeqOps returns the random sequence of seed.
func modelSeqOps(seed uint64, steps int) []modelOp {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ops := make([]modelOp, steps)
	for i := range ops {
		ops[i] = modelOp{rng.IntN(1 << 16), rng.IntN(1 << 16), rng.IntN(1 << 16), rng.IntN(1 << 16)}
	}
	return ops
}

func TestModel(t *testing.T) {
	t.Parallel()
	if *modelSeed != 0 {
		checkModelOps(t, fmt.Sprintf("seed %d", *modelSeed), modelSeqOps(*modelSeed, *modelSteps))
		return
	}
	for seed := uint64(1); seed <= uint64(*modelSeqs); seed++ {
		checkModelOps(t, fmt.Sprintf("seed %d", seed), modelSeqOps(seed, *modelSteps))
	}
}

// TestModelRegressions keeps each sequence that once made the two differ.
func TestModelRegressions(t *testing.T) {
	t.Parallel()
	for name, ops := range map[string][]modelOp{
		// UNREGISTER T kept the ephemeral channels it left empty, and those
		// it never held (created over HTTP): v1.3.0 keeps both
		"unregister topic keeps emptied ephemeral channels":       {{0, 0, 0, 0}, {2, 0, 0, 2}, {6, 0, 0, 0}},
		"unregister topic keeps ephemeral channels it never held": {{0, 0, 0, 0}, {8, 0, 0, 3}, {4, 0, 0, 0}, {6, 0, 0, 0}},
	} {
		t.Run(name, func(t *testing.T) { checkModelOps(t, name, ops) })
	}
}

// FuzzModel runs operation sequences the fuzzer writes: four bytes an
// operation (the operation and its three arguments).
func FuzzModel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 0, 0, 0, 11, 0, 0, 0, 7, 0, 0, 0})
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 3, 1, 4, 2, 3, 2, 4, 2, 6, 1, 4, 0, 9, 0, 0, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4*500 {
			return
		}
		var seq []modelOp
		for i := 0; i+4 <= len(ops); i += 4 {
			seq = append(seq, modelOp{int(ops[i]), int(ops[i+1]), int(ops[i+2]), int(ops[i+3])})
		}
		checkModelOps(t, "fuzz", seq)
	})
}
