// Package registry is nsqlookupd's only state: which producers (nsqd) are
// registered in which topics and channels, and which are tombstoned where.
// The daemon uses it as an application uses an in-memory store: every
// change and every query is one call, queries hand out copies, and the
// locks, indexes and counts stay inside. docs/wire.md, Data model, states
// what the registry holds; this package says how.
//
// # Model
//
// A Producer is an nsqd that has identified itself: what it told in
// IDENTIFY (Info), keyed by the remote address of its connection (Info.ID).
// AddProducer makes one; its connection then registers it in topics and
// channels and unregisters it, and RemoveProducer takes it out of
// everything when the connection ends. A producer entry in a topic can be
// tombstoned (Tombstone): /lookup hides it for the tombstone's lifetime.
// Topics and channels can also be created and deleted over HTTP, and may
// exist without producers. A registration left empty is removed only when
// its name ends in "#ephemeral". The wildcard topic "*" of Lookup,
// Channels, DeleteTopic and Tombstone matches every topic.
//
// # Locking
//
// One sync.RWMutex, mu, guards every field but two atomics. A change takes
// it for writing, once. Queries take it for reading, and never for long:
// one topic (a /lookup), one batch of topics or channels at a time (the
// walks over everything: wildcards, /topics, /debug), or one producer's
// topics (/nodes). So a REGISTER never waits for more than a short copy, and
// a /lookup never waits for more than one change. The two atomics are read
// without the lock: the generation (Generation), which callers key their
// caches on, and each producer's last update (PING), which changes no
// registration.
//
// # Mechanisms
//
// Each exists for a measurement or a property, named here:
//   - topics, a map from name to topic: a REGISTER or /lookup finds its
//     topic in O(1) (REGISTER at 1M topics; /lookup under load).
//   - order, the same topics in name order, and each topic's channels in
//     name order, in chunked lists (list): /topics and /channels come out
//     sorted without sorting, walks resume where they stopped, and a
//     REGISTER into a topic of 200 000 channels costs what one into a
//     topic of 5 does (the flood scenario of bench/scenario).
//   - producers, in ID order: /nodes and /debug list them without sorting.
//   - each producer's topics (Producer.topics): RemoveProducer and /nodes
//     cost what the producer holds, not the registry's size.
//   - each producer's version: /nodes answers are cached per producer
//     (the churn phase of the load harness) and rebuilt when it changes.
//   - the counts of registered topics, channels and registrations: Stats
//     costs the same at any size (a /metrics scrape).
//   - the tombstone list (tombstones): Stats counts the tombstones younger
//     than their lifetime without walking the registry.
//   - topicsPeak and shrink: maps and slices give back what a burst took
//     (the memory tests; Go maps never shrink).
//
// # Faults
//
// Every change makes all its checks before its first store, and a change
// of several topics (RemoveProducer, a wildcard DeleteTopic or Tombstone)
// is whole topic by topic. RemoveProducer, which calls its caller's
// function between batches, is restartable: called again after a panic cut
// it short, it finishes the removal.
//
// # Invariants
//
// Check verifies each of these, and names the number of any broken:
//
//  1. topics and order hold the same topics, each under its own name, and
//     exactly those that are registered or have a channel.
//  2. A topic's producer entries are sorted by ID, without repeats, and
//     each is a live producer (in producers). (Between the batches of a
//     RemoveProducer, the producer's entries not yet removed are not: run
//     Check when no change is under way.)
//  3. A topic with producer entries is registered.
//  4. A channel's producers are live, without repeats, and each has an
//     entry in the channel's topic.
//  5. A live producer's topics hold exactly the topics that have an entry
//     for it, each with the number of that topic's channels that hold it.
//  6. producers holds each live producer once, in ID order, and none gone.
//  7. registered, channels and registrations count what they name (a
//     registration is a producer entry of a topic or a producer of a
//     channel).
//  8. An entry's tombstone is not dead, and a tombstone in tombstones
//     that is not dead is one entry's.
//  9. Topic and channel names hold no ':' (the order of /debug's keys
//     relies on it).
package registry

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// Wildcard, as the topic of Lookup, Channels, DeleteTopic and Tombstone,
// matches every topic.
const Wildcard = "*"

// Info is what an nsqd tells about itself in IDENTIFY, and the address of
// its connection.
type Info struct {
	ID               string // the connection's remote address: the producer's key
	Hostname         string
	BroadcastAddress string
	TCPPort          int
	HTTPPort         int
	Version          string
	TopologyZone     string // empty unless given
	TopologyRegion   string // empty unless given
}

// IsNode reports whether node, as /topic/tombstone names one, is this
// producer's broadcast address and HTTP port: written as v1.3.0 joins them
// ("::1:4151") or as nsqadmin does ("[::1]:4151"). See docs/differences.md,
// IPv6 tombstones.
func (i *Info) IsNode(node string) bool {
	port := strconv.Itoa(i.HTTPPort)
	return node == i.BroadcastAddress+":"+port || node == net.JoinHostPort(i.BroadcastAddress, port)
}

// Producer is an identified nsqd as the registry holds it. Its Info never
// changes; the rest is the registry's.
type Producer struct {
	Info

	lastUpdate atomic.Int64 // unix ns of IDENTIFY or the last PING

	// Guarded by DB.mu:
	topics  map[*topic]int32 // topic -> how many of its channels hold the producer
	version uint64           // changes with its topics and its tombstones
	gone    bool             // removed: its calls change nothing
}

// LastUpdate returns the time of the producer's IDENTIFY or last PING.
func (p *Producer) LastUpdate() time.Time { return time.Unix(0, p.lastUpdate.Load()) }

func (p *Producer) key() string { return p.ID }

// Registration names a registration as v1.3.0 does: ("client", "", ""),
// which every producer is in, ("topic", topic, "") or ("channel", topic,
// channel).
type Registration struct {
	Category, Key, SubKey string
}

// Entry is a producer as a topic holds it, copied out.
type Entry struct {
	Producer *Producer
	// Tombstoned is when the producer was tombstoned in the topic, or the
	// zero time. The tombstone stays after its lifetime, until the
	// producer leaves the topic.
	Tombstoned time.Time
}

// topic is everything registered under one topic name: the topic
// registration, when there is one, and the channel registrations, which
// may exist without it.
type topic struct {
	name       string
	registered bool
	producers  []entry        // the topic registration's, sorted by ID
	channels   *list[channel] // nil without channels: most topics of a flood have none
}

func (t *topic) key() string { return t.name }

// entry is a producer entry of a topic.
type entry struct {
	p    *Producer
	tomb *tombstone // nil: not tombstoned
}

// channel is a channel registration and its producers, in no order.
type channel struct {
	name      string
	producers []*Producer
}

func (c channel) key() string { return c.name }

// tombstone is an entry's tombstone.
type tombstone struct {
	at   int64 // unix ns
	dead bool  // its entry has left, or has another tombstone
}

// DB is the registry. Its methods are safe for concurrent use.
type DB struct {
	mu sync.RWMutex

	topics     map[string]*topic
	topicsPeak int // the most topics has held since it was last made
	order      list[*topic]
	producers  list[*Producer]

	registered, channels, registrations int // counts, for Stats

	lifetime time.Duration // of a tombstone
	// tombstones holds the tombstones made since Tombstone last let go of
	// the dead and expired ones: Stats counts the live ones still young.
	tombstones []*tombstone

	gen atomic.Uint64
}

// New returns an empty registry whose tombstones last lifetime.
func New(lifetime time.Duration) *DB {
	return &DB{topics: make(map[string]*topic), lifetime: lifetime}
}

// Generation returns a number that changes whenever a query's answer may
// have changed, but for the passing of time and PINGs.
func (db *DB) Generation() uint64 { return db.gen.Load() }

// changed marks a change; the caller holds mu.
func (db *DB) changed() { db.gen.Add(1) }

// AddProducer adds the producer info describes, as of now, to the client
// registration and returns it. A live producer with the same ID (the
// kernel gave a dead connection's address to a new one) is removed first,
// as on its disconnect (see RemoveProducer, which calls left), and
// returned.
func (db *DB) AddProducer(info Info, now time.Time, left func([]Registration)) (p, replaced *Producer) {
	p = &Producer{Info: info, topics: make(map[*topic]int32)}
	p.lastUpdate.Store(now.UnixNano())
	db.mu.Lock()
	if old, ok := db.producers.Get(info.ID); ok {
		replaced = *old
		db.producers.Delete(info.ID)
		replaced.gone = true
	}
	db.producers.Insert(p)
	db.changed()
	db.mu.Unlock()
	if replaced != nil {
		// p registers nothing before this returns: the topics keep one
		// entry per ID
		db.removeTopics(replaced, []Registration{{Category: "client"}}, left)
	}
	return p, replaced
}

// Ping records that p is alive at now.
func (db *DB) Ping(p *Producer, now time.Time) {
	p.lastUpdate.Store(now.UnixNano())
}

// Register adds p to the channel registration (topic, channel), unless
// channel is empty, and to the topic registration, and reports which of
// the two it was not in. A producer already in the topic keeps its
// tombstone.
func (db *DB) Register(p *Producer, topicName, channelName string) (channelAdded, topicAdded bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if p.gone {
		return false, false // its connection is ending
	}
	t := db.topics[topicName]
	var c *channel
	if t != nil && channelName != "" {
		c, _ = t.channels.Get(channelName)
	}
	_, inTopic := p.topics[t]
	topicAdded = t == nil || !inTopic
	channelAdded = channelName != "" && (c == nil || !slices.Contains(c.producers, p))
	if !channelAdded && !topicAdded {
		return false, false
	}

	if t == nil {
		t = db.addTopicLocked(topicName)
	}
	if channelAdded {
		if c == nil {
			if t.channels == nil {
				t.channels = new(list[channel])
			}
			t.channels.Insert(channel{name: strings.Clone(channelName), producers: []*Producer{p}})
			db.channels++
		} else {
			c.producers = append(c.producers, p)
		}
		p.topics[t]++ // the map's zero value counts up; the topic entry is added below if new
		db.registrations++
	}
	if topicAdded {
		i, _ := entryIndex(t.producers, p)
		t.producers = slices.Insert(t.producers, i, entry{p: p})
		if _, ok := p.topics[t]; !ok {
			p.topics[t] = 0
		}
		db.registrations++
		p.version++
	}
	db.setRegisteredLocked(t, true)
	db.changed()
	return channelAdded, topicAdded
}

// addTopicLocked adds a topic named name, neither registered nor with a
// channel yet: the caller makes it one or the other.
func (db *DB) addTopicLocked(name string) *topic {
	t := &topic{name: strings.Clone(name)}
	db.topics[t.name] = t
	db.topicsPeak = max(db.topicsPeak, len(db.topics))
	db.order.Insert(t)
	return t
}

// setRegisteredLocked makes t registered or not.
func (db *DB) setRegisteredLocked(t *topic, registered bool) {
	switch {
	case registered && !t.registered:
		db.registered++
	case !registered && t.registered:
		db.registered--
	}
	t.registered = registered
}

// entryIndex returns where p's entry is, or would be, in entries, and
// whether it is there.
func entryIndex(entries []entry, p *Producer) (int, bool) {
	return slices.BinarySearchFunc(entries, p.ID, func(e entry, id string) int {
		return strings.Compare(e.p.ID, id)
	})
}

// UnregisterChannel removes p from the channel registration (topic,
// channel) and reports whether it was there. An ephemeral channel left
// empty is removed, whoever was in it, as v1.3.0 does.
func (db *DB) UnregisterChannel(p *Producer, topicName, channelName string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topics[topicName]
	if t == nil || p.gone {
		return false
	}
	c, ok := t.channels.Get(channelName)
	if !ok {
		return false
	}
	i := slices.Index(c.producers, p)
	if i < 0 && !(len(c.producers) == 0 && protocol.IsEphemeral(channelName)) {
		return false
	}
	if i >= 0 {
		db.leaveChannelLocked(t, c, i)
	}
	if len(c.producers) == 0 && protocol.IsEphemeral(channelName) {
		db.dropChannelLocked(t, channelName)
		db.gcLocked(t)
	}
	db.changed()
	return i >= 0
}

// UnregisterTopic removes p from every channel of the topic, then from the
// topic registration, and returns the channels it left and whether it was
// in the topic. The channels stay, even ephemeral and empty, as v1.3.0
// keeps them; an ephemeral topic left empty goes, whoever was in it.
func (db *DB) UnregisterTopic(p *Producer, topicName string) (channels []string, removed bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topics[topicName]
	if t == nil || p.gone {
		return nil, false
	}
	i, removed := entryIndex(t.producers, p)
	drop := t.registered && len(t.producers) == 0 && protocol.IsEphemeral(t.name)
	if !removed && !drop {
		return nil, false
	}
	if removed {
		channels = db.leaveTopicLocked(t, p, i, false)
	}
	if len(t.producers) == 0 && t.registered && protocol.IsEphemeral(t.name) {
		db.setRegisteredLocked(t, false)
		db.gcLocked(t)
	}
	db.changed()
	return channels, removed
}

// leaveChannelLocked removes producer i of channel c of topic t.
func (db *DB) leaveChannelLocked(t *topic, c *channel, i int) {
	p := c.producers[i]
	c.producers[i] = c.producers[len(c.producers)-1]
	c.producers[len(c.producers)-1] = nil
	c.producers = shrink(c.producers[:len(c.producers)-1])
	p.topics[t]--
	db.registrations--
}

// leaveTopicLocked removes p, whose entry is t.producers[i], from every
// channel of t and from the topic registration, and returns the channels
// it left. With dropChannels, an ephemeral channel it leaves empty goes.
// The topic registration stays, even empty: the caller decides.
func (db *DB) leaveTopicLocked(t *topic, p *Producer, i int, dropChannels bool) []string {
	var left, drop []string
	if p.topics[t] > 0 {
		for c := range t.channels.From("") {
			if j := slices.Index(c.producers, p); j >= 0 {
				left = append(left, c.name)
				if dropChannels && len(c.producers) == 1 && protocol.IsEphemeral(c.name) {
					drop = append(drop, c.name)
				}
			}
		}
	}
	for _, name := range left {
		c, _ := t.channels.Get(name)
		db.leaveChannelLocked(t, c, slices.Index(c.producers, p))
	}
	for _, name := range drop {
		db.dropChannelLocked(t, name)
	}
	db.buryLocked(t.producers[i].tomb)
	t.producers = shrink(slices.Delete(t.producers, i, i+1))
	delete(p.topics, t)
	db.registrations--
	p.version++
	return left
}

// dropChannelLocked removes the channel registration (t, name) with its
// producers; the caller collects t if it is now empty.
func (db *DB) dropChannelLocked(t *topic, name string) {
	c, _ := t.channels.Get(name)
	for _, p := range c.producers {
		p.topics[t]--
	}
	db.registrations -= len(c.producers)
	if t.channels.Delete(name); t.channels.Len() == 0 {
		t.channels = nil
	}
	db.channels--
}

// gcLocked removes t once it holds no registration at all; a reader that
// found it before sees it empty, as if it had looked a moment later.
func (db *DB) gcLocked(t *topic) {
	if t.registered || t.channels.Len() > 0 {
		return
	}
	delete(db.topics, t.name)
	db.order.Delete(t.name)
	if db.topicsPeak >= 64 && len(db.topics) <= db.topicsPeak/4 {
		// Go maps never give their storage back: copy one that a mass
		// deletion left mostly empty
		m := make(map[string]*topic, len(db.topics))
		for name, t := range db.topics {
			m[name] = t
		}
		db.topics, db.topicsPeak = m, len(m)
	}
}

// removeBatch is how many topics a producer's removal leaves per hold of
// the lock.
const removeBatch = 256

// RemoveProducer removes p from the client registration, then from every
// registration it holds; an ephemeral registration it leaves empty goes.
// It calls left, when not nil, with the registrations p leaves, the client
// one first, a batch at a time and without the lock: a producer of a
// million registrations holds writers up, and memory, for one batch at a
// time. From the first batch on, p is gone: its calls change nothing, and
// Nodes no longer lists it. Called again, for a removal a panic cut short,
// it finishes it.
func (db *DB) RemoveProducer(p *Producer, left func([]Registration)) {
	var batch []Registration
	db.mu.Lock()
	if !p.gone {
		db.producers.Delete(p.ID)
		p.gone = true
		db.changed()
		batch = append(batch, Registration{Category: "client"})
	}
	db.mu.Unlock()
	db.removeTopics(p, batch, left)
}

// removeTopics removes p, which has gone, from its topics and channels, a
// batch at a time, and reports each batch, after batch, to left.
func (db *DB) removeTopics(p *Producer, batch []Registration, left func([]Registration)) {
	for done := false; !done; {
		db.mu.Lock()
		n := 0
		for t := range p.topics {
			if n == removeBatch {
				break
			}
			n++
			i, _ := entryIndex(t.producers, p)
			for _, c := range db.leaveTopicLocked(t, p, i, true) {
				batch = append(batch, Registration{"channel", t.name, c})
			}
			batch = append(batch, Registration{"topic", t.name, ""})
			if len(t.producers) == 0 && protocol.IsEphemeral(t.name) {
				db.setRegisteredLocked(t, false)
			}
			db.gcLocked(t)
		}
		if done = len(p.topics) == 0; done {
			p.topics = nil
		}
		if n > 0 {
			db.changed()
		}
		db.mu.Unlock()
		if left != nil && len(batch) > 0 {
			left(batch)
		}
		batch = batch[:0]
	}
}

// CreateTopic adds the topic registration if it is not there.
func (db *DB) CreateTopic(topicName string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topics[topicName]
	if t != nil && t.registered {
		return
	}
	if t == nil {
		t = db.addTopicLocked(topicName)
	}
	db.setRegisteredLocked(t, true)
	db.changed()
}

// CreateChannel adds the channel registration (topic, channel) and the
// topic registration, those that are not there.
func (db *DB) CreateChannel(topicName, channelName string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topics[topicName]
	if t != nil && t.registered {
		if _, ok := t.channels.Get(channelName); ok {
			return
		}
	}
	if t == nil {
		t = db.addTopicLocked(topicName)
	}
	if t.channels == nil {
		t.channels = new(list[channel])
	}
	if t.channels.Insert(channel{name: strings.Clone(channelName)}) {
		db.channels++
	}
	db.setRegisteredLocked(t, true)
	db.changed()
}

// matchingLocked returns the topic named name, or every topic for the
// wildcard.
func (db *DB) matchingLocked(name string) []*topic {
	if name == Wildcard {
		return slices.Collect(db.order.From(""))
	}
	if t := db.topics[name]; t != nil {
		return []*topic{t}
	}
	return nil
}

// DeleteTopic removes every channel registration of the matching topics,
// then their topic registrations, producers and all, and returns what it
// removed, a topic's channels before it.
func (db *DB) DeleteTopic(topicName string) []Registration {
	db.mu.Lock()
	defer db.mu.Unlock()
	var removed []Registration
	for _, t := range db.matchingLocked(topicName) {
		for c := range t.channels.From("") {
			removed = append(removed, Registration{"channel", t.name, c.name})
			for _, p := range c.producers {
				p.topics[t]--
			}
			db.registrations -= len(c.producers)
		}
		db.channels -= t.channels.Len()
		t.channels = nil
		if t.registered {
			for _, e := range t.producers {
				db.buryLocked(e.tomb)
				delete(e.p.topics, t)
				e.p.version++
			}
			db.registrations -= len(t.producers)
			t.producers = nil
			db.setRegisteredLocked(t, false)
			removed = append(removed, Registration{"topic", t.name, ""})
		}
		db.gcLocked(t)
	}
	if len(removed) > 0 {
		db.changed()
	}
	return removed
}

// DeleteChannel removes the channel registration (topic, channel) with its
// producers, and reports false if there was none.
func (db *DB) DeleteChannel(topicName, channelName string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topics[topicName]
	if t == nil {
		return false
	}
	if _, ok := t.channels.Get(channelName); !ok {
		return false
	}
	db.dropChannelLocked(t, channelName)
	db.gcLocked(t)
	db.changed()
	return true
}

// Tombstone tombstones, as of now, every producer entry of the matching
// topics whose producer is node (Info.IsNode), and returns how many it
// tombstoned. A tombstoned entry is tombstoned again.
func (db *DB) Tombstone(topicName, node string, now time.Time) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	// let go of the tombstones Stats no longer counts
	cutoff := now.UnixNano() - int64(db.lifetime)
	db.tombstones = shrink(slices.DeleteFunc(db.tombstones, func(t *tombstone) bool {
		return t.dead || t.at <= cutoff
	}))
	n := 0
	for _, t := range db.matchingLocked(topicName) {
		for i := range t.producers {
			e := &t.producers[i]
			if !e.p.IsNode(node) {
				continue
			}
			tomb := &tombstone{at: now.UnixNano()}
			db.buryLocked(e.tomb)
			e.tomb = tomb
			db.tombstones = append(db.tombstones, tomb)
			e.p.version++
			n++
		}
	}
	if n > 0 {
		db.changed()
	}
	return n
}

// buryLocked marks tomb (nil: none), an entry's tombstone, dead: its entry
// leaves, or gets another.
func (db *DB) buryLocked(tomb *tombstone) {
	if tomb != nil {
		tomb.dead = true
	}
}
