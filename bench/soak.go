package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The soak (-soak DURATION) and its growth limits per hour: see
// docs/performance.md. A shorter soak than soakMinCheck reports its slopes
// without failing on them: over minutes, a megabyte's wander is a steep slope.
const (
	soakMinCheck              = 10 * time.Minute
	soakRSSLimitMBPerHour     = 4.0
	soakHeapLimitMBPerHour    = 4.0
	soakGoroutineLimitPerHour = 10.0
)

// soakSample is one row of the soak's CSV; a field's tag is its column's
// name and digits after the point.
type soakSample struct {
	Seconds       float64 `csv:"seconds,1"`
	RSSBytes      float64 `csv:"rss_bytes,0"`
	HeapBytes     float64 `csv:"heap_inuse_bytes,0"` // go_memstats_heap_inuse_bytes
	Goroutines    float64 `csv:"goroutines,0"`
	FDs           float64 `csv:"open_fds,0"`
	Registrations float64 `csv:"registrations,0"`
	Producers     float64 `csv:"producers,0"`
	LookupPerSec  float64 `csv:"lookup_per_second,1"` // the readers' answers in the window
	LookupP50ms   float64 `csv:"lookup_p50_ms,3"`     // the readers' latency in the window
	LookupP99ms   float64 `csv:"lookup_p99_ms,3"`
	DaemonMeanMs  float64 `csv:"daemon_lookup_mean_ms,4"` // /lookup's time in the daemon, from its histogram
	ChurnPerSec   float64 `csv:"churn_commands_per_second,1"`
	Verified      int     `csv:"topics_verified,0"` // topics verified in the window
}

// writeSoakCSV writes the samples, a header first.
func writeSoakCSV(w io.Writer, samples []soakSample) error {
	cw, t := csv.NewWriter(w), reflect.TypeFor[soakSample]()
	row, prec := make([]string, t.NumField()), make([]int, t.NumField())
	for i := range row {
		name, p, _ := strings.Cut(t.Field(i).Tag.Get("csv"), ",")
		row[i], prec[i] = name, int(p[0]-'0')
	}
	cw.Write(row) // csv.Writer's errors are sticky: Error reports any
	for _, s := range samples {
		for i, v := 0, reflect.ValueOf(s); i < len(row); i++ {
			row[i] = strconv.FormatFloat(v.Field(i).Convert(reflect.TypeFor[float64]()).Float(), 'f', prec[i], 64)
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// fitLine returns the least-squares line of ys over xs: its slope (0
// with fewer than two distinct xs) and its intercept.
func fitLine(xs, ys []float64) (slope, intercept float64) {
	if len(xs) == 0 || len(xs) != len(ys) {
		return 0, 0
	}
	var mx, my, num, den float64
	for i := range xs {
		mx, my = mx+xs[i]/float64(len(xs)), my+ys[i]/float64(len(xs))
	}
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den > 0 {
		slope = num / den
	}
	return slope, my - slope*mx
}

// column returns one figure of every sample.
func column(samples []soakSample, get func(soakSample) float64) []float64 {
	out := make([]float64, len(samples))
	for i, s := range samples {
		out[i] = get(s)
	}
	return out
}

// growth is one checked slope.
type growth struct {
	name    string
	unit    string  // of the slope, per hour
	perHour float64 // the fitted slope
	limit   float64
	// intercept and from: the fitted line, y = intercept + perHour*hours,
	// over the samples from seconds on (for the chart)
	intercept, from float64
}

func (g growth) ok() bool { return g.perHour <= g.limit }

func (g growth) String() string {
	verdict := "ok"
	if !g.ok() {
		verdict = "TOO FAST"
	}
	return fmt.Sprintf("%s grows %+.2f %s/h (limit %g): %s", g.name, g.perHour, g.unit, g.limit, verdict)
}

// soakGrowth fits RSS, heap and goroutines over the samples after the
// warm-up (the first tenth of the run).
func soakGrowth(samples []soakSample, total time.Duration) []growth {
	warm := total.Seconds() / 10
	if i := slices.IndexFunc(samples, func(s soakSample) bool { return s.Seconds >= warm }); i >= 0 {
		samples = samples[i:]
	} else {
		samples = nil
	}
	hours := column(samples, func(s soakSample) float64 { return s.Seconds / 3600 })
	fit := func(name, unit string, limit float64, get func(soakSample) float64) growth {
		g := growth{name: name, unit: unit, limit: limit, from: warm}
		g.perHour, g.intercept = fitLine(hours, column(samples, get))
		return g
	}
	return []growth{
		fit("RSS", "MB", soakRSSLimitMBPerHour, func(s soakSample) float64 { return s.RSSBytes / 1e6 }),
		fit("heap in use", "MB", soakHeapLimitMBPerHour, func(s soakSample) float64 { return s.HeapBytes / 1e6 }),
		fit("goroutines", "goroutines", soakGoroutineLimitPerHour, func(s soakSample) float64 { return s.Goroutines }),
	}
}

// shortDuration writes d without its zero tails: 30m, 1h, 1h30m, 90s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// latWindow collects the readers' latencies between two samples.
type latWindow struct {
	mu  sync.Mutex
	lat []time.Duration
}

func (w *latWindow) add(d time.Duration) {
	w.mu.Lock()
	w.lat = append(w.lat, d)
	w.mu.Unlock()
}

func (w *latWindow) take() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.lat
	w.lat = make([]time.Duration, 0, len(out))
	return out
}

// soakResult is what a soak measured.
type soakResult struct {
	samples  []soakSample
	growth   []growth
	verified int // topics verified in all
	csvPath  string
	svgPath  string
}

// runSoak runs the soak against the one target of o (see above).
func runSoak(ctx context.Context, o *options) (res *soakResult, err error) {
	binary := o.binaries[0]
	s, err := openSession(ctx, o, binary, "soak", o.daemonFlags, &result{Target: binary})
	if err != nil {
		return nil, err
	}
	defer s.close(ctx, &err)
	if _, err := s.register(ctx, modePipelined); err != nil {
		return nil, err
	}
	if _, err := verify(ctx, s.h, s.exp, o.verify, o.clients, o.seed); err != nil {
		return nil, fmt.Errorf("verification before the soak: %w", err)
	}
	churners, err := s.connectChurn(ctx)
	if err != nil {
		return nil, err
	}
	res = &soakResult{csvPath: o.soakOut + ".csv", svgPath: o.soakOut + ".svg"}
	if err := s.soakLoad(ctx, churners, res); err != nil {
		return res, err
	}
	return res, s.soakEnd(ctx, churners, res)
}

// soakLoad holds the load for -soak, takes a sample every -soak-every,
// and writes the CSV and the chart.
func (s *session) soakLoad(ctx context.Context, churners []*churner, res *soakResult) error {
	o := s.o
	logger.Printf("soak: %s of churn (%g commands/s) and /lookup (%g requests/s), a sample every %s",
		shortDuration(o.soak), o.churnRate, o.soakReadRate, o.soakEvery)
	g := newGroup(ctx)
	start := startChurn(g, churners, s.nm, o)
	sm := &soakSampler{s: s, churners: churners, res: res, start: start, prevAt: start}
	readInterval := time.Duration(float64(o.clients) / o.soakReadRate * float64(time.Second))
	for c := range o.clients {
		pace := newPacer(start, readInterval, c, o.clients)
		g.spawn(func(ctx context.Context) error { return s.soakReader(ctx, c, pace, &sm.win) })
	}
	deadline := start.Add(o.soak)
	tick := time.NewTicker(o.soakEvery)
	defer tick.Stop()
	var sampleErr error
	for n := 0; ; n++ {
		if sampleErr = sm.sample(g.ctx, n); sampleErr != nil || g.ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-g.ctx.Done():
		case <-tick.C:
		case <-time.After(time.Until(deadline)):
		}
	}
	loadErr := g.stop()
	if loadErr == nil {
		loadErr = sampleErr
	}
	if err := writeSoakFiles(res, o); err != nil {
		return err
	}
	if loadErr != nil {
		return loadErr
	}
	return ctx.Err()
}

// soakReader asks /lookup of random topics on pace's schedule until ctx
// ends; every answer must be 200.
func (s *session) soakReader(ctx context.Context, c int, pace *pacer, win *latWindow) error {
	r := rand.New(rand.NewPCG(s.o.seed+20, uint64(c)))
	for pace.sleep(ctx) {
		t0 := time.Now()
		if _, err := s.h.getDiscard(ctx, s.lookupPath(r)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		win.add(time.Since(t0))
	}
	return nil
}

// soakSampler takes a soak's samples.
type soakSampler struct {
	s        *session
	churners []*churner
	res      *soakResult
	win      latWindow // the readers' latencies since the last sample

	start, prevAt time.Time
	prevChurn     int
	prevLookup    *dto.Histogram
}

// sample takes the n-th sample: /metrics, the readers' latencies and the
// churn since the last sample, and a check of 50 topics and of /nodes.
func (sm *soakSampler) sample(ctx context.Context, n int) error {
	s, o := sm.s, sm.s.o
	at := time.Now()
	smp := soakSample{Seconds: at.Sub(sm.start).Seconds()}
	lookup, err := s.scrape(ctx, &smp)
	if err != nil {
		return err
	}
	lat := sm.win.take()
	if p50, p99, _ := summarize(lat); n > 0 && at.After(sm.prevAt) {
		secs := at.Sub(sm.prevAt).Seconds()
		smp.LookupPerSec, smp.LookupP50ms, smp.LookupP99ms = float64(len(lat))/secs, ms(p50), ms(p99)
		churned := 0
		for _, c := range sm.churners {
			churned += int(c.done.Load())
		}
		smp.ChurnPerSec, sm.prevChurn = float64(churned-sm.prevChurn)/secs, churned
		if dc := float64(lookup.GetSampleCount() - sm.prevLookup.GetSampleCount()); dc > 0 {
			smp.DaemonMeanMs = (lookup.GetSampleSum() - sm.prevLookup.GetSampleSum()) / dc * 1000
		}
	}
	sm.prevLookup, sm.prevAt = lookup, at
	e := s.exp
	e.ephemeralOK = true
	smp.Verified, err = e.checkTopics(ctx, s.h, min(50, o.Topics), o.clients, o.seed+uint64(300+n))
	if err == nil {
		err = e.checkNodes(ctx, s.h)
	}
	sm.res.verified += smp.Verified
	sm.res.samples = append(sm.res.samples, smp)
	when := shortDuration(at.Sub(sm.start).Round(time.Second))
	if n%6 == 0 {
		logger.Printf("soak: %s: rss %.1f MB, heap %.1f MB, %v goroutines, %v fds, %v registrations, /lookup p99 %.2f ms",
			when, smp.RSSBytes/1e6, smp.HeapBytes/1e6, smp.Goroutines, smp.FDs, smp.Registrations, smp.LookupP99ms)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("verification at %s: %w", when, err)
	}
	return nil
}

// soakEnd ends a soak: the churn connections leave their last channels,
// every answer must be exact again, and the growth within its limits.
func (s *session) soakEnd(ctx context.Context, churners []*churner, res *soakResult) error {
	for _, c := range churners {
		if err := c.unregisterLive(s.nm, s.o.ioTimeout); err != nil {
			return fmt.Errorf("after the soak: %w", err)
		}
	}
	if _, err := s.exp.checkTopics(ctx, s.h, -1, s.o.clients, s.o.seed+200); err != nil {
		return fmt.Errorf("verification after the soak: %w", err)
	}
	if err := s.exp.checkNodes(ctx, s.h); err != nil {
		return fmt.Errorf("verification after the soak: %w", err)
	}
	for _, g := range res.growth {
		if !g.ok() && s.o.soak >= soakMinCheck {
			return fmt.Errorf("%s", g)
		}
	}
	return s.finish(ctx)
}

// scrape reads the daemon's /metrics into smp, and returns /lookup's
// latency histogram.
func (s *session) scrape(ctx context.Context, smp *soakSample) (*dto.Histogram, error) {
	var fams map[string]*dto.MetricFamily
	err := s.h.getStream(ctx, "/metrics", func(r io.Reader) (err error) {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err = p.TextToMetricFamilies(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return fillSample(fams, smp)
}

// fillSample takes from fams the gauges of a soak sample, and returns
// /lookup's latency histogram; each must be there.
func fillSample(fams map[string]*dto.MetricFamily, smp *soakSample) (*dto.Histogram, error) {
	for name, v := range map[string]*float64{
		"process_resident_memory_bytes": &smp.RSSBytes, "go_memstats_heap_inuse_bytes": &smp.HeapBytes,
		"go_goroutines": &smp.Goroutines, "process_open_fds": &smp.FDs,
		"nsqlookupd_registrations": &smp.Registrations, "nsqlookupd_producers": &smp.Producers,
	} {
		m := fams[name].GetMetric()
		if len(m) == 0 || m[0].Gauge == nil {
			return nil, fmt.Errorf("GET /metrics: no gauge %s", name)
		}
		*v = m[0].Gauge.GetValue()
	}
	for _, m := range fams["nsqlookupd_http_request_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && l.GetValue() == "/lookup" && m.Histogram != nil {
				return m.Histogram, nil
			}
		}
	}
	return nil, errors.New("GET /metrics: no histogram nsqlookupd_http_request_duration_seconds{route=\"/lookup\"}")
}

// writeSoakFiles writes the CSV and the chart, with the growth fitted so
// far (the chart shows the fitted lines).
func writeSoakFiles(res *soakResult, o *options) error {
	res.growth = soakGrowth(res.samples, o.soak)
	var b strings.Builder
	if err := writeSoakCSV(&b, res.samples); err != nil {
		return err
	}
	if err := os.WriteFile(res.csvPath, []byte(b.String()), 0o644); err != nil {
		return err
	}
	title := fmt.Sprintf("nsqlookupd soak, %s", shortDuration(o.soak))
	subtitle := fmt.Sprintf("%s preset (%d nsqd, %d topics, %d registrations); %d connections churning #ephemeral channels at %g commands/s; /lookup at %g requests/s; a sample every %s",
		o.Preset, o.Producers, o.Topics, o.registers(), o.churnConns, o.churnRate, o.soakReadRate, o.soakEvery)
	b.Reset()
	if err := writeSoakSVG(&b, title, subtitle, res.samples, res.growth); err != nil {
		return err
	}
	return os.WriteFile(res.svgPath, []byte(b.String()), 0o644)
}

// printSoak prints the soak's summary, its last line the one scripts read.
func printSoak(w io.Writer, res *soakResult, o *options) {
	if len(res.samples) == 0 {
		return
	}
	fmt.Fprintf(w, "soak of %s: %d samples, one every %s; %d topics verified under churn\n", shortDuration(o.soak), len(res.samples), o.soakEvery, res.verified)
	for _, r := range []struct {
		name, fmt string
		get       func(soakSample) float64
	}{
		{"RSS MB", "%.1f", func(s soakSample) float64 { return s.RSSBytes / 1e6 }},
		{"heap in use MB", "%.1f", func(s soakSample) float64 { return s.HeapBytes / 1e6 }},
		{"goroutines", "%.0f", func(s soakSample) float64 { return s.Goroutines }},
		{"open fds", "%.0f", func(s soakSample) float64 { return s.FDs }},
		{"registrations", "%.0f", func(s soakSample) float64 { return s.Registrations }},
	} {
		c, f := column(res.samples, r.get), r.fmt
		fmt.Fprintf(w, "  %-15s start "+f+", end "+f+", min "+f+", max "+f+"\n", r.name, c[0], c[len(c)-1], slices.Min(c), slices.Max(c))
	}
	later := res.samples[1:] // the first sample has no window
	med := func(get func(soakSample) float64) float64 {
		v := column(later, get)
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	p99 := func(s soakSample) float64 { return s.LookupP99ms }
	fmt.Fprintf(w, "  /lookup         %.0f requests/s; p99 per window: median %.2f ms, max %.2f ms; daemon mean %.3f ms\n",
		med(func(s soakSample) float64 { return s.LookupPerSec }), med(p99), slices.Max(append(column(later, p99), 0)),
		med(func(s soakSample) float64 { return s.DaemonMeanMs }))
	fmt.Fprintf(w, "  churn           %.0f commands/s\n", med(func(s soakSample) float64 { return s.ChurnPerSec }))
	for _, g := range res.growth {
		fmt.Fprintf(w, "  %s\n", g)
	}
	if o.soak < soakMinCheck {
		fmt.Fprintf(w, "  (slopes not checked: a soak under %s is too short to tell a slope from noise)\n", shortDuration(soakMinCheck))
	}
	first, last := res.samples[0], res.samples[len(res.samples)-1]
	fmt.Fprintf(w, "soak: %s, rss %.1f→%.1f MB, goroutines %.0f→%.0f, wrote %s %s\n",
		shortDuration(o.soak), first.RSSBytes/1e6, last.RSSBytes/1e6, first.Goroutines, last.Goroutines, res.csvPath, res.svgPath)
}
