package nsqlookupd

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func testPeer(i int) *peer {
	info := &peerInfo{
		id:               fmt.Sprintf("10.0.%d.%d:%d", i/250, i%250, 40000+i),
		BroadcastAddress: fmt.Sprintf("host%d", i),
		Hostname:         fmt.Sprintf("host%d", i),
		TCPPort:          4150,
		HTTPPort:         4151,
		Version:          "1.3.0",
	}
	info.RemoteAddress = info.id
	info.seal()
	return newPeer(info, time.Now())
}

// fillSize is a registry shape: P producers, T topics each held by S
// producers, C channels per topic; T*S*(1+C) registrations.
type fillSize struct {
	name       string
	P, T, S, C int
}

// registrySizes grow the registry 100x; single-topic costs should stay flat.
var registrySizes = []fillSize{
	{"1k", 10, 40, 5, 4},
	{"10k", 100, 400, 5, 4},
	{"100k", 1000, 4000, 5, 4},
}

func fill(tb testing.TB, sz fillSize) (*registrationDB, []*peer) {
	tb.Helper()
	db := newRegistrationDB()
	peers := make([]*peer, sz.P)
	for i := range peers {
		peers[i] = testPeer(i)
		db.addPeer(peers[i])
	}
	for t := 0; t < sz.T; t++ {
		topic := fmt.Sprintf("topic%d", t)
		for k := 0; k < sz.S; k++ {
			p := peers[(t*sz.S+k)%sz.P]
			db.register(p, topic, "")
			for c := 0; c < sz.C; c++ {
				db.register(p, topic, fmt.Sprintf("ch%d", c))
			}
		}
	}
	return db, peers
}

func TestRegistryIndexesConsistent(t *testing.T) {
	sz := fillSize{"t", 7, 30, 3, 2}
	db, peers := fill(t, sz)
	nodes := db.nodes(time.Now(), time.Minute)
	if len(nodes) != sz.P {
		t.Fatalf("nodes: got %d; want %d", len(nodes), sz.P)
	}
	total := 0
	for _, n := range nodes {
		topics, tombstones := n.decode()
		total += len(topics)
		if !slices.IsSorted(topics) || len(tombstones) != len(topics) {
			t.Fatalf("node %s: topics %v not sorted or entries misaligned", n.peer.info.id, topics)
		}
	}
	if total != sz.T*sz.S {
		t.Fatalf("topic memberships: got %d; want %d", total, sz.T*sz.S)
	}
	for _, p := range peers {
		db.removePeer(p)
	}
	if len(db.peers) != 0 || len(db.nodes(time.Now(), time.Minute)) != 0 {
		t.Fatalf("peers left after every disconnect: %d", len(db.peers))
	}
	// non-ephemeral registrations stay, without producers
	if got := len(db.topicNames()); got != sz.T {
		t.Fatalf("topics: got %d; want %d", got, sz.T)
	}
	if got := db.debugState(); len(got) != 0 {
		t.Fatalf("debug state: got %d keys; want none", len(got))
	}
}

func TestTombstoneSetsOnlyMatchingNode(t *testing.T) {
	db, peers := fill(t, fillSize{"t", 4, 4, 4, 1})
	node := peers[0].info.node()
	if n := db.tombstone("topic0", node, time.Now()); n != 1 {
		t.Fatalf("tombstoned %d entries; want 1", n)
	}
	if n := db.tombstone("*", node, time.Now()); n != 4 {
		t.Fatalf("wildcard tombstoned %d entries; want 4", n)
	}
	if n := db.tombstone("topic0", "nobody:1", time.Now()); n != 0 {
		t.Fatalf("tombstoned %d entries for an unknown node; want 0", n)
	}
}

func benchSizes(b *testing.B, f func(b *testing.B, db *registrationDB, peers []*peer, sz fillSize)) {
	for _, sz := range registrySizes {
		b.Run(sz.name, func(b *testing.B) {
			db, peers := fill(b, sz)
			b.ReportAllocs()
			b.ResetTimer()
			f(b, db, peers, sz)
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *registrationDB, _ []*peer, sz fillSize) {
		i := 0
		for b.Loop() {
			db.lookup(fmt.Sprintf("topic%d", i%sz.T))
			i++
		}
	})
}

func BenchmarkChannels(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *registrationDB, _ []*peer, sz fillSize) {
		i := 0
		for b.Loop() {
			db.channelNames(fmt.Sprintf("topic%d", i%sz.T))
			i++
		}
	})
}

func BenchmarkTopics(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *registrationDB, _ []*peer, _ fillSize) {
		for b.Loop() {
			db.topicNames()
		}
	})
}

func BenchmarkNodes(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *registrationDB, _ []*peer, _ fillSize) {
		for b.Loop() {
			db.nodes(time.Now(), time.Minute)
		}
	})
}

// BenchmarkRegister times one REGISTER of a new channel and its UNREGISTER.
func BenchmarkRegister(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *registrationDB, peers []*peer, sz fillSize) {
		i := 0
		for b.Loop() {
			p := peers[i%sz.P]
			topic := fmt.Sprintf("topic%d", i%sz.T)
			db.register(p, topic, "bench")
			db.unregisterChannel(p, topic, "bench")
			i++
		}
	})
}

// BenchmarkDisconnect times the disconnect of a producer holding T*S/P
// topics with C channels each, and its re-registration.
func BenchmarkDisconnect(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *registrationDB, peers []*peer, sz fillSize) {
		p := peers[0]
		var topics []string
		for _, n := range db.nodes(time.Now(), time.Minute) {
			if n.peer.info.id == p.info.id {
				topics, _ = n.decode()
			}
		}
		for b.Loop() {
			db.removePeer(p)
			db.addPeer(p)
			for _, topic := range topics {
				for c := 0; c < sz.C; c++ {
					db.register(p, topic, fmt.Sprintf("ch%d", c))
				}
			}
		}
	})
}

// BenchmarkHTTPLookup times a whole /lookup request through the router and
// its handler (no network).
func BenchmarkHTTPLookup(b *testing.B) {
	for _, sz := range registrySizes {
		b.Run(sz.name, func(b *testing.B) {
			l := startLookupd(b, func(o *Options) { o.LogLevel = 4 }) // ERROR: no access lines
			db, _ := fill(b, sz)
			l.db = db
			s := newHTTPServer(l)
			reqs := make([]string, 64)
			for i := range reqs {
				reqs[i] = fmt.Sprintf("/lookup?topic=topic%d", i*sz.T/len(reqs))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w := httptest.NewRecorder()
				s.ServeHTTP(w, httptest.NewRequest("GET", reqs[i%len(reqs)], nil))
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
				i++
			}
		})
	}
}

// channelFloodSizes are the channel counts of one topic that a REGISTER of
// a new channel must cost the same in.
var channelFloodSizes = []int{1000, 10000, 100000}

// floodTopic returns a registry with one producer and one topic holding n
// channels of random names, and names for n more.
func floodTopic(tb testing.TB, n int) (*registrationDB, *peer, []string) {
	tb.Helper()
	db := newRegistrationDB()
	p := testPeer(0)
	db.addPeer(p)
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	name := func() string { return fmt.Sprintf("c%016x#ephemeral", rng.Uint64()) }
	for range n {
		db.register(p, "flood", name())
	}
	more := make([]string, 4096)
	for i := range more {
		more[i] = name()
	}
	return db, p, more
}

// BenchmarkRegisterChannelFlood times a REGISTER of a new channel into a
// topic holding 1k, 10k and 100k channels, and its UNREGISTER (the channel
// is ephemeral, so the topic keeps its size).
func BenchmarkRegisterChannelFlood(b *testing.B) {
	for _, n := range channelFloodSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db, p, more := floodTopic(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c := more[i%len(more)]
				db.register(p, "flood", c)
				db.unregisterChannel(p, "flood", c)
				i++
			}
		})
	}
}

// TestChannelFloodCostFlat bounds, loosely, how much more a REGISTER of a
// new channel costs in a topic of 32k channels than in one of 1k: a sorted
// slice of names made it some 20 times more (each insert moved half the
// topic), 60 times at 100k; the chunked list keeps it to what cache misses
// add.
// BenchmarkRegisterChannelFlood gives the figures; this only catches a
// cost that grows with the topic. It takes the best of several rounds, so
// a loaded machine slows both sides, not one.
func TestChannelFloodCostFlat(t *testing.T) {
	const small, large = 1000, 32000
	const ops, rounds, bound = 2000, 5, 8.0
	perOp := map[int]time.Duration{}
	for _, n := range []int{small, large} {
		db, p, more := floodTopic(t, n)
		best := time.Duration(math.MaxInt64)
		for range rounds {
			start := time.Now()
			for i := range ops {
				c := more[i%len(more)]
				db.register(p, "flood", c)
				db.unregisterChannel(p, "flood", c)
			}
			best = min(best, time.Since(start)/ops)
		}
		perOp[n] = best
	}
	ratio := float64(perOp[large]) / float64(perOp[small])
	t.Logf("REGISTER+UNREGISTER of a channel: %s in a topic of %d channels, %s in one of %d (%.1fx)", perOp[small], small, perOp[large], large, ratio)
	if ratio > bound {
		t.Fatalf("a channel REGISTER costs %.1fx more in a topic of %d channels than of %d; want at most %.0fx", ratio, large, small, bound)
	}
}

// TestTombstoneQueueBounded: tombstoning the same entries again and again
// keeps the tombstone queue to what is set, not what was ever set.
func TestTombstoneQueueBounded(t *testing.T) {
	db, peers := fill(t, fillSize{"t", 4, 4, 4, 1})
	now := time.Now()
	for i := range 10000 {
		db.tombstone(wildcard, peers[i%4].info.node(), now)
	}
	q := &db.tombstones
	q.mu.Lock()
	n, queued := len(q.queue), q.queued
	q.mu.Unlock()
	if queued != 16 || n > 2*queued+64 {
		t.Fatalf("queue holds %d tombstones for %d set; want 16 set and at most %d held", n, queued, 2*queued+64)
	}
	if got := db.stats(now, time.Minute).Tombstones; got != 16 {
		t.Fatalf("tombstones younger than the lifetime: got %d; want 16", got)
	}
	if errs := db.checkInvariants(); len(errs) > 0 {
		t.Fatal(errs)
	}
}
