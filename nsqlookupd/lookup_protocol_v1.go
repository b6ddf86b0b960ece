package nsqlookupd

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/protocol"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// Limits on what one registration connection may send.
const (
	// maxCommandLine bounds a command line, newline included. The longest
	// valid command, UNREGISTER with a 64-byte topic and channel, is 141
	// bytes; 4 KiB leaves room for surrounding white space and ignored extra
	// words while capping the memory a connection can make us hold.
	maxCommandLine = 4096
	// maxIdentifyBody bounds the IDENTIFY JSON body. nsqd sends a few
	// hundred bytes; the declared length is checked before anything is
	// allocated.
	maxIdentifyBody = 64 << 10
	// answerWriteTimeout bounds each write of answers to a registration
	// connection. nsqd reads every answer before it sends its next command,
	// and answers are a few bytes (an IDENTIFY answer some 200), so a live
	// peer's writes land in the socket buffers at once; one that cannot
	// finish in 10 s means the peer has stopped reading, and the connection
	// is closed so that it cannot hold its goroutine and buffers for ever.
	// 10 s still lets a congested link drain 4 KiB of gathered answers.
	answerWriteTimeout = 10 * time.Second
)

var okResponse = []byte("OK")

// lookupProtocolV1 runs the line-oriented V1 registration protocol.
type lookupProtocolV1 struct {
	nsqlookupd *NSQLookupd
}

// flushingReader reads from the connection, first flushing the answers
// gathered in w: answers to pipelined commands go out in one write once the
// input read so far has been handled, and never wait behind a blocking read.
// Before that, it pushes back the client's eviction if a command completed
// since the last read, so a peer that has its answer knows its deadline has
// moved.
type flushingReader struct {
	client *clientV1
	w      *protocol.Answers
}

func (r flushingReader) Read(p []byte) (int, error) {
	r.client.keepAlive()
	if r.w.Buffered() > 0 {
		if err := r.w.Flush(); err != nil {
			return 0, err
		}
	}
	return r.client.Read(p)
}

// deadlineWriter writes to a registration connection with a deadline of
// timeout (0: none) from the start of each write.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

// errAnswersNotTaken is returned when answers could not be written within
// the write timeout: the peer has stopped reading.
var errAnswersNotTaken = errors.New("answers not taken")

func (w deadlineWriter) Write(p []byte) (int, error) {
	if w.timeout > 0 {
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	n, err := w.conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w within %s - %w", errAnswersNotTaken, w.timeout, err)
	}
	return n, err
}

// IOLoop reads and executes commands until the connection ends or a command
// fails; a failed command's error is sent framed and ends the connection.
func (p *lookupProtocolV1) IOLoop(client *clientV1) error {
	l := p.nsqlookupd
	w := &protocol.Answers{W: deadlineWriter{conn: client, timeout: l.tcpServer.writeTimeout}}
	reader := protocol.NewLineReader(flushingReader{client: client, w: w}, maxCommandLine)
	defer w.Flush()
	defer client.stopEviction()

	// the words of a command: passed to the table's functions, which are
	// called through values, so the array is on the heap: one a connection
	var words [maxWords]string
	var loopErr error
	for {
		line, err := reader.ReadSlice('\n')
		if err != nil {
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				err = protocol.NewClientErr(nil, "E_INVALID",
					fmt.Sprintf("command line longer than %d bytes", maxCommandLine))
				l.metrics.command(len(commandTable), err)
				p.sendError(client, w, err)
			case errors.Is(err, io.EOF):
			case client.evicted.Load() && !errors.Is(err, errAnswersNotTaken):
				l.evictions.Add(1)
				l.log.Eventf(lg.WARN, lg.Keys{"remote_address", "duration", "reason", "broadcast_address", "tcp_port"},
					"CLIENT(%s): no command for %s (%s): evicting producer %s:%d", client, client.readTimeout,
					"producer-read-timeout", client.producer.BroadcastAddress, client.producer.TCPPort)
			default:
				loopErr = err
			}
			break
		}

		params := splitCommand(strings.TrimSpace(string(line)), &words)
		i, response, err := p.exec(client, reader, params)
		l.metrics.command(i, err)
		if err != nil {
			p.sendError(client, w, err)
			break
		}
		client.commands++
		w.Add(response)
	}

	l.log.Eventf(lg.INFO, clientKeys, "PROTOCOL(V1): [%s] exiting ioloop", client)
	return loopErr
}

// exec runs the command params names and returns its index in
// commandTable (len(commandTable) for a verb that is not a command) and
// its answer.
func (p *lookupProtocolV1) exec(client *clientV1, reader io.Reader, params []string) (int, []byte, error) {
	i := slices.IndexFunc(commandTable, func(c command) bool { return c.verb == params[0] })
	if i < 0 {
		return len(commandTable), nil, protocol.NewClientErr(nil, "E_INVALID", fmt.Sprintf("invalid command %s", params[0]))
	}
	response, err := commandTable[i].run(p, client, reader, params[1:])
	return i, response, err
}

// command is a V1 command: its verb, which is also its label in /metrics,
// and what runs it, with the words after the verb.
type command struct {
	verb string
	run  func(p *lookupProtocolV1, client *clientV1, reader io.Reader, params []string) ([]byte, error)
}

// commandTable is the V1 commands; any other verb is answered E_INVALID and
// counted as "invalid".
var commandTable = []command{
	{"PING", (*lookupProtocolV1).PING},
	{"IDENTIFY", (*lookupProtocolV1).IDENTIFY},
	{"REGISTER", (*lookupProtocolV1).REGISTER},
	{"UNREGISTER", (*lookupProtocolV1).UNREGISTER},
}

// maxWords is how many words of a command line are read: the verb and at
// most two arguments (REGISTER topic channel); any further words are
// ignored, as v1.3.0 ignores them.
const maxWords = 3

// splitCommand splits line on single spaces, as strings.Split(line, " ")
// does, into words, keeping the first maxWords; it allocates nothing.
func splitCommand(line string, words *[maxWords]string) []string {
	n := 0
	for ; n < maxWords-1; n++ {
		i := strings.IndexByte(line, ' ')
		if i < 0 {
			break
		}
		words[n], line = line[:i], line[i+1:]
	}
	if i := strings.IndexByte(line, ' '); n == maxWords-1 && i >= 0 {
		line = line[:i]
	}
	words[n] = line
	return words[:n+1]
}

// sendError logs err and sends it framed.
func (p *lookupProtocolV1) sendError(client *clientV1, w *protocol.Answers, err error) {
	ctx := ""
	if cause := errors.Unwrap(err); cause != nil {
		ctx = " - " + cause.Error()
	}
	p.nsqlookupd.log.Eventf(lg.ERROR, clientKeys, "[%s] - %s%s", client, err, ctx)
	w.Add([]byte(err.Error()))
	if ferr := w.Flush(); ferr != nil {
		p.nsqlookupd.log.Eventf(lg.ERROR, clientKeys, "[%s] - %s%s", client, ferr, ctx)
	}
}

// getTopicChan returns the topic and optional channel named by params.
func getTopicChan(command string, params []string) (string, string, error) {
	if len(params) == 0 {
		return "", "", protocol.NewClientErr(nil, "E_INVALID",
			fmt.Sprintf("%s insufficient number of params", command))
	}
	topicName := params[0]
	var channelName string
	if len(params) >= 2 {
		channelName = params[1]
	}
	if !protocol.IsValidTopicName(topicName) {
		return "", "", protocol.NewClientErr(nil, "E_BAD_TOPIC",
			fmt.Sprintf("%s topic name '%s' is not valid", command, topicName))
	}
	if channelName != "" && !protocol.IsValidChannelName(channelName) {
		return "", "", protocol.NewClientErr(nil, "E_BAD_CHANNEL",
			fmt.Sprintf("%s channel name '%s' is not valid", command, channelName))
	}
	return topicName, channelName, nil
}

// REGISTER adds the client to (channel T C), if C is given, and to (topic T).
func (p *lookupProtocolV1) REGISTER(client *clientV1, reader io.Reader, params []string) ([]byte, error) {
	if client.producer == nil {
		return nil, protocol.NewClientErr(nil, "E_INVALID", "client must IDENTIFY")
	}
	topic, channel, err := getTopicChan("REGISTER", params)
	if err != nil {
		return nil, err
	}
	channelAdded, topicAdded := p.nsqlookupd.db.Register(client.producer, topic, channel)
	if channelAdded {
		p.nsqlookupd.logDB(client, "REGISTER", registry.Registration{Kind: registry.KindChannel, Topic: topic, Channel: channel})
	}
	if topicAdded {
		p.nsqlookupd.logDB(client, "REGISTER", registry.Registration{Kind: registry.KindTopic, Topic: topic})
	}
	return okResponse, nil
}

// UNREGISTER removes the client from (channel T C), or from every channel of
// T and from (topic T).
func (p *lookupProtocolV1) UNREGISTER(client *clientV1, reader io.Reader, params []string) ([]byte, error) {
	if client.producer == nil {
		return nil, protocol.NewClientErr(nil, "E_INVALID", "client must IDENTIFY")
	}
	topic, channel, err := getTopicChan("UNREGISTER", params)
	if err != nil {
		return nil, err
	}
	db := p.nsqlookupd.db
	if channel != "" {
		if db.UnregisterChannel(client.producer, topic, channel) {
			p.nsqlookupd.logDB(client, "UNREGISTER", registry.Registration{Kind: registry.KindChannel, Topic: topic, Channel: channel})
		}
		return okResponse, nil
	}
	// A topic unregistration: nsqd unregisters each channel first, so any
	// channel removed here is unexpected and logged as a warning.
	channels, removed := db.UnregisterTopic(client.producer, topic)
	for _, ch := range channels {
		p.nsqlookupd.log.Eventf(lg.WARN, lg.Keys{"remote_address", "category", "topic", "channel"},
			"client(%s) unexpected UNREGISTER category:%s key:%s subkey:%s", client, "channel", topic, ch)
	}
	if removed {
		p.nsqlookupd.logDB(client, "UNREGISTER", registry.Registration{Kind: registry.KindTopic, Topic: topic})
	}
	return okResponse, nil
}

// IDENTIFY reads the producer's JSON body, records the producer and answers
// with this lookupd's own identity.
func (p *lookupProtocolV1) IDENTIFY(client *clientV1, reader io.Reader, params []string) ([]byte, error) {
	if client.producer != nil {
		return nil, protocol.NewClientErr(nil, "E_INVALID", "cannot IDENTIFY again")
	}

	var size [4]byte
	if _, err := io.ReadFull(reader, size[:]); err != nil {
		return nil, protocol.NewClientErr(err, "E_BAD_BODY", "IDENTIFY failed to read body size")
	}
	bodyLen := int32(binary.BigEndian.Uint32(size[:]))
	// A declared size of 0 is read as an empty body, which then fails to
	// decode, as in v1.3.0; only a size no body can have gets our own text.
	if bodyLen < 0 || bodyLen > maxIdentifyBody {
		return nil, protocol.NewClientErr(nil, "E_BAD_BODY",
			fmt.Sprintf("IDENTIFY body size %d out of range (1 to %d)", bodyLen, maxIdentifyBody))
	}
	body := make([]byte, bodyLen)
	if _, err := io.ReadFull(reader, body); err != nil {
		return nil, protocol.NewClientErr(err, "E_BAD_BODY", "IDENTIFY failed to read body")
	}

	info, err := decodeIdentify(body, client.addr)
	if err != nil {
		return nil, err
	}

	l := p.nsqlookupd
	l.log.Eventf(lg.INFO, lg.Keys{"remote_address", "broadcast_address", "tcp_port", "http_port", "version"},
		"CLIENT(%s): IDENTIFY Address:%s TCP:%d HTTP:%d Version:%s",
		client, info.BroadcastAddress, info.TCPPort, info.HTTPPort, info.Version)

	// A producer with this connection's address that is still registered
	// is a dead connection's whose address the kernel reused: it is
	// replaced. This connection's registrations count; the stale
	// producer's go, and so does its connection.
	producer, replaced := l.db.AddProducer(info, append(appendProducer(nil, &info), '}'), l.clock.Now(), func(left []registry.Registration) {
		for _, r := range left {
			l.logDB(client, "UNREGISTER", r)
		}
	})
	client.producer = producer
	l.auth.ProducerUp(client.addr) // its nsqd may read /channels without a secret (internal/auth)
	if replaced != nil {
		l.log.Eventf(lg.WARN, clientKeys, "client(%s) replaced a stale producer with the same address; closing its connection", client)
		l.tcpServer.closeStale(client.addr, client.Conn)
	}
	l.logDB(client, "REGISTER", registry.Registration{Kind: registry.KindProducer})
	// Identified: the connection may now stay as long as the producer keeps
	// sending commands.
	client.SetReadDeadline(time.Time{})
	client.startEviction(l.clock, l.opts.ProducerReadTimeout)
	return l.identifyResponse, nil
}

// identifyBody is an IDENTIFY body as encoding/json decodes it: v1.3.0's
// fields, so that a body decodes here exactly when it decodes there
// (remote_address too, though the connection's address replaces it). The
// topology fields of newer nsqd are taken as any JSON value: v1.3.0
// ignores them, whatever their value, so a body it accepts is never
// refused for one of them here; only a string is kept (and echoed).
type identifyBody struct {
	RemoteAddress    string          `json:"remote_address"`
	Hostname         string          `json:"hostname"`
	BroadcastAddress string          `json:"broadcast_address"`
	TCPPort          int             `json:"tcp_port"`
	HTTPPort         int             `json:"http_port"`
	Version          string          `json:"version"`
	TopologyZone     json.RawMessage `json:"topology_zone"`
	TopologyRegion   json.RawMessage `json:"topology_region"`
}

// decodeIdentify decodes an IDENTIFY body as encoding/json does and checks
// that broadcast_address, tcp_port, http_port and version are set.
func decodeIdentify(body []byte, remoteAddr string) (registry.Info, error) {
	var b identifyBody
	if err := json.Unmarshal(body, &b); err != nil {
		return registry.Info{}, protocol.NewClientErr(err, "E_BAD_BODY", "IDENTIFY failed to decode JSON body")
	}
	if b.BroadcastAddress == "" || b.TCPPort == 0 || b.HTTPPort == 0 || b.Version == "" {
		return registry.Info{}, protocol.NewClientErr(nil, "E_BAD_BODY", "IDENTIFY missing fields")
	}
	info := registry.Info{ID: remoteAddr, Hostname: b.Hostname, BroadcastAddress: b.BroadcastAddress,
		TCPPort: b.TCPPort, HTTPPort: b.HTTPPort, Version: b.Version}
	// A value that is not a string leaves the field empty.
	_ = json.Unmarshal(b.TopologyZone, &info.TopologyZone)
	_ = json.Unmarshal(b.TopologyRegion, &info.TopologyRegion)
	return info, nil
}

// PING refreshes an identified producer's last update; a PING may come
// before IDENTIFY, and changes nothing then.
func (p *lookupProtocolV1) PING(client *clientV1, reader io.Reader, params []string) ([]byte, error) {
	if client.producer != nil {
		now := p.nsqlookupd.clock.Now()
		last := client.producer.LastUpdate()
		p.nsqlookupd.db.Ping(client.producer, now)
		p.nsqlookupd.log.Eventf(lg.INFO, clientKeys[:1], "CLIENT(%s): pinged (last ping %s)", client, now.Sub(last))
	}
	return okResponse, nil
}
