package lg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// at is the time the tests' lines are written at.
var at = time.Date(2026, 12, 6, 18, 29, 27, 123456000, time.FixedZone("CET", 3600))

// newTestLog returns a Log in s writing into a buffer through a
// BatchedLogger, with the clock stopped at at.
func newTestLog(s Settings) (*Log, *BatchedLogger, *bytes.Buffer) {
	var buf bytes.Buffer
	b := NewBatchedLogger("[nsqlookupd] ", &buf)
	b.now = func() time.Time { return at }
	l := New(b, s)
	l.now = b.now
	return l, b, &buf
}

// logEvents logs one line of each kind.
func logEvents(l *Log) {
	l.Logf(INFO, "HTTP: listening on %s", "127.0.0.1:4161")
	l.Join(INFO, Keys{1: "remote_address", 5: "category", 7: "topic", 9: "channel"},
		"DB: client(", "127.0.0.1:50000", ") ", "REGISTER", " category:", "topic", " key:", "orders", " subkey:", "")
	l.Eventf(INFO, Keys{"", "status", "method", "path", "remote_address", "duration"}, "%s%d %s %s (%s) %s",
		"", 200, "GET", "/lookup?topic=orders", "127.0.0.1:50001", 1500*time.Microsecond)
	l.Eventf(WARN, Keys{"remote_address", "reason"}, "client(%s) - %s", "127.0.0.1:50002", errors.New("read: connection reset"))
	l.Logf(DEBUG, "not written at INFO")
}

// TestLogText: the text format writes what the daemon wrote before the
// JSON format existed, byte for byte: Eventf and Logf as Logf, Join as the
// joined message, the keys changing nothing.
func TestLogText(t *testing.T) {
	l, b, buf := newTestLog(Settings{Level: INFO})
	logEvents(l)
	b.Flush()

	var want bytes.Buffer
	ref := NewBatchedLogger("[nsqlookupd] ", &want)
	ref.now = func() time.Time { return at }
	Logf(ref, INFO, INFO, "HTTP: listening on %s", "127.0.0.1:4161")
	Logf(ref, INFO, INFO, "DB: client(%s) %s category:%s key:%s subkey:%s", "127.0.0.1:50000", "REGISTER", "topic", "orders", "")
	Logf(ref, INFO, INFO, "%s%d %s %s (%s) %s", "", 200, "GET", "/lookup?topic=orders", "127.0.0.1:50001", 1500*time.Microsecond)
	Logf(ref, INFO, WARN, "client(%s) - %s", "127.0.0.1:50002", errors.New("read: connection reset"))
	ref.Flush()
	if buf.String() != want.String() {
		t.Fatalf("got\n%s\nwant\n%s", buf, &want)
	}
}

// TestLogJSON: one object per line with time (RFC 3339, UTC), level (the
// text line's word), msg (the text line's message) and the named fields:
// integers as numbers, durations in seconds, errors as their text, empty
// strings left out.
func TestLogJSON(t *testing.T) {
	l, b, buf := newTestLog(Settings{Level: INFO, Format: JSON})
	logEvents(l)
	b.Flush()
	want := []string{
		`{"time":"2026-12-06T17:29:27.123456Z","level":"INFO","msg":"HTTP: listening on 127.0.0.1:4161"}`,
		`{"time":"2026-12-06T17:29:27.123456Z","level":"INFO","msg":"DB: client(127.0.0.1:50000) REGISTER category:topic key:orders subkey:","remote_address":"127.0.0.1:50000","category":"topic","topic":"orders"}`,
		`{"time":"2026-12-06T17:29:27.123456Z","level":"INFO","msg":"200 GET /lookup?topic=orders (127.0.0.1:50001) 1.5ms","status":200,"method":"GET","path":"/lookup?topic=orders","remote_address":"127.0.0.1:50001","duration":0.0015}`,
		`{"time":"2026-12-06T17:29:27.123456Z","level":"WARNING","msg":"client(127.0.0.1:50002) - read: connection reset","remote_address":"127.0.0.1:50002","reason":"read: connection reset"}`,
	}
	if got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLogSet: new settings apply from the next line on.
func TestLogSet(t *testing.T) {
	l, b, buf := newTestLog(Settings{Level: INFO})
	l.Logf(INFO, "one")
	l.Set(Settings{Level: WARN, Format: JSON})
	l.Logf(INFO, "two")
	l.Logf(ERROR, "three")
	l.Set(Settings{Level: DEBUG})
	l.Logf(DEBUG, "four")
	b.Flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " INFO: one") ||
		!strings.HasPrefix(lines[1], `{"time":`) || !strings.Contains(lines[1], `"level":"ERROR","msg":"three"`) ||
		!strings.HasSuffix(lines[2], " DEBUG: four") {
		t.Fatalf("got %q; want one (text), three (JSON), four (text)", lines)
	}
	if got := l.Settings(); got != (Settings{Level: DEBUG}) {
		t.Fatalf("Settings: got %+v", got)
	}
}

// TestLogJSONOtherLogger: the JSON lines of a Logger that is not a
// BatchedLogger go to its Output, one a call, without the newline.
func TestLogJSONOtherLogger(t *testing.T) {
	var out []string
	l := New(outputFunc(func(s string) { out = append(out, s) }), Settings{Level: INFO, Format: JSON})
	l.Logf(INFO, "a\nb")
	l.Logf(ERROR, "c")
	if len(out) != 2 || !json.Valid([]byte(out[0])) || !strings.Contains(out[0], `"msg":"a\nb"`) || strings.HasSuffix(out[1], "\n") {
		t.Fatalf("got %q", out)
	}
}

type outputFunc func(string)

func (f outputFunc) Output(_ int, s string) error { f(s); return nil }

func TestLogsRequest(t *testing.T) {
	for _, tt := range []struct {
		s           Settings
		probe, want bool
	}{
		{Settings{Level: INFO, Access: AccessAll}, true, true},
		{Settings{Level: INFO, Access: AccessAll}, false, true},
		{Settings{Level: INFO, Access: AccessNone}, false, false},
		{Settings{Level: INFO, Access: AccessIgnoreProbes}, true, false},
		{Settings{Level: INFO, Access: AccessIgnoreProbes}, false, true},
		{Settings{Level: WARN, Access: AccessAll}, false, false},
		{Settings{Level: DEBUG, Access: AccessIgnoreProbes}, false, true},
	} {
		l := New(NilLogger{}, tt.s)
		if got := l.LogsRequest(tt.probe); got != tt.want {
			t.Errorf("%+v, probe %v: got %v; want %v", tt.s, tt.probe, got, tt.want)
		}
	}
}

func TestParseFormatAndAccessLog(t *testing.T) {
	for _, s := range []string{"text", "JSON"} {
		var f Format
		if err := f.Set(s); err != nil || !strings.EqualFold(f.String(), s) {
			t.Errorf("Format.Set(%q): %v, %v", s, f, err)
		}
	}
	for _, s := range []string{"all", "none", "Ignore-Probes"} {
		var a AccessLog
		if err := a.Set(s); err != nil || !strings.EqualFold(a.String(), s) {
			t.Errorf("AccessLog.Set(%q): %v, %v", s, a, err)
		}
	}
	var f Format
	var a AccessLog
	if f.Set("yaml") == nil || a.Set("some") == nil {
		t.Error("a bad value was accepted")
	}
}

// slogLine is what log/slog's JSONHandler writes for an event of msg with
// the string field key=value (left out when empty), decoded.
func slogLine(t *testing.T, msg, key, value string) map[string]interface{} {
	var buf bytes.Buffer
	r := slog.NewRecord(at, slog.LevelInfo, msg, 0)
	if value != "" {
		r.AddAttrs(slog.String(key, value))
	}
	if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var m map[string]interface{}
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("slog wrote %q: %v", buf.String(), err)
	}
	return m
}

// FuzzJSONLine: whatever a message or a field holds (control bytes,
// newlines, quotes, invalid UTF-8, a hostile topic name), each event is one
// line of valid JSON, and its msg and field decode to what log/slog's
// JSONHandler writes for them (invalid bytes as U+FFFD); its time is RFC
// 3339 in UTC.
func FuzzJSONLine(f *testing.F) {
	f.Add("E_BAD_TOPIC REGISTER topic name '%s' is not valid", "a\"b\\c\nd")
	f.Add("%d %s", "\x00\x1f\x7f\u2028\u2029\b\f")
	f.Add("ok", "\xff\xfe\xc3")
	f.Add("ends in a newline\n", "</script>&<>")
	f.Add("\xc3", "\xb0") // a character split between two parts
	f.Fuzz(func(t *testing.T, msg, value string) {
		l, b, buf := newTestLog(Settings{Level: DEBUG, Format: JSON})
		l.Join(INFO, Keys{1: "topic"}, msg, value)
		l.Eventf(INFO, Keys{"", "path"}, "%s %s", msg, value)
		b.Flush()
		lines := strings.Split(buf.String(), "\n")
		if len(lines) != 3 || lines[2] != "" {
			t.Fatalf("got %d lines %q; want 2", len(lines)-1, buf.String())
		}
		for i, want := range []map[string]interface{}{
			slogLine(t, msg+value, "topic", value),
			slogLine(t, msg+" "+value, "path", value),
		} {
			var got map[string]interface{}
			if err := json.Unmarshal([]byte(lines[i]), &got); err != nil || !utf8.ValidString(lines[i]) {
				t.Fatalf("line %q: %v", lines[i], err)
			}
			if tm, err := time.Parse(time.RFC3339Nano, fmt.Sprint(got["time"])); err != nil || !tm.Equal(at) || tm.Location() != time.UTC {
				t.Fatalf("time %v (%v); want %s in UTC", got["time"], err, at)
			}
			delete(got, "time")
			delete(want, "time")
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("line %q:\ngot  %v\nslog %v", lines[i], got, want)
			}
		}
	})
}

// BenchmarkLogRegister logs the daemon's most frequent line, a REGISTER,
// to /dev/null in each format.
func BenchmarkLogRegister(b *testing.B) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	keys := Keys{1: "remote_address", 5: "category", 7: "topic", 9: "channel"}
	for _, format := range []Format{Text, JSON} {
		b.Run("format="+format.String(), func(b *testing.B) {
			bl := NewBatchedLogger("[nsqlookupd] ", io.Writer(devNull))
			l := New(bl, Settings{Level: INFO, Format: format})
			b.ReportAllocs()
			test.ReportCPU(b)
			for b.Loop() {
				l.Join(INFO, keys, "DB: client(", "127.0.0.1:51234", ") ", "REGISTER", " category:", "channel", " key:", "topic-000123", " subkey:", "ch-4")
			}
			bl.Flush()
		})
	}
}
