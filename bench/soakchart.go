package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// The soak's chart: one SVG, a panel a metric stacked over a shared time
// axis in minutes, each with its own scale from zero (so that growth
// looks as big as it is), a grid, a legend, and for the checked metrics
// the fitted line and its slope against the limit.

const (
	chartWidth  = 1000
	panelHeight = 190
	plotLeft    = 80  // room for the y labels
	plotRight   = 230 // room for the legend
	plotTop     = 34  // the panel's title above the plot
	plotBottom  = 34  // the x labels below it
	headerH     = 56
)

var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}

// chartSeries is one line of a panel.
type chartSeries struct {
	name string
	ys   []float64
}

// chartPanel is one metric's plot.
type chartPanel struct {
	title  string
	series []chartSeries
	fit    *growth // drawn dashed over the first series, when set
}

// writeSoakSVG writes the chart of samples under a title and a subtitle.
func writeSoakSVG(w io.Writer, title, subtitle string, samples []soakSample, growths []growth) error {
	col := func(get func(soakSample) float64) []float64 { return column(samples, get) }
	xs := col(func(s soakSample) float64 { return s.Seconds / 60 })
	fitOf := func(name string) *growth {
		if i := slices.IndexFunc(growths, func(g growth) bool { return g.name == name }); i >= 0 {
			return &growths[i]
		}
		return nil
	}
	later := func(ys []float64) []float64 { // the rates and latencies of the first sample are empty
		if len(ys) > 0 {
			ys[0] = math.NaN()
		}
		return ys
	}
	panels := []chartPanel{
		{title: "memory (MB)", series: []chartSeries{
			{"RSS", col(func(s soakSample) float64 { return s.RSSBytes / 1e6 })},
			{"heap in use", col(func(s soakSample) float64 { return s.HeapBytes / 1e6 })},
		}, fit: fitOf("RSS")},
		{title: "goroutines", series: []chartSeries{
			{"goroutines", col(func(s soakSample) float64 { return s.Goroutines })},
		}, fit: fitOf("goroutines")},
		{title: "open file descriptors", series: []chartSeries{
			{"open fds", col(func(s soakSample) float64 { return s.FDs })},
		}},
		{title: "registrations", series: []chartSeries{
			{"registrations", col(func(s soakSample) float64 { return s.Registrations })},
		}},
		{title: "/lookup latency (ms), each window", series: []chartSeries{
			{"p99, client", later(col(func(s soakSample) float64 { return s.LookupP99ms }))},
			{"p50, client", later(col(func(s soakSample) float64 { return s.LookupP50ms }))},
			{"mean, in the daemon", later(col(func(s soakSample) float64 { return s.DaemonMeanMs }))},
		}},
		{title: "load (per second)", series: []chartSeries{
			{"churn commands", later(col(func(s soakSample) float64 { return s.ChurnPerSec }))},
			{"/lookup answers", later(col(func(s soakSample) float64 { return s.LookupPerSec }))},
		}},
	}
	height := headerH + len(panels)*panelHeight
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", plotLeft, esc(title))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#444">%s</text>`+"\n", plotLeft, esc(subtitle))
	xmax := 1.0
	if len(xs) > 0 {
		xmax = max(xs[len(xs)-1], 1e-9)
	}
	xticks := niceTicks(0, xmax, 10)
	xmax = max(xmax, xticks[len(xticks)-1])
	for n, p := range panels {
		writePanel(&b, p, headerH+n*panelHeight, xs, xmax, xticks)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writePanel draws panel p with its top at y0.
func writePanel(b *strings.Builder, p chartPanel, y0 int, xs []float64, xmax float64, xticks []float64) {
	left, right := float64(plotLeft), float64(chartWidth-plotRight)
	top, bottom := float64(y0+plotTop), float64(y0+panelHeight-plotBottom)
	ymax := 0.0
	for _, s := range p.series {
		for _, y := range s.ys {
			if !math.IsNaN(y) {
				ymax = max(ymax, y)
			}
		}
	}
	if ymax == 0 {
		ymax = 1
	}
	yticks := niceTicks(0, ymax*1.05, 4)
	ymax = yticks[len(yticks)-1]
	px := func(x float64) float64 { return left + x/xmax*(right-left) }
	py := func(y float64) float64 { return bottom - y/ymax*(bottom-top) }

	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", plotLeft, y0+plotTop-10, esc(p.title))
	for _, y := range yticks {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", left, py(y), right, py(y))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", left-6, py(y)+4, tickLabel(y))
	}
	for _, x := range xticks {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", px(x), top, px(x), bottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", px(x), bottom+16, tickLabel(x))
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">minutes</text>`+"\n", right, bottom+30)
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", left, top, right-left, bottom-top)
	for k, s := range p.series {
		color := chartColors[k%len(chartColors)]
		var pts []string
		for i, y := range s.ys {
			if i < len(xs) && !math.IsNaN(y) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[i]), py(y)))
			}
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"><title>%s</title></polyline>`+"\n", color, strings.Join(pts, " "), esc(s.name))
		ly := top + 14 + float64(k)*18
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", right+12, ly-4, right+32, ly-4, color)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", right+38, ly, esc(s.name))
	}
	if g := p.fit; g != nil && len(xs) > 0 {
		x0, x1 := g.from/60, xs[len(xs)-1]
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#000" fill-opacity="0.05"/>`+"\n", left, top, px(x0)-left, bottom-top)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#777" font-size="11">warm-up</text>`+"\n", left+4, top+12)
		y := func(min float64) float64 { return g.intercept + g.perHour*min/60 }
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="1.2" stroke-dasharray="6 4"/>`+"\n",
			px(x0), py(y(x0)), px(x1), py(y(x1)))
		ly := top + 14 + float64(len(p.series))*18
		verdict := "within"
		if !g.ok() {
			verdict = "OVER"
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="1.2" stroke-dasharray="6 4"/>`+"\n", right+12, ly-4, right+32, ly-4)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">fit after warm-up</text>`+"\n", right+38, ly)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%+.2f %s/h, %s the</text>`+"\n", right+12, ly+18, g.perHour, esc(g.unit), verdict)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">limit of %g %s/h</text>`+"\n", right+12, ly+34, g.limit, esc(g.unit))
	}
}

// niceTicks returns about n+1 round tick values from lo up to at least
// hi: steps of 1, 2 or 5 times a power of ten.
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	exp := math.Floor(math.Log10(raw))
	mult := 10.0
	for _, m := range []float64{1, 2, 5} {
		if m*math.Pow(10, exp) >= raw {
			mult = m
			break
		}
	}
	// tick k is k*mult*10^exp, computed so that 0.3 is 0.3
	at := func(k float64) float64 {
		if exp < 0 {
			return k * mult / math.Pow(10, -exp)
		}
		return k * mult * math.Pow(10, exp)
	}
	step := at(1)
	var out []float64
	for k := math.Floor(lo / step); ; k++ {
		out = append(out, at(k))
		if at(k) >= hi-step*1e-9 {
			break
		}
	}
	return out
}

// tickLabel writes v short: 1200 as 1200, 0.25 as 0.25, 2e6 as 2M.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trimFloat(v/1e6) + "M"
	case a >= 1e4:
		return trimFloat(v/1e3) + "k"
	}
	return trimFloat(v)
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		return "0"
	}
	return s
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
