package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/bench/internal/harness"
)

func TestPercentiles(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", ms(7), 50, 7 * time.Millisecond},
		{"single p99", ms(7), 99, 7 * time.Millisecond},
		{"odd median", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"even median is lower", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p100 is max", ms(hundred...), 100, 100 * time.Millisecond},
		{"tiny p is min", ms(hundred...), 0.001, 1 * time.Millisecond},
		{"p99 of 10 is max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(p=%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
	lat := ms(5, 1, 4, 2, 3, 100, 6, 7, 8, 9)
	if p50, p99, mx := summarize(lat); p50 != 5*time.Millisecond || p99 != 100*time.Millisecond || mx != 100*time.Millisecond || !slices.IsSorted(lat) {
		t.Errorf("summarize = %v, %v, %v, sorted: %v; want 5ms, 100ms, 100ms, true", p50, p99, mx, slices.IsSorted(lat))
	}
	if a, b, c := summarize(nil); a != 0 || b != 0 || c != 0 {
		t.Errorf("summarize(nil) = %v, %v, %v; want zeros", a, b, c)
	}
}

func TestProc(t *testing.T) {
	if _, err := cpuSeconds(1 << 30); err == nil {
		t.Error("nonexistent pid: no error")
	}
	if rss, peak := harness.MemKiB(os.Getpid()); rss == nil || peak == nil || *rss == 0 || *peak < *rss {
		t.Errorf("own memory: RSS %v, peak %v", rss, peak)
	}
	if rss, _ := harness.MemKiB(1 << 30); rss != nil {
		t.Error("nonexistent pid: a memory figure")
	}
	if d, other := startCPU(1 << 30).stop(); d != nil || other != nil {
		t.Errorf("nonexistent pid: daemon %v, other %v; want nil, nil", d, other)
	}
	if d, other := startCPU(os.Getpid()).stop(); d == nil || other == nil || *other < 0 {
		t.Errorf("own pid: daemon %v, other %v; want figures", d, other)
	}
}

func TestAssignTopics(t *testing.T) {
	for _, w := range presets {
		assign := assignTopics(w.Producers, w.Topics, w.PerTopic)
		perTopic := make([]map[int]bool, w.Topics)
		lo, hi := w.Topics, 0
		for p, topics := range assign {
			lo, hi = min(lo, len(topics)), max(hi, len(topics))
			for _, tp := range topics {
				if perTopic[tp] == nil {
					perTopic[tp] = map[int]bool{}
				}
				if perTopic[tp][p] {
					t.Fatalf("%s: producer %d has topic %d twice", w.Preset, p, tp)
				}
				perTopic[tp][p] = true
			}
		}
		for tp, ps := range perTopic {
			if len(ps) != w.PerTopic {
				t.Fatalf("%s: topic %d has %d producers, want %d", w.Preset, tp, len(ps), w.PerTopic)
			}
			for _, p := range topicProducers(tp, w.Producers, w.PerTopic) {
				if !ps[p] {
					t.Fatalf("%s: topicProducers(%d) lists %d, assignTopics does not", w.Preset, tp, p)
				}
			}
		}
		if hi-lo > 1 {
			t.Errorf("%s: unbalanced, producers have %d..%d topics", w.Preset, lo, hi)
		}
	}
	// perTopic == producers: every producer has every topic.
	for p, topics := range assignTopics(3, 5, 3) {
		if len(topics) != 5 {
			t.Errorf("producer %d: %d topics, want 5", p, len(topics))
		}
	}
}

func TestSameSet(t *testing.T) {
	if err := sameSet([]string{"b", "a"}, []string{"a", "b"}); err != nil {
		t.Errorf("permutation: %v", err)
	}
	if err := sameSet([]string{}, nil); err != nil {
		t.Errorf("empty: %v", err)
	}
	for _, got := range [][]string{{"a"}, {"a", "b", "c"}, {"a", "a"}, {"a", "c"}} {
		if err := sameSet(got, []string{"a", "b"}); err == nil {
			t.Errorf("sameSet(%q, [a b]): no error", got)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-preset", "medium", "-channels", "0", "-binary", "a,b", "-binary", "c", "-duration", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.workload != (workload{Preset: "medium+custom", Producers: 100, Topics: 2000, PerTopic: 10}) ||
		strings.Join(o.binaries, " ") != "a b c" || o.verify != 200 {
		t.Errorf("workload %+v, binaries %q, verify sample %d; want medium with no channels, a b c, 200", o.workload, o.binaries, o.verify)
	}
	if o.pingInterval != 15*time.Second || strings.Join(o.registerModes, ",") != "pipelined" ||
		o.churnConns != 16 || o.churnRate != 2000 || o.churnDuration != 3*time.Second || !o.churnNodes {
		t.Errorf("defaults: ping %v, modes %q, churn %d at %v for %v, nodes %v; want 15s (as nsqd), pipelined, 16 at 2000 for -duration, true",
			o.pingInterval, o.registerModes, o.churnConns, o.churnRate, o.churnDuration, o.churnNodes)
	}
	o, err = parseFlags([]string{"-binary", "x", "-preset", "xlarge", "-register-modes", "sequential,pipelined",
		"-churn-conns", "4", "-churn-rate", "500", "-churn-duration", "2s", "-churn-nodes=false",
		"-block-profile", "b.pb.gz", "-block-profile-rate", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.workload != (workload{Preset: "xlarge", Producers: 5000, Topics: 100000, PerTopic: 20, Channels: 5}) || o.registers() != 12_000_000 || o.verify != 200 {
		t.Errorf("xlarge: %+v, %d registrations, verify %d; want 5000, 100000, 20, 5: 12M, 200", o.workload, o.registers(), o.verify)
	}
	if strings.Join(o.registerModes, ",") != "sequential,pipelined" || o.churnConns != 4 || o.churnRate != 500 ||
		o.churnDuration != 2*time.Second || o.churnNodes || o.blockProfile != "b.pb.gz" || o.blockProfileRate != 1 {
		t.Errorf("flags: %q %d %v %v %v %q %d", o.registerModes, o.churnConns, o.churnRate, o.churnDuration, o.churnNodes, o.blockProfile, o.blockProfileRate)
	}
	for _, ok := range [][]string{{"-binary", "x", "-churn-conns", "0"}, {"-binary", "a", "-soak", "30m"}, {"-binary", "a,b", "-auth"},
		{"-binary", "a", "-variant-flag=--log-format=json", "-auth"}} {
		if _, err := parseFlags(ok, io.Discard); err != nil {
			t.Errorf("parseFlags(%q): %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                                    "no target",
		"-binary x -preset huge":              "-preset",
		"-binary x -producers 2 -per-topic 3": "-per-topic",
		"-binary x -register-modes batched":   "-register-modes",
		"-binary x -register-modes sequential,sequential":  "-register-modes",
		"-binary x -churn-conns -1":                        "-churn-conns",
		"-binary x -topics 10 -churn-conns 11":             "one per topic",
		"-binary x -producers 29990 -per-topic 1":          "-producers + -churn-conns",
		"-binary x -churn-rate 0":                          "-churn-rate",
		"-binary x -churn-duration -1s":                    "-churn-duration",
		"-binary x -churn-conns 0 -block-profile b":        "-block-profile",
		"-binary x -block-profile b -block-profile-rate 0": "-block-profile-rate",
		"-binary a -binary b -soak 30m":                    "one -binary",
		"-binary a -soak 30m -churn-conns 0":               "-churn-conns",
		"-binary a -soak 30m -soak-read-rate 0":            "-soak-read-rate",
		"-binary a -soak 30m -soak-every 0s":               "-soak-every",
		"-binary a -auth -soak 30m":                        "-auth",
		"-binary a -auth -block-profile b":                 "-auth",
		"-binary a -variant-flag=-x -soak 30m":             "-variant-flag",
	} {
		if _, err := parseFlags(strings.Fields(bad), io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseFlags(%q): error %v; want one about %s", bad, err, want)
		}
	}
}

// fakeLookupd is a minimal registration server on loopback: it answers
// IDENTIFY, REGISTER, UNREGISTER and PING like nsqlookupd, keeps each
// connection's channel registrations, and records what it saw.
type fakeLookupd struct {
	addr string

	mu         sync.Mutex
	registers  int
	unregister int
	pings      map[string]int // hostname -> PINGs
	channels   map[string]int // "topic channel" -> registrations held
	pipelined  int            // commands that arrived before the previous answer was read
}

func startFakeLookupd(t *testing.T) *fakeLookupd {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLookupd{addr: l.Addr().String(), pings: map[string]int{}, channels: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(c)
			}()
			t.Cleanup(func() { c.Close() })
		}
	}()
	return f
}

func (f *fakeLookupd) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	frame := func(s string) {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(s)))
		c.Write(append(b, s...))
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "  V1" {
		frame("E_BAD_PROTOCOL")
		return
	}
	hostname := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[0] != "IDENTIFY" && r.Buffered() > 0 {
			f.mu.Lock() // IDENTIFY's body follows its line: not a second command
			f.pipelined++
			f.mu.Unlock()
		}
		switch {
		case len(fields) == 0:
			frame("E_INVALID")
		case fields[0] == "IDENTIFY":
			var n [4]byte
			io.ReadFull(r, n[:])
			body := make([]byte, binary.BigEndian.Uint32(n[:]))
			io.ReadFull(r, body)
			var id identity
			json.Unmarshal(body, &id)
			hostname = id.Hostname
			frame(`{"broadcast_address":"127.0.0.1","tcp_port":1,"http_port":2,"version":"1.3.0"}`)
		case fields[0] == "PING":
			f.mu.Lock()
			f.pings[hostname]++
			f.mu.Unlock()
			frame("OK")
		case fields[0] == "REGISTER" && len(fields) >= 2:
			f.mu.Lock()
			f.registers++
			if len(fields) == 3 {
				f.channels[fields[1]+" "+fields[2]]++
			}
			f.mu.Unlock()
			frame("OK")
		case fields[0] == "UNREGISTER" && len(fields) == 3:
			key := fields[1] + " " + fields[2]
			f.mu.Lock()
			f.unregister++
			held := f.channels[key]
			if held > 1 {
				f.channels[key]--
			} else {
				delete(f.channels, key)
			}
			f.mu.Unlock()
			if held == 0 {
				frame("E_INVALID not registered: " + key) // the client must fail
				continue
			}
			frame("OK")
		default:
			frame("E_INVALID invalid command " + fields[0])
		}
	}
}

// TestProducerRegister runs one producer against the fake server over
// loopback in both registration modes.
func TestProducerRegister(t *testing.T) {
	for _, mode := range []string{modePipelined, modeSequential} {
		t.Run(mode, func(t *testing.T) {
			srv := startFakeLookupd(t)
			w := workload{Producers: 1, Topics: 50, PerTopic: 1, Channels: 3}
			nm := newNaming("test", w)
			p, ans, err := dialProducer(context.Background(), srv.addr, 0, nm, assignTopics(1, 50, 1)[0], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if ans.TCPPort != 1 || ans.HTTPPort != 2 {
				t.Errorf("IDENTIFY answer %+v", ans)
			}
			first, last, n, err := p.register(nm, nm.channels, mode, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Ping(5 * time.Second); err != nil {
				t.Errorf("ping: %v", err)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if n != w.registers() || srv.registers != n || last.Before(first) {
				t.Errorf("register: n=%d, server saw %d; want %d", n, srv.registers, w.registers())
			}
			if got := len(srv.channels); got != w.Topics*w.Channels {
				t.Errorf("server holds %d channel registrations; want %d", got, w.Topics*w.Channels)
			}
			if mode == modeSequential && srv.pipelined != 0 {
				t.Errorf("sequential: %d commands arrived before the previous answer was read", srv.pipelined)
			}
		})
	}
}

// peerJSON is producer i as /lookup and /nodes list it.
func peerJSON(nm *naming, i int) string {
	return fmt.Sprintf(`{"remote_address":"127.0.0.1:1","hostname":%q,"broadcast_address":"127.0.0.1","tcp_port":%d,"http_port":%d,"version":"1.3.0"}`,
		nm.hostname(i), fakeTCPBase+i, fakeHTTPBase+i)
}

// serve answers each path with its body over loopback, and returns a
// client of it.
func serve(t *testing.T, bodies map[string]string) *httpClient {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if body, ok := bodies[r.URL.Path]; ok {
			io.WriteString(rw, body)
		} else {
			http.NotFound(rw, r)
		}
	}))
	h := newHTTPClient(strings.TrimPrefix(srv.URL, "http://"), 1, 5*time.Second)
	t.Cleanup(func() { h.close(); srv.Close() })
	return h
}

// TestVerifyRejectsWrongAnswers serves hand-made answers over loopback and
// checks that verification accepts the right one and rejects wrong ones.
func TestVerifyRejectsWrongAnswers(t *testing.T) {
	w := workload{Producers: 3, Topics: 1, PerTopic: 2, Channels: 2}
	nm := newNaming("v", w)
	e := expectation{w: w, nm: nm, assign: assignTopics(3, 1, 2)}
	peer := func(i int) string { return peerJSON(nm, i) }
	for name, c := range map[string]struct {
		lookup string
		ok     bool
	}{
		"right":           {`{"channels":["ch1","ch0"],"producers":[` + peer(1) + `,` + peer(0) + `]}`, true},
		"missing channel": {`{"channels":["ch1"],"producers":[` + peer(1) + `,` + peer(0) + `]}`, false},
		"wrong producer":  {`{"channels":["ch0","ch1"],"producers":[` + peer(2) + `,` + peer(0) + `]}`, false},
		"duplicate":       {`{"channels":["ch0","ch1"],"producers":[` + peer(0) + `,` + peer(0) + `]}`, false},
		"null lists":      {`{"channels":null,"producers":null}`, false},
	} {
		h := serve(t, map[string]string{"/lookup": c.lookup, "/channels": `{"channels":["ch0","ch1"]}`})
		if err := e.checkTopic(context.Background(), h, 0); (err == nil) != c.ok {
			t.Errorf("%s: checkTopic error = %v, want ok=%v", name, err, c.ok)
		}
	}
}

// TestAuthRun: the auth run's daemon flags name the harness's auth
// server, which grants the bench secret everything and refuses others, and
// its client sends the secret.
func TestAuthRun(t *testing.T) {
	addr, stop, err := startAuthServer()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	o := (&options{daemonFlags: []string{"--log-level=warn"}}).withAuth(addr)
	if got := strings.Join(o.daemonFlags, " "); got != "--log-level=warn --auth-http-address="+addr+" --http-admin-allow=127.0.0.1" {
		t.Errorf("daemon flags: %s", got)
	}
	for secret, want := range map[string]string{
		benchSecret: `200 {"ttl":3600,"identity":"bench","authorizations":[{"topic":".*","channels":[".*"],"permissions":["subscribe","publish"]}]}`,
		"other":     "403 ",
	} {
		resp, err := http.Get("http://" + addr + "/auth?common_name=&remote_ip=127.0.0.1&secret=" + secret + "&tls=false")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := fmt.Sprintf("%d %s", resp.StatusCode, body); got != want {
			t.Errorf("secret %s: got %s; want %s", secret, got, want)
		}
	}
	// the client sends it
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { got = req.Header.Get("Authorization") }))
	defer srv.Close()
	h := newHTTPClient(strings.TrimPrefix(srv.URL, "http://"), 1, 5*time.Second)
	h.secret = o.secret
	if _, err := h.getDiscard(context.Background(), "/lookup?topic=t"); err != nil || got != "Bearer "+benchSecret {
		t.Errorf("Authorization: got %q (%v); want Bearer %s", got, err, benchSecret)
	}
}
