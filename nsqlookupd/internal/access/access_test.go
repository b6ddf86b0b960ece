package access

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

// BenchmarkAccessCheck measures what the rules cost: the check of an
// accepted registration connection (once per connection, never per
// command) and of an admin request, against 1 and 100 prefixes, the
// matching one last. /lookup and the other reads run no check.
func BenchmarkAccessCheck(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := httptest.NewRequest("POST", "/topic/create?topic=t", nil)
	req.RemoteAddr = conn.RemoteAddr().String()
	for _, n := range []int{1, 100} {
		items := make([]string, 0, n)
		for i := range n - 1 {
			items = append(items, fmt.Sprintf("10.%d.0.0/16", i))
		}
		list, err := parseAllowlist("tcp-allow", append(items, "127.0.0.0/8"))
		if err != nil {
			b.Fatal(err)
		}
		g := &Guard{}
		g.rules.Store(&rules{tcp: list, admin: list})
		b.Run(fmt.Sprintf("tcp/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !g.AllowTCP(conn) {
					b.Fatal("refused")
				}
			}
		})
		b.Run(fmt.Sprintf("admin/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if g.rules.Load().check(req) >= 0 {
					b.Fatal("refused")
				}
			}
		})
	}
}

// TestAdminRuleRequired: with auth on, the admin routes need an explicit
// rule; without one they are refused to every source, and Admits (which
// lets a request read unfiltered) holds only for a request that passes a
// rule that is there.
func TestAdminRuleRequired(t *testing.T) {
	nop := lg.New(lg.NilLogger{}, lg.Settings{})
	req := func(remote string) *http.Request {
		r := httptest.NewRequest("POST", "/topic/create?topic=t", nil)
		r.RemoteAddr = remote
		return r
	}
	tests := []struct {
		name    string
		c       Config
		remote  string
		guards  bool
		refused bool
		admits  bool
		rules   string
	}{
		{"auth off, no rule", Config{}, "10.0.0.1:1", false, false, false, ""},
		{"auth on, no rule", Config{AdminRuleRequired: true}, "127.0.0.1:1", true, true, false,
			"registrations from any source; admin routes and /debug/pprof refused: auth is on and there is no admin rule"},
		{"auth on, allowed source", Config{AdminRuleRequired: true, AdminAllow: []string{"127.0.0.1"}}, "127.0.0.1:1", true, false, true,
			"registrations from any source; admin routes and /debug/pprof only from 127.0.0.1"},
		{"auth on, other source", Config{AdminRuleRequired: true, AdminAllow: []string{"127.0.0.1"}}, "127.0.0.2:1", true, true, false, ""},
		{"auth off, allowed source", Config{AdminAllow: []string{"127.0.0.1"}}, "127.0.0.1:1", true, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(tt.c, nil, nop, time.Now)
			r := req(tt.remote)
			if got := g.GuardsHTTP(); got != tt.guards {
				t.Errorf("GuardsHTTP: got %v; want %v", got, tt.guards)
			}
			if got := g.refusal(r) != nil; got != tt.refused {
				t.Errorf("refused: got %v; want %v", got, tt.refused)
			}
			if got := g.Admits(r); got != tt.admits {
				t.Errorf("Admits: got %v; want %v", got, tt.admits)
			}
			if tt.rules != "" && g.String() != tt.rules {
				t.Errorf("String: got %q; want %q", g.String(), tt.rules)
			}
		})
	}
}

// recorded keeps the lines a Logger is given.
type recorded []string

func (r *recorded) Output(_ int, s string) error { *r = append(*r, s); return nil }

// TestReload: new rules are in force from the next check, logged when they
// change; bad ones are refused and the old ones stay.
func TestReload(t *testing.T) {
	var lines recorded
	g := New(Config{TCPAllow: []string{"10.0.0.0/8"}}, nil, lg.New(&lines, lg.Settings{Level: lg.INFO}), time.Now)
	peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	if !g.Refuses(peer) {
		t.Fatal("127.0.0.1 not refused by 10.0.0.0/8")
	}
	if err := g.Reload(Config{TCPAllow: []string{"10.0.0.0/33"}}); err == nil || !g.Refuses(peer) {
		t.Fatalf("a bad rule: got %v, refused %v; want an error and the old rules", err, g.Refuses(peer))
	}
	if err := g.Reload(Config{TCPAllow: []string{"127.0.0.0/8"}, AdminAllow: []string{"::1"}}); err != nil || g.Refuses(peer) || !g.GuardsHTTP() {
		t.Fatalf("Reload: %v; want 127.0.0.1 allowed, the admin routes guarded", err)
	}
	if err := g.Reload(Config{TCPAllow: []string{"127.0.0.0/8"}, AdminAllow: []string{"::1"}}); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(Config{}); err != nil || g.Refuses(peer) || g.GuardsHTTP() {
		t.Fatalf("Reload to no rules: %v", err)
	}
	want := []string{
		"INFO: ACCESS: registrations only from 10.0.0.0/8; admin routes and /debug/pprof from any source",
		"INFO: ACCESS: registrations only from 127.0.0.0/8; admin routes and /debug/pprof only from ::1",
		"INFO: ACCESS: no rules: any source may register and use the admin routes",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant (an unchanged reload logs nothing)\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestValidate: each bad setting is refused with its flag named, also
// after settings that are good (a good one never ends the checks early),
// and a whole good configuration passes.
func TestValidate(t *testing.T) {
	good := Config{TCPAllow: []string{"10.0.0.0/8"}, AdminAllow: []string{"10.1.0.0/16"}, RequireClientCert: true,
		ClientSANs: []string{"nsqadmin.example"}, HTTPS: true, RootCA: true}
	if err := good.Validate(); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	for _, tt := range []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"bad --tcp-allow", func(c *Config) { c.TCPAllow = []string{"10.0.0.0/33"} }, "--tcp-allow"},
		{"bad --http-admin-allow", func(c *Config) { c.AdminAllow = []string{"nowhere"} }, "--http-admin-allow"},
		{"empty SAN", func(c *Config) { c.ClientSANs = []string{""} }, "--http-admin-client-allowed-san"},
		{"SANs without the certificate rule", func(c *Config) { c.RequireClientCert = false }, "needs --http-admin-require-client-cert"},
		{"no HTTPS, no CA", func(c *Config) { c.HTTPS, c.RootCA = false, false }, "needs --https-address and --tls-root-ca-file"},
		{"no HTTPS", func(c *Config) { c.HTTPS = false }, "needs --https-address"},
		{"no CA", func(c *Config) { c.RootCA = false }, "needs --tls-root-ca-file"},
		{"certificates not verified", func(c *Config) { c.ClientAuthPolicy = "require" }, "not require"},
	} {
		c := good
		tt.modify(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v; want an error naming %q", tt.name, err, tt.want)
		}
	}
}
