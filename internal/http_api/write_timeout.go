package http_api

import (
	"net/http"
	"strconv"
	"time"
)

// WriteTimeout returns h with a write deadline of d from the start of each
// request (0: none): an answer the client has not taken by then is
// abandoned, and its connection closed, so a client that stops reading
// cannot hold a goroutine and the answer's memory for ever.
//
// The deadline is set per request, not through http.Server.WriteTimeout:
// that one would cut pprof's profile and trace short (older net/http/pprof
// refuse any seconds=N at or above it), and a kept-alive connection never
// carries an earlier request's deadline into its next answer. Long answers
// extend theirs with ExtendWriteDeadline.
func WriteTimeout(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
		h.ServeHTTP(w, req)
	})
}

// maxSeconds caps the seconds=N that ExtendWriteDeadline adds: 31 years,
// far below what a time.Duration holds.
const maxSeconds = 1e9

// ExtendWriteDeadline returns h with its write deadline at d after the
// duration its seconds query parameter asks for (def when absent or not a
// positive number, as pprof reads it): pprof's profile and trace, and its
// delta profiles, answer only once seconds=N have passed. With d 0 there is
// no deadline to extend and h is returned as is.
func ExtendWriteDeadline(h http.Handler, def float64, d time.Duration) http.Handler {
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		sec, err := strconv.ParseFloat(req.URL.Query().Get("seconds"), 64)
		if err != nil || !(sec > 0) {
			sec = def
		}
		sec = min(sec, maxSeconds)
		http.NewResponseController(w).SetWriteDeadline(
			time.Now().Add(time.Duration(sec*float64(time.Second)) + d))
		h.ServeHTTP(w, req)
	})
}
