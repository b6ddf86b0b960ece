package nsqlookupd

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// The registry against a reference model. The model keeps v1.3.0's shape,
// one map from (category, key, subkey) to the producers registered there,
// with no index, no slot and no cache: each query scans and sorts
// everything, so it is obviously right. Both take the same random
// operations; after each one every query's answer is compared, and the
// registry's own invariants are checked.

var (
	modelSeqs  = flag.Int("model.seqs", 100, "random operation sequences TestRegistryModel runs")
	modelSteps = flag.Int("model.steps", 200, "operations per sequence")
	modelSeed  = flag.Uint64("model.seed", 0, "run only this seed (0: seeds 1..model.seqs)")
)

// modelKey is a registration, as v1.3.0 keys its one map.
type modelKey struct{ cat, key, sub string }

// modelEntry is a producer in a registration.
type modelEntry struct {
	tombstoned bool
	at         int64 // unix ns; meaningful when tombstoned
}

type model struct {
	live map[string]*peer                    // peer id -> the peer now holding it
	regs map[modelKey]map[string]*modelEntry // registration -> producers by id
}

func newModel() *model {
	return &model{live: map[string]*peer{}, regs: map[modelKey]map[string]*modelEntry{}}
}

func (m *model) isLive(p *peer) bool { return m.live[p.info.id] == p }

func (m *model) ensure(k modelKey) map[string]*modelEntry {
	if m.regs[k] == nil {
		m.regs[k] = map[string]*modelEntry{}
	}
	return m.regs[k]
}

// removeFrom removes id from k and reports whether it was there. An
// ephemeral registration left empty goes: when id was in it, or, with
// evenIfAbsent, whenever it is empty afterwards (v1.3.0's rule for the
// registration an UNREGISTER names).
func (m *model) removeFrom(k modelKey, id string, evenIfAbsent bool) bool {
	producers, ok := m.regs[k]
	if !ok {
		return false
	}
	_, removed := producers[id]
	delete(producers, id)
	name := k.sub
	if k.cat == "topic" {
		name = k.key
	}
	if len(producers) == 0 && protocol.IsEphemeral(name) && (removed || evenIfAbsent) {
		delete(m.regs, k)
	}
	return removed
}

// addPeer adds p; a live peer with the same id is removed first, as on
// its disconnect.
func (m *model) addPeer(p *peer) (*peer, []registration) {
	old := m.live[p.info.id]
	if old == p {
		return nil, nil
	}
	var left []registration
	if old != nil {
		left = m.removePeer(old)
	}
	m.live[p.info.id] = p
	return old, left
}

func (m *model) register(p *peer, topic, channel string) (channelAdded, topicAdded bool) {
	if !m.isLive(p) {
		return false, false
	}
	id := p.info.id
	if channel != "" {
		c := m.ensure(modelKey{"channel", topic, channel})
		if c[id] == nil {
			c[id] = &modelEntry{}
			channelAdded = true
		}
	}
	t := m.ensure(modelKey{"topic", topic, ""})
	if t[id] == nil {
		t[id] = &modelEntry{}
		topicAdded = true
	}
	return channelAdded, topicAdded
}

func (m *model) unregisterChannel(p *peer, topic, channel string) bool {
	if !m.isLive(p) {
		return false
	}
	return m.removeFrom(modelKey{"channel", topic, channel}, p.info.id, true)
}

func (m *model) unregisterTopic(p *peer, topic string) ([]string, bool) {
	if !m.isLive(p) {
		return nil, false
	}
	var channels []string
	for k := range m.regs {
		if k.cat == "channel" && k.key == topic {
			if _, in := m.regs[k][p.info.id]; !in {
				continue
			}
			delete(m.regs[k], p.info.id) // kept even if ephemeral and empty, as v1.3.0 keeps it
			channels = append(channels, k.sub)
		}
	}
	slices.Sort(channels)
	return channels, m.removeFrom(modelKey{"topic", topic, ""}, p.info.id, true)
}

func (m *model) removePeer(p *peer) []registration {
	if !m.isLive(p) {
		return nil
	}
	removed := []registration{{Category: "client"}}
	for k := range m.regs {
		if m.removeFrom(k, p.info.id, false) {
			removed = append(removed, registration{k.cat, k.key, k.sub})
		}
	}
	delete(m.live, p.info.id)
	slices.SortFunc(removed, compareRegistrations)
	return removed
}

func (m *model) createTopic(topic string) { m.ensure(modelKey{"topic", topic, ""}) }

func (m *model) createChannel(topic, channel string) {
	m.ensure(modelKey{"channel", topic, channel})
	m.ensure(modelKey{"topic", topic, ""})
}

func matches(pattern, name string) bool { return pattern == wildcard || pattern == name }

func (m *model) deleteTopic(topic string) ([]registration, []string) {
	var channels []registration
	var topics []string
	for k := range m.regs {
		if !matches(topic, k.key) {
			continue
		}
		delete(m.regs, k)
		if k.cat == "channel" {
			channels = append(channels, registration{k.cat, k.key, k.sub})
		} else {
			topics = append(topics, k.key)
		}
	}
	slices.SortFunc(channels, compareRegistrations)
	slices.Sort(topics)
	return channels, topics
}

func (m *model) deleteChannel(topic, channel string) bool {
	k := modelKey{"channel", topic, channel}
	_, ok := m.regs[k]
	delete(m.regs, k)
	return ok
}

func (m *model) tombstone(topic, node string, now time.Time) int {
	n := 0
	for k, producers := range m.regs {
		if k.cat != "topic" || !matches(topic, k.key) {
			continue
		}
		for id, e := range producers {
			info := m.live[id].info
			if node == info.BroadcastAddress+":"+strconv.Itoa(info.HTTPPort) || node == "["+info.BroadcastAddress+"]:"+strconv.Itoa(info.HTTPPort) {
				*e = modelEntry{tombstoned: true, at: now.UnixNano()}
				n++
			}
		}
	}
	return n
}

func (m *model) topicNames() []string {
	names := []string{}
	for k := range m.regs {
		if k.cat == "topic" {
			names = append(names, k.key)
		}
	}
	slices.Sort(names)
	return names
}

func (m *model) channelNames(topic string) []string {
	names := []string{}
	for k := range m.regs {
		if k.cat == "channel" && matches(topic, k.key) {
			names = append(names, k.sub)
		}
	}
	slices.Sort(names)
	return names
}

// modelProducer is a producer entry as the model answers it.
type modelProducer struct {
	id         string
	lastUpdate int64
	tombstoned bool
	at         int64
}

func (m *model) state(id string, e *modelEntry) modelProducer {
	mp := modelProducer{id: id, lastUpdate: m.live[id].lastUpdate.Load()}
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
	for k, producers := range m.regs {
		if k.cat != "topic" || !matches(topic, k.key) {
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
	return m.channelNames(topic), producers, true
}

// decode returns the topics and tombstones n's JSON lists, failing on
// JSON that is not n's producer's with the two lists aligned.
func (n *nodeState) decode() ([]string, []bool) {
	var entry struct {
		RemoteAddress string   `json:"remote_address"`
		Topics        []string `json:"topics"`
		Tombstones    []bool   `json:"tombstones"`
	}
	if err := json.Unmarshal(n.json, &entry); err != nil || entry.RemoteAddress != n.peer.info.id ||
		len(entry.Topics) != len(entry.Tombstones) {
		return []string{"bad JSON: " + string(n.json)}, nil
	}
	return entry.Topics, entry.Tombstones
}

// modelNode is a /nodes entry as the model answers it.
type modelNode struct {
	producer   modelProducer
	topics     []string
	tombstones []bool
}

func (m *model) nodes(now time.Time, lifetime time.Duration) []modelNode {
	var nodes []modelNode
	for _, id := range slices.Sorted(maps.Keys(m.live)) {
		n := modelNode{producer: m.state(id, nil), topics: []string{}, tombstones: []bool{}}
		for _, topic := range m.topicNames() {
			if e, ok := m.regs[modelKey{"topic", topic, ""}][id]; ok {
				n.topics = append(n.topics, topic)
				n.tombstones = append(n.tombstones, e.tombstoned && now.Sub(time.Unix(0, e.at)) < lifetime)
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

func (m *model) debugState() map[string][]modelProducer {
	data := map[string][]modelProducer{}
	for _, id := range slices.Sorted(maps.Keys(m.live)) {
		data["client::"] = append(data["client::"], m.state(id, nil))
	}
	for k, producers := range m.regs {
		for _, id := range slices.Sorted(maps.Keys(producers)) {
			key := k.cat + ":" + k.key + ":" + k.sub
			data[key] = append(data[key], m.state(id, producers[id]))
		}
	}
	return data
}

// The universe the random operations draw from: few names, so that
// operations collide; names that sort differently as "T" and "T:" (the
// /debug key order), ephemeral ones, and peers that share a node.
var (
	modelTopics   = []string{"a", "a.b", "a-1", "b", "e#ephemeral", "f#ephemeral"}
	modelChannels = []string{"x", "y", "z#ephemeral", "w#ephemeral"}
	modelNodes    = []string{"h0:4151", "h1:4151", "h2:4151", "nobody:1"}
)

const (
	modelPeerIDs  = 5
	modelLifetime = 45 * time.Second
)

// modelPeer returns a new peer for id index i; ids 0 and 1 share a node.
func modelPeer(i int, now time.Time) *peer {
	info := &peerInfo{
		id:               fmt.Sprintf("10.0.0.%d:%d", i, 40000+i),
		BroadcastAddress: fmt.Sprintf("h%d", max(i-1, 0)),
		Hostname:         fmt.Sprintf("host%d", i),
		TCPPort:          4150,
		HTTPPort:         4151,
		Version:          "1.3.0",
	}
	info.RemoteAddress = info.id
	info.seal()
	return newPeer(info, now)
}

// modelRun drives a registry and the model with the operations next
// draws, comparing every answer after each one.
type modelRun struct {
	db    *registrationDB
	m     *model
	now   time.Time
	peers [modelPeerIDs]*peer // the last peer made for each id, live or not
	log   []string            // the operations so far, for a failure message
	err   error               // the first difference found
}

func newModelRun() *modelRun {
	return &modelRun{db: newRegistrationDB(), m: newModel(),
		now: time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)}
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

// normalize turns answers into comparable values: producers by id and
// state, nil and empty slices alike.
func normalize(v any) any {
	switch v := v.(type) {
	case []producer:
		out := []modelProducer{}
		for _, e := range v {
			mp := modelProducer{id: e.peer.info.id, lastUpdate: e.peer.lastUpdate.Load()}
			if e.tomb != nil {
				mp.tombstoned, mp.at = true, e.tomb.at
			}
			out = append(out, mp)
		}
		return out
	case []modelProducer:
		if v == nil {
			return []modelProducer{}
		}
	case []*nodeState:
		out := []modelNode{}
		for _, n := range v {
			mp := normalize([]producer{{peer: n.peer}}).([]modelProducer)[0]
			topics, tombstones := n.decode()
			out = append(out, modelNode{producer: mp, topics: topics, tombstones: tombstones})
		}
		return out
	case []modelNode:
		if v == nil {
			return []modelNode{}
		}
	case map[string][]producer:
		out := []string{}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			out = append(out, fmt.Sprint(k, normalize(v[k])))
		}
		return out
	case map[string][]modelProducer:
		out := []string{}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			out = append(out, fmt.Sprint(k, normalize(v[k])))
		}
		return out
	case []string:
		if v == nil {
			return []string{}
		}
	case []registration:
		if v == nil {
			return []registration{}
		}
	}
	return v
}

// step applies one operation to both sides.
func (r *modelRun) step(o modelOp) {
	op, a, b, c := o[0], o[1], o[2], o[3]
	pick := func(list []string, i int) string { return list[i%len(list)] }
	i := a % modelPeerIDs
	p := r.peers[i]
	topic, channel := pick(modelTopics, b), pick(modelChannels, c)
	var desc string
	switch op % 13 {
	case 0, 1: // a peer connects (a new peer for the id; the old one may be live)
		p = modelPeer(i, r.now)
		r.peers[i] = p
		desc = fmt.Sprintf("addPeer(%s)", p.info.id)
		old, left := r.db.addPeer(p)
		mold, mleft := r.m.addPeer(p)
		r.same(desc, fmt.Sprint(old == mold, normalize(left)), fmt.Sprint(true, normalize(mleft)))
	case 2, 3, 4: // REGISTER T C, or REGISTER T
		if p == nil {
			return
		}
		if op%13 == 4 {
			channel = ""
		}
		desc = fmt.Sprintf("register(%s, %q, %q)", p.info.id, topic, channel)
		ca, ta := r.db.register(p, topic, channel)
		mca, mta := r.m.register(p, topic, channel)
		r.same(desc, [2]bool{ca, ta}, [2]bool{mca, mta})
	case 5:
		if p == nil {
			return
		}
		desc = fmt.Sprintf("unregisterChannel(%s, %q, %q)", p.info.id, topic, channel)
		r.same(desc, r.db.unregisterChannel(p, topic, channel), r.m.unregisterChannel(p, topic, channel))
	case 6:
		if p == nil {
			return
		}
		desc = fmt.Sprintf("unregisterTopic(%s, %q)", p.info.id, topic)
		chs, removed := r.db.unregisterTopic(p, topic)
		mchs, mremoved := r.m.unregisterTopic(p, topic)
		r.same(desc, fmt.Sprint(normalize(chs), removed), fmt.Sprint(normalize(mchs), mremoved))
	case 7: // a connection ends
		if p == nil {
			return
		}
		desc = fmt.Sprintf("removePeer(%s)", p.info.id)
		r.same(desc, r.db.removePeer(p), r.m.removePeer(p))
	case 8:
		if c%2 == 0 {
			desc = fmt.Sprintf("createTopic(%q)", topic)
			r.db.createTopic(topic)
			r.m.createTopic(topic)
		} else {
			desc = fmt.Sprintf("createChannel(%q, %q)", topic, channel)
			r.db.createChannel(topic, channel)
			r.m.createChannel(topic, channel)
		}
	case 9:
		if c%5 == 0 {
			topic = wildcard
		}
		desc = fmt.Sprintf("deleteTopic(%q)", topic)
		chs, ts := r.db.deleteTopic(topic)
		mchs, mts := r.m.deleteTopic(topic)
		r.same(desc, fmt.Sprint(normalize(chs), normalize(ts)), fmt.Sprint(normalize(mchs), normalize(mts)))
	case 10:
		desc = fmt.Sprintf("deleteChannel(%q, %q)", topic, channel)
		r.same(desc, r.db.deleteChannel(topic, channel), r.m.deleteChannel(topic, channel))
	case 11:
		if c%4 == 0 {
			topic = wildcard
		}
		node := pick(modelNodes, a)
		desc = fmt.Sprintf("tombstone(%q, %q)", topic, node)
		r.same(desc, r.db.tombstone(topic, node, r.now), r.m.tombstone(topic, node, r.now))
	case 12: // time passes; a peer PINGs
		d := time.Duration(b%4) * modelLifetime / 3
		r.now = r.now.Add(d)
		desc = fmt.Sprintf("advance(%s)", d)
		if p != nil && c%2 == 0 {
			p.lastUpdate.Store(r.now.UnixNano())
			desc += fmt.Sprintf(", ping(%s)", p.info.id)
		}
	}
	r.log = append(r.log, desc)
	r.compare()
}

// compare checks every query's answer, and the registry's invariants.
func (r *modelRun) compare() {
	r.same("topicNames", r.db.topicNames(), r.m.topicNames())
	for _, topic := range append([]string{wildcard}, modelTopics...) {
		r.same("channelNames("+topic+")", r.db.channelNames(topic), r.m.channelNames(topic))
		chs, ps, ok := r.db.lookup(topic)
		mchs, mps, mok := r.m.lookup(topic)
		r.same("lookup("+topic+")", fmt.Sprint(normalize(chs), normalize(ps), ok),
			fmt.Sprint(normalize(mchs), normalize(mps), mok))
	}
	r.same("nodes", r.db.nodes(r.now, modelLifetime), r.m.nodes(r.now, modelLifetime))
	r.same("debugState", r.db.debugState(), r.m.debugState())
	r.same("stats", r.db.stats(r.now, modelLifetime), r.m.stats(r.now, modelLifetime))
	if errs := r.db.checkInvariants(); len(errs) > 0 && r.err == nil {
		r.err = errors.Join(errs...)
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

func runModelSeed(t testing.TB, seed uint64, steps int) {
	t.Helper()
	checkModelOps(t, fmt.Sprintf("seed %d", seed), modelSeqOps(seed, steps))
}

func TestRegistryModel(t *testing.T) {
	if *modelSeed != 0 {
		runModelSeed(t, *modelSeed, *modelSteps)
		return
	}
	for seed := uint64(1); seed <= uint64(*modelSeqs); seed++ {
		runModelSeed(t, seed, *modelSteps)
	}
}

// FuzzRegistryModel runs operation sequences the fuzzer writes: four bytes
// an operation (the operation and its three arguments).
func FuzzRegistryModel(f *testing.F) {
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
