package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"slices"
)

// lookupAnswer is the body of GET /lookup.
type lookupAnswer struct {
	Channels  []string   `json:"channels"`
	Producers []identity `json:"producers"`
}

// nodeAnswer is one producer of GET /nodes.
type nodeAnswer struct {
	identity
	Tombstones []bool   `json:"tombstones"`
	Topics     []string `json:"topics"`
}

// expectation knows what the daemon must answer after registration.
type expectation struct {
	w           workload
	nm          *naming
	assign      [][]int      // each producer's topics: assignTopics(w)
	churn       *churnLayout // the churn connections, producers P, P+1, ... (nil: none)
	ephemeralOK bool         // churn runs: a topic may list its churn connection's #ephemeral channels
}

// verifyStats records what was checked.
type verifyStats struct {
	LookupTopics int  `json:"lookup_topics"`
	Nodes        bool `json:"nodes"`
	Topics       bool `json:"topics"`
	// RecheckTopics were verified again after the load: the producers
	// stayed registered and active.
	RecheckTopics int      `json:"recheck_topics"`
	TimedOut      []string `json:"timed_out,omitempty"` // checks whose request passed -http-timeout
}

// verify checks /lookup and /channels of sample topics (all if sample < 0),
// then /topics; /nodes comes after the timed phases, which it must not load
// (v1.3.0 can take an hour over it). Lists are compared as sets (v1.3.0
// answers in map order); a check that times out is recorded, not failed.
func verify(ctx context.Context, h *httpClient, e expectation, sample, clients int, seed uint64) (verifyStats, error) {
	var st verifyStats
	n, err := e.checkTopics(ctx, h, sample, clients, seed)
	ok, err := tolerate(ctx, err, &st.TimedOut, "/lookup")
	if err != nil {
		return st, err
	}
	if ok {
		st.LookupTopics = n
	}
	st.Topics, err = tolerate(ctx, e.checkTopicList(ctx, h), &st.TimedOut, "/topics")
	return st, err
}

// tolerate returns nil for a request that timed out (a slow answer, not a
// wrong one), adding what to *timedOut, and err otherwise; ok: err is nil.
func tolerate(ctx context.Context, err error, timedOut *[]string, what string) (ok bool, _ error) {
	if isTimeout(err) && ctx.Err() == nil {
		*timedOut = append(*timedOut, what)
		return false, nil
	}
	return err == nil, err
}

// checkTopics verifies sample random topics (all if sample < 0) from
// clients concurrent requests, and returns how many it checked.
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
	if err := e.checkChannels(i, la.Channels); err != nil {
		return fmt.Errorf("GET %s: channels: %w", path, err)
	}
	want := topicProducers(i, e.w.Producers, e.w.PerTopic)
	if e.churn != nil {
		want = append(want, e.w.Producers+e.churn.churnerOf(i))
	}
	got := make([]int, len(la.Producers))
	for k, p := range la.Producers {
		if got[k] = e.producerOf(p); got[k] < 0 || p.BroadcastAddress != "127.0.0.1" || p.Version != "1.3.0" {
			return fmt.Errorf("GET %s: unexpected producer %+v", path, p)
		}
	}
	if err := sameSet(got, want); err != nil {
		return fmt.Errorf("GET %s: producers: %w", path, err)
	}

	var ca struct {
		Channels []string `json:"channels"`
	}
	path = "/channels?topic=" + url.QueryEscape(name)
	if err := h.getJSON(ctx, path, &ca); err != nil {
		return err
	}
	if err := e.checkChannels(i, ca.Channels); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// producers is the number of producers registered: the fleet and the churn
// connections.
func (e expectation) producers() int {
	if e.churn == nil {
		return e.w.Producers
	}
	return e.w.Producers + e.churn.n
}

// producerOf returns the index of the producer p announces, or -1 if p is
// none of the fleet and the churn connections.
func (e expectation) producerOf(p identity) int {
	idx := p.TCPPort - fakeTCPBase
	if idx < 0 || idx >= e.producers() || p.Hostname != e.nm.hostname(idx) || p.HTTPPort != fakeHTTPBase+idx {
		return -1
	}
	return idx
}

// checkChannels compares got, the channels of topic i, with the fleet's
// channels; while churn runs it may also hold #ephemeral channels of the
// topic's churn connection.
func (e expectation) checkChannels(i int, got []string) error {
	if !e.ephemeralOK {
		return sameSet(got, e.nm.channels)
	}
	var fleet []string
	seen := make(map[string]bool, len(got))
	for _, ch := range got {
		if seen[ch] {
			return fmt.Errorf("%v listed twice", ch)
		}
		seen[ch] = true
		if j, ok := parseChurnChannel(ch); !ok {
			fleet = append(fleet, ch)
		} else if j != e.churn.churnerOf(i) {
			return fmt.Errorf("%q belongs to churn connection %d, which does not hold this topic", ch, j)
		}
	}
	return sameSet(fleet, e.nm.channels)
}

// checkNodes verifies that /nodes lists every producer exactly once with
// exactly its topics, none tombstoned. The answer is decoded one producer
// at a time: at the xlarge preset it is tens of megabytes.
func (e expectation) checkNodes(ctx context.Context, h *httpClient) error {
	seen := make([]bool, e.producers())
	listed := 0
	err := h.getStream(ctx, "/nodes", func(r io.Reader) error {
		return decodeNodes(r, func(p *nodeAnswer) error {
			listed++
			idx := e.producerOf(p.identity)
			if idx < 0 {
				return fmt.Errorf("unexpected producer %+v", p.identity)
			}
			if seen[idx] {
				return fmt.Errorf("producer %d listed twice", idx)
			}
			seen[idx] = true
			var topics []int
			if idx < e.w.Producers {
				topics = e.assign[idx]
			} else {
				topics = e.churn.topicsOf(idx-e.w.Producers, e.w.Topics)
			}
			want := make([]string, len(topics))
			for j, t := range topics {
				want[j] = e.nm.topics[t]
			}
			if err := sameSet(p.Topics, want); err != nil {
				return fmt.Errorf("producer %d topics: %w", idx, err)
			}
			if len(p.Tombstones) != len(p.Topics) {
				return fmt.Errorf("producer %d: %d tombstones for %d topics", idx, len(p.Tombstones), len(p.Topics))
			}
			if slices.Contains(p.Tombstones, true) {
				return fmt.Errorf("producer %d has a tombstoned topic", idx)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if i := slices.Index(seen, false); i >= 0 {
		return fmt.Errorf("GET /nodes: producer %d missing (%d listed)", i, listed)
	}
	return nil
}

// decodeNodes reads a /nodes answer, {"producers":[...]}, from r and calls
// each for every producer in turn; other keys are skipped.
func decodeNodes(r io.Reader, each func(*nodeAnswer) error) error {
	dec := json.NewDecoder(r)
	delim := func(want json.Delim) error {
		if tok, err := dec.Token(); err != nil || tok != want {
			return fmt.Errorf("got %v (%v), want %v", tok, err, want)
		}
		return nil
	}
	if err := delim('{'); err != nil {
		return err
	}
	found := false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		if key != "producers" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		if found = true; delim('[') != nil {
			return errors.New("producers: not a list")
		}
		for dec.More() {
			var p nodeAnswer
			if err := dec.Decode(&p); err != nil {
				return err
			}
			if err := each(&p); err != nil {
				return err
			}
		}
		if err := delim(']'); err != nil {
			return err
		}
	}
	if err := delim('}'); err != nil {
		return err
	}
	if !found {
		return errors.New(`no "producers" key`)
	}
	return nil
}

// checkTopicList verifies that /topics lists exactly the run's topics.
func (e expectation) checkTopicList(ctx context.Context, h *httpClient) error {
	var ta struct {
		Topics []string `json:"topics"`
	}
	if err := h.getJSON(ctx, "/topics", &ta); err != nil {
		return err
	}
	if err := sameSet(ta.Topics, e.nm.topics); err != nil {
		return fmt.Errorf("GET /topics: %w", err)
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
