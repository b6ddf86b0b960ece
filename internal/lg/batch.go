package lg

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// maxPending bounds the log bytes a BatchWriter holds while its writes are
// under way; past it, writers wait, as they would for a plain write.
const maxPending = 1 << 20

// keptBuffer is the largest buffer a BatchWriter keeps between batches:
// enough for a full batch, so a busy writer allocates nothing; idleBuffer
// the largest it keeps once idle. A writer that catches up goes idle many
// times a second during a registration burst: with 64 KiB kept, it grew its
// buffers again each time, and a JSON REGISTER cost 1.5-1.7× a text one
// (1.2× with 1 MiB kept, text 19% cheaper too: docs/logging.md).
const (
	keptBuffer = 2 * maxPending
	idleBuffer = maxPending
)

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
	dropped uint64     // lines w did not take (a write error), in all
}

// NewBatchWriter returns a BatchWriter writing to w.
func NewBatchWriter(w io.Writer) *BatchWriter {
	b := &BatchWriter{w: w}
	b.done = sync.NewCond(&b.mu)
	return b
}

// Write queues a copy of p. It never fails: a line that w does not take
// (stderr is a pipe whose reader has gone, a full disk) is counted in
// Dropped and otherwise ignored, as log.Logger ignores write errors.
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

// begin returns the pending buffer to append one line to, with the
// writer's lock held; end must follow, with what begin returned grown.
func (b *BatchWriter) begin() []byte {
	b.mu.Lock()
	for len(b.pending) >= maxPending {
		b.done.Wait()
	}
	return b.pending
}

// end takes back the buffer begin returned, now holding one more line,
// and releases the lock.
func (b *BatchWriter) end(p []byte) {
	b.queued += uint64(len(p) - len(b.pending))
	b.pending = p
	if !b.writing {
		b.writing = true
		go b.writeLoop()
	}
	b.mu.Unlock()
}

// writeLoop writes batches until nothing is pending.
func (b *BatchWriter) writeLoop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending) > 0 {
		batch := b.pending
		b.pending = b.spare[:0]
		b.mu.Unlock()
		n, err := b.w.Write(batch)
		b.mu.Lock()
		if err != nil && n < len(batch) {
			// every line not wholly written, a torn one included
			b.dropped += uint64(bytes.Count(batch[max(n, 0):], []byte{'\n'}))
		}
		b.written += uint64(len(batch))
		b.spare = nil
		if cap(batch) <= keptBuffer {
			b.spare = batch
		}
		b.done.Broadcast()
	}
	// idle: keep only a small buffer, not what a burst needed
	if cap(b.spare) > idleBuffer {
		b.spare = nil
	}
	if cap(b.pending) > idleBuffer {
		b.pending = nil
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

// Dropped returns how many lines w has failed to take so far.
func (b *BatchWriter) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// BatchedLogger is the daemon's standard logger: lines as log.Logger
// writes them with the prefix, date and time to the microsecond (see
// NewLogger), written through a BatchWriter. It formats each line straight
// into the writer's buffer: a line costs no allocation, where log.Logger
// and fmt made three.
type BatchedLogger struct {
	prefix string
	w      *BatchWriter
	now    func() time.Time // time.Now; tests set another

	stamp atomic.Pointer[stamp] // the date and time of the last second seen
}

// stamp is "<prefix>yyyy/mm/dd hh:mm:ss." for the second sec.
type stamp struct {
	sec  int64
	text []byte
}

// NewBatchedLogger returns a BatchedLogger writing to w.
func NewBatchedLogger(prefix string, w io.Writer) *BatchedLogger {
	return &BatchedLogger{prefix: prefix, w: NewBatchWriter(w), now: time.Now}
}

// Flush returns once every line so far has been handed to the writer.
func (l *BatchedLogger) Flush() { l.w.Flush() }

// Dropped returns how many lines the writer has failed to take so far.
func (l *BatchedLogger) Dropped() uint64 { return l.w.Dropped() }

// Output writes s as one line, as log.Logger.Output does.
func (l *BatchedLogger) Output(_ int, s string) error {
	now := l.now()
	st := l.stamp.Load()
	if sec := now.Unix(); st == nil || st.sec != sec {
		st = &stamp{sec: sec, text: appendStamp([]byte(l.prefix), now)}
		l.stamp.Store(st)
	}
	b := l.w.begin()
	b = append(b, st.text...)
	b = appendDigits(b, now.Nanosecond()/1000, 6)
	b = append(append(b, ' '), s...)
	if len(b) == 0 || b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	l.w.end(b)
	return nil
}

// appendStamp appends now's date and time to the second, and the '.' of
// the microseconds, as log.Logger writes them (local time).
func appendStamp(b []byte, now time.Time) []byte {
	year, month, day := now.Date()
	hour, min, sec := now.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '/')
	b = appendDigits(b, int(month), 2)
	b = append(b, '/')
	b = appendDigits(b, day, 2)
	b = append(b, ' ')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	return append(b, '.')
}

// appendDigits appends n in width digits, zero-padded (more if n needs).
func appendDigits(b []byte, n, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for n >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	i--
	buf[i] = byte('0' + n)
	return append(b, buf[i:]...)
}
