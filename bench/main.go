// Command bench is a load harness for nsqlookupd-compatible daemons.
//
// It simulates a fleet of nsqd producers over the real TCP registration
// protocol, then measures the daemon's HTTP API while those producers stay
// connected. Every answer is verified: a wrong answer fails the run (exit
// status 1) instead of producing a number.
//
// Usage:
//
//	go run ./bench -binary /tmp/ref/nsqlookupd                      # small preset
//	go run ./bench -preset medium -binary /tmp/ref/nsqlookupd -binary /tmp/ours/nsqlookupd
//	go run ./bench -addr-tcp 127.0.0.1:4160 -addr-http 127.0.0.1:4161 -pid 1234
//	go run ./bench -h                                               # every flag
//
// With -binary (repeatable, or comma separated) the harness starts each
// binary in turn with --tcp-address/--http-address on free loopback ports and
// --broadcast-address=127.0.0.1, waits for /ping, runs the workload, and
// kills it; the table then has one column per binary. With -addr-tcp and
// -addr-http it uses a running daemon; -pid enables its RSS and CPU figures.
//
// Workload: P producers, T topics, S producers per topic, C channels per
// topic (-preset small = 10,100,3,2; medium = 100,2000,10,4;
// large = 500,10000,20,5; -producers/-topics/-per-topic/-channels override).
// Topic i is registered by producers (i*S+k) % P, k in [0,S). Each producer
// opens its own connection, sends "  V1" and IDENTIFY (unique fake tcp_port
// and http_port), then REGISTER T and REGISTER T C for each of its topics and
// channels: T*S*(1+C) REGISTER commands in all. Commands are pipelined by a
// writer goroutine while a reader checks every framed answer is OK. At most
// -concurrency producers register at the same time (default 64, which keeps
// the harness's own footprint bounded while still loading the daemon from
// many connections; 0 = all at once). REGISTER/s counts from the first
// REGISTER written to the last OK read. The connections stay open, sending
// PING every -ping-interval, until the target is done.
//
// Phases per target, in order: RSS idle; connect+IDENTIFY; registration
// (REGISTER/s, daemon CPU); RSS after registration; verification of /lookup
// and /channels for a sample of topics, /nodes and /topics; then /lookup,
// /channels and /ping for -duration each (or -requests each) from -clients
// keep-alive clients over random topics (req/s, p50, p99, daemon CPU seconds
// per 1000 requests); /nodes and /topics latency from -samples sequential
// requests; a re-check of up to 20 topics' /lookup and /channels (the
// producers must still be registered and active after the load); RSS at the
// end; a final PING on every producer connection. Daemons started by the
// harness must hold exactly this run's topics and producers; against -addr,
// names carry a random run id and other entries are ignored.
//
// The harness shares the machine with the daemon: the table's "harness CPU"
// row shows what the load generation itself cost. Run several times and
// prefer longer -duration on small machines; the small preset's numbers are
// noisy.
//
// Daemon CPU comes from /proc/PID/stat (utime+stime, 100 ticks/s) and RSS
// from /proc/PID/status (VmRSS, VmHWM), so those figures need Linux and a
// known pid.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// workload is the shape of the simulated cluster.
type workload struct {
	Preset    string `json:"preset,omitempty"`
	Producers int    `json:"producers"`
	Topics    int    `json:"topics"`
	PerTopic  int    `json:"per_topic"`
	Channels  int    `json:"channels"`
}

// registers is the number of REGISTER commands the workload sends.
func (w workload) registers() int { return w.Topics * w.PerTopic * (1 + w.Channels) }

var presets = map[string]workload{
	"small":  {Preset: "small", Producers: 10, Topics: 100, PerTopic: 3, Channels: 2},
	"medium": {Preset: "medium", Producers: 100, Topics: 2000, PerTopic: 10, Channels: 4},
	"large":  {Preset: "large", Producers: 500, Topics: 10000, PerTopic: 20, Channels: 5},
}

// options are the parsed command-line flags.
type options struct {
	workload
	binaries    []string
	addrTCP     string
	addrHTTP    string
	pid         int
	daemonFlags []string

	clients        int
	duration       time.Duration
	requests       int
	samples        int
	verify         int
	concurrency    int
	pingInterval   time.Duration
	startupTimeout time.Duration
	ioTimeout      time.Duration
	httpTimeout    time.Duration
	seed           uint64
	logDir         string
	jsonPath       string
}

// listFlag is a repeatable flag whose values may also be comma separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// repeatFlag is a repeatable flag taken verbatim (no comma splitting).
type repeatFlag []string

func (r *repeatFlag) String() string     { return strings.Join(*r, " ") }
func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	preset := fs.String("preset", "small", "workload preset: small (10,100,3,2), medium (100,2000,10,4) or large (500,10000,20,5) = (producers, topics, per-topic, channels)")
	fs.IntVar(&o.Producers, "producers", 0, "number of simulated nsqd producers P (0 = from -preset)")
	fs.IntVar(&o.Topics, "topics", 0, "number of topics T (0 = from -preset)")
	fs.IntVar(&o.PerTopic, "per-topic", 0, "producers registering each topic S, at most P (0 = from -preset)")
	fs.IntVar(&o.Channels, "channels", -1, "channels per topic C (-1 = from -preset)")
	fs.Var((*listFlag)(&o.binaries), "binary", "nsqlookupd-compatible `binary` to start and measure; repeat or comma-separate to compare several side by side")
	fs.StringVar(&o.addrTCP, "addr-tcp", "", "TCP `host:port` of a running daemon (with -addr-http, instead of -binary)")
	fs.StringVar(&o.addrHTTP, "addr-http", "", "HTTP `host:port` of a running daemon (with -addr-tcp)")
	fs.IntVar(&o.pid, "pid", 0, "pid of the running daemon given by -addr-*, for RSS and CPU figures (0 = unknown)")
	fs.Var((*repeatFlag)(&o.daemonFlags), "daemon-flag", "extra command-line `argument` for started binaries, e.g. -daemon-flag=--log-level=warn (repeatable)")
	fs.IntVar(&o.clients, "clients", 8, "concurrent keep-alive HTTP clients in the timed phases")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each timed HTTP phase (/lookup, /channels, /ping)")
	fs.IntVar(&o.requests, "requests", 0, "if > 0, run each timed HTTP phase for this many requests instead of -duration")
	fs.IntVar(&o.samples, "samples", 5, "sequential requests timed for /nodes and for /topics")
	fs.IntVar(&o.verify, "verify", 0, "topics whose /lookup and /channels are verified before the timed phases (0 = all if T <= 1000, else 200; -1 = all)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "producers connecting and registering at the same time (0 = all at once)")
	fs.DurationVar(&o.pingInterval, "ping-interval", 30*time.Second, "interval of the PING each producer sends to stay active")
	fs.DurationVar(&o.startupTimeout, "startup-timeout", 10*time.Second, "how long a started binary may take to answer /ping")
	fs.DurationVar(&o.ioTimeout, "io-timeout", time.Minute, "deadline for a producer's connect+IDENTIFY, its whole registration, and each PING")
	fs.DurationVar(&o.httpTimeout, "http-timeout", time.Minute, "timeout of a single HTTP request")
	fs.Uint64Var(&o.seed, "seed", 1, "seed for the random topic choices (same seed = same request sequence)")
	fs.StringVar(&o.logDir, "log-dir", "", "keep each started daemon's output in this `directory` (default: temporary file, kept only on failure)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this `file`")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: go run ./bench [flags]\n\n"+
			"Simulates P nsqd producers over the nsqlookupd TCP protocol against one or more\n"+
			"daemons, verifies their answers, and measures registration rate, memory, and HTTP\n"+
			"throughput/latency. Target: -binary PATH (repeatable) or -addr-tcp/-addr-http.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	p, ok := presets[*preset]
	if !ok {
		return nil, fmt.Errorf("-preset %q: want small, medium or large", *preset)
	}
	o.Preset = p.Preset
	custom := false
	override := func(v *int, def int, unset int) {
		if *v == unset {
			*v = def
		} else if *v != def {
			custom = true
		}
	}
	override(&o.Producers, p.Producers, 0)
	override(&o.Topics, p.Topics, 0)
	override(&o.PerTopic, p.PerTopic, 0)
	override(&o.Channels, p.Channels, -1)
	if custom {
		o.Preset += "+custom"
	}
	return o, o.validate()
}

func (o *options) validate() error {
	switch {
	case o.Producers < 1 || o.Producers > maxProducers:
		return fmt.Errorf("-producers %d: want 1..%d", o.Producers, maxProducers)
	case o.Topics < 1:
		return fmt.Errorf("-topics %d: want >= 1", o.Topics)
	case o.PerTopic < 1 || o.PerTopic > o.Producers:
		return fmt.Errorf("-per-topic %d: want 1..producers (%d)", o.PerTopic, o.Producers)
	case o.Channels < 0:
		return fmt.Errorf("-channels %d: want >= 0", o.Channels)
	case o.clients < 1:
		return errors.New("-clients: want >= 1")
	case o.requests <= 0 && o.duration <= 0:
		return errors.New("-duration must be > 0 (or -requests > 0)")
	case o.samples < 1:
		return errors.New("-samples: want >= 1")
	case o.pingInterval <= 0:
		return errors.New("-ping-interval must be > 0")
	}
	external := o.addrTCP != "" || o.addrHTTP != ""
	switch {
	case external && len(o.binaries) > 0:
		return errors.New("give either -binary or -addr-tcp/-addr-http, not both")
	case external && (o.addrTCP == "" || o.addrHTTP == ""):
		return errors.New("-addr-tcp and -addr-http go together")
	case !external && len(o.binaries) == 0:
		return errors.New("no target: give -binary PATH or -addr-tcp HOST:PORT -addr-http HOST:PORT")
	case !external && o.pid != 0:
		return errors.New("-pid only applies to -addr-tcp/-addr-http (started binaries are measured by their own pid)")
	}
	if o.verify == 0 {
		o.verify = 200
		if o.Topics <= 1000 {
			o.verify = -1
		}
	}
	if o.verify < 0 || o.verify > o.Topics {
		o.verify = o.Topics
	}
	return nil
}

var logger = log.New(os.Stderr, "bench: ", log.Ltime|log.Lmicroseconds)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	o, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep := &report{
		Machine: machineInfo{
			OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			CPUModel: cpuModel(), GoVersion: runtime.Version(),
		},
		Workload: o.workload,
		Settings: settings{
			Clients: o.clients, Requests: o.requests, Samples: o.samples,
			Concurrency: o.concurrency, VerifySample: o.verify, DaemonFlags: o.daemonFlags,
		},
	}
	if o.requests <= 0 {
		rep.Settings.DurationSeconds = o.duration.Seconds()
	}

	targets := o.binaries
	if len(targets) == 0 {
		targets = []string{""} // the external daemon
	}
	failed := false
	for i, bin := range targets {
		res := runTarget(ctx, o, i, bin)
		rep.Results = append(rep.Results, res)
		if res.Error != "" {
			failed = true
			logger.Printf("%s: FAILED: %s", res.Target, res.Error)
		}
		if ctx.Err() != nil {
			break
		}
	}
	printTable(os.Stdout, rep)
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rep); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

// runTarget measures one daemon: binary to start, or "" for -addr-*.
func runTarget(ctx context.Context, o *options, index int, binary string) *result {
	res := &result{Target: binary, Binary: binary}
	if binary == "" {
		res.Target = o.addrHTTP
	}
	if err := measure(ctx, o, index, binary, res); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w)", err)
		}
		res.Error = err.Error()
	}
	return res
}

// measure runs every phase against one target, filling res as it goes.
func measure(ctx context.Context, o *options, index int, binary string, res *result) (err error) {
	var t *target
	if binary != "" {
		logger.Printf("%s: starting", binary)
		if t, err = startDaemon(ctx, binary, index, o.daemonFlags, o.logDir, o.startupTimeout); err != nil {
			return err
		}
	} else {
		t = &target{tcpAddr: o.addrTCP, httpAddr: o.addrHTTP, pid: o.pid}
	}
	res.TCPAddr, res.HTTPAddr, res.PID = t.tcpAddr, t.httpAddr, t.pid
	name := res.Target

	var f *fleet
	defer func() {
		if err != nil {
			if aerr := t.alive(); aerr != nil {
				err = fmt.Errorf("%w; %v", err, aerr)
			}
			t.keepLog = ctx.Err() == nil // an interrupted run's log is not interesting
		}
		// Kill a started daemon before closing the producer connections,
		// so it does not spend time unregistering them.
		if f != nil && f.stopPing != nil {
			f.stopPing()
		}
		t.stop()
		if f != nil {
			f.close()
		}
		if t.keepLog && t.logPath != "" {
			logger.Printf("%s: daemon log kept in %s", name, t.logPath)
		}
	}()

	h := newHTTPClient(t.httpAddr, o.clients, o.httpTimeout)
	defer h.close()
	var info struct {
		Version string `json:"version"`
	}
	if err := h.getJSON(ctx, "/info", &info); err != nil {
		return err
	}
	res.Version = info.Version

	rss := func() *uint64 {
		if t.pid <= 0 {
			return nil
		}
		m, err := readMem(t.pid)
		if err != nil {
			logger.Printf("%s: reading memory: %v", name, err)
			return nil
		}
		return &m.RSSKiB
	}
	res.Memory.IdleKiB = rss()

	// Registration.
	runID := fmt.Sprintf("%04x", rand.Uint32()&0xffff)
	nm := newNaming(runID, o.workload)
	check := func(a identifyAnswer) error {
		if binary == "" {
			return nil // a daemon we did not start may announce anything
		}
		_, tcpPort, _ := net.SplitHostPort(t.tcpAddr)
		_, httpPort, _ := net.SplitHostPort(t.httpAddr)
		if a.BroadcastAddress != "127.0.0.1" || strconv.Itoa(a.TCPPort) != tcpPort || strconv.Itoa(a.HTTPPort) != httpPort {
			return fmt.Errorf("%+v, want broadcast_address 127.0.0.1, tcp_port %s, http_port %s", a, tcpPort, httpPort)
		}
		return nil
	}
	noise, began := startNoise(t.pid), time.Now()
	defer func() {
		res.OtherCPU, res.Seconds = noise.stop(), time.Since(began).Seconds()
	}()
	logger.Printf("%s: connecting %d producers (run id %s)", name, o.Producers, runID)
	f, ist, err := connectFleet(ctx, t.tcpAddr, o.workload, nm, o.concurrency, o.ioTimeout, check)
	if err != nil {
		return err
	}
	res.Identify = &ist

	logger.Printf("%s: registering (%d REGISTER commands)", name, o.registers())
	cpuD, cpuH := startCPU(t.pid), startCPU(os.Getpid())
	rst, err := f.registerAll(ctx, nm, o.concurrency)
	if err != nil {
		return err
	}
	if rst.Commands != o.registers() {
		return fmt.Errorf("sent %d REGISTER commands, want %d", rst.Commands, o.registers())
	}
	res.Register = &registerPhase{registerStats: rst, Producers: o.Producers, DaemonCPU: cpuD.stop(), HarnessCPU: cpuH.stop()}
	res.Register.CPUPer1k = per1k(res.Register.DaemonCPU, rst.Commands)
	f.startKeepalive(o.pingInterval)
	res.Memory.RegisteredKiB = rss()

	// Verification.
	logger.Printf("%s: verifying answers", name)
	exp := expectation{w: o.workload, nm: nm, strict: binary != ""}
	vst, err := verify(ctx, h, exp, o.verify, o.clients, o.seed)
	if err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	res.Verify = &vst

	// Timed HTTP phases.
	if err := timedPhases(ctx, o, t, h, nm, res); err != nil {
		return err
	}

	// Heavy listings, sequentially.
	logger.Printf("%s: timing /nodes and /topics", name)
	nodes, err := sequential(ctx, h, "/nodes", o.samples)
	if err != nil {
		return err
	}
	res.Nodes = &nodes
	topics, err := sequential(ctx, h, "/topics", o.samples)
	if err != nil {
		return err
	}
	res.Topics = &topics

	// Re-verify a few topics: the producers must still be registered and
	// active (keepalive PINGs) after the load.
	n, err := exp.checkTopics(ctx, h, min(20, o.verify), o.clients, o.seed+100)
	if err != nil {
		return fmt.Errorf("verification after load: %w", err)
	}
	res.Verify.RecheckTopics = n

	res.Memory.EndKiB = rss()
	if t.pid > 0 {
		if m, err := readMem(t.pid); err == nil {
			res.Memory.PeakKiB = &m.PeakKiB
		}
	}
	if err := f.checkAlive(ctx, o.concurrency); err != nil {
		return err
	}
	return t.alive()
}

// timedPhases loads /lookup, /channels and /ping in turn from o.clients
// clients, recording throughput, latency and CPU in res.
func timedPhases(ctx context.Context, o *options, t *target, h *httpClient, nm *naming, res *result) error {
	lookupURLs := make([]string, len(nm.topics))
	channelsURLs := make([]string, len(nm.topics))
	for i, topic := range nm.topics {
		lookupURLs[i] = h.base + "/lookup?topic=" + topic // names need no escaping
		channelsURLs[i] = h.base + "/channels?topic=" + topic
	}
	pingURL := h.base + "/ping"
	phases := []struct {
		path string
		dst  **phaseStats
		url  func(r *rand.Rand) string
	}{
		{"/lookup", &res.Lookup, func(r *rand.Rand) string { return lookupURLs[r.IntN(len(lookupURLs))] }},
		{"/channels", &res.Channels, func(r *rand.Rand) string { return channelsURLs[r.IntN(len(channelsURLs))] }},
		{"/ping", &res.Ping, func(*rand.Rand) string { return pingURL }},
	}
	for i, ph := range phases {
		logger.Printf("%s: load on %s", res.Target, ph.path)
		spec := loadSpec{clients: o.clients, duration: o.duration, requests: o.requests, seed: o.seed + uint64(i) + 1, url: ph.url}
		cpuD, cpuH := startCPU(t.pid), startCPU(os.Getpid())
		st, err := runLoad(ctx, h, spec)
		if err != nil {
			return fmt.Errorf("%s load: %w", ph.path, err)
		}
		st.Path = ph.path
		st.DaemonCPU, st.HarnessCPU = cpuD.stop(), cpuH.stop()
		st.CPUPer1k = per1k(st.DaemonCPU, st.Requests)
		*ph.dst = &st
		if err := t.alive(); err != nil {
			return err
		}
	}
	if res.Ping.PerSecond > 0 {
		ratio := res.Lookup.PerSecond / res.Ping.PerSecond
		res.LookupPingRatio = &ratio
	}
	return nil
}
