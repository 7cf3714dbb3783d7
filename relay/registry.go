package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// KeyPrefix starts the Redis key of each process's registration:
// switchboard:node:<tag> → host:port (shared with the Node peer).
const KeyPrefix = "switchboard:node:"

const (
	// registrationTTL is the expiry of a registration; a process that
	// dies without removing its own is forgotten after it.
	registrationTTL = 15 * time.Second
	// refreshInterval renews the registration well within its expiry.
	refreshInterval = 5 * time.Second
	// knownFor and unknownFor are how long a lookup's answer is reused:
	// a registered address, and the absence of one (a tag that names no
	// process, or an owner that did not answer).
	knownFor   = 5 * time.Second
	unknownFor = time.Second
	// cacheMax bounds the cache: session ids are the client's to send,
	// and made-up tags must not grow it without end.
	cacheMax = 1024
	// redisTimeout bounds each registry command.
	redisTimeout = time.Second
)

// registry is this process's registration and the cache of the others'.
type registry struct {
	kv     goredis.Cmdable
	tag    string
	addr   string // set by Start, before run
	logger *slog.Logger

	mu    sync.Mutex
	cache map[string]*lookup

	failing bool // the last registration failed; only run touches it
}

// lookup is one Redis lookup of a tag, shared by every request that needs
// it while it runs. target and at are written before ready is closed and
// read after.
type lookup struct {
	ready  chan struct{}
	target string // "" unknown
	at     time.Time
}

func newRegistry(kv goredis.Cmdable, tag string, logger *slog.Logger) *registry {
	return &registry{kv: kv, tag: tag, logger: logger, cache: make(map[string]*lookup)}
}

func nodeKey(tag string) string { return KeyPrefix + tag }

// run registers this process every refreshInterval until stop is closed.
func (g *registry) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		g.register()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (g *registry) register() {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	err := g.kv.Set(ctx, nodeKey(g.tag), g.addr, registrationTTL).Err()
	// Log the transitions only, not every refresh.
	switch {
	case err != nil && !g.failing:
		g.logger.Warn("relay: registration failed: other processes answer this process's sessions \"Session ID unknown\" until it succeeds",
			"tag", g.tag, "err", err.Error())
	case err == nil && g.failing:
		g.logger.Info("relay: registered again", "tag", g.tag)
	}
	g.failing = err != nil
}

// deregister removes this process's registration.
func (g *registry) deregister(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	if err := g.kv.Del(ctx, nodeKey(g.tag)).Err(); err != nil {
		return fmt.Errorf("relay: deregister: %w", err)
	}
	return nil
}

// lookup returns the address registered for tag, or "" when there is none.
// A failed Redis command keeps the last address known (Redis down is no
// reason to lose sessions whose owner still answers).
func (g *registry) lookup(tag string) string {
	now := time.Now()
	g.mu.Lock()
	prev := g.cache[tag]
	if prev != nil {
		select {
		case <-prev.ready:
			if now.Sub(prev.at) < freshness(prev.target) {
				g.mu.Unlock()
				return prev.target
			}
		default:
			g.mu.Unlock()
			<-prev.ready // bounded by redisTimeout
			return prev.target
		}
	}
	if prev == nil && len(g.cache) >= cacheMax {
		g.evictLocked(now)
	}
	l := &lookup{ready: make(chan struct{})}
	if prev != nil {
		l.target = prev.target
	}
	g.cache[tag] = l
	g.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	addr, err := g.kv.Get(ctx, nodeKey(tag)).Result()
	cancel()
	switch {
	case errors.Is(err, goredis.Nil):
		l.target = ""
	case err != nil:
		g.logger.Debug("relay: lookup failed", "tag", tag, "err", err.Error())
	case CheckAdvertise(addr) != nil:
		l.target = ""
	default:
		l.target = addr
	}
	l.at = time.Now()
	close(l.ready)
	return l.target
}

func freshness(target string) time.Duration {
	if target == "" {
		return unknownFor
	}
	return knownFor
}

// evictLocked makes room in a full cache: stale answers go first, and if
// that is not enough, every finished lookup.
func (g *registry) evictLocked(now time.Time) {
	finished := func(l *lookup) bool {
		select {
		case <-l.ready:
			return true
		default:
			return false
		}
	}
	for tag, l := range g.cache {
		if finished(l) && now.Sub(l.at) >= freshness(l.target) {
			delete(g.cache, tag)
		}
	}
	if len(g.cache) < cacheMax {
		return
	}
	for tag, l := range g.cache {
		if finished(l) {
			delete(g.cache, tag)
		}
	}
}

// markUnreachable records that target, found for tag, did not answer: the
// tag is unknown for unknownFor, then looked up again.
func (g *registry) markUnreachable(tag, target string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.cache[tag]
	if l == nil {
		return
	}
	select {
	case <-l.ready:
	default:
		return // a new lookup is under way
	}
	if l.target != target {
		return
	}
	dead := &lookup{ready: make(chan struct{}), at: time.Now()}
	close(dead.ready)
	g.cache[tag] = dead
}
