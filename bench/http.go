package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lookupd/nsqlookupd/bench/internal/harness"
)

// httpClient issues GET requests to one daemon over keep-alive connections
// shared by all load clients.
type httpClient struct {
	base   string // "http://host:port"
	c      *http.Client
	secret string // sent as Authorization: Bearer, if not ""
}

func newHTTPClient(addr string, clients int, timeout time.Duration) *httpClient {
	tr := &http.Transport{MaxIdleConnsPerHost: clients * 2, DisableCompression: true}
	return &httpClient{base: "http://" + addr, c: &http.Client{Transport: tr, Timeout: timeout}}
}

func (h *httpClient) close() { h.c.CloseIdleConnections() }

// getStream fetches path, requires 200 and hands the body to read, which
// may decode it piece by piece: a large answer (/nodes at the xlarge
// preset) is never held whole.
func (h *httpClient) getStream(ctx context.Context, path string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+path, nil)
	if err != nil {
		return err
	}
	if h.secret != "" {
		req.Header.Set("Authorization", "Bearer "+h.secret)
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("GET %s: status %d, body %q", path, resp.StatusCode, body)
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// getDiscard fetches path, requires 200, and returns the body's size
// without keeping it.
func (h *httpClient) getDiscard(ctx context.Context, path string) (int64, error) {
	var n int64
	err := h.getStream(ctx, path, func(r io.Reader) (err error) {
		n, err = io.Copy(io.Discard, r)
		return err
	})
	return n, err
}

// isTimeout reports whether err is a request that ran out of time (the
// client's -http-timeout, or a deadline): a slow answer, not a wrong one.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// getJSON fetches path, requires 200 and decodes the body into v.
func (h *httpClient) getJSON(ctx context.Context, path string, v any) error {
	return h.getStream(ctx, path, func(r io.Reader) error {
		body, err := io.ReadAll(r)
		if err == nil {
			if err = json.Unmarshal(body, v); err != nil {
				err = fmt.Errorf("decoding %q: %w", harness.Truncate(body, 200), err)
			}
		}
		return err
	})
}

// loadSpec describes one timed HTTP phase.
type loadSpec struct {
	clients  int
	duration time.Duration // used when requests == 0
	requests int           // fixed total request count, if > 0
	seed     uint64
	// path picks the path (and query) of the next request.
	path func(r *rand.Rand) string
}

// phaseStats is the outcome of one timed HTTP phase.
type phaseStats struct {
	Path      string   `json:"path"`
	Requests  int      `json:"requests"`
	Seconds   float64  `json:"seconds"`
	PerSecond float64  `json:"per_second"`
	P50ms     float64  `json:"p50_ms"`
	P99ms     float64  `json:"p99_ms"`
	MaxMs     float64  `json:"max_ms"`
	AvgBytes  float64  `json:"avg_body_bytes"`
	DaemonCPU *float64 `json:"daemon_cpu_seconds,omitempty"`
	// CPUPer1k is daemon CPU seconds per 1000 requests.
	CPUPer1k *float64 `json:"daemon_cpu_seconds_per_1000,omitempty"`
	// TimedOut: a request took longer than -http-timeout and the phase
	// stopped there; its other figures are not comparable.
	TimedOut bool `json:"timed_out,omitempty"`
}

// runLoad runs spec.clients goroutines that each issue GET requests
// back-to-back until the duration elapses or the request budget is spent.
// Every answer must be 200; anything else aborts the phase with an error.
// A request that times out ends the phase early, marked TimedOut.
func runLoad(ctx context.Context, h *httpClient, spec loadSpec) (phaseStats, error) {
	var (
		budget   atomic.Int64
		bytes    atomic.Int64
		timedOut atomic.Bool
		lats     = make([][]time.Duration, spec.clients)
		g        = newGroup(ctx)
		start    = time.Now()
	)
	budget.Store(int64(spec.requests))
	for c := range spec.clients {
		g.spawn(func(ctx context.Context) error {
			r := rand.New(rand.NewPCG(spec.seed, uint64(c)))
			for ctx.Err() == nil {
				if spec.requests > 0 && budget.Add(-1) < 0 || spec.requests <= 0 && time.Since(start) >= spec.duration {
					return nil
				}
				t0 := time.Now()
				n, err := h.getDiscard(ctx, spec.path(r))
				switch {
				case err == nil:
					lats[c] = append(lats[c], time.Since(t0))
					bytes.Add(n)
				case ctx.Err() != nil:
				case isTimeout(err):
					timedOut.Store(true)
					g.cancel()
				default:
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	elapsed := time.Since(start)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return phaseStats{}, err
	}
	all := slices.Concat(lats...)
	p50, p99, mx := summarize(all)
	st := phaseStats{Requests: len(all), Seconds: elapsed.Seconds(), P50ms: ms(p50), P99ms: ms(p99), MaxMs: ms(mx), TimedOut: timedOut.Load()}
	if len(all) > 0 {
		st.AvgBytes = float64(bytes.Load()) / float64(len(all))
		st.PerSecond = float64(len(all)) / elapsed.Seconds()
	}
	return st, nil
}

// seqStats summarises sequential requests to one URL.
type seqStats struct {
	Path     string  `json:"path"`
	Samples  int     `json:"samples"` // answers received
	MinMs    float64 `json:"min_ms"`
	MedianMs float64 `json:"median_ms"`
	MaxMs    float64 `json:"max_ms"`
	Bytes    int64   `json:"body_bytes"`
	// TimedOut: the request after the samples took longer than
	// -http-timeout; no more were sent.
	TimedOut bool `json:"timed_out,omitempty"`
	// Skipped: not requested, because an earlier request to the same
	// path timed out (the daemon may still be working on it).
	Skipped bool `json:"skipped,omitempty"`
}

// sequential issues n GET requests to path one after the other, each of
// which must answer 200, and reports min/median/max latency. A request that
// times out ends the series, marked TimedOut.
func sequential(ctx context.Context, h *httpClient, path string, n int) (seqStats, error) {
	return pollPath(ctx, h, path, func(done int) bool { return done < n })
}

// pollPath issues GET requests to path one after the other while more(answers
// so far) is true, each of which must answer 200; a request that times out
// ends the series, marked TimedOut.
func pollPath(ctx context.Context, h *httpClient, path string, more func(done int) bool) (seqStats, error) {
	var lat []time.Duration
	st := seqStats{Path: path}
	for more(len(lat)) {
		t0 := time.Now()
		n, err := h.getDiscard(ctx, path)
		d := time.Since(t0)
		if err != nil && isTimeout(err) && ctx.Err() == nil {
			st.TimedOut = true
			break
		}
		if err != nil {
			return st, err
		}
		lat = append(lat, d)
		st.Bytes = n
	}
	p50, _, mx := summarize(lat)
	if st.Samples = len(lat); len(lat) > 0 {
		st.MinMs, st.MedianMs, st.MaxMs = ms(lat[0]), ms(p50), ms(mx)
	}
	return st, nil
}

// summarize sorts lat and returns its median, 99th percentile and maximum
// (zeros when it is empty).
func summarize(lat []time.Duration) (p50, p99, maximum time.Duration) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0, 0, 0
	}
	return percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value such that at least p% of the
// values are less than or equal to it. It returns 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
