package main

import (
	"bufio"
	"context"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/lookupd/nsqlookupd/bench/internal/harness"
)

// Fake nsqd ports announced in IDENTIFY: producer i claims tcp_port
// fakeTCPBase+i and http_port fakeHTTPBase+i, so every producer is unique and
// recognisable in /lookup and /nodes answers.
const (
	fakeTCPBase  = 10000
	fakeHTTPBase = 40000
	maxProducers = fakeHTTPBase - fakeTCPBase
	// keepaliveWorkers bound the goroutines that send the fleet's PINGs.
	keepaliveWorkers = 16
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

type identity = harness.Identity

// producer is one simulated nsqd: a registration connection, and the topics
// it registers.
type producer struct {
	*harness.Conn
	idx    int
	topics []int // indices into naming.topics
}

// dialProducer connects producer idx to addr and IDENTIFYs it, and returns
// the daemon's answer. topics are the indices of the topics it will
// register.
func dialProducer(ctx context.Context, addr string, idx int, nm *naming, topics []int, timeout time.Duration) (*producer, identity, error) {
	c, ans, err := harness.Dial(ctx, addr, identity{Hostname: nm.hostname(idx), BroadcastAddress: "127.0.0.1",
		TCPPort: fakeTCPBase + idx, HTTPPort: fakeHTTPBase + idx, Version: "1.3.0"}, timeout)
	if err != nil {
		return nil, ans, err
	}
	return &producer{Conn: c, idx: idx, topics: topics}, ans, nil
}

// register sends REGISTER for each topic of the producer, each followed by
// REGISTER for each of channels, in mode: pipelined, a writer goroutine
// streams every command while this goroutine reads and checks the answers;
// sequential, each command is written with one write, as nsqd does, and its
// OK read before the next. It returns the time of the first write and of
// the last OK, and the number of commands. The whole registration must end
// within timeout.
func (p *producer) register(nm *naming, channels []string, mode string, timeout time.Duration) (first, last time.Time, n int, err error) {
	p.Lock()
	defer p.Unlock()
	p.SetDeadline(time.Now().Add(timeout))
	defer p.SetDeadline(time.Time{})
	first = time.Now()
	if mode == modePipelined {
		n, err = p.pipeline(nm, channels)
		return first, time.Now(), n, err
	}
	var line []byte
	for topic, channel := range p.registrations(nm, channels) {
		line = appendCommand(line[:0], "REGISTER", topic, channel)
		n++
		if _, err := p.Write(line); err != nil {
			return first, last, n, fmt.Errorf("writing REGISTER %d: %w", n, err)
		}
		if err := p.ExpectOK(); err != nil {
			return first, last, n, fmt.Errorf("REGISTER answer %d: %w", n, err)
		}
	}
	return first, time.Now(), n, nil
}

// pipeline is register's pipelined mode, with p locked.
func (p *producer) pipeline(nm *naming, channels []string) (n int, err error) {
	n = len(p.topics) * (1 + len(channels))
	err = p.Pipeline(n, func(w *bufio.Writer) {
		var line []byte
		for topic, channel := range p.registrations(nm, channels) {
			line = appendCommand(line[:0], "REGISTER", topic, channel)
			w.Write(line)
		}
	}, nil)
	if err != nil {
		return n, fmt.Errorf("REGISTER: %w", err)
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
