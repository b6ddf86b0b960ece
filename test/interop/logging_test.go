package interop

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// Logging as an operator meets it (docs/logging.md): the built binary
// writing into a pipe whose reader has gone.

const droppedLines = "nsqlookupd_log_lines_dropped_total"

// closedPipe returns the write end of a pipe, for a daemon's stdout and
// stderr, and a function that closes the read end: the log shipper exits.
// The test's copy of the write end is closed once the daemon has started.
func closedPipe(t *testing.T) (w *os.File, readerExits func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return w, func() { r.Close() }
}

// TestClosedLogPipe: with stdout and stderr a pipe whose reader has exited
// (`nsqlookupd 2>&1 | shipper`, the shipper gone), every log line fails
// with EPIPE. The daemon answers 1,000 requests and a real nsqd's
// registration all the same, counts the lines it could not write, and
// still stops cleanly on SIGTERM. nsqlookupd v1.3.0, run the same way,
// dies of SIGPIPE at its next line (a shell reports status 141).
func TestClosedLogPipe(t *testing.T) {
	t.Parallel()
	const topic = "after_the_pipe_closed"
	w, readerExits := closedPipe(t)
	d := startDaemonTo(t, w, lookupdBin, "--broadcast-address=127.0.0.1")
	w.Close()
	readerExits()

	for i := range 1000 {
		resp, err := httpClient.Get(d.url("/ping"))
		if err != nil {
			t.Fatalf("request %d after the log pipe closed: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "OK" {
			t.Fatalf("request %d: %s %q; want 200 OK", i, resp.Status, body)
		}
	}
	n := startNSQD(t, d.TCPAddr)
	n.publish(t, topic, "m")
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := d.lookup(topic)
		if err != nil {
			return false, err.Error()
		}
		return producersAre(a.Producers, n)
	})
	// each request logged one line, each of which failed
	if got, err := metric(d, droppedLines); err != nil || got < 1000 {
		t.Fatalf("%s: got %v (%v); want at least 1000", droppedLines, got, err)
	}

	st, err := d.terminate(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exited() || st.ExitCode() != 0 {
		t.Fatalf("after SIGTERM: %v; want exit status 0", st)
	}
}

// TestClosedLogPipeV130 shows what the test above guards against: v1.3.0
// dies of SIGPIPE at the first line it logs into the closed pipe.
func TestClosedLogPipeV130(t *testing.T) {
	t.Parallel()
	w, readerExits := closedPipe(t)
	d := startDaemonTo(t, w, refBin, "--broadcast-address=127.0.0.1")
	w.Close()
	readerExits()

	if resp, err := httpClient.Get(d.url("/ping")); err == nil {
		resp.Body.Close() // the answer may or may not get out before the log line
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("v1.3.0 still running 10s after logging into a closed pipe; want killed by SIGPIPE")
	}
	ws, ok := d.state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGPIPE {
		t.Fatalf("v1.3.0: %v; want killed by SIGPIPE", d.state)
	}
	t.Logf("v1.3.0: %v (a shell reports %d)", d.state, 128+int(syscall.SIGPIPE))
}

// jsonLogFormat, when set (INTEROP_LOG_FORMAT=json), is given as
// --log-format to every run of the daemon under test, and every line each
// run writes is checked as checkJSONLog does: the whole suite with JSON
// logs. Tests that read text lines then fail on those reads, not on the
// JSON: run it as
//
//	INTEROP_LOG_FORMAT=json go test -run 'TestJSON|TestInterop|TestAuth|TestReload' ./test/interop
var jsonLogFormat = os.Getenv("INTEROP_LOG_FORMAT") == "json"

// jsonFields are the fields each event's JSON line must have, by a pattern
// of its msg (docs/logging.md, Logs).
var jsonFields = []struct {
	msg    *regexp.Regexp
	fields []string
}{
	{regexp.MustCompile(`^CLIENT\(.*\): IDENTIFY `), []string{"remote_address", "broadcast_address", "tcp_port", "http_port", "version"}},
	{regexp.MustCompile(`^DB: client\(.*\) (UN)?REGISTER category:`), []string{"remote_address", "category"}},
	{regexp.MustCompile(`^DB: client\(.*\) (UN)?REGISTER category:(topic|channel) `), []string{"topic"}},
	{regexp.MustCompile(`^DB: client\(.*\) (UN)?REGISTER category:channel key:\S+ subkey:\S`), []string{"channel"}},
	{regexp.MustCompile(`^(HTTPS: )?\d{3} [A-Z]+ \S+ \(`), []string{"status", "method", "path", "remote_address", "duration"}},
	{regexp.MustCompile(`^(HTTPS: )?[45]\d\d [A-Z]+ `), []string{"reason"}},
	{regexp.MustCompile(`evicting producer`), []string{"remote_address", "duration", "reason", "broadcast_address", "tcp_port"}},
	{regexp.MustCompile(`^TCP: (refused|closing) client\(`), []string{"remote_address", "reason"}},
	{regexp.MustCompile(`^\[.*\] - E_`), []string{"remote_address", "reason"}},
	{regexp.MustCompile(`^PROTOCOL\(V1\): \[`), []string{"remote_address"}},
	{regexp.MustCompile(`^RELOAD: .*the running configuration is kept$`), []string{"reason"}},
	{regexp.MustCompile(`^RELOAD: --\S+ needs a restart`), []string{"setting"}},
	{regexp.MustCompile(`^HTTPS: reload`), []string{"tls_cert"}},
}

// checkJSONLog fails unless every line of out is one JSON object with
// time (RFC 3339, UTC), level (a level word) and msg, and each event's
// line has its fields (jsonFields). It returns the decoded lines.
func checkJSONLog(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON (%v): %q", i+1, err, line)
		}
		ts, _ := m["time"].(string)
		tm, err := time.Parse(time.RFC3339Nano, ts)
		msg, ok := m["msg"].(string)
		if err != nil || tm.Location() != time.UTC || !ok || !slices.Contains([]any{"DEBUG", "INFO", "WARNING", "ERROR", "FATAL"}, m["level"]) {
			t.Fatalf("line %d: want time (RFC 3339, UTC), level and msg: %q", i+1, line)
		}
		for _, f := range jsonFields {
			if !f.msg.MatchString(msg) {
				continue
			}
			for _, k := range f.fields {
				if _, ok := m[k]; !ok {
					t.Fatalf("line %d: no %q field: %q", i+1, k, line)
				}
			}
		}
		objs = append(objs, m)
	}
	return objs
}

// TestJSONLog runs the built binary with --log-format=json through a
// real nsqd's registration, a hostile client (control bytes and invalid
// UTF-8 in topic names and request paths), refused and failed requests,
// and a reload: every line is JSON, each event's with its fields, and the
// hostile bytes come back escaped, not raw.
func TestJSONLog(t *testing.T) {
	t.Parallel()
	r := startReloadable(t, "log_format = \"json\"\n", "--tcp-allow=127.0.0.1")
	// hostile names over TCP: each a framed error, logged with the name
	for _, name := range []string{"bad\x01name", "bad\xffname", "quote\"back\\slash", "new\x7fline"} {
		conn, err := net.Dial("tcp", r.TCPAddr)
		if err != nil {
			t.Fatal(err)
		}
		body := `{"broadcast_address":"127.0.0.1","tcp_port":1,"http_port":2,"version":"1.3.0"}`
		fmt.Fprintf(conn, "  V1IDENTIFY\n%s%sREGISTER %s c\n", string(binary.BigEndian.AppendUint32(nil, uint32(len(body)))), body, name)
		io.Copy(io.Discard, conn) // until the daemon closes it
		conn.Close()
	}
	// hostile request paths, sent raw: net/http's client would escape them
	for _, target := range []string{"/lookup?topic=\xff\xfe", "/lookup?topic=a%00b", "/nope\x7f?x=\"y\""} {
		conn, err := net.Dial("tcp", r.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
		io.Copy(io.Discard, conn)
		conn.Close()
	}
	// a refused registration, an admin route, a reload refused and one done
	if conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", r.TCPAddr); err == nil {
		io.Copy(io.Discard, conn)
		conn.Close()
	}
	doRequest(t, http.MethodPost, r.url("/topic/create?topic=created"), nil)
	r.reload(t, "log_format = \"json\"\ntombstone_lifetime = \"1s\"\n")
	r.reload(t, "log_format = \"json\"\nhttp_admin_allow_networks = [\"10.0.0.0/33\"]\n")
	r.stillConnected(t)
	st, err := r.terminate(10 * time.Second)
	if err != nil || st.ExitCode() != 0 {
		t.Fatalf("SIGTERM: %v, %v", st, err)
	}

	objs := checkJSONLog(t, r.logs.String())
	seen := map[string]bool{}
	for _, m := range objs {
		msg := m["msg"].(string)
		for name, re := range map[string]string{
			"identify": `IDENTIFY Address:127\.0\.0\.1`, "register": `REGISTER category:topic key:reloaded`,
			"unregister": `UNREGISTER category:client`, "access": `^200 GET /lookup\?topic=reloaded `,
			"hostile name": "topic name 'bad\x01name'", "invalid UTF-8": "topic name 'bad\ufffdname'",
			"hostile path": `GET /lookup\?topic=\x{fffd}\x{fffd} `, "refused": `^TCP: refused client\(127\.0\.0\.2:`,
			"admin": `^200 POST /topic/create\?topic=created `, "reload refused": `^RELOAD: .*10\.0\.0\.0/33.*kept$`,
			"restart-only": `^RELOAD: --tombstone-lifetime needs a restart`, "reload": `^RELOAD: done `,
		} {
			if regexp.MustCompile(re).MatchString(msg) {
				seen[name] = true
			}
		}
	}
	if len(seen) != 12 {
		t.Fatalf("events seen: %v; want all 12\n%s", seen, r.logs.String())
	}
	if raw := r.logs.String(); strings.ContainsAny(raw, "\x00\x01") || !utf8.ValidString(raw) { // (DEL needs no escape in JSON)
		t.Fatal("a control byte or invalid UTF-8 reached the log raw")
	}
}

// TestAccessLogChoices: a health check (/ping) and a scrape (/metrics)
// every 100 ms for 5 s, one /info, and three lookups of a topic that is
// not there, against a daemon with each --http-access-log: all logs every
// request, ignore-probes only the failed lookups, none nothing. The lines
// are counted once the daemon has stopped (its log flushed).
func TestAccessLogChoices(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		choice         string
		probes, errors int
	}{{"all", 101, 3}, {"ignore-probes", 0, 3}, {"none", 0, 0}} {
		t.Run(tt.choice, func(t *testing.T) {
			t.Parallel()
			d := startLookupdOn(t, "127.0.0.1", "--http-access-log="+tt.choice)
			get := func(path string, want int) {
				resp, err := httpClient.Get(d.url(path))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Fatalf("GET %s: %s; want %d", path, resp.Status, want)
				}
			}
			for i := range 50 {
				get(fmt.Sprintf("/ping?n=%d", i), 200)
				get(fmt.Sprintf("/metrics?n=%d", i), 200)
				time.Sleep(100 * time.Millisecond)
			}
			get("/info?n=0", 200)
			for i := range 3 {
				get(fmt.Sprintf("/lookup?topic=missing&n=%d", i), 404)
			}
			if _, err := d.terminate(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			out := d.text()
			probes := len(regexp.MustCompile(`INFO: 200 GET /(ping|metrics|info)\?n=\d+ `).FindAllString(out, -1))
			errors := len(regexp.MustCompile(`INFO: 404 GET /lookup\?topic=missing&n=\d+ `).FindAllString(out, -1))
			if probes != tt.probes || errors != tt.errors {
				t.Fatalf("--http-access-log=%s: %d probe lines, %d error lines; want %d, %d", tt.choice, probes, errors, tt.probes, tt.errors)
			}
		})
	}
}
