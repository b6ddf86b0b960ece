package nsqlookupd

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

// jsonEvent returns the decoded JSON line whose msg holds every one of
// subs, waiting for it up to ioTimeout.
func jsonEvent(t *testing.T, logs *logLines, subs ...string) map[string]interface{} {
	t.Helper()
	var line string
	for deadline := time.Now().Add(ioTimeout); line == ""; time.Sleep(5 * time.Millisecond) {
		if line = logs.find(subs...); line == "" && time.Now().After(deadline) {
			t.Fatalf("no line holds %q", subs)
		}
	}
	var m map[string]interface{}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return m
}

// TestJSONEvents: with --log-format=json, each event the issue names is a
// JSON line with its fields: identify, register and unregister, an error
// sent to a client (with hostile bytes in its name), an access line, an
// eviction, and a producer's departure; every line the daemon wrote is
// JSON with time, level and msg.
func TestJSONEvents(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	logs := newLogLines(t)
	l := startLookupd(t, func(o *Options) {
		o.Logger = logs
		o.LogFormat = lg.JSON
		o.ProducerReadTimeout = 30 * time.Second
	}, clk.install)

	p := connectProducer(t, l, 4150, 4151)
	addr := p.conn.LocalAddr().String()
	p.mustOK("REGISTER orders ch")
	p.mustOK("UNREGISTER orders ch")
	if got := p.cmd("REGISTER bad\x01\xff\"name ch"); got[:11] != "E_BAD_TOPIC" {
		t.Fatalf("a hostile topic: got %q", got)
	}
	httpGet(t, l, "/lookup?topic=orders", ioTimeout)
	httpGet(t, l, "/nope", ioTimeout)
	silent := connectProducer(t, l, 4250, 4251)
	silentAddr := silent.conn.LocalAddr().String()
	clk.Advance(31 * time.Second) // the silent one is evicted
	p.expectClosed()              // closed by its error

	for _, tt := range []struct {
		subs   []string
		fields map[string]interface{}
	}{
		{[]string{"IDENTIFY Address:127.0.0.1 TCP:4150"}, map[string]interface{}{"level": "INFO", "remote_address": addr,
			"broadcast_address": "127.0.0.1", "tcp_port": 4150.0, "http_port": 4151.0, "version": "1.3.0"}},
		{[]string{"REGISTER category:client"}, map[string]interface{}{"remote_address": addr, "category": "client", "topic": nil}},
		{[]string{" REGISTER category:channel"}, map[string]interface{}{"remote_address": addr, "category": "channel", "topic": "orders", "channel": "ch"}},
		{[]string{" UNREGISTER category:channel"}, map[string]interface{}{"remote_address": addr, "category": "channel", "topic": "orders", "channel": "ch"}},
		{[]string{"E_BAD_TOPIC"}, map[string]interface{}{"level": "ERROR", "remote_address": addr,
			"reason": "E_BAD_TOPIC REGISTER topic name 'bad\x01\ufffd\"name' is not valid"}},
		{[]string{"200 GET /lookup?topic=orders"}, map[string]interface{}{"status": 200.0, "method": "GET", "path": "/lookup?topic=orders", "reason": nil}},
		{[]string{"404 GET /nope"}, map[string]interface{}{"status": 404.0, "path": "/nope", "reason": "NOT_FOUND"}},
		{[]string{"evicting producer 127.0.0.1:4250"}, map[string]interface{}{"level": "WARNING", "remote_address": silentAddr,
			"duration": 30.0, "reason": "producer-read-timeout", "broadcast_address": "127.0.0.1", "tcp_port": 4250.0}},
		{[]string{"exiting ioloop", addr}, map[string]interface{}{"remote_address": addr}},
	} {
		m := jsonEvent(t, logs, tt.subs...)
		for k, want := range tt.fields {
			if got := m[k]; got != want {
				t.Errorf("%q: %s: got %#v; want %#v (%v)", tt.subs, k, got, want, m)
			}
		}
	}
	if d, ok := jsonEvent(t, logs, "200 GET /lookup?topic=orders")["duration"].(float64); !ok || d <= 0 {
		t.Errorf("access line: duration %v; want seconds above 0", d)
	}

	l.Exit()
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, line := range logs.lines {
		var m map[string]interface{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if tm, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil || tm.Location() != time.UTC || m["level"] == nil || m["msg"] == nil {
			t.Fatalf("line %q: want time (RFC 3339, UTC), level and msg", line)
		}
	}
}
