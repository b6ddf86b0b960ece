package nsqlookupd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/protocol"
	"github.com/lookupd/nsqlookupd/internal/test"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// wireCodes are the error codes the TCP protocol sends (docs/wire.md).
var wireCodes = map[string]bool{
	"E_BAD_PROTOCOL": true, "E_INVALID": true, "E_BAD_BODY": true,
	"E_BAD_TOPIC": true, "E_BAD_CHANNEL": true,
}

// FuzzCommandLine runs one command line, split as the IO loop splits it,
// through exec and getTopicChan, for an identified client or not.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		"PING", "REGISTER t c", "REGISTER t", "UNREGISTER t c", "UNREGISTER t",
		"REGISTER", "REGISTER  t", "REGISTER t  c", " REGISTER t c extra \r",
		"REGISTER t#ephemeral c#ephemeral", "UNREGISTER t#ephemeral",
		"REGISTER bad! c", "REGISTER t bad!", "REGISTER t\x00", "IDENTIFY", "FOO", "",
		"REGISTER " + strings.Repeat("a", 65),
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	l := newLookupd(f, quietLog) // Main need not run: exec is called directly
	f.Fuzz(func(t *testing.T, line string, identified bool) {
		l.db = registry.New(time.Minute) // each input starts from an empty registry
		client := newClientV1(newFakeConn(nil))
		if identified {
			info, err := decodeIdentify([]byte(identifyJSON(1, 2)), client.addr)
			if err != nil {
				t.Fatalf("decodeIdentify: %s", err)
			}
			client.producer, _ = l.db.AddProducer(info, append(appendProducer(nil, &info), '}'), time.Now(), nil)
		}
		params := strings.Split(strings.TrimSpace(line), " ")
		prot := &lookupProtocolV1{nsqlookupd: l}
		reader := bufio.NewReader(bytes.NewReader(nil))

		_, resp, err := prot.exec(client, reader, params)
		if err != nil {
			var ce *protocol.ClientErr
			if !errors.As(err, &ce) {
				t.Fatalf("%q: got error %T %v; want a *protocol.ClientErr", line, err, err)
			}
			if !wireCodes[ce.Code] || ce.Error() != ce.Code+" "+ce.Desc {
				t.Fatalf("%q: got error %q (code %q); want a code of docs/wire.md", line, ce.Error(), ce.Code)
			}
		} else if string(resp) != "OK" {
			t.Fatalf("%q: got answer %q; want OK", line, resp)
		}

		// getTopicChan either returns the words it was given, valid, or
		// fails: never a name the checks refused.
		if len(params) > 1 {
			topic, channel, err := getTopicChan("REGISTER", params[1:])
			if err == nil {
				if topic != params[1] || !protocol.IsValidTopicName(topic) {
					t.Fatalf("%q: got topic %q; want %q, valid", line, topic, params[1])
				}
				if channel != "" && (len(params) < 3 || channel != params[2] || !protocol.IsValidChannelName(channel)) {
					t.Fatalf("%q: got channel %q; want the third word, valid", line, channel)
				}
				if params[0] == "REGISTER" && identified {
					if _, producers, ok := l.db.Lookup(topic, nil, nil); !ok || len(producers) != 1 {
						t.Fatalf("%q: topic %q has %d producers (found %v); want 1", line, topic, len(producers), ok)
					}
				}
			}
		}

		// The connection ends: nothing of the client may remain.
		if client.producer != nil {
			l.db.RemoveProducer(client.producer, nil)
		}
		if st := l.db.Stats(time.Now()); st.Producers != 0 || st.Registrations != 0 {
			t.Fatalf("%q: got %d producers, %d registrations after RemoveProducer; want 0", line, st.Producers, st.Registrations)
		}
		for _, name := range l.db.Channels(registry.Wildcard) {
			if protocol.IsEphemeral(name) {
				t.Fatalf("%q: ephemeral channel %q left without producers", line, name)
			}
		}
		for _, name := range l.db.Topics() {
			if protocol.IsEphemeral(name) {
				t.Fatalf("%q: ephemeral topic %q still registered with no producer", line, name)
			}
		}
		if err := l.db.Check(); err != nil {
			t.Fatalf("%q: registry broken: %v", line, err)
		}
	})
}

// FuzzIdentifyBody decodes IDENTIFY bodies: a body is accepted with every
// required field set, or refused with one of docs/wire.md's two answers.
func FuzzIdentifyBody(f *testing.F) {
	for _, s := range []string{
		identifyJSON(4150, 4151), "", "null", "{}", "[]", "abc", `{"tcp_port":1.5}`,
		`{"broadcast_address":"a","tcp_port":"1","http_port":2,"version":"v"}`,
		`{"BROADCAST_ADDRESS":"a","TCP_PORT":1,"HTTP_PORT":2,"VERSION":"v","remote_address":"x"}`,
		`{"broadcast_address":"a","tcp_port":99999999999999999999,"http_port":2,"version":"v"}`,
		`{"broadcast_address":"\u0000","tcp_port":-1,"http_port":2,"version":"\ud800"}`,
		`{"broadcast_address":"a","tcp_port":1,"http_port":2,"version":"v","topology_zone":7}`,
	} {
		f.Add([]byte(s))
	}
	const remote = "1.2.3.4:5"
	f.Fuzz(func(t *testing.T, body []byte) {
		info, err := decodeIdentify(body, remote)
		// v1.3.0 decodes the body into these fields (its PeerInfo):
		// a body it can decode must decode here, and the other way round.
		var v130 struct {
			RemoteAddress    string `json:"remote_address"`
			Hostname         string `json:"hostname"`
			BroadcastAddress string `json:"broadcast_address"`
			TCPPort          int    `json:"tcp_port"`
			HTTPPort         int    `json:"http_port"`
			Version          string `json:"version"`
		}
		v130Err := json.Unmarshal(body, &v130)
		decodeFailed := err != nil && err.Error() == "E_BAD_BODY IDENTIFY failed to decode JSON body"
		if (v130Err != nil) != decodeFailed {
			t.Fatalf("%q: v1.3.0 decodes it with error %v; we answer %v", body, v130Err, err)
		}
		if err == nil && (info.Hostname != v130.Hostname || info.BroadcastAddress != v130.BroadcastAddress ||
			info.TCPPort != v130.TCPPort || info.HTTPPort != v130.HTTPPort || info.Version != v130.Version) {
			t.Fatalf("%q: decoded %+v; v1.3.0 decodes %+v", body, info, v130)
		}
		if err != nil {
			var ce *protocol.ClientErr
			if !errors.As(err, &ce) {
				t.Fatalf("got error %T %v; want a *protocol.ClientErr", err, err)
			}
			switch ce.Error() {
			case "E_BAD_BODY IDENTIFY failed to decode JSON body":
			case "E_BAD_BODY IDENTIFY missing fields":
				if !json.Valid(body) {
					t.Fatalf("got %q for invalid JSON %q; want failed to decode", ce.Error(), body)
				}
			default:
				t.Fatalf("got error %q; want one of docs/wire.md's IDENTIFY errors", ce.Error())
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if info.BroadcastAddress == "" || info.TCPPort == 0 || info.HTTPPort == 0 || info.Version == "" {
			t.Fatalf("accepted %q with a required field missing: %+v", body, info)
		}
		if info.ID != remote {
			t.Fatalf("got ID %q; want %q", info.ID, remote)
		}
		// What /lookup will print must be JSON.
		if b := appendProducer(nil, &info); !json.Valid(append(b, '}')) {
			t.Fatalf("accepted %q but /lookup would print %q", body, b)
		}
	})
}

func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	valid := identifyJSON(4150, 4151)
	identified := identifyCmd(valid)
	long65 := strings.Repeat("a", 65)

	tests := []struct {
		name  string
		send  string // after the magic, unless raw
		raw   bool   // send exactly this, no magic
		setup int    // number of framed answers to read before the one checked
		eof   bool   // half-close after sending
		want  string
	}{
		{name: "bad magic", raw: true, send: "  V2", want: "E_BAD_PROTOCOL"},
		{name: "unknown command", send: "FOO\n", want: "E_INVALID invalid command FOO"},
		{name: "empty line", send: "\n", want: "E_INVALID invalid command "},
		{name: "lower-case command", send: "ping\n", want: "E_INVALID invalid command ping"},
		{name: "identify twice", send: identified + "IDENTIFY\n", setup: 1, want: "E_INVALID cannot IDENTIFY again"},
		{name: "body size truncated", send: "IDENTIFY\n\x00\x00", eof: true, want: "E_BAD_BODY IDENTIFY failed to read body size"},
		{name: "body truncated", send: "IDENTIFY\n" + sizePrefix(10) + "{}", eof: true, want: "E_BAD_BODY IDENTIFY failed to read body"},
		{name: "body negative size", send: "IDENTIFY\n\xff\xff\xff\xf3", want: "E_BAD_BODY IDENTIFY body size -13 out of range (1 to 65536)"},
		{name: "body zero size", send: "IDENTIFY\n" + sizePrefix(0), want: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{name: "body too large", send: "IDENTIFY\n" + sizePrefix(1<<30), want: "E_BAD_BODY IDENTIFY body size 1073741824 out of range (1 to 65536)"},
		{name: "body not json", send: identifyCmd("abc"), want: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{name: "body null", send: identifyCmd("null"), want: "E_BAD_BODY IDENTIFY missing fields"},
		{name: "port not an integer", send: identifyCmd(`{"tcp_port":1.5}`), want: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{name: "missing version", send: identifyCmd(`{"broadcast_address":"h","tcp_port":1,"http_port":2,"version":""}`), want: "E_BAD_BODY IDENTIFY missing fields"},
		{name: "zero port", send: identifyCmd(`{"broadcast_address":"h","tcp_port":0,"http_port":2,"version":"1"}`), want: "E_BAD_BODY IDENTIFY missing fields"},
		{name: "register before identify", send: "REGISTER t c\n", want: "E_INVALID client must IDENTIFY"},
		{name: "register bad topic before identify", send: "REGISTER bad! c\n", want: "E_INVALID client must IDENTIFY"},
		{name: "unregister before identify", send: "UNREGISTER t\n", want: "E_INVALID client must IDENTIFY"},
		{name: "register no topic", send: identified + "REGISTER\n", setup: 1, want: "E_INVALID REGISTER insufficient number of params"},
		{name: "unregister no topic", send: identified + "UNREGISTER\n", setup: 1, want: "E_INVALID UNREGISTER insufficient number of params"},
		{name: "register bad topic", send: identified + "REGISTER bad!\n", setup: 1, want: "E_BAD_TOPIC REGISTER topic name 'bad!' is not valid"},
		{name: "register long topic", send: identified + "REGISTER " + long65 + "\n", setup: 1, want: "E_BAD_TOPIC REGISTER topic name '" + long65 + "' is not valid"},
		{name: "register empty topic", send: identified + "REGISTER  t\n", setup: 1, want: "E_BAD_TOPIC REGISTER topic name '' is not valid"},
		{name: "register bad channel", send: identified + "REGISTER t bad!\n", setup: 1, want: "E_BAD_CHANNEL REGISTER channel name 'bad!' is not valid"},
		{name: "unregister bad topic", send: identified + "UNREGISTER a#b\n", setup: 1, want: "E_BAD_TOPIC UNREGISTER topic name 'a#b' is not valid"},
		{name: "unregister bad channel", send: identified + "UNREGISTER t c#ephemeralx\n", setup: 1, want: "E_BAD_CHANNEL UNREGISTER channel name 'c#ephemeralx' is not valid"},
		{name: "line too long", send: strings.Repeat("x", 5000), want: "E_INVALID command line longer than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *tcpClient
			if tt.raw {
				c = dialRaw(t, l)
			} else {
				c = dial(t, l)
			}
			c.write(tt.send)
			if tt.eof {
				c.conn.(*net.TCPConn).CloseWrite()
			}
			for i := 0; i < tt.setup; i++ {
				c.mustRead()
			}
			if got := c.mustRead(); got != tt.want {
				t.Fatalf("got %q; want %q", got, tt.want)
			}
			c.expectClosed()
		})
	}
}

func TestIdentifyResponse(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	c := dial(t, l)
	got := c.identifyRaw(identifyJSON(4150, 4151))
	hostname, _ := os.Hostname()
	want := fmt.Sprintf(`{"broadcast_address":"127.0.0.1","hostname":%q,"http_port":%d,"tcp_port":%d,"version":"1.3.0"}`,
		hostname, l.RealHTTPAddr().Port, l.RealTCPAddr().Port)
	if got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
	// the connection stays usable
	c.mustOK("PING")
	c.mustOK("REGISTER t")
}

func TestCommands(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)

	// PING before IDENTIFY is allowed and changes nothing
	c := dial(t, l)
	c.mustOK("PING")
	c.mustOK("PING extra words")
	if ans := c.identifyRaw(identifyJSON(1, 2)); !strings.HasPrefix(ans, "{") {
		t.Fatalf("IDENTIFY: got %q", ans)
	}

	// surrounding white space is trimmed; extra words are ignored
	c.mustOK("  REGISTER t1 c1 extra  \r")
	c.mustOK("REGISTER t2")
	// two spaces before the channel name an empty channel: topic only
	c.mustOK("REGISTER t3  c")
	// pipelined commands are all answered, in order
	c.write("REGISTER t4 a\nREGISTER t4 b\nPING\nUNREGISTER t4 b\n")
	for i := 0; i < 4; i++ {
		if got := c.mustRead(); got != "OK" {
			t.Fatalf("pipelined answer %d: got %q; want OK", i, got)
		}
	}
	var topics struct{ Topics []string }
	getJSON(t, l, "/topics", &topics)
	if got, want := strings.Join(topics.Topics, ","), "t1,t2,t3,t4"; got != want {
		t.Fatalf("topics: got %s; want %s", got, want)
	}
	var ch struct{ Channels []string }
	getJSON(t, l, "/channels?topic=t4", &ch)
	if got, want := strings.Join(ch.Channels, ","), "a,b"; got != want {
		t.Fatalf("t4 channels: got %s; want %s (a non-ephemeral channel stays)", got, want)
	}
	getJSON(t, l, "/channels?topic=t3", &ch)
	if len(ch.Channels) != 0 {
		t.Fatalf("t3 channels: got %v; want none", ch.Channels)
	}
}

// TestIdentifyDecoding covers the encoding/json rules of docs/wire.md, TCP registration protocol: keys match
// case-insensitively, unknown keys are ignored, topology fields are kept.
func TestIdentifyDecoding(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	c := dial(t, l)
	body := `{"BROADCAST_ADDRESS":"10.0.0.9","Tcp_Port":7,"http_port":8,"version":"1.3.1",` +
		`"hostname":"h","unknown":[1,2],"remote_address":"spoofed","topology_zone":"z1","topology_region":"r1"}`
	if ans := c.identifyRaw(body); !strings.HasPrefix(ans, "{") {
		t.Fatalf("IDENTIFY: got %q", ans)
	}
	c.mustOK("REGISTER t")

	_, got := httpDo(t, l, "GET", "/lookup?topic=t")
	want := fmt.Sprintf(`{"channels":[],"producers":[{"remote_address":%q,"hostname":"h","broadcast_address":"10.0.0.9",`+
		`"tcp_port":7,"http_port":8,"version":"1.3.1","topology_zone":"z1","topology_region":"r1"}]}`, c.conn.LocalAddr().String())
	if got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
}

func TestDecodeIdentify(t *testing.T) {
	t.Parallel()
	const ok = `"broadcast_address":"a","tcp_port":1,"http_port":2,"version":"v"`
	tests := []struct {
		body, wantErr      string
		wantZone, wantRegn string
	}{
		{body: `{` + ok + `}`},
		{body: `{"broadcast_address":"a","tcp_port":"1","http_port":2,"version":"v"}`, wantErr: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{body: `[]`, wantErr: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{body: `{}`, wantErr: "E_BAD_BODY IDENTIFY missing fields"},
		{body: `{"broadcast_address":"a","tcp_port":-1,"http_port":-2,"version":"v"}`},
		// topology fields: kept when strings; any other value is accepted
		// and ignored, as v1.3.0 ignores the fields altogether
		{body: `{` + ok + `,"topology_zone":"z","TOPOLOGY_REGION":"r"}`, wantZone: "z", wantRegn: "r"},
		{body: `{` + ok + `,"topology_zone":7,"topology_region":{"a":[1]}}`},
		{body: `{` + ok + `,"topology_zone":null,"topology_region":true}`},
		{body: `{` + ok + `,"topology_zone":"z","topology_zone":8}`},
		{body: `{` + ok + `,"topology_zone":7`, wantErr: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{body: `{"topology_zone":"z"}`, wantErr: "E_BAD_BODY IDENTIFY missing fields"},
	}
	for _, tt := range tests {
		info, err := decodeIdentify([]byte(tt.body), "1.2.3.4:5")
		if tt.wantErr == "" {
			if err != nil || info.ID != "1.2.3.4:5" {
				t.Errorf("%s: got %+v, %v; want a peer with id 1.2.3.4:5", tt.body, info, err)
			} else if info.TopologyZone != tt.wantZone || info.TopologyRegion != tt.wantRegn {
				t.Errorf("%s: got topology %q %q; want %q %q", tt.body, info.TopologyZone, info.TopologyRegion, tt.wantZone, tt.wantRegn)
			}
			continue
		}
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("%s: got error %v; want %s", tt.body, err, tt.wantErr)
		}
	}
}

// splitCommand keeps what strings.Split gives for the words a command
// reads.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"", " ", "PING", "REGISTER t", "REGISTER t c", "REGISTER  t", "REGISTER t c d e", "a b c ", "  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var words [maxWords]string
		got := splitCommand(line, &words)
		want := strings.Split(line, " ")
		if len(want) > maxWords {
			want = want[:maxWords]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("splitCommand(%q) = %q; want %q", line, got, want)
		}
	})
}

// TestUnterminatedLineNotExecuted: a last command line without "\n" is
// never executed, however the client ends the connection (docs/wire.md). The
// client ends its side so that the daemon sees the end of the input; the
// registry is then read once the connection is gone.
func TestUnterminatedLineNotExecuted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		send string
		want []string // answers before the daemon closes
	}{
		{"register", "REGISTER t2", nil},
		{"register channel", "REGISTER t2 c2", nil},
		{"after a full line", "REGISTER t1 c1\nREGISTER t2", []string{"OK"}},
		{"trailing carriage return", "REGISTER t2\r", nil},
	}
	for _, tt := range tests {
		for _, halfClose := range []bool{true, false} {
			name := tt.name + map[bool]string{true: " then half-close", false: " then close"}[halfClose]
			t.Run(name, func(t *testing.T) {
				l := startLookupd(t, nil)
				c := connectProducer(t, l, 1, 2)
				c.mustOK("REGISTER t1 c1")
				c.write(tt.send)
				if halfClose {
					c.conn.(*net.TCPConn).CloseWrite()
					for _, want := range tt.want {
						if got := c.mustRead(); got != want {
							t.Fatalf("got %q; want %q", got, want)
						}
					}
					c.expectClosed() // and no answer to the unterminated line
				} else {
					c.conn.Close()
				}
				// Gone: the daemon has read the end of the input and
				// dropped the producer.
				test.Eventually(t, ioTimeout, func() bool {
					var nodes nodesAnswer
					getJSON(t, l, "/nodes", &nodes)
					return len(nodes.Producers) == 0
				})
				var topics struct{ Topics []string }
				getJSON(t, l, "/topics", &topics)
				if got := strings.Join(topics.Topics, ","); got != "t1" {
					t.Errorf("/topics: got %s; want t1 (t2 never registered)", got)
				}
				var ch struct{ Channels []string }
				getJSON(t, l, "/channels?topic=*", &ch)
				if got := strings.Join(ch.Channels, ","); got != "c1" {
					t.Errorf("/channels?topic=*: got %s; want c1", got)
				}
			})
		}
	}
}

func TestEphemeral(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	a := connectProducer(t, l, 1, 11)
	b := connectProducer(t, l, 2, 12)
	a.mustOK("REGISTER t#ephemeral c#ephemeral")
	b.mustOK("REGISTER t#ephemeral c#ephemeral")
	a.mustOK("REGISTER t c#ephemeral")
	a.mustOK("REGISTER t d")

	channels := func(topic string) string {
		var c struct{ Channels []string }
		getJSON(t, l, "/channels?topic="+strings.ReplaceAll(topic, "#", "%23"), &c)
		return strings.Join(c.Channels, ",")
	}
	topics := func() string {
		var c struct{ Topics []string }
		getJSON(t, l, "/topics", &c)
		return strings.Join(c.Topics, ",")
	}

	// an ephemeral channel stays while a producer holds it
	a.mustOK("UNREGISTER t#ephemeral c#ephemeral")
	if got := channels("t#ephemeral"); got != "c#ephemeral" {
		t.Fatalf("got %q; want c#ephemeral still held by b", got)
	}
	b.mustOK("UNREGISTER t#ephemeral c#ephemeral")
	if got := channels("t#ephemeral"); got != "" {
		t.Fatalf("got %q; want the empty ephemeral channel removed", got)
	}
	a.mustOK("UNREGISTER t#ephemeral")
	if got := topics(); got != "t,t#ephemeral" {
		t.Fatalf("topics: got %q; want t#ephemeral held by b", got)
	}
	b.mustOK("UNREGISTER t#ephemeral")
	if got := topics(); got != "t" {
		t.Fatalf("topics: got %q; want t", got)
	}
	// a non-ephemeral channel stays when emptied
	a.mustOK("UNREGISTER t d")
	if got := channels("t"); got != "c#ephemeral,d" {
		t.Fatalf("got %q; want c#ephemeral,d", got)
	}
	// better than v1.3.0: a connection drop removes the ephemeral
	// registrations it leaves empty, and keeps the others
	a.conn.Close()
	test.Eventually(t, 5*time.Second, func() bool { return channels("t") == "d" })
	if got := topics(); got != "t" {
		t.Fatalf("topics after disconnect: got %q; want t", got)
	}
}

// TestSameIdentityTwoProducers: two connections with the same IDENTIFY body
// are two producers, keyed by their remote addresses.
func TestSameIdentityTwoProducers(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	a := connectProducer(t, l, 1, 11)
	b := connectProducer(t, l, 1, 11)
	a.mustOK("REGISTER t")
	b.mustOK("REGISTER t")
	var a1 lookupAnswer
	getJSON(t, l, "/lookup?topic=t", &a1)
	if len(a1.Producers) != 2 || a1.Producers[0].RemoteAddress == a1.Producers[1].RemoteAddress {
		t.Fatalf("got %+v; want two producers with distinct remote addresses", a1.Producers)
	}
}
