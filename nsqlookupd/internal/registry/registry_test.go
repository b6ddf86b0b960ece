package registry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// testInfo is the Info of producer i of a test.
func testInfo(i int) Info {
	return Info{
		ID:               fmt.Sprintf("10.0.%d.%d:%d", i/250, i%250, 40000+i),
		BroadcastAddress: fmt.Sprintf("host%d", i),
		Hostname:         fmt.Sprintf("host%d", i),
		TCPPort:          4150,
		HTTPPort:         4151,
		Version:          "1.3.0",
	}
}

// fill returns a registry of shape sz (topics "topic%d", channels "ch%d")
// and its producers.
func fill(tb testing.TB, sz test.Shape) (*DB, []*Producer) {
	tb.Helper()
	db := New(time.Minute)
	producers := test.Fill(sz, "topic%d", "ch%d",
		func(i int) *Producer { p, _ := db.AddProducer(testInfo(i), nil, time.Now(), nil); return p },
		func(p *Producer, topic, channel string) { db.Register(p, topic, channel) })
	return db, producers
}

func check(t testing.TB, db *DB) {
	t.Helper()
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestIndexesConsistent(t *testing.T) {
	t.Parallel()
	sz := test.Shape{Name: "t", P: 7, T: 30, S: 3, C: 2}
	db, producers := fill(t, sz)
	check(t, db)
	total := 0
	for _, n := range db.Nodes() {
		topics, _, _ := db.NodeTopics(n.Producer)
		total += len(topics)
		if !slices.IsSortedFunc(topics, func(a, b NodeTopic) int { return strings.Compare(a.Name, b.Name) }) {
			t.Fatalf("producer %s: topics %v not sorted", n.Producer.ID, topics)
		}
	}
	if want := sz.T * sz.S; total != want {
		t.Fatalf("topic entries: got %d; want %d", total, want)
	}
	if s := db.Stats(time.Now()); s != (Stats{Producers: 7, Topics: 30, Channels: 60, Registrations: 270}) {
		t.Fatalf("Stats: got %+v", s)
	}
	for _, p := range producers {
		if left := removeProducer(db, p); len(left) == 0 || left[0] != (Registration{Kind: KindProducer}) {
			t.Fatalf("RemoveProducer: left %v; want the producer registration first", left)
		}
		if left := removeProducer(db, p); left != nil {
			t.Fatalf("RemoveProducer again: left %v; want nothing", left)
		}
	}
	check(t, db)
	if n := len(db.Nodes()); n != 0 {
		t.Fatalf("Nodes after every producer left: %d", n)
	}
	// durable registrations stay, without producers
	if got := len(db.Topics()); got != sz.T {
		t.Fatalf("Topics: got %d; want %d", got, sz.T)
	}
	for _, topic := range db.TopicNames() {
		db.EachChannel(topic, func(c string, _ []Entry) bool {
			t.Fatalf("EachChannel(%q) lists %q; want no channel with producers", topic, c)
			return false
		})
	}
}

// TestProducerListingAndUpdate: a producer keeps the listing it was added
// with, and UpdatedSince tells LastUpdate's answer to the nanosecond.
func TestProducerListingAndUpdate(t *testing.T) {
	t.Parallel()
	db := New(time.Minute)
	at := time.Unix(1000, 500)
	p, _ := db.AddProducer(testInfo(0), []byte(`{"x":1}`), at, nil)
	if string(p.Listing) != `{"x":1}` {
		t.Fatalf("Listing: got %q; want the one given", p.Listing)
	}
	for _, tt := range []struct {
		since time.Time
		want  bool
	}{{at.Add(-1), true}, {at, true}, {at.Add(1), false}} {
		if got := p.UpdatedSince(tt.since); got != tt.want || got != !p.LastUpdate().Before(tt.since) {
			t.Errorf("UpdatedSince(%v) at %v: got %t; want %t", tt.since, at, got, tt.want)
		}
	}
	db.Ping(p, at.Add(2))
	if !p.UpdatedSince(at.Add(2)) {
		t.Error("UpdatedSince after a Ping: got false; want true")
	}
}

// TestWalks checks the walks across their batches: more topics, and more
// channels in one topic, than a batch holds.
func TestWalks(t *testing.T) {
	t.Parallel()
	db := New(time.Minute)
	p, _ := db.AddProducer(testInfo(0), nil, time.Now(), nil)
	var topics, channels []string
	for i := range 3*walkBatch + 5 {
		topics = append(topics, fmt.Sprintf("t%04d", i))
		db.Register(p, topics[i], "c")
		channels = append(channels, "c")
	}
	for i := range 2*walkBatch + 3 {
		db.Register(p, "t0000", fmt.Sprintf("d%04d", i))
		channels = append(channels, fmt.Sprintf("d%04d", i))
	}
	slices.Sort(channels)
	if got := db.Topics(); !slices.Equal(got, topics) {
		t.Fatalf("Topics: got %d names; want %d in order", len(got), len(topics))
	}
	if got := db.Channels(Wildcard); !slices.Equal(got, channels) {
		t.Fatalf("Channels(*): got %d names; want %d in order", len(got), len(channels))
	}
	if got, _, _ := db.Lookup(Wildcard, nil, nil); !slices.Equal(got, channels) {
		t.Fatalf("Lookup(*): got %d channels; want %d", len(got), len(channels))
	}
	if got := db.TopicNames(); !slices.Equal(got, topics) {
		t.Fatalf("TopicNames: got %d names; want %d in order", len(got), len(topics))
	}
	var names []string
	db.EachChannel("t0000", func(c string, _ []Entry) bool { names = append(names, c); return true })
	if want := append([]string{"c"}, channels[len(channels)-(2*walkBatch+3):]...); !slices.Equal(names, want) {
		t.Fatalf("EachChannel: got %d channels; want %d in order", len(names), len(want))
	}
	stopped := 0
	if db.EachChannel("t0000", func(string, []Entry) bool { stopped++; return stopped < walkBatch+2 }) || stopped != walkBatch+2 {
		t.Fatalf("EachChannel went on after f returned false: %d calls", stopped)
	}
}

func TestTombstone(t *testing.T) {
	t.Parallel()
	db, producers := fill(t, test.Shape{Name: "t", P: 4, T: 4, S: 4, C: 1})
	node := producers[0].Address()
	now := time.Now()
	if n := db.Tombstone("topic0", now, node); n != 1 {
		t.Fatalf("tombstoned %d entries; want 1", n)
	}
	if n := db.Tombstone(Wildcard, now, node); n != 4 {
		t.Fatalf("wildcard tombstoned %d entries; want 4", n)
	}
	if n := db.Tombstone("topic0", now, Address{"nobody", 1}, Address{node.BroadcastAddress, 1}); n != 0 {
		t.Fatalf("tombstoned %d entries for an unknown node; want 0", n)
	}
	_, entries, _ := db.Lookup("topic0", nil, nil)
	for _, e := range entries {
		if got, want := !e.Tombstoned.IsZero(), e.Producer == producers[0]; got != want {
			t.Fatalf("topic0: %s tombstoned %t; want %t", e.Producer.ID, got, want)
		}
	}
	check(t, db)
}

// TestTombstonesBounded: tombstoning the same entries again and again keeps
// to what is tombstoned now, not what ever was.
func TestTombstonesBounded(t *testing.T) {
	t.Parallel()
	db, _ := fill(t, test.Shape{Name: "t", P: 4, T: 4, S: 4, C: 1})
	now := time.Now()
	for i := range 10000 {
		db.Tombstone(Wildcard, now, Address{fmt.Sprintf("host%d", i%4), 4151})
	}
	if n := len(db.tombstones); n > 2*16 {
		t.Fatalf("tombstones holds %d for 16 tombstoned entries", n)
	}
	if got := db.Stats(now).Tombstones; got != 16 {
		t.Fatalf("Stats: %d tombstones; want 16", got)
	}
	if got := db.Stats(now.Add(time.Minute - 1)).Tombstones; got != 16 {
		t.Fatalf("Stats a nanosecond before the lifetime: %d tombstones; want 16", got)
	}
	if got := db.Stats(now.Add(time.Minute)).Tombstones; got != 0 {
		t.Fatalf("Stats at the lifetime: %d tombstones; want 0", got)
	}
	check(t, db)
}

// TestStatsTakesNoWriteLock: a scrape reads while a long read holds the
// lock, as a /debug walk may.
func TestStatsTakesNoWriteLock(t *testing.T) {
	t.Parallel()
	db, _ := fill(t, test.Shape{Name: "t", P: 4, T: 4, S: 4, C: 1})
	db.mu.RLock()
	defer db.mu.RUnlock()
	done := make(chan Stats)
	go func() { done <- db.Stats(time.Now()) }()
	select {
	case s := <-done:
		if s.Topics != 4 {
			t.Fatalf("Stats: %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stats waits for the lock a reader holds")
	}
}

// TestReplaceProducer: a producer with the ID of a live one replaces it;
// the old one's calls change nothing after.
func TestReplaceProducer(t *testing.T) {
	t.Parallel()
	db := New(time.Minute)
	old, _ := db.AddProducer(testInfo(0), nil, time.Now(), nil)
	db.Register(old, "t", "c#ephemeral")
	var left []Registration
	p, replaced := db.AddProducer(testInfo(0), nil, time.Now(), func(rs []Registration) { left = append(left, rs...) })
	if replaced != old || len(left) != 3 {
		t.Fatalf("AddProducer: replaced %v, left %v; want the old producer and its 3 registrations", replaced, left)
	}
	if a, b := db.Register(old, "u", ""); a || b {
		t.Fatal("a replaced producer registered")
	}
	if db.UnregisterChannel(old, "t", "c#ephemeral") {
		t.Fatal("a replaced producer unregistered")
	}
	db.Register(p, "t", "")
	_, entries, _ := db.Lookup("t", nil, nil)
	if len(entries) != 1 || entries[0].Producer != p {
		t.Fatalf("Lookup(t): %v; want only the new producer", entries)
	}
	if chs := db.Channels("t"); len(chs) != 0 {
		t.Fatalf("Channels(t): %v; want the emptied ephemeral channel gone", chs)
	}
	check(t, db)
}

func benchSizes(b *testing.B, f func(b *testing.B, db *DB, producers []*Producer, sz test.Shape)) {
	for _, sz := range test.Sizes {
		b.Run(sz.Name, func(b *testing.B) {
			db, producers := fill(b, sz)
			b.ReportAllocs()
			f(b, db, producers, sz)
		})
	}
}

// BenchmarkLookup times one topic's Lookup, the topics taken in a random
// order so that each reads memory a cache may not hold, as under load.
func BenchmarkLookup(b *testing.B) {
	for _, sz := range test.LookupSizes {
		b.Run(sz.Name, func(b *testing.B) {
			db, _ := fill(b, sz)
			names := make([]string, sz.T)
			for i, t := range rand.New(rand.NewPCG(1, 2)).Perm(sz.T) {
				names[i] = fmt.Sprintf("topic%d", t)
			}
			var channels []string
			var entries []Entry
			b.ReportAllocs()
			test.ReportCPU(b)
			i := 0
			for b.Loop() {
				channels, entries, _ = db.Lookup(names[i%len(names)], channels[:0], entries[:0])
				i++
			}
		})
	}
}

func BenchmarkChannels(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *DB, _ []*Producer, sz test.Shape) {
		i := 0
		for b.Loop() {
			db.Channels(fmt.Sprintf("topic%d", i%sz.T))
			i++
		}
	})
}

func BenchmarkTopics(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *DB, _ []*Producer, _ test.Shape) {
		for b.Loop() {
			db.Topics()
		}
	})
}

// BenchmarkNodeTopics times what /nodes asks of the registry for a
// producer whose cached entry is stale: its topics.
func BenchmarkNodeTopics(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *DB, producers []*Producer, _ test.Shape) {
		i := 0
		for b.Loop() {
			db.NodeTopics(producers[i%len(producers)])
			i++
		}
	})
}

// BenchmarkRegister times one REGISTER of a new channel and its UNREGISTER.
func BenchmarkRegister(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *DB, producers []*Producer, sz test.Shape) {
		i := 0
		for b.Loop() {
			p := producers[i%sz.P]
			topic := fmt.Sprintf("topic%d", i%sz.T)
			db.Register(p, topic, "bench")
			db.UnregisterChannel(p, topic, "bench")
			i++
		}
	})
}

// BenchmarkDisconnect times the disconnect of a producer holding T*S/P
// topics with C channels each, its return and its registrations again.
func BenchmarkDisconnect(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *DB, producers []*Producer, sz test.Shape) {
		p := producers[0]
		topics, _, _ := db.NodeTopics(p)
		for b.Loop() {
			db.RemoveProducer(p, nil)
			p, _ = db.AddProducer(p.Info, nil, time.Now(), nil)
			for _, t := range topics {
				for c := range sz.C {
					db.Register(p, t.Name, fmt.Sprintf("ch%d", c))
				}
			}
		}
	})
}

func BenchmarkStats(b *testing.B) {
	benchSizes(b, func(b *testing.B, db *DB, _ []*Producer, _ test.Shape) {
		now := time.Now()
		for b.Loop() {
			db.Stats(now)
		}
	})
}

// BenchmarkRegisterChannelFlood times a REGISTER of a new channel into a
// topic of 1k, 10k and 100k channels, and its UNREGISTER (the channel is
// ephemeral, so the topic keeps its size): the cost must not grow with the
// topic (a sorted slice of names made it 30 times more at 100k).
func BenchmarkRegisterChannelFlood(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db := New(time.Minute)
			p, _ := db.AddProducer(testInfo(0), nil, time.Now(), nil)
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			name := func() string { return fmt.Sprintf("c%016x#ephemeral", rng.Uint64()) }
			for range n {
				db.Register(p, "flood", name())
			}
			more := make([]string, 4096)
			for i := range more {
				more[i] = name()
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c := more[i%len(more)]
				db.Register(p, "flood", c)
				db.UnregisterChannel(p, "flood", c)
				i++
			}
		})
	}
}

// TestRemoveProducerBatches: a producer of many topics leaves a batch at a
// time, each registration reported once; a removal cut short by a panic in
// the caller's function is finished by the next call.
func TestRemoveProducerBatches(t *testing.T) {
	t.Parallel()
	db := New(time.Minute)
	p, _ := db.AddProducer(testInfo(0), nil, time.Now(), nil)
	const topics = 3*removeBatch + 5
	for i := range topics {
		db.Register(p, fmt.Sprintf("t%04d", i), "c")
	}
	seen := map[Registration]int{}
	calls := 0
	record := func(rs []Registration) {
		calls++
		if len(rs) == 0 {
			t.Error("an empty batch reported")
		}
		n := 0
		for _, r := range rs {
			seen[r]++
			if r.Kind == KindTopic {
				n++
			}
		}
		if n > removeBatch {
			t.Errorf("a batch of %d topics; want at most %d", n, removeBatch)
		}
		if calls == 2 {
			panic("cut short")
		}
	}
	func() {
		defer func() { recover() }()
		db.RemoveProducer(p, record)
	}()
	if calls != 2 || len(db.Nodes()) != 0 {
		t.Fatalf("after the panic: %d calls, %d producers listed; want 2 and none", calls, len(db.Nodes()))
	}
	if a, b := db.Register(p, "new", ""); a || b {
		t.Fatal("a producer being removed registered")
	}
	db.RemoveProducer(p, record)
	db.RemoveProducer(p, record) // nothing left: nothing reported
	if want := 1 + 2*topics; len(seen) != want {
		t.Fatalf("reported %d registrations; want %d", len(seen), want)
	}
	for r, n := range seen {
		if n != 1 {
			t.Fatalf("%v reported %d times", r, n)
		}
	}
	if s := db.Stats(time.Now()); s.Registrations != 0 || s.Topics != topics {
		t.Fatalf("Stats after the removal: %+v", s)
	}
	check(t, db)
}

// TestGeneration: every change that can change an answer moves the
// generation (the daemon's shared answers are keyed by it), and every
// change of a producer's topics or tombstones moves its version (its /nodes
// entry is); a change that changes nothing moves neither.
func TestGeneration(t *testing.T) {
	t.Parallel()
	db := New(time.Minute)
	p, _ := db.AddProducer(testInfo(0), nil, time.Now(), nil)
	version := func() uint64 { return db.Nodes()[0].Version }
	for _, step := range []struct {
		name    string
		do      func()
		changed bool // the answers
		node    bool // p's topics or tombstones
	}{
		{"Register topic", func() { db.Register(p, "t", "") }, true, true},
		{"Register channel", func() { db.Register(p, "t", "c") }, true, false},
		{"Register again", func() { db.Register(p, "t", "c") }, false, false},
		{"Tombstone", func() { db.Tombstone("t", time.Now(), Address{"host0", 4151}) }, true, true},
		{"Tombstone nobody", func() { db.Tombstone("t", time.Now(), Address{"nobody", 1}) }, false, false},
		{"UnregisterChannel", func() { db.UnregisterChannel(p, "t", "c") }, true, false},
		{"UnregisterTopic", func() { db.UnregisterTopic(p, "t") }, true, true},
		{"CreateTopic", func() { db.CreateTopic("u") }, true, false},
		{"CreateTopic again", func() { db.CreateTopic("u") }, false, false},
		{"CreateChannel", func() { db.CreateChannel("u", "d") }, true, false},
		{"Register in u", func() { db.Register(p, "u", "") }, true, true},
		{"DeleteChannel", func() { db.DeleteChannel("u", "d") }, true, false},
		{"DeleteChannel absent", func() { db.DeleteChannel("u", "d") }, false, false},
		{"DeleteTopic", func() { db.DeleteTopic("u") }, true, true},
		{"DeleteTopic absent", func() { db.DeleteTopic("u") }, false, false},
	} {
		gen, v := db.Generation(), version()
		step.do()
		if got := db.Generation() != gen; got != step.changed {
			t.Errorf("%s: generation moved %t; want %t", step.name, got, step.changed)
		}
		if got := version() != v; got != step.node {
			t.Errorf("%s: the producer's version moved %t; want %t", step.name, got, step.node)
		}
		check(t, db)
	}
	for i := range removeBatch + 5 {
		db.Register(p, fmt.Sprintf("v%d#ephemeral", i), "")
	}
	gen, batches := db.Generation(), 0
	db.RemoveProducer(p, func([]Registration) {
		if batches++; db.Generation() <= gen {
			t.Errorf("batch %d of RemoveProducer left the generation at %d", batches, gen)
		}
		gen = db.Generation()
	})
	if batches != 2 {
		t.Errorf("RemoveProducer reported %d batches; want 2", batches)
	}
}

// TestCheckFindsBreaches breaks each invariant by hand and expects Check to
// name it.
func TestCheckFindsBreaches(t *testing.T) {
	t.Parallel()
	build := func() (*DB, []*Producer) {
		db := New(time.Minute)
		var ps []*Producer
		for i := range 3 {
			p, _ := db.AddProducer(testInfo(i), nil, time.Now(), nil)
			db.Register(p, "t", "c")
			ps = append(ps, p)
		}
		db.Tombstone("t", time.Now(), Address{"host0", 4151})
		check(t, db)
		return db, ps
	}
	for _, tt := range []struct {
		invariant int
		breakIt   func(db *DB, ps []*Producer)
	}{
		{1, func(db *DB, _ []*Producer) { db.topics["x"] = db.topics["t"] }},
		{1, func(db *DB, _ []*Producer) { db.CreateTopic("u"); db.topics["u"].registered = false; db.registered-- }},
		{1, func(db *DB, _ []*Producer) {
			db.CreateChannel("t", "b")
			t := db.topics["t"]
			t.channels.chunks[0][0], t.channels.chunks[0][1] = t.channels.chunks[0][1], t.channels.chunks[0][0]
		}},
		{2, func(db *DB, _ []*Producer) {
			t := db.topics["t"]
			t.producers[0], t.producers[1] = t.producers[1], t.producers[0]
		}},
		{2, func(db *DB, ps []*Producer) { db.producers.Delete(ps[0].ID) }},
		{2, func(db *DB, _ []*Producer) {
			t := db.topics["t"]
			t.producers[1] = t.producers[0]
		}},
		{3, func(db *DB, _ []*Producer) { db.topics["t"].registered = false; db.registered-- }},
		{1, func(db *DB, _ []*Producer) {
			db.CreateChannel("t", "b")
			t := db.topics["t"]
			t.channels.chunks[0][1].name = "b"
		}},
		{4, func(db *DB, ps []*Producer) {
			c, _ := db.topics["t"].channels.Get("c")
			c.producers = append(c.producers, ps[0])
		}},
		{5, func(db *DB, ps []*Producer) { ps[1].topics[db.topics["t"]]++ }},
		{6, func(db *DB, ps []*Producer) { ps[2].gone = true }},
		{6, func(db *DB, _ []*Producer) {
			c := db.producers.chunks[0]
			c[0], c[1] = c[1], c[0]
		}},
		{7, func(db *DB, _ []*Producer) { db.registrations++ }},
		{7, func(db *DB, _ []*Producer) { db.channels-- }},
		{8, func(db *DB, _ []*Producer) { db.topics["t"].producers[0].tomb.dead = true }},
	} {
		db, ps := build()
		tt.breakIt(db, ps)
		err := db.Check()
		if want := fmt.Sprintf("invariant %d:", tt.invariant); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("invariant %d broken: Check says %v", tt.invariant, err)
		}
	}
}

// TestLookupNeverNil: answers are empty lists, never null.
func TestLookupNeverNil(t *testing.T) {
	t.Parallel()
	db := New(time.Minute)
	db.CreateTopic("t")
	channels, producers, ok := db.Lookup("t", nil, nil)
	if !ok || channels == nil || producers == nil {
		t.Fatalf("Lookup(t): %v, %v, %t; want empty lists, true", channels, producers, ok)
	}
	if channels, producers, _ := db.Lookup(Wildcard, nil, nil); channels == nil || producers == nil {
		t.Fatalf("Lookup(*): %v, %v; want empty lists", channels, producers)
	}
	for _, names := range [][]string{db.Channels("t"), db.Channels("nope"), db.Channels(Wildcard), New(time.Minute).Topics()} {
		if names == nil {
			t.Fatal("a list of names is nil")
		}
	}
}

// TestTopicsMapShrinks: the topic map is made again once a deletion has
// left it a quarter of its peak, and the registry answers as before.
func TestTopicsMapShrinks(t *testing.T) {
	t.Parallel()
	db := New(time.Minute)
	for i := range 1000 {
		db.CreateChannel(fmt.Sprintf("t%04d", i), "c")
	}
	for i := range 700 {
		db.DeleteTopic(fmt.Sprintf("t%04d", i))
	}
	if db.topicsPeak != 1000 {
		t.Fatalf("peak %d with 300 of 1000 topics left; want 1000 (not made again yet)", db.topicsPeak)
	}
	db.DeleteTopic("t0700")
	if db.topicsPeak != 1000 {
		t.Fatalf("peak %d with 299 left; want 1000", db.topicsPeak)
	}
	for i := 701; i < 750; i++ {
		db.DeleteTopic(fmt.Sprintf("t%04d", i))
	}
	if db.topicsPeak != 250 || len(db.Topics()) != 250 {
		t.Fatalf("peak %d, %d topics, after deletions down to a quarter; want 250 and 250", db.topicsPeak, len(db.Topics()))
	}
	check(t, db)
	for _, n := range []int{63, 64} {
		small := New(time.Minute)
		for i := range n {
			small.CreateTopic(fmt.Sprint(i))
		}
		small.DeleteTopic(Wildcard)
		if made := small.topicsPeak < n; made != (n >= 64) {
			t.Fatalf("a map of %d topics, all deleted: made again %t; want %t (from 64 on)", n, made, n >= 64)
		}
	}
}
