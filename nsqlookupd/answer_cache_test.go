package nsqlookupd

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
)

// TestAnswersShared: the large answers are built once and shared until the
// registry changes.
func TestAnswersShared(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	l.db.CreateChannel("a", "c")
	for _, answer := range []struct {
		name string
		get  func() any
	}{
		{"topics", func() any { return &l.answers.topics(l.db)[0] }},
		{"channels", func() any { return &l.answers.allChannels(l.db)[0] }},
		{"lookup", func() any { return &l.answers.allLookup(l.db).channels[0] }},
	} {
		first := answer.get()
		if again := answer.get(); again != first {
			t.Errorf("%s: built again with nothing changed", answer.name)
		}
		l.db.CreateChannel("b", answer.name) // a change
		if after := answer.get(); after == first {
			t.Errorf("%s: the same answer after a change", answer.name)
		}
	}
}

// Slow readers cost bounded memory (docs/differences.md, Slow readers): many clients that ask for a
// large answer and never read it must not make the daemon hold a copy
// each. /debug is written as it is encoded, a registration at a time;
// /nodes from each producer's entry, encoded once and shared; the
// wildcards from one answer shared while the registry stays as it is.

// closedConns counts the connections the HTTP server has closed.
type closedConns struct{ n atomic.Int64 }

func (c *closedConns) hook(_ net.Conn, state http.ConnState) {
	if state == http.StateClosed {
		c.n.Add(1)
	}
}

// peakHeap samples the live heap until stopped and returns the most it saw.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func TestStalledReadersShareAnswers(t *testing.T) {
	const readers = 40
	const writeTimeout = time.Second
	closed := &closedConns{}
	l := startLookupd(t, func(o *Options) {
		o.Logger = lg.NilLogger{} // a log kept in memory would count as heap
		o.HTTPWriteTimeout = writeTimeout
	}, func(l *NSQLookupd) {
		l.httpServer.ConnState = closed.hook
		l.httpListener = smallSendBuffers{l.httpListener}
		// 100 producers, 1500 topics of 5 producers and 6 channels, with
		// long names: 52 500 registrations, a /debug of about 12 MB and
		// /nodes and wildcard answers of some 300 KiB
		fill(l, test.Shape{Name: "stall", P: 100, T: 1500, S: 5, C: 6}, "a-topic-with-a-rather-long-name-%05d", "a-channel-with-a-long-name-%d")
	})

	for _, path := range []string{"/debug", "/nodes", "/lookup?topic=*", "/channels?topic=*"} {
		t.Run(path, func(t *testing.T) {
			// the answer's size, and the shared answer cached: asked of the
			// handler in-process, as a socket of small buffers could not take
			// the 12 MB /debug within the write timeout on a loaded machine
			rec := httptest.NewRecorder()
			l.httpServer.Handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code != 200 {
				t.Fatalf("GET %s: %d", path, rec.Code)
			}
			size := uint64(rec.Body.Len())
			before := liveHeap()
			closedBefore := closed.n.Load()
			stop := peakHeap()

			conns := make([]net.Conn, readers)
			for i := range conns {
				conns[i] = dialSmallReceive(t, l.RealHTTPAddr().String())
				if _, err := io.WriteString(conns[i], "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			// none reads; the write timeout closes each
			test.Eventually(t, 4*writeTimeout+ioTimeout, func() bool { return closed.n.Load()-closedBefore >= readers })
			peak := stop()

			growth := int64(peak) - int64(before)
			bound := 3*size + 4<<20 // three answers, and 100 KiB of buffers and goroutine per reader
			t.Logf("%s: answer %d KiB; %d stalled readers grew the heap by %d KiB at most (bound %d KiB)",
				path, size>>10, readers, growth>>10, bound>>10)
			if growth > int64(bound) {
				t.Fatalf("%d stalled readers of %s (%d KiB) grew the heap by %d KiB; want at most %d KiB",
					readers, path, size>>10, growth>>10, bound>>10)
			}
			// each got a cut answer, then the close
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(ioTimeout))
				n, err := io.Copy(io.Discard, c)
				if err != nil || uint64(n) >= size {
					t.Fatalf("a stalled reader read %d bytes then %v; want fewer than the %d of the answer, then EOF", n, err, size)
				}
				c.Close()
			}
		})
	}
}
