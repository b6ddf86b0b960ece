package nsqlookupd

import "testing"

func TestIsNode(t *testing.T) {
	tests := []struct {
		broadcast string
		port      int
		node      string
		want      bool
	}{
		{"10.0.0.1", 4151, "10.0.0.1:4151", true},
		{"10.0.0.1", 4151, "10.0.0.1:4152", false},
		{"10.0.0.1", 4151, "[10.0.0.1]:4151", false}, // JoinHostPort never brackets IPv4
		{"nsqd-1.example", 4151, "nsqd-1.example:4151", true},
		{"::1", 4151, "::1:4151", true},   // v1.3.0's form
		{"::1", 4151, "[::1]:4151", true}, // nsqadmin's form
		{"::1", 4151, "[::1]:4152", false},
		{"::1", 4151, "[::2]:4151", false},
		{"fe80::1%eth0", 80, "[fe80::1%eth0]:80", true},
		{"fe80::1%eth0", 80, "fe80::1%eth0:80", true},
		{"[::1]", 4151, "[::1]:4151", true}, // a broadcast address with brackets: v1.3.0's form
		{"::1", 4151, "::1", false},
		{"::1", 4151, "", false},
	}
	for _, tt := range tests {
		pi := &peerInfo{BroadcastAddress: tt.broadcast, HTTPPort: tt.port}
		if got := pi.isNode(tt.node); got != tt.want {
			t.Errorf("producer %s port %d, node %q: got %v; want %v", tt.broadcast, tt.port, tt.node, got, tt.want)
		}
	}
}
