package access

import (
	"fmt"
	"net/netip"
	"strings"
)

// allowlist is a parsed --tcp-allow or --http-admin-allow; nil allows every
// source.
type allowlist []netip.Prefix

// contains reports whether addr is in one of the prefixes. An IPv4 peer of
// a dual-stack listener comes as ::ffff:a.b.c.d, and a link-local one with
// its zone: both are matched as the plain address.
func (a allowlist) contains(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range a {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String lists the prefixes, a single address without its /32 or /128.
func (a allowlist) String() string {
	s := make([]string, len(a))
	for i, p := range a {
		if p.IsSingleIP() {
			s[i] = p.Addr().String()
		} else {
			s[i] = p.String()
		}
	}
	return strings.Join(s, ", ")
}

// parseAllowlist parses the items of the list option flag: each a CIDR
// (10.0.0.0/8, fd00::/8) or an address (one host). An empty list is nil:
// no rule. An empty item, a malformed one, a CIDR with bits set past its
// length (10.0.0.1/8: which was meant?) or an address with a zone is an
// error naming the option and the item.
func parseAllowlist(flag string, items []string) (allowlist, error) {
	if len(items) == 0 {
		return nil, nil
	}
	list := make(allowlist, 0, len(items))
	for _, item := range items {
		s := strings.TrimSpace(item)
		if s == "" {
			return nil, fmt.Errorf("--%s: empty item in %q", flag, strings.Join(items, ","))
		}
		if !strings.Contains(s, "/") {
			addr, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("--%s: %q is neither an address nor a CIDR - %w", flag, s, err)
			}
			if addr.Zone() != "" {
				return nil, fmt.Errorf("--%s: %q has a zone; give the address alone", flag, s)
			}
			addr = addr.Unmap()
			list = append(list, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--%s: %q is neither an address nor a CIDR - %w", flag, s, err)
		}
		if m := p.Masked(); m != p {
			return nil, fmt.Errorf("--%s: %q has bits set past its length: the network is %s, the address alone %s",
				flag, s, m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		list = append(list, p)
	}
	return list, nil
}

// parseSANs checks the --http-admin-client-allowed-san items and returns
// them as compared: an IP address in its canonical form, anything else
// (a DNS name, an email address, a URI) as given.
func parseSANs(items []string) ([]string, error) {
	sans := make([]string, 0, len(items))
	for _, item := range items {
		s := strings.TrimSpace(item)
		if s == "" {
			return nil, fmt.Errorf("--http-admin-client-allowed-san: empty item in %q", strings.Join(items, ","))
		}
		if addr, err := netip.ParseAddr(s); err == nil {
			s = addr.Unmap().String()
		}
		sans = append(sans, s)
	}
	return sans, nil
}
