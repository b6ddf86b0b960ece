package nsqlookupd

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// TestRaceStress runs producers that register, unregister and disconnect
// in loops while HTTP readers query and tombstone, under -race; then the
// registry must hold nothing of them.
func TestRaceStress(t *testing.T) {
	l := startLookupd(t, quietLog)
	const producers, rounds = 20, 40
	topics := []string{"s0", "s1", "s2#ephemeral"}
	channels := []string{"a", "b#ephemeral"}

	var wg, readers sync.WaitGroup
	var failed atomic.Value
	var requests, connections atomic.Int64
	fail := func(err error) { failed.CompareAndSwap(nil, err) }
	stop := make(chan struct{})

	client := &http.Client{Timeout: ioTimeout}
	base := "http://" + l.RealHTTPAddr().String()
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func(r int) {
			defer readers.Done()
			paths := []string{"/lookup?topic=s0", "/nodes", "/debug", "/channels?topic=*", "/lookup?topic=*", "/topics"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var resp *http.Response
				var err error
				if i%5 == r {
					resp, err = client.Post(base+fmt.Sprintf("/topic/tombstone?topic=s%d&node=127.0.0.1:%d", i%3, 10001+2*(i%producers)), "", nil)
				} else {
					resp, err = client.Get(base + paths[(i+r)%len(paths)])
				}
				if err != nil {
					fail(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				requests.Add(1)
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
					fail(fmt.Errorf("%s: got status %d; want 200 or 404", resp.Request.URL, resp.StatusCode))
				}
			}
		}(r)
	}

	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(p)))
			body := identifyJSON(10000+2*p, 10001+2*p)
			for round := 0; round < rounds; round++ {
				conn, err := net.DialTimeout("tcp", l.RealTCPAddr().String(), ioTimeout)
				if err != nil {
					fail(err)
					return
				}
				connections.Add(1)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				var cmds strings.Builder
				cmds.WriteString("  V1IDENTIFY\n" + sizePrefix(int32(len(body))) + body)
				answers := 1
				for k := 0; k < 6; k++ {
					topic, ch := topics[rng.Intn(len(topics))], channels[rng.Intn(len(channels))]
					switch rng.Intn(4) {
					case 0, 1:
						fmt.Fprintf(&cmds, "REGISTER %s %s\n", topic, ch)
					case 2:
						fmt.Fprintf(&cmds, "UNREGISTER %s %s\n", topic, ch)
					case 3:
						fmt.Fprintf(&cmds, "UNREGISTER %s\n", topic)
					}
					answers++
				}
				if _, err := conn.Write([]byte(cmds.String())); err != nil {
					fail(err)
				}
				// Read every answer, or (one round in three) vanish
				// with commands in flight.
				if round%3 != 0 {
					r := bufio.NewReader(conn)
					for a := 0; a < answers; a++ {
						var size [4]byte
						if _, err := io.ReadFull(r, size[:]); err != nil {
							fail(fmt.Errorf("producer %d round %d answer %d: %w", p, round, a, err))
							break
						}
						frame := make([]byte, int(size[0])<<24|int(size[1])<<16|int(size[2])<<8|int(size[3]))
						io.ReadFull(r, frame)
						if a > 0 && string(frame) != "OK" {
							fail(fmt.Errorf("producer %d: got %q; want OK", p, frame))
						}
					}
				}
				conn.Close()
			}
		}(p)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("producers still running after 30s")
	}
	close(stop)
	readers.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d producer connections, %d HTTP requests meanwhile", connections.Load(), requests.Load())

	// All producers are gone: nothing of them may remain.
	test.Eventually(t, 5*time.Second, func() bool { return peerCount(l) == 0 && trackedConns(l) == 0 })
	var nodes struct{ Producers []interface{} }
	getJSON(t, l, "/nodes", &nodes)
	if len(nodes.Producers) != 0 {
		t.Fatalf("/nodes: got %d producers; want 0", len(nodes.Producers))
	}
	var debug map[string][]interface{}
	getJSON(t, l, "/debug", &debug)
	if len(debug) != 0 {
		t.Fatalf("/debug: got %v; want {}", debug)
	}
	var tops struct{ Topics []string }
	getJSON(t, l, "/topics", &tops)
	for _, topic := range tops.Topics {
		if strings.HasSuffix(topic, "#ephemeral") {
			t.Fatalf("/topics: got %v; want no ephemeral topic left", tops.Topics)
		}
	}
	// (An ephemeral channel a producer left through UNREGISTER of its
	// topic stays, empty, as in v1.3.0: /debug, empty above, shows none
	// holds a producer.)
	if err := l.db.Check(); err != nil {
		t.Fatalf("registry after the stress: %v", err)
	}
	if got := l.panics.Load(); got != 0 {
		t.Fatalf("panics: got %d; want 0", got)
	}
}

func TestExitTwiceAndBounded(t *testing.T) {
	t.Parallel()
	l := newLookupd(t, nil)
	mainDone := make(chan error, 1)
	go func() { mainDone <- l.Main() }()

	// live connections of every kind: identified, half-sent, HTTP keep-alive
	p := connectProducer(t, l, 1, 2)
	p.mustOK("REGISTER t")
	half := dial(t, l)
	half.write("REGIS")
	httpDo(t, l, "GET", "/ping")

	exited := make(chan struct{})
	go func() {
		l.Exit()
		l.Exit() // harmless
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("Exit did not return within 5s with live connections")
	}
	if err := <-mainDone; err != nil {
		t.Fatalf("Main: got %v; want nil after Exit", err)
	}
	p.expectClosed()
	half.expectClosed()
	for _, addr := range []string{l.RealTCPAddr().String(), l.RealHTTPAddr().String()} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Exit", addr)
		}
	}
}

func TestExitWithoutMain(t *testing.T) {
	t.Parallel()
	l := newLookupd(t, nil)
	l.Exit()
	if err := l.Main(); err != nil {
		t.Fatalf("Main after Exit: got %v; want nil", err)
	}
}

func TestNewListenFailure(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = New(testOptions(t, func(o *Options) { o.HTTPAddress = busy.Addr().String() }))
	want := fmt.Sprintf("listen (%s) failed - ", busy.Addr())
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v; want an error starting %q", err, want)
	}
}

// TestShortReadTimeoutWarns: a producer read timeout within nsqd's 15 s
// heartbeat would evict idle, healthy nsqd: start-up says so.
func TestShortReadTimeoutWarns(t *testing.T) {
	for _, tt := range []struct {
		timeout time.Duration
		warn    bool
	}{{0, false}, {3 * time.Second, true}, {15 * time.Second, true}, {16 * time.Second, false}, {time.Minute, false}} {
		log := newLogLines(t)
		startLookupd(t, func(o *Options) { o.Logger = log; o.ProducerReadTimeout = tt.timeout })
		if got := log.has("WARNING: producer-read-timeout " + tt.timeout.String() + " is not longer than nsqd's 15s heartbeat"); got != tt.warn {
			t.Errorf("timeout %s: warned %t; want %t", tt.timeout, got, tt.warn)
		}
	}
}
