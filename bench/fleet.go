package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// fleet is the set of simulated producers connected to one daemon.
type fleet struct {
	prods   []*producer
	timeout time.Duration

	stopPing context.CancelFunc
	pingWG   sync.WaitGroup
	pingErr  atomic.Pointer[error] // the first keepalive failure
}

// identifyStats summarises the connect+IDENTIFY phase.
type identifyStats struct {
	Seconds float64  `json:"seconds"`
	Answer  identity `json:"answer"`
}

// connectFleet dials and identifies len(assign) producers, numbered from
// base, at most concurrency at a time: producer base+i will register the
// topics assign[i]. check validates each IDENTIFY answer.
func connectFleet(ctx context.Context, addr string, nm *naming, base int, assign [][]int, concurrency int, timeout time.Duration, check func(identity) error) (*fleet, identifyStats, error) {
	f := &fleet{prods: make([]*producer, len(assign)), timeout: timeout}
	var st identifyStats
	start := time.Now()
	err := forEach(ctx, len(assign), concurrency, func(i int) error {
		p, ans, err := dialProducer(ctx, addr, base+i, nm, assign[i], timeout)
		if err != nil {
			return fmt.Errorf("producer %d: %w", base+i, err)
		}
		if f.prods[i] = p; i == 0 {
			st.Answer = ans
		}
		if err := check(ans); err != nil {
			return fmt.Errorf("producer %d: IDENTIFY answer: %w", base+i, err)
		}
		return nil
	})
	st.Seconds = time.Since(start).Seconds()
	if err != nil {
		f.close()
		return nil, st, err
	}
	return f, st, nil
}

// registerAll runs every producer's registration in mode (modePipelined or
// modeSequential), at most concurrency producers at a time, and measures
// REGISTER/s from the first write to the last OK.
func (f *fleet) registerAll(ctx context.Context, nm *naming, concurrency int, mode string) (*registerPhase, error) {
	var mu sync.Mutex
	var first, last time.Time
	total := 0
	// Closing the connections is what interrupts blocked reads on Ctrl-C.
	stop := context.AfterFunc(ctx, f.close)
	defer stop()
	err := forEach(ctx, len(f.prods), concurrency, func(i int) error {
		p := f.prods[i]
		a, b, n, err := p.register(nm, nm.channels, mode, f.timeout)
		if err != nil {
			return fmt.Errorf("producer %d: %w", p.idx, err)
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
	st := &registerPhase{Commands: total, Mode: mode, Producers: len(f.prods)}
	if total > 0 {
		st.Seconds = last.Sub(first).Seconds()
		st.PerSecond = float64(total) / st.Seconds
	}
	return st, err
}

// startKeepalive makes every producer send PING each interval, as nsqd
// does, from now until close, so that none becomes inactive or is taken for
// a dead peer. At most keepaliveWorkers goroutines share the producers, each
// pinging its share in turn, spread evenly over the interval. A producer
// whose connection is busy (registering, churning) is skipped that round:
// its commands are traffic enough.
func (f *fleet) startKeepalive(interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	f.stopPing = cancel
	workers := min(len(f.prods), keepaliveWorkers)
	for w := range workers {
		var share []*producer
		for i := w; i < len(f.prods); i += workers {
			share = append(share, f.prods[i])
		}
		step := interval / time.Duration(len(share))
		offset := step * time.Duration(w) / time.Duration(workers)
		f.pingWG.Add(1)
		go func() {
			defer f.pingWG.Done()
			t := time.NewTimer(offset)
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				t.Reset(step)
				p := share[i%len(share)]
				if !p.TryLock() {
					continue
				}
				err := p.PingLocked(f.timeout)
				p.Unlock()
				if err != nil && ctx.Err() == nil {
					err = fmt.Errorf("producer %d: keepalive PING: %w", p.idx, err)
					f.pingErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
}

// checkAlive sends one PING on every connection and returns the first
// failure, or a failure recorded by the keepalive goroutines: a daemon that
// dropped a producer during the run fails it.
func (f *fleet) checkAlive(ctx context.Context, concurrency int) error {
	if err := f.pingErr.Load(); err != nil {
		return *err
	}
	return forEach(ctx, len(f.prods), concurrency, func(i int) error {
		if err := f.prods[i].Ping(f.timeout); err != nil {
			return fmt.Errorf("producer %d: final PING: %w", f.prods[i].idx, err)
		}
		return nil
	})
}

// stopKeepalive stops the keepalive PINGs, if they were started.
func (f *fleet) stopKeepalive() {
	if f.stopPing != nil {
		f.stopPing()
	}
}

// close stops the keepalive goroutines and closes every connection. It is
// safe to call more than once.
func (f *fleet) close() {
	f.stopKeepalive()
	for _, p := range f.prods {
		if p != nil {
			p.Close()
		}
	}
	f.pingWG.Wait()
}

// forEach calls fn(i) for i in [0, n) from at most concurrency goroutines
// (all at once if concurrency <= 0) and returns the first error; after an
// error or cancellation no new calls start.
func forEach(ctx context.Context, n, concurrency int, fn func(i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	if concurrency > 0 {
		g.SetLimit(concurrency)
	}
	for i := 0; i < n && gctx.Err() == nil; i++ {
		g.Go(func() error {
			if gctx.Err() != nil {
				return nil
			}
			return fn(i)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// group runs functions until the first fails: its error cancels the
// others' context, ctx, and wait returns it.
type group struct {
	*errgroup.Group
	ctx    context.Context
	cancel context.CancelFunc
}

func newGroup(ctx context.Context) *group {
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	return &group{g, gctx, cancel}
}

func (g *group) spawn(fn func(ctx context.Context) error) { g.Go(func() error { return fn(g.ctx) }) }

// stop cancels the functions' context, waits for them and returns the
// first error.
func (g *group) stop() error {
	g.cancel()
	return g.Wait()
}
