package nsqlookupd

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// The JSON of the answers, written by hand in the byte order v1.3.0's
// encoding/json gives them (docs/wire.md, HTTP API): field by field, with
// no reflection, for the answers that are built per producer or per name.

// appendProducer appends a producer as /lookup and /nodes list it, in the
// field order of v1.3.0's PeerInfo, without its closing '}'.
func appendProducer(b []byte, info *registry.Info) []byte {
	b = appendJSONString(append(b, `{"remote_address":`...), info.ID)
	b = appendJSONString(append(b, `,"hostname":`...), info.Hostname)
	b = appendJSONString(append(b, `,"broadcast_address":`...), info.BroadcastAddress)
	b = strconv.AppendInt(append(b, `,"tcp_port":`...), int64(info.TCPPort), 10)
	b = strconv.AppendInt(append(b, `,"http_port":`...), int64(info.HTTPPort), 10)
	b = appendJSONString(append(b, `,"version":`...), info.Version)
	if info.TopologyZone != "" {
		b = appendJSONString(append(b, `,"topology_zone":`...), info.TopologyZone)
	}
	if info.TopologyRegion != "" {
		b = appendJSONString(append(b, `,"topology_region":`...), info.TopologyRegion)
	}
	return b
}

// appendNode appends a producer as /nodes lists it: its fields, then its
// topics and whether each tombstone there is younger than lifetime at
// built; and returns the first time the answer changes (a tombstone's
// expiry).
func appendNode(b []byte, info *registry.Info, topics []registry.NodeTopic, built time.Time, lifetime time.Duration) ([]byte, time.Time) {
	validUntil := time.Unix(1<<62, 0)
	b = append(appendProducer(b, info), `,"tombstones":[`...)
	for i, t := range topics {
		if i > 0 {
			b = append(b, ',')
		}
		expiry := t.Tombstoned.Add(lifetime)
		tombstoned := !t.Tombstoned.IsZero() && built.Before(expiry)
		if tombstoned && expiry.Before(validUntil) {
			validUntil = expiry
		}
		b = strconv.AppendBool(b, tombstoned)
	}
	b = append(b, `],"topics":[`...)
	for i, t := range topics {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t.Name)
	}
	return append(b, "]}"...), validUntil
}

// zeroTimeUnixNano is Go's zero time in unix ns: v1.3.0's tombstoned_at
// for a producer never tombstoned.
var zeroTimeUnixNano = time.Time{}.UnixNano()

// appendDebugProducer appends a producer as /debug lists it, its fields in
// the order v1.3.0's map sorts them.
func appendDebugProducer(b []byte, e registry.Entry) []byte {
	info := &e.Producer.Info
	tombstonedAt := zeroTimeUnixNano
	if !e.Tombstoned.IsZero() {
		tombstonedAt = e.Tombstoned.UnixNano()
	}
	b = appendJSONString(append(b, `{"broadcast_address":`...), info.BroadcastAddress)
	b = appendJSONString(append(b, `,"hostname":`...), info.Hostname)
	b = strconv.AppendInt(append(b, `,"http_port":`...), int64(info.HTTPPort), 10)
	b = appendJSONString(append(b, `,"id":`...), info.ID)
	b = strconv.AppendInt(append(b, `,"last_update":`...), e.Producer.LastUpdate().UnixNano(), 10)
	b = strconv.AppendInt(append(b, `,"tcp_port":`...), int64(info.TCPPort), 10)
	b = strconv.AppendBool(append(b, `,"tombstoned":`...), !e.Tombstoned.IsZero())
	b = strconv.AppendInt(append(b, `,"tombstoned_at":`...), tombstonedAt, 10)
	if info.TopologyRegion != "" {
		b = appendJSONString(append(b, `,"topology_region":`...), info.TopologyRegion)
	}
	if info.TopologyZone != "" {
		b = appendJSONString(append(b, `,"topology_zone":`...), info.TopologyZone)
	}
	return append(appendJSONString(append(b, `,"version":`...), info.Version), '}')
}

// compareDebugKeys orders topic names as their /debug keys sort, a+":"
// against b+":". Topic names hold no ':' (protocol.IsValidTopicName), so
// the keys of a topic's channels follow its own.
func compareDebugKeys(a, b string) int {
	n := min(len(a), len(b))
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	switch {
	case len(a) == len(b):
		return 0
	case len(a) < len(b):
		return strings.Compare(":", b[n:n+1])
	default:
		return strings.Compare(a[n:n+1], ":")
	}
}

// appendNames appends names as a JSON array of strings.
func appendNames(b []byte, names []string) []byte {
	b = append(b, '[')
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
// Topic and channel names are [.a-zA-Z0-9_#-] only, so they are written as
// they are; any other string is left to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x80, c == '"', c == '\\', c == '<', c == '>', c == '&':
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
