package harness

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

const (
	maxFrame = 64 << 20 // largest answer frame accepted from the daemon
	// idleReaderSize buffers a connection's reads outside a pipeline:
	// answers are then a few bytes at a time, and at bench's xlarge preset
	// 5 000 connections hold one each.
	idleReaderSize = 512
	// pipelineReaderSize buffers the reads of a pipeline, which answers
	// thousands of commands in a row; the buffer is lent for it only.
	pipelineReaderSize = 32 << 10
)

var pipelineReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, pipelineReaderSize) }}

// Identity is what an nsqd announces in IDENTIFY, what lookupd answers
// about itself, and what /lookup and /nodes list of a producer.
type Identity struct {
	RemoteAddress    string `json:"remote_address,omitempty"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
}

// Conn is a registration connection, as an nsqd holds one. Whoever uses it
// (a command and its answer, a pipeline, a PING) holds its lock.
type Conn struct {
	net.Conn
	sync.Mutex
	r   *bufio.Reader
	buf []byte
}

// Dial connects to addr, sends the protocol magic and IDENTIFY as id, and
// returns the daemon's answer, all within timeout.
func Dial(ctx context.Context, addr string, id Identity, timeout time.Duration) (c *Conn, ans Identity, err error) {
	nc, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, ans, err
	}
	c = &Conn{Conn: nc, r: bufio.NewReaderSize(nc, idleReaderSize)}
	body, _ := json.Marshal(id)
	msg := binary.BigEndian.AppendUint32([]byte("  V1IDENTIFY\n"), uint32(len(body)))
	nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	if _, err = nc.Write(append(msg, body...)); err != nil {
		err = fmt.Errorf("IDENTIFY: %w", err)
	} else if frame, ferr := c.ReadFrame(); ferr != nil {
		err = fmt.Errorf("IDENTIFY answer: %w", ferr)
	} else if jerr := json.Unmarshal(frame, &ans); jerr != nil {
		err = fmt.Errorf("IDENTIFY answer %q: %w", Truncate(frame, 200), jerr)
	}
	if err != nil {
		nc.Close()
		return nil, ans, err
	}
	return c, ans, nil
}

// ReadFrame reads one framed answer: a 4-byte big-endian length and the
// body, valid until the next call.
func (c *Conn) ReadFrame() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", n, maxFrame)
	}
	if cap(c.buf) < int(n) {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		return nil, err
	}
	return c.buf, nil
}

// ExpectOK reads one frame and fails unless it is "OK".
func (c *Conn) ExpectOK() error {
	frame, err := c.ReadFrame()
	if err == nil && string(frame) != "OK" {
		err = fmt.Errorf("answer %q, want \"OK\"", Truncate(frame, 200))
	}
	return err
}

// Ping sends PING and waits for OK, within timeout.
func (c *Conn) Ping(timeout time.Duration) error {
	c.Lock()
	defer c.Unlock()
	return c.PingLocked(timeout)
}

// PingLocked is Ping with c locked.
func (c *Conn) PingLocked(timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.Conn, "PING\n"); err != nil {
		return err
	}
	return c.ExpectOK()
}

// Pipeline, with c locked, has write stream n commands from a goroutine
// while it reads one OK for each, calling tick (if not nil) after each.
// Its reads go through a large buffer, lent for the pipeline only.
func (c *Conn) Pipeline(n int, write func(w *bufio.Writer), tick func(i int)) (err error) {
	if c.r.Buffered() > 0 {
		return fmt.Errorf("%d unexpected bytes from the daemon before the pipeline", c.r.Buffered())
	}
	idle, br := c.r, pipelineReaders.Get().(*bufio.Reader)
	br.Reset(c.Conn)
	c.r = br
	defer func() {
		if err == nil && br.Buffered() > 0 {
			err = fmt.Errorf("%d unexpected bytes from the daemon after the last OK", br.Buffered())
		}
		c.r = idle
		br.Reset(nil)
		pipelineReaders.Put(br)
	}()
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c.Conn, 64<<10)
		write(w)
		werr <- w.Flush() // bufio errors are sticky: Flush reports any
	}()
	for i := range n {
		if err := c.ExpectOK(); err != nil {
			c.Close() // unblocks the writer
			<-werr
			return fmt.Errorf("answer %d/%d: %w", i+1, n, err)
		}
		if tick != nil {
			tick(i)
		}
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// Truncate shortens b for error messages.
func Truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
