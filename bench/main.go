// Command bench is a load harness for nsqlookupd-compatible daemons.
//
// It simulates a fleet of nsqd producers over the real TCP registration
// protocol, then measures the daemon's HTTP API while those producers stay
// connected, first on a static registry, then while extra connections churn
// #ephemeral channels. Every answer is verified: a wrong answer fails the
// run (exit status 1) instead of producing a number.
//
// Usage:
//
//	go run ./bench -binary /tmp/ref/nsqlookupd                      # small preset
//	go run ./bench -preset medium -binary /tmp/ref/nsqlookupd -binary /tmp/ours/nsqlookupd
//	go run ./bench -preset large -register-modes=sequential,pipelined -binary A -binary B
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
// large = 500,10000,20,5; xlarge = 5000,100000,20,5, 12M registrations;
// -producers/-topics/-per-topic/-channels override). Topic i is registered
// by producers (i*S+k) % P, k in [0,S). Each producer opens its own
// connection, sends "  V1" and IDENTIFY (unique fake tcp_port and
// http_port), then REGISTER T and REGISTER T C for each of its topics and
// channels: T*S*(1+C) REGISTER commands in all. At most -concurrency
// producers register at the same time (default 64, which keeps the
// harness's own footprint bounded while still loading the daemon from many
// connections; 0 = all at once). REGISTER/s counts from the first REGISTER
// written to the last OK read.
//
// Registration modes (-register-modes, comma separated; default pipelined):
// pipelined streams a producer's commands from a writer goroutine while a
// reader checks every framed answer is OK; sequential writes one command and
// reads its answer before the next, as nsqd does. Each mode but the last
// registers into a fresh daemon of its own, which is then stopped; the last
// mode fills the registry that the other phases measure (with -addr-*, one
// mode only). -register-modes=sequential,pipelined gives both REGISTER/s
// figures and keeps the other figures comparable with pipelined runs.
//
// Every simulated nsqd sends PING every -ping-interval (15s, as nsqd) from
// IDENTIFY until the target is done, skipping a round while its connection
// is busy with its own commands, so that neither the inactive-producer
// timeout nor a dead-peer read timeout of 60s drops it. At most 16
// goroutines send the PINGs, spread over the interval.
//
// Phases per target, in order: RSS idle; connect+IDENTIFY; registration
// (REGISTER/s, daemon CPU); RSS after registration; verification of /lookup
// and /channels for a sample of topics and of /topics; then /lookup,
// /channels and /ping for -duration each (or -requests each) from -clients
// keep-alive clients over random topics (req/s, p50, p99, daemon CPU seconds
// per 1000 requests); /topics latency from -samples sequential requests;
// verification of /nodes (decoded one producer at a time) and its latency
// from -samples requests; the churn phase; a re-check of up to 20 topics'
// /lookup and /channels (the producers must still be registered and active
// after the load); RSS at the end; a final PING on every connection.
// Daemons started by the harness must hold exactly this run's topics and
// producers; against -addr, names carry a random run id and other entries
// are ignored.
//
// The churn phase (-churn-conns 16, 0 = none): that many extra simulated
// nsqd connect, IDENTIFY, and REGISTER their topics one at a time (churn
// connection j holds the topics i with i % n == j, as an nsqd holds a topic
// before ephemeral channels come and go in it). Then, for -churn-duration
// (default -duration) each, on the same registry: /lookup from -clients
// clients over random topics while one client polls /nodes back to back
// (-churn-nodes; it keeps polling until at least one answer), first without
// churn, then while the churn connections send REGISTER and UNREGISTER of
// #ephemeral channels ("c<j>-<seq>#ephemeral", at most 8 alive per
// connection) at an aggregate -churn-rate (2000/s), each connection one
// command at a time: write it, read its OK, then the next. Commands are
// paced open loop (command n due at start + n*interval); a connection that
// falls more than 100 ms behind restarts its schedule rather than burst, so
// a commands/s below the target in the table means the daemon held the
// commands up. Figures: /lookup req/s and p50/p99 and /nodes min/med/max
// without and with churn, churn command round trip p50/p99/max (write to
// OK), and the ratios of /lookup p99 and /nodes median under churn to the
// same load without churn and to the static phases. While churn runs, a
// sample of topics (their #ephemeral channels must belong to the topic's
// churn connection) and /nodes (with the churn connections and their
// topics) are verified; after it, the connections UNREGISTER their last
// channels and topics are re-checked exactly. -block-profile FILE saves the
// daemon's block profile over the churn part (GET
// /debug/pprof/block?seconds=N; one file per target, FILE.N.ext when
// several); binaries whose -h lists --block-profile-rate are started with
// it, set to -block-profile-rate (10000 ns), which costs them some speed:
// do not quote the figures of a profiled run.
//
// Timeouts: every HTTP request has -http-timeout (60s). A phase whose
// request times out is reported as such (">60s timeout") and the run goes
// on; a /nodes that timed out is not asked again for that target, since the
// daemon may still be computing it (v1.3.0's /nodes costs producers x
// registrations: at the xlarge preset it runs far beyond any timeout).
//
// The harness shares the machine with the daemon: the table's "harness CPU"
// row shows what the load generation itself cost, "harness RSS peak" its
// memory (about 75 MiB at the xlarge shape: it keeps no per-registration
// state). Run several times and prefer longer -duration on small machines;
// the small preset's numbers are noisy.
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
	"os"
	"os/signal"
	"runtime"
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
	"xlarge": {Preset: "xlarge", Producers: 5000, Topics: 100000, PerTopic: 20, Channels: 5},
}

// Registration modes: how a simulated nsqd sends its REGISTER commands.
const (
	// modePipelined streams every command, then reads the answers.
	modePipelined = "pipelined"
	// modeSequential sends one command and waits for its answer before
	// the next, as a real nsqd does.
	modeSequential = "sequential"
)

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

	registerModes []string

	churnConns       int
	churnRate        float64
	churnDuration    time.Duration
	churnNodes       bool
	blockProfile     string
	blockProfileRate int

	soak         time.Duration
	soakEvery    time.Duration
	soakOut      string
	soakReadRate float64
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
	preset := fs.String("preset", "small", "workload preset: small (10,100,3,2), medium (100,2000,10,4), large (500,10000,20,5) or xlarge (5000,100000,20,5) = (producers, topics, per-topic, channels)")
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
	fs.DurationVar(&o.pingInterval, "ping-interval", 15*time.Second, "interval of the PING each simulated nsqd sends from IDENTIFY to the end, as nsqd does")
	fs.DurationVar(&o.startupTimeout, "startup-timeout", 10*time.Second, "how long a started binary may take to answer /ping")
	fs.DurationVar(&o.ioTimeout, "io-timeout", time.Minute, "deadline for a producer's connect+IDENTIFY, its whole registration, and each PING")
	fs.DurationVar(&o.httpTimeout, "http-timeout", time.Minute, "timeout of a single HTTP request")
	fs.Uint64Var(&o.seed, "seed", 1, "seed for the random topic choices (same seed = same request sequence)")
	fs.StringVar(&o.logDir, "log-dir", "", "keep each started daemon's output in this `directory` (default: temporary file, kept only on failure)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this `file`")
	fs.Var((*listFlag)(&o.registerModes), "register-modes", "registration `modes` to measure, comma separated: pipelined (commands streamed; the default), sequential (one command, then its answer, as nsqd sends them); each mode but the last registers into a fresh daemon of its own, the last one fills the registry the other phases measure")
	fs.IntVar(&o.churnConns, "churn-conns", 16, "extra registration connections that REGISTER/UNREGISTER #ephemeral channels in the churn phase (0 = no churn phase)")
	fs.Float64Var(&o.churnRate, "churn-rate", 2000, "aggregate churn commands per second over all -churn-conns, each connection one command at a time")
	fs.DurationVar(&o.churnDuration, "churn-duration", 0, "length of the churn phase's two timed parts, without and with churn (0 = -duration)")
	fs.BoolVar(&o.churnNodes, "churn-nodes", true, "one client polls /nodes back to back during both parts of the churn phase")
	fs.StringVar(&o.blockProfile, "block-profile", "", "save the daemon's block profile taken over the churn part of the churn phase to this `file` (several targets: file.N.ext); binaries that have --block-profile-rate are started with it")
	fs.IntVar(&o.blockProfileRate, "block-profile-rate", 10000, "--block-profile-rate given to the daemons with -block-profile (ns blocked per sample)")
	fs.DurationVar(&o.soak, "soak", 0, "run a soak of this `duration` instead of the phases: the churn phase's load (churn, and /lookup paced to -soak-read-rate), /metrics sampled every -soak-every, answers verified, growth checked; writes -soak-out .csv and .svg")
	fs.DurationVar(&o.soakEvery, "soak-every", 10*time.Second, "interval between two samples of a soak")
	fs.StringVar(&o.soakOut, "soak-out", "soak", "a soak's output `path`, without extension: PATH.csv and PATH.svg")
	fs.Float64Var(&o.soakReadRate, "soak-read-rate", 500, "/lookup requests a second of a soak's -clients readers, in all")
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
	if len(o.registerModes) == 0 {
		o.registerModes = []string{modePipelined}
	}

	p, ok := presets[*preset]
	if !ok {
		return nil, fmt.Errorf("-preset %q: want small, medium, large or xlarge", *preset)
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
	seen := map[string]bool{}
	for _, m := range o.registerModes {
		if m != modePipelined && m != modeSequential {
			return fmt.Errorf("-register-modes: %q: want pipelined or sequential", m)
		}
		if seen[m] {
			return fmt.Errorf("-register-modes: %s given twice", m)
		}
		seen[m] = true
	}
	if external && len(o.registerModes) > 1 {
		return errors.New("-register-modes: several modes need a fresh daemon each: give -binary")
	}
	if o.churnDuration == 0 {
		o.churnDuration = o.duration
	}
	switch {
	case o.churnConns < 0:
		return fmt.Errorf("-churn-conns %d: want >= 0", o.churnConns)
	case o.churnConns > o.Topics:
		return fmt.Errorf("-churn-conns %d: want at most one per topic (%d)", o.churnConns, o.Topics)
	case o.Producers+o.churnConns > maxProducers:
		return fmt.Errorf("-producers + -churn-conns = %d: want at most %d", o.Producers+o.churnConns, maxProducers)
	case o.churnConns > 0 && !(o.churnRate > 0):
		return fmt.Errorf("-churn-rate %v: want > 0", o.churnRate)
	case o.churnConns > 0 && o.churnDuration <= 0:
		return errors.New("-churn-duration must be > 0 (it defaults to -duration)")
	case o.blockProfile != "" && o.churnConns == 0:
		return errors.New("-block-profile is taken during the churn phase: it needs -churn-conns > 0")
	case o.blockProfile != "" && o.blockProfileRate < 1:
		return fmt.Errorf("-block-profile-rate %d: want >= 1", o.blockProfileRate)
	}
	switch {
	case o.soak < 0:
		return fmt.Errorf("-soak %v: want >= 0", o.soak)
	case o.soak > 0 && o.soakEvery <= 0:
		return fmt.Errorf("-soak-every %v: want > 0", o.soakEvery)
	case o.soak > 0 && !(o.soakReadRate > 0):
		return fmt.Errorf("-soak-read-rate %v: want > 0", o.soakReadRate)
	case o.soak > 0 && o.churnConns == 0:
		return errors.New("-soak runs the churn phase's load: -churn-conns must be > 0")
	case o.soak > 0 && len(o.binaries) > 1:
		return errors.New("-soak measures one daemon: give one -binary")
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
	if o.soak > 0 {
		res, err := runSoak(ctx, o)
		if res != nil {
			printSoak(os.Stdout, res, o)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: soak FAILED:", err)
			return 1
		}
		return 0
	}

	rep := &report{
		Machine: machineInfo{
			OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			CPUModel: cpuModel(), GoVersion: runtime.Version(),
		},
		Workload: o.workload,
		Settings: settings{
			Clients: o.clients, Requests: o.requests, Samples: o.samples,
			Concurrency: o.concurrency, VerifySample: o.verify, DaemonFlags: o.daemonFlags,
			RegisterModes: o.registerModes, PingIntervalSeconds: o.pingInterval.Seconds(),
			HTTPTimeoutSeconds: o.httpTimeout.Seconds(), ChurnConns: o.churnConns,
		},
	}
	if o.churnConns > 0 {
		rep.Settings.ChurnRate, rep.Settings.ChurnSeconds, rep.Settings.ChurnNodes = o.churnRate, o.churnDuration.Seconds(), o.churnNodes
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
