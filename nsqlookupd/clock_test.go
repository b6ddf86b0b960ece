package nsqlookupd

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when a test calls Advance. Its
// AfterFunc calls run, each in its own goroutine as time.AfterFunc's do,
// when Advance passes their due time.
type fakeClock struct {
	mu     sync.Mutex // guards the fields below
	now    time.Time
	timers map[*fakeTimer]struct{} // pending calls
}

func newFakeClock() *fakeClock {
	return &fakeClock{
		now:    time.Date(2026, 11, 24, 14, 17, 2, 0, time.UTC),
		timers: make(map[*fakeTimer]struct{}),
	}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d and starts every call that falls due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for t := range c.timers {
		if !t.when.After(c.now) {
			delete(c.timers, t)
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}

// Pending returns how many AfterFunc calls are waiting.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) timer {
	t := &fakeTimer{c: c, f: f}
	t.Reset(d)
	return t
}

type fakeTimer struct {
	c    *fakeClock
	f    func()
	when time.Time // guarded by c.mu
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, pending := t.c.timers[t]
	t.when = t.c.now.Add(d)
	t.c.timers[t] = struct{}{}
	return pending
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, pending := t.c.timers[t]
	delete(t.c.timers, t)
	return pending
}

func TestFakeClock(t *testing.T) {
	c := newFakeClock()
	start := c.Now()
	fired := make(chan string, 3)
	c.AfterFunc(time.Second, func() { fired <- "a" })
	b := c.AfterFunc(2*time.Second, func() { fired <- "b" })
	stopped := c.AfterFunc(time.Second, func() { fired <- "stopped" })
	if !stopped.Stop() {
		t.Fatal("Stop of a pending call: got false; want true")
	}
	c.Advance(999 * time.Millisecond)
	if n := c.Pending(); n != 2 {
		t.Fatalf("pending after 999ms: got %d; want 2", n)
	}
	c.Advance(time.Millisecond)
	if got := <-fired; got != "a" {
		t.Fatalf("fired: got %q; want a", got)
	}
	b.Reset(2 * time.Second) // due at start+3s now
	c.Advance(time.Second)
	if n := c.Pending(); n != 1 {
		t.Fatalf("pending after reset: got %d; want 1", n)
	}
	c.Advance(time.Second)
	if got := <-fired; got != "b" {
		t.Fatalf("fired: got %q; want b", got)
	}
	if got := c.Now().Sub(start); got != 3*time.Second {
		t.Fatalf("Now moved %s; want 3s", got)
	}
}
