package auth

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func mustState(t *testing.T, body string) *State {
	t.Helper()
	var a answer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatal(err)
	}
	st, err := newState(&a, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPermissions: what an identity may publish, subscribe to and see,
// decided as nsqd v1.3.0 decides PUB and SUB: unanchored expressions, and
// a publish grant needs a channel expression matching "".
func TestPermissions(t *testing.T) {
	st := mustState(t, `{"ttl":60,"authorizations":[
		{"topic":"^tenant_a\\.","channels":[".*"],"permissions":["subscribe","publish"]},
		{"topic":"^tenant_b\\.payments$","channels":["^archive$"],"permissions":["subscribe"]},
		{"topic":"^tenant_c\\.","channels":["^x$"],"permissions":["publish"]},
		{"topic":"^tenant_d\\.","channels":[],"permissions":["subscribe"]},
		{"topic":"metrics","channels":[".*"],"permissions":["publish"]}
	]}`)
	tests := []struct {
		topic, channel             string
		publish, subscribe, maySee bool
	}{
		{"tenant_a.orders", "ch", true, true, true},
		{"tenant_a.orders", "anything#ephemeral", true, true, true},
		{"xtenant_a.orders", "ch", false, false, false},
		{"tenant_b.payments", "archive", false, true, true},
		{"tenant_b.payments", "other", false, false, true},
		{"tenant_b.payments2", "archive", false, false, false},
		{"tenant_c.events", "x", false, false, false}, // publish, but no channel expression matches ""
		{"tenant_d.events", "x", false, false, false}, // subscribe, no channel expression
		{"old_metrics_v2", "ch", true, false, true},   // unanchored: "metrics" matches
		{"tenant_z.orders", "ch", false, false, false},
	}
	for _, tt := range tests {
		if got := st.MayPublish(tt.topic); got != tt.publish {
			t.Errorf("MayPublish(%q): got %v; want %v", tt.topic, got, tt.publish)
		}
		if got := st.MaySubscribe(tt.topic, tt.channel); got != tt.subscribe {
			t.Errorf("MaySubscribe(%q, %q): got %v; want %v", tt.topic, tt.channel, got, tt.subscribe)
		}
		if got := st.MaySee(tt.topic); got != tt.maySee {
			t.Errorf("MaySee(%q): got %v; want %v", tt.topic, got, tt.maySee)
		}
	}
	if !st.Expires.Equal(time.Unix(60, 0)) {
		t.Errorf("Expires: got %v; want 60 s after now", st.Expires)
	}
}

// TestHugeTTL: a ttl past a century is a century, not an overflow into the
// past.
func TestHugeTTL(t *testing.T) {
	st := mustState(t, `{"ttl":9223372036,"authorizations":[]}`)
	if !st.Expires.After(time.Unix(0, 0).Add(99 * 365 * 24 * time.Hour)) {
		t.Errorf("Expires: got %v", st.Expires)
	}
}

// TestFilters: Topics and Channels keep what the state may see and
// subscribe to, nothing of the wildcard; a nil state keeps everything.
func TestFilters(t *testing.T) {
	st := mustState(t, `{"ttl":60,"authorizations":[
		{"topic":".*","channels":["^archive$"],"permissions":["subscribe"]},
		{"topic":"^tenant_a\\.","channels":[".*"],"permissions":["publish"]}
	]}`)
	topics := st.Topics([]string{"tenant_a.orders", "*", "tenant_b.payments"})
	if got := fmt.Sprint(topics); got != "[tenant_a.orders tenant_b.payments]" {
		t.Errorf("Topics: got %s", got)
	}
	if got := fmt.Sprint(st.Channels("tenant_b.payments", []string{"archive", "audit"})); got != "[archive]" {
		t.Errorf("Channels: got %s", got)
	}
	if got := fmt.Sprint(st.Channels("*", []string{"archive", "audit"})); got != "[]" {
		t.Errorf("Channels of the wildcard: got %s", got)
	}
	if st.MaySee("*") {
		t.Error("MaySee(*): got true")
	}
	var all *State
	if got := fmt.Sprint(all.Topics([]string{"a", "*"}), all.Channels("*", []string{"c"}), all.MaySee("*")); got != "[a *] [c] true" {
		t.Errorf("nil state: got %s", got)
	}
}
