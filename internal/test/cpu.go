package test

import (
	"syscall"
	"testing"
	"time"
)

// ReportCPU makes b report, when it ends, the CPU time (user and system,
// every thread of the process, the garbage collector's included) spent
// from now on per operation, as cpu-ns/op. On a machine shared with other
// work, that figure moves far less than the time per operation does, which
// counts the time the benchmark waited for a core.
func ReportCPU(b *testing.B) {
	start := cpuTime()
	b.Cleanup(func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") })
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
