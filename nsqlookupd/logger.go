package nsqlookupd

import "github.com/lookupd/nsqlookupd/internal/lg"

// Logger receives the daemon's log lines; *log.Logger satisfies it.
type Logger lg.Logger

func (l *NSQLookupd) logf(level lg.LogLevel, f string, args ...interface{}) {
	lg.Logf(l.opts.Logger, l.opts.LogLevel, level, f, args...)
}

// logDB logs a change of a client's registrations at INFO, as
// "DB: client(<addr>) <verb> category:<c> key:<k> subkey:<s>". It is the
// line a registering fleet logs most (one per registration), so the
// daemon's own logger gets it without fmt.
func (l *NSQLookupd) logDB(client *clientV1, verb, category, key, subkey string) {
	if l.opts.LogLevel > lg.INFO {
		return
	}
	if l.fastLog != nil {
		l.fastLog.Line("INFO: DB: client(", client.addr, ") ", verb, " category:", category, " key:", key, " subkey:", subkey)
		return
	}
	l.logf(lg.INFO, "DB: client(%s) %s category:%s key:%s subkey:%s", client, verb, category, key, subkey)
}
