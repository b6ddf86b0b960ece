package main

import (
	"encoding/csv"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestFitLine(t *testing.T) {
	for _, tc := range []struct {
		name             string
		xs, ys           []float64
		slope, intercept float64
	}{
		{"a line", []float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}, 2, 1},
		{"flat", []float64{0, 1, 2}, []float64{4, 4, 4}, 0, 4},
		{"falling", []float64{0, 2}, []float64{10, 0}, -5, 10},
		{"one point", []float64{1}, []float64{1}, 0, 1},
		{"one x", []float64{1, 1}, []float64{1, 2}, 0, 1.5},
		{"mismatched", []float64{1, 2}, []float64{1}, 0, 0},
	} {
		if s, i := fitLine(tc.xs, tc.ys); math.Abs(s-tc.slope) > 1e-9 || math.Abs(i-tc.intercept) > 1e-9 {
			t.Errorf("%s: slope %v, intercept %v; want %v, %v", tc.name, s, i, tc.slope, tc.intercept)
		}
	}
}

// soakSeries makes a 30-minute soak sampled every 10 s, whose RSS, heap
// and goroutines are f(hours) plus noise.
func soakSeries(rss, heap, gor func(h float64) float64) []soakSample {
	r := rand.New(rand.NewPCG(1, 2))
	var out []soakSample
	for s := 0.0; s <= 1800; s += 10 {
		h := s / 3600
		out = append(out, soakSample{
			Seconds:    s,
			RSSBytes:   (rss(h) + r.NormFloat64()) * 1e6, // a megabyte's wander
			HeapBytes:  (heap(h) + r.NormFloat64()) * 1e6,
			Goroutines: math.Round(gor(h) + r.Float64()),
		})
	}
	return out
}

func TestSoakGrowth(t *testing.T) {
	flat := func(v float64) func(float64) float64 { return func(float64) float64 { return v } }
	// a warm-up that climbs fast, then a level
	warming := func(h float64) float64 { return 20 + 10*min(h/0.05, 1) }
	for _, tc := range []struct {
		name          string
		rss, heap, gr func(float64) float64
		bad           []string // the growths that must fail
	}{
		{"flat", flat(20), flat(5), flat(40), nil},
		{"a warm-up, then flat", warming, warming, flat(40), nil},
		{"RSS leaking 20 MB/h", func(h float64) float64 { return 20 + 20*h }, flat(5), flat(40), []string{"RSS"}},
		{"heap leaking 8 MB/h", flat(30), func(h float64) float64 { return 5 + 8*h }, flat(40), []string{"heap in use"}},
		{"a goroutine a minute", flat(20), flat(5), func(h float64) float64 { return 40 + 60*h }, []string{"goroutines"}},
	} {
		var bad []string
		for _, g := range soakGrowth(soakSeries(tc.rss, tc.heap, tc.gr), 30*time.Minute) {
			if !g.ok() {
				bad = append(bad, g.name)
			}
		}
		if !slices.Equal(bad, tc.bad) {
			t.Errorf("%s: too fast: %q; want %q", tc.name, bad, tc.bad)
		}
	}
	g := soakGrowth(soakSeries(func(h float64) float64 { return 20 + 20*h }, flat(5), flat(40)), 30*time.Minute)[0]
	if math.Abs(g.perHour-20) > 2 || g.from != 180 || math.Abs(g.intercept-20) > 1 {
		t.Errorf("RSS fit %+v; want about 20 MB/h from 20 MB, after 180 s", g)
	}
}

func TestWriteSoakCSV(t *testing.T) {
	samples := []soakSample{
		{Seconds: 0, RSSBytes: 14.7e6, HeapBytes: 2.8e6, Goroutines: 44, FDs: 44, Registrations: 1000, Producers: 26},
		{Seconds: 10, RSSBytes: 15e6, HeapBytes: 3e6, Goroutines: 45, FDs: 45, Registrations: 1064, Producers: 26,
			LookupPerSec: 499.9, LookupP50ms: 0.41, LookupP99ms: 2.5, DaemonMeanMs: 0.025, ChurnPerSec: 2000, Verified: 50},
	}
	var b strings.Builder
	if err := writeSoakCSV(&b, samples); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := []string{"seconds", "rss_bytes", "heap_inuse_bytes", "goroutines", "open_fds", "registrations", "producers",
		"lookup_per_second", "lookup_p50_ms", "lookup_p99_ms", "daemon_lookup_mean_ms", "churn_commands_per_second", "topics_verified"}
	if len(rows) != 3 || !slices.Equal(rows[0], header) {
		t.Fatalf("rows %q; want the header and 2 samples", rows)
	}
	want := []string{"10.0", "15000000", "3000000", "45", "45", "1064", "26", "499.9", "0.410", "2.500", "0.0250", "2000.0", "50"}
	if !slices.Equal(rows[2], want) {
		t.Errorf("row %q; want %q", rows[2], want)
	}
	for _, row := range rows[1:] {
		for i, v := range row {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				t.Errorf("column %s: %q is not a number", header[i], v)
			}
		}
	}
}

func TestWriteSoakSVG(t *testing.T) {
	samples := soakSeries(func(h float64) float64 { return 20 + 20*h }, func(float64) float64 { return 5 }, func(float64) float64 { return 40 })
	for i := range samples {
		samples[i].LookupP99ms, samples[i].LookupPerSec = 2, 500
	}
	growths := soakGrowth(samples, 30*time.Minute)
	var b strings.Builder
	if err := writeSoakSVG(&b, "nsqlookupd soak, 30m", "medium preset <& more>", samples, growths); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	dec := xml.NewDecoder(strings.NewReader(svg))
	var polylines, texts []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "polyline":
				polylines = append(polylines, se.Name.Local)
			case "text":
				var s string
				if err := dec.DecodeElement(&s, &se); err != nil {
					t.Fatal(err)
				}
				texts = append(texts, s)
			}
		}
	}
	// RSS, heap, goroutines, fds, registrations, 3 latencies, 2 rates
	if len(polylines) != 10 {
		t.Errorf("%d series drawn; want 10", len(polylines))
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"nsqlookupd soak, 30m", "medium preset <& more>", "memory (MB)", "goroutines",
		"open file descriptors", "registrations", "minutes", "warm-up", "OVER the", "within the", "limit of 4 MB/h"} {
		if !strings.Contains(all, want) {
			t.Errorf("the chart has no text %q", want)
		}
	}
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Error("the chart has a NaN or Inf coordinate")
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		n      int
		want   []float64
	}{
		{0, 30, 10, []float64{0, 5, 10, 15, 20, 25, 30}},
		{0, 31.5, 4, []float64{0, 10, 20, 30, 40}},
		{0, 1, 10, []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}},
		{0, 0, 4, []float64{0, 0.5, 1}},
	} {
		if got := niceTicks(tc.lo, tc.hi, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("niceTicks(%v, %v, %d) = %v; want %v", tc.lo, tc.hi, tc.n, got, tc.want)
		}
	}
	for v, want := range map[float64]string{0: "0", 2.5: "2.5", 1500: "1500", 25000: "25k", 2e6: "2M", 0.125: "0.125"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%v) = %q; want %q", v, got, want)
		}
	}
}

func TestFillSample(t *testing.T) {
	text := `# TYPE go_goroutines gauge
go_goroutines 44
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 2.8e+06
# TYPE process_open_fds gauge
process_open_fds 45
# TYPE nsqlookupd_registrations gauge
nsqlookupd_registrations 1064
# TYPE nsqlookupd_producers gauge
nsqlookupd_producers 26
# TYPE nsqlookupd_http_request_duration_seconds histogram
nsqlookupd_http_request_duration_seconds_bucket{route="/ping",le="+Inf"} 3
nsqlookupd_http_request_duration_seconds_sum{route="/ping"} 0.5
nsqlookupd_http_request_duration_seconds_count{route="/ping"} 3
nsqlookupd_http_request_duration_seconds_bucket{route="/lookup",le="0.0001"} 12
nsqlookupd_http_request_duration_seconds_bucket{route="/lookup",le="+Inf"} 1000
nsqlookupd_http_request_duration_seconds_sum{route="/lookup"} 0.25
nsqlookupd_http_request_duration_seconds_count{route="/lookup"} 1000
`
	parse := func(text string) (soakSample, *dto.Histogram, error) {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		var smp soakSample
		h, err := fillSample(fams, &smp)
		return smp, h, err
	}
	if _, _, err := parse(text); err == nil || !strings.Contains(err.Error(), "process_resident_memory_bytes") {
		t.Errorf("no RSS gauge: error %v", err)
	}
	text += "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.4696448e+07\n"
	smp, h, err := parse(text)
	if err != nil {
		t.Fatal(err)
	}
	want := soakSample{RSSBytes: 14696448, HeapBytes: 2.8e6, Goroutines: 44, FDs: 45, Registrations: 1064, Producers: 26}
	if smp != want || h.GetSampleSum() != 0.25 || h.GetSampleCount() != 1000 {
		t.Errorf("got %+v, /lookup sum %v count %v; want %+v, 0.25, 1000", smp, h.GetSampleSum(), h.GetSampleCount(), want)
	}
	if _, _, err := parse(strings.ReplaceAll(text, `route="/lookup"`, `route="/topics"`)); err == nil {
		t.Error("no /lookup histogram: no error")
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Minute: "30m", time.Hour: "1h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 45 * time.Second: "45s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q; want %q", d, got, want)
		}
	}
}
