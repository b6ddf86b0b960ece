// Package test holds helpers for the tests of both modules: a logger that
// writes into the test log, polling with a deadline, a CA, and the shapes
// of a filled registry.
package test

import (
	"sync"
	"testing"
	"time"
)

// Logger writes log lines into t.Log, so a failing test shows them in
// order. Lines logged after the test has finished are dropped.
type Logger struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

// NewTestLogger returns a Logger for tb. Call it before starting anything
// that logs: its cleanup then runs after theirs.
func NewTestLogger(tb testing.TB) *Logger {
	l := &Logger{tb: tb}
	tb.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

// Output writes s to the test log.
func (l *Logger) Output(maxdepth int, s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.tb.Log(s)
	}
	return nil
}

// Eventually polls cond every few milliseconds until it returns true, and
// fails the test if it has not by the deadline d.
func Eventually(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			tb.Fatalf("condition not met within %s", d)
		}
	}
}
