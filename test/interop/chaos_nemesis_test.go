package interop

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The chaos test's nemesis plays a schedule on the cluster: it starts
// each fault at its time (later if its target is still busy with the
// previous one, so the order never changes), heals it after its duration,
// and records both in the history the checker reads.

// event is one line of the fault log.
type event struct {
	at   time.Time
	f    fault
	heal bool
	note string // what happened beyond the plan, if anything
}

// tombstoneRec is a tombstone the nemesis saw applied: lookupd's /nodes
// showed the nsqd's connection (remote address) tombstoned in topic.
type tombstoneRec struct {
	f          fault
	remote     string
	sent, recv time.Time // the POST's request and answer
}

// history is what the nemesis did, for the checker and the report.
type history struct {
	mu     sync.Mutex
	begin  time.Time // the start of the fault phase
	events []event
	active map[int]fault // timed faults in progress, by ID
	// last start or heal of a fault on each target, last heal alone,
	// and whether a lookupd is stopped or dead (not to be asked)
	lastNSQD, lastHealNSQD       [chaosNSQDs]time.Time
	lastLookupd, lastHealLookupd [chaosLookupds]time.Time
	down                         [chaosLookupds]bool
	upSince                      [chaosLookupds]time.Time
	tombs                        []tombstoneRec
	failures                     []string // what the nemesis could not do
}

func newHistory(begin time.Time) *history {
	h := &history{begin: begin, active: map[int]fault{}}
	for j := range h.upSince {
		h.upSince[j] = begin
	}
	return h
}

// timed reports whether the fault occupies its target until it heals
// (tombstones and topic operations do not).
func (f fault) timed() bool { return f.Kind < tombstone }

// onNSQD reports whether the fault acts on nsqd f.NSQD.
func (f fault) onNSQD() bool { return !f.Kind.onLookupd() && f.Kind != tombstone }

func (h *history) record(f fault, heal bool, note string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	h.events = append(h.events, event{at: now, f: f, heal: heal, note: note})
	switch {
	case f.Kind.onLookupd():
		h.lastLookupd[f.Lookupd] = now
		if heal {
			h.lastHealLookupd[f.Lookupd] = now
			h.down[f.Lookupd] = false
			h.upSince[f.Lookupd] = now
		} else {
			h.down[f.Lookupd] = true
		}
	case f.onNSQD():
		h.lastNSQD[f.NSQD] = now
		if heal {
			h.lastHealNSQD[f.NSQD] = now
		}
	}
	if f.timed() {
		if heal {
			delete(h.active, f.ID)
		} else {
			h.active[f.ID] = f
		}
	}
	return now
}

func (h *history) start(f fault) { h.record(f, false, "") }
func (h *history) heal(f fault)  { h.record(f, true, "") }
func (h *history) note(f fault, format string, a ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, event{at: time.Now(), f: f, note: fmt.Sprintf(format, a...)})
}

// fail records that the nemesis could not play f as planned: a
// violation, since the cluster then is not what the checker assumes.
func (h *history) fail(f fault, err error) {
	h.note(f, "FAILED: %v", err)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures = append(h.failures, fmt.Sprintf("%s: %v", f, err))
}

// histState is a copy of the history's state at one moment.
type histState struct {
	at                           time.Time
	nEvents                      int
	active                       []fault
	lastNSQD, lastHealNSQD       [chaosNSQDs]time.Time
	lastLookupd, lastHealLookupd [chaosLookupds]time.Time
	down                         [chaosLookupds]bool
	upSince                      [chaosLookupds]time.Time
	tombs                        []tombstoneRec
}

func (h *history) snapshot() histState {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := histState{
		at: time.Now(), nEvents: len(h.events),
		lastNSQD: h.lastNSQD, lastHealNSQD: h.lastHealNSQD,
		lastLookupd: h.lastLookupd, lastHealLookupd: h.lastHealLookupd,
		down: h.down, upSince: h.upSince,
		tombs: slices.Clone(h.tombs),
	}
	for _, f := range h.active {
		s.active = append(s.active, f)
	}
	slices.SortFunc(s.active, func(a, b fault) int { return a.ID - b.ID })
	return s
}

// eventsSince returns the events from index n on.
func (h *history) eventsSince(n int) []event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events[min(n, len(h.events)):])
}

// log writes the fault log up to now, one event a line; outcome, if not
// nil, adds what the checker made of a heal.
func (h *history) log(outcome func(id int) string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, e := range h.events {
		what := "start"
		switch {
		case e.heal:
			what = "heal "
		case e.note != "":
			what = "     "
		}
		fmt.Fprintf(&b, "  %7.1fs  %s %s", e.at.Sub(h.begin).Seconds(), what, e.f)
		if e.note != "" {
			b.WriteString(": " + e.note)
		}
		if e.heal && outcome != nil {
			if o := outcome(e.f.ID); o != "" {
				b.WriteString(": " + o)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// nemesis plays faults on a cluster.
type nemesis struct {
	c    *chaosCluster
	h    *history
	seed uint64
	// one token per target: a fault holds its target's until it heals
	nsqdTok    [chaosNSQDs]chan struct{}
	lookupdTok [chaosLookupds]chan struct{}
	wg         sync.WaitGroup
}

func newNemesis(c *chaosCluster, h *history, seed uint64) *nemesis {
	n := &nemesis{c: c, h: h, seed: seed}
	for i := range n.nsqdTok {
		n.nsqdTok[i] = make(chan struct{}, 1)
	}
	for j := range n.lookupdTok {
		n.lookupdTok[j] = make(chan struct{}, 1)
	}
	return n
}

// run plays the schedule and returns when every fault has healed.
func (n *nemesis) run(schedule []fault) {
	for _, f := range schedule {
		if d := time.Until(n.h.begin.Add(f.At)); d > 0 {
			time.Sleep(d)
		}
		var toks []chan struct{}
		switch {
		case f.Kind.onLookupd():
			toks = []chan struct{}{n.lookupdTok[f.Lookupd]}
		case f.Kind == tombstone:
			toks = []chan struct{}{n.lookupdTok[f.Lookupd], n.nsqdTok[f.NSQD]}
		default:
			toks = []chan struct{}{n.nsqdTok[f.NSQD]}
		}
		for _, tok := range toks {
			tok <- struct{}{} // waits while the target is busy
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.play(f, func() {
				for _, tok := range toks {
					<-tok
				}
			})
		}()
	}
	n.wg.Wait()
}

// play applies f, waits its duration and heals it; release frees its
// targets (a tombstone frees them before its lifetime runs out).
func (n *nemesis) play(f fault, release func()) {
	c, h := n.c, n.h
	switch f.Kind {
	case nsqdRestart:
		defer release()
		host := c.hosts[f.NSQD]
		h.start(f)
		if err := host.terminate(15 * time.Second); err != nil {
			h.fail(f, err)
			_ = host.signal(syscall.SIGKILL)
		}
		host.mu.Lock()
		exited := host.exited
		host.mu.Unlock()
		<-exited
		time.Sleep(f.Dur)
		if err := host.start(); err != nil {
			h.fail(f, err)
		}
		h.heal(f)
	case nsqdStop:
		defer release()
		host := c.hosts[f.NSQD]
		h.start(f)
		if err := host.signal(syscall.SIGSTOP); err != nil {
			h.fail(f, err)
		}
		time.Sleep(f.Dur)
		if err := host.signal(syscall.SIGCONT); err != nil {
			h.fail(f, err)
		}
		h.heal(f)
	case linkCut:
		defer release()
		ns := c.hosts[f.NSQD].ns
		h.start(f)
		if _, err := ipCmd("-n", ns.name, "link", "set", ns.nsIf, "down"); err != nil {
			h.fail(f, err)
		}
		time.Sleep(f.Dur)
		if _, err := ipCmd("-n", ns.name, "link", "set", ns.nsIf, "up"); err != nil {
			h.fail(f, err)
		}
		h.heal(f)
	case linkLossy:
		defer release()
		ns := c.hosts[f.NSQD].ns
		h.start(f)
		l, err := startLossyLink(ns.name, n.seed^uint64(f.ID)<<32)
		if err != nil {
			h.fail(f, err)
		}
		time.Sleep(f.Dur)
		if l != nil {
			if err := l.stop(); err != nil {
				h.fail(f, err)
			}
			dropped, delayed := l.counts()
			h.note(f, "%d packets dropped, %d delayed", dropped, delayed)
		}
		h.heal(f)
	case lookupdStop:
		defer release()
		l := c.lookupds[f.Lookupd]
		h.start(f)
		if err := syscall.Kill(l.getPID(), syscall.SIGSTOP); err != nil {
			h.fail(f, err)
		}
		time.Sleep(f.Dur)
		if err := syscall.Kill(l.getPID(), syscall.SIGCONT); err != nil {
			h.fail(f, err)
		}
		h.heal(f)
	case lookupdKill:
		defer release()
		l := c.lookupds[f.Lookupd]
		h.start(f)
		l.d.kill()
		time.Sleep(f.Dur)
		if err := l.d.start(); err != nil {
			h.fail(f, fmt.Errorf("restart on %s and %s: %v", l.d.TCPAddr, l.d.HTTPAddr, err))
		} else {
			l.setPID()
		}
		h.heal(f)
	case tombstone:
		n.tombstone(f, release)
	case topicCreate, topicDelete:
		defer release()
		host := c.hosts[f.NSQD]
		h.start(f)
		paths := []string{"/topic/delete?topic=" + f.Topic}
		if f.Kind == topicCreate {
			paths = []string{"/topic/create?topic=" + f.Topic, "/channel/create?topic=" + f.Topic + "&channel=" + dynChannel}
		}
		for _, p := range paths {
			if err := host.post(p); err != nil {
				h.fail(f, err)
			}
		}
		h.heal(f)
	}
}

// tombstone tombstones nsqd f.NSQD in f.Topic on lookupd f.Lookupd, then
// reads that lookupd's /nodes to learn which connection it applied to.
// The tombstone heals when its lifetime is over.
func (n *nemesis) tombstone(f fault, release func()) {
	c, h := n.c, n.h
	l := c.lookupds[f.Lookupd]
	h.start(f)
	sent := time.Now()
	err := postOK(chaosPostClient, l.d.url("/topic/tombstone?topic="+url.QueryEscape(f.Topic)+"&node="+url.QueryEscape(c.nodeAddr(f.NSQD))))
	recv := time.Now()
	if err != nil {
		release()
		h.fail(f, err)
		h.heal(f)
		return
	}
	nodes, err := l.d.nodes()
	release()
	if err != nil {
		h.fail(f, err)
		h.heal(f)
		return
	}
	remote := ""
	for _, e := range nodes {
		if e.BroadcastAddress != c.hosts[f.NSQD].ns.nsIP {
			continue
		}
		for k, topic := range e.Topics {
			if topic == f.Topic && k < len(e.Tombstones) && e.Tombstones[k] {
				remote = e.RemoteAddress
			}
		}
	}
	if remote == "" {
		// nsqd was not registered in the topic on this lookupd at that
		// moment (its connection being replaced, say): nothing to hide
		h.note(f, "not applied: %s not registered in %s on lookupd%d", c.hosts[f.NSQD].name(), f.Topic, f.Lookupd+1)
		h.heal(f)
		return
	}
	h.mu.Lock()
	h.tombs = append(h.tombs, tombstoneRec{f: f, remote: remote, sent: sent, recv: recv})
	h.mu.Unlock()
	h.note(f, "applied to connection %s", remote)
	time.Sleep(time.Until(recv.Add(f.Dur)))
	h.heal(f)
}

// postOK POSTs to u with client and wants 200.
func postOK(client *http.Client, u string) error {
	resp, err := client.Post(u, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s %s", u, resp.Status, body)
	}
	return nil
}
