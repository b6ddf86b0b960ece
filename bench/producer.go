package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net"
	"strconv"
	"sync"
	"time"
)

// Fake nsqd ports announced in IDENTIFY: producer i claims tcp_port
// fakeTCPBase+i and http_port fakeHTTPBase+i, so every producer is unique and
// recognisable in /lookup and /nodes answers.
const (
	fakeTCPBase  = 10000
	fakeHTTPBase = 40000
	maxProducers = fakeHTTPBase - fakeTCPBase

	maxFrame = 64 << 20 // largest response frame accepted from the daemon

	// idleReaderSize buffers a connection's reads outside a pipelined
	// registration: answers are then a few bytes at a time, and at the
	// xlarge preset 5 000 connections hold one each.
	idleReaderSize = 512
	// pipelineReaderSize buffers the reads of a pipelined registration,
	// which answers thousands of commands in a row; the buffer is lent by
	// pipelineReaders for the registration only.
	pipelineReaderSize = 32 << 10
	// keepaliveWorkers bound the goroutines that send the fleet's PINGs.
	keepaliveWorkers = 16
)

var pipelineReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, pipelineReaderSize) }}

// assignTopics spreads topics over producers round-robin: topic i is
// registered by producers (i*perTopic + k) % producers for k in [0, perTopic).
// Those are perTopic consecutive residues, hence distinct when
// perTopic <= producers, and every producer gets either floor or ceil of
// topics*perTopic/producers topics. It returns the topic indices of each
// producer, in increasing order.
func assignTopics(producers, topics, perTopic int) [][]int {
	out := make([][]int, producers)
	for i := range topics {
		for _, p := range topicProducers(i, producers, perTopic) {
			out[p] = append(out[p], i)
		}
	}
	return out
}

// topicProducers returns the producers that register topic i.
func topicProducers(i, producers, perTopic int) []int {
	ps := make([]int, perTopic)
	for k := range ps {
		ps[k] = (i*perTopic + k) % producers
	}
	return ps
}

// naming holds the precomputed names of one run, each carrying its run id.
type naming struct {
	runID    string
	topics   []string
	channels []string
}

func newNaming(runID string, w workload) *naming {
	n := &naming{runID: runID, topics: make([]string, w.Topics), channels: make([]string, w.Channels)}
	for i := range n.topics {
		n.topics[i] = fmt.Sprintf("b%s-t%06d", runID, i)
	}
	for i := range n.channels {
		n.channels[i] = "ch" + strconv.Itoa(i)
	}
	return n
}

func (n *naming) hostname(producer int) string {
	return fmt.Sprintf("bench-%s-p%d", n.runID, producer)
}

// identity is what an nsqd announces in IDENTIFY, what lookupd answers
// about itself, and what /lookup and /nodes list of a producer.
type identity struct {
	RemoteAddress    string `json:"remote_address,omitempty"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
}

// producer is one simulated nsqd: a TCP connection to the daemon's
// registration port. mu is held by whoever uses the connection: a
// registration, a churn command, a PING.
type producer struct {
	idx    int
	topics []int // indices into naming.topics

	conn net.Conn
	r    *bufio.Reader
	buf  []byte
	mu   sync.Mutex
}

// dialProducer connects producer idx to addr, sends the protocol magic and
// IDENTIFY, and returns the daemon's answer. topics are the indices of the
// topics the producer will register.
func dialProducer(ctx context.Context, addr string, idx int, nm *naming, topics []int, timeout time.Duration) (p *producer, ans identity, err error) {
	conn, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, ans, err
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	p = &producer{idx: idx, topics: topics, conn: conn, r: bufio.NewReaderSize(conn, idleReaderSize)}
	body, _ := json.Marshal(identity{Hostname: nm.hostname(idx), BroadcastAddress: "127.0.0.1",
		TCPPort: fakeTCPBase + idx, HTTPPort: fakeHTTPBase + idx, Version: "1.3.0"})
	msg := binary.BigEndian.AppendUint32([]byte("  V1IDENTIFY\n"), uint32(len(body)))
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(append(msg, body...)); err != nil {
		return nil, ans, fmt.Errorf("IDENTIFY: %w", err)
	}
	frame, err := p.readFrame()
	if err != nil {
		return nil, ans, fmt.Errorf("IDENTIFY answer: %w", err)
	}
	if err := json.Unmarshal(frame, &ans); err != nil {
		return nil, ans, fmt.Errorf("IDENTIFY answer %q: %w", truncate(frame, 200), err)
	}
	return p, ans, nil
}

// readFrame reads one framed answer: a 4-byte big-endian length and the body.
// The returned slice is only valid until the next call.
func (p *producer) readFrame() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", n, maxFrame)
	}
	if cap(p.buf) < int(n) {
		p.buf = make([]byte, n)
	}
	p.buf = p.buf[:n]
	if _, err := io.ReadFull(p.r, p.buf); err != nil {
		return nil, err
	}
	return p.buf, nil
}

// expectOK reads one frame and fails unless it is "OK".
func (p *producer) expectOK() error {
	frame, err := p.readFrame()
	if err != nil {
		return err
	}
	if string(frame) != "OK" {
		return fmt.Errorf("answer %q, want \"OK\"", truncate(frame, 200))
	}
	return nil
}

// register sends REGISTER for each topic of the producer, each followed by
// REGISTER for each of channels, in mode: pipelined, a writer goroutine
// streams every command while this goroutine reads and checks the answers;
// sequential, each command is written with one write, as nsqd does, and its
// OK read before the next. It returns the time of the first write and of
// the last OK, and the number of commands. The whole registration must end
// within timeout.
func (p *producer) register(nm *naming, channels []string, mode string, timeout time.Duration) (first, last time.Time, n int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn.SetDeadline(time.Now().Add(timeout))
	defer p.conn.SetDeadline(time.Time{})
	first = time.Now()
	if mode == modePipelined {
		n, err = p.pipeline(nm, channels)
		return first, time.Now(), n, err
	}
	var line []byte
	for topic, channel := range p.registrations(nm, channels) {
		line = appendCommand(line[:0], "REGISTER", topic, channel)
		n++
		if _, err := p.conn.Write(line); err != nil {
			return first, last, n, fmt.Errorf("writing REGISTER %d: %w", n, err)
		}
		if err := p.expectOK(); err != nil {
			return first, last, n, fmt.Errorf("REGISTER answer %d: %w", n, err)
		}
	}
	return first, time.Now(), n, nil
}

// pipeline is register's pipelined mode, with p.mu held. Its reads go
// through a large buffer, lent for the registration only.
func (p *producer) pipeline(nm *naming, channels []string) (n int, err error) {
	n = len(p.topics) * (1 + len(channels))
	if p.r.Buffered() > 0 {
		return 0, fmt.Errorf("%d unexpected bytes from the daemon before REGISTER", p.r.Buffered())
	}
	idle, br := p.r, pipelineReaders.Get().(*bufio.Reader)
	br.Reset(p.conn)
	p.r = br
	defer func() {
		if err == nil && br.Buffered() > 0 {
			err = fmt.Errorf("%d unexpected bytes from the daemon after the last OK", br.Buffered())
		}
		p.r = idle
		br.Reset(nil)
		pipelineReaders.Put(br)
	}()
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(p.conn, 64<<10)
		var line []byte
		for topic, channel := range p.registrations(nm, channels) {
			line = appendCommand(line[:0], "REGISTER", topic, channel)
			w.Write(line)
		}
		werr <- w.Flush() // bufio errors are sticky: Flush reports any
	}()
	for i := range n {
		if err := p.expectOK(); err != nil {
			p.conn.Close() // unblocks the writer
			<-werr
			return n, fmt.Errorf("REGISTER answer %d/%d: %w", i+1, n, err)
		}
	}
	if err := <-werr; err != nil {
		return n, fmt.Errorf("writing REGISTER: %w", err)
	}
	return n, nil
}

// registrations yields the topic and the channel ("" for the topic itself)
// of each REGISTER the producer sends, in order.
func (p *producer) registrations(nm *naming, channels []string) iter.Seq2[string, string] {
	return func(yield func(topic, channel string) bool) {
		for _, t := range p.topics {
			if !yield(nm.topics[t], "") {
				return
			}
			for _, ch := range channels {
				if !yield(nm.topics[t], ch) {
					return
				}
			}
		}
	}
}

// appendCommand appends the command line "VERB topic[ channel]\n" to b.
func appendCommand(b []byte, verb, topic, channel string) []byte {
	b = append(b, verb...)
	b = append(b, ' ')
	b = append(b, topic...)
	if channel != "" {
		b = append(b, ' ')
		b = append(b, channel...)
	}
	return append(b, '\n')
}

// ping sends PING and waits for OK.
func (p *producer) ping(timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pingLocked(timeout)
}

// pingLocked is ping with p.mu held.
func (p *producer) pingLocked(timeout time.Duration) error {
	p.conn.SetDeadline(time.Now().Add(timeout))
	defer p.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(p.conn, "PING\n"); err != nil {
		return err
	}
	return p.expectOK()
}
