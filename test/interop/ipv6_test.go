package interop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestIPv6Tombstone: the daemon and an nsqd both on [::1]; the nsqd's
// registration shows in /lookup, and nsqadmin's tombstone of the node
// hides it there. nsqadmin names the node "[::1]:<http port>"
// (net.JoinHostPort), which v1.3.0 never matches (docs/differences.md,
// IPv6 tombstones).
//
// nsqadmin's tombstone also deletes the topic on the nsqd, which then
// unregisters it from the daemon: that alone would hide the nsqd. So the
// nsqd reaches the daemon through a proxy that, from just before the
// tombstone, passes on nothing more the nsqd sends: whatever then hides
// the nsqd is the tombstone.
func TestIPv6Tombstone(t *testing.T) {
	t.Parallel()
	requireIPv6Loopback(t)
	const topic = "topic_v6"

	d := startDaemonOn(t, "::1", lookupdBin, "--broadcast-address=::1")
	proxy := startHoldProxy(t, "[::1]:0", d.TCPAddr)
	n := startNSQDOn(t, "::1", proxy.addr())
	n.publish(t, topic, "m")
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := d.lookup(topic)
		if err != nil {
			return false, err.Error()
		}
		if len(a.Producers) != 1 {
			return false, fmt.Sprintf("/lookup?topic=%s: %+v, want the nsqd", topic, a.Producers)
		}
		p := a.Producers[0]
		if p.BroadcastAddress != "::1" || p.TCPPort != n.TCPPort || p.HTTPPort != n.HTTPPort {
			return false, fmt.Sprintf("/lookup?topic=%s: %+v, want broadcast_address ::1 and ports %d/%d", topic, p, n.TCPPort, n.HTTPPort)
		}
		if host, _, err := net.SplitHostPort(p.RemoteAddress); err != nil || host != "::1" {
			return false, fmt.Sprintf("/lookup?topic=%s: remote_address %q, want [::1]:<port>", topic, p.RemoteAddress)
		}
		return true, ""
	})

	api := startNSQAdmin(t, d.HTTPAddr, "", "", "")
	// The node as nsqadmin's node list names it: broadcast_address joined
	// with http_port, in brackets when the address has colons.
	var nodes struct {
		Nodes []struct {
			BroadcastAddress string `json:"broadcast_address"`
			HTTPPort         int    `json:"http_port"`
		} `json:"nodes"`
	}
	if _, err := getJSON(api+"/nodes", &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Nodes) != 1 || nodes.Nodes[0].BroadcastAddress != "::1" {
		t.Fatalf("nsqadmin /api/nodes: %+v, want the nsqd on ::1", nodes.Nodes)
	}
	node := net.JoinHostPort(nodes.Nodes[0].BroadcastAddress, strconv.Itoa(nodes.Nodes[0].HTTPPort))
	if want := fmt.Sprintf("[::1]:%d", n.HTTPPort); node != want {
		t.Fatalf("node name %q, want %q", node, want)
	}

	proxy.hold()
	doRequest(t, http.MethodDelete, api+"/nodes/"+url.PathEscape(node), map[string]string{"topic": topic})

	a, code, err := d.lookup(topic)
	if err != nil {
		t.Fatalf("/lookup?topic=%s after the tombstone: %d %v", topic, code, err)
	}
	if len(a.Producers) != 0 {
		t.Errorf("/lookup?topic=%s after nsqadmin tombstoned %s: %+v, want no producers", topic, node, a.Producers)
	}
	ns, err := d.nodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || fmt.Sprint(ns[0].Topics, ns[0].Tombstones) != "["+topic+"] [true]" {
		t.Errorf("/nodes after the tombstone: %+v, want the nsqd with %s tombstoned", ns, topic)
	}
}

// requireIPv6Loopback makes sure that TCP on [::1] works. If it does not
// and the test runs as root (as CI does), it switches IPv6 on for lo and
// gives lo the address ::1; otherwise, or if that does not help, it fails
// saying what to do.
func requireIPv6Loopback(t *testing.T) {
	t.Helper()
	err := listenIPv6Loopback()
	if err == nil {
		return
	}
	if os.Geteuid() == 0 {
		t.Logf("no IPv6 loopback (%v): enabling it on lo", err)
		if werr := os.WriteFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6", []byte("0\n"), 0o644); werr != nil {
			t.Logf("net.ipv6.conf.lo.disable_ipv6=0: %v", werr)
		}
		if out, aerr := exec.Command("ip", "-6", "addr", "add", "::1/128", "dev", "lo").CombinedOutput(); aerr != nil {
			t.Logf("ip -6 addr add ::1/128 dev lo: %v %s", aerr, out)
		}
		if err = listenIPv6Loopback(); err == nil {
			return
		}
	}
	t.Fatalf("TCP on [::1] does not work (%v). The IPv6 tests need the loopback address ::1: "+
		"as root, run sysctl -w net.ipv6.conf.lo.disable_ipv6=0 and ip -6 addr add ::1/128 dev lo "+
		"(in a container, start it with IPv6 enabled)", err)
}

func listenIPv6Loopback() error {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// holdProxy passes TCP connections on to a target until hold is called.
// From then on, what clients send is read and dropped, their closing is not
// passed on, and new clients are not connected to the target: the target
// sees its clients go quiet, as behind a network that stopped delivering.
type holdProxy struct {
	l      net.Listener
	target string
	held   atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startHoldProxy(t *testing.T, listen, target string) *holdProxy {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{l: l, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *holdProxy) addr() string { return p.l.Addr().String() }

func (p *holdProxy) hold() { p.held.Store(true) }

func (p *holdProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *holdProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.l.Accept()
		if err != nil {
			return
		}
		p.track(client)
		var target net.Conn
		if !p.held.Load() {
			if target, err = net.DialTimeout("tcp", p.target, 5*time.Second); err != nil {
				client.Close()
				continue
			}
			p.track(target)
			p.wg.Add(1)
			go func() { // target to client, always
				defer p.wg.Done()
				io.Copy(client, target)
				client.Close()
			}()
		}
		p.wg.Add(1)
		go func() { // client to target, until held
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 && target != nil && !p.held.Load() {
					if _, werr := target.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					if target != nil && !p.held.Load() && errors.Is(err, io.EOF) {
						target.Close()
					}
					return
				}
			}
		}()
	}
}

func (p *holdProxy) close() {
	p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
