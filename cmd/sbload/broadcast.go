package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Broadcasts (scenario S5): a namespace-wide event published to Redis in
// the wire format of Node's @socket.io/redis-emitter (uid "emitter"), which
// every process of the cluster, Switchboard or Node, delivers to every
// socket of the namespace. The load tool publishes one, waits until every
// connected device has it (or -broadcast-wait passes), and records when the
// first and the last device got it.

const markBroadcast = `"event":"sb_broadcast"`

// broadcastTracker records, per broadcast, when each device received it.
type broadcastTracker struct {
	mu       sync.Mutex
	seq      int
	sent     time.Time
	got      []time.Duration
	seen     map[int]bool // device index
	expected int
	done     chan struct{}
	dups     int
}

func (b *broadcastTracker) begin(seq, expected int) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq, b.sent, b.expected = seq, time.Now(), expected
	b.got = make([]time.Duration, 0, expected)
	b.seen = make(map[int]bool, expected)
	b.done = make(chan struct{})
	b.dups = 0
	return b.done
}

func (b *broadcastTracker) received(d *device, seq int, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq != b.seq || b.done == nil {
		return // late, or from an earlier broadcast
	}
	if b.seen[d.idx] {
		b.dups++
		return
	}
	b.seen[d.idx] = true
	b.got = append(b.got, at.Sub(b.sent))
	if len(b.got) == b.expected {
		close(b.done)
		b.done = nil
	}
}

// onBroadcast parses the sequence number out of a broadcast event body.
func (d *device) onBroadcast(body []byte, at time.Time, h handler) bool {
	if !bytes.Contains(body, []byte(markBroadcast)) {
		return false
	}
	i := bytes.Index(body, []byte(`"seq":`))
	if i < 0 {
		return false
	}
	rest := body[i+6:]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	seq, err := strconv.Atoi(string(rest[:j]))
	if err != nil {
		return false
	}
	h.broadcast(d, seq, at)
	return true
}

// runBroadcasts publishes cfg.Broadcasts broadcasts, one at a time.
func (r *loadRun) runBroadcasts(ctx context.Context) ([]broadcastReport, error) {
	opt, err := goredis.ParseURL(r.cfg.BroadcastRedis)
	if err != nil {
		return nil, fmt.Errorf("-broadcast-redis: %w", err)
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	channel := "socket.io#" + r.cfg.Namespace + "#"
	var out []broadcastReport
	for seq := 1; seq <= r.cfg.Broadcasts && ctx.Err() == nil; seq++ {
		alive := 0
		for i := range r.alive {
			if r.alive[i].Load() {
				alive++
			}
		}
		cpu0 := r.smp.snapshot()
		done := r.bcast.begin(seq, alive)
		if err := rdb.Publish(ctx, channel, emitterBroadcast(r.cfg.Namespace, seq)).Err(); err != nil {
			return out, fmt.Errorf("publish broadcast: %w", err)
		}
		t := time.NewTimer(r.cfg.BroadcastWait)
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		cpu1 := r.smp.snapshot()
		r.bcast.mu.Lock()
		lats := slices.Clone(r.bcast.got)
		rep := broadcastReport{Seq: seq, Devices: alive, Received: len(lats), Duplicated: r.bcast.dups}
		r.bcast.done = nil
		r.bcast.mu.Unlock()
		rep.Latency = summarise(lats)
		if len(lats) > 0 {
			rep.LastMs = float64(slices.Max(lats)) / 1e6
			rep.FirstMs = float64(slices.Min(lats)) / 1e6
		}
		rep.ServerCPUSeconds = cpuDelta(cpu0, cpu1, len(r.cfg.Pids))
		out = append(out, rep)
		sleepCtx(ctx, r.cfg.BroadcastGap)
	}
	return out, nil
}

// cpuDelta sums the CPU seconds the first n sampled processes spent.
func cpuDelta(a, b []procSample, n int) float64 {
	var s float64
	for i := 0; i < n && i < len(a) && i < len(b); i++ {
		s += b[i].CPU - a[i].CPU
	}
	return s
}

// broadcastReport is one broadcast's outcome.
type broadcastReport struct {
	Seq              int     `json:"seq"`
	Devices          int     `json:"devices"` // connected when it was published
	Received         int     `json:"received"`
	Duplicated       int     `json:"duplicated"`
	FirstMs          float64 `json:"first_ms"`
	LastMs           float64 `json:"last_ms"` // until the last device had it
	Latency          latency `json:"latency"`
	ServerCPUSeconds float64 `json:"server_cpu_s"`
}

// emitterBroadcast is the msgpack message @socket.io/redis-emitter
// publishes for io.of(nsp).emit("message", {...}):
// ["emitter", {type: 2, data: [...], nsp}, {rooms: [], except: [], flags: {}}].
func emitterBroadcast(nsp string, seq int) []byte {
	var b []byte
	b = append(b, 0x93) // array of 3
	b = mpStr(b, "emitter")
	b = append(b, 0x83) // map of 3
	b = mpStr(b, "type")
	b = append(b, 2)
	b = mpStr(b, "data")
	b = append(b, 0x92) // ["message", {...}]
	b = mpStr(b, "message")
	b = append(b, 0x83)
	b = mpStr(b, "event")
	b = mpStr(b, "sb_broadcast")
	b = mpStr(b, "id")
	b = mpStr(b, "*")
	b = mpStr(b, "args")
	b = append(b, 0x81)
	b = mpStr(b, "seq")
	b = append(b, 0xce) // uint32
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	b = mpStr(b, "nsp")
	b = mpStr(b, nsp)
	b = append(b, 0x83)
	b = mpStr(b, "rooms")
	b = append(b, 0x90)
	b = mpStr(b, "except")
	b = append(b, 0x90)
	b = mpStr(b, "flags")
	b = append(b, 0x80)
	return b
}

func mpStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 256:
		b = append(b, 0xd9, byte(n))
	default:
		b = append(b, 0xda)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	return append(b, s...)
}
