package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/switchboard-rt/switchboard/socketio"
	redisadapter "github.com/switchboard-rt/switchboard/socketio/redis"
)

// Redis timeouts: short, so that an outage degrades deliveries to this
// process instead of stalling event handlers.
const (
	redisOpTimeout     = time.Second
	redisProbeInterval = time.Second
	redisBackoffMax    = 2 * time.Second
	errorLogInterval   = 5 * time.Second
)

// redisLink owns the Redis clients behind the Socket.IO adapter and knows
// whether Redis answers.
type redisLink struct {
	pub, sub goredis.UniversalClient // *goredis.Client, or *goredis.ClusterClient with REDIS_CLUSTER=1
	adapter  redisAdapter
	ctx      context.Context
	dialer   *backoffDialer
	cancel   context.CancelFunc
	logger   *slog.Logger
	onError  func()
	outbox   bool // OUTBOX_MAX_MESSAGES > 0

	up      atomic.Bool // the last probe succeeded (readiness)
	down    atomic.Bool // the last probe failed (deliveries stay local)
	lastErr atomic.Pointer[string]
	probed  atomic.Bool
	wasUp   bool // only the probe goroutine touches it

	logMu      sync.Mutex
	lastLogged time.Time
	suppressed int

	started   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}
}

// redisAdapter is what the server needs of the Redis adapters
// (redisadapter.Classic and redisadapter.Sharded).
type redisAdapter interface {
	Factory() socketio.AdapterFactory
	Subscribed() bool
	Stats() redisadapter.Stats
	Close() error
}

var (
	_ redisAdapter = (*redisadapter.Classic)(nil)
	_ redisAdapter = (*redisadapter.Sharded)(nil)
)

func newRedisLink(cfg *Config, logger *slog.Logger, onError func()) (*redisLink, error) {
	opt, err := goredis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opt.DialTimeout = redisOpTimeout
	opt.ReadTimeout = redisOpTimeout
	opt.WriteTimeout = redisOpTimeout
	opt.PoolTimeout = redisOpTimeout
	opt.MaxRetries = 1

	subOpt := subscriberOptions(opt)
	// The adapter's receive loops retry at once on every error; while Redis
	// is down each retry dials. Backing off in the dialer keeps an outage
	// from spinning a core and flooding the log.
	dialer := &backoffDialer{max: redisBackoffMax, d: net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: subscriberKeepAliveIdle, Interval: subscriberKeepAliveInterval, Count: subscriberKeepAliveCount,
	}}}
	subOpt.Dialer = dialer.DialContext

	ctx, cancel := context.WithCancel(context.Background())
	l := &redisLink{
		cancel:  cancel,
		logger:  logger,
		onError: onError,
		dialer:  dialer,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		outbox:  cfg.OutboxMaxMessages > 0,
	}
	if cfg.RedisCluster {
		l.pub = goredis.NewClusterClient(clusterOptions(opt))
		l.sub = goredis.NewClusterClient(clusterOptions(&subOpt))
	} else {
		l.pub = goredis.NewClient(opt)
		l.sub = goredis.NewClient(&subOpt)
	}
	l.ctx = ctx
	aopts := redisadapter.Options{
		// While the probe says Redis is down, requests to the other
		// processes are not made (and, with the outbox off, deliveries
		// stay on this process) instead of waiting on a publish that
		// cannot succeed.
		Publishing: l.publishing,
		OnError:    l.adapterError,
		Logger:     logger,
		// While Redis is away, broadcasts wait in the outbox (bounded)
		// and are published, in order and once, when it answers again.
		Outbox: redisadapter.OutboxOptions{MaxMessages: cfg.OutboxMaxMessages, MaxAge: cfg.OutboxMaxAge},
	}
	if cfg.RedisAdapter == AdapterSharded {
		sharded, err := redisadapter.NewSharded(l.pub, l.sub, aopts)
		if err != nil {
			cancel()
			return nil, errors.Join(err, l.pub.Close(), l.sub.Close())
		}
		l.adapter = sharded
	} else {
		// Connection state recovery is the classic adapter's (Config
		// refuses it with the sharded one).
		aopts.Recovery = redisadapter.RecoveryOptions{Window: cfg.RecoveryWindow, MaxPackets: cfg.RecoveryMaxPackets}
		l.adapter = redisadapter.NewClassic(l.pub, l.sub, aopts)
	}
	l.setDown("not probed yet")
	return l, nil
}

// clusterOptions are the options of a Redis Cluster client whose nodes'
// clients are configured as opt (REDIS_URL names the seed node: the
// client discovers the rest, follows MOVED and reloads the slot map after
// a failover).
func clusterOptions(opt *goredis.Options) *goredis.ClusterOptions {
	return &goredis.ClusterOptions{
		Addrs:        []string{opt.Addr},
		Username:     opt.Username,
		Password:     opt.Password,
		TLSConfig:    opt.TLSConfig,
		Dialer:       opt.Dialer,
		Protocol:     opt.Protocol,
		DialTimeout:  opt.DialTimeout,
		ReadTimeout:  opt.ReadTimeout,
		WriteTimeout: opt.WriteTimeout,
		PoolTimeout:  opt.PoolTimeout,
		MaxRetries:   opt.MaxRetries,
	}
}

// TCP keepalive of the subscriber's connections: the kernel gives up on one
// whose peer stopped answering (a partition, a host gone without a reset)
// after about 11 s instead of Go's default 2.5 minutes. The adapter also
// pings a silent subscription (socketio/redis Options.PingInterval); the
// keepalive covers the connection while a ping waits for its answer.
const (
	subscriberKeepAliveIdle     = 5 * time.Second
	subscriberKeepAliveInterval = 2 * time.Second
	subscriberKeepAliveCount    = 3
)

// subscriberOptions are the options of the client behind the adapter's
// subscriptions. It speaks RESP2: go-redis v9.18 on RESP3 silently lost
// about 5 in 40,000 pub/sub messages under load (a push frame cut inside its
// name was consumed as an unknown notification, redis/go-redis#3839; fixed
// in the v9.23.0 required here). RESP2 has no push frames at all, so the
// subscriber does not depend on that fix. TestSubscriberReceivesEveryMessage
// guards the property.
func subscriberOptions(opt *goredis.Options) goredis.Options {
	sub := *opt
	sub.Protocol = 2
	return sub
}

// publishing reports whether deliveries should be published to the other
// processes: yes unless the last probe failed. Before the first probe the
// answer is yes (readiness still waits for a successful probe).
func (l *redisLink) publishing() bool { return !l.down.Load() }

// remote reports whether deliveries go to the adapter for the other
// processes: always with the outbox on (it keeps them through an outage),
// else while publishing.
func (l *redisLink) remote() bool { return l.outbox || l.publishing() }

// builder is the Socket.IO adapter constructor over this link.
func (l *redisLink) builder() socketio.AdapterFactory { return l.adapter.Factory() }

// run probes Redis until close; it is what flips readiness and the
// delivery mode (published or local only).
func (l *redisLink) run() {
	defer close(l.done)
	t := time.NewTicker(redisProbeInterval)
	defer t.Stop()
	for {
		l.probe()
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

func (l *redisLink) probe() {
	ctx, cancel := context.WithTimeout(l.ctx, redisOpTimeout)
	defer cancel()
	err := ping(ctx, l.pub)
	if err != nil {
		l.setDown(err.Error())
		l.down.Store(true)
	} else {
		l.up.Store(true)
		l.down.Store(false)
	}
	// Log transitions only (and the first verdict), not every probe.
	if was := l.probed.Swap(true); was && l.wasUp == (err == nil) {
		return
	}
	l.wasUp = err == nil
	switch {
	case err != nil && l.outbox:
		l.logger.Warn("redis unreachable: deliveries to other processes wait in the outbox until it answers", "err", err)
	case err != nil:
		l.logger.Warn("redis unreachable: deliveries stay on this process until it answers", "err", err)
	default:
		l.logger.Info("redis connected")
	}
}

// ping asks Redis for a sign of life. A cluster answers while any of its
// masters does: a failover (or a node down) leaves the other slots
// working, and deliveries through them should go on.
func ping(ctx context.Context, c goredis.UniversalClient) error {
	cc, ok := c.(*goredis.ClusterClient)
	if !ok {
		return c.Ping(ctx).Err()
	}
	var answered atomic.Int64
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		err := node.Ping(ctx).Err()
		if err == nil {
			answered.Add(1)
		}
		return err
	})
	if answered.Load() > 0 {
		return nil
	}
	if err == nil {
		err = errors.New("the cluster has no master")
	}
	return err
}

func (l *redisLink) setDown(reason string) {
	l.up.Store(false)
	l.lastErr.Store(&reason)
}

// ready returns nil when Redis answers and every subscription is in place,
// else the reason.
func (l *redisLink) ready() error {
	if !l.up.Load() {
		return errors.New("redis: " + *l.lastErr.Load())
	}
	if !l.adapter.Subscribed() {
		return errors.New("redis: subscriptions not confirmed")
	}
	return nil
}

// adapterError counts every adapter error and logs at most one line per
// errorLogInterval, with the count of those not logged.
func (l *redisLink) adapterError(err error) {
	l.onError()
	if errors.Is(err, redisadapter.ErrSubscriptionLost) {
		return // the adapter logs each loss once, and its restoration
	}
	l.logMu.Lock()
	now := time.Now()
	if now.Sub(l.lastLogged) < errorLogInterval {
		l.suppressed++
		l.logMu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.lastLogged, l.suppressed = now, 0
	l.logMu.Unlock()
	l.logger.Warn("redis adapter error", "err", err.Error(), "suppressed", suppressed)
}

func (l *redisLink) start() {
	l.started.Store(true)
	l.dialer.armed.Store(true)
	go l.run()
}

// close stops the probe and the adapter (which writes the publishes still
// queued, for at most its PublishTimeout or until ctx ends) and closes both
// clients. It is idempotent.
func (l *redisLink) close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		close(l.stop)
		if l.started.Load() {
			<-l.done
		}
		closed := make(chan error, 1)
		go func() { closed <- l.adapter.Close() }()
		var adapterErr error
		select {
		case adapterErr = <-closed:
		case <-ctx.Done():
			adapterErr = fmt.Errorf("redis adapter close: %w", ctx.Err())
		}
		l.cancel()
		l.closeErr = errors.Join(adapterErr, l.pub.Close(), l.sub.Close())
	})
	return l.closeErr
}

// backoffDialer spaces out dials that come in quick succession, doubling
// the wait up to max, so that a caller redialling in a loop does so at a
// bounded rate. The adapter's receive loops redial at once on any error:
// when Redis refuses connections, and equally when it accepts them and then
// fails every one (protected mode, a wrong password, maxclients), which a
// dialer that only backed off failed dials let spin at about 180 dials a
// second. A dial after a quiet spell (a connection that lived) is
// immediate. It is armed when the server opens: while the adapters are
// built (and subscribe) nothing must delay the start.
type backoffDialer struct {
	d     net.Dialer
	max   time.Duration
	armed atomic.Bool
	now   func() time.Time                     // nil: time.Now
	sleep func(context.Context, time.Duration) // nil: a timer, cut short by ctx

	mu     sync.Mutex
	last   time.Time // the previous dial
	streak int       // dials in quick succession before this one
}

func (b *backoffDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if wait := b.next(); wait > 0 {
		b.wait(ctx, wait)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return b.d.DialContext(ctx, network, addr)
}

// next records a dial and returns how long it waits first: nothing after a
// quiet spell of twice max, else 50 ms doubled per dial in the streak.
func (b *backoffDialer) next() time.Duration {
	now := time.Now
	if b.now != nil {
		now = b.now
	}
	t := now()
	b.mu.Lock()
	defer b.mu.Unlock()
	quick := !b.last.IsZero() && t.Sub(b.last) < 2*b.max
	b.last = t
	if !b.armed.Load() || !quick {
		b.streak = 0
		return 0
	}
	wait := min(b.max, 50*time.Millisecond<<min(b.streak, 8))
	b.streak++
	b.last = t.Add(wait) // the dial happens after the wait
	return wait
}

func (b *backoffDialer) wait(ctx context.Context, d time.Duration) {
	if b.sleep != nil {
		b.sleep(ctx, d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
