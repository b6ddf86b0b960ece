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
	// writeBufferSize is the size of the buffer answers are gathered in
	// while a client's pipelined commands are being read.
	writeBufferSize = 4096
	// answerWriteTimeout bounds each write of answers to a registration
	// connection. nsqd reads every answer before it sends its next command,
	// and answers are a few bytes (an IDENTIFY answer some 200), so a live
	// peer's writes land in the socket buffers at once; one that cannot
	// finish in 10 s means the peer has stopped reading, and the connection
	// is closed so that it cannot hold its goroutine and buffers for ever.
	// 10 s still lets a congested link drain a full writeBufferSize.
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
// since the last read, and adds the commands counted since then to
// /metrics' counters: once per read of the connection, not per command,
// and before the flush, so a peer that has its answer knows its deadline
// has moved and finds its command counted.
type flushingReader struct {
	client  *clientV1
	w       *bufio.Writer
	metrics *metrics
}

func (r flushingReader) Read(p []byte) (int, error) {
	r.client.keepAlive()
	r.client.counts.publish(r.metrics)
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
	w := bufio.NewWriterSize(deadlineWriter{conn: client, timeout: p.nsqlookupd.tcpServer.writeTimeout}, writeBufferSize)
	reader := bufio.NewReaderSize(flushingReader{client: client, w: w, metrics: p.nsqlookupd.metrics}, maxCommandLine)
	defer w.Flush()
	defer client.counts.publish(p.nsqlookupd.metrics) // before the flush; also after a panic
	defer client.stopEviction()

	var err error
	for {
		var line []byte
		line, err = reader.ReadSlice('\n')
		if err != nil {
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				err = protocol.NewClientErr(nil, "E_INVALID",
					fmt.Sprintf("command line longer than %d bytes", maxCommandLine))
				client.counts.add(cmdInvalid, err)
				client.counts.publish(p.nsqlookupd.metrics)
				p.sendError(client, w, err)
				err = nil
			case errors.Is(err, io.EOF):
				err = nil
			case client.evicted.Load() && !errors.Is(err, errAnswersNotTaken):
				p.nsqlookupd.evictions.Add(1)
				info := client.peer.info
				p.nsqlookupd.logf(lg.WARN, "CLIENT(%s): no command for %s (producer-read-timeout): evicting producer %s:%d",
					client, client.readTimeout, info.BroadcastAddress, info.TCPPort)
				err = nil
			}
			break
		}

		var words [maxWords]string
		params := splitCommand(strings.TrimSpace(string(line)), &words)
		if hook := p.nsqlookupd.tcpServer.commandHook; hook != nil {
			hook(slices.Clone(params)) // tests only: see tcpServer.commandHook
		}
		var response []byte
		response, err = p.Exec(client, reader, params)
		client.counts.add(commandIndex(params[0]), err)
		if err != nil {
			client.counts.publish(p.nsqlookupd.metrics)
			p.sendError(client, w, err)
			err = nil
			break
		}
		client.commands++
		if response != nil {
			w.Write(protocol.AppendFrame(w.AvailableBuffer(), response))
		}
	}

	p.nsqlookupd.logf(lg.INFO, "PROTOCOL(V1): [%s] exiting ioloop", client)
	return err
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
func (p *lookupProtocolV1) sendError(client *clientV1, w *bufio.Writer, err error) {
	ctx := ""
	if cause := errors.Unwrap(err); cause != nil {
		ctx = " - " + cause.Error()
	}
	p.nsqlookupd.logf(lg.ERROR, "[%s] - %s%s", client, err, ctx)
	w.Write(protocol.AppendFrame(w.AvailableBuffer(), []byte(err.Error())))
	if ferr := w.Flush(); ferr != nil {
		p.nsqlookupd.logf(lg.ERROR, "[%s] - %s%s", client, ferr, ctx)
	}
}

// Exec runs one command and returns its answer.
func (p *lookupProtocolV1) Exec(client *clientV1, reader *bufio.Reader, params []string) ([]byte, error) {
	switch params[0] {
	case "PING":
		return p.PING(client, params)
	case "IDENTIFY":
		return p.IDENTIFY(client, reader, params[1:])
	case "REGISTER":
		return p.REGISTER(client, reader, params[1:])
	case "UNREGISTER":
		return p.UNREGISTER(client, reader, params[1:])
	}
	return nil, protocol.NewClientErr(nil, "E_INVALID", fmt.Sprintf("invalid command %s", params[0]))
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
func (p *lookupProtocolV1) REGISTER(client *clientV1, reader *bufio.Reader, params []string) ([]byte, error) {
	if client.peer == nil {
		return nil, protocol.NewClientErr(nil, "E_INVALID", "client must IDENTIFY")
	}
	topic, channel, err := getTopicChan("REGISTER", params)
	if err != nil {
		return nil, err
	}
	channelAdded, topicAdded := p.nsqlookupd.db.register(client.peer, topic, channel)
	if channelAdded {
		p.nsqlookupd.logDB(client, "REGISTER", "channel", topic, channel)
	}
	if topicAdded {
		p.nsqlookupd.logDB(client, "REGISTER", "topic", topic, "")
	}
	return okResponse, nil
}

// UNREGISTER removes the client from (channel T C), or from every channel of
// T and from (topic T).
func (p *lookupProtocolV1) UNREGISTER(client *clientV1, reader *bufio.Reader, params []string) ([]byte, error) {
	if client.peer == nil {
		return nil, protocol.NewClientErr(nil, "E_INVALID", "client must IDENTIFY")
	}
	topic, channel, err := getTopicChan("UNREGISTER", params)
	if err != nil {
		return nil, err
	}
	db := p.nsqlookupd.db
	if channel != "" {
		if db.unregisterChannel(client.peer, topic, channel) {
			p.nsqlookupd.logDB(client, "UNREGISTER", "channel", topic, channel)
		}
		return okResponse, nil
	}
	// A topic unregistration: nsqd unregisters each channel first, so any
	// channel removed here is unexpected and logged as a warning.
	channels, removed := db.unregisterTopic(client.peer, topic)
	for _, ch := range channels {
		p.nsqlookupd.logf(lg.WARN, "client(%s) unexpected UNREGISTER category:%s key:%s subkey:%s",
			client, "channel", topic, ch)
	}
	if removed {
		p.nsqlookupd.logDB(client, "UNREGISTER", "topic", topic, "")
	}
	return okResponse, nil
}

// IDENTIFY reads the producer's JSON body, records the producer and answers
// with this lookupd's own identity.
func (p *lookupProtocolV1) IDENTIFY(client *clientV1, reader *bufio.Reader, params []string) ([]byte, error) {
	if client.peer != nil {
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

	info, err := decodeIdentify(body, client.RemoteAddr().String())
	if err != nil {
		return nil, err
	}

	p.nsqlookupd.logf(lg.INFO, "CLIENT(%s): IDENTIFY Address:%s TCP:%d HTTP:%d Version:%s",
		client, info.BroadcastAddress, info.TCPPort, info.HTTPPort, info.Version)

	client.peer = newPeer(info, p.nsqlookupd.clock.Now())
	client.peer.close = client.Close
	replaced, left := p.nsqlookupd.db.addPeer(client.peer)
	if replaced != nil {
		// The kernel gave a new connection the address of one we still
		// hold: that one is dead. The newer connection's registrations
		// count; the stale producer's go, and so does its connection.
		p.nsqlookupd.logf(lg.WARN, "client(%s) replaces a stale producer with the same address; closing its connection", client)
		for _, r := range left {
			p.nsqlookupd.logDB(client, "UNREGISTER", r.Category, r.Key, r.SubKey)
		}
		if replaced.close != nil {
			replaced.close()
		}
	}
	p.nsqlookupd.logDB(client, "REGISTER", "client", "", "")
	// Identified: the connection may now stay as long as the producer keeps
	// sending commands.
	client.SetReadDeadline(time.Time{})
	client.startEviction(p.nsqlookupd.clock, p.nsqlookupd.opts.ProducerReadTimeout)
	return p.nsqlookupd.identifyResponse, nil
}

// identifyFields is what IDENTIFY decodes: the producer's fields, with the
// topology fields of newer nsqd taken as any JSON value. v1.3.0 ignores
// them, whatever their value, so a body it accepts is never refused here
// for one of them; only a string is kept (and echoed).
type identifyFields struct {
	peerInfo
	TopologyZone   json.RawMessage `json:"topology_zone"`
	TopologyRegion json.RawMessage `json:"topology_region"`
}

// decodeIdentify decodes an IDENTIFY body as encoding/json does and checks
// that broadcast_address, tcp_port, http_port and version are set.
func decodeIdentify(body []byte, remoteAddr string) (*peerInfo, error) {
	var fields identifyFields
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, protocol.NewClientErr(err, "E_BAD_BODY", "IDENTIFY failed to decode JSON body")
	}
	info := &fields.peerInfo
	// A value that is not a string leaves the field empty.
	_ = json.Unmarshal(fields.TopologyZone, &info.TopologyZone)
	_ = json.Unmarshal(fields.TopologyRegion, &info.TopologyRegion)
	if info.BroadcastAddress == "" || info.TCPPort == 0 || info.HTTPPort == 0 || info.Version == "" {
		return nil, protocol.NewClientErr(nil, "E_BAD_BODY", "IDENTIFY missing fields")
	}
	info.id = remoteAddr
	info.RemoteAddress = remoteAddr
	info.seal()
	return info, nil
}

// PING refreshes an identified producer's last_update.
func (p *lookupProtocolV1) PING(client *clientV1, params []string) ([]byte, error) {
	if client.peer != nil {
		// a PING may come before IDENTIFY on the same connection
		now := p.nsqlookupd.clock.Now()
		last := client.peer.lastUpdate.Swap(now.UnixNano())
		p.nsqlookupd.logf(lg.INFO, "CLIENT(%s): pinged (last ping %s)",
			client.peer.info.id, now.Sub(time.Unix(0, last)))
	}
	return okResponse, nil
}
