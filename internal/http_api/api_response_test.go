package http_api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

func TestV1(t *testing.T) {
	tests := []struct {
		name     string
		data     interface{}
		err      error
		code     int
		body, ct string
	}{
		{"struct", struct {
			A int `json:"a"`
		}{1}, nil, 200, `{"a":1}`, "application/json; charset=utf-8"},
		{"pre-encoded", JSON(`{"b":[]}`), nil, 200, `{"b":[]}`, "application/json; charset=utf-8"},
		{"empty", nil, nil, 200, "", ""},
		{"api error", nil, Err{Code: 404, Text: "TOPIC_NOT_FOUND"}, 404, `{"message":"TOPIC_NOT_FOUND"}`, "application/json; charset=utf-8"},
		// any other error is a 500, never a panic on a type assertion
		{"other error", nil, errors.New("boom"), 500, `{"message":"INTERNAL_ERROR"}`, "application/json; charset=utf-8"},
		{"unencodable", make(chan int), nil, 500, `{"message":"INTERNAL_ERROR"}`, "application/json; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Decorate(func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
				return tt.data, tt.err
			}, V1)
			w := httptest.NewRecorder()
			h(w, httptest.NewRequest("GET", "/x", nil), nil)
			if w.Code != tt.code || w.Body.String() != tt.body {
				t.Errorf("got %d %q; want %d %q", w.Code, w.Body.String(), tt.code, tt.body)
			}
			if got := w.Header().Get("Content-Type"); got != tt.ct {
				t.Errorf("Content-Type: got %q; want %q", got, tt.ct)
			}
			if got := w.Header().Get("X-NSQ-Content-Type"); got != "nsq; version=1.0" {
				t.Errorf("X-NSQ-Content-Type: got %q", got)
			}
		})
	}
}

// lines records the lines a Logger is given.
type lines []string

func (l *lines) Output(_ int, s string) error { *l = append(*l, s); return nil }

// TestLogLine: the access line in text (v1.3.0's) and in JSON, with its
// fields; the error's text is a JSON field only.
func TestLogLine(t *testing.T) {
	for _, format := range []lg.Format{lg.Text, lg.JSON} {
		var got lines
		h := Decorate(func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
			return nil, Err{Code: 400, Text: "MISSING_ARG_TOPIC"}
		}, Log(lg.New(&got, lg.Settings{Level: lg.INFO, Format: format})), V1)
		req := httptest.NewRequest("GET", "/lookup?x=%ff", nil)
		h(httptest.NewRecorder(), req, nil)
		if len(got) != 1 {
			t.Fatalf("%s: got %q; want one access line", format, got)
		}
		if format == lg.Text {
			if !regexp.MustCompile(`^INFO: 400 GET /lookup\?x=%ff \(192\.0\.2\.1:1234\) [0-9.]+[nµm]?s$`).MatchString(got[0]) {
				t.Fatalf("got %q; want v1.3.0's access line", got[0])
			}
			continue
		}
		var fields map[string]interface{}
		if err := json.Unmarshal([]byte(got[0]), &fields); err != nil {
			t.Fatalf("%q: %v", got[0], err)
		}
		for k, want := range map[string]interface{}{"level": "INFO", "status": 400.0, "method": "GET", "path": "/lookup?x=%ff",
			"remote_address": "192.0.2.1:1234", "reason": "MISSING_ARG_TOPIC"} {
			if fields[k] != want {
				t.Errorf("%s: got %v; want %v (%s)", k, fields[k], want, got[0])
			}
		}
		if d, ok := fields["duration"].(float64); !ok || d < 0 || !strings.HasPrefix(fields["msg"].(string), "400 GET /lookup?x=%ff (192.0.2.1:1234) ") {
			t.Errorf("duration %v, msg %v", fields["duration"], fields["msg"])
		}
	}
}

// TestAccessLogChoice: which requests make a line, for each choice: a
// probe's success makes none with ignore-probes, its failure does.
func TestAccessLogChoice(t *testing.T) {
	for _, tt := range []struct {
		access lg.AccessLog
		probe  bool
		err    error
		want   int
	}{
		{lg.AccessAll, false, nil, 1},
		{lg.AccessAll, true, nil, 1},
		{lg.AccessNone, false, nil, 0},
		{lg.AccessNone, false, errInternal, 0},
		{lg.AccessIgnoreProbes, true, nil, 0},
		{lg.AccessIgnoreProbes, true, errInternal, 1},
		{lg.AccessIgnoreProbes, false, nil, 1},
	} {
		var got lines
		log := lg.New(&got, lg.Settings{Level: lg.INFO, Access: tt.access})
		d := Log(log)
		if tt.probe {
			d = LogProbe(log)
		}
		h := Decorate(func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
			return nil, tt.err
		}, d, V1)
		h(httptest.NewRecorder(), httptest.NewRequest("GET", "/ping", nil), nil)
		if len(got) != tt.want {
			t.Errorf("%s, probe %v, error %v: got %d lines; want %d", tt.access, tt.probe, tt.err, len(got), tt.want)
		}
	}
}

// TestLogProbeHandler: a plain handler's answers are access-logged with
// the status it wrote; with ignore-probes only those that are not 200.
func TestLogProbeHandler(t *testing.T) {
	for _, tt := range []struct {
		access lg.AccessLog
		code   int
		want   string // the line, "" for none
	}{
		{lg.AccessAll, 200, "INFO: 200 GET /metrics (192.0.2.1:1234) "},
		{lg.AccessIgnoreProbes, 200, ""},
		{lg.AccessIgnoreProbes, 500, "INFO: 500 GET /metrics (192.0.2.1:1234) "},
		{lg.AccessNone, 500, ""},
	} {
		var got lines
		h := LogProbeHandler(lg.New(&got, lg.Settings{Level: lg.INFO, Access: tt.access}), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tt.code)
		}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if w.Code != tt.code || tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)) {
			t.Errorf("%s, %d: answered %d, logged %q; want %q", tt.access, tt.code, w.Code, got, tt.want)
		}
	}
}

// TestPooledJSON: a pooled answer is written as JSON is, then its buffer
// goes back to its pool; an oversized buffer does not.
func TestPooledJSON(t *testing.T) {
	for _, size := range []int{16, maxPooledBuffer + 1} {
		pool := &recordingPool{}
		buf := make([]byte, 0, size)
		buf = append(buf, `{"a":1}`...)
		w := httptest.NewRecorder()
		RespondV1(w, 200, PooledJSON{B: &buf, Pool: pool})
		if w.Body.String() != `{"a":1}` || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("got %q, %q", w.Body.String(), w.Header().Get("Content-Type"))
		}
		if want := size <= maxPooledBuffer; (pool.put == &buf) != want {
			t.Fatalf("buffer of %d bytes back in its pool: %t; want %t", size, pool.put == &buf, want)
		}
	}
}

// recordingPool keeps what is put in it (a sync.Pool under the race
// detector drops some of what it is given).
type recordingPool struct{ put any }

func (p *recordingPool) Put(x any) { p.put = x }
