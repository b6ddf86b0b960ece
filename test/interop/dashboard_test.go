package interop

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dashboardFile is the Grafana dashboard operators import.
var dashboardFile = filepath.Join("..", "..", "contrib", "grafana", "nsqlookupd.json")

// allowedEmpty lists the dashboard's queries that may return no sample,
// with the reason. None may: every series the dashboard reads is exported
// from start-up, at zero for a counter (panics and evictions included),
// so an empty answer means a metric renamed or a query broken.
var allowedEmpty = map[string]string{}

// grafanaDashboard is the part of Grafana's JSON model the test reads.
type grafanaDashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		GridPos struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// dashboardScreenRows is one screen of Grafana grid rows (30 px each, on a
// 1080p display under Grafana's header).
const dashboardScreenRows = 28

// TestDashboardLayout checks contrib/grafana/nsqlookupd.json as Grafana
// reads it: panels with unique ids inside the 24-column grid, none
// overlapping, all on one screen, each with at least one query; the
// panels the README promises are there.
func TestDashboardLayout(t *testing.T) {
	t.Parallel()
	dash := loadDashboard(t)
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("title %q, uid %q: want both", dash.Title, dash.UID)
	}
	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var rects []rect
	var exprs []string
	for _, p := range dash.Panels {
		g := p.GridPos
		if ids[p.ID] || p.Title == "" || p.Type == "" {
			t.Errorf("panel %d %q (%s): want a unique id, a title and a type", p.ID, p.Title, p.Type)
		}
		ids[p.ID] = true
		if g.X < 0 || g.Y < 0 || g.W <= 0 || g.H <= 0 || g.X+g.W > 24 || g.Y+g.H > dashboardScreenRows {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns and %d rows of one screen", p.Title, g, dashboardScreenRows)
		}
		for _, r := range rects {
			if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
				t.Errorf("panel %q at %+v overlaps another at %+v", p.Title, g, r)
			}
		}
		rects = append(rects, rect{g.X, g.Y, g.W, g.H})
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("panel %q: a target without expr or refId", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, m := range []string{"nsqlookupd_producers", "nsqlookupd_topics", "nsqlookupd_channels", "nsqlookupd_registrations",
		"nsqlookupd_tcp_commands_total", "nsqlookupd_http_requests_total", "nsqlookupd_http_request_duration_seconds_bucket",
		"nsqlookupd_producer_evictions_total", "nsqlookupd_access_refusals_total", "nsqlookupd_panics_total",
		"process_resident_memory_bytes", "go_goroutines"} {
		if !strings.Contains(all, m+"{") {
			t.Errorf("no panel reads %s", m)
		}
	}
	if !strings.Contains(all, "sum by (result) (rate(nsqlookupd_tcp_commands_total") {
		t.Error("no panel shows commands/s by result")
	}
}

// TestDashboard runs every PromQL expression of the dashboard (its panels'
// and its variables') against a real Prometheus scraping the daemon, with
// two real nsqd registered, HTTP traffic, and refused connections and
// requests from 127.0.0.2. Each must parse and return at least one finite
// sample, but those in allowedEmpty. The refusals panel shows the
// refusals.
func TestDashboard(t *testing.T) {
	t.Parallel()
	promBin := lookTool(t, "prometheus")
	dash := loadDashboard(t)
	d := startLookupdOn(t, "127.0.0.1", "--tcp-allow=127.0.0.1", "--http-admin-allow=127.0.0.1")
	n1, n2 := startNSQD(t, d.TCPAddr), startNSQD(t, d.TCPAddr)
	n1.publish(t, topicA, "a1")
	n2.publish(t, topicB, "b2")
	rules, err := filepath.Abs(filepath.Join(contribPrometheus, "nsqlookupd.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	p := startPrometheus(t, promBin, d.HTTPAddr, rules)
	stop := dashboardTraffic(t, d)
	defer stop()

	vars := map[string]string{"instance": d.HTTPAddr, "__rate_interval": "1m"}
	type query struct{ where, expr string }
	var queries []query
	for _, pn := range dash.Panels {
		for _, tg := range pn.Targets {
			queries = append(queries, query{fmt.Sprintf("panel %q %s", pn.Title, tg.RefID), tg.Expr})
		}
	}
	// A query variable's label_values(series, label): the series must be
	// there, with the label.
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(series, label)", v.Name, q.Query)
		}
		queries = append(queries, query{"variable " + v.Name, fmt.Sprintf(`count by (%s) (%s)`, m[2], m[1])})
	}
	if len(queries) < 15 {
		t.Fatalf("%d queries in %s; want every panel's", len(queries), dashboardFile)
	}

	varRef := regexp.MustCompile(`\$\{?(\w+)\}?`)
	for _, q := range queries {
		expr := varRef.ReplaceAllStringFunc(q.expr, func(ref string) string {
			name := varRef.FindStringSubmatch(ref)[1]
			v, ok := vars[name]
			if !ok {
				t.Fatalf("%s: %s uses $%s, which the test does not know", q.where, q.expr, name)
			}
			return v
		})
		_, mayBeEmpty := allowedEmpty[q.expr]
		eventually(t, 30*time.Second, func() (bool, string) {
			samples, err := p.queryAll(expr)
			if err != nil {
				return false, fmt.Sprintf("%s: %s: %v", q.where, expr, err)
			}
			if mayBeEmpty {
				return true, ""
			}
			finite := slices.ContainsFunc(samples, func(s promSample) bool { return !math.IsNaN(s.value) && !math.IsInf(s.value, 0) })
			return finite, fmt.Sprintf("%s: %s: %d samples %v, none finite", q.where, expr, len(samples), samples)
		})
	}

	// The refusals panel shows both kinds this test caused.
	refusalsExpr := ""
	for _, q := range queries {
		if strings.Contains(q.expr, "nsqlookupd_access_refusals_total") {
			refusalsExpr = varRef.ReplaceAllStringFunc(q.expr, func(ref string) string { return vars[varRef.FindStringSubmatch(ref)[1]] })
		}
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		samples, err := p.queryAll(refusalsExpr)
		if err != nil {
			return false, err.Error()
		}
		positive := map[string]bool{}
		for _, s := range samples {
			positive[s.labels["reason"]] = s.value > 0
		}
		return positive["tcp_source"] && positive["http_source"], fmt.Sprintf("%s: %v; want tcp_source and http_source above 0", refusalsExpr, samples)
	})
}

// loadDashboard reads and decodes the dashboard file.
func loadDashboard(t *testing.T) *grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash grafanaDashboard
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &dash
}

// dashboardTraffic sends the daemon reads, a refused admin request and a
// refused registration connection (both from 127.0.0.2) every 100 ms
// until the returned stop is called.
func dashboardTraffic(t *testing.T, d *lookupd) (stop func()) {
	from := &net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	outsider := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: from.DialContext}}
	return repeat(100*time.Millisecond, func() {
		for _, path := range []string{"/lookup?topic=" + topicA, "/nodes", "/topics"} {
			if resp, err := httpClient.Get(d.url(path)); err == nil {
				resp.Body.Close()
			}
		}
		if resp, err := outsider.Post(d.url("/topic/delete?topic="+topicA), "", nil); err == nil {
			resp.Body.Close()
		}
		if conn, err := from.Dial("tcp", d.TCPAddr); err == nil {
			conn.Close()
		}
	})
}

// promSample is one sample of an instant query's answer.
type promSample struct {
	labels map[string]string
	value  float64
}

func (s promSample) String() string { return fmt.Sprintf("%v=%v", s.labels, s.value) }

// queryAll runs an instant query and returns every sample; an expression
// that does not parse is an error with Prometheus's message.
func (p *prometheus) queryAll(q string) ([]promSample, error) {
	var a struct {
		Status string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if _, err := getJSON("http://"+p.addr+"/api/v1/query?query="+url.QueryEscape(q), &a); err != nil {
		return nil, err
	}
	if a.Status != "success" || a.Data.ResultType != "vector" {
		return nil, fmt.Errorf("status %q, result type %q; want success, vector", a.Status, a.Data.ResultType)
	}
	var out []promSample
	for _, r := range a.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("sample %v: %v", r.Value, err)
		}
		out = append(out, promSample{labels: r.Metric, value: v})
	}
	return out, nil
}
