package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	p := &pacer{start: t0, interval: 8 * ms, maxLag: 100 * ms}
	steps := []struct {
		now  time.Duration // since t0
		want time.Duration
	}{
		{0, 0},            // command 0 due at 0
		{1 * ms, 7 * ms},  // command 1 due at 8
		{8 * ms, 8 * ms},  // command 2 due at 16
		{30 * ms, 0},      // command 3 due at 24: late, at once
		{30 * ms, 2 * ms}, // command 4 due at 32
		{40 * ms, 0},      // command 5 due at 40
		// 300 ms late: the schedule restarts, no burst of 37 commands.
		{348 * ms, 0},      // command 6, due at 48: now due at 348
		{349 * ms, 7 * ms}, // command 7 due at 356
	}
	for i, s := range steps {
		if got := p.wait(t0.Add(s.now)); got != s.want {
			t.Fatalf("command %d at +%v: wait %v; want %v", i, s.now, got, s.want)
		}
	}
}

func TestPacerRate(t *testing.T) {
	// 16 connections at 2000/s between them: one command each 8 ms each,
	// so 2000 commands over one simulated second, sent on time.
	interval := churnInterval(16, 2000)
	if interval != 8*time.Millisecond {
		t.Fatalf("churnInterval(16, 2000) = %v; want 8ms", interval)
	}
	start := time.Unix(0, 0)
	sent := 0
	for j := range 16 {
		p := &pacer{start: start.Add(interval * time.Duration(j) / 16), interval: interval, maxLag: churnMaxLag}
		now := start
		for {
			now = now.Add(p.wait(now))
			if !now.Before(start.Add(time.Second)) {
				break
			}
			sent++
		}
	}
	if sent != 2000 {
		t.Errorf("sent %d commands in one second; want 2000", sent)
	}
}

func TestChurnLayout(t *testing.T) {
	for _, c := range []struct{ n, topics int }{{16, 100}, {16, 16}, {3, 10}, {1, 5}} {
		l := churnLayout{c.n}
		seen := make([]int, c.topics)
		for j := range c.n {
			for _, i := range l.topicsOf(j, c.topics) {
				seen[i]++
				if l.churnerOf(i) != j {
					t.Errorf("n=%d: topic %d in topicsOf(%d) but churnerOf = %d", c.n, i, j, l.churnerOf(i))
				}
			}
		}
		for i, k := range seen {
			if k != 1 {
				t.Errorf("n=%d topics=%d: topic %d held by %d connections; want 1", c.n, c.topics, i, k)
			}
		}
	}
}

func TestChurnChannelNames(t *testing.T) {
	for _, c := range []struct{ j, seq int }{{0, 0}, {15, 123456}, {7, 1}} {
		name := churnChannel(c.j, c.seq)
		if !strings.HasSuffix(name, "#ephemeral") || len(name) > 64 {
			t.Errorf("churnChannel(%d, %d) = %q: not a valid ephemeral channel", c.j, c.seq, name)
		}
		if j, ok := parseChurnChannel(name); !ok || j != c.j {
			t.Errorf("parseChurnChannel(%q) = %d, %v; want %d, true", name, j, ok, c.j)
		}
	}
	for _, bad := range []string{"ch0", "c1-2", "c1#ephemeral", "x1-2#ephemeral", "c01-2#ephemeral", "c1-2-3#ephemeral", "c-1-2#ephemeral", "c1-#ephemeral"} {
		if j, ok := parseChurnChannel(bad); ok {
			t.Errorf("parseChurnChannel(%q) = %d, true; want false", bad, j)
		}
	}
}

func TestChurnState(t *testing.T) {
	s := churnState{j: 3, topics: []int{3, 19, 35}, maxLive: 4}
	r := rand.New(rand.NewPCG(1, 2))
	live := map[liveChannel]bool{}
	registers, unregisters := 0, 0
	for range 10000 {
		op := s.next(r)
		if op.register {
			if live[op.ch] {
				t.Fatalf("REGISTER of %v, alive already", op.ch)
			}
			if !slices.Contains(s.topics, op.ch.topic) {
				t.Fatalf("REGISTER in topic %d, not the connection's", op.ch.topic)
			}
			live[op.ch] = true
			registers++
		} else {
			if !live[op.ch] || s.live[op.index] != op.ch {
				t.Fatalf("UNREGISTER of %v (index %d), not alive", op.ch, op.index)
			}
			delete(live, op.ch)
			unregisters++
		}
		s.apply(op)
		if len(s.live) != len(live) || len(s.live) > s.maxLive {
			t.Fatalf("%d channels alive, tracked %d; max %d", len(s.live), len(live), s.maxLive)
		}
	}
	// Neither kind of command may starve the other.
	if registers < 4000 || unregisters < 4000 {
		t.Errorf("%d REGISTER, %d UNREGISTER of 10000; want both near half", registers, unregisters)
	}
}

func TestBlockProfilePath(t *testing.T) {
	for _, c := range []struct {
		path     string
		index, n int
		want     string
	}{
		{"blk.pb.gz", 0, 1, "blk.pb.gz"},
		{"blk.pb.gz", 1, 2, "blk.1.pb.gz"},
		{"/tmp/x.y/blk", 0, 2, "/tmp/x.y/blk.0"},
		{"out/block.pprof", 2, 3, "out/block.2.pprof"},
	} {
		if got := blockProfilePath(c.path, c.index, c.n); got != c.want {
			t.Errorf("blockProfilePath(%q, %d, %d) = %q; want %q", c.path, c.index, c.n, got, c.want)
		}
	}
}

func TestHasFlag(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "daemon")
	script := "#!/bin/sh\ncat >&2 <<EOF\nUsage of nsqlookupd:\n  -block-profile-rate int\n    \tsample rate\n  -tcp-address string\nEOF\nexit 2\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !hasFlag(ctx, bin, "block-profile-rate") {
		t.Error("block-profile-rate not found")
	}
	for _, name := range []string{"block-profile", "sample", "http-address"} {
		if hasFlag(ctx, bin, name) {
			t.Errorf("%s found", name)
		}
	}
	if hasFlag(ctx, filepath.Join(t.TempDir(), "missing"), "tcp-address") {
		t.Error("a missing binary has flags")
	}
}

// TestChurner runs two churn connections against the fake server: every
// command one at a time, the pace kept, and no channel left behind.
func TestChurner(t *testing.T) {
	srv := startFakeLookupd(t)
	w := workload{Producers: 1, Topics: 4, PerTopic: 1, Channels: 1}
	nm := newNaming("ch", w)
	layout := churnLayout{2}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	interval := churnInterval(2, 200) // 100 commands/s each
	var churners []*churner
	errs := make(chan error, 2)
	for j := range layout.n {
		p, _, err := dialProducer(context.Background(), srv.addr, w.Producers+j, nm, layout.topicsOf(j, w.Topics), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, _, _, err := p.register(nm, nil, modeSequential, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c := &churner{p: p, state: churnState{j: j, topics: p.topics, maxLive: 3}, rng: rand.New(rand.NewPCG(1, uint64(j)))}
		churners = append(churners, c)
		pace := &pacer{start: time.Now(), interval: interval, maxLag: churnMaxLag}
		go func() { errs <- c.run(ctx, nm, pace, 5*time.Second) }()
	}
	for range layout.n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, c := range churners {
		total += len(c.lat)
		if c.registers+c.unregisters != len(c.lat) {
			t.Errorf("connection %d: %d REGISTER + %d UNREGISTER, %d round trips", c.state.j, c.registers, c.unregisters, len(c.lat))
		}
		for _, ch := range c.state.live {
			if layout.churnerOf(ch.topic) != c.state.j {
				t.Errorf("connection %d registered in topic %d, not its own", c.state.j, ch.topic)
			}
		}
		if err := c.unregisterLive(nm, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// 0.3 s at 200/s: 60 commands, give or take the start and the end.
	if total < 40 || total > 70 {
		t.Errorf("%d commands in 0.3 s at 200/s", total)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.channels) != 0 {
		t.Errorf("channels left registered after unregisterLive: %v", srv.channels)
	}
	if srv.pipelined != 0 {
		t.Errorf("%d commands arrived before the previous answer was read", srv.pipelined)
	}
}

// TestKeepalive checks that every producer of a fleet PINGs on its own,
// right from the start, and that a busy connection is skipped without
// holding up the others of its keepalive worker.
func TestKeepalive(t *testing.T) {
	srv := startFakeLookupd(t)
	n := keepaliveWorkers + 1 // worker 0 has producers 0 and keepaliveWorkers
	w := workload{Producers: n, Topics: n, PerTopic: 1, Channels: 0}
	nm := newNaming("ka", w)
	f, _, err := connectFleet(context.Background(), srv.addr, nm, 0, assignTopics(n, n, 1), 0, 5*time.Second, func(identity) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	busy := f.prods[0]
	busy.Lock() // as a registration or a churn command would
	locked := true
	defer func() { // before f.close, which waits for the keepalive workers
		if locked {
			busy.Unlock()
		}
	}()
	f.startKeepalive(40 * time.Millisecond)
	pings := func(i int) int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.pings[nm.hostname(i)]
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := 1; i < n; i++ {
		for pings(i) < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("producer %d: %d PINGs after 5 s; want 3", i, pings(i))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if got := pings(0); got != 0 {
		t.Errorf("busy producer got %d PINGs", got)
	}
	busy.Unlock()
	locked = false
	for pings(0) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no PING on the producer once it was free")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.checkAlive(context.Background(), 0); err != nil {
		t.Error(err)
	}
}

// TestVerifyUnderChurn serves hand-made /lookup and /nodes answers and
// checks the churn-aware expectations.
func TestVerifyUnderChurn(t *testing.T) {
	w := workload{Producers: 2, Topics: 2, PerTopic: 1, Channels: 1}
	nm := newNaming("u", w)
	layout := churnLayout{2}
	e := expectation{w: w, nm: nm, assign: assignTopics(2, 2, 1), churn: &layout, ephemeralOK: true}
	// topic 1: producer 1, churn connection 1 (producer 3).
	peers := `[` + peerJSON(nm, 1) + `,` + peerJSON(nm, 3) + `]`
	lookups := map[string]struct {
		channels string
		ok       bool
	}{
		"fleet channel only":      {`["ch0"]`, true},
		"own ephemeral":           {`["ch0","` + churnChannel(1, 5) + `"]`, true},
		"other's ephemeral":       {`["ch0","` + churnChannel(0, 5) + `"]`, false},
		"ephemeral listed twice":  {`["ch0","` + churnChannel(1, 5) + `","` + churnChannel(1, 5) + `"]`, false},
		"fleet channel missing":   {`["` + churnChannel(1, 5) + `"]`, false},
		"unknown non-churn extra": {`["ch0","x#ephemeral"]`, false},
	}
	for name, c := range lookups {
		h := serve(t, map[string]string{"/lookup": `{"channels":` + c.channels + `,"producers":` + peers + `}`, "/channels": `{"channels":` + c.channels + `}`})
		if err := e.checkTopic(context.Background(), h, 1); (err == nil) != c.ok {
			t.Errorf("%s: checkTopic error = %v; want ok=%v", name, err, c.ok)
		}
	}
	// Once churn is over, no ephemeral channel may remain.
	done := e
	done.ephemeralOK = false
	if err := done.checkChannels(1, []string{"ch0", churnChannel(1, 5)}); err == nil {
		t.Error("after churn: an ephemeral channel left, no error")
	}

	node := func(i int, topics string) string {
		return strings.TrimSuffix(peerJSON(nm, i), "}") + `,"tombstones":` + tombstones(topics) + `,"topics":` + topics + `}`
	}
	t0, t1 := `["`+nm.topics[0]+`"]`, `["`+nm.topics[1]+`"]`
	nodes := map[string]struct {
		body string
		ok   bool
	}{
		"right":                  {`{"producers":[` + node(0, t0) + `,` + node(1, t1) + `,` + node(2, t0) + `,` + node(3, t1) + `]}`, true},
		"extra key first":        {`{"x":{"y":[1]},"producers":[` + node(3, t1) + `,` + node(2, t0) + `,` + node(1, t1) + `,` + node(0, t0) + `]}`, true},
		"churn conn missing":     {`{"producers":[` + node(0, t0) + `,` + node(1, t1) + `,` + node(2, t0) + `]}`, false},
		"churn conn wrong topic": {`{"producers":[` + node(0, t0) + `,` + node(1, t1) + `,` + node(2, t1) + `,` + node(3, t1) + `]}`, false},
		"no producers key":       {`{"nodes":[]}`, false},
		"truncated":              {`{"producers":[` + node(0, t0), false},
	}
	for name, c := range nodes {
		if err := e.checkNodes(context.Background(), serve(t, map[string]string{"/nodes": c.body})); (err == nil) != c.ok {
			t.Errorf("/nodes %s: error = %v; want ok=%v", name, err, c.ok)
		}
	}
}

// tombstones returns a JSON list of false, one per topic of a JSON list.
func tombstones(topics string) string {
	n := strings.Count(topics, `"`) / 2
	return "[" + strings.TrimSuffix(strings.Repeat("false,", n), ",") + "]"
}

// TestRunLoadTimeout checks that a request that times out ends the phase,
// marked TimedOut, rather than failing the run or hanging it.
func TestRunLoadTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(rw, "OK")
	}))
	defer srv.Close()
	defer close(release)
	h := newHTTPClient(strings.TrimPrefix(srv.URL, "http://"), 2, 100*time.Millisecond)
	defer h.close()
	st, err := runLoad(context.Background(), h, loadSpec{clients: 2, duration: time.Minute, path: func(*rand.Rand) string { return "/slow" }})
	if err != nil || !st.TimedOut {
		t.Errorf("runLoad on a hanging URL: %+v, %v; want TimedOut and no error", st, err)
	}
	sq, err := sequential(context.Background(), h, "/slow", 3)
	if err != nil || !sq.TimedOut || sq.Samples != 0 {
		t.Errorf("sequential on a hanging URL: %+v, %v; want TimedOut, no samples, no error", sq, err)
	}
	sq, err = sequential(context.Background(), h, "/fast", 3)
	if err != nil || sq.TimedOut || sq.Samples != 3 || sq.Bytes != 2 {
		t.Errorf("sequential: %+v, %v; want 3 samples of 2 bytes", sq, err)
	}
}
