package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lookupd/nsqlookupd/bench/internal/harness"
)

// session is one target daemon being measured, and what its phases share.
type session struct {
	o   *options
	t   *harness.Daemon
	h   *httpClient
	nm  *naming
	exp expectation
	res *result

	lookupPaths []string // "/lookup?topic=" each topic
	fleets      []*fleet // closed with the session
	// nodesTimedOut: a /nodes request timed out. The daemon may still be
	// working on it (v1.3.0 at the xlarge preset), so /nodes is not asked
	// again: the other figures would measure a second one too.
	nodesTimedOut bool
	blockProfile  string // file for the block profile under churn, or ""
}

// openSession starts binary with flags, its log named by tag; res receives
// the figures. The caller defers close.
func openSession(ctx context.Context, o *options, binary, tag string, flags []string, res *result) (s *session, err error) {
	s = &session{o: o, res: res}
	logger.Printf("%s: starting", binary)
	logPath := ""
	if o.logDir != "" {
		logPath = filepath.Join(o.logDir, fmt.Sprintf("%s-%s.log", tag, filepath.Base(binary)))
	}
	if s.t, err = harness.Start(ctx, binary, flags, logPath, o.startupTimeout); err != nil {
		return nil, err
	}
	res.TCPAddr, res.HTTPAddr, res.PID = s.t.TCPAddr, s.t.HTTPAddr, s.t.PID
	s.h = newHTTPClient(s.t.HTTPAddr, o.clients+2, o.httpTimeout)
	s.h.secret = o.secret
	return s, nil
}

// close stops a started daemon and closes the fleets. After a failure
// (*err) it tells whether the daemon died, and keeps its log.
func (s *session) close(ctx context.Context, err *error) {
	t := s.t
	if *err != nil {
		if aerr := t.Alive(); aerr != nil {
			*err = fmt.Errorf("%w; %v", *err, aerr)
		}
		t.KeepLog = ctx.Err() == nil // an interrupted run's log is not interesting
	}
	// Kill a started daemon before closing the producer connections, so
	// it does not spend time unregistering them.
	for _, f := range s.fleets {
		f.stopKeepalive()
	}
	t.Stop()
	for _, f := range s.fleets {
		f.close()
	}
	s.h.close()
	if t.KeepLog {
		logger.Printf("%s: daemon log kept in %s", s.res.Target, t.LogPath)
	}
}

// checkIdentify checks an IDENTIFY answer: the daemon must announce the
// addresses it was given.
func (s *session) checkIdentify(a identity) error {
	_, tcpPort, _ := net.SplitHostPort(s.t.TCPAddr)
	_, httpPort, _ := net.SplitHostPort(s.t.HTTPAddr)
	if a.BroadcastAddress != "127.0.0.1" || strconv.Itoa(a.TCPPort) != tcpPort || strconv.Itoa(a.HTTPPort) != httpPort {
		return fmt.Errorf("%+v, want broadcast_address 127.0.0.1, tcp_port %s, http_port %s", a, tcpPort, httpPort)
	}
	return nil
}

// lookupPath returns the /lookup of a random topic.
func (s *session) lookupPath(r *rand.Rand) string { return s.lookupPaths[r.IntN(len(s.lookupPaths))] }

// noteNodes records that a series of /nodes requests timed out.
func (s *session) noteNodes(n *seqStats) {
	if n != nil && n.TimedOut {
		s.nodesTimedOut = true
	}
}

// measure runs every phase against one target, filling res as it goes.
func measure(ctx context.Context, o *options, index int, binary string, res *result) (err error) {
	modes := o.registerModes
	for _, mode := range modes[:len(modes)-1] { // each into a daemon of its own
		ph, err := registrationTrial(ctx, o, index, binary, mode)
		if err != nil {
			return fmt.Errorf("%s registration: %w", mode, err)
		}
		res.RegisterModes = append(res.RegisterModes, ph)
	}
	flags, profile := blockProfileFlags(ctx, o, index, binary)
	s, err := openSession(ctx, o, binary, strconv.Itoa(index), flags, res)
	if err != nil {
		return err
	}
	defer s.close(ctx, &err)
	s.blockProfile = profile
	cpu, began := startCPU(s.t.PID), time.Now()
	defer func() {
		_, res.OtherCPU = cpu.stop()
		res.Seconds = time.Since(began).Seconds()
	}()
	steps := []func(context.Context) error{s.fill, s.timedPhases, s.listings, s.afterLoad, s.finish}
	if o.keptWait > 0 {
		steps = append(steps, s.leave)
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// blockProfileFlags returns the flags to start binary with, and the file
// its block profile goes to ("" for none).
func blockProfileFlags(ctx context.Context, o *options, index int, binary string) ([]string, string) {
	if o.blockProfile == "" {
		return o.daemonFlags, ""
	}
	path := blockProfilePath(o.blockProfile, index, len(o.binaries))
	if hasFlag(ctx, binary, "block-profile-rate") {
		return append(slices.Clone(o.daemonFlags), "--block-profile-rate="+strconv.Itoa(o.blockProfileRate)), path
	}
	logger.Printf("%s: no --block-profile-rate flag: no block profile for it", binary)
	return o.daemonFlags, ""
}

// hasFlag reports whether the -h output of binary lists the flag name.
func hasFlag(ctx context.Context, binary, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, binary, "-h").CombinedOutput() // -h may exit 2
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && strings.TrimLeft(f[0], "-") == name && strings.HasPrefix(f[0], "-") {
			return true
		}
	}
	return false
}

// registrationTrial measures registration in mode alone, on a fresh daemon
// started from binary for it and stopped after.
func registrationTrial(ctx context.Context, o *options, index int, binary, mode string) (ph *registerPhase, err error) {
	s, err := openSession(ctx, o, binary, strconv.Itoa(index)+"-"+mode, o.daemonFlags, &result{Target: binary})
	if err != nil {
		return nil, err
	}
	defer s.close(ctx, &err)
	if ph, err = s.register(ctx, mode); err != nil {
		return nil, err
	}
	return ph, s.t.Alive()
}

// register connects the fleet and registers it in mode.
func (s *session) register(ctx context.Context, mode string) (*registerPhase, error) {
	o, name := s.o, s.res.Target
	s.nm = newNaming(fmt.Sprintf("%04x", rand.Uint32()&0xffff), o.workload)
	assign := assignTopics(o.Producers, o.Topics, o.PerTopic)
	s.exp = expectation{w: o.workload, nm: s.nm, assign: assign}
	s.lookupPaths = make([]string, len(s.nm.topics))
	for i, topic := range s.nm.topics {
		s.lookupPaths[i] = "/lookup?topic=" + topic // names need no escaping
	}
	logger.Printf("%s: connecting %d producers (run id %s)", name, o.Producers, s.nm.runID)
	f, ist, err := connectFleet(ctx, s.t.TCPAddr, s.nm, 0, assign, o.concurrency, o.ioTimeout, s.checkIdentify)
	if err != nil {
		return nil, err
	}
	s.fleets = append(s.fleets, f)
	f.startKeepalive(o.pingInterval)
	s.res.Identify = &ist

	logger.Printf("%s: registering (%d REGISTER commands, %s)", name, o.registers(), mode)
	cpu := startCPU(s.t.PID)
	ph, err := f.registerAll(ctx, s.nm, o.concurrency, mode)
	if err != nil {
		return nil, err
	}
	if ph.Commands != o.registers() {
		return nil, fmt.Errorf("sent %d REGISTER commands, want %d", ph.Commands, o.registers())
	}
	ph.DaemonCPU, _ = cpu.stop()
	ph.CPUPer1k = per1k(ph.DaemonCPU, ph.Commands)
	return ph, nil
}

// fill registers the fleet into the measured daemon (the last of
// -register-modes), with its RSS before and after, and verifies the answers.
func (s *session) fill(ctx context.Context) error {
	res := s.res
	var info struct {
		Version string `json:"version"`
	}
	if err := s.h.getJSON(ctx, "/info", &info); err != nil {
		return err
	}
	res.Version = info.Version
	res.Memory.IdleKiB, _ = harness.MemKiB(s.t.PID)
	ph, err := s.register(ctx, s.o.registerModes[len(s.o.registerModes)-1])
	if err != nil {
		return err
	}
	res.Register = ph
	res.RegisterModes = append(res.RegisterModes, ph)
	res.Memory.RegisteredKiB, _ = harness.MemKiB(s.t.PID)

	logger.Printf("%s: verifying answers", res.Target)
	vst, err := verify(ctx, s.h, s.exp, s.o.verify, s.o.clients, s.o.seed)
	if err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	res.Verify = &vst
	return nil
}

// timedPhases loads /lookup, /channels and /ping in turn from o.clients
// clients, recording throughput, latency and CPU in res.
func (s *session) timedPhases(ctx context.Context) error {
	o, res := s.o, s.res
	channels := make([]string, len(s.nm.topics))
	for i, topic := range s.nm.topics {
		channels[i] = "/channels?topic=" + topic
	}
	phases := []struct {
		dst  **phaseStats
		path func(r *rand.Rand) string
	}{
		{&res.Lookup, s.lookupPath},
		{&res.Channels, func(r *rand.Rand) string { return channels[r.IntN(len(channels))] }},
		{&res.Ping, func(*rand.Rand) string { return "/ping" }},
	}
	for i, ph := range phases {
		name := []string{"/lookup", "/channels", "/ping"}[i]
		logger.Printf("%s: load on %s", res.Target, name)
		spec := loadSpec{clients: o.clients, duration: o.duration, requests: o.requests, seed: o.seed + uint64(i) + 1, path: ph.path}
		cpu := startCPU(s.t.PID)
		st, err := runLoad(ctx, s.h, spec)
		if err != nil {
			return fmt.Errorf("%s load: %w", name, err)
		}
		st.Path = name
		st.DaemonCPU, _ = cpu.stop()
		st.CPUPer1k = per1k(st.DaemonCPU, st.Requests)
		*ph.dst = &st
		if err := s.t.Alive(); err != nil {
			return err
		}
	}
	if res.Ping.PerSecond > 0 && !res.Lookup.TimedOut && !res.Ping.TimedOut {
		ratio := res.Lookup.PerSecond / res.Ping.PerSecond
		res.LookupPingRatio = &ratio
	}
	return nil
}

// listings times /topics, then verifies and times /nodes, one request at a
// time; /nodes last, for it can take v1.3.0 an hour at the xlarge preset.
func (s *session) listings(ctx context.Context) error {
	res := s.res
	logger.Printf("%s: timing /topics", res.Target)
	topics, err := sequential(ctx, s.h, "/topics", s.o.samples)
	if err != nil {
		return err
	}
	res.Topics = &topics
	logger.Printf("%s: verifying and timing /nodes", res.Target)
	ok, err := tolerate(ctx, s.exp.checkNodes(ctx, s.h), &res.Verify.TimedOut, "/nodes")
	switch {
	case err != nil:
		return fmt.Errorf("verification: %w", err)
	case !ok:
		res.Nodes = &seqStats{Path: "/nodes", TimedOut: true}
		s.nodesTimedOut = true
	default:
		res.Verify.Nodes = true
		nodes, err := sequential(ctx, s.h, "/nodes", s.o.samples)
		if err != nil {
			return err
		}
		res.Nodes = &nodes
		s.noteNodes(&nodes)
	}
	return s.t.Alive()
}

// afterLoad runs the churn phase, or without one re-checks a few topics:
// the producers must still be registered and active after the load.
func (s *session) afterLoad(ctx context.Context) error {
	if s.o.churnConns > 0 {
		return s.churnPhase(ctx)
	}
	return s.recheck(ctx, s.exp)
}

// recheck verifies up to 20 topics again, exactly (e).
func (s *session) recheck(ctx context.Context, e expectation) error {
	n, err := e.checkTopics(ctx, s.h, min(20, s.o.verify), s.o.clients, s.o.seed+100)
	ok, err := tolerate(ctx, err, &s.res.Verify.TimedOut, "recheck")
	if err != nil {
		return fmt.Errorf("verification after the load: %w", err)
	}
	if ok {
		s.res.Verify.RecheckTopics = n
	}
	return nil
}

// finish takes the memory figures at the end and checks that every
// connection is still alive, and the daemon too.
func (s *session) finish(ctx context.Context) error {
	s.res.Memory.EndKiB, s.res.Memory.PeakKiB = harness.MemKiB(s.t.PID)
	_, s.res.Memory.HarnessPeakKiB = harness.MemKiB(os.Getpid())
	for _, f := range s.fleets {
		if err := f.checkAlive(ctx, s.o.concurrency); err != nil {
			return err
		}
	}
	return s.t.Alive()
}

// leave closes every producer's connection, waits until /nodes lists none,
// forces a collection (/debug/pprof/heap?gc=1, served by v1.3.0 too) and
// records the lowest RSS of the next -kept-wait: what the daemon keeps once
// its fleet has gone.
func (s *session) leave(ctx context.Context) error {
	for _, f := range s.fleets {
		f.close()
	}
	for gone := time.Now().Add(s.o.ioTimeout); ; time.Sleep(100 * time.Millisecond) {
		var nodes struct{ Producers []json.RawMessage }
		if err := s.h.getJSON(ctx, "/nodes", &nodes); err != nil {
			return fmt.Errorf("waiting for the producers to leave: %w", err)
		} else if len(nodes.Producers) == 0 {
			break
		} else if time.Now().After(gone) {
			return fmt.Errorf("%d producers still listed %v after they left", len(nodes.Producers), s.o.ioTimeout)
		}
	}
	if _, err := s.h.getDiscard(ctx, "/debug/pprof/heap?gc=1"); err != nil {
		return err
	}
	for end := time.Now().Add(s.o.keptWait); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if rss, _ := harness.MemKiB(s.t.PID); rss != nil && (s.res.Memory.KeptKiB == nil || *rss < *s.res.Memory.KeptKiB) {
			s.res.Memory.KeptKiB = rss
		}
	}
	return ctx.Err()
}
