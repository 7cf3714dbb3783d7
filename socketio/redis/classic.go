// Package redis holds Socket.IO adapters over Redis, wire-compatible with
// Node's @socket.io/redis-adapter, so that Go and Node processes (and
// @socket.io/redis-emitter) can serve one cluster.
//
// Classic speaks the adapter's classic format (Node's createAdapter, 8.x):
// broadcasts are msgpack PUBLISHed to socket.io#<nsp># (or
// socket.io#<nsp>#<room># for exactly one room) and read with PSUBSCRIBE
// socket.io#<nsp>#*; requests between processes go to
// socket.io-request#<nsp># and their answers to socket.io-response#<nsp>#
// (or socket.io-response#<nsp>#<uid>#).
//
// Sharded (sharded.go) speaks the format of Node's createShardedAdapter
// instead: Redis 7 sharded pub/sub, one subscription per room a process
// holds, on one Redis or a Redis Cluster. Either adapter takes go-redis
// cluster clients (countSubscribers and pipelineFor in cluster.go).
//
// # Who owns what
//
// One Classic serves every namespace of one socketio.Server, over two
// go-redis clients the caller owns (and closes after Close). It runs four
// goroutines, started by NewClassic and ended by Close, which waits for
// them:
//
//   - The writer (publish.go) owns the publishing client's use for PUBLISH:
//     every message goes through its bounded queue and is written in a
//     pipeline with whatever else has queued, in order. Event handlers
//     never wait for Redis; a full queue drops the message (Stats.Dropped,
//     OnError). With Options.Outbox it owns the outbox too (outbox.go):
//     what it could not publish waits there, bounded, until Redis and the
//     subscriptions are back; it reads Subscribed (under Classic.mu) for
//     that.
//   - The receiver owns the PubSub's reads: it reads every message, records
//     which subscriptions Redis confirmed (Subscribed) and pings a silent
//     connection. Answers to this process's requests it handles itself
//     (they only complete pending requests, and call BroadcastWithAck's
//     callbacks); broadcasts and requests from other processes it hands to
//     the deliverer, in the order they came, through a queue of 1024 (when
//     that is full the receiver waits, and Redis buffers for it).
//   - The deliverer runs what reaches sockets or the application: remote
//     broadcasts and every request from another process (joins, leaves,
//     disconnects, fetches, server-side emits, broadcasts with
//     acknowledgements), one at a time, in Redis's order, so a join
//     published before a broadcast is applied before it. Server-side emit
//     handlers (and disconnect handlers of sockets another process
//     disconnects) run here: one that blocks delays every delivery from
//     other processes. The requests such a handler makes are answered to
//     the receiver, so they do not deadlock.
//   - The subscriber issues SUBSCRIBE, PSUBSCRIBE and their opposites as
//     namespaces come and go, retrying a failed subscribe: building a
//     namespace (under socketio.Server's lock) never waits for Redis.
//     Re-subscribing after a lost connection is go-redis's own work.
//
// With recovery on (recovery.go), a fifth goroutine, the keeper, renews
// the expiry of this process's live sessions every 10 s, and each session
// restore runs on a goroutine of its own, for at most RequestsTimeout;
// Close waits for them too. The writer also carries recovery's EVALs (a
// stored broadcast, a session's writes), in order with the rest.
//
// Classic.mu guards the namespace table, the subscriptions wanted and
// confirmed, and the subscriber's pending operations. Each namespace
// adapter's mu guards its pending requests. Counters are atomic. Nothing
// holds a lock while calling Redis or application code.
package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/socketio"
)

// Errors of the adapter, wrapped with context where they are returned.
var (
	// ErrClosed: the Classic or the namespace adapter is closed.
	ErrClosed = errors.New("redis adapter: closed")
	// ErrQueueFull: the publish queue is full (Redis too slow or away);
	// the message was dropped.
	ErrQueueFull = errors.New("redis adapter: publish queue full")
	// ErrSubscriptionLost: the subscription connection failed (Redis
	// closed it, past its client-output-buffer-limit pubsub for one, or
	// it broke); go-redis subscribes again on a new one. Reported to
	// OnError (wrapped) on every failed attempt; logged once per loss.
	ErrSubscriptionLost = errors.New("redis adapter: subscription connection lost")
	// ErrUnavailable: Options.Publishing turned false while a request that
	// waits for the other processes' answers was being made; it was not
	// sent.
	ErrUnavailable = errors.New("redis adapter: not publishing")
)

// Options configure a Classic. Zero values are the documented defaults.
type Options struct {
	// Key prefixes every channel, as Node's option of that name:
	// "socket.io".
	Key string
	// RequestsTimeout bounds how long a request to the other processes
	// (FetchSockets, AllRooms, ServerSideEmit with acknowledgements) waits
	// for their answers: 5 s, as in Node.
	RequestsTimeout time.Duration
	// PublishOnSpecificResponseChannel sends the answers to another
	// process's requests to that process's own response channel
	// (socket.io-response#<nsp>#<uid>#) instead of the one every process
	// reads, as Node's option of that name (adapter 7.1+). Off, as in
	// Node: adapters older than 7.1 do not listen there. Either way this
	// adapter listens on both.
	PublishOnSpecificResponseChannel bool
	// QueueSize bounds the messages waiting to be published: 4096. A
	// publish that finds the queue full is dropped (Stats.Dropped,
	// OnError, and the caller's error) rather than waiting for Redis.
	QueueSize int
	// PublishTimeout bounds one pipeline of publishes, a subscription
	// command, and how long Close lets the queue drain: 2 s.
	PublishTimeout time.Duration
	// PingInterval: a subscription connection silent that long is pinged,
	// and one that stays silent as long again is dropped, for go-redis to
	// redial and subscribe again (a peer gone without a reset): 5 s.
	PingInterval time.Duration
	// Publishing, when set, is asked before every publish. False makes the
	// adapter act as if this process were alone: broadcasts stay local
	// (Stats.Skipped), ServerCount is 1, so FetchSockets, AllRooms and
	// acknowledgements need no answers (a request already under way when
	// it turns false fails with ErrUnavailable). The server's Redis probe
	// goes here. With Outbox on, broadcasts are queued all the same (the
	// outbox keeps them until Redis answers) and only requests and
	// responses stay local. Nil: always publish.
	Publishing func() bool
	// Outbox keeps broadcasts through a Redis outage and publishes them,
	// in order and once, when it answers again (outbox.go): off unless
	// Outbox.MaxMessages is set.
	Outbox OutboxOptions
	// OnError receives every adapter error: failed or dropped publishes,
	// a lost subscription connection, a failed subscribe, a panic in a
	// handler run for another process. Nil: they are only logged (debug).
	OnError func(error)
	// Logger receives the subscription's state changes (lost, restored)
	// and, at debug level, messages that were ignored as malformed. Nil
	// discards.
	Logger *slog.Logger
	// Recovery turns on connection state recovery across processes
	// (recovery.go): off unless Recovery.Window is set.
	Recovery RecoveryOptions
}

func (o *Options) setDefaults() {
	if o.Key == "" {
		o.Key = "socket.io"
	}
	if o.RequestsTimeout <= 0 {
		o.RequestsTimeout = 5 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 2 * time.Second
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Recovery.setDefaults()
	o.Outbox.setDefaults()
}

// Kinds of messages, for the counters.
type msgKind uint8

const (
	kindBroadcast msgKind = iota
	kindRequest
	kindResponse
	kindSession // recovery's session writes (not pub/sub)
	numKinds
)

// KindStats counts messages by kind.
type KindStats struct {
	Broadcasts uint64 // socket.io#<nsp>#…
	Requests   uint64 // socket.io-request#<nsp>#
	Responses  uint64 // socket.io-response#<nsp>#…
	Sessions   uint64 // recovery's session writes (Published only)
}

// Stats are a Classic's counters since it started.
type Stats struct {
	// Published: written to Redis.
	Published KindStats
	// Received: read from Redis on a channel of one of this process's
	// namespaces, before any other filtering.
	Received KindStats
	// Ignored: read but not for this process: its own messages, rooms it
	// does not hold, answers to other processes' requests.
	Ignored uint64
	// Malformed: read but undecodable or of an unknown shape.
	Malformed uint64
	// Dropped: meant for Redis and lost: the queue was full, the adapter
	// closed, or Redis failed the pipeline.
	Dropped uint64
	// Skipped: kept local because Options.Publishing said so.
	Skipped uint64
	// SubscriptionLost: subscription connections lost (Redis dropped
	// them, or they broke), each counted once however long it takes to
	// subscribe again.
	SubscriptionLost uint64
	// Outbox: the outbox's counters (Options.Outbox); its drops are also
	// in Dropped.
	Outbox OutboxStats
}

type counters struct {
	published, received [numKinds]atomic.Uint64
	ignored, malformed  atomic.Uint64
	dropped, skipped    atomic.Uint64
	subscriptionLost    atomic.Uint64

	outboxWaiting atomic.Int64
	outboxHeld    atomic.Uint64
	outboxDropped [2]atomic.Uint64 // by count, by age
	outboxSubs    atomic.Int64
}

func (c *counters) outbox() OutboxStats {
	return OutboxStats{
		Waiting:      c.outboxWaiting.Load(),
		Held:         c.outboxHeld.Load(),
		DroppedCount: c.outboxDropped[0].Load(),
		DroppedAge:   c.outboxDropped[1].Load(),
		Subscribers:  c.outboxSubs.Load(),
	}
}

// Classic is the classic Redis adapter of one socketio.Server: build it
// with NewClassic, pass Factory to socketio.Options.Adapter, and Close it
// after the server.
type Classic struct {
	pub  goredis.UniversalClient
	opts Options
	uid  string
	ps   *goredis.PubSub
	w    *writer
	log  *slog.Logger
	cnt  counters

	ctx    context.Context // ends with Close: the goroutines' Redis calls
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close

	// inbox: receiver → deliverer; while it is empty the receiver handles
	// a broadcast itself.
	inbox inbox[delivery]
	wake  chan struct{} // → subscriber (capacity 1)
	wg    sync.WaitGroup

	mu        sync.Mutex
	byName    map[string]*adapter
	byPattern map[string]*adapter
	byChannel map[string]route
	confirmed map[string]bool // channels and patterns Redis confirmed
	changed   chan struct{}   // closed and replaced when confirmed changes
	lost      bool            // the subscription connection failed since last complete
	ops       []subOp
	closed    bool

	closeOnce sync.Once
	closeErr  error
}

type route struct {
	a    *adapter
	kind msgKind
}

type delivery struct {
	a       *adapter
	kind    msgKind
	channel string
	payload string
}

type subOp struct {
	a         *adapter
	subscribe bool
}

// NewClassic starts a classic adapter publishing with pub and subscribing
// with sub, both required. sub should be a client of its own (one of its
// connections stays in subscribed mode) speaking RESP2, which has no push
// frames to mishandle (go-redis v9.18 lost messages on RESP3,
// redis/go-redis#3839). The caller keeps ownership of both clients and
// closes them after Close. Both may be *goredis.ClusterClient: classic
// pub/sub works on a Redis Cluster, but every node relays every message
// to every subscriber, so it does not scale there (Sharded does).
func NewClassic(pub, sub goredis.UniversalClient, opts Options) *Classic {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	uid := randomID(10)
	if opts.Recovery.Window > 0 {
		uid = stampPrefix + uid
	}
	c := &Classic{
		pub:       pub,
		opts:      opts,
		uid:       uid,
		log:       opts.Logger,
		ctx:       ctx,
		cancel:    cancel,
		stop:      make(chan struct{}),
		wake:      make(chan struct{}, 1),
		byName:    make(map[string]*adapter),
		byPattern: make(map[string]*adapter),
		byChannel: make(map[string]route),
		confirmed: make(map[string]bool),
		changed:   make(chan struct{}),
	}
	c.inbox.ch = make(chan delivery, 1024)
	// Without channels, go-redis connects on first use, in the receiver.
	c.ps = sub.Subscribe(ctx)
	c.w = newWriter(pub, opts, &c.cnt, c.reportError)
	c.w.pinKey = opts.Key
	if c.recovering() {
		// The store script's keys live on the node of recovery's hash
		// tag: everything goes through that node (recovery.go).
		c.w.pinKey = recoveryTag(opts.Recovery.Key)
	}
	c.w.useOutbox(opts.Outbox, uid, c.Subscribed, c.watchChannel, false, c.log)
	c.wg.Add(4)
	go func() { defer c.wg.Done(); c.w.run() }()
	go c.receive()
	go c.deliver()
	go c.subscriptions()
	if c.recovering() {
		c.wg.Add(1)
		go c.renew()
	}
	return c
}

// UID is this process's id in the cluster (Node's adapter uid): the
// receivers drop messages that carry it.
func (c *Classic) UID() string { return c.uid }

// Factory builds the adapter of each namespace.
func (c *Classic) Factory() socketio.AdapterFactory {
	return func(nsp *socketio.Namespace) socketio.Adapter { return c.newAdapter(nsp) }
}

// Stats returns the counters.
func (c *Classic) Stats() Stats {
	kinds := func(a *[numKinds]atomic.Uint64) KindStats {
		return KindStats{Broadcasts: a[kindBroadcast].Load(), Requests: a[kindRequest].Load(), Responses: a[kindResponse].Load(), Sessions: a[kindSession].Load()}
	}
	return Stats{
		Published: kinds(&c.cnt.published),
		Received:  kinds(&c.cnt.received),
		Ignored:   c.cnt.ignored.Load(),
		Malformed: c.cnt.malformed.Load(),
		Dropped:   c.cnt.dropped.Load(),
		Skipped:   c.cnt.skipped.Load(),

		SubscriptionLost: c.cnt.subscriptionLost.Load(),
		Outbox:           c.cnt.outbox(),
	}
}

// Subscribed reports whether Redis has confirmed every subscription of
// every namespace on the current connection: until then, messages from
// other processes may be missed.
func (c *Classic) Subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subscribedLocked()
}

// WaitSubscribed waits until Subscribed holds.
func (c *Classic) WaitSubscribed(ctx context.Context) error {
	for {
		c.mu.Lock()
		ok, changed := c.subscribedLocked(), c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("redis adapter: wait for subscriptions: %w", ctx.Err())
		case <-c.stop:
			return ErrClosed
		}
	}
}

func (c *Classic) subscribedLocked() bool {
	for _, a := range c.byName {
		for _, ch := range a.subscriptions() {
			if !c.confirmed[ch] {
				return false
			}
		}
	}
	return true
}

func (c *Classic) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Close stops the adapter: the queued publishes get PublishTimeout to be
// written (what is left then is dropped and reported), the subscriptions
// end, and every goroutine it started has returned when Close does.
// Requests still waiting fail with ErrClosed. With Redis unresponsive, a
// command already in flight ends by the publishing client's own
// ReadTimeout, so Close takes at most about PublishTimeout plus that. It
// is idempotent; the clients stay open.
func (c *Classic) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		c.w.close(c.opts.PublishTimeout)
		c.cancel()
		err := c.ps.Close()
		c.wg.Wait()
		if err != nil {
			c.closeErr = fmt.Errorf("redis adapter: close subscription: %w", err)
		}
	})
	return c.closeErr
}

func (c *Classic) reportError(err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(err)
		return
	}
	c.log.Debug("redis adapter error", "err", err)
}

// watchChannel is the request channel of the first namespace by name (""
// without any), whose subscribers the outbox counts to know when the other
// processes are back after an outage.
func (c *Classic) watchChannel() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := firstByName(c.byName); a != nil {
		return a.reqCh
	}
	return ""
}

// firstByName is the namespace adapter of the first name; nil without
// any.
func firstByName[A any](byName map[string]*A) *A {
	first := ""
	for name := range byName {
		if first == "" || name < first {
			first = name
		}
	}
	return byName[first]
}

// outboxed reports whether a broadcast is queued while
// Options.Publishing says no: the outbox keeps it for when Redis is back.
func (c *Classic) outboxed(kind msgKind) bool {
	return kind == kindBroadcast && c.w.box != nil
}

// publish hands a message to the writer, unless Options.Publishing says
// no (then it reports skipped) and the outbox does not take it.
func (c *Classic) publish(kind msgKind, channel string, payload []byte) (skipped bool, err error) {
	if c.opts.Publishing != nil && !c.outboxed(kind) && !c.opts.Publishing() {
		c.cnt.skipped.Add(1)
		return true, nil
	}
	if err := c.w.enqueue(outMsg{kind: kind, channel: channel, payload: payload}); err != nil {
		c.cnt.dropped.Add(1)
		err = fmt.Errorf("redis adapter: publish to %s: %w", channel, err)
		c.reportError(err)
		return false, err
	}
	return false, nil
}

// ------------------------------------------------------------ receiver ---

// receive reads the subscription until Close.
func (c *Classic) receive() {
	defer c.wg.Done()
	failures := 0
	pinged := false
	for {
		var msg any
		var err error
		if pinged {
			// A deadline of the context's own makes go-redis treat the
			// silence as a dead connection, close it and redial.
			ctx, cancel := context.WithTimeout(c.ctx, c.opts.PingInterval)
			msg, err = c.ps.Receive(ctx)
			cancel()
		} else {
			msg, err = c.ps.ReceiveTimeout(c.ctx, c.opts.PingInterval)
		}
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if !pinged && errors.As(err, &ne) && ne.Timeout() {
				// Silent for PingInterval: ask for a sign of life. A failed
				// write makes go-redis redial at once.
				perr := c.ps.Ping(c.ctx)
				pinged = perr == nil
				if perr != nil && c.ctx.Err() == nil {
					c.connectionLost(perr)
				}
				continue
			}
			pinged = false
			c.connectionLost(err)
			failures++
			if !c.sleep(min(time.Second, 50*time.Millisecond<<min(failures, 5))) {
				return
			}
			continue
		}
		failures, pinged = 0, false
		switch m := msg.(type) {
		case *goredis.Message:
			c.dispatch(m)
		case *goredis.Subscription:
			c.confirm(m)
		}
	}
}

// sleep waits d; false if Close came first.
func (c *Classic) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}

// connectionLost forgets the confirmations of a connection that failed:
// go-redis subscribes again on the next one, and the confirmations come
// back. A Redis error reply (not a connection's failure) changes nothing.
func (c *Classic) connectionLost(err error) {
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		c.reportError(fmt.Errorf("redis adapter: subscription: %w", err))
		return
	}
	c.mu.Lock()
	wasLost := c.lost
	c.lost = true
	if len(c.confirmed) > 0 {
		clear(c.confirmed)
		c.notifyLocked()
	}
	c.mu.Unlock()
	if !wasLost {
		c.cnt.subscriptionLost.Add(1)
		c.log.Warn("redis adapter: subscription connection lost; messages from other processes are missed until go-redis resubscribes", "err", err)
	}
	c.reportError(fmt.Errorf("%w: %w", ErrSubscriptionLost, err))
}

func (c *Classic) confirm(s *goredis.Subscription) {
	c.mu.Lock()
	switch s.Kind {
	case "subscribe", "psubscribe":
		c.confirmed[s.Channel] = true
	case "unsubscribe", "punsubscribe":
		delete(c.confirmed, s.Channel)
	}
	c.notifyLocked()
	restored := c.lost && c.subscribedLocked()
	if restored {
		c.lost = false
	}
	c.mu.Unlock()
	if restored {
		c.log.Info("redis adapter: subscriptions restored")
	}
}

// dispatch routes one message: responses are handled here, the rest in
// order by the deliverer.
func (c *Classic) dispatch(m *goredis.Message) {
	c.mu.Lock()
	var r route
	var ok bool
	if m.Pattern != "" {
		r.a, ok = c.byPattern[m.Pattern]
		r.kind = kindBroadcast
	} else {
		r, ok = c.byChannel[m.Channel]
	}
	c.mu.Unlock()
	if !ok {
		c.cnt.ignored.Add(1) // a namespace closed meanwhile
		return
	}
	c.cnt.received[r.kind].Add(1)
	d := delivery{a: r.a, kind: r.kind, channel: m.Channel, payload: m.Payload}
	if r.kind == kindResponse || r.kind == kindBroadcast && c.inbox.empty() {
		c.handle(d)
		return
	}
	c.inbox.put(d, c.stop)
}

// ----------------------------------------------------------- deliverer ---

func (c *Classic) deliver() {
	defer c.wg.Done()
	c.inbox.run(c.stop, c.handle)
}

// handle runs one message, on the deliverer (broadcasts, requests) or the
// receiver (responses, which call the acknowledgement callbacks of
// BroadcastWithAck); a panic is reported, not fatal.
func (c *Classic) handle(d delivery) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("redis adapter: panic while handling a message", "channel", d.channel,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			c.reportError(fmt.Errorf("redis adapter: panic while handling a message from %s: %v", d.channel, p))
		}
	}()
	switch d.kind {
	case kindBroadcast:
		d.a.onBroadcast(d.channel, d.payload)
	case kindRequest:
		d.a.onRequest(d.payload)
	case kindResponse:
		d.a.onResponse(d.payload)
	}
}

// ---------------------------------------------------------- subscriber ---

func (c *Classic) subscriptions() {
	defer c.wg.Done()
	var retry []subOp
	backoff := 100 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-timer.C:
		}
		c.mu.Lock()
		ops := append(retry, c.ops...)
		c.ops = nil
		c.mu.Unlock()
		retry = nil
		for _, op := range ops {
			if err := c.apply(op); err != nil {
				if c.ctx.Err() != nil {
					return
				}
				c.reportError(err)
				if op.subscribe {
					retry = append(retry, op)
				}
			}
		}
		if len(retry) > 0 {
			timer.Reset(backoff)
			backoff = min(2*backoff, 5*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
	}
}

// apply subscribes or unsubscribes one namespace. go-redis remembers the
// channels even when the command fails, and subscribes to them again on
// its next connection; the retry covers a failure that came after it
// redialled.
func (c *Classic) apply(op subOp) error {
	c.mu.Lock()
	current := c.byName[op.a.name] == op.a
	c.mu.Unlock()
	if op.subscribe && !current {
		return nil // closed meanwhile
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.PublishTimeout)
	defer cancel()
	a := op.a
	if op.subscribe {
		err := c.ps.PSubscribe(ctx, a.pattern)
		if err == nil {
			err = c.ps.Subscribe(ctx, a.reqCh, a.respCh, a.specificCh)
		}
		if err != nil {
			return fmt.Errorf("redis adapter: subscribe for %s: %w", a.name, err)
		}
		return nil
	}
	err := c.ps.PUnsubscribe(ctx, a.pattern)
	if err == nil {
		err = c.ps.Unsubscribe(ctx, a.reqCh, a.respCh, a.specificCh)
	}
	if err != nil {
		return fmt.Errorf("redis adapter: unsubscribe for %s: %w", a.name, err)
	}
	return nil
}

func (c *Classic) queueOp(op subOp) {
	c.ops = append(c.ops, op)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// register adds a namespace's routes and asks for its subscriptions; an
// error when it cannot be served (closed, or the name taken).
func (c *Classic) register(a *adapter) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.byName[a.name] != nil {
		return fmt.Errorf("redis adapter: namespace %s is already served by this Classic (use one Classic per socketio.Server)", a.name)
	}
	c.byName[a.name] = a
	c.byPattern[a.pattern] = a
	c.byChannel[a.reqCh] = route{a, kindRequest}
	c.byChannel[a.respCh] = route{a, kindResponse}
	c.byChannel[a.specificCh] = route{a, kindResponse}
	c.queueOp(subOp{a: a, subscribe: true})
	c.notifyLocked()
	return nil
}

func (c *Classic) unregister(a *adapter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byName[a.name] != a {
		return
	}
	delete(c.byName, a.name)
	delete(c.byPattern, a.pattern)
	delete(c.byChannel, a.reqCh)
	delete(c.byChannel, a.respCh)
	delete(c.byChannel, a.specificCh)
	if !c.closed {
		c.queueOp(subOp{a: a})
	}
	c.notifyLocked()
}

// ------------------------------------------------------------- helpers ---

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomID returns n random letters and digits (as Node's uid2 does).
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// globEscape escapes what PSUBSCRIBE patterns treat specially, so that a
// namespace named "/a*" matches only itself.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
