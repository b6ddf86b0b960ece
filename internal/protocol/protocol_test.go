package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		prefix, data string
		want         string
	}{
		{"", "", "\x00\x00\x00\x00"},
		{"", "OK", "\x00\x00\x00\x02OK"},
		{"xy", "OK", "xy\x00\x00\x00\x02OK"},
		{"", strings.Repeat("a", 0x0102), "\x00\x00\x01\x02" + strings.Repeat("a", 0x0102)},
		{"", "E_INVALID invalid command \x00\xff", "\x00\x00\x00\x1cE_INVALID invalid command \x00\xff"},
	}
	for _, tt := range tests {
		got := string(AppendFrame([]byte(tt.prefix), []byte(tt.data)))
		if got != tt.want {
			t.Errorf("AppendFrame(%q, %q): got %q; want %q", tt.prefix, tt.data, got, tt.want)
		}
	}
}

// countingWriter records each Write call.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestSendFramedResponse(t *testing.T) {
	var w countingWriter
	n, err := SendFramedResponse(&w, []byte("E_BAD_PROTOCOL"))
	if err != nil {
		t.Fatalf("SendFramedResponse: got error %v; want nil", err)
	}
	if want := "\x00\x00\x00\x0eE_BAD_PROTOCOL"; w.String() != want || n != len(want) {
		t.Fatalf("got %q (n=%d); want %q (n=%d)", w.String(), n, want, len(want))
	}
	if w.writes != 1 {
		t.Fatalf("got %d writes; want 1 (a frame goes out in one write)", w.writes)
	}
	if _, err := SendFramedResponse(failingWriter{}, []byte("OK")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("got error %v; want %v", err, io.ErrClosedPipe)
	}
}

func TestClientErr(t *testing.T) {
	cause := io.ErrUnexpectedEOF
	err := NewClientErr(cause, "E_BAD_BODY", "IDENTIFY failed to read body")
	if got, want := err.Error(), "E_BAD_BODY IDENTIFY failed to read body"; got != want {
		t.Fatalf("Error(): got %q; want %q", got, want)
	}
	if got := errors.Unwrap(err); got != cause {
		t.Fatalf("Unwrap: got %v; want %v", got, cause)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("errors.Is(err, io.ErrUnexpectedEOF): got false; want true")
	}

	noCause := &ClientErr{Code: "E_INVALID", Desc: "invalid command X"}
	if got := noCause.Unwrap(); got != nil {
		t.Fatalf("Unwrap without cause: got %v; want nil", got)
	}
	if got, want := noCause.Error(), "E_INVALID invalid command X"; got != want {
		t.Fatalf("Error(): got %q; want %q", got, want)
	}

	// errors.As finds a ClientErr through wrapping.
	wrapped := fmt.Errorf("exec: %w", err)
	var target *ClientErr
	if !errors.As(wrapped, &target) || target.Code != "E_BAD_BODY" {
		t.Fatalf("errors.As: got %v; want code E_BAD_BODY", target)
	}
}
