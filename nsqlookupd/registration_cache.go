package nsqlookupd

import (
	"sync"
	"sync/atomic"
)

// answerCache holds one answer built from the registry, shared by every
// request that asks while the registry has not changed since it was built:
// the answer a burst of clients asks for is built once and held once,
// however slowly they read it.
type answerCache[T any] struct {
	cur atomic.Pointer[cachedAnswer[T]]
	mu  sync.Mutex // serializes builds: one answer is built at a time
}

type cachedAnswer[T any] struct {
	gen uint64 // the generation read before the build: it holds at least that
	v   T
}

// get returns the cached answer if it holds every change up to now (gen,
// read first), else builds, caches and returns a new one. An answer built
// after the request began holds every change the request must see.
func (c *answerCache[T]) get(gen *atomic.Uint64, build func() T) T {
	want := gen.Load()
	if a := c.cur.Load(); a != nil && a.gen >= want {
		return a.v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.cur.Load(); a != nil && a.gen >= want {
		return a.v // built while this request waited
	}
	a := &cachedAnswer[T]{gen: gen.Load()}
	a.v = build()
	c.cur.Store(a)
	return a.v
}

// wildcardLookup is /lookup?topic=*'s answer less its time-dependent part:
// every channel, as a JSON array, and every producer's least tombstoned
// entry; ok is false when no topic is registered.
type wildcardLookup struct {
	channelsJSON []byte
	producers    []producer
	ok           bool
}

// answers holds the registry's shared answers.
type answers struct {
	topics    answerCache[[]byte] // {"topics":[...]}
	channels  answerCache[[]byte] // {"channels":[...]} of every topic
	allLookup answerCache[wildcardLookup]
}

// topicsJSON returns /topics' answer, {"topics":[...]}, shared: it is
// encoded again only when a topic registration comes or goes.
func (db *registrationDB) topicsJSON() []byte {
	return db.answers.topics.get(&db.topicsGen, func() []byte {
		db.namesMu.RLock()
		defer db.namesMu.RUnlock()
		b := make([]byte, 0, 16+db.names.Len()*24)
		b = append(b, `{"topics":[`...)
		first := true
		db.names.All(func(name string) bool {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, name)
			return true
		})
		return append(b, "]}"...)
	})
}

// allChannelsJSON returns /channels?topic=*'s answer, shared until the
// registry changes.
func (db *registrationDB) allChannelsJSON() []byte {
	return db.answers.channels.get(&db.gen, func() []byte {
		b := append([]byte(`{"channels":`), appendNames(nil, db.channelNames(wildcard))...)
		return append(b, '}')
	})
}

// lookupAll returns /lookup?topic=*'s answer less its time-dependent
// part, shared until the registry changes.
func (db *registrationDB) lookupAll() wildcardLookup {
	return db.answers.allLookup.get(&db.gen, func() wildcardLookup {
		channels, producers, ok := db.lookup(wildcard)
		return wildcardLookup{channelsJSON: appendNames(nil, channels), producers: producers, ok: ok}
	})
}
