package interop

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// This file holds what the differential test (diff_test.go) forgives: what
// v1.3.0 leaves random and the deliberate differences of
// docs/differences.md. Each allowance is written out where it applies,
// names its heading there and is as narrow as the difference; anything
// else is compared exactly.
//
// Random in v1.3.0:
//   - the order of every list (map order): normalise sorts them, and
//     checkSorted checks that ours came sorted (docs/differences.md,
//     Deterministic output);
//   - producers' addresses and the daemons' own ports: labels (normalise,
//     identifyAnswer); timestamps: a placeholder (normalise);
//   - which topic entry of a producer /lookup?topic=* and
//     /topic/tombstone?topic=* take: lookupStarAllowance, and
//     wildcardTombstoneDeterministic keeps the latter out of sequences.
//
// docs/differences.md:
//   - topology fields in ours only (normalise; Topology fields);
//   - our texts for an over-long line and an over-the-cap IDENTIFY size
//     (renderTCP; Hostile input, Error texts);
//   - Connection: close after a request with a body (renderHTTP; Hostile
//     input);
//   - IPv6 tombstone node forms (bracketNode: v1.3.0 also gets its own form;
//     IPv6 tombstones);
//   - ephemeral registrations a gone producer left empty, which v1.3.0
//     keeps (reconcileDisconnect removes them from v1.3.0 too; No leaks).

// Texts of our own bounds (docs/differences.md, Hostile input and Error
// texts: an IDENTIFY body size out of range and an over-long command line
// each get a framed E_BAD_BODY / E_INVALID error, then the close).
const (
	maxIdentifyBody = 64 << 10
	maxCommandLine  = 4096
	lineTooLong     = "E_INVALID command line longer than 4096 bytes"
	// refTruncatedBody is v1.3.0's answer to an IDENTIFY whose body ends
	// before its declared size: what it says to an over-the-cap size whose
	// body is cut short by a half-close, where we refuse the size itself.
	refTruncatedBody = "E_BAD_BODY IDENTIFY failed to read body"
)

// zeroTime is time.Time{}.UnixNano(): /debug's tombstoned_at for an entry
// never tombstoned (docs/wire.md, HTTP API), the one timestamp compared as
// it is.
const zeroTime = "-6795364578871345152"

// jnode is a JSON value that keeps the order of an object's keys, so that
// two answers are compared field order and all, as clients see them.
type jnode struct {
	kind byte // 'o' object, 'a' array, 's' string, 'l' other literal
	obj  []jfield
	arr  []*jnode
	str  string // a string's value
	lit  string // a literal's JSON text
}

type jfield struct {
	key string
	val *jnode
}

func parseJSON(b []byte) (*jnode, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	n, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return n, nil
}

func parseValue(dec *json.Decoder) (*jnode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &jnode{}
		switch v {
		case '{':
			n.kind = 'o'
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				val, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				n.obj = append(n.obj, jfield{key: k.(string), val: val})
			}
		case '[':
			n.kind = 'a'
			for dec.More() {
				val, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				n.arr = append(n.arr, val)
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &jnode{kind: 's', str: v}, nil
	case json.Number:
		return &jnode{kind: 'l', lit: string(v)}, nil
	case bool:
		return &jnode{kind: 'l', lit: strconv.FormatBool(v)}, nil
	default: // nil
		return &jnode{kind: 'l', lit: "null"}, nil
	}
}

func (n *jnode) String() string {
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func (n *jnode) write(b *strings.Builder) {
	switch n.kind {
	case 'o':
		b.WriteByte('{')
		for i, f := range n.obj {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(f.key)
			b.Write(k)
			b.WriteByte(':')
			f.val.write(b)
		}
		b.WriteByte('}')
	case 'a':
		b.WriteByte('[')
		for i, e := range n.arr {
			if i > 0 {
				b.WriteByte(',')
			}
			e.write(b)
		}
		b.WriteByte(']')
	case 's':
		s, _ := json.Marshal(n.str)
		b.Write(s)
	default:
		b.WriteString(n.lit)
	}
}

func (n *jnode) field(key string) *jnode {
	if n == nil || n.kind != 'o' {
		return nil
	}
	for _, f := range n.obj {
		if f.key == key {
			return f.val
		}
	}
	return nil
}

// norm normalises one side's answers to one step.
type norm struct {
	side  int               // ref or ours
	names map[string]string // a connection's address as the daemon sees it -> its label
	tcp   int               // the side's own ports, as its IDENTIFY answer gives them
	http  int
	// dropped is set when an allowance removed bytes from ours: then the
	// two bodies' lengths may differ, and neither side's is compared
	// (skipLength is set for v1.3.0's).
	dropped, skipLength bool
	used                map[string]int // how often each allowance applied; may be nil
}

// use counts one application of an allowance.
func (z *norm) use(allowance string) {
	if z.used != nil {
		z.used[allowance]++
	}
}

// label returns the label of a producer's address, or the address itself
// if it is no connection of this sequence (then it will not compare equal).
func (z *norm) label(addr string) string {
	if l, ok := z.names[addr]; ok {
		return l
	}
	return addr
}

// checkSorted reports where our answer breaks docs/differences.md,
// Deterministic output (every list sorted, where v1.3.0 gives map order):
// every list of names sorted, producers sorted by remote address (/debug:
// by id), a node's topics sorted.
// It runs on our raw answer, before normalise reorders anything.
func checkSorted(n *jnode, path string) error {
	switch n.kind {
	case 'o':
		for _, f := range n.obj {
			if err := checkSorted(f.val, path+"."+f.key); err != nil {
				return err
			}
		}
	case 'a':
		keys := make([]string, len(n.arr))
		for i, e := range n.arr {
			switch {
			case e.kind == 's':
				keys[i] = e.str
			case e.field("remote_address") != nil:
				keys[i] = e.field("remote_address").str
			case e.field("id") != nil:
				keys[i] = e.field("id").str
			case e.kind == 'l':
				return nil // tombstones: aligned with topics, not sorted
			}
			if err := checkSorted(e, path+"[]"); err != nil {
				return err
			}
		}
		if !slices.IsSorted(keys) {
			return fmt.Errorf("ours: %s not sorted: %q (docs/differences.md, Deterministic output)", path, keys)
		}
	}
	return nil
}

// normalise rewrites an answer's JSON in place: producer addresses become
// their labels, timestamps a placeholder, and every list is sorted, since
// v1.3.0 returns them in map order.
func (z *norm) normalise(n *jnode) {
	switch n.kind {
	case 'o':
		// /nodes: tombstones[i] is for topics[i]: sort the pairs by topic
		// first (the topics alone are sorted again below, to no effect).
		if tb, tp := n.field("tombstones"), n.field("topics"); tb != nil && tp != nil && tb.kind == 'a' && tp.kind == 'a' && len(tb.arr) == len(tp.arr) {
			idx := make([]int, len(tp.arr))
			for i := range idx {
				idx[i] = i
			}
			slices.SortStableFunc(idx, func(a, b int) int {
				return cmp.Or(strings.Compare(tp.arr[a].String(), tp.arr[b].String()),
					strings.Compare(tb.arr[a].String(), tb.arr[b].String()))
			})
			tbs, tps := slices.Clone(tb.arr), slices.Clone(tp.arr)
			for i, j := range idx {
				tb.arr[i], tp.arr[i] = tbs[j], tps[j]
			}
		}
		kept := n.obj[:0]
		for _, f := range n.obj {
			switch f.key {
			case "topology_zone", "topology_region":
				// docs/differences.md, Topology fields: ours keeps
				// the string topology_zone / topology_region of newer
				// nsqd's IDENTIFY and shows them in /lookup, /nodes
				// and /debug. v1.3.0 drops them.
				if z.side == ours && f.val.kind == 's' {
					z.dropped = true
					z.use("topology field not in v1.3.0's answer")
					continue
				}
			case "remote_address", "id":
				if f.val.kind == 's' {
					f.val.str = z.label(f.val.str)
				}
			case "last_update":
				f.val = &jnode{kind: 's', str: "<time>"}
			case "tombstoned_at":
				if f.val.lit != zeroTime {
					f.val = &jnode{kind: 's', str: "<time>"}
				}
			}
			z.normalise(f.val)
			kept = append(kept, f)
		}
		n.obj = kept
	case 'a':
		for _, e := range n.arr {
			z.normalise(e)
		}
		if len(n.arr) > 0 && n.arr[0].kind == 'l' {
			return // tombstones: ordered with their topics above
		}
		slices.SortStableFunc(n.arr, func(a, b *jnode) int { return strings.Compare(a.String(), b.String()) })
	}
}

// httpAnswer is what a client sees of an HTTP answer.
type httpAnswer struct {
	status  int
	header  http.Header
	chunked bool
	close   bool // the server said Connection: close (net/http takes the header out)
	body    string
	err     string // the request failed
}

// render normalises an HTTP answer to text. drop lists producers (by label)
// to remove from /lookup's producers (see lookupStarAllowance).
func (z *norm) renderHTTP(st step, a httpAnswer, drop map[string]bool) (string, error) {
	if a.err != "" {
		return "error: " + a.err, nil
	}
	body := a.body
	var sortErr error
	if n, err := parseJSON([]byte(a.body)); err == nil && (n.kind == 'o' || n.kind == 'a') {
		if z.side == ours {
			sortErr = checkSorted(n, "body")
		}
		z.normalise(n)
		if ps := n.field("producers"); len(drop) > 0 && ps != nil {
			kept := ps.arr[:0]
			for _, p := range ps.arr {
				if ra := p.field("remote_address"); ra != nil && drop[ra.str] {
					z.dropped = true
					z.use("/lookup?topic=* producer v1.3.0 left out")
					continue
				}
				kept = append(kept, p)
			}
			ps.arr = kept
		}
		body = n.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d\n", a.status)
	keys := make([]string, 0, len(a.header))
	for k := range a.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if a.close {
		if z.side == ours && st.body != "" {
			// docs/differences.md, Hostile input: a request that
			// carries a body gets its connection closed after the
			// answer.
			z.use("Connection: close after a request body")
		} else {
			b.WriteString("Connection: close\n")
		}
	}
	for _, k := range keys {
		switch {
		case k == "Date":
			continue // the time of the answer
		case k == "Content-Length" && (z.dropped || z.skipLength):
			continue // an allowance removed bytes from ours
		}
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(a.header[k], ", "))
	}
	if a.chunked && !z.dropped && !z.skipLength {
		b.WriteString("(chunked)\n")
	}
	b.WriteString("\n" + body)
	return b.String(), sortErr
}

// tcpAnswer is what a registration connection got back for a step.
type tcpAnswer struct {
	frames []string
	closed bool   // the daemon closed the connection after the frames
	err    string // an answer did not come, or the write failed
}

// renderTCP normalises a TCP answer to text.
func (z *norm) renderTCP(st step, a tcpAnswer) string {
	frames := slices.Clone(a.frames)
	if st.longLine && z.side == ours && len(frames) == 1 && frames[0] == lineTooLong && a.closed {
		// docs/differences.md, Hostile input: a command line over
		// 4096 bytes gets a framed E_INVALID, then the close. v1.3.0
		// reads the line whatever its length and executes it; we
		// refuse it. diff_test closes v1.3.0's connection after such
		// a step.
		z.use("line over 4096 bytes")
		return "<line over 4096 bytes refused>"
	}
	if st.longLine && z.side == ref {
		return "<line over 4096 bytes refused>"
	}
	for i, f := range frames {
		if strings.HasPrefix(f, "{") {
			frames[i] = z.identifyAnswer(f)
		}
		if st.oversize > maxIdentifyBody && z.side == ours &&
			f == fmt.Sprintf("E_BAD_BODY IDENTIFY body size %d out of range (1 to %d)", st.oversize, maxIdentifyBody) {
			// docs/differences.md, Hostile input: an IDENTIFY body
			// size over the cap gets a framed E_BAD_BODY, then the
			// close. We refuse the size before reading; v1.3.0
			// allocates it and fails when the half-closed body ends
			// short.
			frames[i] = refTruncatedBody
			z.use("IDENTIFY size over 64 KiB")
		}
	}
	var b strings.Builder
	for _, f := range frames {
		fmt.Fprintf(&b, "frame %q\n", f)
	}
	if a.closed {
		b.WriteString("closed\n")
	}
	if a.err != "" {
		b.WriteString("error: " + a.err + "\n")
	}
	return b.String()
}

// identifyAnswer normalises the JSON answer to IDENTIFY: the daemon's own
// ports become placeholders once checked against the ports it listens on.
func (z *norm) identifyAnswer(f string) string {
	n, err := parseJSON([]byte(f))
	if err != nil || n.kind != 'o' {
		return f
	}
	for _, fl := range n.obj {
		switch {
		case fl.key == "tcp_port" && fl.val.lit == strconv.Itoa(z.tcp):
			fl.val.lit = `"<its tcp port>"`
		case fl.key == "http_port" && fl.val.lit == strconv.Itoa(z.http):
			fl.val.lit = `"<its http port>"`
		}
	}
	return n.String()
}

// nodeEntry is a producer of /nodes, as the allowances read it.
type nodeEntry struct {
	RemoteAddress    string   `json:"remote_address"`
	BroadcastAddress string   `json:"broadcast_address"`
	HTTPPort         int      `json:"http_port"`
	Topics           []string `json:"topics"`
	Tombstones       []bool   `json:"tombstones"`
}

func parseNodes(body string) ([]nodeEntry, error) {
	var a struct {
		Producers []nodeEntry `json:"producers"`
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return nil, fmt.Errorf("/nodes %q: %v", body, err)
	}
	return a.Producers, nil
}

// lookupStarAllowance returns the producers ours may list in
// /lookup?topic=* that v1.3.0 did not: v1.3.0 takes, for each producer, the
// entry of whichever topic its map walk meets first and shows the producer
// if that entry is not tombstoned; we show it if any entry is not
// (docs/wire.md, HTTP API, gives the wildcard; docs/differences.md,
// Wildcards, gives the rule "each producer once, in its least tombstoned
// entry", ours where v1.3.0's pick is random). So a producer may be
// missing from v1.3.0's answer only if, by v1.3.0's own /nodes, it is
// tombstoned in some topic and not in another. Labels, by ref's names.
func lookupStarAllowance(refNodes []nodeEntry, names map[string]string) map[string]bool {
	mixed := map[string]bool{}
	for _, n := range refNodes {
		if slices.Contains(n.Tombstones, true) && slices.Contains(n.Tombstones, false) {
			mixed[names[n.RemoteAddress]] = true
		}
	}
	return mixed
}

// bracketNode returns the node form v1.3.0 builds ("::1:4151") for a node
// as nsqadmin names it with net.JoinHostPort ("[::1]:4151"), and whether
// node was one. docs/differences.md, IPv6 tombstones: /topic/tombstone?node=
// matches both forms; v1.3.0 only its own. diff_test sends v1.3.0 the plain
// form too, so that it tombstones what we do.
func bracketNode(node string) (string, bool) {
	if !strings.HasPrefix(node, "[") {
		return "", false
	}
	i := strings.LastIndex(node, "]:")
	if i < 0 || !strings.Contains(node[1:i], ":") {
		return "", false
	}
	return node[1:i] + node[i+1:], true
}

// registration is a registry key of /debug: "category:key:subkey".
type registration struct {
	category, key, subkey string
}

func parseRegistration(k string) (registration, error) {
	parts := strings.SplitN(k, ":", 3)
	if len(parts) != 3 {
		return registration{}, errors.New("bad /debug key " + k)
	}
	return registration{parts[0], parts[1], parts[2]}, nil
}

// isEphemeral reports whether a topic or channel name is ephemeral.
func isEphemeral(name string) bool {
	return strings.HasSuffix(name, "#ephemeral")
}

// applyCommands follows the producer's registrations (held, by v1.3.0's
// /debug before the step) through the step's commands that v1.3.0 answered
// OK, and returns those it held when its connection ended.
func applyCommands(held map[registration]bool, data string, frames []string) map[registration]bool {
	if held == nil {
		held = map[registration]bool{}
	}
	for i, cmd := range commandLines(data) {
		w := strings.Split(cmd, " ")
		if i < len(frames) && w[0] == "IDENTIFY" && strings.HasPrefix(frames[i], "{") {
			continue
		}
		if i >= len(frames) || frames[i] != "OK" {
			break
		}
		switch {
		case w[0] == "REGISTER" && len(w) >= 2:
			held[registration{"topic", w[1], ""}] = true
			if len(w) >= 3 && w[2] != "" {
				held[registration{"channel", w[1], w[2]}] = true
			}
		case w[0] == "UNREGISTER" && len(w) >= 3 && w[2] != "":
			delete(held, registration{"channel", w[1], w[2]})
		case w[0] == "UNREGISTER" && len(w) >= 2:
			for r := range held {
				if r.key == w[1] {
					delete(held, r)
				}
			}
		}
	}
	return held
}

// commandLines splits TCP data into its command lines as the daemon reads
// them: each trimmed, an IDENTIFY's body skipped; an unterminated last line
// is not a command.
func commandLines(data string) []string {
	var cmds []string
	for {
		i := strings.IndexByte(data, '\n')
		if i < 0 {
			return cmds
		}
		line := strings.TrimSpace(data[:i])
		data = data[i+1:]
		cmds = append(cmds, line)
		if strings.Split(line, " ")[0] == "IDENTIFY" {
			if len(data) < 4 {
				return cmds
			}
			n := int32(binary.BigEndian.Uint32([]byte(data[:4])))
			if n < 0 || int(n) > len(data)-4 {
				return cmds
			}
			data = data[4+n:]
		}
	}
}

// reconcileDisconnect applies docs/differences.md, No leaks (an ephemeral
// registration a gone producer leaves empty is removed; v1.3.0 keeps it)
// to v1.3.0: of the registrations the producer held when its connection
// ended, the ephemeral ones now empty are removed from v1.3.0 as we remove
// them, through a helper connection's UNREGISTER (which removes an
// ephemeral registration only if it is empty). Then both registries agree
// again, and later steps compare exactly.
func (p *pair) reconcileDisconnect(held map[registration]bool) error {
	var cmds []string
	for r := range held {
		switch {
		case r.category == "channel" && isEphemeral(r.subkey):
			cmds = append(cmds, "UNREGISTER "+r.key+" "+r.subkey)
		case r.category == "topic" && isEphemeral(r.key):
			cmds = append(cmds, "UNREGISTER "+r.key)
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	p.used["ephemeral registration of a gone producer removed from v1.3.0 (if empty)"] += len(cmds)
	s := p.sides[ref]
	conn, err := net.DialTimeout("tcp", s.d.TCPAddr, frameTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &tconn{c: conn.(*net.TCPConn), r: bufio.NewReader(conn), id: conn.LocalAddr().String()}
	body := `{"broadcast_address":"reconcile","hostname":"reconcile","tcp_port":1,"http_port":1,"version":"0"}`
	a := s.sendAndRead(c, step{data: "  V1" + identifyCmd(body) + strings.Join(cmds, "\n") + "\n", answers: 1 + len(cmds)})
	if a.err != "" || len(a.frames) != 1+len(cmds) || !strings.HasPrefix(a.frames[0], "{") {
		return fmt.Errorf("helper connection: %+v", a)
	}
	conn.Close()
	return s.waitGone(c.id)
}

// wildcardTombstoneDeterministic reports whether v1.3.0 would tombstone
// /topic/tombstone?topic=*&node=node the same on every run: it tombstones,
// of each producer, the entry of whichever topic its map walk meets first,
// so a matching producer must be in one topic at most. (We tombstone every
// entry: docs/differences.md, Wildcards.)
func (p *pair) wildcardTombstoneDeterministic(node string) (bool, error) {
	nodes, err := p.sides[ref].nodes()
	if err != nil {
		return false, err
	}
	plain, _ := bracketNode(node)
	for _, n := range nodes {
		v130 := fmt.Sprintf("%s:%d", n.BroadcastAddress, n.HTTPPort)
		if (v130 == node || v130 == plain) && len(n.Topics) > 1 {
			return false, nil
		}
	}
	return true, nil
}
