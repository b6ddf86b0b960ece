package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// report is everything one harness run measured; it is what -json writes.
type report struct {
	Machine  machineInfo `json:"machine"`
	Workload workload    `json:"workload"`
	Settings settings    `json:"settings"`
	Results  []*result   `json:"results"`
}

type machineInfo struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	GoVersion string `json:"go_version"`
}

type settings struct {
	Clients             int      `json:"clients"`
	DurationSeconds     float64  `json:"duration_seconds,omitempty"`
	Requests            int      `json:"requests,omitempty"`
	Samples             int      `json:"samples"`
	Concurrency         int      `json:"concurrency"`
	VerifySample        int      `json:"verify_sample"`
	DaemonFlags         []string `json:"daemon_flags,omitempty"`
	RegisterModes       []string `json:"register_modes"`
	PingIntervalSeconds float64  `json:"ping_interval_seconds"`
	HTTPTimeoutSeconds  float64  `json:"http_timeout_seconds"`
	ChurnConns          int      `json:"churn_conns"`
	ChurnRate           float64  `json:"churn_rate,omitempty"`
	ChurnSeconds        float64  `json:"churn_duration_seconds,omitempty"`
	ChurnNodes          bool     `json:"churn_nodes_polled,omitempty"`
}

// result holds the measurements of one target daemon. Pointer fields are
// absent when the phase did not run or the value is unknown (no pid).
type result struct {
	Target   string `json:"target"`
	Binary   string `json:"binary,omitempty"`
	TCPAddr  string `json:"tcp_address"`
	HTTPAddr string `json:"http_address"`
	PID      int    `json:"pid,omitempty"`
	Version  string `json:"version,omitempty"`
	Error    string `json:"error,omitempty"`

	Identify *identifyStats `json:"identify,omitempty"`
	// Register is the registration that filled the measured registry
	// (the last of -register-modes); RegisterModes has every mode's.
	Register      *registerPhase   `json:"register,omitempty"`
	RegisterModes []*registerPhase `json:"register_modes,omitempty"`
	Memory        memoryStats      `json:"memory"`
	Verify        *verifyStats     `json:"verify,omitempty"`

	Lookup   *phaseStats `json:"lookup,omitempty"`
	Channels *phaseStats `json:"channels,omitempty"`
	Ping     *phaseStats `json:"ping,omitempty"`
	// LookupPingRatio is lookup req/s divided by ping req/s.
	LookupPingRatio *float64 `json:"lookup_ping_ratio,omitempty"`

	Nodes  *seqStats `json:"nodes,omitempty"`
	Topics *seqStats `json:"topics,omitempty"`

	Churn *churnStats `json:"churn,omitempty"`

	// OtherCPU is the CPU time used by other processes on the machine while
	// this target was measured (registration to the end), over Seconds of
	// wall time: a noise indicator.
	OtherCPU *float64 `json:"other_processes_cpu_seconds,omitempty"`
	Seconds  float64  `json:"seconds"`
}

type registerPhase struct {
	Commands  int      `json:"commands"`
	Seconds   float64  `json:"seconds"`
	PerSecond float64  `json:"per_second"`
	Mode      string   `json:"mode"`
	Producers int      `json:"producers"`
	DaemonCPU *float64 `json:"daemon_cpu_seconds,omitempty"`
	CPUPer1k  *float64 `json:"daemon_cpu_seconds_per_1000,omitempty"`
}

type memoryStats struct {
	IdleKiB       *uint64 `json:"rss_idle_kib,omitempty"`
	RegisteredKiB *uint64 `json:"rss_registered_kib,omitempty"`
	EndKiB        *uint64 `json:"rss_end_kib,omitempty"`
	PeakKiB       *uint64 `json:"rss_peak_kib,omitempty"`
	KeptKiB       *uint64 `json:"rss_kept_kib,omitempty"` // after all producers left (-kept-wait)
	// HarnessPeakKiB is the harness's own peak RSS so far.
	HarnessPeakKiB *uint64 `json:"harness_rss_peak_kib,omitempty"`
}

// newReport returns the report of a run with o, without results yet.
func newReport(o *options) *report {
	rep := &report{
		Machine: machineInfo{
			OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			CPUModel: cpuModel(), GoVersion: runtime.Version(),
		},
		Workload: o.workload,
		Settings: settings{
			Clients: o.clients, Requests: o.requests, Samples: o.samples,
			Concurrency: o.concurrency, VerifySample: o.verify, DaemonFlags: o.daemonFlags,
			RegisterModes: o.registerModes, PingIntervalSeconds: o.pingInterval.Seconds(),
			HTTPTimeoutSeconds: o.httpTimeout.Seconds(), ChurnConns: o.churnConns,
		},
	}
	if o.churnConns > 0 {
		rep.Settings.ChurnRate, rep.Settings.ChurnSeconds, rep.Settings.ChurnNodes = o.churnRate, o.churnDuration.Seconds(), o.churnNodes
	}
	rep.Settings.DurationSeconds = cond(o.requests <= 0, o.duration.Seconds())
	return rep
}

// per1k returns cpu seconds per 1000 operations, or nil if unknown.
func per1k(cpu *float64, ops int) *float64 {
	if cpu == nil || ops == 0 {
		return nil
	}
	v := *cpu / float64(ops) * 1000
	return &v
}

// row is one line of the table: a label and how to render it for a result.
type row struct {
	label string
	cell  func(r *result) string
}

// cell renders with f what get finds in a result, or "-" if nothing.
func cell[T any](get func(r *result) *T, f func(*T) string) func(r *result) string {
	return func(r *result) string {
		if v := get(r); v != nil {
			return f(v)
		}
		return "-"
	}
}

func phaseRows(name, timeout string, get func(r *result) *phaseStats) []row {
	return []row{
		{name + " req/s", cell(get, func(p *phaseStats) string { return fmtRate(p, timeout) })},
		{name + " p50 / p99", cell(get, func(p *phaseStats) string { return fmtLatency(p, timeout) })},
		{name + " daemon CPU s/1k req", cell(get, func(p *phaseStats) string { return fmtCPUPer1k(p.DaemonCPU, p.Requests) })},
	}
}

// fmtRate renders a phase's throughput, noting a timed-out phase.
func fmtRate(p *phaseStats, timeout string) string {
	return fmt.Sprintf("%.0f", p.PerSecond) + cond(p.TimedOut, ", then >"+timeout+" timeout")
}

// fmtLatency renders a phase's p50 / p99, noting a timed-out phase.
func fmtLatency(p *phaseStats, timeout string) string {
	return cond(p.TimedOut, ">"+timeout+" timeout") + cond(!p.TimedOut, fmtMs(p.P50ms)+" / "+fmtMs(p.P99ms))
}

// fmtSeq renders min / median / max of a series of requests.
func fmtSeq(s *seqStats, timeout string) string {
	switch {
	case s.Skipped:
		return "skipped (timed out before)"
	case s.TimedOut && s.Samples == 0:
		return fmt.Sprintf(">%s timeout", timeout)
	}
	return fmtMs(s.MinMs) + " / " + fmtMs(s.MedianMs) + " / " + fmtMs(s.MaxMs) + cond(s.TimedOut, ", then >"+timeout+" timeout")
}

// fmtRatio renders a ratio, or n/a.
func fmtRatio(v *float64) string { return fmtOpt(v, "%.2f×") }

// registerRows are the rows of each registration mode.
func registerRows(modes []string) []row {
	var rows []row
	for _, mode := range modes {
		get := func(r *result) *registerPhase {
			i := slices.IndexFunc(r.RegisterModes, func(ph *registerPhase) bool { return ph.Mode == mode })
			if i < 0 {
				return nil
			}
			return r.RegisterModes[i]
		}
		rows = append(rows,
			row{"REGISTER/s " + mode, cell(get, func(ph *registerPhase) string {
				return fmt.Sprintf("%.0f (%d in %.3f s)", ph.PerSecond, ph.Commands, ph.Seconds)
			})},
			row{"REGISTER " + mode + " daemon CPU s/1k", cell(get, func(ph *registerPhase) string { return fmtCPUPer1k(ph.DaemonCPU, ph.Commands) })})
	}
	return rows
}

// churnRows are the rows of the churn phase.
func churnRows(timeout string) []row {
	c := func(f func(c *churnStats) string) func(r *result) string {
		return cell(func(r *result) *churnStats { return r.Churn }, f)
	}
	nodes := func(n *seqStats) string {
		if n == nil {
			return "not polled"
		}
		return fmtSeq(n, timeout)
	}
	return []row{
		{"churn setup (connect, REGISTER topics)", c(func(c *churnStats) string { return fmt.Sprintf("%.3f s", c.SetupSeconds) })},
		{"no churn: /lookup req/s", c(func(c *churnStats) string { return fmtRate(&c.NoChurn.Lookup, timeout) })},
		{"no churn: /lookup p50 / p99", c(func(c *churnStats) string { return fmtLatency(&c.NoChurn.Lookup, timeout) })},
		{"no churn: /nodes min / med / max", c(func(c *churnStats) string { return nodes(c.NoChurn.Nodes) })},
		{"churn: /lookup req/s", c(func(c *churnStats) string { return fmtRate(&c.Churn.Lookup, timeout) })},
		{"churn: /lookup p50 / p99", c(func(c *churnStats) string { return fmtLatency(&c.Churn.Lookup, timeout) })},
		{"churn: /nodes min / med / max", c(func(c *churnStats) string { return nodes(c.Churn.Nodes) })},
		{"churn: commands/s (target)", c(func(c *churnStats) string {
			return fmt.Sprintf("%.0f (%.0f): %d REGISTER, %d UNREGISTER", c.PerSecond, c.TargetRate, c.Registers, c.Unregisters)
		})},
		{"churn: command p50 / p99 / max", c(func(c *churnStats) string {
			return fmt.Sprintf("%s / %s / %s", fmtMs(c.P50ms), fmtMs(c.P99ms), fmtMs(c.MaxMs))
		})},
		{"churn ÷ no churn: /lookup p99, /nodes med", c(func(c *churnStats) string {
			return fmtRatio(c.LookupP99VsNoChurn) + ", " + fmtRatio(c.NodesMedianVsNoChurn)
		})},
		{"churn ÷ static: /lookup p99, /nodes med", c(func(c *churnStats) string {
			return fmtRatio(c.LookupP99VsStatic) + ", " + fmtRatio(c.NodesMedianVsStatic)
		})},
		{"verified under churn", c(func(c *churnStats) string {
			return fmt.Sprintf("%d topics", c.VerifiedTopics) + cond(c.VerifiedNodes, ", /nodes") + timedOut(c.TimedOut)
		})},
	}
}

func tableRows(rep *report) []row {
	timeout := fmt.Sprintf("%gs", rep.Settings.HTTPTimeoutSeconds)
	first := &result{}
	if len(rep.Results) > 0 {
		first = rep.Results[0]
	}
	rows := []row{
		{"version", func(r *result) string { return cmp.Or(r.Version, "-") }},
		{"connect+IDENTIFY", cell(func(r *result) *identifyStats { return r.Identify }, func(i *identifyStats) string {
			return fmt.Sprintf("%.3f s", i.Seconds)
		})},
	}
	rows = append(rows, registerRows(rep.Settings.RegisterModes)...)
	rows = append(rows, []row{
		{"RSS idle", func(r *result) string { return fmtKiB(r.Memory.IdleKiB) }},
		{"RSS after registration", func(r *result) string { return fmtKiB(r.Memory.RegisteredKiB) }},
		{"RSS end / peak", func(r *result) string { return fmtKiB(r.Memory.EndKiB) + " / " + fmtKiB(r.Memory.PeakKiB) }},
		{"RSS kept after all left", func(r *result) string { return fmtKiB(r.Memory.KeptKiB) }},
		{"verified", cell(func(r *result) *verifyStats { return r.Verify }, func(v *verifyStats) string {
			return fmt.Sprintf("%d topics", v.LookupTopics) + cond(v.Topics, ", /topics") + cond(v.Nodes, ", /nodes") +
				fmt.Sprintf("; %d rechecked", v.RecheckTopics) + timedOut(v.TimedOut)
		})},
	}...)
	rows = append(rows, phaseRows("/lookup", timeout, func(r *result) *phaseStats { return r.Lookup })...)
	rows = append(rows, phaseRows("/channels", timeout, func(r *result) *phaseStats { return r.Channels })...)
	rows = append(rows, phaseRows("/ping", timeout, func(r *result) *phaseStats { return r.Ping })...)
	seq := func(get func(r *result) *seqStats) func(r *result) string {
		return cell(get, func(s *seqStats) string { return fmtSeq(s, timeout) })
	}
	rows = append(rows,
		row{"/lookup ÷ /ping throughput", func(r *result) string { return fmtOpt(r.LookupPingRatio, "%.3f") }},
		row{"other processes' CPU (noise)", func(r *result) string {
			if r.OtherCPU == nil {
				return "n/a"
			}
			return fmt.Sprintf("%.1f s in %.0f s", *r.OtherCPU, r.Seconds)
		}},
		row{"/topics min / med / max", seq(func(r *result) *seqStats { return r.Topics })},
		row{"/topics median ÷ first column's", func(r *result) string {
			a, b := r.Topics, first.Topics
			if a == nil || b == nil || a.Samples == 0 || b.Samples == 0 || a.TimedOut || b.TimedOut || b.MedianMs <= 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2f×", a.MedianMs/b.MedianMs)
		}},
		row{"/nodes min / med / max", seq(func(r *result) *seqStats { return r.Nodes })},
	)
	if rep.Settings.ChurnConns > 0 {
		rows = append(rows, churnRows(timeout)...)
	}
	return append(rows,
		row{"harness RSS peak", func(r *result) string { return fmtKiB(r.Memory.HarnessPeakKiB) }},
		row{"result", func(r *result) string { return cond(r.Error == "", "ok") + cond(r.Error != "", "FAILED (see below)") }},
	)
}

// printTable writes the human-readable report: a header describing the
// run, one column per target, then any errors.
func printTable(out io.Writer, rep *report) {
	w, m, s := rep.Workload, rep.Machine, rep.Settings
	fmt.Fprintf(out, "nsqlookupd load harness: preset %s — %d producers, %d topics × %d producers × %d channels\n",
		cmp.Or(w.Preset, "-"), w.Producers, w.Topics, w.PerTopic, w.Channels)
	fmt.Fprintf(out, "%d REGISTER commands per target; registration concurrency %s\n", w.registers(),
		cond(s.Concurrency > 0, fmt.Sprintf("%d producers at a time", s.Concurrency))+cond(s.Concurrency <= 0, "unbounded (all producers at once)"))
	fmt.Fprintf(out, "HTTP: %d keep-alive clients, %s, random topics; %d sequential samples of /nodes and /topics; timeout %gs per request\n", s.Clients,
		cond(s.Requests > 0, fmt.Sprintf("%d requests per phase", s.Requests))+cond(s.Requests <= 0, fmt.Sprintf("%gs per phase", s.DurationSeconds)), s.Samples, s.HTTPTimeoutSeconds)
	fmt.Fprintf(out, "registration: %s; every nsqd PINGs every %gs\n", strings.Join(s.RegisterModes, ", "), s.PingIntervalSeconds)
	if s.ChurnConns > 0 {
		nodes := cond(s.ChurnNodes, "1 client polling /nodes back to back") + cond(!s.ChurnNodes, "no /nodes poll")
		fmt.Fprintf(out, "churn: %d clients on /lookup and %s, %gs without churn, then %gs while %d connections send %g REGISTER/UNREGISTER #ephemeral per second, one at a time\n",
			s.Clients, nodes, s.ChurnSeconds, s.ChurnSeconds, s.ChurnConns, s.ChurnRate)
	}
	fmt.Fprintf(out, "machine: %s/%s, %d CPUs%s, harness built with %s\n\n", m.OS, m.Arch, m.CPUs, cond(m.CPUModel != "", " ("+m.CPUModel+")"), m.GoVersion)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, rw := range append([]row{{"metric", func(r *result) string { return r.Target }}}, tableRows(rep)...) {
		cells := []string{rw.label}
		for _, r := range rep.Results {
			cells = append(cells, rw.cell(r))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(out, "\nERROR %s: %s\n", r.Target, r.Error)
		}
	}
}

// writeJSON writes the report as indented JSON to path.
func writeJSON(path string, rep *report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func fmtMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.3fms", v)
}

// fmtCPUPer1k renders CPU seconds per 1000 operations. CPU time is counted
// in 10ms ticks, so a phase that used less than one tick only has an upper
// bound.
func fmtCPUPer1k(cpu *float64, ops int) string {
	switch {
	case cpu == nil || ops == 0:
		return "n/a"
	case *cpu == 0:
		return fmt.Sprintf("<%.4f", 1.0/clockTicks/float64(ops)*1000)
	}
	return fmt.Sprintf("%.4f", *cpu/float64(ops)*1000)
}

func fmtKiB(v *uint64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(*v)/1024)
}

func fmtOpt(v *float64, format string) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *v)
}

// cond returns v if ok, else the zero value.
func cond[T any](ok bool, v T) (zero T) {
	if ok {
		return v
	}
	return zero
}

// timedOut lists the checks that timed out, if any.
func timedOut(checks []string) string {
	return cond(len(checks) > 0, "; timed out: "+strings.Join(checks, ", "))
}
