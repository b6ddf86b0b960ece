package nsqlookupd

import (
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	t.Parallel()
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
