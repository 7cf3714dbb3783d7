package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadRun is one execution of the load: connect, hold, send in rate steps,
// drain, close.
type loadRun struct {
	*tracker
	cfg     config
	secret  []byte
	nonce   string
	devices []*device
	users   [][]*device // devices of each user
	alive   []atomic.Bool
	dialer  *dialer

	phase       atomic.Value // string
	connected   atomic.Int64
	failed      atomic.Int64
	stalled     atomic.Int64
	disconnects atomic.Int64
	closing     atomic.Bool
	readers     sync.WaitGroup

	smp   *sampler
	bcast broadcastTracker
}

func newLoadRun(cfg config) *loadRun {
	n := cfg.Users * cfg.Devices
	r := &loadRun{
		cfg:     cfg,
		secret:  []byte(cfg.Secret),
		nonce:   strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
		devices: make([]*device, n),
		users:   make([][]*device, cfg.Users),
		alive:   make([]atomic.Bool, n),
		dialer:  &dialer{namespace: cfg.Namespace, sources: cfg.SourceIPs, timeout: cfg.ConnTimeout, browser: cfg.Browser},
		smp:     newSampler(append(append([]int(nil), cfg.Pids...), cfg.AuxPids...)),
	}
	devTarget := make([]int, n)
	for u := range cfg.Users {
		for k := range cfg.Devices {
			i := u*cfg.Devices + k
			// Consecutive devices of a user sit on consecutive targets, so
			// with two targets every user has a device on each process.
			d := &device{idx: i, user: u, target: (u + k) % len(cfg.Targets)}
			r.devices[i] = d
			r.users[u] = append(r.users[u], d)
			devTarget[i] = d.target
		}
	}
	r.tracker = newTracker(devTarget)
	r.phase.Store("start")
	return r
}

func (r *loadRun) userID(u int) string { return "sb" + r.nonce + "-" + strconv.Itoa(u) }

// broadcast is called by a device's read loop for a broadcast (S5).
func (r *loadRun) broadcast(d *device, seq int, at time.Time) { r.bcast.received(d, seq, at) }

// closed is called by a device's read loop when its connection ends.
func (r *loadRun) closed(d *device, err error) {
	r.alive[d.idx].Store(false)
	if !r.closing.Load() {
		r.disconnects.Add(1)
	}
}

// execute runs the whole load and returns its report.
func (r *loadRun) execute(ctx context.Context, stderr io.Writer) (*report, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.MaxTime)
	defer cancel()
	rep := &report{Label: r.cfg.Label, Config: r.cfg, Started: time.Now().UTC()}
	self := newSampler([]int{os.Getpid()})
	selfBefore := self.snapshot()

	sampleCtx, stopSampling := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopSampling()
	before := r.smp.snapshot()
	bg.Go(func() { r.smp.run(sampleCtx, r.cfg.Sample) })
	if r.cfg.Progress > 0 {
		bg.Go(func() { r.progress(sampleCtx, stderr) })
	}

	r.phase.Store("connect")
	rep.Connect = r.connectAll(ctx)
	if r.cfg.Hold > 0 && ctx.Err() == nil {
		r.phase.Store("hold")
		sleepCtx(ctx, r.cfg.Hold)
	}
	connected := r.smp.snapshot()

	if r.cfg.Broadcasts > 0 && ctx.Err() == nil {
		r.phase.Store("broadcast")
		bs, err := r.runBroadcasts(ctx)
		rep.Broadcasts = bs
		if err != nil {
			rep.Notes = append(rep.Notes, err.Error())
		}
	}

	for _, rate := range r.cfg.Rates {
		if rate <= 0 || ctx.Err() != nil {
			continue
		}
		r.phase.Store(fmt.Sprintf("send %g/s", rate))
		sr := r.runStep(ctx, rate)
		rep.Steps = append(rep.Steps, sr)
		if r.cfg.StopOnFail && !sr.Pass {
			break
		}
	}
	after := r.smp.snapshot()
	selfAfter := self.snapshot()

	r.phase.Store("close")
	r.closeAll()
	if ctx.Err() == nil {
		sleepCtx(ctx, time.Second) // let the servers release what the connections held
	}
	closedSnap := r.smp.snapshot()
	stopSampling()
	bg.Wait()

	rep.Disconnects = int(r.disconnects.Load())
	r.mu.Lock()
	rep.OtherEvents = r.otherEvents
	rep.UnknownDeliveries = r.unknown
	r.mu.Unlock()
	rep.fillProcesses(r, before, connected, after, closedSnap)
	rep.LoadTool = toolUsage{CPUSeconds: selfAfter[0].CPU - selfBefore[0].CPU, RSSKB: selfAfter[0].RSSKB}
	rep.LoadAvg = loadAvg()
	rep.Elapsed = time.Since(rep.Started).Seconds()
	rep.finish(r.cfg)
	if err := ctx.Err(); err != nil && errors.Is(err, context.DeadlineExceeded) {
		rep.Notes = append(rep.Notes, "stopped by -max-time")
	}
	return rep, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// connectAll opens every device's socket with bounded concurrency.
func (r *loadRun) connectAll(ctx context.Context) connectReport {
	var (
		mu        sync.Mutex
		lats      = make([]time.Duration, 0, len(r.devices))
		reasons   = make(map[string]int)
		lastOK    time.Time
		wg        sync.WaitGroup
		sem       = make(chan struct{}, r.cfg.ConnConc)
		tokens    = make([]string, r.cfg.Users)
		start     = time.Now()
		interval  time.Duration
		tokenTime = time.Now()
	)
	if r.cfg.ConnRate > 0 {
		interval = time.Duration(float64(time.Second) / r.cfg.ConnRate)
	}
	for u := range tokens {
		tok, err := mintToken(r.secret, r.userID(u), tokenTime, 24*time.Hour)
		if err != nil {
			return connectReport{Attempted: len(r.devices), Failed: len(r.devices), Reasons: map[string]int{err.Error(): len(r.devices)}}
		}
		tokens[u] = tok
	}
	attempted := 0
	for i, d := range r.devices {
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				sleepCtx(ctx, wait)
			}
		}
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			break
		}
		attempted++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			err := r.dialer.connect(ctx, d, r.cfg.Targets[d.target], tokens[d.user], t0.Add(r.cfg.ConnTimeout))
			t1 := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var ce *connectError
				switch {
				case errors.Is(err, errStalled):
					r.stalled.Add(1)
					reasons["stalled: no CONNECT reply"]++
				case errors.As(err, &ce):
					r.failed.Add(1)
					reasons["connect_error "+ce.payload]++
				default:
					r.failed.Add(1)
					reasons[shortReason(err)]++
				}
				return
			}
			lats = append(lats, t1.Sub(t0))
			if t1.After(lastOK) {
				lastOK = t1
			}
			r.alive[d.idx].Store(true)
			r.connected.Add(1)
			r.readers.Add(1)
			go func() {
				defer r.readers.Done()
				d.readLoop(r.cfg.Namespace, r)
			}()
		}()
	}
	wg.Wait()
	end := time.Now()
	rep := connectReport{
		Attempted: attempted,
		Connected: int(r.connected.Load()),
		Failed:    int(r.failed.Load()),
		Stalled:   int(r.stalled.Load()),
		Seconds:   end.Sub(start).Seconds(),
		Reasons:   reasons,
		Latency:   summarise(lats),
	}
	if rep.Connected > 0 {
		okSecs := lastOK.Sub(start).Seconds()
		rep.PerSecond = float64(rep.Connected) / okSecs
	}
	return rep
}

// shortReason keeps error texts groupable: addresses and ports vary.
func shortReason(err error) string {
	s := err.Error()
	for _, cut := range []string{"->", "dial tcp"} {
		if i := strings.Index(s, cut); i >= 0 {
			if j := strings.LastIndex(s, ": "); j > i {
				return s[:i] + "…" + s[j:]
			}
		}
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// runStep sends sendMessage at rate for the step's duration (or message cap),
// then waits for outstanding deliveries.
func (r *loadRun) runStep(ctx context.Context, rate float64) stepReport {
	step := r.beginStep()
	snap0 := r.smp.snapshot()
	self := newSampler([]int{os.Getpid()})
	self0 := self.snapshot()

	total := int(rate * r.cfg.Duration.Seconds())
	if r.cfg.Messages > 0 {
		total = min(total, r.cfg.Messages)
	}
	jobs := make(chan struct{}, 4096)
	var wg sync.WaitGroup
	for w := range r.cfg.SenderWorker {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sender(step, uint64(w), jobs)
		}()
	}
	start := time.Now()
	issued := 0
	tick := time.NewTicker(time.Millisecond)
pace:
	for issued < total {
		due := min(total, int(time.Since(start).Seconds()*rate)+1)
		for ; issued < due; issued++ {
			select {
			case jobs <- struct{}{}:
			case <-ctx.Done():
				break pace
			}
		}
		select {
		case <-ctx.Done():
			break pace
		case <-tick.C:
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	sendSecs := time.Since(start).Seconds()

	// Drain: wait for every outstanding delivery and ack, at most cfg.Drain.
	deadline := time.Now().Add(r.cfg.Drain)
	for r.outstanding(step) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		sleepCtx(ctx, 10*time.Millisecond)
	}
	snap1 := r.smp.snapshot()
	self1 := self.snapshot()
	sr := r.stepReport(step, rate, sendSecs)
	for i := range snap1 {
		if i < len(r.cfg.Pids) {
			sr.ServerCPUSeconds += snap1[i].CPU - snap0[i].CPU
		} else {
			sr.AuxCPUSeconds += snap1[i].CPU - snap0[i].CPU
		}
	}
	sr.LoadToolCPUSeconds = self1[0].CPU - self0[0].CPU
	if sr.Received > 0 {
		sr.ServerCPUPer1000 = sr.ServerCPUSeconds / float64(sr.Received) * 1000
	}
	sr.Pass = sr.Latency.Count > 0 && sr.Latency.P99 < ms(r.cfg.P99Limit) &&
		sr.Missing == 0 && sr.Duplicated == 0 && sr.SendErrors == 0 &&
		sr.AchievedRate >= 0.95*rate
	return sr
}

// sender writes one sendMessage per job from a random connected device to a
// random other user.
func (r *loadRun) sender(step int, seed uint64, jobs <-chan struct{}) {
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	buf := make([]byte, 0, 256)
	expect := make([]int32, 0, 2*r.cfg.Devices)
	for range jobs {
		from, to, sender, ok := r.pick(rng)
		if !ok {
			continue
		}
		expect = expect[:0]
		for _, d := range r.users[to] {
			if r.alive[d.idx].Load() {
				expect = append(expect, int32(d.idx))
			}
		}
		nTo := len(expect)
		for _, d := range r.users[from] {
			if d != sender && r.alive[d.idx].Load() {
				expect = append(expect, int32(d.idx))
			}
		}
		seq, sent := r.register(step, sender.idx, append([]int32(nil), expect...), nTo)
		if err := sender.sendMessage(r.cfg.Namespace, r.userID(to), seq, sent, buf); err != nil {
			r.unsend(seq)
		}
	}
}

// pick chooses a sending device and a different receiving user.
func (r *loadRun) pick(rng *rand.Rand) (from, to int, sender *device, ok bool) {
	for range 16 {
		from = rng.IntN(r.cfg.Users)
		to = rng.IntN(r.cfg.Users - 1)
		if to >= from {
			to++
		}
		devs := r.users[from]
		d := devs[rng.IntN(len(devs))]
		if r.alive[d.idx].Load() {
			return from, to, d, true
		}
	}
	return 0, 0, nil, false
}

// closeAll ends every connection and waits for the read loops.
func (r *loadRun) closeAll() {
	r.closing.Store(true)
	for _, d := range r.devices {
		d.close()
	}
	r.readers.Wait()
}

// progress prints one status line per interval until ctx ends.
func (r *loadRun) progress(ctx context.Context, w io.Writer) {
	t := time.NewTicker(r.cfg.Progress)
	defer t.Stop()
	tty := isTerminal(w)
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return
		case <-t.C:
		}
		sent, recv, dup := r.totals()
		var rss int64
		r.smp.mu.Lock()
		for i := range r.cfg.Pids {
			rss += r.smp.last[i].RSSKB
		}
		r.smp.mu.Unlock()
		line := fmt.Sprintf("sbload %5.1fs %-14s conns %d/%d failed %d stalled %d dropped %d | sent %d delivered %d dup %d | servers rss %.1f MiB",
			time.Since(start).Seconds(), r.phase.Load(), r.connected.Load(), len(r.devices),
			r.failed.Load(), r.stalled.Load(), r.disconnects.Load(), sent, recv, dup, float64(rss)/1024)
		if tty {
			fmt.Fprintf(w, "\r%s\x1b[K", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
