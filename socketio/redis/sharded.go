package redis

// Sharded speaks the format of Node's createShardedAdapter
// (@socket.io/redis-adapter 8.2+, socket.io-adapter's ClusterAdapter) in
// its default "dynamic" subscription mode, over Redis 7 sharded pub/sub
// (SPUBLISH, SSUBSCRIBE):
//
//   - socket.io#<nsp># carries what every process must see: broadcasts to
//     no room or to several, broadcasts with acknowledgements, joins,
//     leaves, disconnects, fetches and server-side emits;
//   - socket.io#<nsp>#<uid># carries the answers to the requests of the
//     process whose uid it names;
//   - socket.io#<nsp>#<room># carries the broadcasts (without
//     acknowledgements) to exactly that one room. A process subscribes to
//     it only while one of its sockets is in the room, so a process
//     receives the traffic of its own users and not the cluster's. A room
//     whose name is 20 characters long (UTF-16 code units, as JavaScript
//     counts) is taken for a socket id and its broadcasts go to the
//     namespace channel instead, as Node does; a room named after a local
//     socket's id gets no channel of its own.
//
// Messages are {uid, nsp, type, data}: JSON, or msgpack when they carry
// binary data. Sharded cannot share a Redis with Classic (different
// channels and formats), as in Node.
//
// # Who owns what
//
// One Sharded serves every namespace of one socketio.Server. It publishes
// through the same writer as Classic (publish.go: one goroutine, pipelined,
// bounded queue), and subscribes with one connection per Redis node: the
// one Redis, or each master of a Redis Cluster that owns the slot of a
// channel this process wants (sharded channels live on the node that owns
// their slot, and a connection can only subscribe there). Goroutines, all
// started by NewSharded or by the subscriber and ended by Close, which
// waits for them:
//
//   - The writer, as Classic's.
//   - One receiver per node connection reads it: subscription
//     confirmations and Redis's own unsubscriptions (a slot that moved)
//     update the channel table; answers to this process's requests are
//     handled on the receiver; broadcasts to a room are handled there too
//     while nothing waits for the deliverer; everything else goes to the
//     deliverer in the order read. A receiver whose connection fails marks
//     its channels unsubscribed, closes the connection and ends: the
//     subscriber routes the channels again, on a new connection.
//   - The deliverer runs broadcasts and other processes' requests, one at a
//     time, as Classic's does.
//   - The subscriber (sharded_subscriptions.go) turns the channels wanted
//     (namespaces registered, rooms held by local sockets) into SSUBSCRIBE
//     and SUNSUBSCRIBE on the right node, re-routes channels after a
//     failure (reloading the cluster's slot map first), retries with
//     backoff, and treats a subscription Redis has not confirmed in time as
//     failed. Joining and leaving rooms never waits for Redis.
//
// Sharded.mu guards the namespace table, the channel table (what is
// wanted, where it is subscribed, whether Redis confirmed it, who waits for
// it), the node connections and the subscriber's work. Each namespace
// adapter's mu guards its pending requests. Counters are atomic. Nothing
// holds a lock while calling Redis or application code.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/socketio"
)

// Sharded is the sharded Redis adapter of one socketio.Server: build it
// with NewSharded, pass Factory to socketio.Options.Adapter, and Close it
// after the server.
type Sharded struct {
	pub     goredis.UniversalClient
	single  *goredis.Client        // subscriptions on one Redis
	cluster *goredis.ClusterClient // or on the masters of a Redis Cluster
	opts    Options
	uid     string
	w       *writer
	log     *slog.Logger
	cnt     counters

	failures atomic.Uint64 // subscription failures (SubscriptionStats.Failures)

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close

	inbox inbox[shardDelivery] // receivers → deliverer
	wake  chan struct{}        // → subscriber (capacity 1)
	wg    sync.WaitGroup

	mu       sync.RWMutex
	byName   map[string]*shardedAdapter
	channels map[string]*chanState // every channel wanted
	nodes    map[string]*nodeConn  // live subscription connections by node address
	dirty    map[string]struct{}   // channels the subscriber must look at
	pending  map[string]struct{}   // SSUBSCRIBE sent, not confirmed yet
	// needRefresh: reload the cluster's slot map before routing again;
	// failedSince: a failure happened since the subscriber's last round
	// (it backs off).
	needRefresh, failedSince bool
	changed                  chan struct{} // closed and replaced when a confirmation changes
	closed                   bool

	closeOnce sync.Once
}

// Kinds of channel.
type chanKind uint8

const (
	chanNamespace chanKind = iota // socket.io#<nsp>#
	chanResponse                  // socket.io#<nsp>#<uid>#
	chanRoom                      // socket.io#<nsp>#<room>#
)

type shardRoute struct {
	a    *shardedAdapter
	kind chanKind
	room string // chanRoom
}

type shardDelivery struct {
	r       shardRoute
	payload string
}

// NewSharded starts a sharded adapter publishing with pub and subscribing
// with sub: both *goredis.Client (one Redis 7+) or both
// *goredis.ClusterClient (a Redis Cluster; the subscriber then opens one
// connection per master that owns a wanted channel, from sub's node
// clients). sub should speak RESP2, as for Classic. The caller keeps
// ownership of both clients and closes them after Close.
func NewSharded(pub, sub goredis.UniversalClient, opts Options) (*Sharded, error) {
	opts.setDefaults()
	s := &Sharded{pub: pub, opts: opts, log: opts.Logger}
	switch c := sub.(type) {
	case *goredis.Client:
		s.single = c
	case *goredis.ClusterClient:
		s.cluster = c
	default:
		return nil, fmt.Errorf("redis adapter: sharded subscriptions need a *redis.Client or a *redis.ClusterClient, not %T", sub)
	}
	s.uid = randomHex(8) // as Node's ClusterAdapter: 16 hex digits
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.stop = make(chan struct{})
	s.inbox.ch = make(chan shardDelivery, 1024)
	s.wake = make(chan struct{}, 1)
	s.byName = make(map[string]*shardedAdapter)
	s.channels = make(map[string]*chanState)
	s.nodes = make(map[string]*nodeConn)
	s.dirty = make(map[string]struct{})
	s.pending = make(map[string]struct{})
	s.changed = make(chan struct{})
	s.w = newWriter(pub, opts, &s.cnt, s.reportError)
	s.w.useOutbox(opts.Outbox, s.uid, s.Subscribed, s.watchChannel, true, s.log)
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.w.run() }()
	go s.deliver()
	go s.subscriptions()
	return s, nil
}

// UID is this process's id in the cluster.
func (s *Sharded) UID() string { return s.uid }

// Factory builds the adapter of each namespace.
func (s *Sharded) Factory() socketio.AdapterFactory {
	return func(nsp *socketio.Namespace) socketio.Adapter { return s.newAdapter(nsp) }
}

// Stats returns the message counters (kinds by message type: broadcasts
// with or without acknowledgements; joins, leaves, disconnects, fetches
// and server-side emits; answers).
func (s *Sharded) Stats() Stats {
	kinds := func(a *[numKinds]atomic.Uint64) KindStats {
		return KindStats{Broadcasts: a[kindBroadcast].Load(), Requests: a[kindRequest].Load(), Responses: a[kindResponse].Load()}
	}
	return Stats{
		Published: kinds(&s.cnt.published),
		Received:  kinds(&s.cnt.received),
		Ignored:   s.cnt.ignored.Load(),
		Malformed: s.cnt.malformed.Load(),
		Dropped:   s.cnt.dropped.Load(),
		Skipped:   s.cnt.skipped.Load(),

		SubscriptionLost: s.cnt.subscriptionLost.Load(),
		Outbox:           s.cnt.outbox(),
	}
}

// SubscriptionStats describe the sharded subscriptions.
type SubscriptionStats struct {
	// Rooms: room channels subscribed, confirmed by Redis.
	Rooms int
	// Pending: channels wanted and not confirmed (yet, or after a
	// failure): their messages are missed until they are.
	Pending int
	// Failures: subscriptions that failed (the command, or its
	// confirmation in time), Redis's unsubscriptions of a slot that moved,
	// and lost connections. Each is retried.
	Failures uint64
}

// Subscriptions returns the subscription counts.
func (s *Sharded) Subscriptions() SubscriptionStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := SubscriptionStats{Failures: s.failures.Load()}
	for _, c := range s.channels {
		switch {
		case !c.confirmed:
			st.Pending++
		case c.route.kind == chanRoom:
			st.Rooms++
		}
	}
	return st
}

// Subscribed reports whether Redis has confirmed the namespace and
// response channels of every namespace (what every process needs to take
// part in the cluster). Room channels come and go with sockets: see
// Subscriptions and WhenSubscribed.
func (s *Sharded) Subscribed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.subscribedLocked()
}

func (s *Sharded) subscribedLocked() bool {
	for _, a := range s.byName {
		for _, ch := range []string{a.nspCh, a.respCh} {
			if c := s.channels[ch]; c == nil || !c.confirmed {
				return false
			}
		}
	}
	return true
}

// WaitSubscribed waits until Subscribed holds.
func (s *Sharded) WaitSubscribed(ctx context.Context) error {
	for {
		s.mu.RLock()
		ok, changed := s.subscribedLocked(), s.changed
		s.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("redis adapter: wait for subscriptions: %w", ctx.Err())
		case <-s.stop:
			return ErrClosed
		}
	}
}

func (s *Sharded) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close stops the adapter, as Classic.Close does: queued publishes get
// PublishTimeout, the subscription connections close, requests and
// waiters fail with ErrClosed, and every goroutine has returned when it
// does. It is idempotent; the clients stay open.
func (s *Sharded) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		nodes := make([]*nodeConn, 0, len(s.nodes))
		for _, nc := range s.nodes {
			nc.dead = true
			nodes = append(nodes, nc)
		}
		clear(s.nodes)
		var waiters []*subWaiter
		for _, c := range s.channels {
			waiters = append(waiters, c.takeWaiters()...)
		}
		s.mu.Unlock()
		close(s.stop)
		s.w.close(s.opts.PublishTimeout)
		s.cancel()
		for _, nc := range nodes {
			_ = nc.ps.Close()
		}
		s.wg.Wait()
		release(waiters, ErrClosed)
	})
	return nil
}

func (s *Sharded) reportError(err error) {
	if s.opts.OnError != nil {
		s.opts.OnError(err)
		return
	}
	s.log.Debug("redis adapter error", "err", err)
}

// publish hands a message to the writer (SPUBLISH), unless
// Options.Publishing says no.
func (s *Sharded) publish(kind msgKind, channel string, payload []byte) (skipped bool, err error) {
	outboxed := kind == kindBroadcast && s.w.box != nil
	if s.opts.Publishing != nil && !outboxed && !s.opts.Publishing() {
		s.cnt.skipped.Add(1)
		return true, nil
	}
	if err := s.w.enqueue(outMsg{kind: kind, channel: channel, payload: payload, sharded: true}); err != nil {
		s.cnt.dropped.Add(1)
		err = fmt.Errorf("redis adapter: publish to %s: %w", channel, err)
		s.reportError(err)
		return false, err
	}
	return false, nil
}

// watchChannel is the namespace channel of the first namespace by name
// ("" without any), which every process subscribes: the outbox counts its
// subscribers to know when the other processes are back after an outage.
func (s *Sharded) watchChannel() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := firstByName(s.byName); a != nil {
		return a.nspCh
	}
	return ""
}

// publishing reports whether the other processes are reachable, as far as
// Options.Publishing knows.
func (s *Sharded) publishing() bool { return s.opts.Publishing == nil || s.opts.Publishing() }

// ----------------------------------------------------------- receivers ---

// receiveNode reads one node connection until it fails or Close.
func (s *Sharded) receiveNode(nc *nodeConn) {
	defer s.wg.Done()
	pinged := false
	for {
		var msg any
		var err error
		if pinged {
			// A deadline of the context's own makes go-redis treat the
			// silence as a dead connection.
			ctx, cancel := context.WithTimeout(s.ctx, s.opts.PingInterval)
			msg, err = nc.ps.Receive(ctx)
			cancel()
		} else {
			msg, err = nc.ps.ReceiveTimeout(s.ctx, s.opts.PingInterval)
		}
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if !pinged && errors.As(err, &ne) && ne.Timeout() {
				perr := nc.ps.Ping(s.ctx)
				if perr != nil {
					s.nodeLost(nc, perr)
					return
				}
				pinged = true
				continue
			}
			var rerr goredis.Error
			if errors.As(err, &rerr) {
				// An error reply (MOVED, CLUSTERDOWN...) to one of the
				// subscriber's commands: the connection is fine.
				s.replyError(nc, err)
				continue
			}
			s.nodeLost(nc, err)
			return
		}
		pinged = false
		switch m := msg.(type) {
		case *goredis.Message:
			s.dispatch(nc, m)
		case *goredis.Subscription:
			s.subscription(nc, m)
		}
	}
}

// dispatch routes one message: answers are handled here, the rest in
// order by the deliverer (a room's broadcast here too when nothing is
// queued ahead of it).
func (s *Sharded) dispatch(nc *nodeConn, m *goredis.Message) {
	s.mu.RLock()
	c := s.channels[m.Channel]
	ok := c != nil && c.node == nc
	var r shardRoute
	if ok {
		r = c.route
	}
	s.mu.RUnlock()
	if !ok {
		// Unsubscribed meanwhile, or read on a connection the channel
		// has left (only the channel's current node delivers, so that a
		// message is never handled twice).
		s.cnt.ignored.Add(1)
		return
	}
	d := shardDelivery{r: r, payload: m.Payload}
	if r.kind == chanResponse || r.kind == chanRoom && s.inbox.empty() {
		s.handle(d)
		return
	}
	s.inbox.put(d, s.stop)
}

func (s *Sharded) deliver() {
	defer s.wg.Done()
	s.inbox.run(s.stop, s.handle)
}

// handle runs one message; a panic is reported, not fatal.
func (s *Sharded) handle(d shardDelivery) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("redis adapter: panic while handling a message", "nsp", d.r.a.name,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			s.reportError(fmt.Errorf("redis adapter: panic while handling a message for %s: %v", d.r.a.name, p))
		}
	}()
	if d.r.kind == chanResponse {
		d.r.a.onResponse(d.payload)
		return
	}
	d.r.a.onMessage(d.r, d.payload)
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
