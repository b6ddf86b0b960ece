package access

import (
	"fmt"
	"net"
	"net/http/httptest"
	"testing"
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
		g := &Guard{tcp: list, admin: list}
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
				if g.check(req) >= 0 {
					b.Fatal("refused")
				}
			}
		})
	}
}
