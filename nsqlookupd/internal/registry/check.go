package registry

import (
	"errors"
	"fmt"
	"slices"
)

// Check verifies the invariants of the package doc and returns every
// breach it finds, each naming its invariant's number, joined; nil if
// there is none. It walks the whole registry under the read lock: it is
// for tests, as bbolt's tx.Check.
func (db *DB) Check() error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	var errs []error
	bad := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("invariant %d: %s", n, fmt.Sprintf(format, args...)))
	}
	live := map[*Producer]bool{}
	for p := range db.producers.From("") {
		live[p] = true
	}

	// held[p][t]: how many of t's channels hold p, for each topic with an
	// entry for p (invariant 5, from the topics' side)
	held := map[*Producer]map[*topic]int32{}
	registered, channels, registrations := 0, 0, 0
	entryTombs := map[*tombstone]int{}
	ordered := 0
	for t := range db.order.From("") {
		ordered++
		if db.topics[t.name] != t {
			bad(1, "topic %q is in order but not in topics", t.name)
		}
	}
	if ordered != len(db.topics) || ordered != db.order.Len() {
		bad(1, "order holds %d topics (Len %d); topics %d", ordered, db.order.Len(), len(db.topics))
	}
	for name, t := range db.topics {
		if name != t.name {
			bad(1, "topics maps %q to topic %q", name, t.name)
		}
		if !t.registered && t.channels.Len() == 0 {
			bad(1, "topic %q is neither registered nor has a channel", name)
		}
		for i, e := range t.producers {
			if i > 0 && t.producers[i-1].p.ID >= e.p.ID {
				bad(2, "topic %q: entries %q, %q not sorted by ID or repeated", name, t.producers[i-1].p.ID, e.p.ID)
			}
			if !live[e.p] {
				bad(2, "topic %q: producer %q is not live", name, e.p.ID)
			}
			if held[e.p] == nil {
				held[e.p] = map[*topic]int32{}
			}
			held[e.p][t] = 0
			if e.tomb != nil {
				entryTombs[e.tomb]++
				if e.tomb.dead {
					bad(8, "topic %q: the tombstone of %q is dead", name, e.p.ID)
				}
			}
		}
		if len(t.producers) > 0 && !t.registered {
			bad(3, "topic %q has %d producer entries but is not registered", name, len(t.producers))
		}
		if t.registered {
			registered++
		}
		n, prev := 0, ""
		for c := range t.channels.From("") {
			if n > 0 && c.name <= prev {
				bad(1, "topic %q: channels %q, %q not in order", name, prev, c.name)
			}
			n, prev = n+1, c.name
			for i, p := range c.producers {
				if slices.Index(c.producers, p) != i {
					bad(4, "channel %q/%q holds %q twice", name, c.name, p.ID)
				}
				if !live[p] {
					bad(4, "channel %q/%q: producer %q is not live", name, c.name, p.ID)
				}
				if _, ok := held[p][t]; !ok {
					if _, ok := entryIndex(t.producers, p); !ok {
						bad(4, "channel %q/%q: producer %q has no entry in the topic", name, c.name, p.ID)
						continue
					}
				}
				held[p][t]++
			}
			registrations += len(c.producers)
		}
		if n != t.channels.Len() {
			bad(1, "topic %q: %d channels, Len %d", name, n, t.channels.Len())
		}
		channels += n
		registrations += len(t.producers)
	}

	prev := ""
	for p := range db.producers.From("") {
		if prev != "" && p.ID <= prev {
			bad(6, "producers %q, %q not in ID order", prev, p.ID)
		}
		prev = p.ID
		if p.gone {
			bad(6, "producer %q is live but gone", p.ID)
		}
		want := held[p]
		if len(p.topics) != len(want) {
			bad(5, "producer %q: holds %d topics; %d topics have an entry for it", p.ID, len(p.topics), len(want))
		}
		for t, n := range p.topics {
			if w, ok := want[t]; !ok || w != n {
				bad(5, "producer %q: says %d channels of topic %q (entry %t); the topic says %d", p.ID, n, t.name, ok, w)
			}
		}
	}

	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"registered topics", db.registered, registered},
		{"channels", db.channels, channels},
		{"registrations", db.registrations, registrations},
	} {
		if c.got != c.want {
			bad(7, "%s count %d; the registry holds %d", c.what, c.got, c.want)
		}
	}

	for _, n := range entryTombs {
		if n != 1 {
			bad(8, "a tombstone is the tombstone of %d entries", n)
		}
	}
	for _, tomb := range db.tombstones {
		if !tomb.dead && entryTombs[tomb] != 1 {
			bad(8, "a live tombstone in tombstones is the tombstone of %d entries", entryTombs[tomb])
		}
	}
	return errors.Join(errs...)
}
