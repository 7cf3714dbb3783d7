package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Subscriber retries: the first at once, then doubling from
// subscribeBackoffMin to subscribeBackoffMax while rounds keep failing.
// While subscriptions wait for their confirmation the subscriber looks at
// them every confirmCheckInterval.
const (
	subscribeBackoffMin  = 100 * time.Millisecond
	subscribeBackoffMax  = 5 * time.Second
	confirmCheckInterval = 250 * time.Millisecond
)

// ErrNotConfirmed: Redis did not confirm a room's subscription within the
// time a caller of WhenSubscribed gave it (the subscriber keeps trying).
var ErrNotConfirmed = errors.New("redis adapter: subscription not confirmed yet")

// nodeConn is one subscription connection: to the one Redis, or to one
// master of a Redis Cluster. It is never redialled once it failed: a new
// one takes its place (go-redis would re-subscribe every channel in one
// SSUBSCRIBE, which a cluster refuses for channels of several slots).
type nodeConn struct {
	addr string // "" for the one Redis
	ps   *goredis.PubSub
	// Under Sharded.mu:
	dead   bool
	unsubs map[string]int // SUNSUBSCRIBE sent, its reply not read yet
}

// chanState is a channel this process wants; under Sharded.mu.
type chanState struct {
	route     shardRoute
	node      *nodeConn // where it is subscribed or being subscribed; nil: to route
	issued    time.Time // when SSUBSCRIBE was sent on node
	confirmed bool
	waiters   []*subWaiter
}

type subWaiter struct {
	fn    func(error)
	timer *time.Timer
	done  bool // under Sharded.mu
}

func (c *chanState) takeWaiters() []*subWaiter {
	ws := c.waiters
	c.waiters = nil
	for _, w := range ws {
		w.done = true
		if w.timer != nil {
			w.timer.Stop()
		}
	}
	return ws
}

func release(ws []*subWaiter, err error) {
	for _, w := range ws {
		w.fn(err)
	}
}

// unroute forgets where c is subscribed (a failure); the subscriber will
// route it again.
func (s *Sharded) unrouteLocked(ch string, c *chanState) {
	c.node, c.issued, c.confirmed = nil, time.Time{}, false
	delete(s.pending, ch)
	s.dirty[ch] = struct{}{}
}

// want records a channel as wanted (at once, so that WhenSubscribed sees
// it) and has the subscriber look at it.
func (s *Sharded) want(ch string, r shardRoute) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if c := s.channels[ch]; c == nil || c.route.a != r.a {
		s.channels[ch] = &chanState{route: r}
	}
	s.dirty[ch] = struct{}{}
	s.mu.Unlock()
	s.poke()
}

// recheck has the subscriber look at a channel again (a room lost its
// last local socket, a namespace closed): it unsubscribes what is no
// longer wanted.
func (s *Sharded) recheck(ch string) {
	s.mu.Lock()
	if s.channels[ch] != nil {
		s.dirty[ch] = struct{}{}
	}
	s.mu.Unlock()
	s.poke()
}

func (s *Sharded) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// whenSubscribed calls fn once ch is confirmed, at once if it is (or is
// not wanted), or with ErrNotConfirmed after timeout.
func (s *Sharded) whenSubscribed(ch string, timeout time.Duration, fn func(error)) {
	s.mu.Lock()
	c := s.channels[ch]
	if c == nil || c.confirmed || s.closed {
		s.mu.Unlock()
		fn(nil)
		return
	}
	w := &subWaiter{fn: fn}
	c.waiters = append(c.waiters, w)
	w.timer = time.AfterFunc(timeout, func() {
		s.mu.Lock()
		if w.done {
			s.mu.Unlock()
			return
		}
		w.done = true
		if c := s.channels[ch]; c != nil {
			for i, x := range c.waiters {
				if x == w {
					c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
					break
				}
			}
		}
		s.mu.Unlock()
		fn(fmt.Errorf("%w: %s after %s", ErrNotConfirmed, ch, timeout))
	})
	s.mu.Unlock()
}

// ---------------------------------------------------------- subscriber ---

func (s *Sharded) subscriptions() {
	defer s.wg.Done()
	backoff := subscribeBackoffMin
	var notBefore time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-timer.C:
		}
		if wait := time.Until(notBefore); wait > 0 {
			timer.Reset(wait)
			continue
		}
		failed, pending := s.round()
		if s.ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if failed {
			wait = backoff
			notBefore = time.Now().Add(backoff)
			backoff = min(2*backoff, subscribeBackoffMax)
		} else {
			backoff = subscribeBackoffMin
		}
		if pending && (wait == 0 || wait > confirmCheckInterval) {
			wait = confirmCheckInterval
		}
		if wait > 0 {
			timer.Reset(wait)
		}
	}
}

// round brings the subscriptions in line with what is wanted, once:
// it reports whether anything failed (the next round backs off) and
// whether confirmations are awaited.
func (s *Sharded) round() (failed, pending bool) {
	now := time.Now()
	s.mu.Lock()
	refresh := s.needRefresh
	failed = s.failedSince
	s.needRefresh, s.failedSince = false, false
	overdue := 0
	for ch := range s.pending {
		if c := s.channels[ch]; c != nil && now.Sub(c.issued) > s.opts.PublishTimeout {
			s.unrouteLocked(ch, c)
			overdue++
		}
	}
	dirty := s.dirty
	s.dirty = make(map[string]struct{})
	s.mu.Unlock()

	var errs []error
	if overdue > 0 {
		failed, refresh = true, true
		s.failures.Add(uint64(overdue))
		errs = append(errs, fmt.Errorf("%d not confirmed within %s", overdue, s.opts.PublishTimeout))
	}
	if refresh && s.cluster != nil {
		// Reload the slot map (synchronously: go-redis's own reload is
		// lazy) before routing the channels again; the publishing
		// client's too, so that it stops sending to a node that is gone
		// by the time the channels are subscribed again.
		clients := []*goredis.ClusterClient{s.cluster}
		if pc, ok := s.pub.(*goredis.ClusterClient); ok && pc != s.cluster {
			clients = append(clients, pc)
		}
		for _, cc := range clients {
			ctx, cancel := context.WithTimeout(s.ctx, s.opts.PublishTimeout)
			err := cc.ForEachMaster(ctx, func(context.Context, *goredis.Client) error { return nil })
			cancel()
			if err != nil && s.ctx.Err() == nil {
				failed = true
				errs = append(errs, fmt.Errorf("reload the cluster's slots: %w", err))
			}
		}
	}
	var down map[string]bool // nodes that failed in this round: not tried again in it
	skipped := 0
	for ch := range dirty {
		if s.ctx.Err() != nil {
			return failed, false
		}
		addr, err := s.reconcile(ch, down)
		switch {
		case errors.Is(err, errSkipped):
			skipped++
		case err != nil:
			failed = true
			s.failures.Add(1)
			errs = append(errs, err)
			if down == nil {
				down = make(map[string]bool)
			}
			down[addr] = true
		}
	}
	if skipped > 0 {
		failed = true
	}
	if len(errs) > 0 {
		err := fmt.Errorf("redis adapter: shard subscriptions (%d more waiting for the node): %w", skipped, errors.Join(errs...))
		s.reportError(err)
	}
	s.mu.RLock()
	pending = len(s.pending) > 0
	s.mu.RUnlock()
	return failed, pending
}

// errSkipped: a channel was not tried because its node already failed in
// this round; it is retried in the next.
var errSkipped = errors.New("skipped")

// routeDown is the key of down for a failure to route at all.
const routeDown = "\x00route"

// reconcile subscribes or unsubscribes one channel as wanted. It returns
// the node it tried and the error, if any (the channel is then marked for
// the next round).
func (s *Sharded) reconcile(ch string, down map[string]bool) (string, error) {
	s.mu.RLock()
	c := s.channels[ch]
	s.mu.RUnlock()
	if c == nil {
		return "", nil
	}
	wanted := c.route.a.wants(c.route)

	s.mu.Lock()
	if s.channels[ch] != c || s.closed {
		s.mu.Unlock()
		return "", nil
	}
	if !wanted {
		delete(s.channels, ch)
		delete(s.pending, ch)
		nc := c.node
		unsubscribe := nc != nil && !nc.dead
		if unsubscribe {
			nc.unsubs[ch]++
		}
		waiters := c.takeWaiters()
		s.notifyLocked()
		s.mu.Unlock()
		release(waiters, nil) // nothing left to wait for
		if unsubscribe {
			ctx, cancel := context.WithTimeout(s.ctx, s.opts.PublishTimeout)
			defer cancel()
			// A failure here is the connection's: its receiver sees it,
			// and a dropped connection holds no subscription. No answer
			// will come, so none is awaited (it would keep a later
			// SSUBSCRIBE of ch on nc from counting as confirmed).
			if err := nc.ps.SUnsubscribe(ctx, ch); err != nil {
				s.mu.Lock()
				if n := nc.unsubs[ch]; n > 1 {
					nc.unsubs[ch] = n - 1
				} else {
					delete(nc.unsubs, ch)
				}
				s.mu.Unlock()
			}
		}
		return "", nil
	}
	if c.node != nil && !c.node.dead {
		s.mu.Unlock()
		return "", nil // subscribed, or confirmation awaited
	}
	c.node = nil
	s.mu.Unlock()

	if down[routeDown] {
		s.recheck(ch)
		return "", errSkipped
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.PublishTimeout)
	defer cancel()
	addr, client, err := s.nodeFor(ctx, ch)
	if err != nil {
		s.recheck(ch)
		return routeDown, fmt.Errorf("route %s: %w", ch, err)
	}
	if down[addr] {
		s.recheck(ch)
		return addr, errSkipped
	}
	s.mu.Lock()
	if s.channels[ch] != c || c.node != nil || s.closed {
		s.mu.Unlock()
		return addr, nil
	}
	nc := s.connLocked(addr, client)
	c.node, c.issued, c.confirmed = nc, time.Now(), false
	s.pending[ch] = struct{}{}
	s.mu.Unlock()
	if err := nc.ps.SSubscribe(ctx, ch); err != nil {
		s.mu.Lock()
		if c.node == nc {
			s.unrouteLocked(ch, c)
		}
		s.mu.Unlock()
		return addr, fmt.Errorf("subscribe to %s on %s: %w", ch, nodeName(addr), err)
	}
	return addr, nil
}

func nodeName(addr string) string {
	if addr == "" {
		return "redis"
	}
	return addr
}

// nodeFor is the node that owns ch's slot, and its client.
func (s *Sharded) nodeFor(ctx context.Context, ch string) (string, *goredis.Client, error) {
	if s.cluster == nil {
		return "", s.single, nil
	}
	c, err := s.cluster.MasterForKey(ctx, ch)
	if err != nil {
		return "", nil, err
	}
	return c.Options().Addr, c, nil
}

// connLocked returns the live connection to addr, starting one (and its
// receiver) if there is none.
func (s *Sharded) connLocked(addr string, client *goredis.Client) *nodeConn {
	if nc := s.nodes[addr]; nc != nil && !nc.dead {
		return nc
	}
	// Without channels, go-redis connects on first use.
	nc := &nodeConn{addr: addr, ps: client.SSubscribe(s.ctx), unsubs: make(map[string]int)}
	s.nodes[addr] = nc
	s.wg.Add(1)
	go s.receiveNode(nc)
	return nc
}

// subscription takes Redis's confirmation of an SSUBSCRIBE, its answer to
// an SUNSUBSCRIBE, or an SUNSUBSCRIBE of its own: Redis unsubscribes the
// clients of a slot that leaves the node.
func (s *Sharded) subscription(nc *nodeConn, m *goredis.Subscription) {
	var waiters []*subWaiter
	moved := false
	s.mu.Lock()
	c := s.channels[m.Channel]
	switch m.Kind {
	case "ssubscribe":
		if c != nil && c.node == nc && nc.unsubs[m.Channel] == 0 && !c.confirmed {
			c.confirmed = true
			delete(s.pending, m.Channel)
			waiters = c.takeWaiters()
			s.notifyLocked()
		}
	case "sunsubscribe":
		if n := nc.unsubs[m.Channel]; n > 0 {
			if n == 1 {
				delete(nc.unsubs, m.Channel)
			} else {
				nc.unsubs[m.Channel] = n - 1
			}
		} else if c != nil && c.node == nc {
			s.unrouteLocked(m.Channel, c)
			s.needRefresh, s.failedSince = true, true
			s.notifyLocked()
			moved = true
		}
	}
	s.mu.Unlock()
	release(waiters, nil)
	if moved {
		s.failures.Add(1)
		s.log.Warn("redis adapter: Redis dropped a shard subscription (its slot moved); subscribing again", "channel", m.Channel, "redis_node", nodeName(nc.addr))
		s.reportError(fmt.Errorf("redis adapter: %s unsubscribed %s (slot moved)", nodeName(nc.addr), m.Channel))
		s.poke()
	}
}

// replyError takes an error reply on a subscription connection (MOVED
// when the slot map was stale, CLUSTERDOWN during a failover): the
// channels not confirmed on it are routed again, after a reload of the
// slot map.
func (s *Sharded) replyError(nc *nodeConn, err error) {
	s.mu.Lock()
	for ch := range s.pending {
		if c := s.channels[ch]; c != nil && c.node == nc {
			s.unrouteLocked(ch, c)
		}
	}
	s.needRefresh, s.failedSince = true, true
	s.mu.Unlock()
	s.failures.Add(1)
	s.reportError(fmt.Errorf("redis adapter: subscription on %s: %w", nodeName(nc.addr), err))
	s.poke()
}

// nodeLost retires a connection that failed: its channels are routed
// again (on a new connection, to whichever node owns them by then).
func (s *Sharded) nodeLost(nc *nodeConn, err error) {
	s.mu.Lock()
	if nc.dead {
		s.mu.Unlock()
		return
	}
	nc.dead = true
	if s.nodes[nc.addr] == nc {
		delete(s.nodes, nc.addr)
	}
	lost := 0
	for ch, c := range s.channels {
		if c.node == nc {
			if c.confirmed {
				lost++
			}
			s.unrouteLocked(ch, c)
		}
	}
	s.needRefresh, s.failedSince = true, true
	s.notifyLocked()
	s.mu.Unlock()
	_ = nc.ps.Close()
	s.failures.Add(1)
	if lost > 0 {
		s.cnt.subscriptionLost.Add(1)
		s.log.Warn("redis adapter: shard subscription connection lost; messages from other processes to its channels are missed until they are subscribed again",
			"redis_node", nodeName(nc.addr), "channels", lost, "err", err)
	}
	s.reportError(fmt.Errorf("%w: shard subscription connection to %s: %w", ErrSubscriptionLost, nodeName(nc.addr), err))
	s.poke()
}
