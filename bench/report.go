package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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
	Clients         int      `json:"clients"`
	DurationSeconds float64  `json:"duration_seconds,omitempty"`
	Requests        int      `json:"requests,omitempty"`
	Samples         int      `json:"samples"`
	Concurrency     int      `json:"concurrency"`
	VerifySample    int      `json:"verify_sample"`
	DaemonFlags     []string `json:"daemon_flags,omitempty"`
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
	Register *registerPhase `json:"register,omitempty"`
	Memory   memoryStats    `json:"memory"`
	Verify   *verifyStats   `json:"verify,omitempty"`

	Lookup   *phaseStats `json:"lookup,omitempty"`
	Channels *phaseStats `json:"channels,omitempty"`
	Ping     *phaseStats `json:"ping,omitempty"`
	// LookupPingRatio is lookup req/s divided by ping req/s.
	LookupPingRatio *float64 `json:"lookup_ping_ratio,omitempty"`

	Nodes  *seqStats `json:"nodes,omitempty"`
	Topics *seqStats `json:"topics,omitempty"`

	// OtherCPU is the CPU time used by other processes on the machine while
	// this target was measured (registration to the end), over Seconds of
	// wall time: a noise indicator.
	OtherCPU *float64 `json:"other_processes_cpu_seconds,omitempty"`
	Seconds  float64  `json:"seconds"`
}

type registerPhase struct {
	registerStats
	Producers  int      `json:"producers"`
	DaemonCPU  *float64 `json:"daemon_cpu_seconds,omitempty"`
	CPUPer1k   *float64 `json:"daemon_cpu_seconds_per_1000,omitempty"`
	HarnessCPU *float64 `json:"harness_cpu_seconds,omitempty"`
}

type memoryStats struct {
	IdleKiB       *uint64 `json:"rss_idle_kib,omitempty"`
	RegisteredKiB *uint64 `json:"rss_registered_kib,omitempty"`
	EndKiB        *uint64 `json:"rss_end_kib,omitempty"`
	PeakKiB       *uint64 `json:"rss_peak_kib,omitempty"`
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

func phaseRows(name string, get func(r *result) *phaseStats) []row {
	f := func(format func(p *phaseStats) string) func(r *result) string {
		return func(r *result) string {
			if p := get(r); p != nil {
				return format(p)
			}
			return "-"
		}
	}
	return []row{
		{name + " req/s", f(func(p *phaseStats) string { return fmt.Sprintf("%.0f", p.PerSecond) })},
		{name + " p50 / p99", f(func(p *phaseStats) string { return fmt.Sprintf("%s / %s", fmtMs(p.P50ms), fmtMs(p.P99ms)) })},
		{name + " daemon CPU s/1k req", f(func(p *phaseStats) string { return fmtCPUPer1k(p.DaemonCPU, p.Requests) })},
	}
}

func seqRow(name string, get func(r *result) *seqStats) row {
	return row{name + " min / med / max", func(r *result) string {
		s := get(r)
		if s == nil {
			return "-"
		}
		return fmt.Sprintf("%s / %s / %s", fmtMs(s.MinMs), fmtMs(s.MedianMs), fmtMs(s.MaxMs))
	}}
}

func tableRows() []row {
	rows := []row{
		{"version", func(r *result) string { return orDash(r.Version) }},
		{"connect+IDENTIFY", func(r *result) string {
			if r.Identify == nil {
				return "-"
			}
			return fmt.Sprintf("%.3f s", r.Identify.Seconds)
		}},
		{"REGISTER/s", func(r *result) string {
			if r.Register == nil {
				return "-"
			}
			return fmt.Sprintf("%.0f (%d in %.3f s)", r.Register.PerSecond, r.Register.Commands, r.Register.Seconds)
		}},
		{"REGISTER daemon CPU s/1k", func(r *result) string {
			if r.Register == nil {
				return "-"
			}
			return fmtCPUPer1k(r.Register.DaemonCPU, r.Register.Commands)
		}},
		{"RSS idle", func(r *result) string { return fmtKiB(r.Memory.IdleKiB) }},
		{"RSS after registration", func(r *result) string { return fmtKiB(r.Memory.RegisteredKiB) }},
		{"RSS end / peak", func(r *result) string {
			return fmtKiB(r.Memory.EndKiB) + " / " + fmtKiB(r.Memory.PeakKiB)
		}},
		{"verified /lookup+/channels", func(r *result) string {
			if r.Verify == nil {
				return "-"
			}
			return fmt.Sprintf("%d topics, %d rechecked", r.Verify.LookupTopics, r.Verify.RecheckTopics)
		}},
	}
	rows = append(rows, phaseRows("/lookup", func(r *result) *phaseStats { return r.Lookup })...)
	rows = append(rows, phaseRows("/channels", func(r *result) *phaseStats { return r.Channels })...)
	rows = append(rows, phaseRows("/ping", func(r *result) *phaseStats { return r.Ping })...)
	rows = append(rows,
		row{"/lookup ÷ /ping throughput", func(r *result) string { return fmtOpt(r.LookupPingRatio, "%.3f") }},
		row{"harness CPU s: reg/lookup/chan/ping", func(r *result) string {
			if r.Register == nil {
				return "-"
			}
			cells := []string{fmtOpt(r.Register.HarnessCPU, "%.2f")}
			for _, p := range []*phaseStats{r.Lookup, r.Channels, r.Ping} {
				if p == nil {
					cells = append(cells, "-")
				} else {
					cells = append(cells, fmtOpt(p.HarnessCPU, "%.2f"))
				}
			}
			return strings.Join(cells, " / ")
		}},
		row{"other processes' CPU (noise)", func(r *result) string {
			if r.OtherCPU == nil {
				return "n/a"
			}
			return fmt.Sprintf("%.1f s in %.0f s", *r.OtherCPU, r.Seconds)
		}},
		seqRow("/nodes", func(r *result) *seqStats { return r.Nodes }),
		seqRow("/topics", func(r *result) *seqStats { return r.Topics }),
		row{"result", func(r *result) string {
			if r.Error != "" {
				return "FAILED (see below)"
			}
			return "ok"
		}},
	)
	return rows
}

// printTable writes the human-readable report: a header describing the
// run, one column per target, then any errors.
func printTable(out io.Writer, rep *report) {
	w, m, s := rep.Workload, rep.Machine, rep.Settings
	fmt.Fprintf(out, "nsqlookupd load harness: preset %s — %d producers, %d topics × %d producers × %d channels\n",
		orDash(w.Preset), w.Producers, w.Topics, w.PerTopic, w.Channels)
	fmt.Fprintf(out, "%d REGISTER commands per target; registration concurrency %s\n",
		w.registers(), concurrencyText(s.Concurrency))
	budget := fmt.Sprintf("%v per phase", durationText(s.DurationSeconds))
	if s.Requests > 0 {
		budget = fmt.Sprintf("%d requests per phase", s.Requests)
	}
	fmt.Fprintf(out, "HTTP: %d keep-alive clients, %s, random topics; %d sequential samples of /nodes and /topics\n",
		s.Clients, budget, s.Samples)
	model := ""
	if m.CPUModel != "" {
		model = " (" + m.CPUModel + ")"
	}
	fmt.Fprintf(out, "machine: %s/%s, %d CPUs%s, harness built with %s\n\n", m.OS, m.Arch, m.CPUs, model, m.GoVersion)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	header := []string{"metric"}
	for _, r := range rep.Results {
		header = append(header, r.Target)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, rw := range tableRows() {
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
	default:
		return fmt.Sprintf("%.3fms", v)
	}
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
	default:
		return fmt.Sprintf("%.4f", *cpu/float64(ops)*1000)
	}
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func concurrencyText(c int) string {
	if c <= 0 {
		return "unbounded (all producers at once)"
	}
	return fmt.Sprintf("%d producers at a time", c)
}

func durationText(sec float64) string {
	return fmt.Sprintf("%gs", sec)
}
