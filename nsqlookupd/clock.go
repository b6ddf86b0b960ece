package nsqlookupd

import "time"

// clock tells the time and runs functions later. The daemon reads the time
// only through its clock (as crypto/tls.Config.Time lets a test hold the
// time), so tests of tombstone lifetime, inactivity and eviction move a fake
// clock instead of sleeping through real windows.
type clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) timer
}

// timer is a pending AfterFunc call, as *time.Timer.
type timer interface {
	// Reset makes the call due d from now; it reports whether the call
	// was still pending.
	Reset(d time.Duration) bool
	// Stop cancels the call; it reports whether the call was still pending.
	Stop() bool
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }
