package nsqlookupd

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// checkInvariants verifies the invariants listed in registrationDB's
// comment, by number, and returns one error for each breach it finds (as
// bbolt's tx.Check reports every inconsistency, not just the first). It
// takes the registry's lock and every topic's.
func (db *registrationDB) checkInvariants() []error {
	db.mu.Lock()
	defer db.mu.Unlock()
	var errs []error
	bad := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("invariant %d: %s", n, fmt.Sprintf(format, args...)))
	}

	topics := map[string]*topic{}
	for i := range db.topics.shards {
		for k, t := range db.topics.shards[i].m {
			if k != t.name || db.topics.shard(k) != &db.topics.shards[i] {
				bad(1, "topics maps %q to topic %q in shard %d", k, t.name, i)
			}
			topics[t.name] = t
		}
	}

	// peerTopics[p][t]: how many of t's channels hold p, for each topic
	// whose producers hold p (invariant 6, built from the topics' side)
	peerTopics := map[*peer]map[*topic]int32{}
	var registered []string
	channels, registrations := 0, 0
	queued := map[*tombstone]int{}
	for name, t := range topics {
		t.mu.RLock()
		if !t.registered && len(t.channels) == 0 {
			bad(1, "topic %q is neither registered nor has a channel", name)
		}
		if !protocol.IsValidTopicName(name) || strings.Contains(name, ":") {
			bad(10, "topic name %q is not valid", name)
		}
		for i, e := range t.producers {
			if i > 0 && t.producers[i-1].peer.info.id >= e.peer.info.id {
				bad(2, "topic %q: producers %q, %q not sorted by id or repeated", name, t.producers[i-1].peer.info.id, e.peer.info.id)
			}
			if db.peers[e.peer.info.id] != e.peer {
				bad(2, "topic %q: producer %q is not a live peer", name, e.peer.info.id)
			}
			if peerTopics[e.peer] == nil {
				peerTopics[e.peer] = map[*topic]int32{}
			}
			peerTopics[e.peer][t] = 0
			if e.tomb != nil && e.tomb.queued {
				queued[e.tomb]++
			}
		}
		if len(t.producers) > 0 && !t.registered {
			bad(3, "topic %q has %d producers but is not registered", name, len(t.producers))
		}
		if t.registered {
			registered = append(registered, name)
		}
		names := t.chanNames.AppendTo(nil)
		if !slices.IsSorted(names) || len(names) != t.chanNames.Len() || len(names) != len(t.channels) {
			bad(4, "topic %q: %d channel names (sorted %t, Len %d) for %d channels", name, len(names), slices.IsSorted(names), t.chanNames.Len(), len(t.channels))
		}
		for _, c := range names {
			if _, ok := t.channels[c]; !ok {
				bad(4, "topic %q: channel name %q has no channel", name, c)
			}
		}
		for c, producers := range t.channels {
			if !protocol.IsValidChannelName(c) || strings.Contains(c, ":") {
				bad(10, "topic %q: channel name %q is not valid", name, c)
			}
			for i, p := range producers {
				if slices.Index(producers, p) != i {
					bad(5, "channel %q/%q holds %q twice", name, c, p.info.id)
				}
				if db.peers[p.info.id] != p {
					bad(5, "channel %q/%q: producer %q is not a live peer", name, c, p.info.id)
				}
				if _, in := peerTopics[p][t]; !in {
					if _, ok := producerIndex(t.producers, p); !ok {
						bad(5, "channel %q/%q: producer %q is not among the topic's", name, c, p.info.id)
						continue
					}
				}
				peerTopics[p][t]++
			}
			registrations += len(producers)
		}
		channels += len(t.channels)
		registrations += len(t.producers)
		t.mu.RUnlock()
	}

	for id, p := range db.peers {
		if id != p.info.id {
			bad(6, "peers maps %q to peer %q", id, p.info.id)
		}
		want := peerTopics[p]
		if len(p.topics) != len(want) {
			bad(6, "peer %q: index holds %d topics; the topics hold it in %d", id, len(p.topics), len(want))
		}
		for t, n := range p.topics {
			if w, ok := want[t]; !ok || w != n {
				bad(6, "peer %q: index says %d channels of topic %q (present %t); the topic says %d", id, n, t.name, ok, w)
			}
		}
	}
	for p := range peerTopics {
		if db.peers[p.info.id] != p {
			bad(6, "peer %q is held by topics but not live", p.info.id)
		}
	}

	db.namesMu.RLock()
	names := db.names.AppendTo(nil)
	db.namesMu.RUnlock()
	slices.Sort(registered)
	if !slices.Equal(names, registered) {
		bad(7, "names %v; registered topics %v", names, registered)
	}

	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"producers", db.nProducers.Load(), int64(len(db.peers))},
		{"topics", db.nTopics.Load(), int64(len(registered))},
		{"channels", db.nChannels.Load(), int64(channels)},
		{"registrations", db.nRegistrations.Load(), int64(registrations)},
	} {
		if c.got != c.want {
			bad(8, "%s count %d; the registry holds %d", c.what, c.got, c.want)
		}
	}

	q := &db.tombstones
	q.mu.Lock()
	inQueue, counted := 0, 0
	for _, tb := range q.queue {
		if tb.queued {
			inQueue++
			if queued[tb] != 1 {
				bad(9, "a queued tombstone is the tombstone of %d producer entries; want 1", queued[tb])
			}
		}
		if tb.counted {
			counted++
			if !tb.queued {
				bad(9, "a tombstone is counted but not queued")
			}
		}
	}
	if inQueue != q.queued || counted != q.active || len(queued) != inQueue {
		bad(9, "queue holds %d queued, %d counted; its counts say %d, %d; entries hold %d queued", inQueue, counted, q.queued, q.active, len(queued))
	}
	q.mu.Unlock()
	return errs
}
