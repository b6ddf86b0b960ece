package nsqlookupd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// Memory: what connections and registrations cost must go away with them
// (docs/differences.md, No leaks). Figures are logged so they can be quoted.

// liveHeap returns the live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // the second cycle frees what the first one's finalizers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// kib formats a byte count as KiB, signed.
func kib(n int64) string {
	return fmt.Sprintf("%d KiB", n/1024)
}

// registryLens returns how many topic registrations and producers the
// registry holds.
func registryLens(l *NSQLookupd) (topics, producers int) {
	s := l.db.Stats(time.Now())
	return s.Topics, s.Producers
}

func TestMemoryConnectionsClose(t *testing.T) {
	const n, workers = 2000, 8
	ensureFDs(t, 2*n+256)
	l := startLookupd(t, quietLog)
	before := liveHeap()

	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				conn, err := net.DialTimeout("tcp", l.RealTCPAddr().String(), ioTimeout)
				if err == nil {
					conns[i] = conn
					conn.SetDeadline(time.Now().Add(10 * time.Second))
					_, err = conn.Write([]byte("  V1"))
				}
				if err == nil && i%2 == 0 {
					// Half identify, each with its own ephemeral topic.
					body := identifyJSON(20000+i, 20001+i)
					_, err = fmt.Fprintf(conn, "IDENTIFY\n%s%sREGISTER conn-%d#ephemeral c#ephemeral\n",
						sizePrefix(int32(len(body))), body, i)
					if err == nil {
						_, err = io.ReadFull(conn, make([]byte, 4+len(l.identifyResponse)+4+2))
					}
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	test.Eventually(t, 10*time.Second, func() bool { return trackedConns(l) == n })
	topics, peers := registryLens(l)
	if topics != n/2 || peers != n/2 {
		t.Fatalf("with %d connections open: got %d topics, %d peers; want %d and %d", n, topics, peers, n/2, n/2)
	}
	peak := liveHeap()

	for _, c := range conns {
		c.Close()
	}
	conns = nil // the client side's memory is not the daemon's
	test.Eventually(t, 10*time.Second, func() bool {
		topics, peers := registryLens(l)
		return trackedConns(l) == 0 && topics == 0 && peers == 0
	})
	after := liveHeap()

	grown, retained := int64(peak)-int64(before), int64(after)-int64(before)
	t.Logf("%d connections (%d identified, one ephemeral topic each): heap %s before, %s with them open (+%s), %s after they closed (%+d KiB retained)",
		n, n/2, kib(int64(before)), kib(int64(peak)), kib(grown), kib(int64(after)), retained/1024)
	// Generous: what the connections cost may not stay, but the runtime
	// keeps caches of its own. A heap profile shows the ~1 MiB left to be
	// the runtime's free list of goroutine descriptors (one per connection
	// served, kept for reuse), not the daemon's maps.
	if limit := max(grown/4, 256<<10); retained > limit {
		t.Fatalf("retained %d bytes of the %d the connections took; want at most %d", retained, grown, limit)
	}
}

// registerMany registers the producer c in count channels of topic, each
// name made by name(i), pipelining the commands.
func registerMany(t *testing.T, c *tcpClient, topic string, count int, name func(int) string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c.conn, 64<<10)
		c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for i := 0; i < count; i++ {
			fmt.Fprintf(w, "REGISTER %s %s\n", topic, name(i))
		}
		errc <- w.Flush()
	}()
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	frame := make([]byte, 6)
	for i := 0; i < count; i++ {
		if _, err := io.ReadFull(c.r, frame); err != nil {
			t.Fatalf("answer %d: %s", i, err)
		}
		if string(frame[4:]) != "OK" {
			t.Fatalf("answer %d: got %q; want OK", i, frame[4:])
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %s", err)
	}
}

// TestMemoryChannelRegistrations registers one producer in 50 000 channels
// of one topic, disconnects it, and checks that the registry and the heap
// shrink back: entirely for ephemeral channels; for durable ones, to what
// the same registrations cost when made without any producer.
func TestMemoryChannelRegistrations(t *testing.T) {
	const count = 50000
	const topic = "mem"

	// Reference: the durable registrations, made without a producer.
	refBefore := liveHeap()
	ref := registry.New(time.Minute)
	ref.CreateTopic(topic)
	for i := range count {
		ref.CreateChannel(topic, fmt.Sprintf("c-%d", i))
	}
	refCost := int64(liveHeap()) - int64(refBefore)
	runtime.KeepAlive(ref)
	t.Logf("reference: %d durable channels created without a producer cost %s", count, kib(refCost))

	for _, tt := range []struct {
		name      string
		suffix    string
		wantLeft  int   // channels left after the disconnect
		allowance int64 // heap the registrations left may keep
	}{
		{"ephemeral", "#ephemeral", 0, 0},
		{"durable", "", count, refCost + refCost/4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := startLookupd(t, quietLog)
			before := liveHeap()

			c := connectProducer(t, l, 30150, 30151)
			c.mustOK("REGISTER " + topic)
			registerMany(t, c, topic, count, func(i int) string { return fmt.Sprintf("c-%d%s", i, tt.suffix) })
			st := l.db.Stats(time.Now())
			channels, regs := st.Channels, st.Registrations
			if channels != count || regs != count+1 {
				t.Fatalf("registered: got %d channels, %d registrations of the producer; want %d and %d",
					channels, regs, count, count+1)
			}
			peak := liveHeap()

			c.conn.Close()
			test.Eventually(t, 10*time.Second, func() bool {
				_, peers := registryLens(l)
				return peers == 0 && trackedConns(l) == 0
			})
			st = l.db.Stats(time.Now())
			if left := len(l.db.Channels(topic)); left != tt.wantLeft || st.Registrations != 0 {
				t.Fatalf("after the disconnect: got %d channels, %d registrations; want %d, 0",
					left, st.Registrations, tt.wantLeft)
			}
			after := liveHeap()

			grown, retained := int64(peak)-int64(before), int64(after)-int64(before)
			t.Logf("%d %s channels: heap %s before, %s registered (+%s), %s after the disconnect (%+d KiB retained, %d KiB allowed)",
				count, tt.name, kib(int64(before)), kib(int64(peak)), kib(grown), kib(int64(after)),
				retained/1024, (tt.allowance+256<<10)/1024)
			// 256 KiB of slack for the runtime's own caches.
			if retained > tt.allowance+256<<10 {
				t.Fatalf("retained %d bytes of the %d the registrations took; want at most %d",
					retained, grown, tt.allowance+256<<10)
			}
			if !strings.Contains(fmt.Sprint(l.db.Topics()), topic) {
				t.Fatalf("topics: got %v; want %s kept (a durable topic registration stays)", l.db.Topics(), topic)
			}
		})
	}
}

// churnProducer connects a producer, registers it in regs ephemeral
// channels, most in five durable topics and a tenth in ephemeral topics of
// their own, pipelined, and disconnects it.
func churnProducer(l *NSQLookupd, id, regs int) error {
	conn, err := net.DialTimeout("tcp", l.RealTCPAddr().String(), ioTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	w := bufio.NewWriterSize(conn, 64<<10)
	body := identifyJSON(40000+id%20000, 40001+id%20000)
	fmt.Fprintf(w, "  V1IDENTIFY\n%s%s", sizePrefix(int32(len(body))), body)
	for i := 0; i < regs; i++ {
		if i%10 == 0 {
			fmt.Fprintf(w, "REGISTER churn-%d-%d#ephemeral c#ephemeral\n", id, i)
		} else {
			fmt.Fprintf(w, "REGISTER durable-%d c-%d-%d#ephemeral\n", i%5, id, i)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	if _, err := io.ReadFull(r, make([]byte, 4+len(l.identifyResponse))); err != nil {
		return err
	}
	frame := make([]byte, 6)
	for i := 0; i < regs; i++ {
		if _, err := io.ReadFull(r, frame); err != nil || string(frame[4:]) != "OK" {
			return fmt.Errorf("producer %d, answer %d: %q, %v", id, i, frame, err)
		}
	}
	return nil
}

// TestMemoryReturnsAfterChurn: after a churn of ephemeral registrations
// from many connections, and after a flood of topics that are then
// deleted, the heap is back to within a few hundred KiB of what it was:
// maps, sorted name lists, producer lists and the connection table all
// give back what the bursts took.
func TestMemoryReturnsAfterChurn(t *testing.T) {
	const producers, regs, workers = 100, 500, 20 // 50 000 ephemeral registrations
	const floodTopics = 10000
	l := startLookupd(t, quietLog)
	// what stays throughout: 5 producers in the 50 durable topics
	stay := make([]*tcpClient, 5)
	register := func() {
		for i, c := range stay {
			for k := 0; k < 50; k++ {
				c.mustOK(fmt.Sprintf("REGISTER durable-%d stays-%d", k, i))
			}
		}
	}
	for i := range stay {
		stay[i] = connectProducer(t, l, 39000+i, 39100+i)
	}
	register()
	before := liveHeap()

	// churn: 100 producers, 20 at a time
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := w; id < producers; id += workers {
				if err := churnProducer(l, id, regs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	test.Eventually(t, 30*time.Second, func() bool {
		return trackedConns(l) == len(stay) && l.db.Stats(time.Now()).Registrations == len(stay)*100
	})
	afterChurn := liveHeap()

	// flood: 10 000 topics with a channel each, then /topic/delete?topic=*
	flood := connectProducer(t, l, 38000, 38001)
	registerMany(t, flood, "x", 1, func(int) string { return "y" })
	var b strings.Builder
	for i := 0; i < floodTopics; i++ {
		fmt.Fprintf(&b, "REGISTER flood-%d c\n", i)
	}
	flood.write(b.String())
	for i := 0; i < floodTopics; i++ {
		if got := flood.mustRead(); got != "OK" {
			t.Fatalf("flood REGISTER %d: %q", i, got)
		}
	}
	flooded := l.db.Stats(time.Now())
	flood.conn.Close()
	if resp, _ := httpDo(t, l, "POST", "/topic/delete?topic=*"); resp.StatusCode != 200 {
		t.Fatalf("/topic/delete?topic=*: %d", resp.StatusCode)
	}
	test.Eventually(t, 10*time.Second, func() bool { return trackedConns(l) == len(stay) })
	register() // what stays registers again, as nsqd would
	b = strings.Builder{}
	afterFlood := liveHeap()

	t.Logf("heap: %s before; %s after %d ephemeral registrations from %d connections (%+d KiB); %s after %d topics (%d registrations) came and went (%+d KiB)",
		kib(int64(before)), kib(int64(afterChurn)), producers*regs, producers, (int64(afterChurn)-int64(before))/1024,
		kib(int64(afterFlood)), floodTopics, flooded.Registrations, (int64(afterFlood)-int64(before))/1024)
	const slack = 256 << 10 // the runtime's own caches: goroutine descriptors, its free lists
	for _, m := range []struct {
		after uint64
		what  string
	}{{afterChurn, "the churn"}, {afterFlood, "the flood"}} {
		if retained := int64(m.after) - int64(before); retained > slack {
			t.Errorf("after %s the heap kept %d KiB; want at most %d KiB", m.what, retained>>10, slack>>10)
		}
	}
	if err := l.db.Check(); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

// TestMemoryReleasedAfterMassDeletion: once the registry has shrunk to half
// a large peak, the daemon returns memory to the OS at once (the runtime
// alone took minutes, or never, in measurements); steady size never
// triggers it. The checks run on the fake clock.
func TestMemoryReleasedAfterMassDeletion(t *testing.T) {
	clk := newFakeClock()
	logs := &logLines{next: lg.NilLogger{}}
	l := startLookupd(t, func(o *Options) { o.Logger = logs }, clk.install)
	// check advances the clock to the next check and waits until it has
	// run (it re-arms its timer last), returning the releases so far.
	check := func() int {
		t.Helper()
		test.Eventually(t, ioTimeout, func() bool { return clk.Pending() == 1 })
		clk.Advance(releaseCheck)
		test.Eventually(t, ioTimeout, func() bool { return clk.Pending() == 1 })
		return logs.count("memory returned to the OS")
	}
	for i := 0; i < releaseMinPeak/2+10; i++ { // a topic and a channel each
		l.db.CreateChannel(fmt.Sprintf("t%d", i), "c")
	}
	if n := check(); n != 0 {
		t.Fatalf("released %d times at the peak; want 0", n)
	}
	// deleting a third is not enough
	for i := 0; i < releaseMinPeak/6; i++ {
		l.db.DeleteTopic(fmt.Sprintf("t%d", i))
	}
	if n := check(); n != 0 {
		t.Fatalf("released %d times with two thirds left; want 0", n)
	}
	if resp, _ := httpDo(t, l, "POST", "/topic/delete?topic=*"); resp.StatusCode != 200 {
		t.Fatalf("/topic/delete?topic=*: %d", resp.StatusCode)
	}
	if n := check(); n != 1 {
		t.Fatalf("released %d times after every topic went; want 1", n)
	}
	if n := check(); n != 1 {
		t.Fatalf("released %d times with nothing more deleted; want still 1", n)
	}
	// up and down again at once: not before releaseInterval has passed
	for i := 0; i < releaseMinPeak; i++ {
		l.db.CreateTopic(fmt.Sprintf("again%d", i))
	}
	check()
	l.db.DeleteTopic(registry.Wildcard)
	if n := check(); n != 1 {
		t.Fatalf("released %d times %s after the last; want still 1", n, 3*releaseCheck)
	}
	clk.Advance(releaseInterval)
	if n := check(); n != 2 {
		t.Fatalf("released %d times once releaseInterval had passed; want 2", n)
	}
}

// TestHugeBodyMemory: a 50 MB request body costs the daemon at most a few
// MiB of allocation while it is refused, whatever its size, and leaves no
// heap behind (docs/differences.md, Hostile input). TestHostileInput sends
// the same bodies; the counts are taken here, in a test that does not run
// in parallel, because they are the whole process's.
func TestHugeBodyMemory(t *testing.T) {
	f := newTLSFiles(t)
	l := startLookupd(t, f.withHTTPS(quietLog))
	for _, tt := range []struct {
		name     string
		dial     dialer
		path     string
		chunked  bool
		maxAlloc uint64
	}{
		{"post to /topic/create", dialHTTP, "/topic/create?topic=huge", false, 16 << 20},
		{"chunked post to /channel/create", dialHTTP, "/channel/create?topic=huge&channel=c", true, 16 << 20},
		// pprof's symbol lookup reads its body and answers a line per
		// address, allocating some 20 times what it read: MaxBodyBytes
		// (1 MiB) bounds that, whatever the body's size.
		{"post to /debug/pprof/symbol", dialHTTP, "/debug/pprof/symbol", false, 64 << 20},
		{"https post to /topic/create", dialHTTPS, "/topic/create?topic=huge", false, 16 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := tt.dial(t, l)
			defer conn.Close()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			sendHugePost(t, conn, tt.path, "HTTP/1.1 200 OK", tt.chunked)
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			runtime.GC()
			runtime.ReadMemStats(&after)
			t.Logf("allocated %d KiB while the body was sent; live heap %d KiB before, %d KiB after",
				allocated>>10, before.HeapAlloc>>10, after.HeapAlloc>>10)
			if allocated > tt.maxAlloc {
				t.Fatalf("allocated %d bytes while a 50 MB body was sent; want under %d", allocated, tt.maxAlloc)
			}
			if after.HeapAlloc > before.HeapAlloc+8<<20 {
				t.Fatalf("live heap grew from %d to %d bytes; want under 8 MiB growth", before.HeapAlloc, after.HeapAlloc)
			}
		})
	}
}
