package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// mixStats is /lookup under load while one client, optionally, polls
// /nodes back to back.
type mixStats struct {
	Lookup phaseStats `json:"lookup"`
	Nodes  *seqStats  `json:"nodes,omitempty"`
}

// mixedLoad runs spec's /lookup load and, with pollNodes, one client that
// polls /nodes until the load ends and at least one /nodes has answered
// (or timed out). skipNodes: /nodes timed out before; it is not asked again.
func mixedLoad(ctx context.Context, h *httpClient, spec loadSpec, pollNodes, skipNodes bool) (mixStats, error) {
	var (
		ms       mixStats
		nodes    seqStats
		nodesErr error
		wg       sync.WaitGroup
		loadDone = make(chan struct{})
	)
	if pollNodes && !skipNodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes, nodesErr = poll(ctx, h, "/nodes", func(done int) bool {
				select {
				case <-loadDone:
					return done == 0
				default:
					return true
				}
			})
		}()
	}
	st, err := runLoad(ctx, h, spec)
	close(loadDone)
	wg.Wait()
	if err != nil {
		return ms, fmt.Errorf("/lookup load: %w", err)
	}
	if nodesErr != nil {
		return ms, fmt.Errorf("/nodes poll: %w", nodesErr)
	}
	st.Path = "/lookup"
	ms.Lookup = st
	switch {
	case pollNodes && skipNodes:
		ms.Nodes = &seqStats{Path: "/nodes", Skipped: true}
	case pollNodes:
		ms.Nodes = &nodes
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
	o, nm := s.o, s.nm
	st := &churnStats{Conns: o.churnConns, TargetRate: o.churnRate}
	s.res.Churn = st

	began := time.Now()
	churners, layout, err := s.connectChurn(ctx)
	if err != nil {
		return err
	}
	st.SetupSeconds = time.Since(began).Seconds()
	e := s.exp

	spec := loadSpec{clients: o.clients, duration: o.churnDuration, seed: o.seed + 10, url: s.lookupURL}
	logger.Printf("%s: churn: /lookup load without churn", s.res.Target)
	if st.NoChurn, err = mixedLoad(ctx, s.h, spec, o.churnNodes, s.nodesTimedOut); err != nil {
		return fmt.Errorf("churn phase, without churn: %w", err)
	}
	s.noteNodes(st.NoChurn.Nodes)

	logger.Printf("%s: churn: /lookup load under churn (%g commands/s)", s.res.Target, o.churnRate)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		churnErr error
		interval = churnInterval(layout.n, o.churnRate)
		start    = time.Now()
	)
	for j, c := range churners {
		pace := &pacer{start: start.Add(interval * time.Duration(j) / time.Duration(layout.n)), interval: interval, maxLag: churnMaxLag}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.run(pctx, nm, pace, o.ioTimeout); err != nil {
				errOnce.Do(func() { churnErr = err; stop() })
			}
		}()
	}
	profDone := make(chan error, 1)
	if s.blockProfile != "" {
		go func() {
			profDone <- fetchBlockProfile(ctx, s.t.httpAddr, o.churnDuration, o.httpTimeout, s.blockProfile)
		}()
	} else {
		profDone <- nil
	}
	spec.seed++
	st.Churn, err = mixedLoad(pctx, s.h, spec, o.churnNodes, s.nodesTimedOut)
	if err == nil {
		s.noteNodes(st.Churn.Nodes)
		err = s.verifyUnderChurn(pctx, e, st)
	}
	perr := <-profDone
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	switch {
	case churnErr != nil:
		return churnErr
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
	st.ratios(s.res)

	// Remove the ephemeral channels; every topic must then list exactly
	// the fleet's channels again, and its producers still be active.
	err = forEach(ctx, len(churners), 0, func(j int) error { return churners[j].unregisterLive(nm, o.ioTimeout) })
	if err != nil {
		return fmt.Errorf("churn: unregistering the last ephemeral channels: %w", err)
	}
	n, err := e.checkTopics(ctx, s.h, min(20, o.verify), o.clients, o.seed+100)
	switch {
	case isTimeout(err) && ctx.Err() == nil:
		s.res.Verify.TimedOut = append(s.res.Verify.TimedOut, "recheck")
	case err != nil:
		return fmt.Errorf("verification after churn: %w", err)
	default:
		s.res.Verify.RecheckTopics = n
	}
	return nil
}

// connectChurn connects the -churn-conns churn connections (producers P,
// P+1, ...), registers each one's topics one command at a time, and
// returns their churners, ready to run; s.exp then expects them.
func (s *session) connectChurn(ctx context.Context) ([]*churner, churnLayout, error) {
	o, nm := s.o, s.nm
	logger.Printf("%s: churn: connecting %d connections", s.res.Target, o.churnConns)
	layout := churnLayout{o.churnConns}
	assign := make([][]int, layout.n)
	for j := range assign {
		assign[j] = layout.topicsOf(j, o.Topics)
	}
	cf, _, err := connectFleet(ctx, s.t.tcpAddr, nm, o.Producers, assign, 0, o.ioTimeout, s.checkIdentify)
	if err != nil {
		return nil, layout, fmt.Errorf("churn: %w", err)
	}
	s.fleets = append(s.fleets, cf)
	cf.startKeepalive(o.pingInterval)
	err = forEach(ctx, len(cf.prods), 0, func(j int) error {
		_, _, _, err := cf.prods[j].registerSequential(nm, nil, o.ioTimeout)
		return err
	})
	if err != nil {
		return nil, layout, fmt.Errorf("churn: registering topics: %w", err)
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
	return churners, layout, nil
}

// verifyUnderChurn checks a sample of topics and /nodes while churn runs.
func (s *session) verifyUnderChurn(ctx context.Context, e expectation, st *churnStats) error {
	e.ephemeralOK = true
	n, err := e.checkTopics(ctx, s.h, min(churnVerifyTopics, s.o.verify), s.o.clients, s.o.seed+200)
	switch {
	case isTimeout(err) && ctx.Err() == nil:
		st.TimedOut = append(st.TimedOut, "/lookup")
	case err != nil:
		return fmt.Errorf("verification under churn: %w", err)
	default:
		st.VerifiedTopics = n
	}
	if s.nodesTimedOut {
		return nil
	}
	err = e.checkNodes(ctx, s.h)
	switch {
	case isTimeout(err) && ctx.Err() == nil:
		st.TimedOut = append(st.TimedOut, "/nodes")
		s.nodesTimedOut = true
	case err != nil:
		return fmt.Errorf("verification under churn: %w", err)
	default:
		st.VerifiedNodes = true
	}
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
	c := &http.Client{Timeout: time.Duration(secs)*time.Second + timeout}
	url := fmt.Sprintf("http://%s/debug/pprof/block?seconds=%d", addr, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d, body %q", url, resp.StatusCode, truncate(body, 200))
	}
	if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		return fmt.Errorf("GET %s: not a gzipped profile: %q", url, truncate(body, 100))
	}
	return os.WriteFile(path, body, 0o644)
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
