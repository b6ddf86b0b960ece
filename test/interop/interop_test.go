package interop

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
)

const (
	topicA = "topic_a" // produced by the first nsqd only
	topicB = "topic_b" // produced by both

	// registerTimeout bounds how long nsqd may take to register a topic it
	// just created (it does so at once, over its open connection).
	registerTimeout = 10 * time.Second
)

// cluster is a daemon with two nsqd registered: the first produces topicA
// and topicB, the second topicB.
type cluster struct {
	lookupd *lookupd
	n1, n2  *nsqdNode
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	d := startLookupd(t)
	c := &cluster{
		lookupd: d,
		n1:      startNSQD(t, d.TCPAddr),
		n2:      startNSQD(t, d.TCPAddr),
	}
	c.n1.publish(t, topicA, "a1")
	c.n1.publish(t, topicB, "b1")
	c.n2.publish(t, topicB, "b2")
	c.waitRegistered(t, registerTimeout)
	return c
}

// waitRegistered waits until the daemon's /lookup, /topics and /nodes show
// exactly what the cluster's two nsqd registered.
func (c *cluster) waitRegistered(t *testing.T, timeout time.Duration) {
	t.Helper()
	d := c.lookupd
	eventually(t, timeout, func() (bool, string) {
		a, _, err := d.lookup(topicA)
		if err != nil {
			return false, err.Error()
		}
		if ok, why := producersAre(a.Producers, c.n1); !ok {
			return false, "/lookup?topic=" + topicA + ": " + why
		}
		b, _, err := d.lookup(topicB)
		if err != nil {
			return false, err.Error()
		}
		if ok, why := producersAre(b.Producers, c.n1, c.n2); !ok {
			return false, "/lookup?topic=" + topicB + ": " + why
		}
		topics, err := d.topics()
		if err != nil {
			return false, err.Error()
		}
		if !sameSet(topics, []string{topicA, topicB}) {
			return false, fmt.Sprintf("/topics: %q, want %q and %q", topics, topicA, topicB)
		}
		nodes, err := d.nodes()
		if err != nil {
			return false, err.Error()
		}
		return nodesAre(nodes, map[*nsqdNode][]string{
			c.n1: {topicA, topicB},
			c.n2: {topicB},
		})
	})
}

// nodesAre reports whether /nodes lists exactly the given nsqd, each with
// exactly the given topics, none tombstoned.
func nodesAre(nodes []nodeInfo, want map[*nsqdNode][]string) (bool, string) {
	if len(nodes) != len(want) {
		return false, fmt.Sprintf("/nodes: %d producers %+v, want %d", len(nodes), nodes, len(want))
	}
	for n, topics := range want {
		i := slices.IndexFunc(nodes, func(p nodeInfo) bool { return p.TCPPort == n.TCPPort })
		if i < 0 {
			return false, fmt.Sprintf("/nodes: no producer with tcp_port %d in %+v", n.TCPPort, nodes)
		}
		p := nodes[i]
		if err := checkProducer(p.producerInfo, n); err != nil {
			return false, fmt.Sprintf("/nodes: %+v: %v", p, err)
		}
		if !sameSet(p.Topics, topics) {
			return false, fmt.Sprintf("/nodes: producer %d has topics %q, want %q", n.TCPPort, p.Topics, topics)
		}
		if len(p.Tombstones) != len(p.Topics) || slices.Contains(p.Tombstones, true) {
			return false, fmt.Sprintf("/nodes: producer %d has tombstones %v for topics %q, want all false", n.TCPPort, p.Tombstones, p.Topics)
		}
	}
	return true, ""
}

// TestRegistration: two nsqd register their topics; /lookup, /topics and
// /nodes show them with their real ports and version.
func TestRegistration(t *testing.T) {
	t.Parallel()
	c := startCluster(t)

	// An unknown topic is still a 404 next to registered ones.
	if _, code, _ := c.lookupd.lookup("nope"); code != http.StatusNotFound {
		t.Errorf("/lookup?topic=nope: status %d, want 404", code)
	}
}

// TestDiscovery: a go-nsq consumer finds both nsqd through the daemon and
// receives every message published on either.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	const perNode = 10 // per nsqd, before and again after the consumer connects

	var (
		mu   sync.Mutex
		got  = map[string]int{}
		want []string
	)
	publish := func(round string) {
		for i := range perNode {
			for j, n := range []*nsqdNode{c.n1, c.n2} {
				body := fmt.Sprintf("%s-%d-%d", round, j+1, i)
				n.publish(t, topicB, body)
				want = append(want, body)
			}
		}
	}
	publish("before")
	startConsumer(t, topicB, "discovery", func(m *nsq.Message) {
		mu.Lock()
		got[string(m.Body)]++
		mu.Unlock()
	}, func(cons *nsq.Consumer) error {
		return cons.ConnectToNSQLookupd(c.lookupd.HTTPAddr)
	})
	// The consumer's channel only exists once it subscribed on both nodes.
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := c.lookupd.lookup(topicB)
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(a.Channels, "discovery"), fmt.Sprintf("/lookup channels %q", a.Channels)
	})
	publish("after")

	eventually(t, 20*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		var missing []string
		for _, body := range want {
			if got[body] == 0 {
				missing = append(missing, body)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d of %d messages not received: %q", len(missing), len(want), missing)
	})

	chans, err := c.lookupd.channels(topicB)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(chans, "discovery") {
		t.Errorf("/channels?topic=%s: %q, want it to list %q", topicB, chans, "discovery")
	}
}

// TestChannelPrecreation: a channel created over the daemon's HTTP API is
// created by an nsqd when it creates the topic: nsqd asks the daemon's
// /channels at the address the daemon gave in its IDENTIFY answer.
func TestChannelPrecreation(t *testing.T) {
	t.Parallel()
	d := startLookupd(t)
	n := startNSQD(t, d.TCPAddr)

	// Wait until nsqd holds the daemon's IDENTIFY answer: a topic created
	// after nsqd shows in /nodes is registered over the connection whose
	// answer nsqd has already stored.
	eventually(t, registerTimeout, func() (bool, string) {
		nodes, err := d.nodes()
		if err != nil {
			return false, err.Error()
		}
		return len(nodes) == 1, fmt.Sprintf("/nodes: %+v", nodes)
	})
	n.publish(t, "warmup", "w")
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := d.lookup("warmup")
		if err != nil {
			return false, err.Error()
		}
		return producersAre(a.Producers, n)
	})

	d.post(t, "/channel/create?topic=topic_c&channel=pre")
	n.publish(t, "topic_c", "c1")

	eventually(t, registerTimeout, func() (bool, string) {
		var stats struct {
			Topics []struct {
				TopicName string `json:"topic_name"`
				Channels  []struct {
					ChannelName string `json:"channel_name"`
					Depth       int64  `json:"depth"`
				} `json:"channels"`
			} `json:"topics"`
		}
		if _, err := getJSON("http://"+n.HTTPAddr+"/stats?format=json&topic=topic_c", &stats); err != nil {
			return false, err.Error()
		}
		if len(stats.Topics) != 1 {
			return false, fmt.Sprintf("nsqd stats: %+v, want topic_c only", stats.Topics)
		}
		for _, ch := range stats.Topics[0].Channels {
			if ch.ChannelName == "pre" {
				// Created before the first message, so the channel holds it.
				return ch.Depth == 1, fmt.Sprintf("channel pre has depth %d, want 1", ch.Depth)
			}
		}
		return false, fmt.Sprintf("nsqd did not create channel pre: %+v", stats.Topics[0])
	})
}

// TestEphemeralChannel: when the last consumer of an ephemeral channel
// leaves, nsqd deletes the channel and the daemon forgets it.
func TestEphemeralChannel(t *testing.T) {
	t.Parallel()
	d := startLookupd(t)
	n := startNSQD(t, d.TCPAddr)
	const topic, channel = "topic_t", "x#ephemeral"

	cons := startConsumer(t, topic, channel, func(*nsq.Message) {}, func(cons *nsq.Consumer) error {
		return cons.ConnectToNSQD(n.TCPAddr)
	})
	eventually(t, registerTimeout, func() (bool, string) {
		chans, err := d.channels(topic)
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(chans, channel), fmt.Sprintf("/channels?topic=%s: %q", topic, chans)
	})

	stopConsumer(t, cons)
	eventually(t, registerTimeout, func() (bool, string) {
		chans, err := d.channels(topic)
		if err != nil {
			return false, err.Error()
		}
		return !slices.Contains(chans, channel), fmt.Sprintf("/channels?topic=%s: %q", topic, chans)
	})
	// The topic itself is not ephemeral: it stays.
	topics, err := d.topics()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(topics, topic) {
		t.Errorf("/topics: %q, want it to keep %q", topics, topic)
	}
}

// TestNSQAdmin: nsqadmin reads nodes and topics from the daemon, and its
// tombstone, delete and create actions take effect on the daemon.
func TestNSQAdmin(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	d := c.lookupd

	api := startNSQAdmin(t, d.HTTPAddr, "", "", "")

	// Reading: nodes and topics as nsqadmin sees them through the daemon.
	var nodes struct {
		Nodes []struct {
			TCPPort int `json:"tcp_port"`
			Topics  []struct {
				Topic      string `json:"topic"`
				Tombstoned bool   `json:"tombstoned"`
			} `json:"topics"`
		} `json:"nodes"`
		Message string `json:"message"`
	}
	if _, err := getJSON(api+"/nodes", &nodes); err != nil {
		t.Fatal(err)
	}
	if nodes.Message != "" {
		t.Errorf("/api/nodes message %q, want none", nodes.Message)
	}
	wantTopics := map[int][]string{c.n1.TCPPort: {topicA, topicB}, c.n2.TCPPort: {topicB}}
	if len(nodes.Nodes) != 2 {
		t.Fatalf("/api/nodes: %+v, want the 2 nsqd", nodes.Nodes)
	}
	for _, node := range nodes.Nodes {
		var topics []string
		for _, tp := range node.Topics {
			topics = append(topics, tp.Topic)
			if tp.Tombstoned {
				t.Errorf("/api/nodes: node %d topic %s tombstoned", node.TCPPort, tp.Topic)
			}
		}
		want, ok := wantTopics[node.TCPPort]
		if !ok || !sameSet(topics, want) {
			t.Errorf("/api/nodes: node tcp_port %d with topics %q; want nodes/topics %v", node.TCPPort, topics, wantTopics)
		}
	}

	adminListsTopicsAB(t, api)

	// Tombstoning the second nsqd for topicB hides it from /lookup.
	adminTombstonesN2(t, api, c)

	// Deleting topicA removes it from /topics.
	doRequest(t, http.MethodDelete, api+"/topics/"+topicA, nil)
	eventually(t, registerTimeout, func() (bool, string) {
		tps, err := d.topics()
		if err != nil {
			return false, err.Error()
		}
		if slices.Contains(tps, topicA) {
			return false, fmt.Sprintf("/topics: %q still lists %s", tps, topicA)
		}
		if _, code, _ := d.lookup(topicA); code != http.StatusNotFound {
			return false, fmt.Sprintf("/lookup?topic=%s: status %d, want 404", topicA, code)
		}
		return true, ""
	})

	// Creating a topic and channel creates them on the daemon.
	doRequest(t, http.MethodPost, api+"/topics", map[string]string{"topic": "topic_d", "channel": "chan_d"})
	tps, err := d.topics()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tps, "topic_d") {
		t.Errorf("/topics: %q, want it to list topic_d", tps)
	}
	chans, err := d.channels("topic_d")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(chans, []string{"chan_d"}) {
		t.Errorf("/channels?topic=topic_d: %q, want [chan_d]", chans)
	}
	var lookup struct {
		Channels  []string `json:"channels"`
		Producers []any    `json:"producers"`
	}
	if _, err := getJSON(d.url("/lookup?topic=topic_d"), &lookup); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lookup.Channels, []string{"chan_d"}) || len(lookup.Producers) != 0 {
		t.Errorf("/lookup?topic=topic_d: %+v, want channels [chan_d] and producers []", lookup)
	}
}
