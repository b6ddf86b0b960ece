// Package http_api holds the HTTP plumbing of the daemon: handlers that
// return (value, error), decorators that log and encode them as NSQ's V1 API
// does, strict query parsing, and the server with its timeouts.
package http_api

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

// APIHandler is a route's handler: it returns the value to encode, or an Err.
type APIHandler func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error)

// Decorator wraps an APIHandler.
type Decorator func(APIHandler) APIHandler

// Err is an API error: an HTTP status and the message sent as
// {"message":"<Text>"}.
type Err struct {
	Code int
	Text string
}

// Error returns the message.
func (e Err) Error() string {
	return e.Text
}

// errInternal is the answer to a handler that failed in a way it did not
// name, or panicked.
var errInternal = Err{Code: http.StatusInternalServerError, Text: "INTERNAL_ERROR"}

// errStatus returns the status and message for err: those of an Err, else
// 500 INTERNAL_ERROR.
func errStatus(err error) (int, string) {
	var e Err
	if errors.As(err, &e) {
		return e.Code, e.Text
	}
	return errInternal.Code, errInternal.Text
}

// Decorate applies ds to f, innermost first, and adapts it to httprouter.
func Decorate(f APIHandler, ds ...Decorator) httprouter.Handle {
	decorated := f
	for _, decorate := range ds {
		decorated = decorate(decorated)
	}
	return func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		decorated(w, req, ps)
	}
}

// Log logs one INFO line per request once the handler has returned:
// "<status> <METHOD> <request-uri> (<remote addr>) <duration>", as v1.3.0
// does; a request that came over TLS (the HTTPS port) has "HTTPS: " before
// its status, so the two listeners' lines can be told apart and grepped.
// The access log's choice (docs/logging.md, The access log) may leave the
// line out.
func Log(log *lg.Log) Decorator { return accessLog(log, false) }

// LogProbe is Log for the route of a probe (/ping, /info, /metrics): with
// --http-access-log=ignore-probes, its requests answered 200 make no line.
func LogProbe(log *lg.Log) Decorator { return accessLog(log, true) }

// LogProbeHandler is LogProbe for a probe answered by a plain http.Handler
// (/metrics): its status is the one h writes.
func LogProbeHandler(log *lg.Log, h http.Handler) http.Handler {
	f := LogProbe(log)(func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) (interface{}, error) {
		sw := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(sw, req)
		if sw.code != 0 && sw.code != http.StatusOK {
			return nil, Err{Code: sw.code, Text: http.StatusText(sw.code)}
		}
		return nil, nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { f(w, req, nil) })
}

// statusRecorder records the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	code int // the first status written; 0 until then (a 200)
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessKeys name the fields of an access line's JSON (docs/logging.md).
var accessKeys = lg.Keys{"", "status", "method", "path", "remote_address", "duration", "reason"}

func accessLog(log *lg.Log, probe bool) Decorator {
	return func(f APIHandler) APIHandler {
		return func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
			start := time.Now()
			response, err := f(w, req, ps)
			elapsed := time.Since(start)
			status, reason := http.StatusOK, ""
			if err != nil {
				status, reason = errStatus(err)
			}
			if !log.LogsRequest(probe && status == http.StatusOK) {
				return response, err
			}
			listener := ""
			if req.TLS != nil {
				listener = "HTTPS: "
			}
			// the error's text is a JSON field only: %.0s writes nothing
			log.Eventf(lg.INFO, accessKeys, "%s%d %s %s (%s) %s%.0s",
				listener, status, req.Method, req.URL.RequestURI(), req.RemoteAddr, elapsed, reason)
			return response, err
		}
	}
}

// PlainText writes the handler's string answer as text/plain, and returns
// the error it answered with.
func PlainText(f APIHandler) APIHandler {
	return func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
		code := http.StatusOK
		data, err := f(w, req, ps)
		if err != nil {
			code, data = errStatus(err)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		io.WriteString(w, fmt.Sprint(data))
		return nil, err
	}
}

// V1 writes the handler's answer as NSQ's V1 API does: a value as JSON, nil
// as an empty 200, an error as {"message":"..."} with its status.
func V1(f APIHandler) APIHandler {
	return func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
		data, err := f(w, req, ps)
		if err != nil {
			code, text := errStatus(err)
			RespondV1(w, code, text)
			return nil, err
		}
		if RespondV1(w, http.StatusOK, data) != http.StatusOK {
			return nil, errInternal
		}
		return nil, nil
	}
}

// JSON is an answer already encoded as JSON: RespondV1 writes it as is,
// with the JSON content type.
type JSON []byte

// maxPooledBuffer is the largest PooledJSON buffer put back in its pool.
const maxPooledBuffer = 64 << 10

// PooledJSON is an answer encoded as JSON in a buffer from Pool: RespondV1
// writes it as JSON does, then puts the buffer back, so that a hot route's
// answers cost the garbage collector nothing.
type PooledJSON struct {
	B    *[]byte
	Pool interface{ Put(any) } // a *sync.Pool
}

// JSONStream is a JSON answer written piece by piece, for answers too large
// to hold whole for each request: RespondV1 sends the headers, then calls it
// with a buffered writer. It returns the first write error.
type JSONStream func(w io.Writer) error

// streamBufferSize is the buffer a JSONStream writes through: the answer
// goes out in writes of this size, and an answer up to this size in one.
const streamBufferSize = 32 << 10

type messageBody struct {
	Message string `json:"message"`
}

// RespondV1 writes one V1 response. With code 200, data nil is an empty
// body, a string or []byte is written as is and anything else is JSON;
// with any other code, data is the message of a JSON error body. It
// returns the status it wrote: 500 if data could not be encoded.
func RespondV1(w http.ResponseWriter, code int, data interface{}) int {
	var response []byte
	isJSON := false

	if stream, ok := data.(JSONStream); ok && code == http.StatusOK {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-NSQ-Content-Type", "nsq; version=1.0")
		w.WriteHeader(code)
		bw := bufio.NewWriterSize(w, streamBufferSize)
		if stream(bw) == nil {
			bw.Flush()
		}
		return code
	}

	if code == http.StatusOK {
		switch d := data.(type) {
		case nil:
		case JSON:
			response, isJSON = d, true
		case PooledJSON:
			response, isJSON = *d.B, true
			if cap(*d.B) <= maxPooledBuffer { // a rare huge answer is not kept
				defer d.Pool.Put(d.B)
			}
		case string:
			response = []byte(d)
		case []byte:
			response = d
		default:
			var err error
			response, err = json.Marshal(data)
			if err != nil {
				code = errInternal.Code
				response, _ = json.Marshal(messageBody{Message: errInternal.Text})
			}
			isJSON = true
		}
	} else {
		isJSON = true
		response, _ = json.Marshal(messageBody{Message: fmt.Sprint(data)})
	}

	if isJSON {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.Header().Set("X-NSQ-Content-Type", "nsq; version=1.0")
	w.WriteHeader(code)
	w.Write(response)
	return code
}

// errorHandler is a handler that always answers err, logged and in V1 form.
func errorHandler(log *lg.Log, err Err) http.Handler {
	h := Decorate(func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
		return nil, err
	}, Log(log), V1)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { h(w, req, nil) })
}

// LogNotFoundHandler answers 404 {"message":"NOT_FOUND"}.
func LogNotFoundHandler(log *lg.Log) http.Handler {
	return errorHandler(log, Err{Code: http.StatusNotFound, Text: "NOT_FOUND"})
}

// LogMethodNotAllowedHandler answers 405 {"message":"METHOD_NOT_ALLOWED"};
// the router has set the Allow header already.
func LogMethodNotAllowedHandler(log *lg.Log) http.Handler {
	return errorHandler(log, Err{Code: http.StatusMethodNotAllowed, Text: "METHOD_NOT_ALLOWED"})
}

// LogPanicHandler is the router's PanicHandler: it logs the panic and
// answers 500 {"message":"INTERNAL_ERROR"}.
func LogPanicHandler(log *lg.Log) func(http.ResponseWriter, *http.Request, interface{}) {
	h := errorHandler(log, errInternal)
	return func(w http.ResponseWriter, req *http.Request, p interface{}) {
		log.Eventf(lg.ERROR, lg.Keys{"reason"}, "panic in HTTP handler - %s", p)
		h.ServeHTTP(w, req)
	}
}
