package nsqlookupd

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkSorted verifies sortedNames' own invariants and that it holds want.
func checkSorted(t testing.TB, s *sortedNames, want map[string]bool) {
	t.Helper()
	n := 0
	var prev string
	for i, c := range s.chunks {
		if len(c) == 0 || len(c) > chunkMax {
			t.Fatalf("chunk %d holds %d names; want 1 to %d", i, len(c), chunkMax)
		}
		// splits make halves and merges fill small chunks: no chunk is
		// left nearly empty, so there are at most n/chunkMin chunks
		if len(s.chunks) > 1 && len(c) < chunkMin {
			t.Fatalf("chunk %d of %d holds %d names; want at least %d", i, len(s.chunks), len(c), chunkMin)
		}
		for j, name := range c {
			if (i > 0 || j > 0) && name <= prev {
				t.Fatalf("chunk %d name %d: %q after %q: not sorted", i, j, name, prev)
			}
			prev = name
			n++
		}
	}
	if n != s.Len() || n != len(want) {
		t.Fatalf("holds %d names, Len %d; want %d", n, s.Len(), len(want))
	}
	for name := range want {
		if !s.Has(name) {
			t.Fatalf("Has(%q) = false; want true", name)
		}
	}
	got := s.AppendTo(nil)
	if !slices.IsSorted(got) || len(got) != len(want) {
		t.Fatalf("AppendTo: %d names, sorted %t; want %d sorted", len(got), slices.IsSorted(got), len(want))
	}
}

func TestSortedNamesRandom(t *testing.T) {
	for _, universe := range []int{3, 100, 5 * chunkMax} {
		t.Run(fmt.Sprint(universe), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(universe)))
			var s sortedNames
			want := map[string]bool{}
			for step := range 20 * universe {
				name := fmt.Sprintf("n%05d", rng.IntN(universe))
				// grow first, then mostly shrink, so chunks split and merge
				insert := rng.IntN(10) < 7
				if step > 10*universe {
					insert = rng.IntN(10) < 3
				}
				if insert {
					if got := s.Insert(name); got == want[name] {
						t.Fatalf("Insert(%q) = %t with the name present = %t", name, got, want[name])
					}
					want[name] = true
				} else {
					if got := s.Delete(name); got != want[name] {
						t.Fatalf("Delete(%q) = %t; want %t", name, got, want[name])
					}
					delete(want, name)
				}
				if step%97 == 0 {
					checkSorted(t, &s, want)
				}
			}
			checkSorted(t, &s, want)
			for name := range want {
				s.Delete(name)
			}
			checkSorted(t, &s, map[string]bool{})
			if s.chunks != nil {
				t.Fatalf("empty set keeps %d chunks", len(s.chunks))
			}
		})
	}
}

func TestSortedNamesAll(t *testing.T) {
	var s sortedNames
	for _, n := range []string{"c", "a", "b"} {
		s.Insert(n)
	}
	var got []string
	s.All(func(n string) bool { got = append(got, n); return n != "b" })
	if fmt.Sprint(got) != "[a b]" {
		t.Fatalf("All stopping after b: got %v; want [a b]", got)
	}
	got = nil
	s.From("a\x00", func(n string) bool { got = append(got, n); return true })
	if fmt.Sprint(got) != "[b c]" {
		t.Fatalf("From after a: got %v; want [b c]", got)
	}
	got = nil
	s.From("d", func(n string) bool { got = append(got, n); return true })
	if len(got) != 0 {
		t.Fatalf("From d: got %v; want nothing", got)
	}
}

func TestSortedNamesFromAcrossChunks(t *testing.T) {
	var s sortedNames
	for i := range 3 * chunkMax {
		s.Insert(fmt.Sprintf("n%05d", i))
	}
	for _, from := range []int{0, chunkMax - 1, chunkMax, 2*chunkMax + 7, 3*chunkMax - 1} {
		var got []string
		s.From(fmt.Sprintf("n%05d", from), func(n string) bool { got = append(got, n); return true })
		if len(got) != 3*chunkMax-from || got[0] != fmt.Sprintf("n%05d", from) {
			t.Fatalf("From n%05d: got %d names from %s; want %d", from, len(got), got[0], 3*chunkMax-from)
		}
	}
}

// BenchmarkSortedNamesInsert shows an insert costs the same in a set of
// 1k, 10k and 100k names.
func BenchmarkSortedNamesInsert(b *testing.B) {
	for _, size := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			var s sortedNames
			rng := rand.New(rand.NewPCG(1, 2))
			for s.Len() < size {
				s.Insert(fmt.Sprintf("ch%09d", rng.IntN(1<<30)))
			}
			names := make([]string, 1024)
			for i := range names {
				names[i] = fmt.Sprintf("ch%09d", rng.IntN(1<<30))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				name := names[i%len(names)]
				s.Insert(name)
				s.Delete(name)
				i++
			}
		})
	}
}

// TestSortedNamesMergeSplits: a chunk that falls under chunkMin merges with
// a neighbour so full that the merge overflows chunkMax, and the merged
// chunk is split again into two halves.
func TestSortedNamesMergeSplits(t *testing.T) {
	var s sortedNames
	want := map[string]bool{}
	// ascending inserts split at chunkMax+1 and fill the last chunk: stop
	// with three chunks, the last nearly full
	for i := 0; len(s.chunks) < 3 || len(s.chunks[2]) < chunkMax-10; i++ {
		name := fmt.Sprintf("n%05d", i)
		s.Insert(name)
		want[name] = true
	}
	checkSorted(t, &s, want)
	middle := slices.Clone(s.chunks[1])
	for _, name := range middle[:len(middle)-chunkMin+1] {
		s.Delete(name)
		delete(want, name)
		checkSorted(t, &s, want)
	}
	// the middle chunk went under chunkMin, merged with the last into more
	// than chunkMax names, and was split: two chunks of about half of that
	if len(s.chunks) != 3 || len(s.chunks[1]) < chunkMax/2 || len(s.chunks[2]) < chunkMax/2 {
		sizes := make([]int, len(s.chunks))
		for i, c := range s.chunks {
			sizes[i] = len(c)
		}
		t.Fatalf("chunk sizes %v; want 3 chunks, the last two split from an overflowing merge", sizes)
	}
}
