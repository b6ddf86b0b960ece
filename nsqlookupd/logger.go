package nsqlookupd

import "github.com/lookupd/nsqlookupd/internal/lg"

// Logger receives the daemon's log lines; *log.Logger satisfies it.
type Logger lg.Logger

func (l *NSQLookupd) logf(level lg.LogLevel, f string, args ...interface{}) {
	lg.Logf(l.opts.Logger, l.opts.LogLevel, level, f, args...)
}
