// make mutate builds the tests with the mutation tag: this file's tests
// (Go's profiler handlers) cover none of the registry, the protocol or the
// API handlers; with https_options_test.go they take a third of the
// package's time.

//go:build !mutation

package nsqlookupd

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// TestPprofRoutes checks every profiling route (docs/wire.md, Profiling) answers.
func TestPprofRoutes(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	tests := []struct {
		method, path, contains string
	}{
		{"GET", "/debug/pprof", "full goroutine stack dump"},
		{"GET", "/debug/pprof/", "full goroutine stack dump"},
		{"GET", "/debug/pprof/cmdline", ""},
		{"GET", "/debug/pprof/symbol", "num_symbols"},
		{"POST", "/debug/pprof/symbol", "num_symbols"},
		{"GET", "/debug/pprof/profile?seconds=1", ""},
		{"GET", "/debug/pprof/trace?seconds=1", ""},
		{"GET", "/debug/pprof/heap", ""},
		{"GET", "/debug/pprof/allocs", ""},
		{"GET", "/debug/pprof/goroutine?debug=2", "created by"},
		{"GET", "/debug/pprof/block", ""},
		{"GET", "/debug/pprof/mutex", ""},
		{"GET", "/debug/pprof/threadcreate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			defer lockProfiling(tt.path)()
			resp, body := httpDo(t, l, tt.method, tt.path)
			if resp.StatusCode != 200 || len(body) == 0 {
				t.Fatalf("got %d with %d bytes; want 200 with a body", resp.StatusCode, len(body))
			}
			if !strings.Contains(body, tt.contains) {
				t.Fatalf("body does not contain %q", tt.contains)
			}
		})
	}
	// a full goroutine dump shows the daemon's own goroutines
	_, body := httpDo(t, l, "GET", "/debug/pprof/goroutine?debug=2")
	if !strings.Contains(body, "nsqlookupd.(*NSQLookupd).Main") {
		t.Errorf("goroutine?debug=2 does not show the daemon's goroutines")
	}
}

var hrefRE = regexp.MustCompile(`href=['"]([^'"]+)['"]`)

// TestPprofIndexLinks follows every link of the index at /debug/pprof/.
func TestPprofIndexLinks(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	_, index := httpDo(t, l, "GET", "/debug/pprof/")
	links := hrefRE.FindAllStringSubmatch(index, -1)
	if len(links) < 10 {
		t.Fatalf("index has %d links; want at least 10", len(links))
	}
	base, _ := url.Parse("/debug/pprof/")
	for _, m := range links {
		ref, err := url.Parse(m[1])
		if err != nil {
			t.Fatalf("link %q: %s", m[1], err)
		}
		u := base.ResolveReference(ref)
		if name := strings.TrimPrefix(u.Path, "/debug/pprof/"); name == "profile" || name == "trace" {
			q := u.Query()
			q.Set("seconds", "1") // the default is 30s
			u.RawQuery = q.Encode()
		}
		unlock := lockProfiling(u.Path)
		resp, _ := httpDo(t, l, "GET", u.String())
		unlock()
		if resp.StatusCode != 200 {
			t.Errorf("link %q -> %s: got %d; want 200", m[1], u, resp.StatusCode)
		}
	}
}

func TestPprofDisabled(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, func(o *Options) { o.DisablePprof = true })
	for _, path := range []string{"/debug/pprof", "/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		resp, body := httpDo(t, l, "GET", path)
		if resp.StatusCode != 404 || body != `{"message":"NOT_FOUND"}` {
			t.Errorf("%s: got %d %s; want 404 NOT_FOUND", path, resp.StatusCode, body)
		}
	}
	// the rest of the API, /debug included, is unaffected
	if resp, _ := httpDo(t, l, "GET", "/debug"); resp.StatusCode != 200 {
		t.Errorf("/debug: got %d; want 200", resp.StatusCode)
	}
}

// TestContentionProfiles: --block-profile-rate and --mutex-profile-fraction
// switch the block and mutex profiles on, and under load both record
// contention. What it asserts is that the samples exist, not which
// functions they name: those are the runtime's and the registry's to
// rename. Not in parallel: the profile rates are the process's.
func TestContentionProfiles(t *testing.T) {
	l := startLookupd(t, func(o *Options) {
		o.BlockProfileRate = 1
		o.MutexProfileFraction = 1
	})
	t.Cleanup(func() {
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
	})
	if got := runtime.SetMutexProfileFraction(-1); got != 1 { // -1 reads it
		t.Fatalf("mutex profile fraction: got %d; want 1, the option's", got)
	}
	samples := map[string]int{}
	test.Eventually(t, 30*time.Second, func() bool {
		contend(t, l)
		for _, name := range []string{"block", "mutex"} {
			_, body := httpDo(t, l, "GET", "/debug/pprof/"+name+"?debug=1")
			samples[name] = len(contentionSample.FindAllString(body, -1))
		}
		return samples["block"] > 0 && samples["mutex"] > 0
	})
	t.Logf("samples: %v", samples)
}

// contentionSample is a sample of a block or mutex profile in its text
// form (debug=1): "<count> <delay> @ <addresses>".
var contentionSample = regexp.MustCompile(`(?m)^\d+ \d+ @ 0x`)

// contend runs registrations and lookups at once for a moment.
func contend(t *testing.T, l *NSQLookupd) {
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		p := connectProducer(t, l, 100+i, 200+i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				p.write(fmt.Sprintf("REGISTER t%d c%d\n", j%10, j))
			}
			for j := 0; j < 200; j++ {
				if _, err := p.readFrame(); err != nil {
					return
				}
			}
			p.conn.Close()
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				httpDo(t, l, "GET", fmt.Sprintf("/lookup?topic=t%d", j%10))
			}
		}()
	}
	wg.Wait()
}

// TestGoToolReadsProfiles runs `go tool pprof` on every profile the daemon
// serves, and `go tool trace` on its execution trace.
func TestGoToolReadsProfiles(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs go tool pprof; skipped in -short mode")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run go tool pprof: %s", err)
	}
	l := startLookupd(t, nil)
	dir := t.TempDir()
	base := "http://" + l.RealHTTPAddr().String() + "/debug/pprof/"
	for _, name := range []string{"profile", "heap", "allocs", "goroutine", "block", "mutex", "threadcreate"} {
		t.Run(name, func(t *testing.T) {
			defer lockProfiling(name)()
			// pprof sets the CPU profile's duration itself: -seconds, not ?seconds=
			cmd := exec.Command(goBin, "tool", "pprof", "-raw", "-seconds=1", base+name)
			// PPROF_TMPDIR keeps pprof's saved copies out of $HOME; HOME itself
			// stays, so the go command finds its cache of the built pprof tool
			cmd.Env = append(os.Environ(), "PPROF_TMPDIR="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "PeriodType") {
				t.Fatalf("go tool pprof -raw %s: %v\n%s", name, err, out)
			}
		})
	}
	t.Run("trace", func(t *testing.T) {
		unlock := lockProfiling("trace")
		resp, body := httpDo(t, l, "GET", "/debug/pprof/trace?seconds=1")
		unlock()
		if resp.StatusCode != 200 {
			t.Fatalf("trace: got %d", resp.StatusCode)
		}
		file := filepath.Join(dir, "trace.out")
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(goBin, "tool", "trace", "-d=parsed", file).CombinedOutput()
		if err != nil || len(out) == 0 {
			t.Fatalf("go tool trace: %v\n%.2000s", err, out)
		}
	})
}

// TestPprofOutlivesWriteTimeout: profile, trace and a delta heap profile
// run for their whole seconds=N, longer than the write timeout, and return
// complete answers: net/http/pprof extends the server's write timeout by N
// itself. The CPU profile of go tool pprof's default, 30 s, outlives the
// write timeout ten times over.
//
// The extension is counted from the request's start, so the write timeout
// itself is what is left for collecting and writing the profile. 3 s leaves
// room for that under -race in a busy test process: with 300 ms, a delta heap
// profile (collected twice, around its N seconds) was cut short on CI.
func TestPprofOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	const writeTimeout = 3 * time.Second
	l := startLookupd(t, func(o *Options) { o.HTTPWriteTimeout = writeTimeout })
	tests := []struct {
		path string
		min  time.Duration
	}{
		{"/debug/pprof/profile", 30 * time.Second},
		{"/debug/pprof/profile?seconds=4", 4 * time.Second},
		{"/debug/pprof/trace?seconds=3.5", 3500 * time.Millisecond},
		{"/debug/pprof/heap?seconds=4", 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if tt.min <= writeTimeout {
				t.Fatalf("%s lasts %s, not longer than the write timeout %s", tt.path, tt.min, writeTimeout)
			}
			// the delta heap profile does not wait for the CPU profile
			// and the trace, which take turns
			t.Parallel()
			defer lockProfiling(tt.path)()
			start := time.Now()
			resp, body := httpGet(t, l, tt.path, tt.min+writeTimeout+ioTimeout) // fails on a cut answer
			if took := time.Since(start); resp.StatusCode != 200 || took < tt.min {
				t.Fatalf("got %d after %s; want 200 after at least %s", resp.StatusCode, took, tt.min)
			}
			if strings.Contains(tt.path, "trace") {
				if !strings.HasPrefix(body, "go 1.") {
					t.Fatalf("trace starts %q; want a Go trace header", body[:min(len(body), 16)])
				}
				return
			}
			zr, err := gzip.NewReader(strings.NewReader(body))
			if err != nil {
				t.Fatalf("profile of %d bytes: %s", len(body), err)
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				t.Fatalf("profile of %d bytes is not a whole gzip stream: %s", len(body), err)
			}
		})
	}
}
