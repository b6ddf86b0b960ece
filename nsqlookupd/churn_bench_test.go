package nsqlookupd

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// churnSizes are the registry shapes of BenchmarkLookupUnderChurn: P
// producers, T topics each held by S producers, C channels per topic.
var churnSizes = []fillSize{
	{"1k", 10, 40, 5, 4},
	{"10k", 100, 400, 5, 4},
	{"100k", 1000, 4000, 5, 4},
}

// BenchmarkLookupUnderChurn times lookup of one topic, as GET /lookup does
// it, on a filled registry: with churn=off alone, with churn=on while
// writer goroutines REGISTER and UNREGISTER #ephemeral channels in the same
// topics back to back, as consumers coming and going do. Writers are
// GOMAXPROCS-1 (at least one), so that on a small machine readers and
// writers each have a core and what the ratio shows is waiting on the
// registry, not sharing a CPU. writes/s is the writers' rate. Compare:
//
//	go test -run '^$' -bench LookupUnderChurn -count 10 ./nsqlookupd > new.txt
//	benchstat -col /churn new.txt
func BenchmarkLookupUnderChurn(b *testing.B) {
	writers := max(1, runtime.GOMAXPROCS(0)-1)
	for _, sz := range churnSizes {
		for _, churn := range []bool{false, true} {
			name := fmt.Sprintf("%s/churn=off", sz.name)
			if churn {
				name = fmt.Sprintf("%s/churn=on", sz.name)
			}
			b.Run(name, func(b *testing.B) {
				db, peers := fill(b, sz)
				topics := make([]string, sz.T)
				for i := range topics {
					topics[i] = fmt.Sprintf("topic%d", i)
				}
				var (
					stop   = make(chan struct{})
					wg     sync.WaitGroup
					writes atomic.Int64
				)
				if churn {
					for w := range writers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							churnWriter(db, peers, topics, sz, w, stop, &writes)
						}()
					}
					for writes.Load() == 0 { // the writers run before the clock starts
						runtime.Gosched()
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					db.lookup(topics[i%len(topics)])
					i += 7919 // a prime: consecutive lookups land on unrelated topics
				}
				close(stop)
				wg.Wait()
				if churn {
					b.ReportMetric(float64(writes.Load())/b.Elapsed().Seconds(), "writes/s")
				}
			})
		}
	}
}

// churnWriter registers and unregisters an ephemeral channel, walking over
// the topics, until stop is closed. Each channel is registered by a
// producer that holds its topic already (fill gives topic t to producers
// (t*S+k) % P), so the registry returns to the same state after each pair
// and lookup answers keep their size.
func churnWriter(db *registrationDB, peers []*peer, topics []string, sz fillSize, w int, stop <-chan struct{}, writes *atomic.Int64) {
	channels := make([]string, 16)
	for i := range channels {
		channels[i] = fmt.Sprintf("w%d-%d#ephemeral", w, i)
	}
	for i := w; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		t := (i * 104729) % sz.T // another prime, another walk
		p := peers[(t*sz.S+i%sz.S)%sz.P]
		ch := channels[i%len(channels)]
		db.register(p, topics[t], ch)
		db.unregisterChannel(p, topics[t], ch)
		writes.Add(2)
	}
}
