package nsqlookupd

import (
	"reflect"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/reload"
)

// Reload puts in force the reloadable options of those load gives (valid
// ones), all or, if anything is wrong, none of them; each other option
// load changed keeps its value, named in a WARNING line. One at a time.
func (l *NSQLookupd) Reload(load func() (*Options, error)) error {
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	err := l.reload(load)
	if l.reloads.Done(err, l.clock.Now()); err != nil {
		l.log.Eventf(lg.ERROR, clientKeys[1:], "RELOAD: %s; the running configuration is kept", err)
	}
	return err
}

func (l *NSQLookupd) reload(load func() (*Options, error)) error {
	asked, err := load()
	if err != nil {
		return err
	}
	next := *l.running // what runs, with the asked values of what reloads
	reload.Take(&next, asked, reload.Options(l.auth != nil, len(asked.AuthHTTPAddresses) > 0)...)
	commitCert, err := l.certs.Load() // read again at once
	if err == nil {
		err = next.Validate()
	}
	// the last step that can fail (changing nothing if it does); unchanged, auth keeps its cache
	if err == nil && l.auth != nil && !reflect.DeepEqual(next.authConfig(), l.running.authConfig()) {
		err = l.auth.Reload(next.authConfig())
	}
	if err != nil {
		return err
	}
	l.log.Set(lg.Settings{Level: next.LogLevel, Format: next.LogFormat, Access: next.HTTPAccessLog})
	for _, c := range reload.Changes(&next, asked) {
		l.log.Eventf(lg.WARN, lg.Keys{"setting"}, "RELOAD: --%s needs a restart: still %s (asked: %s)", c.Flag, c.Running, c.New)
	}
	l.access.Reload(next.accessConfig())
	l.tcpServer.closeRefused()
	commitCert()
	l.running = &next
	l.log.Logf(lg.INFO, "RELOAD: done (log level %s, format %s, access log %s)", next.LogLevel, next.LogFormat, next.HTTPAccessLog)
	return nil
}
