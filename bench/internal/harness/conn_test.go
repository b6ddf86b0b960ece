package harness

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
)

// TestPipeline: every command is answered in order, tick sees each, and the
// large reader lent for the pipeline is given back.
func TestPipeline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() { // answers OK to each line
		defer server.Close()
		sc := bufio.NewScanner(server)
		for sc.Scan() {
			if _, err := server.Write(binary.BigEndian.AppendUint32(nil, 2)); err != nil {
				return
			}
			server.Write([]byte("OK"))
		}
	}()
	c := &Conn{Conn: client, r: bufio.NewReaderSize(client, idleReaderSize)}
	ticks := 0
	err := c.Pipeline(100, func(w *bufio.Writer) {
		for i := range 100 {
			fmt.Fprintf(w, "REGISTER t%d\n", i)
		}
	}, func(i int) {
		if i != ticks {
			t.Errorf("tick %d, want %d", i, ticks)
		}
		ticks++
	})
	if err != nil || ticks != 100 {
		t.Fatalf("Pipeline: %v after %d answers; want 100", err, ticks)
	}
	if c.r.Size() != idleReaderSize {
		t.Errorf("after the pipeline the reader holds %d bytes; want %d", c.r.Size(), idleReaderSize)
	}
}
