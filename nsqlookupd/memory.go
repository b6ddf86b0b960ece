package nsqlookupd

import (
	"runtime/debug"
	"sync"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

// Memory release after a mass deletion. The Go runtime gives freed memory
// back to the OS on its own only slowly, and an idle daemon runs no
// collection for two minutes: after 100 000 topics are deleted, measured
// RSS stayed 140 MiB over what it was for minutes on end, the heap long
// empty. So the daemon watches the registry's size and, once it has fallen
// to half a peak, collects and returns the memory at once.
const (
	// releaseCheck is how often the registry's size is looked at.
	releaseCheck = time.Second
	// releaseMinPeak is the smallest peak size worth a release: below it
	// the memory at stake is a MiB or two.
	releaseMinPeak = 10000
	// releaseInterval is the least time between two releases: each is a
	// full collection, and a churn of producers that come and go may
	// halve the registry again and again.
	releaseInterval = 30 * time.Second
)

// memoryReleaser returns memory to the OS when the registry has shrunk to
// half a peak of at least releaseMinPeak, at most once per releaseInterval.
// A registry that holds its size under churn, however large, never
// triggers it.
type memoryReleaser struct {
	l        *NSQLookupd
	peak     int
	released time.Time // the last release, on l.clock

	mu      sync.Mutex // guards timer and stopped
	timer   timer
	stopped bool
}

func newMemoryReleaser(l *NSQLookupd) *memoryReleaser {
	return &memoryReleaser{l: l}
}

// start checks every releaseCheck until stop.
func (m *memoryReleaser) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.stopped && m.timer == nil {
		m.timer = m.l.clock.AfterFunc(releaseCheck, m.check)
	}
}

// stop ends the checks; a check under way does not arm another.
func (m *memoryReleaser) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	if m.timer != nil {
		m.timer.Stop()
	}
}

// check runs on the timer's goroutine, one at a time.
func (m *memoryReleaser) check() {
	s := m.l.db.Stats(m.l.clock.Now())
	size := s.Producers + s.Topics + s.Channels + s.Registrations
	m.peak = max(m.peak, size)
	if now := m.l.clock.Now(); m.peak >= releaseMinPeak && size <= m.peak/2 && now.Sub(m.released) >= releaseInterval {
		start := time.Now()
		debug.FreeOSMemory()
		m.l.logf(lg.INFO, "DB: registry down to %d entries from %d: memory returned to the OS in %s", size, m.peak, time.Since(start))
		m.peak, m.released = size, now
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.stopped {
		m.timer.Reset(releaseCheck)
	}
}
