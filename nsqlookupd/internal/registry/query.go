package registry

import (
	"slices"
	"strings"
	"time"
)

// The queries. Each returns copies: sorted slices, never nil, safe to keep.

// walkBatch is how many topics (or channels of one topic) a walk copies
// per hold of the read lock: a walk over 100 000 topics holds a writer up
// for one batch at most.
const walkBatch = 256

// walk calls f with each topic in name order, walkBatch topics per hold of
// the read lock. The walk as a whole is no snapshot; each batch is.
func (db *DB) walk(f func(*topic)) {
	for from := ""; ; {
		n, last := 0, ""
		db.mu.RLock()
		for t := range db.order.From(from) {
			if n == walkBatch {
				break
			}
			f(t)
			n, last = n+1, t.name
		}
		db.mu.RUnlock()
		if n < walkBatch {
			return
		}
		from = last + "\x00"
	}
}

// Topics returns the names of the topic registrations.
func (db *DB) Topics() []string {
	names := []string{}
	db.walk(func(t *topic) {
		if t.registered {
			names = append(names, t.name)
		}
	})
	return names
}

// appendChannels appends the names of t's channels, in order.
func appendChannels(names []string, t *topic) []string {
	names = slices.Grow(names, t.channels.Len())
	for c := range t.channels.From("") {
		names = append(names, c.name)
	}
	return names
}

// Channels returns the channel names of the topic; for the wildcard, of
// every topic, a name once for each topic that has it.
func (db *DB) Channels(topicName string) []string {
	names := []string{}
	if topicName == Wildcard {
		db.walk(func(t *topic) { names = appendChannels(names, t) })
		slices.Sort(names)
		return names
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	if t := db.topics[topicName]; t != nil {
		names = appendChannels(names, t)
	}
	return names
}

// out returns e as queries hand it out.
func (e entry) out() Entry {
	x := Entry{Producer: e.p}
	if e.tomb != nil {
		x.Tombstoned = time.Unix(0, e.tomb.at)
	}
	return x
}

// Lookup appends to channels and producers (either may be nil) the
// channels of the topic and its producer entries, by ID, and returns them;
// ok is false when there is no such topic registration. For the wildcard:
// every topic's channels, and each producer once, in its least tombstoned
// entry (one without a tombstone, else the one tombstoned first); ok is
// false when no topic is registered. The slices returned are never nil.
func (db *DB) Lookup(topicName string, channels []string, producers []Entry) ([]string, []Entry, bool) {
	if channels == nil {
		channels = []string{}
	}
	if producers == nil {
		producers = []Entry{}
	}
	if topicName != Wildcard {
		db.mu.RLock()
		defer db.mu.RUnlock()
		t := db.topics[topicName]
		if t == nil || !t.registered {
			return channels, producers, false
		}
		producers = slices.Grow(producers, len(t.producers))
		for _, e := range t.producers {
			producers = append(producers, e.out())
		}
		return appendChannels(channels, t), producers, true
	}

	ok := false
	best := make(map[*Producer]entry)
	db.walk(func(t *topic) {
		channels = appendChannels(channels, t)
		ok = ok || t.registered
		for _, e := range t.producers {
			if b, seen := best[e.p]; !seen || b.tomb != nil && (e.tomb == nil || e.tomb.at < b.tomb.at) {
				best[e.p] = e
			}
		}
	})
	if !ok {
		return channels[:0], producers, false
	}
	n := len(producers)
	for _, e := range best {
		producers = append(producers, e.out())
	}
	slices.SortFunc(producers[n:], func(a, b Entry) int { return strings.Compare(a.Producer.ID, b.Producer.ID) })
	slices.Sort(channels)
	return channels, producers, true
}

// Node is a producer, and the version of its topics and tombstones: it
// changes whenever what NodeTopics returns does, but for the passing of
// time.
type Node struct {
	Producer *Producer
	Version  uint64
}

// Nodes returns every producer, by ID.
func (db *DB) Nodes() []Node {
	db.mu.RLock()
	defer db.mu.RUnlock()
	nodes := make([]Node, 0, db.producers.Len())
	for p := range db.producers.From("") {
		nodes = append(nodes, Node{Producer: p, Version: p.version})
	}
	return nodes
}

// NodeTopic is a topic a producer is registered in, and when it was
// tombstoned there (the zero time if not).
type NodeTopic struct {
	Name       string
	Tombstoned time.Time
}

// NodeTopics returns the topics p is registered in, by name, and the
// version they are of; ok is false once p has gone.
func (db *DB) NodeTopics(p *Producer) (topics []NodeTopic, version uint64, ok bool) {
	db.mu.RLock()
	if p.gone {
		db.mu.RUnlock()
		return nil, 0, false
	}
	topics = make([]NodeTopic, 0, len(p.topics))
	for t := range p.topics {
		i, _ := entryIndex(t.producers, p)
		topics = append(topics, NodeTopic{Name: t.name, Tombstoned: t.producers[i].out().Tombstoned})
	}
	version = p.version
	db.mu.RUnlock()
	slices.SortFunc(topics, func(a, b NodeTopic) int { return strings.Compare(a.Name, b.Name) })
	return topics, version, true
}

// TopicNames returns the name of every topic the registry holds: those
// registered and those with channels.
func (db *DB) TopicNames() []string {
	names := []string{}
	db.walk(func(t *topic) { names = append(names, t.name) })
	return names
}

// EachChannel calls f with each channel of the topic that has producers,
// in name order, and its producers by ID, until f returns false; it
// reports whether f never did. f runs without the lock, and each channel
// is a snapshot, the whole is not: the lock is taken once per walkBatch
// channels.
func (db *DB) EachChannel(topicName string, f func(channel string, producers []Entry) bool) bool {
	type item struct {
		name      string
		producers []Entry
	}
	byID := func(a, b Entry) int { return strings.Compare(a.Producer.ID, b.Producer.ID) }
	for from, more := "", true; more; {
		var batch []item
		n, last := 0, ""
		db.mu.RLock()
		if t := db.topics[topicName]; t != nil {
			for c := range t.channels.From(from) {
				if n == walkBatch {
					break
				}
				n, last = n+1, c.name
				if len(c.producers) > 0 {
					it := item{name: c.name, producers: make([]Entry, len(c.producers))}
					for i, p := range c.producers {
						it.producers[i] = Entry{Producer: p}
					}
					batch = append(batch, it)
				}
			}
		}
		db.mu.RUnlock()
		more, from = n == walkBatch, last+"\x00"
		for _, it := range batch {
			slices.SortFunc(it.producers, byID)
			if !f(it.name, it.producers) {
				return false
			}
		}
	}
	return true
}

// Stats are the registry's sizes.
type Stats struct {
	Producers     int // identified producers: the client registration
	Topics        int // topic registrations
	Channels      int // channel registrations
	Registrations int // producers of topic and channel registrations, summed
	Tombstones    int // producer entries tombstoned less than the lifetime ago
}

// Stats returns the registry's sizes at now. It reads counts the registry
// keeps, and the tombstones made within the lifetime; it takes the read
// lock, never the write lock.
func (db *DB) Stats(now time.Time) Stats {
	db.mu.RLock()
	defer db.mu.RUnlock()
	s := Stats{Producers: db.producers.Len(), Topics: db.registered, Channels: db.channels, Registrations: db.registrations}
	cutoff := now.UnixNano() - int64(db.lifetime)
	for _, t := range db.tombstones {
		if !t.dead && t.at > cutoff {
			s.Tombstones++
		}
	}
	return s
}
