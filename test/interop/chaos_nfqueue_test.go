package interop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A lossy, slow link: what `tc qdisc add dev X root netem loss 30% delay
// 200ms` does to the packets leaving X. The kernels this runs on (this
// machine's, CI's) are built without netem (CONFIG_NET_SCH_NETEM is not
// set), so the test does it itself: an iptables rule inside the
// namespace sends every packet the namespace sends (but its loopback's)
// to NFQUEUE queue 0, where this process, bound to that queue through a
// netlink socket opened inside the namespace, drops 30% of them and
// accepts the others 200 ms after they were queued, in order. The rule
// has --queue-bypass: were this process gone, packets would pass.
//
// The netlink messages are nfnetlink_queue's (linux/netfilter/nfnetlink_queue.h).

const (
	lossyDrop  = 0.30
	lossyDelay = 200 * time.Millisecond
)

// netlink and nfnetlink_queue constants.
const (
	netlinkNetfilter = 12 // NETLINK_NETFILTER
	nfnlSubsysQueue  = 3  // NFNL_SUBSYS_QUEUE
	nfqnlMsgPacket   = 0  // NFQNL_MSG_PACKET
	nfqnlMsgVerdict  = 1  // NFQNL_MSG_VERDICT
	nfqnlMsgConfig   = 2  // NFQNL_MSG_CONFIG
	nfqaPacketHdr    = 1  // NFQA_PACKET_HDR
	nfqaVerdictHdr   = 2  // NFQA_VERDICT_HDR
	nfqaCfgCmd       = 1  // NFQA_CFG_CMD
	nfqaCfgParams    = 2  // NFQA_CFG_PARAMS
	nfqnlCfgCmdBind  = 1  // NFQNL_CFG_CMD_BIND
	nfqnlCopyMeta    = 1  // NFQNL_COPY_META: the packet's id, not its bytes
	nfDrop           = 0
	nfAccept         = 1
	nlmsgError       = 2 // NLMSG_ERROR
	nlmFRequest      = 1
	nlmFAck          = 4
	queueNum         = 0
)

// lossyLink is a lossy, slow link in progress on one namespace.
type lossyLink struct {
	ns    string
	file  *os.File // the netlink socket, read through the runtime's poller
	rules [][]string
	rng   *rand.Rand

	wmu     sync.Mutex // one verdict written at a time
	pending chan pendingVerdict
	wg      sync.WaitGroup

	mu               sync.Mutex
	dropped, delayed int
}

type pendingVerdict struct {
	id  uint32
	due time.Time
}

// startLossyLink makes the packets namespace ns sends lossy and slow until
// stop is called. seed draws which packets are lost.
func startLossyLink(ns string, seed uint64) (*lossyLink, error) {
	l := &lossyLink{ns: ns, rng: rand.New(rand.NewPCG(seed, 0x6c6f7373)), pending: make(chan pendingVerdict, 4096)}
	fd, err := netlinkSocketIn(ns)
	if err != nil {
		return nil, err
	}
	l.file = os.NewFile(uintptr(fd), "nfqueue "+ns)
	if err := l.bind(); err != nil {
		l.file.Close()
		return nil, err
	}
	l.wg.Add(2)
	go l.read()
	go l.release()
	rule := []string{"OUTPUT", "!", "-o", "lo", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"}
	if err := iptablesIn(ns, append([]string{"-A"}, rule...)...); err != nil {
		l.close()
		return nil, err
	}
	l.rules = append(l.rules, rule)
	return l, nil
}

// stop removes the rule, lets the held packets go and closes the socket.
func (l *lossyLink) stop() error {
	var errs []error
	for _, rule := range l.rules {
		if err := iptablesIn(l.ns, append([]string{"-D"}, rule...)...); err != nil {
			errs = append(errs, err)
		}
	}
	l.rules = nil
	time.Sleep(lossyDelay) // the last packets queued get their verdicts
	l.close()
	return errors.Join(errs...)
}

func (l *lossyLink) close() {
	l.file.Close() // ends read, which closes pending, which ends release
	l.wg.Wait()
}

// counts returns how many packets were dropped and how many delayed.
func (l *lossyLink) counts() (dropped, delayed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped, l.delayed
}

// iptablesIn runs iptables in namespace ns.
func iptablesIn(ns string, args ...string) error {
	full := append([]string{"netns", "exec", ns, "iptables", "-w"}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s (iptables comes from scripts/install-test-deps.sh)", strings.Join(full, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netlinkSocketIn opens a non-blocking NETLINK_NETFILTER socket inside
// namespace ns.
func netlinkSocketIn(ns string) (int, error) {
	fd := -1
	err := inNetns(ns, func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, netlinkNetfilter)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("netlink socket in %s: %w", ns, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1<<20)
	return fd, nil
}

// inNetns runs f on a thread inside namespace ns. A socket belongs to the
// namespace it was made in, so sockets f makes stay in ns. Should the
// thread fail to leave ns, it stays locked and exits with the goroutine.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := setns(self); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// nfMessage builds one nfnetlink_queue message of type msg for queue 0
// with attributes attrs (type, payload).
func nfMessage(msg uint16, flags uint16, attrs ...nlAttr) []byte {
	b := make([]byte, 16, 64)                            // nlmsghdr, filled below
	b = append(b, 0, 0, 0, 0)                            // nfgenmsg: family (none), version, res_id (big endian)
	binary.BigEndian.PutUint16(b[18:], uint16(queueNum)) // res_id: the queue
	for _, a := range attrs {
		n := 4 + len(a.data)
		b = binary.NativeEndian.AppendUint16(b, uint16(n))
		b = binary.NativeEndian.AppendUint16(b, a.typ)
		b = append(b, a.data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], nfnlSubsysQueue<<8|msg)
	binary.NativeEndian.PutUint16(b[6:], nlmFRequest|flags)
	return b
}

type nlAttr struct {
	typ  uint16
	data []byte
}

// bind binds the socket to queue 0, metadata only, and waits for the
// kernel's acknowledgements.
func (l *lossyLink) bind() error {
	cmd := []byte{nfqnlCfgCmdBind, 0, 0, 0} // command, pad, pf (unused)
	params := binary.BigEndian.AppendUint32(nil, 0)
	params = append(params, nfqnlCopyMeta)
	for _, m := range [][]byte{
		nfMessage(nfqnlMsgConfig, nlmFAck, nlAttr{nfqaCfgCmd, cmd}),
		nfMessage(nfqnlMsgConfig, nlmFAck, nlAttr{nfqaCfgParams, params}),
	} {
		if _, err := l.file.Write(m); err != nil {
			return fmt.Errorf("nfqueue config: %w", err)
		}
		buf := make([]byte, 4096)
		l.file.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := l.file.Read(buf)
		if err != nil {
			return fmt.Errorf("nfqueue config answer: %w", err)
		}
		if n < 20 || binary.NativeEndian.Uint16(buf[4:]) != nlmsgError {
			return fmt.Errorf("nfqueue config: unexpected answer % x", buf[:min(n, 32)])
		}
		if code := int32(binary.NativeEndian.Uint32(buf[16:])); code != 0 {
			return fmt.Errorf("nfqueue config: %w", syscall.Errno(-code))
		}
	}
	l.file.SetReadDeadline(time.Time{})
	return nil
}

// read takes each queued packet: a drop is decided at once, an accept
// waits in pending for its time.
func (l *lossyLink) read() {
	defer l.wg.Done()
	defer close(l.pending)
	buf := make([]byte, 64<<10)
	for {
		n, err := l.file.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				continue // the kernel dropped some: a lossy link indeed
			}
			return
		}
		now := time.Now()
		for b := buf[:n]; len(b) >= 16; {
			size := int(binary.NativeEndian.Uint32(b))
			if size < 16 || size > len(b) {
				break
			}
			if typ := binary.NativeEndian.Uint16(b[4:]); typ == nfnlSubsysQueue<<8|nfqnlMsgPacket {
				if id, ok := packetID(b[16:size]); ok {
					l.decide(id, now)
				}
			}
			b = b[(size+3)&^3:]
		}
	}
}

// packetID finds NFQA_PACKET_HDR in a packet message's body (after the
// nfgenmsg) and returns its packet id.
func packetID(body []byte) (uint32, bool) {
	if len(body) < 4 {
		return 0, false
	}
	for a := body[4:]; len(a) >= 4; {
		n := int(binary.NativeEndian.Uint16(a))
		typ := binary.NativeEndian.Uint16(a[2:]) & 0x3fff // without the nested/byte-order flags
		if n < 4 || n > len(a) {
			return 0, false
		}
		if typ == nfqaPacketHdr && n >= 8 {
			return binary.BigEndian.Uint32(a[4:]), true
		}
		a = a[min((n+3)&^3, len(a)):]
	}
	return 0, false
}

func (l *lossyLink) decide(id uint32, now time.Time) {
	l.mu.Lock()
	drop := l.rng.Float64() < lossyDrop
	if drop {
		l.dropped++
	} else {
		l.delayed++
	}
	l.mu.Unlock()
	if drop {
		l.verdict(id, nfDrop)
		return
	}
	select {
	case l.pending <- pendingVerdict{id: id, due: now.Add(lossyDelay)}:
	default:
		l.verdict(id, nfDrop) // more than 4096 held: the queue overflows
	}
}

// release accepts each held packet when it is due, in order.
func (l *lossyLink) release() {
	defer l.wg.Done()
	for p := range l.pending {
		if d := time.Until(p.due); d > 0 {
			time.Sleep(d)
		}
		l.verdict(p.id, nfAccept)
	}
}

func (l *lossyLink) verdict(id uint32, v uint32) {
	hdr := binary.BigEndian.AppendUint32(nil, v)
	hdr = binary.BigEndian.AppendUint32(hdr, id)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_, _ = l.file.Write(nfMessage(nfqnlMsgVerdict, 0, nlAttr{nfqaVerdictHdr, hdr})) // fails once closed: the rule is gone by then
}
