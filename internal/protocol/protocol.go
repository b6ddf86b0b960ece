// Package protocol holds the pieces of nsqlookupd's TCP wire protocol shared
// by the daemon and its tests: response framing, bounded line reading
// (LineReader) and answer gathering (Answers), client errors, topic and
// channel name rules, and the accept loop.
package protocol

import (
	"encoding/binary"
	"io"
)

// MagicV1 is the 4 bytes a client sends first to choose protocol V1.
const MagicV1 = "  V1"

// AppendFrame appends data to buf as one frame: a 4-byte big-endian length,
// then the bytes.
func AppendFrame(buf []byte, data []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	return append(buf, data...)
}

// SendFramedResponse writes data to w as one frame, in a single Write.
func SendFramedResponse(w io.Writer, data []byte) (int, error) {
	return w.Write(AppendFrame(make([]byte, 0, 4+len(data)), data))
}
