package lg

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
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
