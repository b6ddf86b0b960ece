package interop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/nsqio/nsq/nsqadmin"
	"github.com/nsqio/nsq/nsqd"
)

// lookupdBin is the nsqlookupd binary under test and refBin nsqlookupd
// v1.3.0, built from github.com/nsqio/nsq (the go.mod tool directive pins
// it); both set by TestMain.
var lookupdBin, refBin string

// buildDir holds the binaries built for the tests; TestMain removes it.
var buildDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "interop-build-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	buildDir = dir
	if refBin, err = buildReference(dir); err != nil {
		fmt.Fprintln(os.Stderr, "interop: cannot build nsqlookupd v1.3.0:", err)
		return 1
	}
	bin := os.Getenv("NSQLOOKUPD_BIN")
	if bin == "" {
		bin, err = buildLookupd(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "interop: cannot build nsqlookupd (set NSQLOOKUPD_BIN to test another binary):", err)
			return 1
		}
	} else if _, err := os.Stat(bin); err != nil {
		fmt.Fprintln(os.Stderr, "interop: NSQLOOKUPD_BIN:", err)
		return 1
	}
	lookupdBin = bin
	return m.Run()
}

// buildLookupd builds ./apps/nsqlookupd of the repository root (two levels
// up from this package) into dir and returns the binary's path.
func buildLookupd(dir string) (string, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nsqlookupd")
	cmd := exec.Command("go", "build", "-C", root, "-o", bin, "./apps/nsqlookupd")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v in %s: %v\n%s", cmd.Args, root, err, out)
	}
	return bin, nil
}

// buildReference builds nsqlookupd v1.3.0 from the github.com/nsqio/nsq
// module this module requires into dir and returns the binary's path.
func buildReference(dir string) (string, error) {
	bin := filepath.Join(dir, "nsqlookupd-v1.3.0")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nsqio/nsq/apps/nsqlookupd")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
	}
	return bin, nil
}

// eventually calls cond until it reports true, and fails the test with the
// last reason cond gave if that does not happen within timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, reason := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: %s", timeout, reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	return freeAddrOn(t, "127.0.0.1")
}

// freeAddrOn returns an address of host with a port that was free a moment ago.
func freeAddrOn(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// getJSON GETs url and, when the answer is 200, decodes its JSON body into v.
// It returns the status code; err is set for transport and decoding errors.
func getJSON(url string, v any) (int, error) {
	return getJSONWith(httpClient, url, v)
}

// getJSONWith is getJSON with client.
func getJSONWith(client *http.Client, url string, v any) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: decoding %q: %v", url, body, err)
	}
	return resp.StatusCode, nil
}

// doRequest sends a request with an optional JSON body, fails the test unless
// it is answered 200 and returns the answer's body.
func doRequest(t *testing.T, method, url string, body any) []byte {
	t.Helper()
	return doRequestWith(t, httpClient, method, url, body)
}

// doRequestWith is doRequest with client.
func doRequestWith(t *testing.T, client *http.Client, method, url string, body any) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading answer: %v", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, out)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger sends the log lines of in-process NSQ components to t.Log until
// it is closed, after which it drops them (t.Log panics once a test is over).
// It satisfies the Logger interfaces of nsqd, nsqadmin and go-nsq.
type testLogger struct {
	t      *testing.T
	name   string
	mu     sync.Mutex
	closed bool
}

func newTestLogger(t *testing.T, name string) *testLogger {
	return &testLogger{t: t, name: name}
}

func (l *testLogger) Output(_ int, s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Log(l.name + ": " + strings.TrimRight(s, "\n"))
	}
	return nil
}

func (l *testLogger) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

// lookupd is one nsqlookupd subprocess (and its restarts on the same ports).
type lookupd struct {
	TCPAddr  string
	HTTPAddr string
	bin      string   // the binary
	args     []string // flags after the addresses
	// HTTPSAddr is set when tls is: the daemon then serves HTTPS there.
	HTTPSAddr string
	tls       *lookupdTLS
	logs      syncBuffer // stdout and stderr of every run
	// output, when set, is the daemon's stdout and stderr instead of logs.
	output *os.File
	// json: the daemon writes JSON lines, as INTEROP_LOG_FORMAT asks
	// (unless ownFormat: the test chooses the format itself).
	json, ownFormat bool

	proc   *os.Process
	exited chan struct{} // closed when the current run has been waited for
	state  *os.ProcessState
}

// startLookupd starts the daemon under test on free ports and waits until it
// serves both. It is killed when the test ends; its output is logged if the
// test failed.
func startLookupd(t *testing.T) *lookupd {
	t.Helper()
	return startDaemon(t, lookupdBin, "--broadcast-address=127.0.0.1")
}

// startDaemon starts bin with args on free 127.0.0.1 ports, as
// startLookupd does. A failed test logs the last 16 KiB of its output.
func startDaemon(t *testing.T, bin string, args ...string) *lookupd {
	t.Helper()
	return startDaemonOn(t, "127.0.0.1", bin, args...)
}

// startDaemonOn is startDaemon on free ports of host.
func startDaemonOn(t *testing.T, host, bin string, args ...string) *lookupd {
	t.Helper()
	return startDaemonAt(t, host, host, bin, nil, args...)
}

// startLookupdOn is startLookupd with the TCP address on tcpHost (HTTP stays
// on 127.0.0.1) and more flags.
func startLookupdOn(t *testing.T, tcpHost string, args ...string) *lookupd {
	t.Helper()
	return startLookupdWith(t, tcpHost, nil, args...)
}

// startLookupdTLS is startLookupd, serving HTTPS as tls says
// (https_test.go).
func startLookupdTLS(t *testing.T, tls *lookupdTLS) *lookupd {
	t.Helper()
	return startLookupdWith(t, "127.0.0.1", tls)
}

// startLookupdWith is startLookupdOn, serving HTTPS as tls says when it is
// not nil.
func startLookupdWith(t *testing.T, tcpHost string, tls *lookupdTLS, args ...string) *lookupd {
	t.Helper()
	return startDaemonAt(t, tcpHost, "127.0.0.1", lookupdBin, tls, append([]string{"--broadcast-address=127.0.0.1"}, args...)...)
}

// startDaemonAt is startDaemon with its TCP address on tcpHost, its HTTP
// (and HTTPS, when tls is not nil) address on httpHost.
func startDaemonAt(t *testing.T, tcpHost, httpHost, bin string, tls *lookupdTLS, args ...string) *lookupd {
	t.Helper()
	return launch(t, &lookupd{bin: bin, args: args, tls: tls}, tcpHost, httpHost)
}

// startDaemonTo is startDaemon with the daemon's stdout and stderr going to
// output.
func startDaemonTo(t *testing.T, output *os.File, bin string, args ...string) *lookupd {
	t.Helper()
	return launch(t, &lookupd{bin: bin, args: args, output: output}, "127.0.0.1", "127.0.0.1")
}

// launch starts d on free ports of tcpHost and httpHost, as startDaemonAt
// does.
func launch(t *testing.T, d *lookupd, tcpHost, httpHost string) *lookupd {
	t.Helper()
	bin, tls := d.bin, d.tls
	d.json = jsonLogFormat && bin == lookupdBin && d.output == nil && !d.ownFormat
	t.Cleanup(func() {
		d.kill()
		if d.json {
			checkJSONLog(t, d.logs.String())
		}
		if t.Failed() {
			out := d.logs.String()
			if len(out) > 16<<10 {
				out = "..." + out[len(out)-16<<10:]
			}
			t.Logf("nsqlookupd %s output:\n%s", bin, out)
		}
	})
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		// Another test may take a port between freeAddr and the daemon's
		// listen: then the daemon exits, and we try other ports.
		d.TCPAddr, d.HTTPAddr = freeAddrOn(t, tcpHost), freeAddrOn(t, httpHost)
		if tls != nil {
			d.HTTPSAddr = freeAddrOn(t, httpHost)
		}
		if err = d.start(); err == nil {
			return d
		}
	}
	t.Fatalf("starting nsqlookupd: %v", err)
	return nil
}

// start runs the binary on d's ports and waits until /ping answers and the
// TCP port answers a PING.
func (d *lookupd) start() error {
	args := append([]string{
		"--tcp-address=" + d.TCPAddr,
		"--http-address=" + d.HTTPAddr,
	}, d.args...)
	if d.tls != nil {
		args = append(args, "--https-address="+d.HTTPSAddr, "--tls-cert="+d.tls.certFile, "--tls-key="+d.tls.keyFile)
		args = append(args, d.tls.args...)
	}
	if d.json {
		args = append(args, "--log-format=json")
	}
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout = &d.logs
	cmd.Stderr = &d.logs
	if d.output != nil {
		cmd.Stdout, cmd.Stderr = d.output, d.output
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	d.proc, d.exited = cmd.Process, exited
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		d.state = cmd.ProcessState
		close(exited)
	}()

	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("nsqlookupd exited during startup (%v); output:\n%s", d.state, d.logs.String())
		default:
		}
		if last = d.ready(); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.kill()
	return fmt.Errorf("nsqlookupd not ready within 15s: %v", last)
}

func (d *lookupd) ready() error {
	resp, err := httpClient.Get(d.url("/ping"))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tlsRequired := d.tls != nil && resp.StatusCode == http.StatusForbidden && strings.Contains(string(body), `"TLS_REQUIRED"`)
	if !tlsRequired && (resp.StatusCode != http.StatusOK || string(body) != "OK") {
		return fmt.Errorf("/ping: %s %q", resp.Status, body)
	}
	if d.tls != nil {
		if err := d.tls.ready(d.HTTPSAddr); err != nil {
			return err
		}
	}
	// A PING before IDENTIFY is answered OK (framed) and changes nothing.
	conn, err := net.DialTimeout("tcp", d.TCPAddr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "  V1PING\n"); err != nil {
		return err
	}
	answer := make([]byte, 6)
	if _, err := io.ReadFull(conn, answer); err != nil {
		return fmt.Errorf("TCP PING: %v", err)
	}
	if string(answer) != "\x00\x00\x00\x02OK" {
		return fmt.Errorf("TCP PING answered %q", answer)
	}
	return nil
}

// kill sends SIGKILL to the current run, if any, and waits for it to end.
func (d *lookupd) kill() {
	if d.proc == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.proc.Kill()
	<-d.exited
}

// restart starts the daemon again on the same ports.
func (d *lookupd) restart(t *testing.T) {
	t.Helper()
	if err := d.start(); err != nil {
		t.Fatalf("restarting nsqlookupd on %s and %s: %v", d.TCPAddr, d.HTTPAddr, err)
	}
}

// terminate sends SIGTERM and waits up to timeout for the process to exit.
func (d *lookupd) terminate(timeout time.Duration) (*os.ProcessState, error) {
	if err := d.proc.Signal(syscall.SIGTERM); err != nil {
		return nil, err
	}
	select {
	case <-d.exited:
		return d.state, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("still running %v after SIGTERM", timeout)
	}
}

// text returns the daemon's output, each JSON line (INTEROP_LOG_FORMAT)
// as "<LEVEL>: <msg>", the end of its text line: what tests look for.
func (d *lookupd) text() string {
	out := d.logs.String()
	if !d.json {
		return out
	}
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		var m struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &m) == nil && m.Level != "" {
			line = m.Level + ": " + m.Msg
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func (d *lookupd) url(pathAndQuery string) string {
	return "http://" + d.HTTPAddr + pathAndQuery
}

// api returns the URL of the daemon's API at pathAndQuery and the client
// for it: HTTPS when the daemon serves it, else HTTP.
func (d *lookupd) api(pathAndQuery string) (string, *http.Client) {
	if d.tls != nil {
		return "https://" + d.HTTPSAddr + pathAndQuery, d.tls.client
	}
	return d.url(pathAndQuery), httpClient
}

// get GETs pathAndQuery from the daemon's API as getJSON does.
func (d *lookupd) get(pathAndQuery string, v any) (int, error) {
	url, client := d.api(pathAndQuery)
	return getJSONWith(client, url, v)
}

// post sends a POST to the daemon's API and fails the test unless it is
// answered 200.
func (d *lookupd) post(t *testing.T, pathAndQuery string) {
	t.Helper()
	url, client := d.api(pathAndQuery)
	doRequestWith(t, client, http.MethodPost, url, nil)
}

// The shapes of the daemon's answers.
type (
	producerInfo struct {
		RemoteAddress    string `json:"remote_address"`
		Hostname         string `json:"hostname"`
		BroadcastAddress string `json:"broadcast_address"`
		TCPPort          int    `json:"tcp_port"`
		HTTPPort         int    `json:"http_port"`
		Version          string `json:"version"`
	}
	nodeInfo struct {
		producerInfo
		Tombstones []bool   `json:"tombstones"`
		Topics     []string `json:"topics"`
	}
	lookupAnswer struct {
		Channels  []string       `json:"channels"`
		Producers []producerInfo `json:"producers"`
	}
	nodesAnswer struct {
		Producers []nodeInfo `json:"producers"`
	}
	topicsAnswer struct {
		Topics []string `json:"topics"`
	}
	channelsAnswer struct {
		Channels []string `json:"channels"`
	}
)

func (d *lookupd) lookup(topic string) (lookupAnswer, int, error) {
	var a lookupAnswer
	code, err := d.get("/lookup?topic="+topic, &a)
	return a, code, err
}

func (d *lookupd) nodes() ([]nodeInfo, error) {
	var a nodesAnswer
	_, err := d.get("/nodes", &a)
	return a.Producers, err
}

func (d *lookupd) topics() ([]string, error) {
	var a topicsAnswer
	_, err := d.get("/topics", &a)
	return a.Topics, err
}

func (d *lookupd) channels(topic string) ([]string, error) {
	var a channelsAnswer
	_, err := d.get("/channels?topic="+topic, &a)
	return a.Channels, err
}

// nsqdNode is an in-process nsqd v1.3.0.
type nsqdNode struct {
	*nsqd.NSQD
	TCPAddr  string
	HTTPAddr string
	TCPPort  int
	HTTPPort int
}

var nsqdIDs atomic.Int64

// startNSQD starts an nsqd on free 127.0.0.1 ports that registers with the
// given nsqlookupd TCP addresses. It is stopped when the test ends.
func startNSQD(t *testing.T, lookupdTCPAddrs ...string) *nsqdNode {
	t.Helper()
	return startNSQDOn(t, "127.0.0.1", lookupdTCPAddrs...)
}

// startNSQDOn is startNSQD on free ports of host, which it also broadcasts.
func startNSQDOn(t *testing.T, host string, lookupdTCPAddrs ...string) *nsqdNode {
	t.Helper()
	id := nsqdIDs.Add(1) % 1024
	logger := newTestLogger(t, fmt.Sprintf("nsqd%d", id))
	opts := nsqd.NewOptions()
	opts.ID = id
	opts.Logger = logger
	opts.TCPAddress = net.JoinHostPort(host, "0")
	opts.HTTPAddress = net.JoinHostPort(host, "0")
	opts.HTTPSAddress = ""
	opts.BroadcastAddress = host
	opts.NSQLookupdTCPAddresses = lookupdTCPAddrs
	opts.DataPath = t.TempDir()
	n, err := nsqd.New(opts)
	if err != nil {
		t.Fatalf("nsqd.New: %v", err)
	}
	runUntilCleanup(t, fmt.Sprintf("nsqd%d", id), logger, n.Main, n.Exit)
	tcp := n.RealTCPAddr().(*net.TCPAddr)
	httpAddr := n.RealHTTPAddr().(*net.TCPAddr)
	return &nsqdNode{
		NSQD:     n,
		TCPAddr:  tcp.String(),
		HTTPAddr: httpAddr.String(),
		TCPPort:  tcp.Port,
		HTTPPort: httpAddr.Port,
	}
}

// publish publishes body to topic through the nsqd's HTTP API.
func (n *nsqdNode) publish(t *testing.T, topic, body string) {
	t.Helper()
	resp, err := httpClient.Post("http://"+n.HTTPAddr+"/pub?topic="+topic, "application/octet-stream", strings.NewReader(body))
	if err != nil {
		t.Fatalf("publish to %s on nsqd %s: %v", topic, n.HTTPAddr, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish to %s on nsqd %s: %s %s", topic, n.HTTPAddr, resp.Status, out)
	}
}

// nodeAddr is how nsqadmin and /topic/tombstone name the node.
func (n *nsqdNode) nodeAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.HTTPPort))
}

// checkProducer reports how p differs from what nsqd n announced.
func checkProducer(p producerInfo, n *nsqdNode) error {
	var errs []error
	if p.TCPPort != n.TCPPort || p.HTTPPort != n.HTTPPort {
		errs = append(errs, fmt.Errorf("ports %d/%d, want %d/%d", p.TCPPort, p.HTTPPort, n.TCPPort, n.HTTPPort))
	}
	if p.BroadcastAddress != "127.0.0.1" {
		errs = append(errs, fmt.Errorf("broadcast_address %q, want 127.0.0.1", p.BroadcastAddress))
	}
	if p.Version != "1.3.0" {
		errs = append(errs, fmt.Errorf("version %q, want 1.3.0", p.Version))
	}
	if host, _, err := net.SplitHostPort(p.RemoteAddress); err != nil || host != "127.0.0.1" {
		errs = append(errs, fmt.Errorf("remote_address %q, want 127.0.0.1:<port>", p.RemoteAddress))
	}
	if p.Hostname == "" {
		errs = append(errs, errors.New("empty hostname"))
	}
	return errors.Join(errs...)
}

// producersAre reports whether ps are exactly the nsqd nodes want (any order),
// each with the fields it announced.
func producersAre(ps []producerInfo, want ...*nsqdNode) (bool, string) {
	if len(ps) != len(want) {
		return false, fmt.Sprintf("%d producers %+v, want %d", len(ps), ps, len(want))
	}
	for _, n := range want {
		i := slices.IndexFunc(ps, func(p producerInfo) bool { return p.TCPPort == n.TCPPort })
		if i < 0 {
			return false, fmt.Sprintf("no producer with tcp_port %d in %+v", n.TCPPort, ps)
		}
		if err := checkProducer(ps[i], n); err != nil {
			return false, fmt.Sprintf("producer %+v: %v", ps[i], err)
		}
	}
	return true, ""
}

// sameSet reports whether got and want hold the same strings, ignoring order.
func sameSet(got, want []string) bool {
	return slices.Equal(sorted(got), sorted(want))
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// startConsumer starts a go-nsq consumer of topic/channel that passes every
// message to handle; connect points it at nsqlookupd or nsqd. It is stopped
// when the test ends.
func startConsumer(t *testing.T, topic, channel string, handle func(*nsq.Message), connect func(*nsq.Consumer) error) *nsq.Consumer {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.LookupdPollInterval = 200 * time.Millisecond
	cfg.MaxInFlight = 16
	return startConsumerWith(t, cfg, topic, channel, handle, connect)
}

// startConsumerWith is startConsumer with the consumer's configuration.
func startConsumerWith(t *testing.T, cfg *nsq.Config, topic, channel string, handle func(*nsq.Message), connect func(*nsq.Consumer) error) *nsq.Consumer {
	t.Helper()
	c, err := nsq.NewConsumer(topic, channel, cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	logger := newTestLogger(t, "consumer "+topic+"/"+channel)
	c.SetLogger(logger, nsq.LogLevelInfo)
	c.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		handle(m)
		return nil
	}))
	t.Cleanup(func() {
		defer logger.close()
		stopConsumer(t, c)
	})
	if err := connect(c); err != nil {
		t.Fatalf("connecting consumer %s/%s: %v", topic, channel, err)
	}
	return c
}

// stopConsumer stops c and waits until it has stopped.
func stopConsumer(t *testing.T, c *nsq.Consumer) {
	t.Helper()
	c.Stop()
	select {
	case <-c.StopChan:
	case <-time.After(10 * time.Second):
		t.Errorf("consumer did not stop within 10s")
	}
}

// startNSQAdmin starts an in-process nsqadmin reading lookupdHTTPAddr with
// its HTTP client's TLS options; it is stopped when the test ends. It
// returns nsqadmin's /api URL.
func startNSQAdmin(t *testing.T, lookupdHTTPAddr, rootCAFile, certFile, keyFile string) string {
	t.Helper()
	logger := newTestLogger(t, "nsqadmin")
	opts := nsqadmin.NewOptions()
	opts.Logger = logger
	opts.HTTPAddress = "127.0.0.1:0"
	opts.NSQLookupdHTTPAddresses = []string{lookupdHTTPAddr}
	opts.HTTPClientTLSRootCAFile = rootCAFile
	opts.HTTPClientTLSCert = certFile
	opts.HTTPClientTLSKey = keyFile
	admin, err := nsqadmin.New(opts)
	if err != nil {
		t.Fatalf("nsqadmin.New: %v", err)
	}
	runUntilCleanup(t, "nsqadmin", logger, admin.Main, admin.Exit)
	return "http://" + admin.RealHTTPAddr().String() + "/api"
}

// adminListsTopicsAB checks that nsqadmin's /api/topics (api is its /api
// URL) lists exactly topicA and topicB, with no message.
func adminListsTopicsAB(t *testing.T, api string) {
	t.Helper()
	var topics struct {
		Topics  []string `json:"topics"`
		Message string   `json:"message"`
	}
	if _, err := getJSON(api+"/topics", &topics); err != nil {
		t.Fatal(err)
	}
	if !sameSet(topics.Topics, []string{topicA, topicB}) || topics.Message != "" {
		t.Errorf("/api/topics: %+v, want %q and %q", topics, topicA, topicB)
	}
}

// adminTombstonesN2 tombstones c.n2 in topicB through nsqadmin's DELETE
// /api/nodes and waits until the daemon's /lookup of topicB lists c.n1 alone.
func adminTombstonesN2(t *testing.T, api string, c *cluster) {
	t.Helper()
	d := c.lookupd
	doRequest(t, http.MethodDelete, api+"/nodes/"+c.n2.nodeAddr(), map[string]string{"topic": topicB})
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := d.lookup(topicB)
		if err != nil {
			return false, err.Error()
		}
		return producersAre(a.Producers, c.n1)
	})
}

// runUntilCleanup runs an in-process NSQ component's main in a goroutine.
// When the test ends it calls exit, waits up to 10 s for main to return
// (reporting an error it returns), then closes the component's logger.
func runUntilCleanup(t *testing.T, name string, logger *testLogger, main func() error, exit func()) {
	mainErr := make(chan error, 1)
	go func() { mainErr <- main() }()
	t.Cleanup(func() {
		defer logger.close()
		exit()
		select {
		case err := <-mainErr:
			if err != nil {
				t.Errorf("%s Main: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s Main did not return after Exit", name)
		}
	})
}

// repeat calls f at once and then every interval until stop is called;
// stop returns once f has returned for the last time.
func repeat(every time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			f()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// chatter makes the nsqd whose HTTP API is at base create and delete
// channel of topic, in turn, every interval until stop is called, and nsqd
// sends its lookupds REGISTER and UNREGISTER each time. nsqd's own PING
// comes every 15 s: this traffic keeps a live nsqd inside a test's shorter
// producer read timeout.
func chatter(base, topic, channel string, every time.Duration) (stop func()) {
	client := &http.Client{Timeout: every}
	actions := []string{"create", "delete"}
	i := 0
	return repeat(every, func() {
		resp, err := client.Post(base+"/channel/"+actions[i%2]+"?topic="+topic+"&channel="+channel, "", nil)
		i++
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
