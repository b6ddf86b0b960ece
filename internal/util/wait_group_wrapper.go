// Package util holds small concurrency helpers shared by the daemon's servers.
package util

import "sync"

// WaitGroupWrapper is a sync.WaitGroup that starts the goroutines it waits for.
type WaitGroupWrapper struct {
	sync.WaitGroup
}

// Wrap runs cb in a new goroutine counted by the WaitGroup.
func (w *WaitGroupWrapper) Wrap(cb func()) {
	w.Add(1)
	go func() {
		defer w.Done()
		cb()
	}()
}
