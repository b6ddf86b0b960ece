package nsqlookupd

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The registry's queries. Each returns copies: sorted, never nil slices,
// safe to use after the locks are released. See registrationDB for what
// each one locks.

// wildcard, as the topic of /lookup, /channels, /topic/delete or
// /topic/tombstone, matches every topic.
const wildcard = "*"

// isTombstoned reports whether the entry's tombstone is younger than
// lifetime at now.
func (e producer) isTombstoned(now time.Time, lifetime time.Duration) bool {
	return e.tomb != nil && now.UnixNano()-e.tomb.at < int64(lifetime)
}

// isActive reports whether the producer pinged within inactiveTimeout and
// is not tombstoned within lifetime.
func (e producer) isActive(now time.Time, inactiveTimeout, lifetime time.Duration) bool {
	return now.UnixNano()-e.peer.lastUpdate.Load() <= int64(inactiveTimeout) && !e.isTombstoned(now, lifetime)
}

// eachTopic calls f for every topic, in no order.
func (db *registrationDB) eachTopic(f func(*topic)) {
	for _, t := range db.topics.all() {
		f(t)
	}
}

// topicNames returns the names of every topic registration, sorted.
func (db *registrationDB) topicNames() []string {
	db.namesMu.RLock()
	defer db.namesMu.RUnlock()
	return db.names.AppendTo(make([]string, 0, db.names.Len()))
}

// channelNames returns the channel names of topic (of every topic for the
// wildcard, a name once for each topic that has it), sorted; never nil.
func (db *registrationDB) channelNames(topicName string) []string {
	if topicName == wildcard {
		var names []string
		db.eachTopic(func(t *topic) {
			t.mu.RLock()
			names = t.chanNames.AppendTo(names)
			t.mu.RUnlock()
		})
		slices.Sort(names)
		return append([]string{}, names...)
	}
	names := []string{}
	if t := db.topic(topicName); t != nil {
		t.mu.RLock()
		names = t.chanNames.AppendTo(names)
		t.mu.RUnlock()
	}
	return names
}

// lookup returns the channels and producers of topic (for the wildcard: of
// every topic, each producer once, in its least tombstoned entry: one
// without a tombstone, else the one with the oldest). ok is false when no
// matching topic registration exists.
func (db *registrationDB) lookup(topicName string) (channels []string, producers []producer, ok bool) {
	if topicName != wildcard {
		return db.lookupInto(topicName, nil, nil)
	}

	best := make(map[*peer]int) // index in producers
	channels = []string{}
	db.eachTopic(func(t *topic) {
		t.mu.RLock()
		defer t.mu.RUnlock()
		channels = t.chanNames.AppendTo(channels)
		if !t.registered {
			return
		}
		ok = true
		for _, e := range t.producers {
			i, seen := best[e.peer]
			switch {
			case !seen:
				best[e.peer] = len(producers)
				producers = append(producers, e)
			case producers[i].tomb != nil && (e.tomb == nil || e.tomb.at < producers[i].tomb.at):
				producers[i] = e
			}
		}
	})
	if !ok {
		return nil, nil, false
	}
	slices.SortFunc(producers, func(a, b producer) int { return strings.Compare(a.peer.info.id, b.peer.info.id) })
	slices.Sort(channels)
	return channels, producers, true
}

// lookupInto is lookup of one topic (not the wildcard), appending to
// channels and producers: /lookup passes slices it reuses.
func (db *registrationDB) lookupInto(topicName string, channels []string, producers []producer) ([]string, []producer, bool) {
	t := db.topic(topicName)
	if t == nil {
		return channels, producers, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !t.registered {
		return channels, producers, false
	}
	return t.chanNames.AppendTo(channels), append(producers, t.producers...), true
}

// peerList is the live peers sorted by id, as of peersGen gen.
type peerList struct {
	gen   uint64
	peers []*peer
}

// sortedPeerList returns the live peers sorted by id, sorting them again
// only when peers have come or gone.
func (db *registrationDB) sortedPeerList() []*peer {
	if l := db.sortedPeers.Load(); l != nil && l.gen == db.peersGen.Load() {
		return l.peers
	}
	db.mu.Lock()
	l := &peerList{gen: db.peersGen.Load(), peers: make([]*peer, 0, len(db.peers))}
	for _, p := range db.peers {
		l.peers = append(l.peers, p)
	}
	db.mu.Unlock()
	slices.SortFunc(l.peers, func(a, b *peer) int { return strings.Compare(a.info.id, b.info.id) })
	db.sortedPeers.Store(l)
	return l.peers
}

// nodeState is a producer as /nodes lists it, encoded: its fields, the
// topics it is registered in, sorted, and whether its tombstone in each is
// younger than lifetime, as
// {<producer fields>,"tombstones":[...],"topics":[...]}. It is immutable,
// and valid for the peer's generation gen from builtAt until validUntil
// (the next tombstone expiry), both unix ns.
type nodeState struct {
	peer                *peer
	json                []byte
	gen                 uint64
	lifetime            time.Duration
	builtAt, validUntil int64
}

// valid reports whether n still describes its peer at now.
func (n *nodeState) valid(now int64, lifetime time.Duration) bool {
	return n.gen == n.peer.gen.Load() && n.lifetime == lifetime && n.builtAt <= now && now < n.validUntil
}

// nodes returns every identified producer, sorted by id, with its topics
// and, for each, whether its tombstone there is younger than lifetime at
// now. A producer's entry is kept and handed out again until its topics
// or tombstones change, or a tombstone expires: /nodes costs what its
// answer holds, and what changed since the last one.
func (db *registrationDB) nodes(now time.Time, lifetime time.Duration) []*nodeState {
	peers := db.sortedPeerList()
	nodes := make([]*nodeState, 0, len(peers))
	ns := now.UnixNano()
	for _, p := range peers {
		n := p.node.Load()
		if n == nil || !n.valid(ns, lifetime) {
			if n = db.buildNode(p, now, lifetime); n == nil {
				continue // gone since the list was made
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// buildNode makes p's nodeState at now and caches it; nil if p has gone.
func (db *registrationDB) buildNode(p *peer, now time.Time, lifetime time.Duration) *nodeState {
	type entry struct {
		name string
		tomb *tombstone
	}
	db.mu.Lock()
	if !db.isLiveLocked(p) {
		db.mu.Unlock()
		return nil
	}
	n := &nodeState{peer: p, gen: p.gen.Load(), lifetime: lifetime, builtAt: now.UnixNano(), validUntil: math.MaxInt64}
	entries := make([]entry, 0, len(p.topics))
	for t := range p.topics {
		i, _ := producerIndex(t.producers, p)
		entries = append(entries, entry{t.name, t.producers[i].tomb})
	}
	db.mu.Unlock()

	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	size := len(p.info.json) + 32
	for _, e := range entries {
		size += len(e.name) + 9
	}
	b := make([]byte, 0, size)
	b = append(b, p.info.json[:len(p.info.json)-1]...) // without its '}'
	b = append(b, `,"tombstones":[`...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		tombstoned := e.tomb != nil && n.builtAt-e.tomb.at < int64(lifetime)
		if tombstoned {
			n.validUntil = min(n.validUntil, e.tomb.at+int64(lifetime))
		}
		b = strconv.AppendBool(b, tombstoned)
	}
	b = append(b, `],"topics":[`...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.name)
	}
	n.json = append(b, "]}"...)
	p.node.Store(n)
	return n
}

// debugBatch is how many channels /debug copies per hold of the registry's
// lock: a topic with 200 000 channels never holds writers up for long.
const debugBatch = 512

// debugEach calls f with each registration that has producers, keyed
// "category:key:subkey", in key order, with its producers sorted by id:
// the channel registrations, the client registration, then the topic
// registrations. It holds the registry's lock for one topic (or one batch
// of channels) at a time and never while f runs, so the whole is not one
// snapshot, but each registration is. It stops when f returns false.
func (db *registrationDB) debugEach(f func(key string, producers []producer) bool) {
	var topics []*topic
	db.eachTopic(func(t *topic) { topics = append(topics, t) })
	slices.SortFunc(topics, func(a, b *topic) int { return compareKeyOrder(a.name, b.name) })

	byID := func(a, b producer) int { return strings.Compare(a.peer.info.id, b.peer.info.id) }
	type channelState struct {
		name      string
		producers []producer
	}
	for _, t := range topics {
		from := ""
		for more := true; more; {
			var batch []channelState
			db.mu.Lock()
			scanned := 0
			last := ""
			t.chanNames.From(from, func(name string) bool {
				if scanned == debugBatch {
					return false
				}
				scanned++
				last = name
				if peers := t.channels[name]; len(peers) > 0 {
					c := channelState{name: name, producers: make([]producer, len(peers))}
					for i, p := range peers {
						c.producers[i] = producer{peer: p}
					}
					batch = append(batch, c)
				}
				return true
			})
			db.mu.Unlock()
			more, from = scanned == debugBatch, last+"\x00"
			for _, c := range batch {
				slices.SortFunc(c.producers, byID)
				if !f("channel:"+t.name+":"+c.name, c.producers) {
					return
				}
			}
		}
	}

	if peers := db.sortedPeerList(); len(peers) > 0 {
		client := make([]producer, len(peers))
		for i, p := range peers {
			client[i] = producer{peer: p}
		}
		if !f("client::", client) {
			return
		}
	}

	for _, t := range topics {
		t.mu.RLock()
		producers := slices.Clone(t.producers)
		t.mu.RUnlock()
		if len(producers) > 0 && !f("topic:"+t.name+":", producers) {
			return
		}
	}
}

// compareKeyOrder orders topic names as /debug's keys order them: as a+":"
// against b+":". Names hold no ':' (invariant 10).
func compareKeyOrder(a, b string) int {
	n := min(len(a), len(b))
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	switch {
	case len(a) == len(b):
		return 0
	case len(a) < len(b):
		return strings.Compare(":", b[n:n+1])
	default:
		return strings.Compare(a[n:n+1], ":")
	}
}

// debugState returns what debugEach walks, as a map.
func (db *registrationDB) debugState() map[string][]producer {
	data := make(map[string][]producer)
	db.debugEach(func(key string, producers []producer) bool {
		data[key] = producers
		return true
	})
	return data
}

// registryStats are the registry's sizes, as /metrics reports them.
type registryStats struct {
	Producers     int // identified producers: the client registration
	Topics        int // topic registrations (what /topics lists)
	Channels      int // channel registrations, over all topics
	Registrations int // (producer, topic or channel registration) pairs
	Tombstones    int // (producer, topic) tombstones younger than lifetime at now
}

// stats returns the registry's sizes at now. It reads counts the registry
// keeps as it changes, never walks it, and never takes its lock.
func (db *registrationDB) stats(now time.Time, lifetime time.Duration) registryStats {
	return registryStats{
		Producers:     int(db.nProducers.Load()),
		Topics:        int(db.nTopics.Load()),
		Channels:      int(db.nChannels.Load()),
		Registrations: int(db.nRegistrations.Load()),
		Tombstones:    db.tombstones.youngerThan(now, lifetime),
	}
}

// size is what the memory release follows: every registration, topic,
// channel and producer the registry holds (counts it keeps, no walk).
func (db *registrationDB) size() int64 {
	return db.nRegistrations.Load() + db.nTopics.Load() + db.nChannels.Load() + db.nProducers.Load()
}
