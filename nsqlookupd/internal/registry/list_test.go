package registry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// name is a list item that is its own key.
type name string

func (n name) key() string { return string(n) }

// checkList verifies the list's own invariants and that it holds want.
func checkList(t testing.TB, l *list[name], want map[string]bool) {
	t.Helper()
	n := 0
	var prev name
	for i, c := range l.chunks {
		if len(c) == 0 || len(c) > chunkMax {
			t.Fatalf("chunk %d holds %d items; want 1 to %d", i, len(c), chunkMax)
		}
		// splits make halves and merges fill small chunks: no chunk is
		// left nearly empty, so there are at most n/chunkMin chunks
		if len(l.chunks) > 1 && len(c) < chunkMin {
			t.Fatalf("chunk %d of %d holds %d items; want at least %d", i, len(l.chunks), len(c), chunkMin)
		}
		for j, v := range c {
			if (i > 0 || j > 0) && v <= prev {
				t.Fatalf("chunk %d item %d: %q after %q: not sorted", i, j, v, prev)
			}
			prev = v
			n++
		}
	}
	if n != l.Len() || n != len(want) {
		t.Fatalf("holds %d items, Len %d; want %d", n, l.Len(), len(want))
	}
	for k := range want {
		if v, ok := l.Get(k); !ok || string(*v) != k {
			t.Fatalf("Get(%q) = %v, %t; want it", k, v, ok)
		}
	}
	got := slices.Collect(l.From(""))
	if !slices.IsSorted(got) || len(got) != len(want) {
		t.Fatalf("From(\"\"): %d items, sorted %t; want %d sorted", len(got), slices.IsSorted(got), len(want))
	}
}

func TestListRandom(t *testing.T) {
	t.Parallel()
	for _, universe := range []int{3, 100, 5 * chunkMax} {
		t.Run(fmt.Sprint(universe), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(universe)))
			var l list[name]
			want := map[string]bool{}
			for step := range 20 * universe {
				k := fmt.Sprintf("n%05d", rng.IntN(universe))
				// grow first, then mostly shrink, so chunks split and merge
				insert := rng.IntN(10) < 7
				if step > 10*universe {
					insert = rng.IntN(10) < 3
				}
				if insert {
					if got := l.Insert(name(k)); got == want[k] {
						t.Fatalf("Insert(%q) = %t with it present = %t", k, got, want[k])
					}
					want[k] = true
				} else {
					if got := l.Delete(k); got != want[k] {
						t.Fatalf("Delete(%q) = %t; want %t", k, got, want[k])
					}
					delete(want, k)
				}
				if step%97 == 0 {
					checkList(t, &l, want)
				}
			}
			checkList(t, &l, want)
			for k := range want {
				l.Delete(k)
			}
			checkList(t, &l, map[string]bool{})
			if l.chunks != nil {
				t.Fatalf("an empty list keeps %d chunks", len(l.chunks))
			}
		})
	}
}

func TestListFrom(t *testing.T) {
	t.Parallel()
	var l list[name]
	for i := range 3 * chunkMax {
		l.Insert(name(fmt.Sprintf("n%05d", i)))
	}
	for _, from := range []int{0, chunkMax - 1, chunkMax, 2*chunkMax + 7, 3*chunkMax - 1} {
		got := slices.Collect(l.From(fmt.Sprintf("n%05d", from)))
		if len(got) != 3*chunkMax-from || got[0] != name(fmt.Sprintf("n%05d", from)) {
			t.Fatalf("From n%05d: got %d items from %s; want %d", from, len(got), got[0], 3*chunkMax-from)
		}
	}
	var got []name
	for v := range l.From("n00001\x00") {
		if got = append(got, v); len(got) == 2 {
			break
		}
	}
	if fmt.Sprint(got) != "[n00002 n00003]" {
		t.Fatalf("From after n00001, stopping after two: got %v", got)
	}
	if got := slices.Collect(l.From("o")); len(got) != 0 {
		t.Fatalf("From past the end: got %v; want nothing", got)
	}
}

// TestListMergeSplits: a chunk that falls under chunkMin merges with a
// neighbour so full that the merge overflows chunkMax, and the merged chunk
// is split again into two halves.
func TestListMergeSplits(t *testing.T) {
	t.Parallel()
	var l list[name]
	want := map[string]bool{}
	// ascending inserts split at chunkMax+1 and fill the last chunk: stop
	// with three chunks, the last nearly full
	for i := 0; len(l.chunks) < 3 || len(l.chunks[2]) < chunkMax-10; i++ {
		k := fmt.Sprintf("n%05d", i)
		l.Insert(name(k))
		want[k] = true
	}
	checkList(t, &l, want)
	middle := slices.Clone(l.chunks[1])
	for _, k := range middle[:len(middle)-chunkMin+1] {
		l.Delete(string(k))
		delete(want, string(k))
		checkList(t, &l, want)
	}
	if len(l.chunks) != 3 || len(l.chunks[1]) < chunkMax/2 || len(l.chunks[2]) < chunkMax/2 {
		sizes := make([]int, len(l.chunks))
		for i, c := range l.chunks {
			sizes[i] = len(c)
		}
		t.Fatalf("chunk sizes %v; want 3 chunks, the last two split from an overflowing merge", sizes)
	}
}

// BenchmarkListInsert shows an insert costs the same in a list of 1k, 10k
// and 100k items.
func BenchmarkListInsert(b *testing.B) {
	for _, size := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			var l list[name]
			rng := rand.New(rand.NewPCG(1, 2))
			for l.Len() < size {
				l.Insert(name(fmt.Sprintf("ch%09d", rng.IntN(1<<30))))
			}
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = fmt.Sprintf("ch%09d", rng.IntN(1<<30))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := keys[i%len(keys)]
				l.Insert(name(k))
				l.Delete(k)
				i++
			}
		})
	}
}

// TestListMergeLast: the last chunk, fallen under chunkMin, merges with the
// one before it.
func TestListMergeLast(t *testing.T) {
	t.Parallel()
	var l list[name]
	want := map[string]bool{}
	for i := 0; len(l.chunks) < 3; i++ {
		k := fmt.Sprintf("n%05d", i)
		l.Insert(name(k))
		want[k] = true
	}
	last := slices.Clone(l.chunks[2])
	for _, k := range last[:len(last)-chunkMin+1] {
		l.Delete(string(k))
		delete(want, string(k))
		checkList(t, &l, want)
	}
	if len(l.chunks) != 2 {
		t.Fatalf("%d chunks; want the last merged into the one before", len(l.chunks))
	}
}
