package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"time"
)

// session is one target daemon being measured, and what its phases share.
type session struct {
	o   *options
	t   *target
	h   *httpClient
	nm  *naming
	exp expectation
	res *result

	lookupURLs []string
	fleets     []*fleet // closed when the target is done
	// nodesTimedOut: a /nodes request timed out. The daemon may still be
	// working on it (v1.3.0 at the xlarge preset), so /nodes is not asked
	// again: the other figures would measure a second one too.
	nodesTimedOut bool
	blockProfile  string // file for the block profile under churn, or ""
}

func (s *session) lookupURL(r *rand.Rand) string { return s.lookupURLs[r.IntN(len(s.lookupURLs))] }

// noteNodes records that a series of /nodes requests timed out.
func (s *session) noteNodes(n *seqStats) {
	if n != nil && n.TimedOut {
		s.nodesTimedOut = true
	}
}

// checkIdentify checks an IDENTIFY answer: a daemon the harness started
// must announce the addresses it was given.
func (s *session) checkIdentify(a identifyAnswer) error {
	if s.t.cmd == nil {
		return nil // a daemon we did not start may announce anything
	}
	_, tcpPort, _ := net.SplitHostPort(s.t.tcpAddr)
	_, httpPort, _ := net.SplitHostPort(s.t.httpAddr)
	if a.BroadcastAddress != "127.0.0.1" || strconv.Itoa(a.TCPPort) != tcpPort || strconv.Itoa(a.HTTPPort) != httpPort {
		return fmt.Errorf("%+v, want broadcast_address 127.0.0.1, tcp_port %s, http_port %s", a, tcpPort, httpPort)
	}
	return nil
}

// newRunID returns the random id that this run's names carry.
func newRunID() string { return fmt.Sprintf("%04x", rand.Uint32()&0xffff) }

// measure runs every phase against one target, filling res as it goes.
func measure(ctx context.Context, o *options, index int, binary string, res *result) (err error) {
	// Registration modes other than the last, each into a daemon of its own.
	modes := o.registerModes
	for _, mode := range modes[:len(modes)-1] {
		ph, err := registrationTrial(ctx, o, index, binary, mode)
		if err != nil {
			return fmt.Errorf("%s registration: %w", mode, err)
		}
		res.RegisterModes = append(res.RegisterModes, ph)
	}

	s := &session{o: o, res: res}
	flags := o.daemonFlags
	if o.blockProfile != "" {
		path := blockProfilePath(o.blockProfile, index, len(o.binaries))
		switch {
		case binary == "":
			s.blockProfile = path // the running daemon's own settings decide
		case hasFlag(ctx, binary, "block-profile-rate"):
			flags = append(slices.Clone(flags), "--block-profile-rate="+strconv.Itoa(o.blockProfileRate))
			s.blockProfile = path
		default:
			logger.Printf("%s: no --block-profile-rate flag: no block profile for it", binary)
		}
	}
	if binary != "" {
		logger.Printf("%s: starting", binary)
		if s.t, err = startDaemon(ctx, binary, strconv.Itoa(index), flags, o.logDir, o.startupTimeout); err != nil {
			return err
		}
	} else {
		s.t = &target{tcpAddr: o.addrTCP, httpAddr: o.addrHTTP, pid: o.pid}
	}
	t := s.t
	res.TCPAddr, res.HTTPAddr, res.PID = t.tcpAddr, t.httpAddr, t.pid
	name := res.Target

	defer func() {
		if err != nil {
			if aerr := t.alive(); aerr != nil {
				err = fmt.Errorf("%w; %v", err, aerr)
			}
			t.keepLog = ctx.Err() == nil // an interrupted run's log is not interesting
		}
		// Kill a started daemon before closing the producer connections,
		// so it does not spend time unregistering them.
		for _, f := range s.fleets {
			f.stopKeepalive()
		}
		t.stop()
		for _, f := range s.fleets {
			f.close()
		}
		if t.keepLog && t.logPath != "" {
			logger.Printf("%s: daemon log kept in %s", name, t.logPath)
		}
	}()

	h := newHTTPClient(t.httpAddr, o.clients, o.httpTimeout)
	s.h = h
	defer h.close()
	var info struct {
		Version string `json:"version"`
	}
	if err := h.getJSON(ctx, "/info", &info); err != nil {
		return err
	}
	res.Version = info.Version

	rss := func() *uint64 {
		r, _ := memKiB(t.pid)
		return r
	}
	res.Memory.IdleKiB = rss()

	// Registration.
	runID := newRunID()
	s.nm = newNaming(runID, o.workload)
	assign := assignTopics(o.Producers, o.Topics, o.PerTopic)
	s.exp = expectation{w: o.workload, nm: s.nm, assign: assign, strict: binary != ""}
	noise, began := startCPU(t.pid), time.Now()
	defer func() {
		_, _, res.OtherCPU = noise.stop()
		res.Seconds = time.Since(began).Seconds()
	}()
	logger.Printf("%s: connecting %d producers (run id %s)", name, o.Producers, runID)
	f, ist, err := connectFleet(ctx, t.tcpAddr, s.nm, 0, assign, o.concurrency, o.ioTimeout, s.checkIdentify)
	if err != nil {
		return err
	}
	s.fleets = append(s.fleets, f)
	f.startKeepalive(o.pingInterval)
	res.Identify = &ist

	ph, err := register(ctx, o, name, t, f, s.nm, modes[len(modes)-1])
	if err != nil {
		return err
	}
	res.Register = ph
	res.RegisterModes = append(res.RegisterModes, ph)
	res.Memory.RegisteredKiB = rss()

	// Verification.
	logger.Printf("%s: verifying answers", name)
	vst, err := verify(ctx, h, s.exp, o.verify, o.clients, o.seed)
	if err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	res.Verify = &vst

	// Timed HTTP phases.
	s.lookupURLs = make([]string, len(s.nm.topics))
	for i, topic := range s.nm.topics {
		s.lookupURLs[i] = h.base + "/lookup?topic=" + topic // names need no escaping
	}
	if err := s.timedPhases(ctx); err != nil {
		return err
	}

	// Heavy listings, sequentially; /nodes last, for it can take v1.3.0
	// an hour at the xlarge preset.
	logger.Printf("%s: timing /topics", name)
	topics, err := sequential(ctx, h, "/topics", o.samples)
	if err != nil {
		return err
	}
	res.Topics = &topics
	logger.Printf("%s: verifying and timing /nodes", name)
	err = s.exp.checkNodes(ctx, h)
	switch {
	case isTimeout(err) && ctx.Err() == nil:
		res.Verify.TimedOut = append(res.Verify.TimedOut, "/nodes")
		res.Nodes = &seqStats{Path: "/nodes", TimedOut: true}
		s.nodesTimedOut = true
	case err != nil:
		return fmt.Errorf("verification: %w", err)
	default:
		res.Verify.Nodes = true
		nodes, err := sequential(ctx, h, "/nodes", o.samples)
		if err != nil {
			return err
		}
		res.Nodes = &nodes
		s.noteNodes(&nodes)
	}
	if err := t.alive(); err != nil {
		return err
	}

	if o.churnConns > 0 {
		if err := s.churnPhase(ctx); err != nil {
			return err
		}
	} else {
		// Re-verify a few topics: the producers must still be registered
		// and active (keepalive PINGs) after the load.
		n, err := s.exp.checkTopics(ctx, h, min(20, o.verify), o.clients, o.seed+100)
		switch {
		case isTimeout(err) && ctx.Err() == nil:
			res.Verify.TimedOut = append(res.Verify.TimedOut, "recheck")
		case err != nil:
			return fmt.Errorf("verification after load: %w", err)
		default:
			res.Verify.RecheckTopics = n
		}
	}

	res.Memory.EndKiB, res.Memory.PeakKiB = memKiB(t.pid)
	_, res.Memory.HarnessPeakKiB = memKiB(os.Getpid())
	for _, f := range s.fleets {
		if err := f.checkAlive(ctx, o.concurrency); err != nil {
			return err
		}
	}
	return t.alive()
}

// register registers the fleet in mode and measures it.
func register(ctx context.Context, o *options, name string, t *target, f *fleet, nm *naming, mode string) (*registerPhase, error) {
	logger.Printf("%s: registering (%d REGISTER commands, %s)", name, o.registers(), mode)
	cpu := startCPU(t.pid)
	rst, err := f.registerAll(ctx, nm, o.concurrency, mode)
	if err != nil {
		return nil, err
	}
	if rst.Commands != o.registers() {
		return nil, fmt.Errorf("sent %d REGISTER commands, want %d", rst.Commands, o.registers())
	}
	ph := &registerPhase{registerStats: rst, Mode: mode, Producers: o.Producers}
	ph.DaemonCPU, ph.HarnessCPU, _ = cpu.stop()
	ph.CPUPer1k = per1k(ph.DaemonCPU, rst.Commands)
	return ph, nil
}

// registrationTrial measures registration in mode alone, on a fresh daemon
// started from binary for it and stopped after.
func registrationTrial(ctx context.Context, o *options, index int, binary, mode string) (ph *registerPhase, err error) {
	logger.Printf("%s: starting for the %s registration", binary, mode)
	t, err := startDaemon(ctx, binary, strconv.Itoa(index)+"-"+mode, o.daemonFlags, o.logDir, o.startupTimeout)
	if err != nil {
		return nil, err
	}
	s := &session{o: o, t: t}
	var f *fleet
	defer func() {
		if err != nil {
			if aerr := t.alive(); aerr != nil {
				err = fmt.Errorf("%w; %v", err, aerr)
			}
			t.keepLog = ctx.Err() == nil
		}
		if f != nil {
			f.stopKeepalive()
		}
		t.stop()
		if f != nil {
			f.close()
		}
		if t.keepLog && t.logPath != "" {
			logger.Printf("%s: daemon log kept in %s", binary, t.logPath)
		}
	}()
	nm := newNaming(newRunID(), o.workload)
	assign := assignTopics(o.Producers, o.Topics, o.PerTopic)
	if f, _, err = connectFleet(ctx, t.tcpAddr, nm, 0, assign, o.concurrency, o.ioTimeout, s.checkIdentify); err != nil {
		return nil, err
	}
	f.startKeepalive(o.pingInterval)
	if ph, err = register(ctx, o, binary, t, f, nm, mode); err != nil {
		return nil, err
	}
	return ph, t.alive()
}

// timedPhases loads /lookup, /channels and /ping in turn from o.clients
// clients, recording throughput, latency and CPU in res.
func (s *session) timedPhases(ctx context.Context) error {
	o, t, h, res := s.o, s.t, s.h, s.res
	channelsURLs := make([]string, len(s.nm.topics))
	for i, topic := range s.nm.topics {
		channelsURLs[i] = h.base + "/channels?topic=" + topic
	}
	pingURL := h.base + "/ping"
	phases := []struct {
		path string
		dst  **phaseStats
		url  func(r *rand.Rand) string
	}{
		{"/lookup", &res.Lookup, s.lookupURL},
		{"/channels", &res.Channels, func(r *rand.Rand) string { return channelsURLs[r.IntN(len(channelsURLs))] }},
		{"/ping", &res.Ping, func(*rand.Rand) string { return pingURL }},
	}
	for i, ph := range phases {
		logger.Printf("%s: load on %s", res.Target, ph.path)
		spec := loadSpec{clients: o.clients, duration: o.duration, requests: o.requests, seed: o.seed + uint64(i) + 1, url: ph.url}
		cpu := startCPU(t.pid)
		st, err := runLoad(ctx, h, spec)
		if err != nil {
			return fmt.Errorf("%s load: %w", ph.path, err)
		}
		st.Path = ph.path
		st.DaemonCPU, st.HarnessCPU, _ = cpu.stop()
		st.CPUPer1k = per1k(st.DaemonCPU, st.Requests)
		*ph.dst = &st
		if err := t.alive(); err != nil {
			return err
		}
	}
	if res.Ping.PerSecond > 0 && !res.Lookup.TimedOut && !res.Ping.TimedOut {
		ratio := res.Lookup.PerSecond / res.Ping.PerSecond
		res.LookupPingRatio = &ratio
	}
	return nil
}
