// Package reload holds what the daemon's reload (SIGHUP; docs/logging.md,
// Reload) needs besides the daemon itself: taking the options that reload
// from the ones asked for (Take), finding those left that need a restart
// (Changes), and the outcome of the last reload, for /metrics (Status),
// under Prometheus's own names for its own reloads.
package reload

import (
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Change is an option whose value in force differs from the one asked
// for.
type Change struct {
	Flag         string // the option's flag name, without dashes
	Running, New string // the two values, as fmt prints them
}

// Changes compares two option structs of the same type field by field
// (those with a flag tag; lists as lists) and returns the options whose
// values differ, in the struct's order. The daemon calls it with the
// configuration it will run (the running one, with the new values of what
// it reloads) and the one asked for: what is left differing needs a
// restart.
func Changes(running, asked any) []Change {
	a, b := reflect.ValueOf(running).Elem(), reflect.ValueOf(asked).Elem()
	var changes []Change
	for i := 0; i < a.NumField(); i++ {
		name := a.Type().Field(i).Tag.Get("flag")
		if name == "" || reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			continue
		}
		changes = append(changes, Change{Flag: name, Running: fmt.Sprint(a.Field(i)), New: fmt.Sprint(b.Field(i))})
	}
	return changes
}

// Options returns the flag names of the options a reload puts in force
// (docs/logging.md, Reload): the log's, the access rules, and auth's while
// it stays on, or off, as at start-up.
func Options(authOn, authAsked bool) []string {
	names := []string{"log-level", "log-format", "http-access-log", "tcp-allow", "http-admin-allow",
		"http-admin-require-client-cert", "http-admin-client-allowed-san"}
	if authOn == authAsked {
		names = append(names, "auth-http-address", "http-client-connect-timeout", "http-client-request-timeout")
	}
	return names
}

// Take copies the options flags names (by their flag tags) from src to
// dst, two pointers to the same option struct type.
func Take(dst, src any, flags ...string) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := 0; i < d.NumField(); i++ {
		if slices.Contains(flags, d.Type().Field(i).Tag.Get("flag")) {
			d.Field(i).Set(s.Field(i))
		}
	}
}

// Status is the outcome of the last reload: as Prometheus counts its
// own, the start-up is a successful load.
type Status struct {
	ok   atomic.Bool
	at   atomic.Int64 // unix seconds of the last success
	coll []prometheus.Collector
}

// NewStatus returns the status of a daemon started at now.
func NewStatus(now time.Time) *Status {
	s := &Status{}
	s.Done(nil, now)
	s.coll = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nsqlookupd_config_last_reload_successful",
			Help: "1 if the last reload (SIGHUP) put its configuration in force, 0 if it was refused and the running one kept; 1 from start-up.",
		}, func() float64 {
			if s.ok.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nsqlookupd_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful reload, or of the start-up.",
		}, func() float64 { return float64(s.at.Load()) }),
	}
	return s
}

// Done records the outcome of a reload that ended at now: err nil is a
// success.
func (s *Status) Done(err error, now time.Time) {
	s.ok.Store(err == nil)
	if err == nil {
		s.at.Store(now.Unix())
	}
}

// Metrics returns the two gauges, for the daemon's /metrics.
func (s *Status) Metrics() []prometheus.Collector { return s.coll }
