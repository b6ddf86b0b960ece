package lg

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedWriter records every write; the first one blocks until the gate
// opens, so a test can see lines queue up behind a write under way.
type gatedWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
	entered chan struct{} // closed when the first write has begun
	gate    chan struct{} // the first write returns once closed
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	first := w.writes == 0
	w.writes++
	w.mu.Unlock()
	if first {
		close(w.entered)
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func TestBatchWriterGroupsLinesInOrder(t *testing.T) {
	w := &gatedWriter{entered: make(chan struct{}), gate: make(chan struct{})}
	b := NewBatchWriter(w)
	b.Write([]byte("line 0\n"))
	<-w.entered // the first line is being written: the next ones wait together
	var want bytes.Buffer
	want.WriteString("line 0\n")
	for i := 1; i <= 100; i++ {
		line := fmt.Sprintf("line %d\n", i)
		b.Write([]byte(line))
		want.WriteString(line)
	}
	close(w.gate)
	b.Flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	if got := w.buf.String(); got != want.String() {
		t.Fatalf("got %q; want the 101 lines in order", got)
	}
	if w.writes != 2 {
		t.Fatalf("got %d writes; want 2 (the first line, then the 100 that queued behind it)", w.writes)
	}
}

func TestBatchWriterFlushWhenIdle(t *testing.T) {
	var buf bytes.Buffer
	b := NewBatchWriter(&buf)
	b.Flush() // nothing written: returns at once
	for i := range 1000 {
		fmt.Fprintf(b, "%d\n", i)
	}
	b.Flush()
	if got := bytes.Count(buf.Bytes(), []byte("\n")); got != 1000 {
		t.Fatalf("after Flush: got %d lines; want 1000", got)
	}
}

// TestBatchedLoggerAsLogLogger: a BatchedLogger writes the lines log.Logger
// writes with the daemon's flags: "<prefix>yyyy/mm/dd hh:mm:ss.micro msg",
// a newline added unless msg ends in one.
func TestBatchedLoggerAsLogLogger(t *testing.T) {
	const prefix = "[nsqlookupd] "
	msgs := []string{"INFO: DB: client(127.0.0.1:1234) REGISTER category:topic key:t subkey:", "WARNING: two\nlines", "ends in a newline\n", ""}
	for _, when := range []time.Time{
		time.Date(2026, 11, 24, 14, 17, 2, 485968123, time.Local),
		time.Date(2026, 1, 2, 3, 4, 5, 6000, time.Local),
		time.Date(999, 12, 31, 23, 59, 59, 999999999, time.Local),
		time.Date(2026, 11, 24, 0, 0, 0, 0, time.Local),
	} {
		var got bytes.Buffer
		l := NewBatchedLogger(prefix, &got)
		l.now = func() time.Time { return when }
		want := ""
		for _, msg := range msgs {
			l.Output(2, msg)
			want += prefix + when.Format("2006/01/02 15:04:05.000000 ") + msg
			if !strings.HasSuffix(msg, "\n") {
				want += "\n"
			}
		}
		Logf(l, INFO, INFO, "DB: client(%s) x", "a")
		want += prefix + when.Format("2006/01/02 15:04:05.000000 ") + "INFO: DB: client(a) x\n"
		l.Flush()
		if got.String() != want {
			t.Fatalf("at %s:\ngot  %q\nwant %q", when, got.String(), want)
		}
	}
	// and that layout is log.Logger's, read off a live line
	var live bytes.Buffer
	log.New(&live, prefix, log.Ldate|log.Ltime|log.Lmicroseconds).Output(1, msgs[0])
	line := strings.TrimPrefix(live.String(), prefix)
	if _, err := time.ParseInLocation("2006/01/02 15:04:05.000000 ", line[:27], time.Local); err != nil || line[27:] != msgs[0]+"\n" {
		t.Fatalf("log.Logger wrote %q: not the layout assumed (%v)", live.String(), err)
	}
}

// BenchmarkBatchedLoggerLine logs the daemon's most frequent line to
// /dev/null, through log.Logger and through a BatchedLogger.
func BenchmarkBatchedLoggerLine(b *testing.B) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	b.Run("log.Logger", func(b *testing.B) {
		l := log.New(devNull, "[nsqlookupd] ", log.Ldate|log.Ltime|log.Lmicroseconds)
		b.ReportAllocs()
		for b.Loop() {
			Logf(l, INFO, INFO, "DB: client(%s) REGISTER category:%s key:%s subkey:%s", "127.0.0.1:51234", "channel", "topic-000123", "ch-4")
		}
	})
	b.Run("BatchedLogger/Join", func(b *testing.B) {
		l := NewBatchedLogger("[nsqlookupd] ", devNull)
		b.ReportAllocs()
		for b.Loop() {
			logJoined(l, INFO, INFO, "DB: client(", "127.0.0.1:51234", ") REGISTER category:", "channel", " key:", "topic-000123", " subkey:", "ch-4")
		}
		l.Flush()
	})
	b.Run("BatchedLogger", func(b *testing.B) {
		l := NewBatchedLogger("[nsqlookupd] ", devNull)
		b.ReportAllocs()
		for b.Loop() {
			Logf(l, INFO, INFO, "DB: client(%s) REGISTER category:%s key:%s subkey:%s", "127.0.0.1:51234", "channel", "topic-000123", "ch-4")
		}
		l.Flush()
	})
}

// shortWriter takes the first n bytes it is given, then fails.
type shortWriter struct{ n int }

func (w *shortWriter) Write(p []byte) (int, error) {
	n := min(w.n, len(p))
	w.n -= n
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// TestBatchWriterCountsDropped: lines a failing writer does not take are
// counted, a line cut in the middle included; Write itself never fails.
func TestBatchWriterCountsDropped(t *testing.T) {
	b := NewBatchWriter(&shortWriter{n: len("one\ntw")})
	for _, line := range []string{"one\n", "two\n", "three\n"} {
		if n, err := b.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write: got %d, %v; want %d, nil", n, err, len(line))
		}
	}
	b.Flush()
	if got := b.Dropped(); got != 2 {
		t.Fatalf("got %d lines dropped; want 2 (two, cut, and three)", got)
	}
}

// TestBatchedLoggerClosedPipe: a pipe whose reader has gone fails every
// write (EPIPE); the logger carries on and counts each line.
func TestBatchedLoggerClosedPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Close()
	l := NewBatchedLogger("[nsqlookupd] ", w)
	for i := range 100 {
		Logf(l, INFO, INFO, "line %d", i)
	}
	l.Flush()
	if got := l.Dropped(); got != 100 {
		t.Fatalf("got %d lines dropped; want 100", got)
	}
}
