package access

import (
	"net/netip"
	"testing"
	"time"
)

// TestRefusalLog: a source is logged at most once a minute; past
// maxLoggedSources sources within a minute, one line says the rest
// are not logged, at most once a minute; what it remembers stays bounded.
func TestRefusalLog(t *testing.T) {
	t.Parallel()
	var r refusalLog
	now := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	if got := r.note(src(0), now); got != logRefusal {
		t.Fatalf("first refusal: got %d; want logRefusal", got)
	}
	if got := r.note(src(0), now.Add(refusalLogInterval-time.Nanosecond)); got != logNothing {
		t.Fatalf("same source within the minute: got %d; want logNothing", got)
	}
	if got := r.note(src(0), now.Add(refusalLogInterval)); got != logRefusal {
		t.Fatalf("same source a minute later: got %d; want logRefusal", got)
	}
	now = now.Add(refusalLogInterval)
	counts := map[int]int{}
	for i := range 3 * maxLoggedSources {
		counts[r.note(src(i), now.Add(time.Duration(i)*time.Millisecond))]++
	}
	if counts[logRefusal] != maxLoggedSources-1 || counts[logOverflow] != 1 {
		t.Errorf("%d sources within a second: got %v; want %d logged (and src(0), logged already), one overflow line",
			3*maxLoggedSources, counts, maxLoggedSources-1)
	}
	if len(r.logged) != maxLoggedSources {
		t.Errorf("sources remembered: %d; want %d", len(r.logged), maxLoggedSources)
	}
	// a minute later, the table is free again: new sources are logged
	later := now.Add(refusalLogInterval + time.Second)
	if got := r.note(src(10000), later); got != logRefusal {
		t.Errorf("a new source a minute later: got %d; want logRefusal", got)
	}
	if len(r.logged) > maxLoggedSources {
		t.Errorf("sources remembered: %d; want at most %d", len(r.logged), maxLoggedSources)
	}
}
