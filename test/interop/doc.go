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
// nsqd and nsqadmin on IPv6 loopback.
//
// TestMain also builds nsqlookupd v1.3.0 itself from the github.com/nsqio/nsq
// module (pinned by the tool directive in go.mod). The differential test
// (diff_test.go) runs it beside ours and sends both the same seeded random
// sequences of registration traffic, HTTP reads and admin requests, and
// malformed input of both kinds, and compares every answer after
// normalising only what v1.3.0 leaves random and the differences SPEC
// section 6 allows (diff_norm_test.go). A divergence prints its seed and
// first differing step; diff_regressions_test.go keeps each one found as a
// named sequence. Flags, after -args: -diff.seqs=N runs N sequences (400 by
// default), -diff.steps=N makes them longer, -diff.seed=S replays one.
//
// This is its own Go module so that NSQ's dependencies stay out of the
// daemon's module. Run it from this directory:
//
//	bash ../../scripts/install-test-deps.sh   # graphviz, for pprof -pdf
//	go test -race -count=1 ./...
//
// Set NSQLOOKUPD_BIN to the path of another nsqlookupd binary (for example the
// reference v1.3.0 build) to test that one instead of building ours.
//
// The suite takes about 40 seconds: the restart test waits for nsqd's 15 s
// heartbeat to notice the crash and re-register.
package interop
