package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
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
)

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

// naming holds the precomputed names of one run. Every name carries the run
// id so runs against a long-lived daemon (-addr) do not see each other.
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

func (n *naming) topicPrefix() string { return "b" + n.runID + "-t" }
func (n *naming) hostPrefix() string  { return "bench-" + n.runID + "-p" }

// identifyBody is what a producer sends in IDENTIFY, like nsqd does.
type identifyBody struct {
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
	Hostname         string `json:"hostname"`
}

// identifyAnswer is the daemon's JSON answer to IDENTIFY.
type identifyAnswer struct {
	BroadcastAddress string `json:"broadcast_address"`
	Hostname         string `json:"hostname"`
	HTTPPort         int    `json:"http_port"`
	TCPPort          int    `json:"tcp_port"`
	Version          string `json:"version"`
}

// producer is one simulated nsqd: a TCP connection to the daemon's
// registration port. After registration, mu serialises the request/answer
// exchanges (PING) on the connection.
type producer struct {
	idx      int
	hostname string
	tcpPort  int
	httpPort int
	topics   []int // indices into naming.topics

	conn net.Conn
	r    *bufio.Reader
	buf  []byte
	mu   sync.Mutex
}

// dialProducer connects producer idx to addr, sends the protocol magic and
// IDENTIFY, and returns the daemon's answer.
func dialProducer(ctx context.Context, addr string, idx int, nm *naming, topics []int, timeout time.Duration) (*producer, identifyAnswer, error) {
	p := &producer{
		idx:      idx,
		hostname: nm.hostname(idx),
		tcpPort:  fakeTCPBase + idx,
		httpPort: fakeHTTPBase + idx,
		topics:   topics,
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, identifyAnswer{}, err
	}
	p.conn = conn
	p.r = bufio.NewReaderSize(conn, 32<<10)

	body, _ := json.Marshal(identifyBody{
		BroadcastAddress: "127.0.0.1",
		TCPPort:          p.tcpPort,
		HTTPPort:         p.httpPort,
		Version:          "1.3.0",
		Hostname:         p.hostname,
	})
	msg := make([]byte, 0, 4+9+4+len(body))
	msg = append(msg, "  V1IDENTIFY\n"...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(body)))
	msg = append(msg, body...)

	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	var ans identifyAnswer
	if _, err := conn.Write(msg); err != nil {
		conn.Close()
		return nil, ans, fmt.Errorf("IDENTIFY: %w", err)
	}
	frame, err := p.readFrame()
	if err != nil {
		conn.Close()
		return nil, ans, fmt.Errorf("IDENTIFY answer: %w", err)
	}
	if err := json.Unmarshal(frame, &ans); err != nil {
		conn.Close()
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

// register sends REGISTER for every topic of the producer, followed by
// REGISTER for each of its channels, pipelined: a writer goroutine streams
// every command through a buffered writer while this goroutine reads and
// checks the answers. It returns the time of the first write and of the last
// OK, and the number of REGISTER commands sent.
func (p *producer) register(nm *naming, timeout time.Duration) (first, last time.Time, n int, err error) {
	n = len(p.topics) * (1 + len(nm.channels))
	if n == 0 {
		return first, last, 0, nil
	}
	p.conn.SetDeadline(time.Now().Add(timeout))
	defer p.conn.SetDeadline(time.Time{})

	werr := make(chan error, 1)
	first = time.Now()
	go func() {
		w := bufio.NewWriterSize(p.conn, 64<<10)
		for _, t := range p.topics {
			topic := nm.topics[t]
			w.WriteString("REGISTER ")
			w.WriteString(topic)
			w.WriteByte('\n')
			for _, ch := range nm.channels {
				w.WriteString("REGISTER ")
				w.WriteString(topic)
				w.WriteByte(' ')
				w.WriteString(ch)
				w.WriteByte('\n')
			}
		}
		werr <- w.Flush() // bufio errors are sticky: Flush reports any
	}()
	for i := range n {
		if err := p.expectOK(); err != nil {
			p.conn.Close() // unblocks the writer
			<-werr
			return first, last, n, fmt.Errorf("REGISTER answer %d/%d: %w", i+1, n, err)
		}
	}
	last = time.Now()
	if err := <-werr; err != nil {
		return first, last, n, fmt.Errorf("writing REGISTER: %w", err)
	}
	return first, last, n, nil
}

// ping sends PING and waits for OK.
func (p *producer) ping(timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn.SetDeadline(time.Now().Add(timeout))
	defer p.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(p.conn, "PING\n"); err != nil {
		return err
	}
	return p.expectOK()
}

// fleet is the set of simulated producers connected to one daemon.
type fleet struct {
	prods   []*producer
	timeout time.Duration

	stopPing context.CancelFunc
	pingWG   sync.WaitGroup
	errMu    sync.Mutex
	pingErr  error
}

// identifyStats summarises the connect+IDENTIFY phase.
type identifyStats struct {
	Seconds float64        `json:"seconds"`
	Answer  identifyAnswer `json:"answer"`
}

// connectFleet dials and identifies every producer, at most concurrency at a
// time. check validates each IDENTIFY answer.
func connectFleet(ctx context.Context, addr string, w workload, nm *naming, concurrency int, timeout time.Duration, check func(identifyAnswer) error) (*fleet, identifyStats, error) {
	assign := assignTopics(w.Producers, w.Topics, w.PerTopic)
	f := &fleet{prods: make([]*producer, w.Producers), timeout: timeout}
	answers := make([]identifyAnswer, w.Producers)
	start := time.Now()
	err := forEach(ctx, w.Producers, concurrency, func(i int) error {
		p, ans, err := dialProducer(ctx, addr, i, nm, assign[i], timeout)
		if err != nil {
			return fmt.Errorf("producer %d: %w", i, err)
		}
		f.prods[i] = p
		answers[i] = ans
		if err := check(ans); err != nil {
			return fmt.Errorf("producer %d: IDENTIFY answer: %w", i, err)
		}
		return nil
	})
	st := identifyStats{Seconds: time.Since(start).Seconds()}
	if len(answers) > 0 {
		st.Answer = answers[0]
	}
	if err != nil {
		f.close()
		return nil, st, err
	}
	return f, st, nil
}

// registerStats summarises the registration phase.
type registerStats struct {
	Commands  int     `json:"commands"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
}

// registerAll runs every producer's pipelined registration, at most
// concurrency producers at a time, and measures REGISTER/s from the first
// write to the last OK.
func (f *fleet) registerAll(ctx context.Context, nm *naming, concurrency int) (registerStats, error) {
	var mu sync.Mutex
	var first, last time.Time
	total := 0
	// Closing the connections is what interrupts blocked reads on Ctrl-C.
	stop := context.AfterFunc(ctx, f.close)
	defer stop()
	err := forEach(ctx, len(f.prods), concurrency, func(i int) error {
		p := f.prods[i]
		a, b, n, err := p.register(nm, f.timeout)
		if err != nil {
			return fmt.Errorf("producer %d: %w", i, err)
		}
		mu.Lock()
		defer mu.Unlock()
		total += n
		if n > 0 {
			if first.IsZero() || a.Before(first) {
				first = a
			}
			if b.After(last) {
				last = b
			}
		}
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	st := registerStats{Commands: total}
	if total > 0 {
		st.Seconds = last.Sub(first).Seconds()
		st.PerSecond = float64(total) / st.Seconds
	}
	return st, err
}

// startKeepalive makes every producer send PING each interval, as nsqd does,
// so that none of them becomes inactive during the measurement.
func (f *fleet) startKeepalive(interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	f.stopPing = cancel
	for _, p := range f.prods {
		f.pingWG.Add(1)
		go func() {
			defer f.pingWG.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := p.ping(f.timeout); err != nil && ctx.Err() == nil {
						f.recordPingErr(fmt.Errorf("producer %d: keepalive PING: %w", p.idx, err))
						return
					}
				}
			}
		}()
	}
}

func (f *fleet) recordPingErr(err error) {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.pingErr == nil {
		f.pingErr = err
	}
}

// checkAlive sends one PING on every connection and returns the first
// failure, or a failure recorded by the keepalive goroutines: a daemon that
// dropped a producer during the run fails it.
func (f *fleet) checkAlive(ctx context.Context, concurrency int) error {
	f.errMu.Lock()
	err := f.pingErr
	f.errMu.Unlock()
	if err != nil {
		return err
	}
	return forEach(ctx, len(f.prods), concurrency, func(i int) error {
		if err := f.prods[i].ping(f.timeout); err != nil {
			return fmt.Errorf("producer %d: final PING: %w", i, err)
		}
		return nil
	})
}

// close stops the keepalive goroutines and closes every connection. It is
// safe to call more than once.
func (f *fleet) close() {
	if f.stopPing != nil {
		f.stopPing()
	}
	for _, p := range f.prods {
		if p != nil {
			p.conn.Close()
		}
	}
	f.pingWG.Wait()
}

// forEach calls fn(i) for i in [0, n) from at most concurrency goroutines
// (all at once if concurrency <= 0) and returns the first error; after an
// error or cancellation no new calls start.
func forEach(ctx context.Context, n, concurrency int, fn func(i int) error) error {
	if concurrency <= 0 || concurrency > n {
		concurrency = n
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// truncate shortens b for error messages.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
