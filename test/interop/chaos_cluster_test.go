package interop

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
)

// The chaos test's cluster: two lookupds (ours) on the host, four nsqd
// v1.3.0 each in its own network namespace, all joined by a bridge on a
// private /28 (RFC 2544's 198.18.0.0/15); a publisher, chatter that keeps
// each nsqd talking to its lookupds, and a go-nsq consumer.

// chaosTimings are the daemons' settings and what follows from them.
type chaosTimings struct {
	readTimeout time.Duration // the lookupds' --producer-read-timeout
	tombstone   time.Duration // the lookupds' --tombstone-lifetime
	chatter     time.Duration // how often each nsqd is made to send its lookupds a command
	sample      time.Duration // pause between two samples of the checker
}

var defaultTimings = chaosTimings{
	readTimeout: 5 * time.Second,
	tombstone:   15 * time.Second,
	chatter:     2 * time.Second,
	sample:      250 * time.Millisecond,
}

// nsqdHeartbeat is nsqd v1.3.0's PING interval to its lookupds (fixed in
// its lookup loop).
const nsqdHeartbeat = 15 * time.Second

// convergenceBound is how soon after a fault heals every lookupd must
// agree with the truth again: the read timeout (a connection left over
// from before the fault is dropped by then) plus nsqd's heartbeat (nsqd
// finds a dead connection at its next command, at the latest at its next
// heartbeat) plus a margin of 5 s: nsqd connects again at the command
// after the one that failed (with chatter, at most two chatter intervals,
// 4 s), and that connection costs at most a 1 s dial and a 1 s IDENTIFY
// (its lookup peer's deadlines) while a lookupd is frozen.
func (tm chaosTimings) convergenceBound() time.Duration {
	return tm.readTimeout + nsqdHeartbeat + 5*time.Second
}

// disappearBound is how soon a cut or frozen nsqd must be gone from every
// lookupd: the read timeout, counted from the nsqd's last command, which
// came before the fault, plus 2 s for the checker's sampling and the
// daemons' scheduling on a loaded 2-core machine.
func (tm chaosTimings) disappearBound() time.Duration { return tm.readTimeout + 2*time.Second }

// chaosCluster is the running cluster.
type chaosCluster struct {
	t        *testing.T
	tm       chaosTimings
	bridge   string
	bridgeIP string
	hosts    [chaosNSQDs]*chaosHost
	lookupds [chaosLookupds]*chaosLookupd

	msgs     messageLog
	consumer *nsq.Consumer
	conLogs  tailBuffer
	stops    []func() // publisher and chatter, stopped in reverse order
}

// chaosHost is one nsqd and its namespace.
type chaosHost struct {
	idx     int
	ns      *netns
	dataDir string
	args    []string
	client  *http.Client
	logs    tailBuffer

	mu     sync.Mutex // guards proc and exited
	proc   *os.Process
	exited chan struct{}
}

// chaosLookupd is one of our lookupds, with its PID for /proc.
type chaosLookupd struct {
	idx int
	d   *lookupd // started, killed and restarted by the nemesis only
	mu  sync.Mutex
	pid int
}

func (l *chaosLookupd) getPID() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pid
}

func (l *chaosLookupd) setPID() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pid = l.d.proc.Pid
}

func (h *chaosHost) name() string { return fmt.Sprintf("nsqd%d", h.idx+1) }
func (h *chaosHost) httpURL(pathAndQuery string) string {
	return "http://" + net.JoinHostPort(h.ns.nsIP, "4151") + pathAndQuery
}

// startChaosCluster starts everything and waits until every lookupd lists
// every nsqd. Everything is stopped, and the network removed, when the
// test ends, failed or not.
func startChaosCluster(t *testing.T, tm chaosTimings, lookupdArgs []string) *chaosCluster {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatal("iptables is missing, and the lossy-link fault needs it: run scripts/install-test-deps.sh (at the repository root) first")
	}
	c := &chaosCluster{t: t, tm: tm}
	bin := nsqdBinary(t)
	c.makeNetwork()
	for j := range c.lookupds {
		d := startLookupdOn(t, c.bridgeIP, append([]string{
			"--producer-read-timeout=" + tm.readTimeout.String(),
			"--tombstone-lifetime=" + tm.tombstone.String(),
		}, lookupdArgs...)...)
		c.lookupds[j] = &chaosLookupd{idx: j, d: d}
		c.lookupds[j].setPID()
	}
	t.Cleanup(func() {
		for _, l := range c.lookupds {
			if l != nil && t.Failed() {
				t.Logf("lookupd%d is %s", l.idx+1, l.d.HTTPAddr)
			}
		}
	})
	for i, h := range c.hosts {
		h.dataDir = t.TempDir()
		h.client = &http.Client{Timeout: 2 * time.Second}
		h.args = []string{"netns", "exec", h.ns.name, bin,
			"--tcp-address=" + net.JoinHostPort(h.ns.nsIP, "4150"),
			"--http-address=" + net.JoinHostPort(h.ns.nsIP, "4151"),
			"--broadcast-address=" + h.ns.nsIP,
			"--data-path=" + h.dataDir,
			"--mem-queue-size=0", // every message on disk: a graceful restart keeps it
		}
		for _, l := range c.lookupds {
			h.args = append(h.args, "--lookupd-tcp-address="+l.d.TCPAddr)
		}
		t.Cleanup(func() { c.stopHost(h) })
		if err := h.start(); err != nil {
			t.Fatalf("nsqd%d: %v", i+1, err)
		}
		for _, p := range []string{
			"/topic/create?topic=" + chaosTopic,
			"/channel/create?topic=" + chaosTopic + "&channel=" + chaosChannel,
			"/topic/create?topic=" + keepaliveTopic,
		} {
			if err := h.post(p); err != nil {
				t.Fatalf("nsqd%d: %v", i+1, err)
			}
		}
	}
	t.Cleanup(func() {
		for k := len(c.stops) - 1; k >= 0; k-- {
			c.stops[k]()
		}
	})
	for _, h := range c.hosts {
		c.stops = append(c.stops, chatter(h.httpURL(""), keepaliveTopic, keepaliveChannel, tm.chatter))
	}
	c.startConsumer()
	for _, h := range c.hosts {
		c.stops = append(c.stops, c.publish(h))
	}
	return c
}

// makeNetwork makes the bridge and the four namespaces, each joined to it
// by a veth pair.
func (c *chaosCluster) makeNetwork() {
	t := c.t
	id := fmt.Sprintf("%d%d", os.Getpid(), netnsSeq.Add(1))
	c.bridge = "lkb" + id
	ips := pickSubnet28(t)
	c.bridgeIP = ips[0]
	t.Cleanup(func() { ipCmd("link", "del", c.bridge) })
	for _, args := range [][]string{
		{"link", "add", "name", c.bridge, "type", "bridge"},
		{"addr", "add", c.bridgeIP + "/28", "dev", c.bridge},
		{"link", "set", c.bridge, "up"},
	} {
		if _, err := ipCmd(args...); err != nil {
			t.Fatalf("making the chaos network (root and iproute2 from scripts/install-test-deps.sh): %v", err)
		}
	}
	for i := range c.hosts {
		sub := fmt.Sprintf("%s%d", id, i)
		n := &netns{
			name:   "nsqlookupd-chaos-" + sub,
			hostIf: "lch" + sub,
			nsIf:   "lcn" + sub,
			hostIP: c.bridgeIP,
			nsIP:   ips[1+i],
		}
		t.Cleanup(func() { n.remove(t) })
		for _, args := range [][]string{
			{"netns", "add", n.name},
			{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.name},
			{"link", "set", n.hostIf, "master", c.bridge},
			{"link", "set", n.hostIf, "up"},
			{"-n", n.name, "addr", "add", n.nsIP + "/28", "dev", n.nsIf},
			{"-n", n.name, "link", "set", n.nsIf, "up"},
			{"-n", n.name, "link", "set", "lo", "up"},
		} {
			if _, err := ipCmd(args...); err != nil {
				t.Fatalf("making the chaos network: %v", err)
			}
		}
		c.hosts[i] = &chaosHost{idx: i, ns: n}
	}
	t.Logf("chaos network: bridge %s %s/28, nsqd at %s", c.bridge, c.bridgeIP, strings.Join(ips[1:1+chaosNSQDs], " "))
}

// pickSubnet28 returns the first five addresses of a /28 in 198.18.0.0/15
// that no interface of the host uses.
func pickSubnet28(t *testing.T) []string {
	t.Helper()
	addrs, err := ipCmd("-4", "-o", "addr")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		b := rand.N(1 << 13) // which /28 of the /15
		var ips []string
		free := true
		for k := 1; k <= 1+chaosNSQDs; k++ {
			ip := fmt.Sprintf("198.%d.%d.%d", 18+b>>12, b>>4&0xff, (b&0xf)*16+k)
			free = free && !strings.Contains(addrs, " "+ip+"/")
			ips = append(ips, ip)
		}
		if free {
			return ips
		}
	}
	t.Fatal("no free /28 in 198.18.0.0/15")
	return nil
}

// start runs nsqd in its namespace and waits until it answers /ping.
func (h *chaosHost) start() error {
	cmd := exec.Command("ip", h.args...) // ip netns exec execs nsqd: same PID
	cmd.Stdout, cmd.Stderr = &h.logs, &h.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	h.mu.Lock()
	h.proc, h.exited = cmd.Process, exited
	h.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("nsqd exited during start-up: %s", cmd.ProcessState)
		default:
		}
		resp, err := h.client.Get(h.httpURL("/ping"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nsqd not answering /ping within 15 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends sig to the running nsqd.
func (h *chaosHost) signal(sig syscall.Signal) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc.Signal(sig)
}

// terminate sends SIGTERM and waits up to timeout for nsqd to exit.
func (h *chaosHost) terminate(timeout time.Duration) error {
	h.mu.Lock()
	proc, exited := h.proc, h.exited
	h.mu.Unlock()
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("nsqd (pid %d) still running %v after SIGTERM", proc.Pid, timeout)
	}
}

// stopHost ends nsqd when the test ends: SIGCONT (it may be stopped),
// SIGTERM, and SIGKILL only if it has not exited 10 s later.
func (c *chaosCluster) stopHost(h *chaosHost) {
	h.mu.Lock()
	proc, exited := h.proc, h.exited
	h.mu.Unlock()
	if proc == nil {
		return
	}
	select {
	case <-exited:
	default:
		_ = proc.Signal(syscall.SIGCONT)
		_ = proc.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			c.t.Errorf("%s (pid %d) still running 10 s after SIGTERM at the end of the test: killed", h.name(), proc.Pid)
			_ = proc.Kill()
			<-exited
		}
	}
	if c.t.Failed() {
		c.t.Logf("%s (%s) output, the end:\n%s", h.name(), h.ns.nsIP, h.logs.String())
	}
}

// post sends a POST to nsqd's HTTP API and wants 200.
func (h *chaosHost) post(pathAndQuery string) error {
	resp, err := h.client.Post(h.httpURL(pathAndQuery), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s %s", pathAndQuery, resp.Status, body)
	}
	return nil
}

// messageLog is what was published (acknowledged by nsqd) and consumed.
type messageLog struct {
	mu       sync.Mutex
	acked    map[string]bool
	consumed map[string]int
	attempts int
}

// publish starts publishing numbered messages ("nsqdN-seq") to
// chaosTopic on h, one every 50 ms, each through nsqd's HTTP /pub; a
// message nsqd answered 200 is acknowledged. It returns the stop.
func (c *chaosCluster) publish(h *chaosHost) (stop func()) {
	client := &http.Client{Timeout: 2 * time.Second}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 0; ; seq++ {
			body := fmt.Sprintf("%s-%d", h.name(), seq)
			pause := 50 * time.Millisecond
			resp, err := client.Post(h.httpURL("/pub?topic="+chaosTopic), "application/octet-stream", strings.NewReader(body))
			ok := false
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
			}
			c.msgs.mu.Lock()
			if c.msgs.acked == nil {
				c.msgs.acked = make(map[string]bool)
			}
			c.msgs.attempts++
			if ok {
				c.msgs.acked[body] = true
			} else {
				pause = 200 * time.Millisecond
			}
			c.msgs.mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(pause):
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// startConsumer starts the go-nsq consumer of chaosTopic/chaosChannel on
// both lookupds.
func (c *chaosCluster) startConsumer() {
	t := c.t
	cfg := nsq.NewConfig()
	cfg.LookupdPollInterval = 200 * time.Millisecond
	cfg.LookupdPollTimeout = time.Second // a frozen lookupd holds a poll no longer
	cfg.MaxInFlight = 64
	cfg.MaxAttempts = 0 // never give a message up
	cfg.HeartbeatInterval = 2 * time.Second
	cfg.ReadTimeout = 6 * time.Second // a cut or frozen nsqd's connection ends after that
	cfg.MsgTimeout = 10 * time.Second // an in-flight message on a dead connection comes back after that
	cfg.DefaultRequeueDelay = 0
	con, err := nsq.NewConsumer(chaosTopic, chaosChannel, cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	con.SetLogger(logWriter{&c.conLogs}, nsq.LogLevelInfo)
	con.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		c.msgs.mu.Lock()
		defer c.msgs.mu.Unlock()
		if c.msgs.consumed == nil {
			c.msgs.consumed = make(map[string]int)
		}
		c.msgs.consumed[string(m.Body)]++
		return nil
	}))
	var addrs []string
	for _, l := range c.lookupds {
		addrs = append(addrs, l.d.HTTPAddr)
	}
	if err := con.ConnectToNSQLookupds(addrs); err != nil {
		t.Fatalf("consumer: %v", err)
	}
	c.consumer = con
	t.Cleanup(func() {
		c.stopConsumer()
		if t.Failed() {
			t.Logf("consumer's log, the end:\n%s", c.conLogs.String())
		}
	})
}

// stopConsumer stops the consumer (once) and waits until it has.
func (c *chaosCluster) stopConsumer() {
	if c.consumer == nil {
		return
	}
	c.consumer.Stop()
	select {
	case <-c.consumer.StopChan:
	case <-time.After(10 * time.Second):
		c.t.Errorf("consumer did not stop within 10 s")
	}
	c.consumer = nil
}

// logWriter is a go-nsq logger writing to a tailBuffer.
type logWriter struct{ b *tailBuffer }

func (w logWriter) Output(_ int, s string) error {
	_, err := w.b.Write([]byte(s + "\n"))
	return err
}

// tailBuffer keeps the last tailBufferSize bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	cut bool
}

const tailBufferSize = 32 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*tailBufferSize {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-tailBufferSize:]...)
		b.cut = true
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.buf
	cut := b.cut
	if len(out) > tailBufferSize {
		out, cut = out[len(out)-tailBufferSize:], true
	}
	if cut {
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			out = out[i+1:]
		}
		return "...\n" + string(out)
	}
	return string(out)
}

// nodeAddr is how /topic/tombstone names nsqd i.
func (c *chaosCluster) nodeAddr(i int) string {
	return net.JoinHostPort(c.hosts[i].ns.nsIP, strconv.Itoa(4151))
}
