package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// chunks reads its input in pieces of the sizes given in turn.
type chunks struct {
	in    []byte
	sizes []int
	i     int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.in), c.sizes[c.i%len(c.sizes)])
	c.i++
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

// readAll reads lines until an error, then the rest with Read, and
// records what each call returned.
func readAll(r interface {
	ReadSlice(byte) ([]byte, error)
	io.Reader
}, lines int) string {
	var out strings.Builder
	for range lines {
		line, err := r.ReadSlice('\n')
		fmt.Fprintf(&out, "%q %v\n", line, err)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return out.String()
		}
	}
	rest, err := io.ReadAll(r)
	fmt.Fprintf(&out, "rest %q %v\n", rest, err)
	return out.String()
}

// checkSame fails unless a LineReader and a bufio.Reader of size max
// return the same lines, errors and rest from in read in chunks of sizes.
func checkSame(t *testing.T, in []byte, sizes []int, lines int) {
	t.Helper()
	const max = 4096
	want := readAll(bufio.NewReaderSize(&chunks{in: in, sizes: sizes}, max), lines)
	got := readAll(NewLineReader(&chunks{in: in, sizes: sizes}, max), lines)
	if got != want {
		t.Fatalf("chunks %v: got\n%s\nwant (bufio)\n%s", sizes, got, want)
	}
}

// TestLineReaderAsBufio: lines short and long (up to and past the
// limit), read in chunks of every size, come out as bufio's ReadSlice
// gives them, and so does the rest read with Read (an IDENTIFY body).
func TestLineReaderAsBufio(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var in []byte
	for i := range 400 {
		n := rng.IntN(40)
		switch i % 50 {
		case 7:
			n = 300 + rng.IntN(3000) // past the small buffer
		case 13:
			n = 4095 // the longest line, with its '\n'
		}
		in = append(in, bytes.Repeat([]byte{'a' + byte(i%26)}, n)...)
		in = append(in, '\n')
	}
	body := []byte(strings.Repeat("b", 5000)) // no '\n': read with Read
	for _, sizes := range [][]int{{1}, {7}, {256}, {255, 257}, {4096}, {10000}, {3, 900, 256, 1}} {
		checkSame(t, append(bytes.Clone(in), body...), sizes, 400)
		checkSame(t, append(bytes.Clone(in), strings.Repeat("c", 5000)...), sizes, 402) // too long
	}
}

// TestLineReaderIdleBuffer: after a burst that took the large buffer, a
// quiet peer leaves the reader holding only the small one.
func TestLineReaderIdleBuffer(t *testing.T) {
	t.Parallel()
	burst := strings.Repeat("REGISTER topic channel\n", 200)
	pr, pw := io.Pipe()
	l := NewLineReader(pr, 4096)
	go func() {
		pw.Write([]byte(burst))
		pw.Write([]byte("PING\n"))
		pw.Close()
	}()
	tookBig := false
	for range 200 {
		if _, err := l.ReadSlice('\n'); err != nil {
			t.Fatal(err)
		}
		tookBig = tookBig || l.big != nil
	}
	if !tookBig {
		t.Fatal("a burst of 4.6 KB was read without the large buffer")
	}
	if line, err := l.ReadSlice('\n'); string(line) != "PING\n" || err != nil {
		t.Fatalf("after the burst: got %q, %v; want PING", line, err)
	}
	if l.big != nil || len(l.buf) != idleLineBuffer {
		t.Fatalf("quiet after a burst: holds %d bytes; want the %d-byte buffer only", len(l.buf), idleLineBuffer)
	}
	if _, err := l.ReadSlice('\n'); err != io.EOF {
		t.Fatalf("at the end: got %v; want EOF", err)
	}
}

// TestLineReaderErrors: an error comes after the bytes read before it.
func TestLineReaderErrors(t *testing.T) {
	t.Parallel()
	in := "PING\nREGIS"
	want := readAll(bufio.NewReaderSize(iotest.TimeoutReader(strings.NewReader(in)), 4096), 3)
	got := readAll(NewLineReader(iotest.TimeoutReader(strings.NewReader(in)), 4096), 3)
	if got != want {
		t.Fatalf("got\n%s\nwant (bufio)\n%s", got, want)
	}
}

// FuzzLineReader: any input, in any chunks, reads as bufio reads it.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("PING\nREGISTER a b\n"), uint8(3))
	f.Add(bytes.Repeat([]byte("x"), 5000), uint8(255))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		checkSame(t, in, []int{int(chunk)%300 + 1, 256, 1}, 64)
	})
}
