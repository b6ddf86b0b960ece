package http_api

import (
	"errors"
	"net/http"
	"net/http/httptest"
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

func TestLogLine(t *testing.T) {
	var lines []string
	logf := func(lvl lg.LogLevel, f string, args ...interface{}) {
		lines = append(lines, lvl.String())
	}
	h := Decorate(func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
		return nil, Err{Code: 400, Text: "MISSING_ARG_TOPIC"}
	}, Log(logf), V1)
	h(httptest.NewRecorder(), httptest.NewRequest("GET", "/lookup", nil), nil)
	if len(lines) != 1 || lines[0] != "INFO" {
		t.Fatalf("got %v; want one INFO access line", lines)
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
