package auth

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// The cache's bounds. Each is reached only by a client that sends many
// secrets; a cluster's own clients use a few hundred.
const (
	// maxEntries bounds the allowed states kept, and maxBytes their
	// estimated memory (State.size): a state past them pushes out others.
	maxEntries = 1 << 16
	maxBytes   = 64 << 20
	// maxRefused bounds the refusals kept, apart from the states: a flood
	// of bad secrets never pushes out a good one. An entry costs some 80
	// bytes, so the map stays near 1.3 MB.
	maxRefused = 1 << 14
	// refusedTTL is how long a refusal is remembered (less if the server's
	// ttl is shorter): a client that retries a bad secret costs a query
	// every 10 s, and a secret made valid works within 10 s.
	refusedTTL = 10 * time.Second
	// A source (an IPv4 address, an IPv6 /64) may have sourceBurst
	// secrets refused at once, then one every sourceRefill: a client
	// trying distinct bad secrets costs 32 queries, then 30 a minute.
	// Past that its unknown secrets are answered 429 without a query; its
	// cached ones keep working.
	sourceBurst  = 32
	sourceRefill = 2 * time.Second
	// maxSources bounds the sources whose refusals are counted; those
	// past it share one budget.
	maxSources = 4096
)

// key identifies what an auth server decided on: a hash of the secret, the
// remote IP, tls and the common name. The secret itself is not kept.
type key [sha256.Size]byte

func keyOf(secret string, p params) key {
	tls := "false"
	if p.tls {
		tls = "true"
	}
	var buf [256]byte // on the stack, for the usual secret
	b := buf[:0]
	for _, s := range []string{secret, p.remoteIP, tls, p.commonName} {
		b = binary.AppendUvarint(b, uint64(len(s))) // length first: no two tuples hash the same input
		b = append(b, s...)
	}
	return sha256.Sum256(b)
}

// cache holds the auth states until they expire, the refusals briefly,
// and each source's budget of refusals.
type cache struct {
	mu      sync.RWMutex // guards the following
	allowed map[key]*State
	bytes   int               // the states' estimated memory
	refused map[key]time.Time // key -> until when
	sources map[netip.Prefix]*budget
	shared  budget // the sources past maxSources
}

// budget is a source's refusals left, as a token bucket.
type budget struct {
	tokens float64
	at     time.Time // when tokens was computed
}

func newCache() *cache {
	return &cache{allowed: make(map[key]*State), refused: make(map[key]time.Time),
		sources: make(map[netip.Prefix]*budget)}
}

// get returns the unexpired state of k, or whether k was refused lately.
func (c *cache) get(k key, now time.Time) (st *State, refused bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if st := c.allowed[k]; st != nil && now.Before(st.Expires) {
		return st, false
	}
	until, ok := c.refused[k]
	return nil, ok && now.Before(until)
}

// putAllowed keeps st for k. Past the bounds, the expired states go first,
// then others at random (Go's map order) until an eighth is free. A state
// too large for the cache is not kept.
func (c *cache) putAllowed(k key, st *State, now time.Time) {
	if st.size > maxBytes/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refused, k)
	if old := c.allowed[k]; old != nil {
		c.bytes -= old.size
		delete(c.allowed, k)
	}
	if len(c.allowed) >= maxEntries || c.bytes+st.size > maxBytes {
		for k, old := range c.allowed {
			if !now.Before(old.Expires) {
				c.bytes -= old.size
				delete(c.allowed, k)
			}
		}
		for k, old := range c.allowed {
			if len(c.allowed) < maxEntries*7/8 && c.bytes+st.size <= maxBytes*7/8 {
				break
			}
			c.bytes -= old.size
			delete(c.allowed, k)
		}
	}
	c.allowed[k] = st
	c.bytes += st.size
}

// putRefused remembers that k was refused, until until. Past maxRefused,
// the expired refusals go first, then others at random until an eighth is
// free.
func (c *cache) putRefused(k key, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.allowed[k]; old != nil {
		c.bytes -= old.size
		delete(c.allowed, k)
	}
	if len(c.refused) >= maxRefused {
		for k, t := range c.refused {
			if !now.Before(t) {
				delete(c.refused, k)
			}
		}
		for k := range c.refused {
			if len(c.refused) < maxRefused*7/8 {
				break
			}
			delete(c.refused, k)
		}
	}
	c.refused[k] = until
}

// sourceOf returns the source a client's refusals are counted under: its
// IPv4 address, or its IPv6 /64 (one host's usual allocation).
func sourceOf(ip string) netip.Prefix {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p
	}
	return netip.PrefixFrom(addr, 32)
}

// refill returns b's tokens at now.
func (b *budget) refill(now time.Time) float64 {
	if b.at.IsZero() {
		return sourceBurst
	}
	return min(sourceBurst, b.tokens+float64(now.Sub(b.at))/float64(sourceRefill))
}

// budgetLocked returns src's budget, made if need be, or the shared one
// if there is no room for it.
func (c *cache) budgetLocked(src netip.Prefix, now time.Time) *budget {
	if b := c.sources[src]; b != nil {
		return b
	}
	if len(c.sources) >= maxSources {
		for s, b := range c.sources {
			if b.refill(now) >= sourceBurst { // full again: as if never seen
				delete(c.sources, s)
			}
		}
	}
	if len(c.sources) >= maxSources {
		return &c.shared
	}
	b := &budget{}
	c.sources[src] = b
	return b
}

// overBudget reports whether src has had too many secrets refused lately
// to be granted a query for another one.
func (c *cache) overBudget(src netip.Prefix, now time.Time) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b := c.sources[src]
	if b == nil && len(c.sources) >= maxSources {
		b = &c.shared
	}
	return b != nil && b.refill(now) < 1
}

// take reserves a refusal of src's budget for a query about to be made,
// and reports false if there is none left. Reserved before the query, not
// counted after it, a refusal cannot be spent by many concurrent queries
// at once.
func (c *cache) take(src netip.Prefix, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.budgetLocked(src, now)
	tokens := b.refill(now)
	if tokens < 1 {
		return false
	}
	b.tokens, b.at = tokens-1, now
	return true
}

// refund gives back what take reserved, for a query that was not refused.
func (c *cache) refund(src netip.Prefix, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.budgetLocked(src, now)
	b.tokens, b.at = min(sourceBurst, b.refill(now)+1), now
}

// flush forgets every state and refusal (the budgets stay).
func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.allowed)
	clear(c.refused)
	c.bytes = 0
}

// sizes returns the states, their estimated bytes and the refusals kept.
func (c *cache) sizes() (allowed, bytes, refused int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.allowed), c.bytes, len(c.refused)
}
