package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// writes records each Write it is given.
type writes struct {
	got [][]byte
	err error
}

func (w *writes) Write(p []byte) (int, error) {
	w.got = append(w.got, bytes.Clone(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// TestAnswers: answers are gathered into one write on Flush, or written
// before one that would overflow the buffer; the buffer is held only while
// something is gathered; the first write error sticks.
func TestAnswers(t *testing.T) {
	t.Parallel()
	w := &writes{}
	a := &Answers{W: w}
	a.Add([]byte("OK"))
	a.Add([]byte("OK"))
	if len(w.got) != 0 || a.Buffered() != 12 {
		t.Fatalf("before Flush: %d writes, %d gathered; want 0, 12", len(w.got), a.Buffered())
	}
	if err := a.Flush(); err != nil || len(w.got) != 1 || string(w.got[0]) != "\x00\x00\x00\x02OK\x00\x00\x00\x02OK" {
		t.Fatalf("Flush: %v, writes %q; want both answers in one write", err, w.got)
	}
	if a.buf != nil || a.Buffered() != 0 {
		t.Fatal("after Flush the buffer is still held; want it back in the pool")
	}
	a.Flush()
	if len(w.got) != 1 {
		t.Fatalf("Flush of nothing wrote: %d writes; want 1", len(w.got))
	}

	big := []byte(strings.Repeat("x", answerBufferSize-4-6))
	a.Add(big)
	a.Add([]byte("OK")) // fits exactly
	a.Add([]byte("OK")) // overflows: what is gathered goes first
	if len(w.got) != 2 || len(w.got[1]) != answerBufferSize || a.Buffered() != 6 {
		t.Fatalf("overflow: %d writes (last %d bytes), %d gathered; want 2 (%d bytes), 6", len(w.got), len(w.got[len(w.got)-1]), a.Buffered(), answerBufferSize)
	}
	a.Flush()

	huge := []byte(strings.Repeat("y", 2*answerBufferSize))
	a.Add(huge)
	if err := a.Flush(); err != nil || len(w.got[len(w.got)-1]) != 4+len(huge) {
		t.Fatalf("an answer larger than the buffer: %v, last write %d bytes; want %d", err, len(w.got[len(w.got)-1]), 4+len(huge))
	}

	w.err = errors.New("broken")
	a.Add([]byte("OK"))
	if err := a.Flush(); err != w.err {
		t.Fatalf("Flush: got %v; want %v", err, w.err)
	}
	n := len(w.got)
	if err := a.Add([]byte("OK")); err != w.err || a.Flush() != w.err || len(w.got) != n {
		t.Fatalf("after an error: Add %v, %d more writes; want the error again and no write", err, len(w.got)-n)
	}
}
