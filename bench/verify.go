package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
)

// lookupAnswer is the body of GET /lookup.
type lookupAnswer struct {
	Channels  []string     `json:"channels"`
	Producers []peerAnswer `json:"producers"`
}

type peerAnswer struct {
	RemoteAddress    string `json:"remote_address"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
}

type nodesAnswer struct {
	Producers []struct {
		peerAnswer
		Tombstones []bool   `json:"tombstones"`
		Topics     []string `json:"topics"`
	} `json:"producers"`
}

// expectation knows what the daemon must answer after registration.
type expectation struct {
	w  workload
	nm *naming
	// strict: the daemon was started by the harness, so it must hold
	// nothing but this run's topics and producers.
	strict bool
}

// verifyStats records what was checked.
type verifyStats struct {
	LookupTopics int  `json:"lookup_topics"`
	Nodes        bool `json:"nodes"`
	Topics       bool `json:"topics"`
	// RecheckTopics were verified again after the timed phases, which
	// shows the producers stayed registered and active under load.
	RecheckTopics int `json:"recheck_topics"`
}

// verify checks a sample of /lookup and /channels answers (sample topics,
// or every topic when sample < 0 or >= T), then /nodes and /topics. All
// lists are compared as sets: v1.3.0 returns them in map order.
func verify(ctx context.Context, h *httpClient, e expectation, sample, clients int, seed uint64) (verifyStats, error) {
	var st verifyStats
	n, err := e.checkTopics(ctx, h, sample, clients, seed)
	if err != nil {
		return st, err
	}
	st.LookupTopics = n
	if err := e.checkNodes(ctx, h); err != nil {
		return st, err
	}
	st.Nodes = true
	if err := e.checkTopicList(ctx, h); err != nil {
		return st, err
	}
	st.Topics = true
	return st, nil
}

// checkTopics verifies /lookup and /channels for sample random topics (all
// topics if sample < 0 or >= T), from clients concurrent requests, and
// returns how many topics were checked.
func (e expectation) checkTopics(ctx context.Context, h *httpClient, sample, clients int, seed uint64) (int, error) {
	topics := make([]int, e.w.Topics)
	for i := range topics {
		topics[i] = i
	}
	if sample >= 0 && sample < len(topics) {
		r := rand.New(rand.NewPCG(seed, 0))
		r.Shuffle(len(topics), func(i, j int) { topics[i], topics[j] = topics[j], topics[i] })
		topics = topics[:sample]
	}
	err := forEach(ctx, len(topics), clients, func(i int) error {
		return e.checkTopic(ctx, h, topics[i])
	})
	return len(topics), err
}

// checkTopic verifies /lookup and /channels for topic i.
func (e expectation) checkTopic(ctx context.Context, h *httpClient, i int) error {
	name := e.nm.topics[i]
	var la lookupAnswer
	path := "/lookup?topic=" + url.QueryEscape(name)
	if err := h.getJSON(ctx, path, &la); err != nil {
		return err
	}
	if err := sameSet(la.Channels, e.nm.channels); err != nil {
		return fmt.Errorf("GET %s: channels: %w", path, err)
	}
	want := topicProducers(i, e.w.Producers, e.w.PerTopic)
	var got, wantPorts []int
	for _, p := range la.Producers {
		idx := p.TCPPort - fakeTCPBase
		if idx < 0 || idx >= e.w.Producers || p.Hostname != e.nm.hostname(idx) ||
			p.HTTPPort != fakeHTTPBase+idx || p.BroadcastAddress != "127.0.0.1" || p.Version != "1.3.0" {
			return fmt.Errorf("GET %s: unexpected producer %+v", path, p)
		}
		got = append(got, p.TCPPort)
	}
	for _, p := range want {
		wantPorts = append(wantPorts, fakeTCPBase+p)
	}
	if err := sameSet(got, wantPorts); err != nil {
		return fmt.Errorf("GET %s: producers by tcp_port: %w", path, err)
	}

	var ca struct {
		Channels []string `json:"channels"`
	}
	path = "/channels?topic=" + url.QueryEscape(name)
	if err := h.getJSON(ctx, path, &ca); err != nil {
		return err
	}
	if err := sameSet(ca.Channels, e.nm.channels); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// checkNodes verifies that /nodes lists every producer exactly once with
// exactly its topics, none tombstoned.
func (e expectation) checkNodes(ctx context.Context, h *httpClient) error {
	var na nodesAnswer
	if err := h.getJSON(ctx, "/nodes", &na); err != nil {
		return err
	}
	assign := assignTopics(e.w.Producers, e.w.Topics, e.w.PerTopic)
	seen := make([]bool, e.w.Producers)
	foreign := 0
	for _, p := range na.Producers {
		if !strings.HasPrefix(p.Hostname, e.nm.hostPrefix()) {
			foreign++
			continue
		}
		idx := p.TCPPort - fakeTCPBase
		if idx < 0 || idx >= e.w.Producers || p.Hostname != e.nm.hostname(idx) || p.HTTPPort != fakeHTTPBase+idx {
			return fmt.Errorf("GET /nodes: unexpected producer %+v", p.peerAnswer)
		}
		if seen[idx] {
			return fmt.Errorf("GET /nodes: producer %d listed twice", idx)
		}
		seen[idx] = true
		want := make([]string, len(assign[idx]))
		for j, t := range assign[idx] {
			want[j] = e.nm.topics[t]
		}
		if err := sameSet(p.Topics, want); err != nil {
			return fmt.Errorf("GET /nodes: producer %d topics: %w", idx, err)
		}
		if len(p.Tombstones) != len(p.Topics) {
			return fmt.Errorf("GET /nodes: producer %d: %d tombstones for %d topics", idx, len(p.Tombstones), len(p.Topics))
		}
		if slices.Contains(p.Tombstones, true) {
			return fmt.Errorf("GET /nodes: producer %d has a tombstoned topic", idx)
		}
	}
	if i := slices.Index(seen, false); i >= 0 {
		return fmt.Errorf("GET /nodes: producer %d missing (%d listed)", i, len(na.Producers))
	}
	if e.strict && foreign > 0 {
		return fmt.Errorf("GET /nodes: %d producers that the harness did not register", foreign)
	}
	return nil
}

// checkTopicList verifies that /topics lists exactly this run's topics.
func (e expectation) checkTopicList(ctx context.Context, h *httpClient) error {
	var ta struct {
		Topics []string `json:"topics"`
	}
	if err := h.getJSON(ctx, "/topics", &ta); err != nil {
		return err
	}
	var ours []string
	for _, t := range ta.Topics {
		if strings.HasPrefix(t, e.nm.topicPrefix()) {
			ours = append(ours, t)
		}
	}
	if err := sameSet(ours, e.nm.topics); err != nil {
		return fmt.Errorf("GET /topics: %w", err)
	}
	if foreign := len(ta.Topics) - len(ours); e.strict && foreign > 0 {
		return fmt.Errorf("GET /topics: %d topics that the harness did not register", foreign)
	}
	return nil
}

// sameSet reports how got differs from want, compared as sets; a duplicate
// in got is a difference too.
func sameSet[T comparable](got, want []T) error {
	wantSet := make(map[T]bool, len(want))
	for _, v := range want {
		wantSet[v] = true
	}
	seen := make(map[T]bool, len(got))
	var extra []T
	for _, v := range got {
		if seen[v] {
			return fmt.Errorf("%v listed twice", v)
		}
		seen[v] = true
		if !wantSet[v] {
			extra = append(extra, v)
		}
	}
	var missing []T
	for _, v := range want {
		if !seen[v] {
			missing = append(missing, v)
		}
	}
	if len(extra) == 0 && len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("got %d, want %d; missing %v, unexpected %v", len(got), len(want), head(missing, 5), head(extra, 5))
}

func head[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}
