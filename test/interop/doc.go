// Package interop proves that real NSQ v1.3.0 peers work unchanged against
// this project's nsqlookupd.
//
// The tests run the daemon as a black box: TestMain builds
// github.com/lookupd/nsqlookupd/apps/nsqlookupd from the repository root
// (two directories up) into a temporary directory and every test starts that
// binary as a subprocess on free 127.0.0.1 ports. Around it they run, in
// process, real nsqd nodes and an nsqadmin from github.com/nsqio/nsq v1.3.0,
// and go-nsq v1.1.0 consumers, and check what each side sees: registration,
// discovery, channel pre-creation, ephemeral channels, nsqadmin's actions,
// re-registration after a crash, graceful shutdown and profiling, and an
// nsqd and nsqadmin on IPv6 loopback. The HTTPS tests (https_test.go) make a
// CA in the test and check the same peers over TLS; the nsqd that needs an
// environment of its own (SSL_CERT_FILE) is the nsqd v1.3.0 binary that the
// fault tests build too. A real Prometheus server scrapes the daemon, and
// promtool checks a scrape and the files of contrib/prometheus.
//
// TestMain also builds nsqlookupd v1.3.0 itself from the github.com/nsqio/nsq
// module (pinned by the tool directive in go.mod). The differential test
// (diff_test.go) runs it beside ours and sends both the same seeded random
// sequences of registration traffic, HTTP reads and admin requests, and
// malformed input of both kinds, and compares every answer after
// normalising only what v1.3.0 leaves random and the differences
// docs/differences.md lists (diff_norm_test.go). A divergence prints its
// seed and first differing step; diff_regressions_test.go keeps each one
// found as a named sequence. Flags, after -args: -diff.seqs=N runs N
// sequences (400 by default), -diff.steps=N makes them longer,
// -diff.seed=S replays one.
//
// Two tests play production faults. TestHostDeath runs nsqd v1.3.0 as NSQ
// ships it (github.com/nsqio/nsq/apps/nsqd, a tool of this module, built
// into a temporary directory) in its own network namespace, joined to the
// host by a veth pair on a private /30, and cuts the link so that no FIN or
// RST arrives: the daemon must drop the producer after its read timeout.
// That needs root (ip netns) and iproute2. TestTwoLookupds kills one of two
// daemons that an nsqd and its consumers share, NSQ's high-availability
// pattern.
//
// TestChaos plays random, overlapping faults on a whole cluster, in the
// manner of Jepsen and etcd's functional tester: a generator
// (chaos_gen_test.go) draws a schedule from a seed (-chaos.seed, 1 by
// default; -chaos.faults, 30), a nemesis (chaos_nemesis_test.go) plays it,
// and a checker (chaos_check_test.go) checks a property after every
// fault. The cluster (chaos_cluster_test.go) is two of our lookupds
// (--producer-read-timeout 5s) and four nsqd v1.3.0 (--mem-queue-size=0),
// each nsqd in its own namespace on a bridge; a publisher sends numbered
// messages to every nsqd and a go-nsq consumer reads them through both
// lookupds. The faults: nsqd restarted (SIGTERM, same data and address)
// or frozen (SIGSTOP), its link cut or made lossy and slow (30% lost,
// 200 ms late; through NFQUEUE, chaos_nfqueue_test.go, as these kernels
// lack netem), a lookupd frozen or killed with SIGKILL and restarted, a
// tombstone, topics created and deleted. The truth is each nsqd's own
// /stats. After each fault heals, every lookupd's /nodes, /topics and
// /lookup must agree with the truth within 25 s (read timeout 5 s + nsqd's
// 15 s heartbeat + 5 s), a cut or frozen nsqd must be gone within 7 s, a
// tombstone must hide its producer for its lifetime; at the end no
// acknowledged message may be missing from what the consumer got, and
// each lookupd's RSS, goroutines and descriptors must be back near their
// start. A failure prints the seed, the fault log and each lookupd's
// answers next to the truth, and the schedule as a Go literal for
// chaosRegressions. It needs iptables (scripts/install-test-deps.sh).
// TestChaosCatches runs a lookupd without the read timeout and must see
// the checker report it. make chaos runs a long schedule.
//
// This is its own Go module so that NSQ's dependencies stay out of the
// daemon's module. Run it from this directory:
//
//	bash ../../scripts/install-test-deps.sh   # graphviz (pprof -pdf), iproute2 (ip netns), iptables, prometheus
//	go test -race -count=1 ./...              # as root, for the network namespace
//
// Set NSQLOOKUPD_BIN to the path of another nsqlookupd binary (for example the
// reference v1.3.0 build) to test that one instead of building ours.
//
// The suite takes about two and a half minutes, the tests running in
// parallel: TestChaos's 30 faults take two of them, and the restart tests
// wait for nsqd's 15 s heartbeat to notice the crash and register again.
package interop
