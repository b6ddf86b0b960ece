package nsqlookupd

import (
	"slices"
	"strings"
)

// Chunk bounds of sortedNames. A chunk is split in two when it passes
// chunkMax names, so an insert moves at most chunkMax strings and the
// chunk table grows by one entry per chunkMax/2 inserts; a chunk that
// deletes leave under chunkMin names is merged into a neighbour.
const (
	chunkMax = 512
	chunkMin = chunkMax / 8
)

// sortedNames is a set of strings kept in order: a list of sorted chunks
// (as a one-level B+ tree), so that inserting or deleting a name costs
// O(log n + chunkMax), whatever the set's size, where one sorted slice
// would move half the set each time: 200 000 channels in one topic made
// every REGISTER slower than the last. Listing it costs what it holds.
// The zero value is an empty set. It is not safe for concurrent use.
type sortedNames struct {
	chunks [][]string // each sorted, non-empty; all of chunks[i] < all of chunks[i+1]
	n      int        // names in all chunks
}

// Len returns the number of names.
func (s *sortedNames) Len() int { return s.n }

// find returns the chunk that holds name or would hold it: the first whose
// last name is not below name, or the last chunk.
func (s *sortedNames) find(name string) int {
	i, _ := slices.BinarySearchFunc(s.chunks, name, func(c []string, name string) int {
		return strings.Compare(c[len(c)-1], name)
	})
	return min(i, len(s.chunks)-1)
}

// Has reports whether name is in the set.
func (s *sortedNames) Has(name string) bool {
	if s.n == 0 {
		return false
	}
	_, ok := slices.BinarySearch(s.chunks[s.find(name)], name)
	return ok
}

// Insert adds name and reports whether it was absent.
func (s *sortedNames) Insert(name string) bool {
	if s.n == 0 {
		s.chunks = [][]string{{name}}
		s.n = 1
		return true
	}
	ci := s.find(name)
	c := s.chunks[ci]
	i, ok := slices.BinarySearch(c, name)
	if ok {
		return false
	}
	c = slices.Insert(c, i, name)
	s.n++
	if len(c) <= chunkMax {
		s.chunks[ci] = c
		return true
	}
	half := len(c) / 2
	left := slices.Clip(c[:half])
	right := append(make([]string, 0, chunkMax/2+chunkMax/4), c[half:]...)
	clear(c[half:]) // the left half keeps c's array: drop the moved strings from it
	s.chunks[ci] = left
	s.chunks = slices.Insert(s.chunks, ci+1, right)
	return true
}

// Delete removes name and reports whether it was present.
func (s *sortedNames) Delete(name string) bool {
	if s.n == 0 {
		return false
	}
	ci := s.find(name)
	c := s.chunks[ci]
	i, ok := slices.BinarySearch(c, name)
	if !ok {
		return false
	}
	c = slices.Delete(c, i, i+1)
	s.n--
	switch {
	case s.n == 0:
		s.chunks = nil
		return true
	case len(c) == 0:
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
	case len(c) < chunkMin && len(s.chunks) > 1:
		// merge with the next chunk (the previous one for the last), then
		// split again if that made one too big
		s.chunks[ci] = c
		l := min(ci, len(s.chunks)-2)
		merged := make([]string, 0, len(s.chunks[l])+len(s.chunks[l+1]))
		merged = append(append(merged, s.chunks[l]...), s.chunks[l+1]...)
		s.chunks[l] = merged
		s.chunks = slices.Delete(s.chunks, l+1, l+2)
		if len(merged) > chunkMax {
			half := len(merged) / 2
			s.chunks[l] = slices.Clip(merged[:half])
			s.chunks = slices.Insert(s.chunks, l+1, slices.Clone(merged[half:]))
			clear(merged[half:])
		}
	default:
		s.chunks[ci] = shrinkSlice(c)
	}
	if cap(s.chunks) > 4*len(s.chunks) && cap(s.chunks) > 8 {
		s.chunks = slices.Clone(s.chunks)
	}
	return true
}

// AppendTo appends the names in order to dst.
func (s *sortedNames) AppendTo(dst []string) []string {
	dst = slices.Grow(dst, s.n)
	for _, c := range s.chunks {
		dst = append(dst, c...)
	}
	return dst
}

// All calls f for each name in order until f returns false.
func (s *sortedNames) All(f func(string) bool) {
	s.From("", f)
}

// From calls f for each name not below from, in order, until f returns
// false. To go on after a name n, call From(n+"\x00", f).
func (s *sortedNames) From(from string, f func(string) bool) {
	if s.n == 0 {
		return
	}
	ci := s.find(from)
	i, _ := slices.BinarySearch(s.chunks[ci], from)
	for ; ci < len(s.chunks); ci, i = ci+1, 0 {
		for _, name := range s.chunks[ci][i:] {
			if !f(name) {
				return
			}
		}
	}
}

// shrinkSlice returns s, or a copy that fits it once deletes have left s
// using a quarter or less of its array: the array would otherwise keep
// what a burst once held.
func shrinkSlice[T any](s []T) []T {
	if cap(s) > 8 && len(s) <= cap(s)/4 {
		if len(s) == 0 {
			return nil
		}
		return slices.Clone(s)
	}
	return s
}
