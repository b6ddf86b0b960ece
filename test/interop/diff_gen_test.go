package interop

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/url"
	"strings"
)

// Names the random sequences use: few, so that producers, topics and
// channels meet often.
var (
	topicPool   = []string{"t1", "t2", "t.3_-", "e1#ephemeral", "e2#ephemeral"}
	badTopics   = []string{"bad!", "a#b", strings.Repeat("a", 65), "#ephemeral", "x#ephemeral#ephemeral"}
	channelPool = []string{"c1", "c2", "c#ephemeral", "d#ephemeral"}
	badChannels = []string{"bad!", "c#eph", strings.Repeat("c", 65)}
	// nodes for /topic/tombstone: the producers' broadcast_address:http_port
	// in v1.3.0's form, in nsqadmin's (net.JoinHostPort) form for the IPv6
	// one, and nodes no producer has.
	nodePool = []string{"127.0.0.1:4151", "127.0.0.1:5151", "node-a:4151", "node-a:5151",
		"::1:4151", "[::1]:4151", "[::1]:5151", "nope:1", "127.0.0.1"}
)

// gen makes a random sequence. It looks at v1.3.0's side of the pair to
// choose steps that fit (IDENTIFY on a fresh connection, REGISTER on an
// identified one), so a seed gives the same sequence on every run.
type gen struct {
	r *rand.Rand
	p *pair
}

func (g *gen) pick(xs ...string) string { return xs[g.r.Intn(len(xs))] }
func (g *gen) chance(pct int) bool      { return g.r.Intn(100) < pct }

func (g *gen) next() step {
	switch x := g.r.Intn(100); {
	case x < 45:
		return g.tcp()
	case x < 75:
		return g.read()
	case x < 93:
		return g.admin()
	default:
		return g.malformed()
	}
}

func (g *gen) tcp() step {
	slot := g.r.Intn(numSlots)
	c := g.p.sides[ref].conns[slot]
	switch {
	case c == nil || c.ended:
		return g.connect(slot)
	case !c.identified:
		return g.unidentified(slot)
	default:
		return g.identified(slot)
	}
}

func (g *gen) connect(slot int) step {
	st := step{kind: stepConnect, slot: slot, data: "  V1"}
	switch x := g.r.Intn(100); {
	case x < 88:
	case x < 92:
		st.data, st.answers = "  V1PING\n", 1
	case x < 94:
		st.data, st.answers = "  V2", 1
	case x < 96:
		st.data, st.answers = "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1
	case x < 98:
		st.data, st.halfClose = "  V", true
	default:
		st.data, st.halfClose = "", true
	}
	return st
}

func (g *gen) unidentified(slot int) step {
	st := step{kind: stepSend, slot: slot, answers: 1}
	switch x := g.r.Intn(100); {
	case x < 65:
		st.data = identifyCmd(g.identity())
	case x < 72:
		st.data, st.answers = identifyCmd(g.identity())+g.register()+"\n", 2
	case x < 75:
		body := g.identity()
		st.data = "IDENTIFY extra words\n" + sizeBytes(int32(len(body))) + body
	case x < 92:
		return g.badIdentify(slot)
	default:
		st.data = g.pick("PING\n", "REGISTER t1 c1\n", "UNREGISTER t1\n", "FOO\n")
	}
	return st
}

// identity is a valid IDENTIFY body, from a small set of producers, with
// now and then what encoding/json lets through: upper-case keys, unknown
// keys, keys in another order, and the topology fields of newer nsqd.
func (g *gen) identity() string {
	key := func(k string) string {
		if g.chance(4) {
			return strings.ToUpper(k)
		}
		return k
	}
	str := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	fields := []string{
		fmt.Sprintf("%q:%s", key("broadcast_address"), str(g.pick("127.0.0.1", "127.0.0.1", "node-a", "::1"))),
		fmt.Sprintf("%q:%s", key("hostname"), str(g.pick("h1", "h2", "h<3>", "ü"))),
		fmt.Sprintf("%q:%s", key("tcp_port"), g.pick("4150", "5150")),
		fmt.Sprintf("%q:%s", key("http_port"), g.pick("4151", "5151")),
		fmt.Sprintf("%q:%s", key("version"), str(g.pick("1.3.0", "1.2.1"))),
	}
	if g.chance(8) {
		fields = append(fields, `"topology_zone":"z1"`)
	}
	if g.chance(5) {
		fields = append(fields, `"topology_region":"r1"`)
	}
	if g.chance(3) {
		fields = append(fields, `"topology_zone":7`)
	}
	if g.chance(5) {
		fields = append(fields, `"extra":[1,{"a":null}]`)
	}
	if g.chance(3) {
		fields = append(fields, `"remote_address":"1.2.3.4:5"`)
	}
	if g.chance(20) {
		g.r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	}
	return "{" + strings.Join(fields, ",") + "}"
}

func (g *gen) badIdentify(slot int) step {
	st := step{kind: stepSend, slot: slot, answers: 1}
	switch g.r.Intn(13) {
	case 0:
		st.data = identifyCmd("") // a declared size of 0
	case 1:
		st.data = identifyCmd("abc")
	case 2:
		st.data = identifyCmd("null")
	case 3:
		st.data = identifyCmd("{}")
	case 4:
		st.data = identifyCmd(`{"broadcast_address":"a","tcp_port":1,"http_port":2}`)
	case 5:
		st.data = identifyCmd(`{"broadcast_address":"a","tcp_port":1.5,"http_port":2,"version":"1"}`)
	case 6:
		st.data = identifyCmd(`{"broadcast_address":"a","tcp_port":"1","http_port":2,"version":"1"}`)
	case 7:
		st.data = identifyCmd(g.identity() + " x")
	case 8:
		st.data = identifyCmd("[]")
	case 9:
		st.data, st.halfClose = "IDENTIFY\n\x00\x00", true
	case 10:
		st.data, st.halfClose = "IDENTIFY\n"+sizeBytes(50)+`{"broadcast_address"`, true
	case 11:
		st.data, st.halfClose, st.oversize = "IDENTIFY\n"+sizeBytes(70000)+"{", true, 70000
	default:
		st.data = identifyCmd(`{"broadcast_address":"a","tcp_port":0,"http_port":2,"version":"1"}`)
	}
	return st
}

func (g *gen) topic() string {
	if g.chance(6) {
		return g.pick(badTopics...)
	}
	return g.pick(topicPool...)
}

// channel is "" (none) half the time.
func (g *gen) channel() string {
	switch x := g.r.Intn(100); {
	case x < 50:
		return ""
	case x < 95:
		return g.pick(channelPool...)
	default:
		return g.pick(badChannels...)
	}
}

func (g *gen) register() string {
	return strings.TrimSpace("REGISTER " + g.topic() + " " + g.channel())
}

func (g *gen) unregister() string {
	return strings.TrimSpace("UNREGISTER " + g.topic() + " " + g.channel())
}

func (g *gen) identified(slot int) step {
	st := step{kind: stepSend, slot: slot, answers: 1}
	switch x := g.r.Intn(100); {
	case x < 30:
		st.data = g.register() + "\n"
	case x < 50:
		st.data = g.unregister() + "\n"
	case x < 57:
		st.data = "PING\n"
	case x < 66:
		n := 2 + g.r.Intn(3)
		st.answers = n
		for range n {
			st.data += g.pick(g.register(), g.register(), g.unregister(), "PING") + "\n"
		}
	case x < 73:
		return step{kind: stepClose, slot: slot}
	case x < 77:
		// A last line without "\n" is never executed.
		st.data, st.halfClose = g.pick(g.register(), g.unregister(), "PING\n"+g.register()), true
	case x < 79:
		st.data, st.halfClose = "", true
	case x < 86:
		st.data = g.pick("FOO\n", "\n", "ping\n", "IDENTIFY\n", "REGISTER\n", "UNREGISTER\n",
			"REGISTER  t1\n", "REGISTER\tt1\n", "REGISTER t1  c1\n", "UNREGISTER t1 c1 \n")
	case x < 94:
		st.data = g.pick("  ", "\t", "") + g.register() + g.pick(" ", "\r", " extra words", "") + "\n"
	case x < 96:
		// v1.3.0 executes a long line, we refuse it: only lines that
		// change nothing in v1.3.0's registry, so that closing its
		// connection afterwards brings both to the same state.
		st.longLine = true
		st.data = g.pick("PING"+strings.Repeat(" ", maxCommandLine), strings.Repeat("X", maxCommandLine+10)) + "\n"
	default:
		st.data = identifyCmd(g.identity()) // IDENTIFY again
	}
	return st
}

// topicParam is a topic query parameter for the read routes.
func (g *gen) topicParam() string {
	switch x := g.r.Intn(100); {
	case x < 72:
		return "topic=" + url.QueryEscape(g.pick(topicPool...))
	case x < 85:
		return "topic=*"
	case x < 89:
		return "topic=nope"
	case x < 92:
		return "topic="
	case x < 95:
		return "topic=t%31"
	default:
		return "topic=" + url.QueryEscape(g.pick(badTopics...))
	}
}

func (g *gen) read() step {
	switch x := g.r.Intn(100); {
	case x < 4:
		return get("/ping")
	case x < 8:
		return get("/info")
	case x < 22:
		return get("/topics")
	case x < 36:
		return get("/channels?" + g.topicParam())
	case x < 70:
		return get("/lookup?" + g.topicParam())
	case x < 84:
		return get("/nodes")
	default:
		return get("/debug")
	}
}

func (g *gen) admin() step {
	q := url.Values{}
	switch x := g.r.Intn(100); {
	case x < 18:
		q.Set("topic", g.topic())
		return post("/topic/create?" + q.Encode())
	case x < 30:
		q.Set("topic", g.pick(append(topicPool, "*", "nope")...))
		return post("/topic/delete?" + q.Encode())
	case x < 50:
		q.Set("topic", g.topic())
		q.Set("channel", g.pick(append(channelPool, badChannels[0])...))
		return post("/channel/create?" + q.Encode())
	case x < 65:
		q.Set("topic", g.topic())
		q.Set("channel", g.pick(append(channelPool, "nope")...))
		return post("/channel/delete?" + q.Encode())
	default:
		node := g.pick(nodePool...)
		topic := g.pick(topicPool...)
		if g.chance(20) {
			if ok, err := g.p.wildcardTombstoneDeterministic(node); err == nil && ok {
				topic = "*"
			}
		}
		q.Set("topic", topic)
		q.Set("node", node)
		return post("/topic/tombstone?" + q.Encode())
	}
}

// malformedHTTP are requests no well-behaved client sends, or sends wrong.
var malformedHTTP = []step{
	get("/lookup?topic=%zz"),
	get("/lookup?topic=t1;x"),
	get("/channels?topic=%zz"),
	get("/lookup"),
	get("/channels"),
	get("/lookup?topic=t1&topic=t2"),
	get("/lookup?topic"),
	get("/topics?%zz"),
	get("/nodes?x=%zz"),
	get("/ping?x=%zz"),
	post("/lookup?topic=t1"),
	get("/topic/create?topic=t1"),
	{kind: stepHTTP, method: "PUT", path: "/ping"},
	{kind: stepHTTP, method: "DELETE", path: "/nodes"},
	{kind: stepHTTP, method: "HEAD", path: "/ping"},
	{kind: stepHTTP, method: "HEAD", path: "/lookup?topic=t1"},
	{kind: stepHTTP, method: "OPTIONS", path: "/lookup"},
	{kind: stepHTTP, method: "OPTIONS", path: "/topic/create"},
	{kind: stepHTTP, method: "OPTIONS", path: "/nope"},
	get("/nope"),
	get("/"),
	get("/lookup/x"),
	get("/lookup/?topic=t1"),
	post("/topic/create/?topic=t1"),
	get("/LOOKUP?topic=t1"),
	get("/Topics"),
	get("//lookup?topic=t1"),
	get("/a/../lookup?topic=t1"),
	get("/debug/"),
	post("/topic/create"),
	post("/topic/create?topic=bad!"),
	post("/topic/create?topic=%zz"),
	post("/channel/create?topic=t1"),
	post("/channel/create?channel=c1"),
	post("/channel/create?topic=bad!&channel=bad!"),
	post("/channel/create?topic=t1&channel=bad!"),
	post("/channel/delete?topic=t1&channel=nope"),
	post("/channel/delete?topic=t1"),
	post("/topic/delete"),
	post("/topic/delete?topic=%zz"),
	post("/topic/tombstone?topic=t1"),
	post("/topic/tombstone?node=127.0.0.1:4151"),
	post("/topic/tombstone?topic=t1&node=127.0.0.1:4151;"),
	{kind: stepHTTP, method: "POST", path: "/topic/create?topic=t9", body: "ignored body"},
	{kind: stepHTTP, method: "POST", path: "/channel/create?topic=t9&channel=c9", body: `{"topic":"x"}`},
}

func (g *gen) malformed() step {
	return malformedHTTP[g.r.Intn(len(malformedHTTP))]
}
