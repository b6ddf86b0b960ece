package nsqlookupd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// Fuzz targets for everything that parses bytes from a peer. Run one with
//
//	go test -run '^$' -fuzz FuzzConn -fuzztime 60s ./nsqlookupd
//
// Inputs that fail land in testdata/fuzz/<target>/ and plain go test
// replays them.

// fakeConn is a registration connection whose peer has sent exactly in and
// then closed its side: Read returns in, then io.EOF. What the server writes
// is kept in out. Deadlines are ignored.
type fakeConn struct {
	in     *bytes.Reader
	out    bytes.Buffer
	remote net.Addr
}

var fakePort atomic.Int32

func newFakeConn(in []byte) *fakeConn {
	port := int(fakePort.Add(1))
	return &fakeConn{
		in:     bytes.NewReader(in),
		remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port},
	}
}

func (c *fakeConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4160} }
func (c *fakeConn) RemoteAddr() net.Addr             { return c.remote }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// wireCodes are the error codes SPEC §3 lets the server send.
var wireCodes = map[string]bool{
	"E_BAD_PROTOCOL": true, "E_INVALID": true, "E_BAD_BODY": true,
	"E_BAD_TOPIC": true, "E_BAD_CHANNEL": true,
}

// checkFrames checks that out is a sequence of whole frames, each "OK", the
// IDENTIFY answer or an error with a known code, and that an error, if
// any, is the last frame.
func checkFrames(out, identifyAnswer []byte) error {
	for i := 0; len(out) > 0; i++ {
		if len(out) < 4 {
			return fmt.Errorf("frame %d: %d bytes left, want a 4-byte size", i, len(out))
		}
		n := binary.BigEndian.Uint32(out)
		if uint64(n) > uint64(len(out)-4) {
			return fmt.Errorf("frame %d: size %d, only %d bytes follow", i, n, len(out)-4)
		}
		body := out[4 : 4+n]
		out = out[4+n:]
		switch {
		case string(body) == "OK", bytes.Equal(body, identifyAnswer):
		case bytes.HasPrefix(body, []byte("E_")):
			code, _, _ := strings.Cut(string(body), " ")
			if !wireCodes[code] {
				return fmt.Errorf("frame %d: got error code %q; want one of SPEC §3", i, code)
			}
			if len(out) > 0 {
				return fmt.Errorf("frame %d: got %d bytes after error %q; want the connection closed", i, len(out), body)
			}
		default:
			return fmt.Errorf("frame %d: got %q; want OK, the IDENTIFY answer or an error", i, body)
		}
	}
	return nil
}

// runConn serves one connection that sends in, on l, through the real
// tcpServer.Handle, and fails on a panic, a hang, a reply that is not well
// framed, or anything left behind in the registry.
func runConn(t *testing.T, l *NSQLookupd, in []byte) {
	conn := newFakeConn(in)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.tcpServer.Handle(conn)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("connection still served after 5s; want it to end at EOF (input %q)", in)
	}
	if n := l.panics.Load(); n != 0 {
		t.Fatalf("panics: got %d; want 0 (input %q)", n, in)
	}
	if err := checkFrames(conn.out.Bytes(), l.identifyResponse); err != nil {
		t.Fatalf("%s\ninput %q\nreply %q", err, in, conn.out.Bytes())
	}
	if st := l.db.stats(time.Now(), time.Minute); st.Producers != 0 || st.Registrations != 0 {
		t.Fatalf("after the connection ended: got %d producers, %d registrations; want 0 (input %q)", st.Producers, st.Registrations, in)
	}
	if errs := l.db.checkInvariants(); len(errs) > 0 {
		t.Fatalf("registry broken (input %q): %v", in, errs)
	}
}

// fuzzIdentify is a valid IDENTIFY command, body size included.
func fuzzIdentify() string {
	body := identifyBody(4150, 4151)
	return "IDENTIFY\n" + sizePrefix(int32(len(body))) + body
}

// FuzzConn feeds whole connections to one daemon, reused across inputs.
func FuzzConn(f *testing.F) {
	f.Add([]byte("  V1PING\n"))
	f.Add([]byte("  V1IDENTIFY\n\xff\xff\xff\xf3")) // negative body size
	f.Add([]byte("  V1IDENTIFY\n\x00\x00\x00\x00"))
	f.Add([]byte("  V1IDENTIFY\n\x7f\xff\xff\xff"))
	f.Add([]byte("  V1IDENTIFY\n\x00\x00\x00\x04null"))
	f.Add([]byte("  V1IDENTIFY\n\x00\x00\x00\x10{\"tcp_port\":\"x\"}"))
	f.Add([]byte("  V2"))
	f.Add([]byte(""))
	f.Add([]byte("  V1"))
	f.Add([]byte("  V1\n"))
	f.Add([]byte("  V1" + strings.Repeat("x", 5000)))
	f.Add([]byte("  V1REGISTER t c\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER t c\nREGISTER t#ephemeral c#ephemeral\nUNREGISTER t c\nUNREGISTER t\nPING\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER t\x00 c\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "IDENTIFY\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER  t\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER t c\nREGISTER t"))

	l := startLookupd(f, func(o *Options) {
		// Millions of inputs: a test log would grow without bound.
		o.Logger = lg.NilLogger{}
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		runConn(t, l, in)
	})
}

// FuzzCommandLine runs one command line, split as the IO loop splits it,
// through Exec and getTopicChan, for an identified client or not.
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
	opts := NewOptions()
	opts.Logger = lg.NilLogger{}
	f.Fuzz(func(t *testing.T, line string, identified bool) {
		l := &NSQLookupd{opts: opts, db: newRegistrationDB(), clock: realClock{}, identifyResponse: []byte("{}")}
		client := newClientV1(newFakeConn(nil))
		if identified {
			info, err := decodeIdentify([]byte(identifyBody(1, 2)), client.RemoteAddr().String())
			if err != nil {
				t.Fatalf("decodeIdentify: %s", err)
			}
			client.peer = newPeer(info, time.Now())
			l.db.addPeer(client.peer)
		}
		params := strings.Split(strings.TrimSpace(line), " ")
		prot := &lookupProtocolV1{nsqlookupd: l}
		reader := bufio.NewReader(bytes.NewReader(nil))

		resp, err := prot.Exec(client, reader, params)
		if err != nil {
			var ce *protocol.ClientErr
			if !errors.As(err, &ce) {
				t.Fatalf("%q: got error %T %v; want a *protocol.ClientErr", line, err, err)
			}
			if !wireCodes[ce.Code] || ce.Error() != ce.Code+" "+ce.Desc {
				t.Fatalf("%q: got error %q (code %q); want a SPEC §3 code", line, ce.Error(), ce.Code)
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
					if _, producers, ok := l.db.lookup(topic); !ok || len(producers) != 1 {
						t.Fatalf("%q: topic %q has %d producers (found %v); want 1", line, topic, len(producers), ok)
					}
				}
			}
		}

		// The connection ends: nothing of the client may remain.
		if client.peer != nil {
			l.db.removePeer(client.peer)
		}
		if st := l.db.stats(time.Now(), time.Minute); st.Producers != 0 || st.Registrations != 0 {
			t.Fatalf("%q: got %d producers, %d registrations after removePeer; want 0", line, st.Producers, st.Registrations)
		}
		for _, name := range l.db.channelNames(wildcard) {
			if protocol.IsEphemeral(name) {
				t.Fatalf("%q: ephemeral channel %q left without producers", line, name)
			}
		}
		for _, name := range l.db.topicNames() {
			if protocol.IsEphemeral(name) {
				t.Fatalf("%q: ephemeral topic %q still registered with no producer", line, name)
			}
		}
		if errs := l.db.checkInvariants(); len(errs) > 0 {
			t.Fatalf("%q: registry broken: %v", line, errs)
		}
	})
}

// FuzzIdentifyBody decodes IDENTIFY bodies: a body is accepted with every
// required field set, or refused with one of SPEC §3's two answers.
func FuzzIdentifyBody(f *testing.F) {
	for _, s := range []string{
		identifyBody(4150, 4151), "", "null", "{}", "[]", "abc", `{"tcp_port":1.5}`,
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
				t.Fatalf("got error %q; want one of SPEC §3's IDENTIFY errors", ce.Error())
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if info.BroadcastAddress == "" || info.TCPPort == 0 || info.HTTPPort == 0 || info.Version == "" {
			t.Fatalf("accepted %q with a required field missing: %+v", body, info)
		}
		if info.id != remote || info.RemoteAddress != remote {
			t.Fatalf("got id %q, remote_address %q; want %q for both", info.id, info.RemoteAddress, remote)
		}
		// What /lookup will print must encode.
		if _, err := json.Marshal(info); err != nil {
			t.Fatalf("accepted %q but it does not encode: %s", body, err)
		}
	})
}
