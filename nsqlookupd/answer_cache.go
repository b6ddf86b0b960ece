package nsqlookupd

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/auth"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// answers are the encoded answers requests share, each kept until the
// registry's Generation (or, for /nodes, a producer's Version) says it may
// have changed. They exist for two measurements: /nodes under churn costs
// what changed since the last answer, not the whole fleet (the load
// harness's churn phase), and many clients that ask for a large answer and
// read it slowly hold it once, not once each (the stalled-readers test).
type answers struct {
	topicsJSON, channelsJSON shared[[]byte]
	lookupAll                shared[wildcardLookup]

	nodesMu    sync.Mutex                         // serializes /nodes builds; guards nodeCache
	nodeCache  map[*registry.Producer]*cachedNode // the last /nodes' entries
	nodesBuilt time.Time                          // when they were made
}

// shared is one answer, shared by every request that asks while the
// registry's generation has not moved since it was built.
type shared[T any] struct {
	mu  sync.Mutex // serializes builds: one is built at a time
	cur atomic.Pointer[sharedValue[T]]
}

type sharedValue[T any] struct {
	gen uint64 // the generation read before the build: it holds at least that
	v   T
}

// get returns the answer if it holds every change up to now, else builds,
// keeps and returns a new one.
func (c *shared[T]) get(db *registry.DB, build func() T) T {
	want := db.Generation()
	if a := c.cur.Load(); a != nil && a.gen >= want {
		return a.v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.cur.Load(); a != nil && a.gen >= want {
		return a.v // built while this request waited
	}
	a := &sharedValue[T]{gen: db.Generation()}
	a.v = build()
	c.cur.Store(a)
	return a.v
}

// topics returns /topics' answer, {"topics":[...]}.
func (a *answers) topics(db *registry.DB) []byte {
	return a.topicsJSON.get(db, func() []byte {
		return append(appendNames([]byte(`{"topics":`), db.Topics()), '}')
	})
}

// allChannels returns /channels?topic=*'s answer.
func (a *answers) allChannels(db *registry.DB) []byte {
	return a.channelsJSON.get(db, func() []byte {
		return append(appendNames([]byte(`{"channels":`), db.Channels(registry.Wildcard)), '}')
	})
}

// wildcardLookup is /lookup?topic=*'s answer less what changes with time:
// every channel, as a JSON array, and every producer's least tombstoned
// entry; ok is false when no topic is registered.
type wildcardLookup struct {
	channels  []byte
	producers []registry.Entry
	ok        bool
}

func (a *answers) allLookup(db *registry.DB) wildcardLookup {
	return a.lookupAll.get(db, func() wildcardLookup {
		channels, producers, ok := db.Lookup(registry.Wildcard, nil, nil)
		return wildcardLookup{channels: appendNames(nil, channels), producers: producers, ok: ok}
	})
}

// cachedNode is a producer's /nodes entry, encoded, for the version of its
// topics it was built from, until a tombstone in it expires.
type cachedNode struct {
	producer   *registry.Producer
	version    uint64
	validUntil time.Time
	json       []byte
}

// nodes returns the /nodes entry of every producer, by ID, at now. An entry
// is built again only when its producer's topics or tombstones changed, a
// tombstone expired or time went back. With a secret's state (auth on),
// the entries are built for this answer alone: each producer with topics
// the secret may see, listing only those.
func (a *answers) nodes(db *registry.DB, now time.Time, lifetime time.Duration, st *auth.State) []*cachedNode {
	if st != nil {
		var entries []*cachedNode
		for _, n := range db.Nodes() {
			topics, _, _ := db.NodeTopics(n.Producer)
			if topics = slices.DeleteFunc(topics, func(t registry.NodeTopic) bool { return !st.MaySee(t.Name) }); len(topics) > 0 {
				e := &cachedNode{producer: n.Producer}
				e.json, _ = appendNode(nil, &n.Producer.Info, topics, now, lifetime)
				entries = append(entries, e)
			}
		}
		return entries
	}
	a.nodesMu.Lock()
	defer a.nodesMu.Unlock()
	valid := !now.Before(a.nodesBuilt)
	cache := make(map[*registry.Producer]*cachedNode)
	var entries []*cachedNode
	for _, n := range db.Nodes() {
		e := a.nodeCache[n.Producer]
		if e == nil || !valid || e.version != n.Version || !now.Before(e.validUntil) {
			topics, version, ok := db.NodeTopics(n.Producer)
			if !ok {
				continue // gone since
			}
			e = &cachedNode{producer: n.Producer, version: version}
			e.json, e.validUntil = appendNode(nil, &n.Producer.Info, topics, now, lifetime)
		}
		cache[n.Producer] = e
		entries = append(entries, e)
	}
	a.nodeCache, a.nodesBuilt = cache, now
	return entries
}
