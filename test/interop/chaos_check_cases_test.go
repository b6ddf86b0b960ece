package interop

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The checker's rules on made-up samples: what counts as agreeing, when
// a heal has converged, is superseded or is late, and when a settled pair,
// a cut nsqd or a tombstone breaks a property. No cluster runs here.

// fakeChecker is a checker over a cluster that exists only on paper.
func fakeChecker(t *testing.T) (*checker, time.Time) {
	t.Helper()
	c := &chaosCluster{t: t}
	for i := range c.hosts {
		c.hosts[i] = &chaosHost{idx: i, ns: &netns{nsIP: fmt.Sprintf("198.18.0.%d", 2+i)}}
	}
	for j := range c.lookupds {
		c.lookupds[j] = &chaosLookupd{idx: j, d: &lookupd{HTTPAddr: fmt.Sprintf("127.0.0.1:%d", 4161+j)}}
	}
	begin := time.Now().Add(-time.Hour)
	return newChecker(c, newHistory(begin), defaultTimings, 1), begin
}

// agreeing is a sample in which both lookupds list every nsqd with
// topics chaos (channel c) and keepalive, as the truth says.
func agreeing(k *checker, at time.Time) *sample {
	s := &sample{at: at, before: histState{at: at.Add(-100 * time.Millisecond)}, after: histState{at: at.Add(100 * time.Millisecond)}}
	for i := range s.truth {
		s.truth[i] = hostTruth{known: true, up: true, topics: map[string][]string{chaosTopic: {chaosChannel}, keepaliveTopic: {}}}
	}
	for j := range s.views {
		v := lookupdView{asked: true, topics: []string{chaosTopic, keepaliveTopic}, lookups: map[string]lookupAnswer{
			chaosTopic:     {Channels: []string{chaosChannel}},
			keepaliveTopic: {Channels: []string{keepaliveChannel}},
		}}
		for i, h := range k.c.hosts {
			p := producerInfo{BroadcastAddress: h.ns.nsIP, RemoteAddress: fmt.Sprintf("%s:%d", h.ns.nsIP, 40000+10*j+i), TCPPort: 4150, HTTPPort: 4151, Version: "1.3.0"}
			v.nodes = append(v.nodes, nodeInfo{producerInfo: p, Topics: []string{chaosTopic, keepaliveTopic}, Tombstones: []bool{false, false}})
			for _, topic := range []string{chaosTopic, keepaliveTopic} {
				a := v.lookups[topic]
				a.Producers = append(a.Producers, p)
				v.lookups[topic] = a
			}
		}
		s.views[j] = v
	}
	return s
}

// without removes nsqd ip from every answer of view v.
func (v *lookupdView) without(ip string) {
	v.nodes = slices.DeleteFunc(v.nodes, func(e nodeInfo) bool { return e.BroadcastAddress == ip })
	for topic, a := range v.lookups {
		a.Producers = slices.DeleteFunc(slices.Clone(a.Producers), func(p producerInfo) bool { return p.BroadcastAddress == ip })
		v.lookups[topic] = a
	}
}

func TestChaosDiffHost(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name string
		edit func(k *checker, s *sample)
		want string // a part of a difference about nsqd1 on lookupd1; "" for none
	}{
		{"as the truth", func(*checker, *sample) {}, ""},
		{"missing from /nodes", func(k *checker, s *sample) {
			s.views[0].nodes = s.views[0].nodes[1:]
		}, "in /nodes 0 times"},
		{"twice in /nodes", func(k *checker, s *sample) {
			s.views[0].nodes = append(s.views[0].nodes, s.views[0].nodes[0])
		}, "in /nodes 2 times"},
		{"down and gone", func(k *checker, s *sample) {
			s.truth[0] = hostTruth{known: true}
			s.views[0].without(k.c.hosts[0].ns.nsIP)
		}, ""},
		{"down but in /lookup", func(k *checker, s *sample) {
			s.truth[0] = hostTruth{known: true}
			s.views[0].nodes = s.views[0].nodes[1:]
		}, "in /lookup?topic=chaos while down"},
		{"a topic it no longer has, kept without producers", func(k *checker, s *sample) {
			s.views[0].topics = append(s.views[0].topics, "dyn1")
			s.views[0].lookups["dyn1"] = lookupAnswer{Channels: []string{dynChannel}}
		}, ""},
		{"listed in a topic it does not have", func(k *checker, s *sample) {
			s.views[0].lookups["dyn1"] = lookupAnswer{Producers: s.views[0].lookups[chaosTopic].Producers[:1]}
		}, "a topic it does not have"},
		{"a topic missing from /nodes", func(k *checker, s *sample) {
			s.truth[0].topics["dyn1"] = []string{dynChannel}
			s.views[0].topics = append(s.views[0].topics, "dyn1")
			s.views[0].lookups["dyn1"] = lookupAnswer{Producers: s.views[0].lookups[chaosTopic].Producers[:1], Channels: []string{dynChannel}}
		}, "/nodes lists topics [chaos keepalive], nsqd has [chaos dyn1 keepalive]"},
		{"a channel missing", func(k *checker, s *sample) {
			s.views[0].lookups[chaosTopic] = lookupAnswer{Producers: s.views[0].lookups[chaosTopic].Producers}
		}, "lacks channel c"},
		{"the chatter channel is not compared", func(k *checker, s *sample) {
			s.truth[0].topics[keepaliveTopic] = []string{keepaliveChannel}
			s.views[0].lookups[keepaliveTopic] = lookupAnswer{Producers: s.views[0].lookups[keepaliveTopic].Producers}
		}, ""},
		{"tombstoned and hidden", func(k *checker, s *sample) {
			tombstoneAt(k, s, 0, 0, chaosTopic, s.at.Add(-5*time.Second))
		}, ""},
		{"tombstoned but in /lookup", func(k *checker, s *sample) {
			rec := tombstoneAt(k, s, 0, 0, chaosTopic, s.at.Add(-5*time.Second))
			a := s.views[0].lookups[chaosTopic]
			a.Producers = append(a.Producers, producerInfo{BroadcastAddress: k.c.hosts[0].ns.nsIP, RemoteAddress: rec.remote})
			s.views[0].lookups[chaosTopic] = a
		}, "though tombstoned"},
		{"a tombstone of the connection replaced since", func(k *checker, s *sample) {
			rec := tombstoneAt(k, s, 0, 0, chaosTopic, s.at.Add(-5*time.Second))
			s.after.tombs[len(s.after.tombs)-1].remote = rec.remote + "0"
			s.views[0].nodes[0].Tombstones[0] = false
			a := s.views[0].lookups[chaosTopic]
			a.Producers = append(a.Producers, producerInfo{BroadcastAddress: k.c.hosts[0].ns.nsIP, RemoteAddress: rec.remote})
			s.views[0].lookups[chaosTopic] = a
		}, ""},
		{"a tombstone past its lifetime still flagged", func(k *checker, s *sample) {
			tombstoneAt(k, s, 0, 0, chaosTopic, s.at.Add(-20*time.Second))
		}, "tombstone flag of chaos is true, want false"},
		{"a tombstone at its expiry either way", func(k *checker, s *sample) {
			tombstoneAt(k, s, 0, 0, chaosTopic, s.at.Add(-defaultTimings.tombstone))
		}, ""},
		{"wrong ports", func(k *checker, s *sample) {
			s.views[0].nodes[0].HTTPPort = 4152
		}, "ports 4150/4152"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := fakeChecker(t)
			s := agreeing(k, now)
			tc.edit(k, s)
			got := k.diffHost(s, 0, 0)
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("got %q; want no difference", got)
			case tc.want != "" && !strings.Contains(strings.Join(got, "\n"), tc.want):
				t.Errorf("got %q; want a difference with %q", got, tc.want)
			}
			if others := k.diffHost(s, 1, 1); len(others) > 0 {
				t.Errorf("differences of lookupd2 about nsqd2: %q", others)
			}
		})
	}
}

// tombstoneAt tombstones nsqd i in topic on lookupd j at time at, in the
// sample's history and in the lookupd's /nodes and /lookup.
func tombstoneAt(k *checker, s *sample, j, i int, topic string, at time.Time) tombstoneRec {
	v := &s.views[j]
	e := &v.nodes[slices.IndexFunc(v.nodes, func(e nodeInfo) bool { return e.BroadcastAddress == k.c.hosts[i].ns.nsIP })]
	e.Tombstones[slices.Index(e.Topics, topic)] = true
	a := v.lookups[topic]
	a.Producers = slices.DeleteFunc(slices.Clone(a.Producers), func(p producerInfo) bool { return p.RemoteAddress == e.RemoteAddress })
	v.lookups[topic] = a
	rec := tombstoneRec{f: fault{ID: 99, Kind: tombstone, Lookupd: j, NSQD: i, Topic: topic, Dur: defaultTimings.tombstone},
		remote: e.RemoteAddress, sent: at, recv: at.Add(10 * time.Millisecond)}
	s.after.tombs = append(s.after.tombs, rec)
	return rec
}

// event appends an event to the checker's history at a given time, as
// the nemesis's record would.
func addEvent(k *checker, at time.Time, f fault, heal bool) {
	h := k.h
	h.mu.Lock()
	h.events = append(h.events, event{at: at, f: f, heal: heal})
	h.mu.Unlock()
}

// sampleAt is an agreeing sample at, with the history's state at that
// time: f's targets are marked as the history says.
func sampleAt(k *checker, at time.Time, active []fault, lastNSQD map[int]time.Time) *sample {
	s := agreeing(k, at)
	for _, st := range []*histState{&s.before, &s.after} {
		st.active = active
		for i, t := range lastNSQD {
			st.lastNSQD[i], st.lastHealNSQD[i] = t, t
		}
	}
	for _, f := range active {
		if f.onNSQD() {
			s.active[f.NSQD] = true
		}
	}
	return s
}

func TestChaosConvergence(t *testing.T) {
	t.Parallel()
	cut := fault{ID: 1, Kind: linkCut, NSQD: 2, Dur: 10 * time.Second}
	B := defaultTimings.convergenceBound()
	ip := func(k *checker) string { return k.c.hosts[2].ns.nsIP }

	t.Run("converged", func(t *testing.T) {
		k, begin := fakeChecker(t)
		heal := begin.Add(20 * time.Second)
		addEvent(k, begin.Add(10*time.Second), cut, false)
		addEvent(k, heal, cut, true)
		s := sampleAt(k, heal.Add(time.Second), nil, map[int]time.Time{2: heal})
		s.views[1].without(ip(k)) // not back on lookupd2 yet
		k.check(s)
		k.check(sampleAt(k, heal.Add(3*time.Second), nil, map[int]time.Time{2: heal}))
		if got := k.converged[linkCut]; len(got) != 1 || got[0] != 3*time.Second {
			t.Errorf("converged %v; want [3s]", got)
		}
		if len(k.violations) > 0 {
			t.Errorf("violations: %+v", k.violations)
		}
	})
	t.Run("late", func(t *testing.T) {
		k, begin := fakeChecker(t)
		heal := begin.Add(20 * time.Second)
		addEvent(k, begin.Add(10*time.Second), cut, false)
		addEvent(k, heal, cut, true)
		for _, after := range []time.Duration{time.Second, B - time.Second, B + time.Second} {
			s := sampleAt(k, heal.Add(after), nil, map[int]time.Time{2: heal})
			s.views[1].without(ip(k))
			k.check(s)
		}
		if k.late[linkCut] != 1 || len(k.violations) != 1 || !strings.Contains(k.violations[0].what, "not converged") {
			t.Errorf("late %d, violations %+v; want one, not converged", k.late[linkCut], k.violations)
		}
		if !strings.Contains(k.violations[0].dump, "absent") || !strings.Contains(k.violations[0].dump, "link-cut nsqd3") {
			t.Errorf("the dump lacks the answers or the fault log:\n%s", k.violations[0].dump)
		}
	})
	t.Run("a lookupd's heal extends the bound", func(t *testing.T) {
		k, begin := fakeChecker(t)
		heal := begin.Add(20 * time.Second)
		addEvent(k, begin.Add(10*time.Second), cut, false)
		addEvent(k, heal, cut, true)
		s := sampleAt(k, heal.Add(B+time.Second), nil, map[int]time.Time{2: heal})
		back := heal.Add(10 * time.Second) // lookupd2 came back after the heal
		s.before.lastLookupd[1], s.after.lastLookupd[1], s.after.lastHealLookupd[1] = back, back, back
		s.views[1].without(ip(k))
		k.check(s)
		if len(k.violations) > 0 || len(k.pending) != 1 {
			t.Errorf("violations %+v, pending %d; want none, one", k.violations, len(k.pending))
		}
	})
	t.Run("superseded", func(t *testing.T) {
		k, begin := fakeChecker(t)
		heal := begin.Add(20 * time.Second)
		addEvent(k, begin.Add(10*time.Second), cut, false)
		addEvent(k, heal, cut, true)
		stop := fault{ID: 2, Kind: nsqdStop, NSQD: 2, Dur: 30 * time.Second}
		addEvent(k, heal.Add(time.Second), stop, false)
		s := sampleAt(k, heal.Add(2*time.Second), []fault{stop}, map[int]time.Time{2: heal.Add(time.Second)})
		s.views[1].without(ip(k))
		k.check(s)
		if k.superseded[linkCut] != 1 || len(k.pending) != 0 || len(k.violations) > 0 {
			t.Errorf("superseded %d, pending %d, violations %+v; want 1, 0, none", k.superseded[linkCut], len(k.pending), k.violations)
		}
	})
	t.Run("a settled pair that disagrees", func(t *testing.T) {
		k, begin := fakeChecker(t)
		s := sampleAt(k, begin.Add(time.Minute), nil, nil)
		s.views[0].nodes[1].Topics = []string{chaosTopic}
		k.check(s)
		k.check(s) // reported once while it lasts
		if len(k.violations) != 1 || !strings.Contains(k.violations[0].what, "lookupd1 disagrees about nsqd2") {
			t.Errorf("violations %+v; want one about lookupd1 and nsqd2", k.violations)
		}
	})
	t.Run("a cut nsqd still listed", func(t *testing.T) {
		k, begin := fakeChecker(t)
		start := begin.Add(10 * time.Second)
		addEvent(k, start, cut, false)
		k.check(sampleAt(k, start.Add(time.Second), []fault{cut}, map[int]time.Time{2: start}))
		s := sampleAt(k, start.Add(defaultTimings.disappearBound()+time.Second), []fault{cut}, map[int]time.Time{2: start})
		s.views[0].without(ip(k))
		k.check(s)
		if len(k.violations) != 1 || !strings.Contains(k.violations[0].what, "lookupd2 still lists nsqd3") {
			t.Errorf("violations %+v; want lookupd2 still lists nsqd3", k.violations)
		}
		s = sampleAt(k, start.Add(defaultTimings.disappearBound()+2*time.Second), []fault{cut}, map[int]time.Time{2: start})
		s.views[0].without(ip(k))
		s.views[1].without(ip(k))
		k.check(s)
		if got := k.gone[cut.ID]; got != defaultTimings.disappearBound()+2*time.Second {
			t.Errorf("gone after %s; want %s", got, defaultTimings.disappearBound()+2*time.Second)
		}
	})
	t.Run("a tombstone not hiding", func(t *testing.T) {
		k, begin := fakeChecker(t)
		s := sampleAt(k, begin.Add(time.Minute), nil, nil)
		rec := tombstoneAt(k, s, 1, 3, chaosTopic, s.at.Add(-3*time.Second))
		s.views[1].nodes[3].Tombstones[0] = false // nor flagged
		s.active[3] = true                        // whatever else happens to nsqd4
		k.check(s)
		if len(k.violations) != 1 || !strings.Contains(k.violations[0].what, "/nodes does not flag it") {
			t.Errorf("violations %+v; want the tombstone of %s not flagged", k.violations, rec.remote)
		}
	})
}
