// Command scenario plays single production faults (flood, stall, churn,
// topics) against one or more nsqlookupd-compatible binaries and prints what
// each cost the daemon; docs/performance.md says what each does.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lookupd/nsqlookupd/bench/internal/harness"
	"golang.org/x/sync/errgroup"
)

type options struct {
	binaries, daemonFlags                                         []string
	channels, producers, topics, perTopic, topicChannels, readers int
	churnConns, churnParallel, churnRegs, floodTopics, topicKeys  int
	path                                                          string
	wait, settle                                                  time.Duration
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o options
	fs := flag.NewFlagSet("scenario", flag.ExitOnError)
	fs.Var((*listFlag)(&o.binaries), "binary", "nsqlookupd-compatible binary (repeatable)")
	fs.Var((*listFlag)(&o.daemonFlags), "daemon-flag", "extra argument for the binaries (repeatable)")
	fs.IntVar(&o.channels, "channels", 200000, "flood: channels registered into the one topic")
	fs.IntVar(&o.producers, "producers", 100, "stall: producers")
	fs.IntVar(&o.topics, "topics", 2000, "stall: topics")
	fs.IntVar(&o.perTopic, "per-topic", 10, "stall: producers per topic")
	fs.IntVar(&o.topicChannels, "topic-channels", 4, "stall: channels per topic")
	fs.IntVar(&o.readers, "readers", 40, "stall: connections that ask and never read")
	fs.StringVar(&o.path, "path", "/debug", "stall: what they ask for")
	fs.DurationVar(&o.wait, "wait", 70*time.Second, "stall: how long to watch them (past the daemon's write timeout)")
	fs.IntVar(&o.churnConns, "churn-conns", 2000, "churn: connections, one after another")
	fs.IntVar(&o.churnParallel, "churn-parallel", 50, "churn: connections at a time")
	fs.IntVar(&o.churnRegs, "churn-regs", 500, "churn: ephemeral registrations per connection")
	fs.IntVar(&o.floodTopics, "flood-topics", 100000, "churn: topics registered, then deleted")
	fs.DurationVar(&o.settle, "settle", 3*time.Minute, "churn: how long to wait for RSS to settle")
	fs.IntVar(&o.topicKeys, "topic-keys", 1000000, "topics: distinct topics the one producer registers")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench/scenario [flags] flood|stall|churn|topics\n")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	run := map[string]func(daemon, *options) error{"flood": flood, "stall": stall, "churn": churn, "topics": topicKeys}[fs.Arg(0)]
	if fs.NArg() != 1 || len(o.binaries) == 0 || run == nil {
		fs.Usage()
		os.Exit(2)
	}
	failed := false
	for _, bin := range o.binaries {
		fmt.Printf("== %s %s\n", fs.Arg(0), bin)
		d, err := harness.Start(context.Background(), bin, o.daemonFlags, os.Getenv("SCENARIO_DAEMON_LOG"), 10*time.Second)
		if err == nil {
			err = run(daemon{d}, &o)
			d.Stop()
		}
		if err != nil {
			fmt.Printf("error: %v\n", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// daemon is a started binary.
type daemon struct{ *harness.Daemon }

// rss returns the daemon's resident set size, in bytes.
func (d daemon) rss() uint64 {
	if kib, _ := harness.MemKiB(d.PID); kib != nil {
		return *kib << 10
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// connect opens a registration connection as producer n.
func (d daemon) connect(n int) (*harness.Conn, error) {
	c, _, err := harness.Dial(context.Background(), d.TCPAddr, harness.Identity{BroadcastAddress: "127.0.0.1",
		Hostname: fmt.Sprintf("scenario-%d", n), TCPPort: 20000 + n%40000, HTTPPort: 20001 + n%40000, Version: "1.3.0"}, 10*time.Second)
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Minute))
	}
	return c, err
}

// pipeline has lines write n commands on c, one OK each; tick, when not
// nil, is called after each answer with its index.
func pipeline(c *harness.Conn, lines func(w *bufio.Writer), n int, tick func(i int)) error {
	c.Lock()
	defer c.Unlock()
	return c.Pipeline(n, lines, tick)
}

// flood registers o.channels new channels into one topic and prints the
// rate of each tenth.
func flood(d daemon, o *options) error {
	p, err := d.connect(0)
	if err != nil {
		return err
	}
	defer p.Close()
	tenth, start := o.channels/10, time.Now()
	marks := []time.Time{start}
	err = pipeline(p, func(w *bufio.Writer) {
		for i := range o.channels {
			// names in no order: each lands anywhere among those before
			fmt.Fprintf(w, "REGISTER flood c%08x-%07d\n", uint32(i)*2654435761, i)
		}
	}, o.channels, func(i int) {
		if (i+1)%tenth == 0 {
			marks = append(marks, time.Now())
		}
	})
	if err != nil {
		return err
	}
	total := time.Since(start)
	fmt.Printf("%d REGISTERs into one topic in %s: %.0f/s\n", o.channels, total.Round(time.Millisecond), float64(o.channels)/total.Seconds())
	for i := 1; i < len(marks); i++ {
		fmt.Printf("  REGISTERs %7d-%7d: %8.0f/s\n", (i-1)*tenth+1, i*tenth, float64(tenth)/marks[i].Sub(marks[i-1]).Seconds())
	}
	first, last := marks[1].Sub(marks[0]), marks[len(marks)-1].Sub(marks[len(marks)-2])
	fmt.Printf("last tenth ÷ first tenth, time: %.2f\n", last.Seconds()/first.Seconds())
	return nil
}

// register makes o.producers producers hold the stall workload; they stay
// connected (returned).
func registerWorkload(d daemon, o *options) ([]*harness.Conn, error) {
	producers := make([]*harness.Conn, o.producers)
	for i := range producers {
		var err error
		if producers[i], err = d.connect(i); err != nil {
			return nil, err
		}
	}
	topics := make([][]int, o.producers)
	for t := range o.topics {
		for k := range o.perTopic {
			p := (t*o.perTopic + k) % o.producers
			topics[p] = append(topics[p], t)
		}
	}
	var g errgroup.Group
	for i, p := range producers {
		g.Go(func() error {
			return pipeline(p, func(w *bufio.Writer) {
				for _, t := range topics[i] {
					fmt.Fprintf(w, "REGISTER topic-%06d\n", t)
					for c := range o.topicChannels {
						fmt.Fprintf(w, "REGISTER topic-%06d channel-%d\n", t, c)
					}
				}
			}, len(topics[i])*(1+o.topicChannels), nil)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return producers, nil
}

// stall measures what readers that never read cost the daemon.
func stall(d daemon, o *options) error {
	producers, err := registerWorkload(d, o)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range producers {
			p.Close()
		}
	}()
	resp, err := http.Get("http://" + d.HTTPAddr + o.path)
	if err != nil {
		return err
	}
	size, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	time.Sleep(time.Second) // let what that answer took be collected
	before := d.rss()
	fmt.Printf("%d producers, %d topics × %d producers × %d channels; %s is %s; daemon RSS %s\n",
		o.producers, o.topics, o.perTopic, o.topicChannels, o.path, mib(uint64(size)), mib(before))

	conns := make([]net.Conn, o.readers)
	for i := range conns {
		// a small receive buffer, so the kernel does not take the answer
		// in the reader's stead
		dialer := net.Dialer{Control: smallReceiveBuffer}
		c, err := dialer.Dial("tcp", d.HTTPAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET "+o.path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		conns[i] = c
	}
	start, peak := time.Now(), before
	for time.Since(start) < o.wait {
		peak = max(peak, d.rss())
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("%d readers of %s that never read: RSS peak %s (+%s, %.1f answers) over %s\n",
		o.readers, o.path, mib(peak), mib(peak-before), float64(peak-before)/float64(size), o.wait)
	// each must have been closed by the daemon: what it can read is a cut
	// answer, then the end
	cut := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("a reader still open %s after its request (read %d bytes)", time.Since(start).Round(time.Second), n)
		}
		if n < size {
			cut++
		}
	}
	fmt.Printf("all %d closed by the daemon, %d with the answer cut short\n", len(conns), cut)
	return nil
}

// smallReceiveBuffer gives a connection a receive buffer of a few KiB.
func smallReceiveBuffer(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	return errors.Join(err, serr)
}

// churn measures the daemon's RSS across a churn of ephemeral registrations
// and a flood of topics deleted after.
func churn(d daemon, o *options) error {
	// settle waits -settle (the Go runtime collects an idle heap every two
	// minutes and gives memory back in the background) and returns the
	// RSS at the end, printing it along the way.
	settle := func(what string, peak uint64) uint64 {
		start := time.Now()
		var marks []string
		next := 10 * time.Second
		for time.Since(start) < o.settle {
			time.Sleep(time.Second)
			if since := time.Since(start); since >= next {
				marks = append(marks, fmt.Sprintf("%s after %s", mib(d.rss()), next))
				next *= 2
			}
		}
		last := d.rss()
		fmt.Printf("%s: RSS peak %s; %s; %s after %s\n", what, mib(peak), strings.Join(marks, ", "), mib(last), o.settle)
		return last
	}
	// what stays: 10 producers in 100 topics with a channel each
	registerStay := func(p *harness.Conn) error {
		return pipeline(p, func(w *bufio.Writer) {
			for t := range 100 {
				fmt.Fprintf(w, "REGISTER stay-%d ch\n", t)
			}
		}, 100, nil)
	}
	stay := make([]*harness.Conn, 10)
	for i := range stay {
		p, err := d.connect(90000 + i)
		if err != nil {
			return err
		}
		defer p.Close()
		stay[i] = p
		if err := registerStay(p); err != nil {
			return err
		}
	}
	// they PING every 15 s, as nsqd does, or the producer read timeout
	// would close them while the tool waits
	stopPings := make(chan struct{})
	defer close(stopPings)
	go func() {
		for {
			select {
			case <-stopPings:
				return
			case <-time.After(15 * time.Second):
			}
			for _, p := range stay {
				p.Ping(10 * time.Second)
			}
		}
	}()
	base := settle("start (10 producers, 100 topics)", d.rss())

	var mu sync.Mutex
	peak := base
	sample := func() {
		r := d.rss()
		mu.Lock()
		peak = max(peak, r)
		mu.Unlock()
	}
	var g errgroup.Group
	g.SetLimit(o.churnParallel)
	for n := range o.churnConns {
		g.Go(func() error {
			p, err := d.connect(n)
			if err != nil {
				return err
			}
			defer p.Close()
			err = pipeline(p, func(w *bufio.Writer) {
				for i := range o.churnRegs {
					if i%10 == 0 {
						fmt.Fprintf(w, "REGISTER churn-%d-%d#ephemeral c#ephemeral\n", n, i)
					} else {
						fmt.Fprintf(w, "REGISTER stay-%d c-%d-%d#ephemeral\n", i%100, n, i)
					}
				}
			}, o.churnRegs, nil)
			sample()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	afterChurn := settle(fmt.Sprintf("after %d ephemeral registrations from %d connections, %d at a time",
		o.churnConns*o.churnRegs, o.churnConns, o.churnParallel), peak)

	p, err := d.connect(99999)
	if err != nil {
		return err
	}
	if err := pipeline(p, func(w *bufio.Writer) {
		for t := range o.floodTopics {
			fmt.Fprintf(w, "REGISTER flood-%07d c\n", t)
		}
	}, o.floodTopics, nil); err != nil {
		return err
	}
	peak = d.rss()
	p.Close()
	resp, err := http.Post("http://"+d.HTTPAddr+"/topic/delete?topic=*", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	for _, s := range stay { // what stays registers again, as nsqd would
		if err := registerStay(s); err != nil {
			return err
		}
	}
	afterFlood := settle(fmt.Sprintf("after %d topics registered then deleted", o.floodTopics), peak)
	fmt.Printf("RSS: start %s, after the churn %s (%+.1f MiB), after the flood %s (%+.1f MiB)\n",
		mib(base), mib(afterChurn), (float64(afterChurn)-float64(base))/(1<<20), mib(afterFlood), (float64(afterFlood)-float64(base))/(1<<20))
	return nil
}

// heapStat returns one runtime.MemStats field the daemon's heap profile
// reports, after a forced collection with gc.
func (d daemon) heapStat(field string, gc bool) (uint64, error) {
	url := "http://" + d.HTTPAddr + "/debug/pprof/heap?debug=1"
	if gc {
		url += "&gc=1"
	}
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "# "+field+" = "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in the heap profile", field)
}

// topicKeys measures what the topics of a producer that has gone cost.
func topicKeys(d daemon, o *options) error {
	heapBase, err := d.heapStat("HeapAlloc", true)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	rssBase := d.rss()
	var peak, peakHeap atomic.Uint64
	peak.Store(rssBase)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for i := 0; ; i++ {
			// the RSS every 10 ms (this is its one writer), the heap in use every 200 ms
			peak.Store(max(peak.Load(), d.rss()))
			if i%20 == 0 {
				if h, err := d.heapStat("HeapInuse", false); err == nil && h > peakHeap.Load() {
					peakHeap.Store(h)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	p, err := d.connect(0)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := pipeline(p, func(w *bufio.Writer) {
		for t := range o.topicKeys {
			fmt.Fprintf(w, "REGISTER topic-%07d\n", t)
		}
	}, o.topicKeys, nil); err != nil {
		return err
	}
	registered := time.Since(start)
	peakFlood := peak.Load()
	p.Close()
	// the producer has gone once ten topics across the range list no
	// producer (/nodes would build an entry of the producer's million
	// topics, and hold it, if asked before the producer has gone)
	for end := time.Now().Add(5 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		listed := 0
		for i := 0; i < 10; i++ {
			var answer struct {
				Producers []json.RawMessage `json:"producers"`
			}
			resp, err := http.Get(fmt.Sprintf("http://%s/lookup?topic=topic-%07d", d.HTTPAddr, i*(o.topicKeys/10)))
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&answer)
				resp.Body.Close()
			}
			if err != nil || len(answer.Producers) > 0 {
				listed++
			}
		}
		if listed == 0 {
			break
		}
		if time.Now().After(end) {
			return fmt.Errorf("the producer is still listed 5 min after it left")
		}
	}
	left := time.Since(start)
	// the heap after a collection, once it has stopped falling: what the
	// removal made, its log lines too, is garbage by then
	var heapAfter uint64
	for end := time.Now().Add(time.Minute); ; {
		time.Sleep(2 * time.Second)
		h, err := d.heapStat("HeapAlloc", true)
		if err != nil {
			return err
		}
		if heapAfter != 0 && (h >= heapAfter-heapAfter/100 || time.Now().After(end)) {
			heapAfter = min(h, heapAfter)
			break
		}
		heapAfter = h
	}
	close(stop)
	<-sampled
	// RSS once it stops falling (the runtime gives memory back in the
	// background), at most -settle
	rssAfter := d.rss()
	for end := time.Now().Add(o.settle); time.Now().Before(end); {
		time.Sleep(5 * time.Second)
		r := d.rss()
		if r >= rssAfter {
			rssAfter = r
			break
		}
		rssAfter = r
	}
	n := float64(o.topicKeys)
	fmt.Printf("%d topics registered by one producer in %s, gone %s after the start\n",
		o.topicKeys, registered.Round(time.Millisecond), left.Round(time.Millisecond))
	fmt.Printf("peak over the flood and the removal, per registration: RSS %.0f B (%s → %s; %s over the flood), heap in use %.0f B (%s)\n",
		float64(peak.Load()-rssBase)/n, mib(rssBase), mib(peak.Load()), mib(peakFlood),
		(float64(peakHeap.Load())-float64(heapBase))/n, mib(peakHeap.Load()))
	fmt.Printf("kept per topic key after the producer left: heap %.0f B (%s → %s), RSS %.0f B (%s → %s)\n",
		(float64(heapAfter)-float64(heapBase))/n, mib(heapBase), mib(heapAfter),
		(float64(rssAfter)-float64(rssBase))/n, mib(rssBase), mib(rssAfter))
	return nil
}
