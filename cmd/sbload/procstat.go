package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// procSample is one reading of a process from /proc.
type procSample struct {
	CPU   float64 // user+system CPU seconds since the process started
	RSSKB int64   // VmRSS
}

// readProc reads /proc/<pid>/stat (utime, stime) and /proc/<pid>/status (VmRSS).
func readProc(pid int, ticksPerSec float64) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat: %w", err)
	}
	// The command name may hold spaces and parentheses: fields count from
	// after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 {
		return s, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("parse /proc/%d/stat: bad utime/stime", pid)
	}
	s.CPU = float64(ut+st) / ticksPerSec

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb := bytes.Fields(rest)
			if len(kb) > 0 {
				s.RSSKB, _ = strconv.ParseInt(string(kb[0]), 10, 64)
			}
			break
		}
	}
	return s, nil
}

// clockTicks returns the kernel's clock ticks per second (AT_CLKTCK from the
// auxiliary vector), or 100 when it cannot be read.
func clockTicks() float64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	const atClkTck = 17
	for len(b) >= 16 {
		k := binary.NativeEndian.Uint64(b)
		v := binary.NativeEndian.Uint64(b[8:])
		if k == atClkTck && v > 0 {
			return float64(v)
		}
		if k == 0 {
			break
		}
		b = b[16:]
	}
	return 100
}

// sampler polls a set of processes and keeps each one's peak RSS.
type sampler struct {
	pids  []int
	ticks float64

	mu   sync.Mutex
	last []procSample
	peak []int64
	errs []string
}

func newSampler(pids []int) *sampler {
	return &sampler{
		pids:  pids,
		ticks: clockTicks(),
		last:  make([]procSample, len(pids)),
		peak:  make([]int64, len(pids)),
		errs:  make([]string, len(pids)),
	}
}

// snapshot reads every process now and returns the readings.
func (s *sampler) snapshot() []procSample {
	out := make([]procSample, len(s.pids))
	for i, pid := range s.pids {
		r, err := readProc(pid, s.ticks)
		s.mu.Lock()
		if err != nil {
			s.errs[i] = err.Error()
			r = s.last[i] // a process that died keeps its last reading
		} else {
			s.last[i] = r
			s.peak[i] = max(s.peak[i], r.RSSKB)
		}
		s.mu.Unlock()
		out[i] = r
	}
	return out
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context, interval time.Duration) {
	if len(s.pids) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.snapshot()
		}
	}
}

func (s *sampler) peaks() ([]int64, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.peak), slices.Clone(s.errs)
}
