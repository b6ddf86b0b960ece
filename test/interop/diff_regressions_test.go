package interop

import "strings"

// diffRegressions are the sequences that once made the two daemons answer
// differently. Each runs on every test run (TestDiffRegressions), after
// its own steps the same closing checks as a random sequence.
var diffRegressions = []struct {
	name  string
	seed  int64  // a random sequence, or
	steps []step // these steps
}{
	{
		// Found by a random sequence; fixed in what is now the registry's
		// UnregisterTopic. docs/wire.md, Data model: UNREGISTER T removes
		// the producer from every channel of T, then from (topic T), and
		// removes T if it is ephemeral and left empty. It removes no
		// channel, and v1.3.0 removes none: an ephemeral channel goes when
		// emptied by UNREGISTER T C, not by UNREGISTER T. We removed every
		// empty ephemeral channel of T.
		name: "unregister topic keeps emptied ephemeral channels",
		steps: []step{
			tcpConnect(0), tcpIdentify(0, producerA),
			tcpSend(0, "REGISTER e1#ephemeral d#ephemeral", "REGISTER t1 c#ephemeral"),
			tcpSend(0, "UNREGISTER e1#ephemeral", "UNREGISTER t1"),
			get("/channels?topic=*"), get("/lookup?topic=t1"),
		},
	},
	{
		// The same for an ephemeral channel created over HTTP, which the
		// unregistering producer never held.
		name: "unregister topic keeps an ephemeral channel it never held",
		steps: []step{
			post("/channel/create?topic=t1&channel=c%23ephemeral"),
			tcpConnect(0), tcpIdentify(0, producerA),
			tcpSend(0, "REGISTER t1", "UNREGISTER t1"),
			get("/channels?topic=t1"),
		},
	},
	{
		// Found by a random sequence. v1.3.0 ignores the topology fields of
		// newer nsqd whatever their value; we refused a body with a
		// topology_zone that is not a string as "failed to decode JSON
		// body". Fixed in decodeIdentify.
		name: "IDENTIFY with a topology_zone that is not a string",
		steps: []step{
			tcpConnect(0),
			tcpIdentify(0, `{"broadcast_address":"::1","hostname":"h2","tcp_port":4150,"http_port":4151,"version":"1.2.1","topology_zone":7}`),
			tcpSend(0, "REGISTER t1"),
			tcpConnect(1),
			tcpIdentify(1, `{"broadcast_address":"a","hostname":"h","tcp_port":1,"http_port":2,"version":"1","topology_zone":"z","topology_region":null}`),
			get("/lookup?topic=t1"), get("/nodes"), get("/debug"),
		},
	},
	{
		// Found by a random sequence. docs/differences.md, IPv6
		// tombstones: a node named as nsqadmin names it ("[::1]:5151")
		// tombstones the producer that broadcasts ::1 (diff_test sends
		// v1.3.0 its own form too); we matched only v1.3.0's form. Fixed
		// by what is now the tombstone handler's nodeAddresses (nsqlookupd/http.go).
		name: "tombstone with nsqadmin's IPv6 node form",
		steps: []step{
			tcpConnect(0),
			tcpIdentify(0, `{"broadcast_address":"::1","hostname":"h1","tcp_port":4150,"http_port":5151,"version":"1.2.1"}`),
			tcpSend(0, "REGISTER t.3_- d#ephemeral", "REGISTER t1"),
			post("/topic/tombstone?topic=t.3_-&node=%5B%3A%3A1%5D%3A5151"),
			get("/lookup?topic=t.3_-"), get("/lookup?topic=t1"), get("/nodes"),
			post("/topic/tombstone?topic=t1&node=::1:5151"),
			get("/lookup?topic=t1"), get("/nodes"),
		},
	},
	{
		// Issue 9: an IDENTIFY declaring a body of 0 bytes got our own
		// "body size 0 out of range" text; v1.3.0 reads the empty body
		// and fails to decode it. Fixed in IDENTIFY.
		name: "IDENTIFY with a declared body size of 0",
		steps: []step{
			tcpConnect(0),
			{kind: stepSend, slot: 0, data: "IDENTIFY\n" + sizeBytes(0), answers: 1},
			tcpConnect(1),
			{kind: stepSend, slot: 1, data: "IDENTIFY\n" + sizeBytes(0) + "PING\n", answers: 1},
		},
	},
}

// producerA is a valid IDENTIFY body.
const producerA = `{"broadcast_address":"127.0.0.1","hostname":"h1","tcp_port":4150,"http_port":4151,"version":"1.3.0"}`

func tcpConnect(slot int) step { return step{kind: stepConnect, slot: slot, data: "  V1"} }

func tcpIdentify(slot int, body string) step {
	return step{kind: stepSend, slot: slot, data: identifyCmd(body), answers: 1}
}

// tcpSend sends the command lines in one write and reads an answer to each.
func tcpSend(slot int, lines ...string) step {
	return step{kind: stepSend, slot: slot, data: strings.Join(lines, "\n") + "\n", answers: len(lines)}
}
