package registry

import (
	"iter"
	"slices"
	"strings"
)

// Chunk bounds of list. A chunk is split in two when it passes chunkMax
// items, so an insert moves at most chunkMax items whatever the list's
// size; a chunk that deletes leave under chunkMin items is merged into a
// neighbour, so the chunks stay at least 1/8 full.
const (
	chunkMax = 512
	chunkMin = chunkMax / 8
)

// keyed is what a list holds: items with a string key.
type keyed interface{ key() string }

// list is a set of items kept in key order, in sorted chunks (a one-level
// B+ tree). Inserting or deleting costs O(log n + chunkMax), where one
// sorted slice would move half the set each time (200 000 channels in one
// topic made every REGISTER slower than the last), and listing costs what
// the list holds. Deletes give memory back: emptied chunks go, and a
// chunk shrinks with what it holds. The zero value is empty. It is not
// safe for concurrent use.
type list[T keyed] struct {
	chunks [][]T // each sorted and not empty; every key of chunks[i] < every key of chunks[i+1]
	n      int   // items in all chunks
}

// Len returns the number of items. A nil *list is empty, for Len, Get,
// Delete and From.
func (l *list[T]) Len() int {
	if l == nil {
		return 0
	}
	return l.n
}

// search returns the chunk that holds key or would hold it, where in it,
// and whether it is there. The list must not be empty.
func (l *list[T]) search(key string) (ci, i int, ok bool) {
	ci, _ = slices.BinarySearchFunc(l.chunks, key, func(c []T, key string) int {
		return strings.Compare(c[len(c)-1].key(), key)
	})
	ci = min(ci, len(l.chunks)-1)
	i, ok = slices.BinarySearchFunc(l.chunks[ci], key, func(v T, key string) int {
		return strings.Compare(v.key(), key)
	})
	return ci, i, ok
}

// Get returns the item with key, as a pointer valid until the list
// changes.
func (l *list[T]) Get(key string) (*T, bool) {
	if l.Len() == 0 {
		return nil, false
	}
	ci, i, ok := l.search(key)
	if !ok {
		return nil, false
	}
	return &l.chunks[ci][i], true
}

// Insert adds v, and reports false if an item with its key was there (v
// is then not added).
func (l *list[T]) Insert(v T) bool {
	if l.n == 0 {
		l.chunks = [][]T{{v}}
		l.n = 1
		return true
	}
	ci, i, ok := l.search(v.key())
	if ok {
		return false
	}
	c := slices.Insert(l.chunks[ci], i, v)
	l.n++
	if len(c) <= chunkMax {
		l.chunks[ci] = c
		return true
	}
	l.split(ci, c)
	return true
}

// split puts the halves of c, an overflowing chunk, in place of chunk ci,
// each in an array of its own with room to grow by half: the array c grew
// into (up to twice chunkMax) goes.
func (l *list[T]) split(ci int, c []T) {
	half := len(c) / 2
	left := append(make([]T, 0, chunkMax/2+chunkMax/4), c[:half]...)
	right := append(make([]T, 0, chunkMax/2+chunkMax/4), c[half:]...)
	l.chunks[ci] = left
	l.chunks = slices.Insert(l.chunks, ci+1, right)
}

// Delete removes the item with key, and reports whether it was there.
func (l *list[T]) Delete(key string) bool {
	if l.Len() == 0 {
		return false
	}
	ci, i, ok := l.search(key)
	if !ok {
		return false
	}
	c := slices.Delete(l.chunks[ci], i, i+1)
	l.n--
	switch {
	case l.n == 0:
		l.chunks = nil
		return true
	case len(c) == 0:
		l.chunks = slices.Delete(l.chunks, ci, ci+1)
	case len(c) < chunkMin && len(l.chunks) > 1:
		// merge with the next chunk (the previous one for the last), and
		// split again if that made one too big
		l.chunks[ci] = c
		m := min(ci, len(l.chunks)-2)
		merged := slices.Concat(l.chunks[m], l.chunks[m+1])
		l.chunks[m] = merged
		l.chunks = slices.Delete(l.chunks, m+1, m+2)
		if len(merged) > chunkMax {
			l.split(m, merged)
		}
	default:
		l.chunks[ci] = shrink(c)
	}
	if cap(l.chunks) > 8 && cap(l.chunks) > 4*len(l.chunks) {
		l.chunks = slices.Clone(l.chunks)
	}
	return true
}

// From yields, in order, the items whose key is not below from: from ""
// yields every item. To go on after the item with key k, ask From(k+"\x00").
func (l *list[T]) From(from string) iter.Seq[T] {
	return func(yield func(T) bool) {
		if l.Len() == 0 {
			return
		}
		ci, i, _ := l.search(from)
		for ; ci < len(l.chunks); ci, i = ci+1, 0 {
			for _, v := range l.chunks[ci][i:] {
				if !yield(v) {
					return
				}
			}
		}
	}
}

// shrink returns s; nil once it is empty, or a copy that fits it once
// deletes have left it using a quarter or less of its array, which would
// otherwise keep what a burst once held.
func shrink[T any](s []T) []T {
	switch {
	case len(s) == 0:
		return nil
	case cap(s) > 8 && len(s) <= cap(s)/4:
		return slices.Clone(s)
	}
	return s
}
