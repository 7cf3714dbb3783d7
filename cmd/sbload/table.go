package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The benchmark script writes one JSON report per scenario and server, named
// <scenario>-<server>.json (S1-ours.json, S1-peer.json, ...). tableCommand
// reads them and prints the side-by-side table with ratios and targets.

// row is one line of the comparison table.
type row struct {
	scenario, metric string
	value            func(*report) (float64, bool)
	format           string
	target           string // e.g. "≤ 0.33×" (ratio ours/peer) or "= 0" (absolute, ours)
	check            func(ours, peer float64) bool
}

func tableRows() []row {
	step0 := func(f func(stepReport) float64) func(*report) (float64, bool) {
		return func(r *report) (float64, bool) {
			if len(r.Steps) == 0 {
				return 0, false
			}
			return f(r.Steps[0]), true
		}
	}
	ratioAtMost := func(k float64) func(o, p float64) bool { return func(o, p float64) bool { return p > 0 && o <= k*p } }
	ratioAtLeast := func(k float64) func(o, p float64) bool { return func(o, p float64) bool { return p > 0 && o >= k*p } }
	always := func(f func(*report) float64) func(*report) (float64, bool) {
		return func(r *report) (float64, bool) { return f(r), true }
	}
	return []row{
		{"S1", "server CPU s per 1000 deliveries", always(func(r *report) float64 { return r.Servers.CPUPer1000 }), "%.3f", "≤ 0.33×", ratioAtMost(0.33)},
		{"S1", "server CPU s while sending", always(func(r *report) float64 { return r.Servers.CPUSend }), "%.2f", "", nil},
		{"S1", "deliveries received", always(func(r *report) float64 { return float64(r.Deliveries.Received) }), "%.0f", "", nil},
		{"S1", "deliveries missing + duplicated", always(func(r *report) float64 { return float64(r.Deliveries.Missing + r.Deliveries.Duplicated) }), "%.0f", "= 0", func(o, _ float64) bool { return o == 0 }},
		{"S1", "end-to-end p99 same process (ms)", step0(func(s stepReport) float64 { return s.Same.P99 }), "%.1f", "", nil},
		{"S1", "end-to-end p99 cross process (ms)", step0(func(s stepReport) float64 { return s.Cross.P99 }), "%.1f", "", nil},
		{"S1", "ack p99 (ms)", step0(func(s stepReport) float64 { return s.Ack.P99 }), "%.1f", "", nil},
		{"S1", "RSS per connection, peak (KiB)", always(func(r *report) float64 { return r.Servers.RSSPeakPerConnKB }), "%.1f", "", nil},
		{"S2", "highest rate with p99 < 50 ms (msg/s)", always(func(r *report) float64 { return r.MaxRateOK }), "%.0f", "≥ 3×", ratioAtLeast(3)},
		{"S2", "load tool CPU share at that rate (cores)", always(toolCoresAtMax), "%.2f", "", nil},
		{"S2", "servers CPU at that rate (cores)", always(serverCoresAtMax), "%.2f", "", nil},
		{"S2", "first failing step (msg/s)", always(func(r *report) float64 { return firstFailing(r).Rate }), "%.0f", "", nil},
		{"S2", "  its p99 (ms)", always(func(r *report) float64 { return firstFailing(r).Latency.P99 }), "%.1f", "", nil},
		{"S2", "  its CPU: servers + load tool + redis (cores of 2)", always(machineCoresAtFail), "%.2f", "", nil},
		{"S2", "  its load tool CPU (cores)", always(func(r *report) float64 { return cores(firstFailing(r), firstFailing(r).LoadToolCPUSeconds) }), "%.2f", "", nil},
		{"S3", "RSS per idle websocket connection (KiB)", always(func(r *report) float64 { return r.Servers.RSSPerConnKB }), "%.1f", "≤ 0.35×", ratioAtMost(0.35)},
		{"S3", "connections held", always(func(r *report) float64 { return float64(r.Connect.Connected) }), "%.0f", "", nil},
		{"S4", "connects per second", always(func(r *report) float64 { return r.Connect.PerSecond }), "%.0f", "≥ 3×", ratioAtLeast(3)},
		{"S4", "stalled connects", always(func(r *report) float64 { return float64(r.Connect.Stalled) }), "%.0f", "= 0", func(o, _ float64) bool { return o == 0 }},
		{"S4", "failed connects", always(func(r *report) float64 { return float64(r.Connect.Failed) }), "%.0f", "", nil},
		{"S4", "connect latency p99 (ms)", always(func(r *report) float64 { return r.Connect.Latency.P99 }), "%.1f", "", nil},
		{"S5", "idle websockets on one process", always(func(r *report) float64 { return float64(r.Connect.Connected) }), "%.0f", "", nil},
		{"S5", "RSS per idle websocket (KiB)", always(func(r *report) float64 { return r.Servers.RSSPerConnKB }), "%.1f", "≤ 0.35×", ratioAtMost(0.35)},
		{"S5", "broadcast to all: until the last has it, median (ms)", broadcastMedian(func(b broadcastReport) float64 { return b.LastMs }), "%.0f", "", nil},
		{"S5", "broadcast to all: first device (ms), median", broadcastMedian(func(b broadcastReport) float64 { return b.FirstMs }), "%.1f", "", nil},
		{"S5", "broadcast to all: server CPU s, median", broadcastMedian(func(b broadcastReport) float64 { return b.ServerCPUSeconds }), "%.3f", "", nil},
		{"S5", "broadcast deliveries missing + duplicated", func(r *report) (float64, bool) {
			if len(r.Broadcasts) == 0 {
				return 0, false
			}
			n := 0
			for _, b := range r.Broadcasts {
				n += b.Devices - b.Received + b.Duplicated
			}
			return float64(n), true
		}, "%.0f", "= 0", func(o, _ float64) bool { return o == 0 }},
	}
}

// broadcastMedian is the median of f over a run's broadcasts.
func broadcastMedian(f func(broadcastReport) float64) func(*report) (float64, bool) {
	return func(r *report) (float64, bool) {
		if len(r.Broadcasts) == 0 {
			return 0, false
		}
		vs := make([]float64, len(r.Broadcasts))
		for i, b := range r.Broadcasts {
			vs[i] = f(b)
		}
		slices.Sort(vs)
		return vs[len(vs)/2], true
	}
}

// passingStep returns the last passing step, if any.
func passingStep(r *report) (stepReport, bool) {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if r.Steps[i].Pass {
			return r.Steps[i], true
		}
	}
	return stepReport{}, false
}

// firstFailing returns the first step that did not pass (zero if none).
func firstFailing(r *report) stepReport {
	for _, s := range r.Steps {
		if !s.Pass {
			return s
		}
	}
	return stepReport{}
}

// cores turns CPU seconds spent during step s into cores.
func cores(s stepReport, cpu float64) float64 {
	if s.SendSeconds <= 0 {
		return 0
	}
	return cpu / s.SendSeconds
}

func machineCoresAtFail(r *report) float64 {
	s := firstFailing(r)
	return cores(s, s.ServerCPUSeconds+s.LoadToolCPUSeconds+s.AuxCPUSeconds)
}

func toolCoresAtMax(r *report) float64 {
	s, ok := passingStep(r)
	if !ok || s.SendSeconds <= 0 {
		return 0
	}
	return s.LoadToolCPUSeconds / s.SendSeconds
}

func serverCoresAtMax(r *report) float64 {
	s, ok := passingStep(r)
	if !ok || s.SendSeconds <= 0 {
		return 0
	}
	return s.ServerCPUSeconds / s.SendSeconds
}

// tableCommand prints the comparison of the reports in a results directory.
func tableCommand(args []string, w io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: sbload table RESULTS_DIR")
	}
	dir := args[0]
	load := func(name string) (*report, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read report: %w", err)
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
		return &r, nil
	}
	fmt.Fprintln(w, "| scenario | metric | switchboard | node peer | ratio | target | met |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---|")
	found := 0
	for _, rw := range tableRows() {
		ours, err := load(rw.scenario + "-ours.json")
		if err != nil {
			return err
		}
		peer, err := load(rw.scenario + "-peer.json")
		if err != nil {
			return err
		}
		if ours == nil && peer == nil {
			continue
		}
		found++
		cell := func(r *report) (string, float64, bool) {
			if r == nil {
				return "–", 0, false
			}
			v, ok := rw.value(r)
			if !ok {
				return "–", 0, false
			}
			return fmt.Sprintf(rw.format, v), v, true
		}
		oursText, ov, ook := cell(ours)
		peerText, pv, pok := cell(peer)
		ratio := "–"
		if ook && pok && pv != 0 {
			ratio = fmt.Sprintf("%.2f", ov/pv)
		}
		met := ""
		if rw.check != nil && ook {
			if rw.check(ov, pv) {
				met = "yes"
			} else {
				met = "**no**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", rw.scenario, rw.metric, oursText, peerText, ratio, rw.target, met)
	}
	if found == 0 {
		return fmt.Errorf("no <scenario>-ours.json or -peer.json in %s", dir)
	}
	if notes := runNotes(dir); notes != "" {
		fmt.Fprint(w, notes)
	}
	return nil
}

// runNotes lists each report's load average and load tool CPU, to tell
// whether the machine itself was the limit.
func runNotes(dir string) string {
	var b strings.Builder
	names, _ := filepath.Glob(filepath.Join(dir, "S*-*.json"))
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		var r report
		if json.Unmarshal(raw, &r) != nil {
			continue
		}
		fmt.Fprintf(&b, "\n%s: %.0fs, loadavg at end %s, load tool %.1f CPU s", filepath.Base(n), r.Elapsed, r.LoadAvg, r.LoadTool.CPUSeconds)
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}
