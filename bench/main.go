// Command bench is the load harness for nsqlookupd-compatible daemons: it
// registers a fleet of simulated nsqd over TCP, then measures registration,
// memory, CPU and the HTTP API (statically, under #ephemeral channel churn,
// or over a long soak), verifying every answer it samples. Several binaries
// are measured side by side. docs/performance.md says how to run it and
// what each figure means; go run ./bench -h lists the flags.
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
	"slices"
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

// Registration modes: pipelined streams every command, then reads the
// answers; sequential waits for each answer before the next, as nsqd does.
const modePipelined, modeSequential = "pipelined", "sequential"

// options are the parsed command-line flags.
type options struct {
	workload
	binaries, daemonFlags []string // daemons to start

	clients, requests, samples, verify, concurrency                int
	duration, pingInterval, startupTimeout, ioTimeout, httpTimeout time.Duration
	keptWait                                                       time.Duration // leave's sampling
	seed                                                           uint64
	logDir, jsonPath                                               string
	registerModes                                                  []string

	churnConns, blockProfileRate int
	churnRate                    float64
	churnDuration                time.Duration
	churnNodes                   bool
	blockProfile                 string

	soak, soakEvery time.Duration
	soakOut         string
	soakReadRate    float64

	auth   bool   // also measure each binary with auth on (auth.go)
	secret string // sent with every request: the run with auth on

	variants []string // also measure each binary with each of these daemon flags
	label    string   // what a run adds to its binary's name in the report
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
	fs.DurationVar(&o.keptWait, "kept-wait", 0, "at the end, all producers leave and the daemon's lowest RSS over this long after a forced GC is reported as kept (0 = they stay)")
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
	fs.Var((*repeatFlag)(&o.variants), "variant-flag", "measure each -binary once more, side by side, with this extra `argument` (repeatable: a run for each), e.g. -variant-flag=--log-format=json")
	fs.BoolVar(&o.auth, "auth", false, "measure each -binary twice, side by side: as given, then with auth on against an auth server the harness runs, every request carrying a secret granted everything (cached after the first)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: go run ./bench [flags] (see docs/performance.md)\n\nFlags:\n")
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
	for _, f := range []struct {
		v          *int
		def, unset int
	}{{&o.Producers, p.Producers, 0}, {&o.Topics, p.Topics, 0}, {&o.PerTopic, p.PerTopic, 0}, {&o.Channels, p.Channels, -1}} {
		if *f.v == f.unset {
			*f.v = f.def
		} else if *f.v != f.def {
			o.Preset = p.Preset + "+custom"
		}
	}
	return o, o.validate()
}

func (o *options) validate() error {
	if o.churnDuration == 0 {
		o.churnDuration = o.duration
	}
	churn, soak := o.churnConns > 0, o.soak > 0
	for _, c := range []struct {
		bad bool
		err string
	}{
		{o.Producers < 1 || o.Producers > maxProducers, fmt.Sprintf("-producers %d: want 1..%d", o.Producers, maxProducers)},
		{o.Topics < 1, fmt.Sprintf("-topics %d: want >= 1", o.Topics)},
		{o.PerTopic < 1 || o.PerTopic > o.Producers, fmt.Sprintf("-per-topic %d: want 1..producers (%d)", o.PerTopic, o.Producers)},
		{o.Channels < 0, fmt.Sprintf("-channels %d: want >= 0", o.Channels)},
		{o.clients < 1, "-clients: want >= 1"},
		{o.requests <= 0 && o.duration <= 0, "-duration must be > 0 (or -requests > 0)"},
		{o.samples < 1, "-samples: want >= 1"},
		{o.pingInterval <= 0, "-ping-interval must be > 0"},
		{len(o.binaries) == 0, "no target: give -binary PATH"},
		{o.churnConns < 0, fmt.Sprintf("-churn-conns %d: want >= 0", o.churnConns)},
		{o.churnConns > o.Topics, fmt.Sprintf("-churn-conns %d: want at most one per topic (%d)", o.churnConns, o.Topics)},
		{o.Producers+o.churnConns > maxProducers, fmt.Sprintf("-producers + -churn-conns = %d: want at most %d", o.Producers+o.churnConns, maxProducers)},
		{churn && !(o.churnRate > 0), fmt.Sprintf("-churn-rate %v: want > 0", o.churnRate)},
		{churn && o.churnDuration <= 0, "-churn-duration must be > 0 (it defaults to -duration)"},
		{o.blockProfile != "" && !churn, "-block-profile is taken during the churn phase: it needs -churn-conns > 0"},
		{o.blockProfile != "" && o.blockProfileRate < 1, fmt.Sprintf("-block-profile-rate %d: want >= 1", o.blockProfileRate)},
		{o.soak < 0, fmt.Sprintf("-soak %v: want >= 0", o.soak)},
		{soak && o.soakEvery <= 0, fmt.Sprintf("-soak-every %v: want > 0", o.soakEvery)},
		{soak && !(o.soakReadRate > 0), fmt.Sprintf("-soak-read-rate %v: want > 0", o.soakReadRate)},
		{soak && !churn, "-soak runs the churn phase's load: -churn-conns must be > 0"},
		{soak && len(o.binaries) > 1, "-soak measures one daemon: give one -binary"},
		{o.auth && (soak || o.blockProfile != ""), "-auth starts each -binary twice: not with -soak or -block-profile"},
		{len(o.variants) > 0 && (soak || o.blockProfile != ""), "-variant-flag starts each -binary again: not with -soak or -block-profile"},
	} {
		if c.bad {
			return errors.New(c.err)
		}
	}
	seen := map[string]bool{}
	for _, m := range o.registerModes {
		if m != modePipelined && m != modeSequential || seen[m] {
			return fmt.Errorf("-register-modes: %q: want pipelined or sequential, once each", m)
		}
		seen[m] = true
	}
	if o.verify == 0 && o.Topics > 1000 {
		o.verify = 200
	}
	if o.verify <= 0 || o.verify > o.Topics {
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

	rep := newReport(o)
	runs := []*options{o}
	for _, f := range o.variants {
		v := *o
		v.daemonFlags, v.label = append(slices.Clone(o.daemonFlags), f), " "+f
		runs = append(runs, &v)
	}
	if o.auth {
		addr, stop, err := startAuthServer()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: auth server:", err)
			return 1
		}
		defer stop()
		runs = append(runs, o.withAuth(addr))
	}
	failed := false
targets:
	for i, bin := range o.binaries {
		for j, ro := range runs {
			res := runTarget(ctx, ro, i*len(runs)+j, bin)
			res.Target += ro.label
			rep.Results = append(rep.Results, res)
			if res.Error != "" {
				failed = true
				logger.Printf("%s: FAILED: %s", res.Target, res.Error)
			}
			if ctx.Err() != nil {
				break targets
			}
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

// runTarget measures one daemon, started from binary.
func runTarget(ctx context.Context, o *options, index int, binary string) *result {
	res := &result{Target: binary, Binary: binary}
	if err := measure(ctx, o, index, binary, res); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w)", err)
		}
		res.Error = err.Error()
	}
	return res
}
