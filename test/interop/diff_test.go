package interop

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The differential test: nsqlookupd v1.3.0 (built by TestMain from the
// github.com/nsqio/nsq module) and ours run side by side, and the same
// sequences of steps (TCP registration traffic of several producers, every
// HTTP route, malformed input of both kinds) go to both. Every answer is
// compared after diff_norm_test.go's normalisation. Random sequences come
// from seeds; sequences that once diverged are kept as named cases in
// diffRegressions.
//
//	go test -run 'TestDiff$' -args -diff.seqs=5000        # longer
//	go test -run 'TestDiff$' -args -diff.seed=1234 -v     # replay one seed, every step logged

var (
	diffSeqs  = flag.Int("diff.seqs", 400, "number of random sequences TestDiff runs")
	diffSeed  = flag.Int64("diff.seed", 0, "run only the random sequence of this seed, logging each step")
	diffSteps = flag.Int("diff.steps", 60, "random steps in each sequence (before its closing checks)")
	diffBase  = flag.Int64("diff.base", 0, "first seed of TestDiff's run (0: from the clock)")
)

// diffArgs are the flags both daemons run with: nothing expires during a
// sequence (expiry is tested with a fake clock in the nsqlookupd package),
// and nothing is logged (a divergence report says all; a crash still shows).
var diffArgs = []string{
	"--broadcast-address=127.0.0.1",
	"--inactive-producer-timeout=1h",
	"--tombstone-lifetime=1h",
	"--log-level=fatal",
}

const (
	ref  = 0 // v1.3.0
	ours = 1

	numSlots = 4 // producer connections a sequence may hold at once

	frameTimeout = 3 * time.Second // for an answer to come (they take < 1 ms)
)

var sideNames = [2]string{"v1.3.0", "ours"}

// TestDiff runs -diff.seqs random sequences, on two pairs of daemons at once.
func TestDiff(t *testing.T) {
	t.Parallel()
	if *diffSeed != 0 {
		p := newPair(t)
		p.verbose = true
		if d := p.runRandom(*diffSeed); d != nil {
			t.Fatal(d)
		}
		return
	}
	base := *diffBase
	if base == 0 {
		base = time.Now().UnixNano() % 1e9
	}
	t.Logf("seeds %d to %d (replay one with -args -diff.seed=N)", base, base+int64(*diffSeqs)-1)
	const workers = 2
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first *divergence
		steps int
	)
	start := time.Now()
	pairs := make([]*pair, workers)
	for w := range pairs {
		pairs[w] = newPair(t)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := pairs[w]
			for i := w; i < *diffSeqs; i += workers {
				mu.Lock()
				stop := first != nil
				mu.Unlock()
				if stop {
					return
				}
				d := p.runRandom(base + int64(i))
				mu.Lock()
				steps += p.steps
				if d != nil && (first == nil || d.seed < first.seed) {
					first = d
				}
				mu.Unlock()
				if d != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
	t.Logf("%d sequences, %d steps compared in %v", *diffSeqs, steps, time.Since(start).Round(time.Millisecond))
	used := map[string]int{}
	for _, p := range pairs {
		for k, n := range p.used {
			used[k] += n
		}
	}
	for _, k := range slices.Sorted(maps.Keys(used)) {
		t.Logf("allowance applied %5d times: %s", used[k], k)
	}
}

// TestDiffRegressions runs the sequences that once diverged.
func TestDiffRegressions(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	for _, rc := range diffRegressions {
		t.Run(rc.name, func(t *testing.T) {
			p.t = t
			p.verbose = testing.Verbose()
			var d *divergence
			if rc.seed != 0 {
				d = p.runRandom(rc.seed)
			} else {
				d = p.run(0, rc.steps, nil)
			}
			if d != nil {
				t.Error(d)
			}
		})
	}
}

// divergence is the first step whose answers differ.
type divergence struct {
	seed    int64
	index   int
	history []string // the steps before it
	step    step
	raw     [2]string
	norm    [2]string
	note    string
}

func (d *divergence) Error() string {
	var b strings.Builder
	if d.seed != 0 {
		fmt.Fprintf(&b, "seed %d (replay: go test -run 'TestDiff$' -args -diff.seed=%d -diff.steps=%d), ", d.seed, d.seed, *diffSteps)
	}
	fmt.Fprintf(&b, "step %d: %s\n", d.index, d.step)
	if d.note != "" {
		fmt.Fprintf(&b, "%s\n", d.note)
	}
	for i, name := range sideNames {
		fmt.Fprintf(&b, "--- %s answered:\n%s\n--- %s normalised:\n%s\n", name, d.raw[i], name, d.norm[i])
	}
	b.WriteString("--- steps before:\n")
	from := max(0, len(d.history)-25)
	if from > 0 {
		fmt.Fprintf(&b, "  (%d steps omitted)\n", from)
	}
	for i := from; i < len(d.history); i++ {
		fmt.Fprintf(&b, "  %3d %s\n", i, d.history[i])
	}
	return b.String()
}

// stepKind says what a step does.
type stepKind int

const (
	stepConnect stepKind = iota // dial the slot's connection and send data (the magic)
	stepSend                    // send data on the slot's connection and read the answers
	stepClose                   // close the slot's connection
	stepHTTP                    // an HTTP request
)

// step is one action, done to both daemons.
type step struct {
	kind stepKind
	slot int
	data string // TCP: the bytes to send
	// answers is how many framed answers data asks for; an error answer
	// ends them (the daemon closes the connection).
	answers int
	// halfClose closes the write side after data; every answer up to the
	// daemon's close is read.
	halfClose bool
	longLine  bool  // data is one line longer than our maxCommandLine
	oversize  int32 // data is an IDENTIFY declaring this body size, over our cap

	method, path, body string // HTTP
}

func (st step) String() string {
	switch st.kind {
	case stepConnect:
		return fmt.Sprintf("tcp[%d] connect, send %s", st.slot, quote(st.data))
	case stepSend:
		s := fmt.Sprintf("tcp[%d] send %s", st.slot, quote(st.data))
		if st.halfClose {
			s += " then half-close"
		}
		return s
	case stepClose:
		return fmt.Sprintf("tcp[%d] close", st.slot)
	}
	s := st.method + " " + st.path
	if st.body != "" {
		s += " with body " + quote(st.body)
	}
	return s
}

func quote(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%q... (%d bytes)", s[:120], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// pair is a v1.3.0 daemon and ours, driven in lockstep.
type pair struct {
	t       *testing.T
	sides   [2]*side
	verbose bool
	steps   int            // steps compared by the last run
	used    map[string]int // how often each allowance applied, over all runs
}

// side is one daemon with the test's connections to it.
type side struct {
	n     int // ref or ours
	d     *lookupd
	tcp   int
	http  int
	conns [numSlots]*tconn
	gens  [numSlots]int     // connections made on each slot
	names map[string]string // a connection's address as the daemon sees it -> label
}

// tconn is one producer connection.
type tconn struct {
	c          *net.TCPConn
	r          *bufio.Reader
	id         string // its local address: the daemon's peer id for it
	identified bool   // an IDENTIFY was answered with JSON
	ended      bool   // closed by either end
}

var diffHTTP = &http.Client{
	Timeout: 5 * time.Second,
	// Redirects are answers to compare, not to follow.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{t: t, used: map[string]int{}}
	for i, bin := range []string{refBin, lookupdBin} {
		d := startDaemon(t, bin, diffArgs...)
		s := &side{n: i, d: d, names: map[string]string{}}
		s.tcp, s.http = port(d.TCPAddr), port(d.HTTPAddr)
		p.sides[i] = s
	}
	t.Cleanup(func() {
		for _, s := range p.sides {
			for _, c := range s.conns {
				if c != nil {
					c.c.Close()
				}
			}
		}
	})
	return p
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

// runRandom runs the random sequence of seed.
func (p *pair) runRandom(seed int64) *divergence {
	g := &gen{r: rand.New(rand.NewSource(seed)), p: p}
	return p.run(seed, nil, g)
}

// run runs steps (or, with g, *diffSteps random ones) and the closing
// checks on a clean pair, and leaves the pair clean. It returns the first
// divergence.
func (p *pair) run(seed int64, steps []step, g *gen) (d *divergence) {
	p.steps = 0
	var history []string
	defer func() {
		if err := p.reset(); err != nil && d == nil {
			d = &divergence{seed: seed, index: len(history), history: history, note: "resetting the pair: " + err.Error()}
		}
	}()
	n := len(steps)
	if g != nil {
		n = *diffSteps
	}
	var closing []step
	for i := 0; ; i++ {
		var st step
		switch {
		case i < n && g != nil:
			st = g.next()
		case i < n:
			st = steps[i]
		default:
			if closing == nil {
				closing = p.closingSteps()
			}
			if i-n >= len(closing) {
				return nil
			}
			st = closing[i-n]
		}
		if p.verbose {
			p.t.Logf("step %d: %s", i, st)
		}
		if d := p.exec(st); d != nil {
			d.seed, d.index, d.history, d.step = seed, i, history, st
			return d
		}
		history = append(history, st.String())
		p.steps++
	}
}

// closingSteps read the whole state, close every connection and read it
// again, so that a sequence never ends on a difference no step looked at.
func (p *pair) closingSteps() []step {
	reads := []step{
		get("/debug"), get("/nodes"), get("/topics"), get("/channels?topic=*"),
	}
	for _, topic := range topicPool {
		reads = append(reads, get("/lookup?topic="+url.QueryEscape(topic)))
	}
	steps := append([]step{}, reads...)
	for slot, c := range p.sides[ref].conns {
		if c != nil && !c.ended {
			steps = append(steps, step{kind: stepClose, slot: slot})
		}
	}
	return append(steps, reads...)
}

func get(path string) step  { return step{kind: stepHTTP, method: "GET", path: path} }
func post(path string) step { return step{kind: stepHTTP, method: "POST", path: path} }

// exec runs st on both daemons and compares the answers.
func (p *pair) exec(st step) *divergence {
	if st.kind == stepHTTP {
		return p.execHTTP(st)
	}
	// Which registrations the producer holds in v1.3.0 before the step:
	// if the step ends its connection, the ephemeral ones it leaves empty
	// are reconciled (see reconcileDisconnect).
	var held map[registration]bool
	if c := p.sides[ref].conns[st.slot]; c != nil && c.identified && !c.ended {
		var err error
		if held, err = p.sides[ref].registrationsOf(c.id); err != nil {
			return &divergence{note: err.Error()}
		}
	}
	var answers [2]tcpAnswer
	var wasOpen [2]bool
	for i, s := range p.sides {
		c := s.conns[st.slot]
		wasOpen[i] = c != nil && !c.ended
		answers[i] = s.execTCP(st)
	}
	d := p.compareTCP(st, answers)

	// Bring both daemons to rest before the next step: a connection that
	// ended has been cleaned up in both.
	if st.longLine {
		// Our refusal closed ours (renderTCP's allowance): close v1.3.0's
		// connection too, so both registries agree again.
		if c := p.sides[ref].conns[st.slot]; c != nil && !c.ended {
			c.c.Close()
			c.ended = true
		}
	}
	for i, s := range p.sides {
		c := s.conns[st.slot]
		if c == nil || !c.ended || !wasOpen[i] && st.kind != stepConnect {
			continue
		}
		if c.identified {
			if err := s.waitGone(c.id); err != nil && d == nil {
				d = &divergence{note: err.Error()}
			}
		}
		if i == ref && c.identified {
			held = applyCommands(held, st.data, answers[ref].frames)
			if err := p.reconcileDisconnect(held); err != nil && d == nil {
				d = &divergence{note: "reconciling v1.3.0 after a disconnect: " + err.Error()}
			}
		}
	}
	return d
}

// execTCP runs a TCP step on one side.
func (s *side) execTCP(st step) tcpAnswer {
	switch st.kind {
	case stepConnect:
		if c := s.conns[st.slot]; c != nil && !c.ended {
			return tcpAnswer{err: "the slot's connection is still open (fix the sequence)"}
		}
		conn, err := net.DialTimeout("tcp", s.d.TCPAddr, frameTimeout)
		if err != nil {
			return tcpAnswer{err: err.Error()}
		}
		c := &tconn{c: conn.(*net.TCPConn), r: bufio.NewReader(conn), id: conn.LocalAddr().String()}
		s.conns[st.slot] = c
		// The kernel may give a new connection the address of one that
		// has gone: the label is the slot's connection count.
		s.names[c.id] = fmt.Sprintf("P%d.%d", st.slot, s.gens[st.slot])
		s.gens[st.slot]++
		return s.sendAndRead(c, st)
	case stepSend:
		c := s.conns[st.slot]
		if c == nil || c.ended {
			return tcpAnswer{err: "no open connection on this slot"}
		}
		return s.sendAndRead(c, st)
	default: // stepClose
		if c := s.conns[st.slot]; c != nil && !c.ended {
			c.c.Close()
			c.ended = true
		}
		return tcpAnswer{}
	}
}

// sendAndRead writes st.data and reads the answers it asks for: st.answers
// frames, fewer if one is an error (then the close too), or, after a
// half-close, everything up to the daemon's close.
func (s *side) sendAndRead(c *tconn, st step) tcpAnswer {
	var a tcpAnswer
	if st.data != "" {
		c.c.SetWriteDeadline(time.Now().Add(frameTimeout))
		if _, err := io.WriteString(c.c, st.data); err != nil {
			a.err = "write: " + err.Error()
		}
	}
	if st.halfClose {
		c.c.CloseWrite()
	}
	for st.halfClose || len(a.frames) < st.answers {
		f, err := readFrame(c)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
				a.closed = true
			} else {
				a.err = "read: " + err.Error()
			}
			break
		}
		a.frames = append(a.frames, f)
		if strings.HasPrefix(f, "E_") {
			// Every error ends the connection: check that it does.
			if _, err := readFrame(c); err == nil {
				a.err = "a frame after an error"
			} else if errors.Is(err, io.EOF) || isReset(err) {
				a.closed = true
			} else {
				a.err = "not closed after an error: " + err.Error()
			}
			break
		}
	}
	if a.closed {
		c.c.Close()
		c.ended = true
	}
	if !c.identified {
		for _, f := range a.frames {
			if strings.HasPrefix(f, "{") {
				c.identified = true
			}
		}
	}
	return a
}

func isReset(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

func readFrame(c *tconn) (string, error) {
	c.c.SetReadDeadline(time.Now().Add(frameTimeout))
	var size [4]byte
	if _, err := io.ReadFull(c.r, size[:]); err != nil {
		return "", err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		return "", fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

func (p *pair) compareTCP(st step, answers [2]tcpAnswer) *divergence {
	var d divergence
	for i, s := range p.sides {
		z := &norm{side: i, names: s.names, tcp: s.tcp, http: s.http, used: p.used}
		d.raw[i] = (&norm{side: -1}).renderTCP(step{}, answers[i])
		d.norm[i] = z.renderTCP(st, answers[i])
	}
	if d.norm[ref] != d.norm[ours] {
		return &d
	}
	return nil
}

// execHTTP runs an HTTP step on both sides and compares the answers.
func (p *pair) execHTTP(st step) *divergence {
	q, _ := url.ParseQuery(strings.TrimPrefix(st.path[strings.Index(st.path+"?", "?"):], "?"))
	isPath := func(path string) bool { return strings.HasPrefix(st.path, path+"?") || st.path == path }
	topic := ""
	if v := q["topic"]; len(v) > 0 {
		topic = v[0]
	}
	tombstone := st.method == "POST" && isPath("/topic/tombstone") && q.Has("node")
	if tombstone && topic == "*" {
		if ok, err := p.wildcardTombstoneDeterministic(q.Get("node")); err != nil {
			return &divergence{note: err.Error()}
		} else if !ok {
			return &divergence{note: "the sequence is not deterministic: v1.3.0 would tombstone a random topic of a producer with several (fix the sequence)"}
		}
	}

	var answers [2]httpAnswer
	for i, s := range p.sides {
		answers[i] = s.do(st)
	}
	if tombstone && answers[ref].status == http.StatusOK {
		if plain, ok := bracketNode(q.Get("node")); ok {
			p.used["IPv6 tombstone node sent to v1.3.0 in its form too"]++
			v := url.Values{"topic": {topic}, "node": {plain}}
			if a := p.sides[ref].do(post("/topic/tombstone?" + v.Encode())); a.status != http.StatusOK {
				return &divergence{note: fmt.Sprintf("v1.3.0: tombstone with the plain node form: %d %s", a.status, a.body)}
			}
		}
	}

	// /lookup?topic=*: which producers v1.3.0 may leave out.
	var drop map[string]bool
	if st.method == "GET" && isPath("/lookup") && topic == "*" && answers[ref].status == http.StatusOK && answers[ours].status == http.StatusOK {
		nodes, err := p.sides[ref].nodes()
		if err != nil {
			return &divergence{note: err.Error()}
		}
		mixed := lookupStarAllowance(nodes, p.sides[ref].names)
		var refListed map[string]bool
		if refListed, err = producersListed(answers[ref].body, p.sides[ref].names); err != nil {
			return &divergence{note: err.Error()}
		}
		drop = map[string]bool{}
		for l := range mixed {
			if !refListed[l] {
				drop[l] = true
			}
		}
	}

	var d divergence
	dropped := false
	for _, i := range []int{ours, ref} { // ours first: see norm.skipLength
		s, a := p.sides[i], answers[i]
		d.raw[i] = fmt.Sprintf("HTTP %d %v\n%s", a.status, a.header, a.body)
		if a.err != "" {
			d.raw[i] = "error: " + a.err
		}
		z := &norm{side: i, names: s.names, tcp: s.tcp, http: s.http, skipLength: dropped, used: p.used}
		var dr map[string]bool
		if i == ours {
			dr = drop
		}
		var err error
		if d.norm[i], err = z.renderHTTP(st, a, dr); err != nil {
			d.note = err.Error()
		}
		dropped = z.dropped
	}
	if d.norm[ref] != d.norm[ours] || d.note != "" {
		return &d
	}
	return nil
}

// do sends an HTTP request and reads the whole answer.
func (s *side) do(st step) httpAnswer {
	var body io.Reader
	if st.body != "" {
		body = strings.NewReader(st.body)
	}
	req, err := http.NewRequest(st.method, "http://"+s.d.HTTPAddr+st.path, body)
	if err != nil {
		return httpAnswer{err: err.Error()}
	}
	resp, err := diffHTTP.Do(req)
	if err != nil {
		return httpAnswer{err: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpAnswer{err: "reading the body: " + err.Error()}
	}
	return httpAnswer{
		status:  resp.StatusCode,
		header:  resp.Header,
		chunked: len(resp.TransferEncoding) > 0,
		close:   resp.Close,
		body:    string(b),
	}
}

// get GETs path from the side, requiring a 200.
func (s *side) get(path string) (string, error) {
	a := s.do(get(path))
	if a.err != "" {
		return "", fmt.Errorf("%s GET %s: %s", sideNames[s.n], path, a.err)
	}
	if a.status != http.StatusOK {
		return "", fmt.Errorf("%s GET %s: %d %s", sideNames[s.n], path, a.status, a.body)
	}
	return a.body, nil
}

func (s *side) nodes() ([]nodeEntry, error) {
	body, err := s.get("/nodes")
	if err != nil {
		return nil, err
	}
	return parseNodes(body)
}

// producersListed returns the labels of the producers of a /lookup answer.
func producersListed(body string, names map[string]string) (map[string]bool, error) {
	var a struct {
		Producers []struct {
			RemoteAddress string `json:"remote_address"`
		} `json:"producers"`
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return nil, fmt.Errorf("/lookup %q: %v", body, err)
	}
	listed := map[string]bool{}
	for _, p := range a.Producers {
		listed[names[p.RemoteAddress]] = true
	}
	return listed, nil
}

// registrationsOf returns the registrations that hold the producer id, by
// the side's /debug.
func (s *side) registrationsOf(id string) (map[registration]bool, error) {
	body, err := s.get("/debug")
	if err != nil {
		return nil, err
	}
	var data map[string][]struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &data); err != nil {
		return nil, fmt.Errorf("%s /debug %q: %v", sideNames[s.n], body, err)
	}
	held := map[registration]bool{}
	for k, list := range data {
		for _, e := range list {
			if e.ID == id {
				r, err := parseRegistration(k)
				if err != nil {
					return nil, err
				}
				held[r] = true
			}
		}
	}
	return held, nil
}

// waitGone waits until the side's /debug no longer lists the producer id:
// its connection's end has been handled.
func (s *side) waitGone(id string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, err := s.get("/debug")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"`+id+`"`) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still lists producer %s 5s after its connection ended: %s", sideNames[s.n], id, body)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reset closes every connection, deletes every topic and checks that both
// daemons are empty again.
func (p *pair) reset() error {
	for _, s := range p.sides {
		for slot, c := range s.conns {
			if c == nil {
				continue
			}
			if !c.ended {
				c.c.Close()
				c.ended = true
			}
			if c.identified {
				if err := s.waitGone(c.id); err != nil {
					return err
				}
			}
			s.conns[slot] = nil
		}
		clear(s.names)
		s.gens = [numSlots]int{}
		if a := s.do(post("/topic/delete?topic=*")); a.status != http.StatusOK {
			return fmt.Errorf("%s: /topic/delete?topic=*: %d %s %s", sideNames[s.n], a.status, a.body, a.err)
		}
		for path, want := range map[string]string{
			"/debug":            `{}`,
			"/topics":           `{"topics":[]}`,
			"/channels?topic=*": `{"channels":[]}`,
			"/nodes":            `{"producers":[]}`,
		} {
			if got, err := s.get(path); err != nil || got != want {
				return fmt.Errorf("%s: after reset, %s is %q (%v), want %s", sideNames[s.n], path, got, err, want)
			}
		}
	}
	return nil
}

// identifyCmd is an IDENTIFY command with its body.
func identifyCmd(body string) string {
	return "IDENTIFY\n" + sizeBytes(int32(len(body))) + body
}

func sizeBytes(n int32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return string(b[:])
}
