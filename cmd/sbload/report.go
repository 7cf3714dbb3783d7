package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// report is everything one run measured; its JSON form is the -o file.
type report struct {
	Label             string            `json:"label,omitempty"`
	Config            config            `json:"config"`
	Started           time.Time         `json:"started"`
	Elapsed           float64           `json:"elapsed_s"`
	Connect           connectReport     `json:"connect"`
	Steps             []stepReport      `json:"steps"`
	Broadcasts        []broadcastReport `json:"broadcasts,omitempty"`
	Deliveries        deliveryTotals    `json:"deliveries"`
	MaxRateOK         float64           `json:"max_rate_ok"` // highest passing step rate, 0 if none
	Disconnects       int               `json:"disconnects"` // connections the server ended mid-run
	OtherEvents       map[string]int    `json:"other_events,omitempty"`
	UnknownDeliveries int               `json:"unknown_deliveries,omitempty"`
	Processes         []processReport   `json:"processes,omitempty"`
	Servers           serverTotals      `json:"servers"`
	LoadTool          toolUsage         `json:"load_tool"`
	LoadAvg           string            `json:"loadavg"`
	Notes             []string          `json:"notes,omitempty"`
}

type connectReport struct {
	Attempted int            `json:"attempted"`
	Connected int            `json:"connected"`
	Failed    int            `json:"failed"`
	Stalled   int            `json:"stalled"`
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"per_second"` // connected / time to the last successful connect
	Latency   latency        `json:"latency"`
	Reasons   map[string]int `json:"reasons,omitempty"`
}

type stepReport struct {
	Rate               float64        `json:"rate"`
	Sent               int            `json:"sent"`
	SendErrors         int            `json:"send_errors"`
	SendSeconds        float64        `json:"send_s"`
	AchievedRate       float64        `json:"achieved_rate"`
	Expected           int            `json:"expected"`
	Received           int            `json:"received"`
	Missing            int            `json:"missing"`
	Duplicated         int            `json:"duplicated"`
	Unexpected         int            `json:"unexpected"`
	DevicesMissing     int            `json:"devices_missing"`
	DevicesDuplicated  int            `json:"devices_duplicated"`
	Faults             []string       `json:"faults,omitempty"` // a few examples
	Latency            latency        `json:"latency"`
	Same               latency        `json:"latency_same_process"`
	Cross              latency        `json:"latency_cross_process"`
	Ack                latency        `json:"ack_latency"`
	AckOK              int            `json:"acks_ok"`
	AckErrors          map[string]int `json:"ack_errors,omitempty"`
	ServerCPUSeconds   float64        `json:"server_cpu_s"`
	ServerCPUPer1000   float64        `json:"server_cpu_s_per_1000_deliveries"`
	LoadToolCPUSeconds float64        `json:"load_tool_cpu_s"`
	AuxCPUSeconds      float64        `json:"aux_cpu_s"` // -aux-pids, e.g. redis
	Pass               bool           `json:"pass"`
}

type deliveryTotals struct {
	Expected   int `json:"expected"`
	Received   int `json:"received"`
	Missing    int `json:"missing"`
	Duplicated int `json:"duplicated"`
	Unexpected int `json:"unexpected"`
}

type processReport struct {
	Pid            int      `json:"pid"`
	Target         string   `json:"target,omitempty"` // empty for -aux-pids
	Conns          int      `json:"conns"`
	CPUConnect     float64  `json:"cpu_s_connect"` // connect and hold
	CPUSend        float64  `json:"cpu_s_send"`    // rate steps and drains
	CPUTotal       float64  `json:"cpu_s_total"`
	RSSBefore      int64    `json:"rss_kb_before"`
	RSSConnected   int64    `json:"rss_kb_connected"` // after connect and hold
	RSSPeak        int64    `json:"rss_kb_peak"`
	RSSAfter       int64    `json:"rss_kb_after"`  // after the steps, still connected
	RSSClosed      int64    `json:"rss_kb_closed"` // a second after closing
	RSSPerConnKB   float64  `json:"rss_kb_per_conn"`
	PeakPerConnKB  float64  `json:"rss_kb_peak_per_conn"`
	SampleProblems []string `json:"sample_problems,omitempty"`
}

type serverTotals struct {
	CPUConnect       float64 `json:"cpu_s_connect"`
	CPUSend          float64 `json:"cpu_s_send"`
	CPUPer1000       float64 `json:"cpu_s_per_1000_deliveries"`
	RSSPerConnKB     float64 `json:"rss_kb_per_conn"`
	RSSPeakPerConnKB float64 `json:"rss_kb_peak_per_conn"`
}

type toolUsage struct {
	CPUSeconds float64 `json:"cpu_s"`
	RSSKB      int64   `json:"rss_kb"`
}

// stepReport turns a step's tally into its report.
func (r *loadRun) stepReport(step int, rate, sendSecs float64) stepReport {
	faults := r.deviceFaults(step)
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.steps[step]
	sr := stepReport{
		Rate:        rate,
		Sent:        st.sent,
		SendErrors:  st.sendErrors,
		SendSeconds: sendSecs,
		Expected:    st.expected,
		Received:    st.received,
		Missing:     st.expected - st.received,
		Duplicated:  st.duplicated,
		Unexpected:  st.unexpected,
		AckOK:       st.ackOK,
		AckErrors:   maps.Clone(st.ackErrors),
	}
	if sendSecs > 0 {
		sr.AchievedRate = float64(st.sent) / sendSecs
	}
	all := append(append([]time.Duration(nil), st.same...), st.cross...)
	sr.Latency = summarise(all)
	sr.Same = summarise(st.same)
	sr.Cross = summarise(st.cross)
	sr.Ack = summarise(st.acks)
	for _, dev := range slices.Sorted(maps.Keys(faults)) {
		f := faults[dev]
		if f.missedAsRecipient+f.missedAsSender > 0 {
			sr.DevicesMissing++
		}
		if f.duplicates > 0 {
			sr.DevicesDuplicated++
		}
		if len(sr.Faults) >= 10 {
			continue
		}
		d := r.devices[dev]
		var what []string
		if f.missedAsRecipient > 0 {
			what = append(what, fmt.Sprintf("missed %d as recipient", f.missedAsRecipient))
		}
		if f.missedAsSender > 0 {
			what = append(what, fmt.Sprintf("missed %d of its user's own messages", f.missedAsSender))
		}
		if f.duplicates > 0 {
			what = append(what, fmt.Sprintf("%d duplicate(s)", f.duplicates))
		}
		sr.Faults = append(sr.Faults, fmt.Sprintf("user %d device %d (target %d): %s", d.user, dev-d.user*r.cfg.Devices, d.target, strings.Join(what, ", ")))
	}
	return sr
}

// fillProcesses computes per-process CPU and memory from four snapshots.
func (rep *report) fillProcesses(r *loadRun, before, connected, after, closed []procSample) {
	conns := make([]int, len(r.cfg.Targets))
	for _, d := range r.devices {
		if d.ws != nil {
			conns[d.target]++
		}
	}
	peaks, problems := r.smp.peaks()
	for i, pid := range r.smp.pids {
		p := processReport{
			Pid:          pid,
			CPUConnect:   connected[i].CPU - before[i].CPU,
			CPUSend:      after[i].CPU - connected[i].CPU,
			CPUTotal:     closed[i].CPU - before[i].CPU,
			RSSBefore:    before[i].RSSKB,
			RSSConnected: connected[i].RSSKB,
			RSSPeak:      peaks[i],
			RSSAfter:     after[i].RSSKB,
			RSSClosed:    closed[i].RSSKB,
		}
		if problems[i] != "" {
			p.SampleProblems = []string{problems[i]}
		}
		if i < len(r.cfg.Pids) {
			p.Target = r.cfg.Targets[i]
			p.Conns = conns[i]
			if p.Conns > 0 {
				p.RSSPerConnKB = float64(p.RSSConnected-p.RSSBefore) / float64(p.Conns)
				p.PeakPerConnKB = float64(p.RSSPeak-p.RSSBefore) / float64(p.Conns)
			}
		}
		rep.Processes = append(rep.Processes, p)
	}
}

// finish adds up the steps and the server processes.
func (rep *report) finish(cfg config) {
	for _, s := range rep.Steps {
		rep.Deliveries.Expected += s.Expected
		rep.Deliveries.Received += s.Received
		rep.Deliveries.Missing += s.Missing
		rep.Deliveries.Duplicated += s.Duplicated
		rep.Deliveries.Unexpected += s.Unexpected
		if s.Pass {
			rep.MaxRateOK = max(rep.MaxRateOK, s.Rate)
		}
	}
	var conns int
	var grow, peakGrow int64
	for _, p := range rep.Processes {
		if p.Target == "" {
			continue
		}
		rep.Servers.CPUConnect += p.CPUConnect
		rep.Servers.CPUSend += p.CPUSend
		conns += p.Conns
		grow += p.RSSConnected - p.RSSBefore
		peakGrow += p.RSSPeak - p.RSSBefore
	}
	if rep.Deliveries.Received > 0 {
		rep.Servers.CPUPer1000 = rep.Servers.CPUSend / float64(rep.Deliveries.Received) * 1000
	}
	if conns > 0 {
		rep.Servers.RSSPerConnKB = float64(grow) / float64(conns)
		rep.Servers.RSSPeakPerConnKB = float64(peakGrow) / float64(conns)
	}
}

// writeText renders the report for people.
func (rep *report) writeText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	c := rep.Config
	title := "sbload"
	if rep.Label != "" {
		title += " " + rep.Label
	}
	p("%s: %d users × %d devices over %s, %.1fs, loadavg %s\n", title, c.Users, c.Devices, strings.Join(c.Targets, ","), rep.Elapsed, rep.LoadAvg)
	cn := rep.Connect
	p("connect   %d/%d connected, %d failed, %d stalled, %.0f connects/s, latency %s\n",
		cn.Connected, cn.Attempted, cn.Failed, cn.Stalled, cn.PerSecond, latText(cn.Latency))
	for _, k := range sortedKeys(cn.Reasons) {
		p("          %6d × %s\n", cn.Reasons[k], k)
	}
	for _, b := range rep.Broadcasts {
		p("broadcast %d: received by %d of %d devices (duplicated %d), first %.1fms, last %.1fms, %s; servers cpu %.3fs\n",
			b.Seq, b.Received, b.Devices, b.Duplicated, b.FirstMs, b.LastMs, latText(b.Latency), b.ServerCPUSeconds)
	}
	for _, s := range rep.Steps {
		verdict := "FAIL"
		if s.Pass {
			verdict = "pass"
		}
		p("step %g/s [%s]: sent %d in %.1fs (%.0f/s), send errors %d\n", s.Rate, verdict, s.Sent, s.SendSeconds, s.AchievedRate, s.SendErrors)
		p("  deliveries expected %d received %d missing %d duplicated %d unexpected %d (devices with missing %d, with duplicates %d)\n",
			s.Expected, s.Received, s.Missing, s.Duplicated, s.Unexpected, s.DevicesMissing, s.DevicesDuplicated)
		for _, f := range s.Faults {
			p("    %s\n", f)
		}
		p("  end-to-end   all   %s\n", latText(s.Latency))
		p("               same  %s\n", latText(s.Same))
		p("               cross %s\n", latText(s.Cross))
		p("  ack                %s; ok %d", latText(s.Ack), s.AckOK)
		for _, k := range sortedKeys(s.AckErrors) {
			p(", %s %d", k, s.AckErrors[k])
		}
		p("\n  cpu servers %.2fs (%.3fs per 1000 deliveries), load tool %.2fs, aux %.2fs\n", s.ServerCPUSeconds, s.ServerCPUPer1000, s.LoadToolCPUSeconds, s.AuxCPUSeconds)
	}
	if len(rep.Steps) > 0 {
		d := rep.Deliveries
		p("total     expected %d received %d missing %d duplicated %d unexpected %d; highest passing rate %g/s (p99 < %s)\n",
			d.Expected, d.Received, d.Missing, d.Duplicated, d.Unexpected, rep.MaxRateOK, c.P99Limit)
	}
	for _, pr := range rep.Processes {
		name := pr.Target
		if name == "" {
			name = "aux"
		}
		p("process %d (%s): conns %d, cpu connect %.2fs send %.2fs total %.2fs; rss MiB before %.1f connected %.1f peak %.1f after %.1f closed %.1f; %.1f KiB/conn (peak %.1f)\n",
			pr.Pid, name, pr.Conns, pr.CPUConnect, pr.CPUSend, pr.CPUTotal,
			mib(pr.RSSBefore), mib(pr.RSSConnected), mib(pr.RSSPeak), mib(pr.RSSAfter), mib(pr.RSSClosed), pr.RSSPerConnKB, pr.PeakPerConnKB)
		for _, s := range pr.SampleProblems {
			p("  sampling: %s\n", s)
		}
	}
	if len(rep.Processes) > 0 {
		s := rep.Servers
		p("servers   cpu connect %.2fs send %.2fs (%.3fs per 1000 deliveries); %.1f KiB per connection (peak %.1f)\n",
			s.CPUConnect, s.CPUSend, s.CPUPer1000, s.RSSPerConnKB, s.RSSPeakPerConnKB)
	}
	p("load tool cpu %.2fs, rss %.1f MiB; dropped connections %d", rep.LoadTool.CPUSeconds, mib(rep.LoadTool.RSSKB), rep.Disconnects)
	for _, k := range sortedKeys(rep.OtherEvents) {
		p("; event %q × %d", k, rep.OtherEvents[k])
	}
	if rep.UnknownDeliveries > 0 {
		p("; unknown deliveries %d", rep.UnknownDeliveries)
	}
	p("\n")
	for _, n := range rep.Notes {
		p("note: %s\n", n)
	}
}

func latText(l latency) string {
	if l.Count == 0 {
		return "n=0"
	}
	return fmt.Sprintf("p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms (n=%d)", l.P50, l.P90, l.P99, l.Max, l.Count)
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

func sortedKeys(m map[string]int) []string {
	return slices.Sorted(maps.Keys(m))
}
