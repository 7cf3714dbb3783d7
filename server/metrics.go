package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/handlers"
	"github.com/switchboard-rt/switchboard/namespaces"
	"github.com/switchboard-rt/switchboard/relay"
	"github.com/switchboard-rt/switchboard/socketio"
	redisadapter "github.com/switchboard-rt/switchboard/socketio/redis"
)

// metrics writes the Prometheus text format (0.0.4) itself. The Prometheus
// client library, linked beside gin, made the binary 20 MB larger (gin's
// templates make the linker keep every exported method of what the client
// library reaches); the few counters and gauges here need none of it. One
// metrics value per Server, so that two servers in one test process do not
// collide.
type metrics struct {
	events           *counterVec // event, result
	deliveries       *counterVec // event
	authFailures     *counterVec // reason
	limitRefusals    *counterVec // arg, reason
	adapterErrors    atomic.Uint64
	floodDisconnects atomic.Uint64
	apiEvents        atomic.Uint64
	sockets          func() float64
	recovery         func() socketio.RecoveryStats // nil: none
	// extra families (engine and adapter counters), written after ours.
	extra []func(w *expo)
	start time.Time
}

var _ namespaces.Observer = (*metrics)(nil)

func newMetrics(sockets func() float64) *metrics {
	return &metrics{
		events:        newCounterVec("event", "result"),
		deliveries:    newCounterVec("event"),
		authFailures:  newCounterVec("reason"),
		limitRefusals: newLimitRefusals(),
		sockets:       sockets,
		start:         time.Now(),
	}
}

func (m *metrics) EventHandled(event, result string) { m.events.inc(event, result) }

func (m *metrics) Delivered(event string) {
	switch event {
	case handlers.EventMessageSent, handlers.EventPostUpdatedNotification:
	default:
		event = "other" // /api/events names come from callers: bounded labels only
	}
	m.deliveries.inc(event)
}

func (m *metrics) AuthFailed(reason string) { m.authFailures.inc(reason) }

func (m *metrics) LimitExceeded(arg, reason string) { m.limitRefusals.inc(arg, reason) }

func (m *metrics) FloodDisconnected() { m.floodDisconnects.Add(1) }

// newLimitRefusals declares every series of the refusal counter at zero,
// so that a dashboard sees a limit before anyone breaks it.
func newLimitRefusals() *counterVec {
	c := newCounterVec("arg", "reason")
	for _, l := range []handlers.Limit{
		{Arg: handlers.ArgEventName, Reason: handlers.ReasonTooLong},
		{Arg: handlers.ArgPostID, Reason: handlers.ReasonTooLong},
		{Arg: handlers.ArgUserID, Reason: handlers.ReasonTooLong},
		{Arg: handlers.ArgUserID, Reason: handlers.ReasonBadCharacters},
		{Arg: handlers.ArgTokenSub, Reason: handlers.ReasonTooLong},
		{Arg: handlers.ArgTokenSub, Reason: handlers.ReasonBadCharacters},
	} {
		c.declare(l.Arg, l.Reason)
	}
	return c
}

func (m *metrics) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e := &expo{}
		m.write(e)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(e.buf.Bytes())
	})
}

func (m *metrics) write(e *expo) {
	e.family("switchboard_sockets", "gauge", "Sockets connected to /socket in this process.")
	e.sample("switchboard_sockets", nil, m.sockets())
	e.family("switchboard_events_total", "counter", "Router events handled, by router event (unknown for unregistered names) and result (ok or an error code).")
	m.events.write(e, "switchboard_events_total")
	e.family("switchboard_deliveries_total", "counter", "Deliveries emitted to a user room (each reaches every socket of the user on every process), by event (other for /api/events names).")
	m.deliveries.write(e, "switchboard_deliveries_total")
	e.family("switchboard_auth_failures_total", "counter", "Refused /socket connections, by reason.")
	m.authFailures.write(e, "switchboard_auth_failures_total")
	e.family("switchboard_limit_refusals_total", "counter", "Events (invalid_args), connections (invalid_token, for arg token_sub) and HTTP API requests (400) refused for an argument past its limit, by argument (event_name, post_id, user_id for to, mentions and the HTTP API's user ids, token_sub) and reason (too_long, bad_characters).")
	m.limitRefusals.write(e, "switchboard_limit_refusals_total")
	e.family("switchboard_flood_disconnects_total", "counter", "Sockets disconnected for flooding: ten bursts' worth of events sent into an empty rate-limit bucket (each refusal is counted in switchboard_events_total with result rate_limited).")
	e.sample("switchboard_flood_disconnects_total", nil, float64(m.floodDisconnects.Load()))
	e.family("switchboard_adapter_errors_total", "counter", "Errors reported by the Redis adapter (publish, subscribe, reconnect).")
	e.sample("switchboard_adapter_errors_total", nil, float64(m.adapterErrors.Load()))
	e.family("switchboard_api_events_total", "counter", "POST /api/events requests accepted.")
	e.sample("switchboard_api_events_total", nil, float64(m.apiEvents.Load()))
	if m.recovery != nil {
		writeRecovery(e, m.recovery())
	}
	for _, f := range m.extra {
		f(e)
	}
	writeGoMetrics(e)
	writeProcessMetrics(e, m.start)
}

// relayMetrics writes the relay's counters (polling without sticky
// sessions).
func relayMetrics(st *relay.Stats) func(e *expo) {
	return func(e *expo) {
		e.family("switchboard_relayed_total", "counter", "Engine.IO requests whose session another process holds, relayed to it: polling requests, and websocket upgrades tunneled.")
		e.sample("switchboard_relayed_total", [][2]string{{"transport", "polling"}}, float64(st.Relayed.Load()))
		e.sample("switchboard_relayed_total", [][2]string{{"transport", "websocket"}}, float64(st.Tunneled.Load()))
		e.family("switchboard_relay_tunnels", "gauge", "Websockets this process tunnels to the process that holds their session.")
		e.sample("switchboard_relay_tunnels", nil, float64(st.Tunnels.Load()))
		e.family("switchboard_relay_failures_total", "counter", "Requests for a session of another process answered \"Session ID unknown\" here, by reason: unknown_node (no process registered under the id's tag) or unreachable (the owner did not answer).")
		e.sample("switchboard_relay_failures_total", [][2]string{{"reason", "unknown_node"}}, float64(st.UnknownNode.Load()))
		e.sample("switchboard_relay_failures_total", [][2]string{{"reason", "unreachable"}}, float64(st.Unreachable.Load()))
	}
}

// writeRecovery writes connection state recovery's counters (all zero
// with RECOVERY_WINDOW=0).
func writeRecovery(e *expo, st socketio.RecoveryStats) {
	e.family("switchboard_recovery_sessions_persisted_total", "counter", "Sessions kept for recovery when their socket dropped (transport closed, ping timeout, shutdown), for RECOVERY_WINDOW.")
	e.sample("switchboard_recovery_sessions_persisted_total", nil, float64(st.Persisted))
	e.family("switchboard_recovery_sessions_recovered_total", "counter", "Reconnects that recovered their session: its socket id, rooms and every packet missed.")
	e.sample("switchboard_recovery_sessions_recovered_total", nil, float64(st.Recovered))
	e.family("switchboard_recovery_sessions_expired_total", "counter", "Reconnects that asked for a session no longer kept (past RECOVERY_WINDOW, recovered already, or missed packets trimmed by RECOVERY_MAX_PACKETS); they got a fresh session.")
	e.sample("switchboard_recovery_sessions_expired_total", nil, float64(st.Expired))
	e.family("switchboard_recovery_sessions_refused_total", "counter", "Reconnects refused recovery, by reason (they got a fresh session): other_user (the session is another user's), invalid (a forged pid or offset), unavailable (Redis did not answer).")
	e.sample("switchboard_recovery_sessions_refused_total", [][2]string{{"reason", "other_user"}}, float64(st.Refused))
	e.sample("switchboard_recovery_sessions_refused_total", [][2]string{{"reason", "invalid"}}, float64(st.Invalid))
	e.sample("switchboard_recovery_sessions_refused_total", [][2]string{{"reason", "unavailable"}}, float64(st.Failed))
}

// counterVec is a counter with a fixed set of label names.
type counterVec struct {
	labels []string
	mu     sync.Mutex
	values map[string]*atomic.Uint64 // key: label values joined by \x00
}

func newCounterVec(labels ...string) *counterVec {
	return &counterVec{labels: labels, values: make(map[string]*atomic.Uint64)}
}

func (c *counterVec) inc(values ...string) { c.get(values).Add(1) }

// declare makes the series of values exist, at zero.
func (c *counterVec) declare(values ...string) { c.get(values) }

func (c *counterVec) get(values []string) *atomic.Uint64 {
	key := strings.Join(values, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.values[key]
	if v == nil {
		v = new(atomic.Uint64)
		c.values[key] = v
	}
	return v
}

func (c *counterVec) write(e *expo, name string) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.values))
	counts := make(map[string]uint64, len(c.values))
	for k, v := range c.values {
		keys = append(keys, k)
		counts[k] = v.Load()
	}
	c.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		v := counts[k]
		vals := strings.Split(k, "\x00")
		lv := make([][2]string, len(c.labels))
		for i, l := range c.labels {
			lv[i] = [2]string{l, vals[i]}
		}
		e.sample(name, lv, float64(v))
	}
}

// expo accumulates the text exposition.
type expo struct{ buf bytes.Buffer }

func (e *expo) family(name, typ, help string) {
	fmt.Fprintf(&e.buf, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

func (e *expo) sample(name string, labels [][2]string, v float64) {
	e.buf.WriteString(name)
	if len(labels) > 0 {
		e.buf.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			e.buf.WriteString(l[0])
			e.buf.WriteString(`="`)
			e.buf.WriteString(escapeLabel(l[1]))
			e.buf.WriteByte('"')
		}
		e.buf.WriteByte('}')
	}
	e.buf.WriteByte(' ')
	e.buf.WriteString(formatValue(v))
	e.buf.WriteByte('\n')
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// goMetricNames are the runtime/metrics this server exports.
var goMetricNames = []struct{ name, runtime, typ, help string }{
	{"go_memstats_heap_alloc_bytes", "/memory/classes/heap/objects:bytes", "gauge", "Bytes of allocated heap objects."},
	{"go_memstats_heap_free_bytes", "/memory/classes/heap/free:bytes", "gauge", "Bytes of heap that are free and held by the runtime."},
	{"go_memstats_heap_released_bytes", "/memory/classes/heap/released:bytes", "gauge", "Bytes of heap returned to the operating system."},
	{"go_memstats_stack_inuse_bytes", "/memory/classes/heap/stacks:bytes", "gauge", "Bytes of goroutine stacks."},
	{"go_memstats_sys_bytes", "/memory/classes/total:bytes", "gauge", "Bytes of memory obtained from the operating system."},
	{"go_gc_cycles_total", "/gc/cycles/total:gc-cycles", "counter", "Completed GC cycles."},
	{"go_gc_heap_goal_bytes", "/gc/heap/goal:bytes", "gauge", "Heap size target of the current GC cycle."},
}

func writeGoMetrics(e *expo) {
	e.family("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	e.sample("go_goroutines", nil, float64(runtime.NumGoroutine()))
	e.family("go_info", "gauge", "Information about the Go environment.")
	e.sample("go_info", [][2]string{{"version", runtime.Version()}}, 1)
	samples := make([]rtmetrics.Sample, len(goMetricNames))
	for i, g := range goMetricNames {
		samples[i].Name = g.runtime
	}
	rtmetrics.Read(samples)
	for i, g := range goMetricNames {
		var v float64
		switch samples[i].Value.Kind() {
		case rtmetrics.KindUint64:
			v = float64(samples[i].Value.Uint64())
		case rtmetrics.KindFloat64:
			v = samples[i].Value.Float64()
		default:
			continue
		}
		e.family(g.name, g.typ, g.help)
		e.sample(g.name, nil, v)
	}
}

// writeProcessMetrics reads /proc/self (Linux); elsewhere it writes what it
// can.
func writeProcessMetrics(e *expo, start time.Time) {
	e.family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.")
	e.sample("process_start_time_seconds", nil, float64(start.Unix()))
	if utime, stime, ok := procCPU(); ok {
		e.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
		e.sample("process_cpu_seconds_total", nil, utime+stime)
	}
	if rss, vsz, ok := procMemory(); ok {
		e.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
		e.sample("process_resident_memory_bytes", nil, rss)
		e.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
		e.sample("process_virtual_memory_bytes", nil, vsz)
	}
	if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
		e.family("process_open_fds", "gauge", "Number of open file descriptors.")
		e.sample("process_open_fds", nil, float64(len(entries)))
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		e.family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
		e.sample("process_max_fds", nil, float64(lim.Cur))
	}
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func procCPU() (utime, stime float64, ok bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, false
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	s, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return u / clockTicks, s / clockTicks, true
}

func procMemory() (rss, vsz float64, ok bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	return parseStatus(f)
}

func parseStatus(r io.Reader) (rss, vsz float64, ok bool) {
	sc := bufio.NewScanner(r)
	found := 0
	for sc.Scan() {
		line := sc.Text()
		var dst *float64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmSize:"):
			dst = &vsz
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
				*dst = kb * 1024
				found++
			}
		}
	}
	return rss, vsz, found == 2
}

// writeAdapterMetrics writes the Redis adapter's counters.
func writeAdapterMetrics(e *expo, a redisAdapter) {
	st := a.Stats()
	kinds := func(name, help string, k redisadapter.KindStats) {
		e.family(name, "counter", help)
		e.sample(name, [][2]string{{"kind", "broadcast"}}, float64(k.Broadcasts))
		e.sample(name, [][2]string{{"kind", "request"}}, float64(k.Requests))
		e.sample(name, [][2]string{{"kind", "response"}}, float64(k.Responses))
	}
	kinds("switchboard_adapter_messages_published_total",
		"Messages the Redis adapter published, by kind (broadcast; request: joins, leaves, fetches, server-side emits, broadcasts with acknowledgements in the classic format; response).",
		st.Published)
	kinds("switchboard_adapter_messages_received_total",
		"Messages the Redis adapter read from its subscriptions, by kind, its own echoes and those for rooms it no longer holds included.",
		st.Received)
	e.family("switchboard_adapter_messages_ignored_total", "counter", "Messages read and dropped: this process's own, for rooms it does not hold, answers to other processes.")
	e.sample("switchboard_adapter_messages_ignored_total", nil, float64(st.Ignored))
	var subs redisadapter.SubscriptionStats
	if sh, ok := a.(*redisadapter.Sharded); ok {
		subs = sh.Subscriptions()
	}
	e.family("switchboard_adapter_room_subscriptions", "gauge", "Room channels subscribed and confirmed by Redis (REDIS_ADAPTER=sharded; the classic adapter has one pattern for all rooms: 0).")
	e.sample("switchboard_adapter_room_subscriptions", nil, float64(subs.Rooms))
	e.family("switchboard_adapter_subscriptions_pending", "gauge", "Channels wanted and not yet confirmed by Redis (sharded): their messages are missed until they are.")
	e.sample("switchboard_adapter_subscriptions_pending", nil, float64(subs.Pending))
	e.family("switchboard_adapter_subscription_lost_total", "counter", "Subscription connections lost: Redis dropped them (client-output-buffer-limit pubsub) or they broke. Each loss is counted once; /readyz answers 503 until every subscription is confirmed again.")
	e.sample("switchboard_adapter_subscription_lost_total", nil, float64(st.SubscriptionLost))
	e.family("switchboard_adapter_outbox_messages", "gauge", "Cross-process messages waiting to be published (OUTBOX_MAX_MESSAGES bounds them).")
	e.sample("switchboard_adapter_outbox_messages", nil, float64(st.Outbox.Waiting))
	e.family("switchboard_adapter_outbox_subscribers", "gauge", "Processes subscribed to this one's broadcasts when last counted (0: not yet): after an outage the outbox waits up to 5 s for as many before publishing what it kept.")
	e.sample("switchboard_adapter_outbox_subscribers", nil, float64(st.Outbox.Subscribers))
	e.family("switchboard_adapter_outbox_held_total", "counter", "Messages published after a failed attempt: kept in the outbox through a Redis outage.")
	e.sample("switchboard_adapter_outbox_held_total", nil, float64(st.Outbox.Held))
	e.family("switchboard_adapter_outbox_dropped_total", "counter", "Messages dropped from the outbox, by reason: count (past OUTBOX_MAX_MESSAGES) or age (past OUTBOX_MAX_AGE).")
	e.sample("switchboard_adapter_outbox_dropped_total", [][2]string{{"reason", "count"}}, float64(st.Outbox.DroppedCount))
	e.sample("switchboard_adapter_outbox_dropped_total", [][2]string{{"reason", "age"}}, float64(st.Outbox.DroppedAge))
	e.family("switchboard_adapter_subscription_failures_total", "counter", "Subscriptions that failed, were dropped by Redis (a slot moved) or lost with their connection (sharded); each is retried with backoff.")
	e.sample("switchboard_adapter_subscription_failures_total", nil, float64(subs.Failures))
}
