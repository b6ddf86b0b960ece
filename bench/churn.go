package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The churn phase; docs/performance.md says what it does and why.
const (
	churnMaxLive = 8                      // ephemeral channels a churn connection holds at once
	churnMaxLag  = 100 * time.Millisecond // how late a sender may catch up rather than restart
	// churnVerifyTopics bounds the topics verified while churn runs.
	churnVerifyTopics = 100
	// ephemeralSuffix marks a channel the daemon removes when it empties.
	ephemeralSuffix = "#ephemeral"
)

// churnLayout places the churn connections: connection j (producer P+j)
// holds the topics i with i % n == j, so every topic has exactly one.
type churnLayout struct{ n int }

func (l churnLayout) churnerOf(topic int) int { return topic % l.n }

// topicsOf returns the topics of churn connection j, in increasing order.
func (l churnLayout) topicsOf(j, topics int) []int {
	out := make([]int, 0, topics/l.n+1)
	for i := j; i < topics; i += l.n {
		out = append(out, i)
	}
	return out
}

// churnChannel names the seq-th ephemeral channel of churn connection j.
func churnChannel(j, seq int) string {
	return "c" + strconv.Itoa(j) + "-" + strconv.Itoa(seq) + ephemeralSuffix
}

// parseChurnChannel returns the churn connection that name belongs to, if
// it is a name churnChannel makes.
func parseChurnChannel(name string) (j int, ok bool) {
	var seq int
	_, err := fmt.Sscanf(name, "c%d-%d"+ephemeralSuffix, &j, &seq)
	return j, err == nil && j >= 0 && seq >= 0 && churnChannel(j, seq) == name
}

// pacer spaces commands open loop: command n is due at start + n*interval;
// past maxLag late, the schedule restarts from now.
type pacer struct {
	start    time.Time
	interval time.Duration
	maxLag   time.Duration
	n        int64
}

// newPacer returns the pacer of sender k of n sharing a schedule of one
// command each interval from start, spread evenly over the interval.
func newPacer(start time.Time, interval time.Duration, k, n int) *pacer {
	return &pacer{start: start.Add(interval * time.Duration(k) / time.Duration(n)), interval: interval, maxLag: churnMaxLag}
}

// sleep waits until the next command is due; false if ctx ended first.
func (p *pacer) sleep(ctx context.Context) bool {
	if d := p.wait(time.Now()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}

// wait returns how long to wait, from now, before sending the next command.
func (p *pacer) wait(now time.Time) time.Duration {
	due := p.start.Add(time.Duration(p.n) * p.interval)
	if now.Sub(due) > p.maxLag {
		p.start = now.Add(-time.Duration(p.n) * p.interval)
		due = now
	}
	p.n++
	return max(due.Sub(now), 0)
}

// churnInterval is the interval between the commands of one of conns
// connections sending rate commands per second between them.
func churnInterval(conns int, rate float64) time.Duration {
	return time.Duration(float64(conns) / rate * float64(time.Second))
}

// liveChannel is an ephemeral channel a churn connection has registered:
// churnChannel(j, seq) in topic (an index into naming.topics).
type liveChannel struct{ topic, seq int }

// churnOp is one churn command.
type churnOp struct {
	register bool
	ch       liveChannel
	index    int // of ch in churnState.live, for an UNREGISTER
}

// churnState is what one churn connection has registered.
type churnState struct {
	j       int
	topics  []int
	maxLive int
	live    []liveChannel
	seq     int
}

// next chooses the next command: REGISTER in a random topic, or UNREGISTER
// a random live channel, evenly within 0..maxLive alive.
func (s *churnState) next(r *rand.Rand) churnOp {
	if len(s.live) == 0 || (len(s.live) < s.maxLive && r.IntN(2) == 0) {
		return churnOp{register: true, ch: liveChannel{topic: s.topics[r.IntN(len(s.topics))], seq: s.seq}}
	}
	i := r.IntN(len(s.live))
	return churnOp{ch: s.live[i], index: i}
}

// apply records that op succeeded.
func (s *churnState) apply(op churnOp) {
	if op.register {
		s.live = append(s.live, op.ch)
		s.seq++
		return
	}
	last := len(s.live) - 1
	s.live[op.index] = s.live[last]
	s.live = s.live[:last]
}

// churner drives one churn connection.
type churner struct {
	p     *producer
	state churnState
	rng   *rand.Rand
	line  []byte

	lat                    []time.Duration // round trip of each command
	registers, unregisters int
	done                   atomic.Int64 // commands answered, read while it runs
}

// run sends churn commands on pace's schedule until ctx ends. Every answer
// must be OK.
func (c *churner) run(ctx context.Context, nm *naming, pace *pacer, timeout time.Duration) error {
	for pace.sleep(ctx) {
		op := c.state.next(c.rng)
		rtt, err := c.do(op, nm, timeout)
		if err != nil {
			return err
		}
		c.lat = append(c.lat, rtt)
		c.done.Add(1)
		if op.register {
			c.registers++
		} else {
			c.unregisters++
		}
	}
	return nil
}

// do sends op, reads its answer and returns the round trip: from before
// the write to after the OK.
func (c *churner) do(op churnOp, nm *naming, timeout time.Duration) (time.Duration, error) {
	verb := "UNREGISTER"
	if op.register {
		verb = "REGISTER"
	}
	c.line = appendCommand(c.line[:0], verb, nm.topics[op.ch.topic], churnChannel(c.state.j, op.ch.seq))
	p := c.p
	p.Lock()
	defer p.Unlock()
	p.SetDeadline(time.Now().Add(timeout))
	defer p.SetDeadline(time.Time{})
	t0 := time.Now()
	_, err := p.Write(c.line)
	if err == nil {
		err = p.ExpectOK()
	}
	if err != nil {
		return 0, fmt.Errorf("churn connection %d: %s: %w", p.idx, strings.TrimSpace(string(c.line)), err)
	}
	c.state.apply(op)
	return time.Since(t0), nil
}

// unregisterLive unregisters every channel the connection still holds,
// one command at a time.
func (c *churner) unregisterLive(nm *naming, timeout time.Duration) error {
	for n := len(c.state.live); n > 0; n = len(c.state.live) {
		if _, err := c.do(churnOp{ch: c.state.live[n-1], index: n - 1}, nm, timeout); err != nil {
			return err
		}
	}
	return nil
}
