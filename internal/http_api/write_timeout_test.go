package http_api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// deadlineRecorder is a ResponseRecorder that keeps the write deadlines set
// through http.ResponseController.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	deadlines []time.Time
}

func (r *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	r.deadlines = append(r.deadlines, t)
	return nil
}

// TestWriteDeadlines: WriteTimeout sets now+d before the handler runs;
// ExtendWriteDeadline moves it to now+seconds+d, reading seconds as pprof
// does (its default when absent or not positive).
func TestWriteDeadlines(t *testing.T) {
	const d = 10 * time.Second
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	tests := []struct {
		name  string
		h     http.Handler
		query string
		want  []time.Duration // after the request's start
	}{
		{"plain", WriteTimeout(ok, d), "", []time.Duration{d}},
		{"plain off", WriteTimeout(ok, 0), "", nil},
		{"profile default", WriteTimeout(ExtendWriteDeadline(ok, 30, d), d), "", []time.Duration{d, 30*time.Second + d}},
		{"profile seconds", WriteTimeout(ExtendWriteDeadline(ok, 30, d), d), "?seconds=120", []time.Duration{d, 120*time.Second + d}},
		{"trace fraction", ExtendWriteDeadline(ok, 1, d), "?seconds=0.5", []time.Duration{500*time.Millisecond + d}},
		{"negative", ExtendWriteDeadline(ok, 1, d), "?seconds=-5", []time.Duration{time.Second + d}},
		{"not a number", ExtendWriteDeadline(ok, 0, d), "?seconds=NaN", []time.Duration{d}},
		{"huge", ExtendWriteDeadline(ok, 0, d), "?seconds=1e300", []time.Duration{maxSeconds*time.Second + d}},
		{"extend off", ExtendWriteDeadline(ok, 30, 0), "?seconds=5", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
			start := time.Now()
			tt.h.ServeHTTP(rec, httptest.NewRequest("GET", "/x"+tt.query, nil))
			end := time.Now()
			if len(rec.deadlines) != len(tt.want) {
				t.Fatalf("got %d deadlines %v; want %d", len(rec.deadlines), rec.deadlines, len(tt.want))
			}
			for i, w := range tt.want {
				if got := rec.deadlines[i]; got.Before(start.Add(w)) || got.After(end.Add(w)) {
					t.Errorf("deadline %d: got start+%s; want start+%s", i, got.Sub(start), w)
				}
			}
		})
	}
}
