package nsqlookupd

import (
	"net"
	"strconv"
)

// isNode reports whether node, as /topic/tombstone?node= gives it, names
// this producer: its broadcast_address:http_port as v1.3.0 builds it
// (plain concatenation: "::1:4151" for an IPv6 address), or as
// net.JoinHostPort builds it ("[::1]:4151", which is what nsqadmin sends).
// v1.3.0 matches only the first, so nsqadmin can never tombstone an nsqd
// that broadcasts an IPv6 address there (SPEC §6, IPv6 tombstones).
func (pi *peerInfo) isNode(node string) bool {
	return node == pi.node() || node == net.JoinHostPort(pi.BroadcastAddress, strconv.Itoa(pi.HTTPPort))
}
