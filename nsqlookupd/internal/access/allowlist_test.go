package access

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseAllowlist(t *testing.T) {
	t.Parallel()
	list, err := parseAllowlist("tcp-allow", []string{"10.0.0.0/8", " 192.168.1.7 ", "fd00::/8", "::1",
		"::ffff:172.16.0.0/108", "::ffff:172.20.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := list.String(), "10.0.0.0/8, 192.168.1.7, fd00::/8, ::1, 172.16.0.0/12, 172.20.0.1"; got != want {
		t.Errorf("String: got %q; want %q", got, want)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3":             true,
		"11.0.0.1":             false,
		"192.168.1.7":          true,
		"192.168.1.8":          false,
		"::ffff:10.1.2.3":      true, // an IPv4 peer of a dual-stack listener
		"::ffff:11.0.0.1":      false,
		"fd12::1":              true,
		"fe80::1%eth0":         false,
		"::1":                  true,
		"172.17.0.1":           true,
		"172.20.0.1":           true,
		"172.32.0.1":           false,
		"2001:db8::1":          false,
		"::ffff:192.168.1.7":   true,
		"0.0.0.0":              false,
		"255.255.255.255":      false,
		"::":                   false,
		"ffff:ffff:ffff::ffff": false,
	} {
		if got := list.contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("contains(%s): got %v; want %v", addr, got, want)
		}
	}
	if list.contains(netip.Addr{}) {
		t.Error("contains(the zero Addr): got true; want false (a peer without an address is refused)")
	}
	zoned, err := parseAllowlist("tcp-allow", []string{"fe80::/10"})
	if err != nil {
		t.Fatal(err)
	}
	if !zoned.contains(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("fe80::/10 contains fe80::1 with a zone: got false; want true (the zone is not part of the address)")
	}
	if l, err := parseAllowlist("tcp-allow", nil); l != nil || err != nil {
		t.Errorf("no items: got %v, %v; want nil, no rule", l, err)
	}
	for _, bad := range [][]string{{""}, {" "}, {"10.0.0.0/8", ""}, {"10.0.0.0/33"}, {"10.0.0.1/8"}, {"10.0.0"},
		{"host.example.com"}, {"fe80::1%eth0"}, {"10.0.0.0/8/8"}, {"1.2.3.4:80"}, {"*"}, {"0.0.0.0/-1"}} {
		if _, err := parseAllowlist("tcp-allow", bad); err == nil || !strings.HasPrefix(err.Error(), "--tcp-allow: ") {
			t.Errorf("%q: got %v; want an error naming --tcp-allow", bad, err)
		}
	}
}

func TestParseSANs(t *testing.T) {
	t.Parallel()
	sans, err := parseSANs([]string{"nsqadmin.example.com", " ops@example.com", "spiffe://example.com/nsqadmin", "::ffff:10.1.2.3", "2001:DB8::1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(sans, " "), "nsqadmin.example.com ops@example.com spiffe://example.com/nsqadmin 10.1.2.3 2001:db8::1"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if _, err := parseSANs([]string{"a", ""}); err == nil {
		t.Error(`["a" ""]: got nil; want an error for the empty item`)
	}
}
