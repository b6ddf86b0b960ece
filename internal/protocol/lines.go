package protocol

import (
	"bufio"
	"bytes"
	"io"
	"sync"
)

// idleLineBuffer is the size of the buffer a LineReader reads into while
// its peer sends a command at a time: every valid command fits in it (the
// longest, UNREGISTER with 64-byte names, is 141 bytes).
const idleLineBuffer = 256

// lineBuffers are the large buffers of every LineReader, shared: a reader
// holds one only while its peer streams commands or sends a long line.
var lineBuffers sync.Pool

// LineReader reads lines of at most max bytes, as a bufio.Reader of size
// max does, but holds only idleLineBuffer bytes while its peer is quiet:
// it takes a buffer of max bytes from a pool when a read fills the small
// one (the peer streams commands, or sends a long line) and gives it back
// once a read no longer fills it and what is left to take fits in the
// small one (the idle producers of docs/performance.md).
type LineReader struct {
	r          io.Reader
	max        int
	small      []byte
	big        *[]byte // from lineBuffers, or nil
	buf        []byte  // small or *big
	start, end int     // buf[start:end] is read and not yet taken
	full       bool    // the last read filled buf: more is likely waiting
	err        error   // of the last read, returned once buf is drained
}

// NewLineReader returns a LineReader of lines of at most max bytes from
// r; max must be at least idleLineBuffer.
func NewLineReader(r io.Reader, max int) *LineReader {
	small := make([]byte, idleLineBuffer)
	return &LineReader{r: r, max: max, small: small, buf: small}
}

// ReadSlice returns the next line, '\n' included, as bufio's ReadSlice:
// the bytes are valid until the next read; bufio.ErrBufferFull when max
// bytes hold no '\n'; the read's error, with the bytes before it, at the
// end.
func (l *LineReader) ReadSlice(delim byte) ([]byte, error) {
	for scanned := 0; ; {
		if i := bytes.IndexByte(l.buf[l.start+scanned:l.end], delim); i >= 0 {
			line := l.buf[l.start : l.start+scanned+i+1]
			l.start += scanned + i + 1
			return line, nil
		}
		scanned = l.end - l.start
		if scanned >= l.max || l.err != nil {
			line, err := l.buf[l.start:l.end], l.err
			l.start, l.err = l.end, nil
			if err == nil {
				err = bufio.ErrBufferFull
			}
			return line, err
		}
		l.fill()
	}
}

// fill reads once more into the buffer, after what is not yet taken.
func (l *LineReader) fill() {
	n := copy(l.buf, l.buf[l.start:l.end])
	l.start, l.end = 0, n
	switch {
	case l.big == nil && (l.full || n == len(l.buf)):
		if l.big, _ = lineBuffers.Get().(*[]byte); l.big == nil || len(*l.big) != l.max {
			b := make([]byte, l.max)
			l.big = &b
		}
		l.buf = *l.big
		copy(l.buf, l.small[:n])
	case l.big != nil && !l.full && n <= len(l.small):
		copy(l.small, l.buf[:n])
		lineBuffers.Put(l.big)
		l.big, l.buf = nil, l.small
	}
	m, err := l.r.Read(l.buf[l.end:])
	l.end += m
	l.full, l.err = l.end == len(l.buf), err
}

// Read reads what is buffered, else from the underlying reader, as
// bufio's Read does.
func (l *LineReader) Read(p []byte) (int, error) {
	if l.start == l.end {
		if l.err == nil {
			if len(p) >= len(l.buf) {
				return l.r.Read(p)
			}
			l.fill()
		}
		if l.start == l.end {
			err := l.err
			l.err = nil
			return 0, err
		}
	}
	n := copy(p, l.buf[l.start:l.end])
	l.start += n
	return n, nil
}
