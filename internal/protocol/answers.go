package protocol

import (
	"io"
	"sync"
)

// answerBufferSize is how many bytes of answers Answers gathers before it
// writes them: a burst of pipelined commands is answered in few writes.
const answerBufferSize = 4096

// answerBuffers are the buffers of every connection's Answers, shared: a
// connection holds one only from its first gathered answer to the write.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, answerBufferSize); return &b }}

// Answers gathers a connection's framed answers and writes them to W in
// one Write on Flush, or before an answer that would overflow
// answerBufferSize. Its buffer comes from a pool with the first answer and
// goes back once written, so that a quiet connection holds none (the idle
// producers of docs/performance.md). Like a bufio.Writer's, its first
// write error is returned by every later call.
type Answers struct {
	W   io.Writer
	buf *[]byte // nil when nothing is gathered
	err error
}

// Add gathers data as one frame.
func (a *Answers) Add(data []byte) error {
	if a.buf != nil && len(*a.buf)+4+len(data) > answerBufferSize {
		a.Flush()
	}
	if a.err != nil {
		return a.err
	}
	if a.buf == nil {
		a.buf = answerBuffers.Get().(*[]byte)
	}
	*a.buf = AppendFrame(*a.buf, data)
	return nil
}

// Buffered returns how many bytes are gathered.
func (a *Answers) Buffered() int {
	if a.buf == nil {
		return 0
	}
	return len(*a.buf)
}

// Flush writes what is gathered and gives the buffer back.
func (a *Answers) Flush() error {
	if a.buf == nil || a.err != nil {
		return a.err
	}
	b := a.buf
	a.buf = nil
	_, a.err = a.W.Write(*b)
	if *b = (*b)[:0]; cap(*b) <= answerBufferSize { // one grown by a large answer is not kept
		answerBuffers.Put(b)
	}
	return a.err
}
