package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lookupd/nsqlookupd/bench/internal/harness"
)

// mixStats is /lookup under load while one client, optionally, polls
// /nodes back to back.
type mixStats struct {
	Lookup phaseStats `json:"lookup"`
	Nodes  *seqStats  `json:"nodes,omitempty"`
}

// mixedLoad runs spec's /lookup load and, with -churn-nodes, one client
// that polls /nodes until the load ends and at least one /nodes has
// answered (or timed out). After a /nodes that timed out, it is not asked
// again (Skipped).
func (s *session) mixedLoad(ctx context.Context, spec loadSpec) (ms mixStats, err error) {
	poll := s.o.churnNodes && !s.nodesTimedOut
	if s.o.churnNodes && !poll {
		ms.Nodes = &seqStats{Path: "/nodes", Skipped: true}
	}
	var (
		nodes    seqStats
		nodesErr error
		loadDone = make(chan struct{})
		polled   = make(chan struct{})
	)
	go func() {
		defer close(polled)
		if poll {
			nodes, nodesErr = pollPath(ctx, s.h, "/nodes", func(done int) bool {
				select {
				case <-loadDone:
					return done == 0
				default:
					return true
				}
			})
		}
	}()
	ms.Lookup, err = runLoad(ctx, s.h, spec)
	close(loadDone)
	<-polled
	if err != nil {
		return ms, fmt.Errorf("/lookup load: %w", err)
	}
	if nodesErr != nil {
		return ms, fmt.Errorf("/nodes poll: %w", nodesErr)
	}
	ms.Lookup.Path = "/lookup"
	if poll {
		ms.Nodes = &nodes
		s.noteNodes(&nodes)
	}
	return ms, nil
}

// churnStats is the outcome of the churn phase: /lookup (and /nodes) first
// without churn, then with it, on the same registry.
type churnStats struct {
	Conns      int     `json:"conns"`
	TargetRate float64 `json:"target_commands_per_second"`
	// SetupSeconds: connect, IDENTIFY and REGISTER of the connections'
	// topics, one at a time.
	SetupSeconds float64  `json:"setup_seconds"`
	NoChurn      mixStats `json:"no_churn"`
	Churn        mixStats `json:"churn"`

	// Churn commands, all answered OK, over Seconds.
	Commands    int     `json:"commands"`
	Registers   int     `json:"registers"`
	Unregisters int     `json:"unregisters"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"commands_per_second"`
	P50ms       float64 `json:"command_p50_ms"`
	P99ms       float64 `json:"command_p99_ms"`
	MaxMs       float64 `json:"command_max_ms"`

	// Ratios of the figures under churn to the same figures without
	// churn (same load), and to the static phases (/lookup alone, /nodes
	// alone). Absent when a figure is missing.
	LookupP99VsNoChurn   *float64 `json:"lookup_p99_vs_no_churn,omitempty"`
	LookupP99VsStatic    *float64 `json:"lookup_p99_vs_static,omitempty"`
	NodesMedianVsNoChurn *float64 `json:"nodes_median_vs_no_churn,omitempty"`
	NodesMedianVsStatic  *float64 `json:"nodes_median_vs_static,omitempty"`

	// Checked while churn ran: a sample of topics (their ephemeral
	// channels must be the topic's churn connection's) and /nodes.
	VerifiedTopics int      `json:"verified_topics"`
	VerifiedNodes  bool     `json:"verified_nodes"`
	TimedOut       []string `json:"timed_out,omitempty"`

	BlockProfile string `json:"block_profile,omitempty"`
}

// churnPhase runs the churn phase against s's daemon (see churnStats).
func (s *session) churnPhase(ctx context.Context) error {
	o := s.o
	st := &churnStats{Conns: o.churnConns, TargetRate: o.churnRate}
	s.res.Churn = st
	began := time.Now()
	churners, err := s.connectChurn(ctx)
	if err != nil {
		return err
	}
	st.SetupSeconds = time.Since(began).Seconds()

	spec := loadSpec{clients: o.clients, duration: o.churnDuration, seed: o.seed + 10, path: s.lookupPath}
	logger.Printf("%s: churn: /lookup load without churn", s.res.Target)
	if st.NoChurn, err = s.mixedLoad(ctx, spec); err != nil {
		return fmt.Errorf("churn phase, without churn: %w", err)
	}
	logger.Printf("%s: churn: /lookup load under churn (%g commands/s)", s.res.Target, o.churnRate)
	spec.seed++
	if err := s.underChurn(ctx, churners, spec, st); err != nil {
		return err
	}
	st.ratios(s.res)

	// Remove the ephemeral channels; every topic must then list exactly
	// the fleet's channels again, and its producers still be active.
	err = forEach(ctx, len(churners), 0, func(j int) error { return churners[j].unregisterLive(s.nm, o.ioTimeout) })
	if err != nil {
		return fmt.Errorf("churn: unregistering the last ephemeral channels: %w", err)
	}
	return s.recheck(ctx, s.exp)
}

// underChurn runs spec's load while the churners churn, verifies answers
// under churn, and takes the block profile if asked.
func (s *session) underChurn(ctx context.Context, churners []*churner, spec loadSpec, st *churnStats) error {
	g := newGroup(ctx)
	start := startChurn(g, churners, s.nm, s.o)
	prof := make(chan error, 1)
	go func() {
		if s.blockProfile == "" {
			prof <- nil
			return
		}
		prof <- fetchBlockProfile(ctx, s.t.HTTPAddr, s.o.churnDuration, s.o.httpTimeout, s.blockProfile)
	}()
	var err error
	st.Churn, err = s.mixedLoad(g.ctx, spec)
	if err == nil {
		err = s.verifyUnderChurn(g.ctx, st)
	}
	perr := <-prof
	cerr := g.stop()
	elapsed := time.Since(start)
	switch {
	case cerr != nil:
		return cerr
	case err != nil:
		return fmt.Errorf("churn phase, under churn: %w", err)
	case perr != nil:
		return fmt.Errorf("block profile: %w", perr)
	}
	if s.blockProfile != "" {
		st.BlockProfile = s.blockProfile
		logger.Printf("%s: block profile under churn saved to %s", s.res.Target, s.blockProfile)
	}
	var lat []time.Duration
	for _, c := range churners {
		lat = append(lat, c.lat...)
		st.Registers += c.registers
		st.Unregisters += c.unregisters
	}
	p50, p99, mx := summarize(lat)
	st.Commands, st.Seconds = len(lat), elapsed.Seconds()
	st.PerSecond = float64(len(lat)) / elapsed.Seconds()
	st.P50ms, st.P99ms, st.MaxMs = ms(p50), ms(p99), ms(mx)
	return nil
}

// startChurn starts the churners in g, paced to -churn-rate between them,
// and returns the start of their schedule.
func startChurn(g *group, churners []*churner, nm *naming, o *options) time.Time {
	start, interval := time.Now(), churnInterval(len(churners), o.churnRate)
	for j, c := range churners {
		pace := newPacer(start, interval, j, len(churners))
		g.spawn(func(ctx context.Context) error { return c.run(ctx, nm, pace, o.ioTimeout) })
	}
	return start
}

// connectChurn connects the -churn-conns churn connections (producers P,
// P+1, ...), registers each one's topics one command at a time, and
// returns their churners, ready to run; s.exp then expects them.
func (s *session) connectChurn(ctx context.Context) ([]*churner, error) {
	o, nm := s.o, s.nm
	logger.Printf("%s: churn: connecting %d connections", s.res.Target, o.churnConns)
	layout := churnLayout{o.churnConns}
	assign := make([][]int, layout.n)
	for j := range assign {
		assign[j] = layout.topicsOf(j, o.Topics)
	}
	cf, _, err := connectFleet(ctx, s.t.TCPAddr, nm, o.Producers, assign, 0, o.ioTimeout, s.checkIdentify)
	if err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	}
	s.fleets = append(s.fleets, cf)
	cf.startKeepalive(o.pingInterval)
	err = forEach(ctx, len(cf.prods), 0, func(j int) error {
		_, _, _, err := cf.prods[j].register(nm, nil, modeSequential, o.ioTimeout)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("churn: registering topics: %w", err)
	}
	s.exp.churn = &layout
	churners := make([]*churner, layout.n)
	for j := range churners {
		churners[j] = &churner{
			p:     cf.prods[j],
			state: churnState{j: j, topics: assign[j], maxLive: churnMaxLive},
			rng:   rand.New(rand.NewPCG(o.seed, uint64(1000+j))),
		}
	}
	return churners, nil
}

// verifyUnderChurn checks a sample of topics and /nodes while churn runs.
func (s *session) verifyUnderChurn(ctx context.Context, st *churnStats) error {
	e := s.exp
	e.ephemeralOK = true
	n, err := e.checkTopics(ctx, s.h, min(churnVerifyTopics, s.o.verify), s.o.clients, s.o.seed+200)
	ok, err := tolerate(ctx, err, &st.TimedOut, "/lookup")
	if err != nil {
		return fmt.Errorf("verification under churn: %w", err)
	}
	if ok {
		st.VerifiedTopics = n
	}
	if s.nodesTimedOut {
		return nil
	}
	ok, err = tolerate(ctx, e.checkNodes(ctx, s.h), &st.TimedOut, "/nodes")
	if err != nil {
		return fmt.Errorf("verification under churn: %w", err)
	}
	st.VerifiedNodes, s.nodesTimedOut = ok, !ok
	return nil
}

// ratios fills the ratios of the figures under churn to the others.
func (st *churnStats) ratios(res *result) {
	ratio := func(a, b float64) *float64 {
		if a <= 0 || b <= 0 {
			return nil
		}
		v := a / b
		return &v
	}
	usable := func(n *seqStats) bool { return n != nil && n.Samples > 0 && !n.TimedOut }
	if !st.Churn.Lookup.TimedOut && !st.NoChurn.Lookup.TimedOut {
		st.LookupP99VsNoChurn = ratio(st.Churn.Lookup.P99ms, st.NoChurn.Lookup.P99ms)
	}
	if res.Lookup != nil && !res.Lookup.TimedOut && !st.Churn.Lookup.TimedOut {
		st.LookupP99VsStatic = ratio(st.Churn.Lookup.P99ms, res.Lookup.P99ms)
	}
	if usable(st.Churn.Nodes) && usable(st.NoChurn.Nodes) {
		st.NodesMedianVsNoChurn = ratio(st.Churn.Nodes.MedianMs, st.NoChurn.Nodes.MedianMs)
	}
	if usable(st.Churn.Nodes) && usable(res.Nodes) {
		st.NodesMedianVsStatic = ratio(st.Churn.Nodes.MedianMs, res.Nodes.MedianMs)
	}
}

// fetchBlockProfile saves to path the daemon's block profile over the next
// d (GET /debug/pprof/block?seconds=N, a delta profile).
func fetchBlockProfile(ctx context.Context, addr string, d, timeout time.Duration, path string) error {
	secs := max(1, int(math.Ceil(d.Seconds())))
	h := newHTTPClient(addr, 1, time.Duration(secs)*time.Second+timeout)
	defer h.close()
	return h.getStream(ctx, fmt.Sprintf("/debug/pprof/block?seconds=%d", secs), func(r io.Reader) error {
		body, err := io.ReadAll(io.LimitReader(r, 256<<20))
		if err == nil && (len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b) {
			err = fmt.Errorf("not a gzipped profile: %q", harness.Truncate(body, 100))
		}
		if err == nil {
			err = os.WriteFile(path, body, 0o644)
		}
		return err
	})
}

// blockProfilePath is the block profile file of target index out of n:
// path itself for a single target, else path with ".index" before its
// extension (block.pb.gz -> block.1.pb.gz).
func blockProfilePath(path string, index, n int) string {
	if n <= 1 {
		return path
	}
	dir, base := filepath.Split(path)
	name, ext, _ := strings.Cut(base, ".")
	if ext != "" {
		ext = "." + ext
	}
	return dir + name + "." + strconv.Itoa(index) + ext
}
