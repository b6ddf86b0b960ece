package nsqlookupd

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/lookupd/nsqlookupd/internal/test"
)

func sizePrefix(n int32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return string(b[:])
}

// TestProtocolErrors runs every error row of SPEC §3 over a real
// connection: the framed answer byte for byte, then the close.
// identifyCmd is an IDENTIFY command with body.
func identifyCmd(body string) string {
	return "IDENTIFY\n" + sizePrefix(int32(len(body))) + body
}

func TestProtocolErrors(t *testing.T) {
	l := startLookupd(t, nil)
	valid := identifyBody(4150, 4151)
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
	l := startLookupd(t, nil)
	c := dial(t, l)
	got := c.identifyRaw(identifyBody(4150, 4151))
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
	l := startLookupd(t, nil)

	// PING before IDENTIFY is allowed and changes nothing
	c := dial(t, l)
	c.mustOK("PING")
	c.mustOK("PING extra words")
	if ans := c.identifyRaw(identifyBody(1, 2)); !strings.HasPrefix(ans, "{") {
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

// TestIdentifyDecoding covers the encoding/json rules of SPEC §4: keys match
// case-insensitively, unknown keys are ignored, topology fields are kept.
func TestIdentifyDecoding(t *testing.T) {
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
			if err != nil || info.id != "1.2.3.4:5" || info.RemoteAddress != "1.2.3.4:5" {
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
// never executed, however the client ends the connection (SPEC §4). The
// client ends its side so that the daemon sees the end of the input; the
// registry is then read once the connection is gone.
func TestUnterminatedLineNotExecuted(t *testing.T) {
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
