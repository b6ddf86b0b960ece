package lg

import (
	"io"
	"log"
	"os"
	"sync"
)

// maxPending bounds the log bytes a BatchWriter holds while its writes are
// under way; past it, writers wait, as they would for a plain write.
const maxPending = 1 << 20

// keptBuffer is the largest buffer a BatchWriter keeps between batches.
const keptBuffer = 64 << 10

// BatchWriter writes to w what it is given, in order, from a goroutine of
// its own: lines that arrive while a write is under way go out together in
// the next one (a group commit). An idle writer writes a line at once; a
// burst of lines (a fleet of nsqd registering) costs a write per batch
// instead of one per line, which was half of what a REGISTER cost.
type BatchWriter struct {
	w io.Writer

	mu      sync.Mutex // guards the fields below
	done    *sync.Cond // signalled when a batch has been written
	pending []byte     // bytes not yet handed to w
	spare   []byte     // the last batch's buffer, for reuse
	writing bool       // the write loop is running
	queued  uint64     // bytes accepted by Write, in all
	written uint64     // bytes handed to w, in all
}

// NewBatchWriter returns a BatchWriter writing to w.
func NewBatchWriter(w io.Writer) *BatchWriter {
	b := &BatchWriter{w: w}
	b.done = sync.NewCond(&b.mu)
	return b
}

// Write queues a copy of p. It never fails: errors of w are dropped, as
// log.Logger drops them.
func (b *BatchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending) >= maxPending {
		b.done.Wait()
	}
	b.pending = append(b.pending, p...)
	b.queued += uint64(len(p))
	if !b.writing {
		b.writing = true
		go b.writeLoop()
	}
	return len(p), nil
}

// writeLoop writes batches until nothing is pending.
func (b *BatchWriter) writeLoop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending) > 0 {
		batch := b.pending
		b.pending = b.spare[:0]
		b.mu.Unlock()
		b.w.Write(batch)
		b.mu.Lock()
		b.written += uint64(len(batch))
		b.spare = nil
		if cap(batch) <= keptBuffer {
			b.spare = batch
		}
		b.done.Broadcast()
	}
	b.writing = false
}

// Flush returns once everything written before it has been handed to w.
func (b *BatchWriter) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for target := b.queued; b.written < target; {
		b.done.Wait()
	}
}

// NewBatchedLogger returns the daemon's standard logger (see NewLogger)
// writing through a BatchWriter, and the writer's Flush, to call before
// the process exits.
func NewBatchedLogger(prefix string) (*log.Logger, func()) {
	b := NewBatchWriter(os.Stderr)
	return log.New(b, prefix, log.Ldate|log.Ltime|log.Lmicroseconds), b.Flush
}
