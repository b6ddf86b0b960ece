package nsqlookupd

import (
	"hash/maphash"
	"sync"
)

// topicShards is how many parts the topic index is split into: a reader
// locks one part to find a topic, and a writer locks one to add or remove
// a topic, so the two meet only on the same part, for a map access.
const topicShards = 64

// topicIndex maps topic names to topics, for readers that do not hold the
// registry's lock. Writers change it with the registry's lock held, and
// may read it without a shard's lock: only they change it.
type topicIndex struct {
	seed   maphash.Seed
	shards [topicShards]topicShard
}

type topicShard struct {
	mu   sync.RWMutex // guards m
	m    map[string]*topic
	peak int // most entries m has held: see shrinkMap
	_    [32]byte
}

func newTopicIndex() *topicIndex {
	x := &topicIndex{seed: maphash.MakeSeed()}
	for i := range x.shards {
		x.shards[i].m = make(map[string]*topic)
	}
	return x
}

func (x *topicIndex) shard(name string) *topicShard {
	return &x.shards[maphash.String(x.seed, name)%topicShards]
}

// get returns the topic named name, or nil; for readers.
func (x *topicIndex) get(name string) *topic {
	s := x.shard(name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[name]
}

// getLocked returns the topic named name, or nil; for writers, who hold
// the registry's lock.
func (x *topicIndex) getLocked(name string) *topic {
	return x.shard(name).m[name]
}

// put adds t; for writers.
func (x *topicIndex) put(t *topic) {
	s := x.shard(t.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[t.name] = t
	s.peak = max(s.peak, len(s.m))
}

// remove removes t; for writers.
func (x *topicIndex) remove(t *topic) {
	s := x.shard(t.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[t.name] == t {
		delete(s.m, t.name)
		s.m = shrinkMap(s.m, &s.peak)
	}
}

// all returns every topic, in no order.
func (x *topicIndex) all() []*topic {
	var all []*topic
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.RLock()
		for _, t := range s.m {
			all = append(all, t)
		}
		s.mu.RUnlock()
	}
	return all
}
