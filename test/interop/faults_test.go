package interop

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
)

// Real faults: a host that dies without a word (its network namespace cut
// off), and one of two lookupds killed.

var (
	nsqdOnce sync.Once
	nsqdBin  string
	nsqdErr  error
)

// nsqdBinary builds nsqd v1.3.0 as NSQ ships it (github.com/nsqio/nsq/apps/nsqd,
// a tool of this module) into buildDir, once, and returns its path.
func nsqdBinary(t *testing.T) string {
	t.Helper()
	nsqdOnce.Do(func() {
		bin := filepath.Join(buildDir, "nsqd")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/nsqio/nsq/apps/nsqd")
		if out, err := cmd.CombinedOutput(); err != nil {
			nsqdErr = fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
			return
		}
		nsqdBin = bin
	})
	if nsqdErr != nil {
		t.Fatal(nsqdErr)
	}
	return nsqdBin
}

// netns is a network namespace joined to the host by a veth pair on a
// private /30: hostIP on the host's end, nsIP on the namespace's.
type netns struct {
	name         string
	hostIf, nsIf string
	hostIP, nsIP string
}

var netnsSeq atomic.Int64

// ipCmd runs ip with args and returns its combined output.
func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// newNetns makes a namespace with names unique to this run and test, and
// removes it when the test ends, failed or not.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the ip command (iproute2) is missing, and a real host death needs it: " +
			"run scripts/install-test-deps.sh (at the repository root) first")
	}
	id := fmt.Sprintf("%d%d", os.Getpid(), netnsSeq.Add(1)) // interface names: at most 15 bytes
	n := &netns{
		name:   "nsqlookupd-test-" + id,
		hostIf: "lkh" + id,
		nsIf:   "lkn" + id,
	}
	n.hostIP, n.nsIP = pickSubnet(t)
	t.Cleanup(func() { n.remove(t) }) // before it is made: a half-made one goes too
	for _, args := range [][]string{
		{"netns", "add", n.name},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.name},
		{"addr", "add", n.hostIP + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.name, "addr", "add", n.nsIP + "/30", "dev", n.nsIf},
		{"-n", n.name, "link", "set", n.nsIf, "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
	} {
		if _, err := ipCmd(args...); err != nil {
			t.Fatalf("cannot make the network namespace a real host death runs in "+
				"(it needs root, i.e. CAP_SYS_ADMIN and CAP_NET_ADMIN, and iproute2 from scripts/install-test-deps.sh): %v", err)
		}
	}
	t.Logf("namespace %s: host %s (%s) <-> %s (%s)", n.name, n.hostIP, n.hostIf, n.nsIP, n.nsIf)
	return n
}

// pickSubnet returns the two addresses of a /30 in 198.18.0.0/15 (set aside
// for network tests, RFC 2544) that no interface of the host uses.
func pickSubnet(t *testing.T) (hostIP, nsIP string) {
	t.Helper()
	addrs, err := ipCmd("-4", "-o", "addr")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		b := rand.N(1 << 15) // which /30 of the /15
		ip := func(k int) string { return fmt.Sprintf("198.%d.%d.%d", 18+b>>14, b>>6&0xff, (b&0x3f)*4+k) }
		if !strings.Contains(addrs, " "+ip(1)+"/") && !strings.Contains(addrs, " "+ip(2)+"/") {
			return ip(1), ip(2)
		}
	}
	t.Fatal("no free /30 in 198.18.0.0/15")
	return "", ""
}

// remove deletes the namespace, which takes its end of the veth pair, and
// so the pair, with it; then the host's end, should the namespace never
// have been made or not be gone yet.
func (n *netns) remove(t *testing.T) {
	if _, err := ipCmd("netns", "del", n.name); err != nil {
		if list, _ := ipCmd("netns", "list"); strings.Contains(list, n.name) {
			t.Errorf("removing namespace %s: %v", n.name, err)
		}
	}
	// the kernel may still be tearing the namespace down: the host's end
	// can outlive the del for a moment
	ipCmd("link", "del", n.hostIf)
}

// setLink sets the namespace's end of the link down or up. Down, nothing
// more crosses: no FIN or RST reaches the host, as when a host loses power
// or its cable.
func (n *netns) setLink(t *testing.T, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if _, err := ipCmd("-n", n.name, "link", "set", n.nsIf, state); err != nil {
		t.Fatal(err)
	}
}

// nsqdProc is a real nsqd v1.3.0 process running in a namespace.
type nsqdProc struct {
	TCPAddr, HTTPAddr string
	BroadcastAddress  string
	TCPPort           int
	logs              syncBuffer
}

// startNSQDIn starts nsqd in n, on n's own address, registering with the
// given lookupd TCP addresses, and waits until it answers /ping. It is
// killed (by PID) when the test ends.
func startNSQDIn(t *testing.T, n *netns, lookupdTCPAddrs ...string) *nsqdProc {
	t.Helper()
	p := &nsqdProc{
		TCPAddr:          net.JoinHostPort(n.nsIP, "4150"),
		HTTPAddr:         net.JoinHostPort(n.nsIP, "4151"),
		BroadcastAddress: n.nsIP,
		TCPPort:          4150,
	}
	args := []string{"netns", "exec", n.name, nsqdBinary(t),
		"--tcp-address=" + p.TCPAddr,
		"--http-address=" + p.HTTPAddr,
		"--broadcast-address=" + n.nsIP,
		"--data-path=" + t.TempDir(),
	}
	for _, a := range lookupdTCPAddrs {
		args = append(args, "--lookupd-tcp-address="+a)
	}
	cmd := exec.Command("ip", args...) // ip netns exec execs nsqd: same PID
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nsqd in %s: %v", n.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("nsqd (pid %d) in %s output:\n%s", cmd.Process.Pid, n.name, p.logs.String())
		}
	})
	eventually(t, 15*time.Second, func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("nsqd exited during start-up: %s\n%s", cmd.ProcessState, p.logs.String())
		default:
		}
		resp, err := httpClient.Get("http://" + p.HTTPAddr + "/ping")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// post sends a POST to nsqd's HTTP API and fails the test unless it is
// answered 200.
func (p *nsqdProc) post(t *testing.T, pathAndQuery string) {
	t.Helper()
	doRequest(t, http.MethodPost, "http://"+p.HTTPAddr+pathAndQuery, nil)
}

// listed reports whether d lists p in /lookup?topic= and in /nodes: "both",
// "neither", or the reason it is only in one.
func listed(d *lookupd, topic string, p *nsqdProc) (string, error) {
	a, code, err := d.lookup(topic)
	if err != nil && code != http.StatusNotFound {
		return "", err
	}
	is := func(bcast string, port int) bool { return bcast == p.BroadcastAddress && port == p.TCPPort }
	inLookup := slices.ContainsFunc(a.Producers, func(x producerInfo) bool { return is(x.BroadcastAddress, x.TCPPort) })
	nodes, err := d.nodes()
	if err != nil {
		return "", err
	}
	inNodes := slices.ContainsFunc(nodes, func(x nodeInfo) bool { return is(x.BroadcastAddress, x.TCPPort) })
	switch {
	case inLookup && inNodes:
		return "both", nil
	case !inLookup && !inNodes:
		return "neither", nil
	}
	return fmt.Sprintf("/lookup %v, /nodes %v", inLookup, inNodes), nil
}

// TestHostDeath: a real nsqd in its own network namespace registers with the
// daemon (producer read timeout 3 s) and is kept while it talks. Then its
// link is cut, so nothing, not even a FIN or RST, reaches the daemon: the
// producer must leave /lookup and /nodes once the timeout has passed. When
// the link comes back, nsqd registers again.
func TestHostDeath(t *testing.T) {
	t.Parallel()
	const (
		readTimeout = 3 * time.Second
		every       = 250 * time.Millisecond // nsqd's traffic while alive
		topic       = "orders"
	)
	n := newNetns(t)
	d := startLookupdOn(t, n.hostIP, "--producer-read-timeout="+readTimeout.String())
	p := startNSQDIn(t, n, d.TCPAddr)
	p.post(t, "/topic/create?topic="+topic)
	stop := chatter("http://"+p.HTTPAddr, topic, "keepalive", every)

	waitListed := func(want string, within time.Duration) {
		t.Helper()
		eventually(t, within, func() (bool, string) {
			got, err := listed(d, topic, p)
			if err != nil {
				return false, err.Error()
			}
			return got == want, fmt.Sprintf("nsqd %s listed in %s; want %s", p.TCPAddr, got, want)
		})
	}
	waitListed("both", registerTimeout)
	// a live nsqd is kept: for two timeouts, at every look
	for end := time.Now().Add(2 * readTimeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got, err := listed(d, topic, p); err != nil || got != "both" {
			t.Fatalf("live nsqd listed in %s (%v); want both", got, err)
		}
	}

	stop()
	cut := time.Now()
	n.setLink(t, false)
	waitListed("neither", readTimeout+5*time.Second)
	gone := time.Since(cut)
	t.Logf("cut host left /lookup and /nodes %.2fs after the cut (producer read timeout %s; its last command was at most %s before the cut)",
		gone.Seconds(), readTimeout, every)
	if gone < readTimeout-every-time.Second {
		t.Errorf("gone %s after the cut, well before the %s timeout: something else closed the connection", gone, readTimeout)
	}
	want := "evicting producer " + p.BroadcastAddress + ":4150"
	if !strings.Contains(d.text(), want) {
		t.Errorf("the daemon's log has no line with %q", want)
	}

	n.setLink(t, true)
	back := time.Now()
	defer chatter("http://"+p.HTTPAddr, topic, "keepalive", every)()
	// nsqd finds its old connection dead at its next command, and connects
	// again at the one after (its heartbeat is every 15 s)
	waitListed("both", 35*time.Second)
	t.Logf("nsqd registered again %.2fs after its link came back", time.Since(back).Seconds())
}

// messageSet is the bodies a consumer has received.
type messageSet struct {
	mu  sync.Mutex
	got map[string]bool
}

func (s *messageSet) add(m *nsq.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = make(map[string]bool)
	}
	s.got[string(m.Body)] = true
}

// missing returns the bodies of want not received yet.
func (s *messageSet) missing(want []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range want {
		if !s.got[b] {
			out = append(out, b)
		}
	}
	return out
}

// publishAll publishes count messages prefix-0, prefix-1, … to topic and
// returns their bodies.
func publishAll(t *testing.T, n *nsqdNode, topic, prefix string, count int) []string {
	t.Helper()
	var bodies []string
	for i := range count {
		b := fmt.Sprintf("%s-%d", prefix, i)
		n.publish(t, topic, b)
		bodies = append(bodies, b)
	}
	return bodies
}

func waitConsumed(t *testing.T, s *messageSet, want []string) {
	t.Helper()
	eventually(t, registerTimeout, func() (bool, string) {
		m := s.missing(want)
		return len(m) == 0, fmt.Sprintf("%d of %d messages not consumed: %v", len(m), len(want), m)
	})
}

// TestTwoLookupds is NSQ's high-availability pattern: one nsqd registers
// with two lookupds and consumers ask both. One is killed with SIGKILL:
// every message is still consumed, and a topic created meanwhile is found
// through the other alone. Restarted on the same ports, it gets nsqd's
// registrations again.
func TestTwoLookupds(t *testing.T) {
	t.Parallel()
	d1, d2 := startLookupd(t), startLookupd(t)
	n := startNSQD(t, d1.TCPAddr, d2.TCPAddr)
	lookupds := []string{d1.HTTPAddr, d2.HTTPAddr}
	connect := func(c *nsq.Consumer) error { return c.ConnectToNSQLookupds(lookupds) }
	registered := func(d *lookupd, topic string) func() (bool, string) {
		return func() (bool, string) {
			a, _, err := d.lookup(topic)
			if err != nil {
				return false, err.Error()
			}
			return producersAre(a.Producers, n)
		}
	}

	var got messageSet
	want := publishAll(t, n, "ha", "before", 10)
	eventually(t, registerTimeout, registered(d1, "ha"))
	eventually(t, registerTimeout, registered(d2, "ha"))
	startConsumer(t, "ha", "ch", got.add, connect)
	waitConsumed(t, &got, want)

	d1.kill()
	if st := d1.state; st.Exited() || st.ExitCode() != -1 {
		t.Fatalf("after SIGKILL: %v, want killed by signal", st)
	}
	want = append(want, publishAll(t, n, "ha", "during", 20)...)
	waitConsumed(t, &got, want)
	// a topic born while d1 is dead: only d2 can tell where it is
	var gotNew messageSet
	wantNew := publishAll(t, n, "ha_new", "new", 10)
	eventually(t, registerTimeout, registered(d2, "ha_new"))
	startConsumer(t, "ha_new", "ch", gotNew.add, connect)
	waitConsumed(t, &gotNew, wantNew)

	d1.restart(t)
	// nsqd finds d1 gone at a heartbeat and connects again at the next:
	// up to 30 s
	eventually(t, 45*time.Second, registered(d1, "ha"))
	eventually(t, registerTimeout, registered(d1, "ha_new"))
	want = append(want, publishAll(t, n, "ha", "after", 10)...)
	wantNew = append(wantNew, publishAll(t, n, "ha_new", "after", 10)...)
	waitConsumed(t, &got, want)
	waitConsumed(t, &gotNew, wantNew)
}
