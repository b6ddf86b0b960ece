package registry

import (
	"slices"
	"strings"
	"time"

	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// The changes: every way the registry is written to.

// AddProducer adds the producer info describes, as of now, to the client
// registration and returns it, listing kept as its Listing. A live producer with the same ID (the
// kernel gave a dead connection's address to a new one) is removed first,
// as on its disconnect (see RemoveProducer, which calls left), and
// returned.
func (db *DB) AddProducer(info Info, listing []byte, now time.Time, left func([]Registration)) (p, replaced *Producer) {
	p = &Producer{Listing: listing, Info: info, topics: make(map[*topic]int32)}
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
		db.removeTopics(replaced, []Registration{{Kind: KindProducer}}, left)
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
		batch = append(batch, Registration{Kind: KindProducer})
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
				batch = append(batch, Registration{KindChannel, t.name, c})
			}
			batch = append(batch, Registration{Kind: KindTopic, Topic: t.name})
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
		// a channel's producers have entries in the topic (invariant 4):
		// their counts of t's channels go with those entries, below
		for c := range t.channels.From("") {
			removed = append(removed, Registration{KindChannel, t.name, c.name})
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
			removed = append(removed, Registration{Kind: KindTopic, Topic: t.name})
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
// topics whose producer has one of the addresses (Info.Address), and
// returns how many it tombstoned. A tombstoned entry is tombstoned again.
func (db *DB) Tombstone(topicName string, now time.Time, addrs ...Address) int {
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
			if !slices.Contains(addrs, e.p.Address()) {
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
