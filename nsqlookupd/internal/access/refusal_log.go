package access

import (
	"net/netip"
	"sync"
	"time"
)

const (
	// refusalLogInterval is how often one source's refused registration
	// connections may be logged: a scanner retrying every millisecond
	// costs one line a minute.
	refusalLogInterval = time.Minute
	// maxLoggedSources bounds the sources remembered as logged within the
	// interval: a sweep from more addresses than this (an IPv6 /64 holds
	// 2^64) costs at most this many lines a minute, plus one saying the
	// rest are only counted, and a map this small.
	maxLoggedSources = 256
)

// What refusalLog.note decides for one refusal.
const (
	logNothing  = iota
	logRefusal  // log this refusal
	logOverflow // log that sources are too many to log each
)

// refusalLog decides which refused registration connections are logged:
// each source at most once per refusalLogInterval, and at most
// maxLoggedSources sources per interval, then one line saying the rest are
// only counted.
type refusalLog struct {
	mu         sync.Mutex
	logged     map[netip.Addr]time.Time // source -> when it was last logged
	overflowAt time.Time                // when the overflow line was last logged
}

// note records a refusal from addr at now and says what to log.
func (r *refusalLog) note(addr netip.Addr, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged == nil {
		r.logged = make(map[netip.Addr]time.Time)
	}
	if t, ok := r.logged[addr]; ok {
		if now.Sub(t) < refusalLogInterval {
			return logNothing
		}
	} else if len(r.logged) >= maxLoggedSources {
		for a, t := range r.logged {
			if now.Sub(t) >= refusalLogInterval {
				delete(r.logged, a)
			}
		}
		if len(r.logged) >= maxLoggedSources {
			if now.Sub(r.overflowAt) < refusalLogInterval {
				return logNothing
			}
			r.overflowAt = now
			return logOverflow
		}
	}
	r.logged[addr] = now
	return logRefusal
}
