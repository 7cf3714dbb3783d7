package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The outbox: with Options.Outbox on, the writer keeps what it could not
// publish instead of failing it, and publishes it when Redis answers again,
// in the order it was queued, once.
//
// Bounds. It holds at most Outbox.MaxMessages messages (the queue's
// included), none older than Outbox.MaxAge: past either bound the oldest
// is dropped, counted (Stats.Outbox) and, once per outage, logged with the
// number dropped.
//
// Exactly once. Every message gets a number from a counter of this writer,
// and every pipeline is a MULTI/EXEC transaction that also SETs a marker
// key of this process ("{<pin>}#outbox#<uid>") to the number of its last
// message, the marker WATCHed first. A transaction runs whole or not at
// all; when its answer is lost (a connection cut, a frozen Redis past
// PublishTimeout) the next attempt reads the marker (on a fresh WATCH) and
// drops what it says ran. The WATCH closes the last gap: an attempt whose
// bytes still sit in a frozen Redis's socket runs, when Redis resumes,
// before the retry (which needs a new connection's round trips first) or
// is aborted by it (the retry's SET touches the key it WATCHed), never
// both. What is not covered: Redis losing its data (restarted without
// persistence) between running a transaction and answering it, a window
// of microseconds; and the sharded adapter on a Redis Cluster, whose
// SPUBLISHes go to many nodes and cannot share a transaction: there a
// batch whose answer was lost is sent again (at least once).
//
// Subscribers. Pub/sub keeps nothing for a subscriber that is not
// connected: what the outbox publishes before the other processes have
// subscribed again is lost to them. So while this process's own
// subscriptions are not confirmed, and after an outage, the writer first
// waits, for at most Outbox.ResumeWait, until its own are back and the
// classic adapter's request
// channel (the sharded adapter's namespace channel) has as many
// subscribers as it had before (PUBSUB NUMSUB or SHARDNUMSUB, counted once
// a second while all is well). The sharded adapter's room channels may
// come back a moment after its namespace channel: not waited for.

// OutboxOptions configure the outbox. Zero values are the documented
// defaults.
type OutboxOptions struct {
	// MaxMessages bounds the messages waiting to be published (the queue
	// included); the oldest is dropped past it. 0 turns the outbox off: a
	// publish that fails is lost (Stats.Dropped), as without it.
	MaxMessages int
	// MaxAge: a message waiting longer is dropped: 30 s.
	MaxAge time.Duration
	// ResumeWait bounds how long, once Redis answers after an outage, the
	// outbox waits for the other processes to subscribe again: 5 s.
	ResumeWait time.Duration
}

func (o *OutboxOptions) setDefaults() {
	if o.MaxMessages < 0 {
		o.MaxMessages = 0
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 30 * time.Second
	}
	if o.ResumeWait <= 0 {
		o.ResumeWait = 5 * time.Second
	}
}

// OutboxStats count what the outbox did.
type OutboxStats struct {
	// Waiting: messages queued and not published yet (a gauge).
	Waiting int64
	// Held: messages published that were waiting, or queued, while
	// publishing failed or waited for the subscribers to come back (kept
	// through an outage).
	Held uint64
	// DroppedCount, DroppedAge: messages dropped past MaxMessages, past
	// MaxAge.
	DroppedCount, DroppedAge uint64
	// Subscribers: the processes the outbox waits for after an outage
	// (see above); 0 until it has counted them.
	Subscribers int64
}

// Errors the outbox gives to a message's failed callback.
var (
	// ErrOutboxOverflow: dropped from the outbox (past its bound of count
	// or age) before any attempt to publish it could have reached Redis.
	ErrOutboxOverflow = errors.New("redis adapter: outbox overflow")
	// errOutboxMaybeSent: dropped after an attempt whose outcome is
	// unknown.
	errOutboxMaybeSent = errors.New("redis adapter: outbox overflow (may have been published)")
)

// Retry pacing of the outbox.
const (
	outboxRetryMin = 50 * time.Millisecond
	outboxRetryMax = time.Second
	subsCountEvery = time.Second
)

type outbox struct {
	opts        OutboxOptions
	markKey     string
	markTTL     time.Duration
	exact       bool          // transactions with a marker (see above)
	subsChannel func() string // nil or "": no wait after an outage
	subsShard   bool          // subsChannel is a shard channel (SHARDNUMSUB)
	subscribed  func() bool   // this process's own subscriptions are confirmed
	log         *slog.Logger

	msgs      []outMsg // oldest first
	next      uint64   // number of the next message
	uncertain bool     // an attempt's outcome is unknown: read the marker first

	down         bool          // the last attempt failed
	outageStart  time.Time     // first failure of the current outage
	recoveredAt  time.Time     // end of the last outage
	gating       bool          // holding until the subscribers are back
	resumeStart  time.Time     // since when (reset by every failure)
	dropped      [2]uint64     // this outage's drops: by count, by age
	lastSubs     *atomic.Int64 // counters.outboxSubs
	lastSubsTime time.Time
}

// pinTag is a hash tag that puts a key on the node of pinKey's slot.
func pinTag(pinKey string) string {
	if strings.HasPrefix(pinKey, "{") {
		if i := strings.IndexByte(pinKey, '}'); i > 1 {
			return pinKey[:i+1]
		}
	}
	return "{" + pinKey + "}"
}

// useOutbox turns the writer's outbox on (before run). uid names this
// process's marker.
func (w *writer) useOutbox(opts OutboxOptions, uid string, subscribed func() bool, subsChannel func() string, shard bool, log *slog.Logger) {
	if opts.MaxMessages <= 0 {
		return
	}
	_, cluster := w.client.(*goredis.ClusterClient)
	pin := w.pinKey
	if pin == "" {
		pin = "socket.io"
	}
	w.box = &outbox{
		opts:        opts,
		markKey:     pinTag(pin) + "#outbox#" + uid,
		markTTL:     opts.MaxAge + 10*time.Minute,
		exact:       !cluster || w.pinKey != "",
		subsChannel: subsChannel,
		subsShard:   shard,
		subscribed:  subscribed,
		lastSubs:    &w.cnt.outboxSubs,
		log:         log,
		next:        1,
	}
}

// runOutbox is run with the outbox on (the writer goroutine).
func (w *writer) runOutbox() {
	defer close(w.done)
	b := w.box
	queue := w.queue
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var retryAt time.Time
	backoff := outboxRetryMin
	for {
		if len(b.msgs) == 0 {
			if queue == nil {
				return
			}
			m, ok := <-queue
			if !ok {
				return
			}
			w.add(m)
		}
		queue = w.drain(queue)
		w.expire(time.Now())
		w.cnt.outboxWaiting.Store(int64(len(b.msgs)))
		if w.ctx.Err() != nil {
			w.failAll(ErrClosed)
			return
		}
		if len(b.msgs) == 0 {
			continue
		}
		if wait := time.Until(retryAt); wait > 0 {
			timer.Reset(wait)
			select {
			case m, ok := <-queue:
				if !ok {
					queue = nil
				} else {
					w.add(m)
				}
			case <-timer.C:
			case <-w.ctx.Done():
			}
			timer.Stop()
			continue
		}
		err := w.attempt()
		w.cnt.outboxWaiting.Store(int64(len(b.msgs)))
		switch {
		case err == nil:
			retryAt, backoff = time.Time{}, outboxRetryMin
		case errors.Is(err, errWaitSubscribers):
			retryAt = time.Now().Add(outboxRetryMin)
		default:
			retryAt = time.Now().Add(backoff)
			backoff = min(2*backoff, outboxRetryMax)
		}
	}
}

// add appends a message from the queue, dropping the oldest past the
// bound.
func (w *writer) add(m outMsg) {
	b := w.box
	m.id = b.next
	// Queued while the writer was busy failing counts as held too.
	m.held = b.down || b.gating || m.at.Before(b.recoveredAt)
	b.next++
	b.msgs = append(b.msgs, m)
	for len(b.msgs) > b.opts.MaxMessages {
		w.dropOldest(0)
	}
}

// drain takes whatever is queued without waiting; nil once the queue is
// closed.
func (w *writer) drain(queue chan outMsg) chan outMsg {
	for queue != nil {
		select {
		case m, ok := <-queue:
			if !ok {
				return nil
			}
			w.add(m)
		default:
			return queue
		}
	}
	return nil
}

// expire drops what waited past MaxAge.
func (w *writer) expire(now time.Time) {
	b := w.box
	for len(b.msgs) > 0 && now.Sub(b.msgs[0].at) > b.opts.MaxAge {
		w.dropOldest(1)
	}
}

// dropOldest drops the oldest message, past the count bound (reason 0) or
// the age bound (1).
func (w *writer) dropOldest(reason int) {
	b := w.box
	m := b.msgs[0]
	b.msgs[0] = outMsg{}
	b.msgs = b.msgs[1:]
	b.dropped[reason]++
	w.cnt.outboxDropped[reason].Add(1)
	w.cnt.dropped.Add(1)
	if m.failed != nil {
		if m.tried {
			m.failed(errOutboxMaybeSent)
		} else {
			m.failed(ErrOutboxOverflow)
		}
	}
	if !b.down {
		// Not in an outage (Redis slower than the traffic): say so now,
		// at most once per MaxAge.
		if time.Since(b.outageStart) > b.opts.MaxAge {
			b.outageStart = time.Now()
			w.report(fmt.Errorf("redis adapter: outbox full: dropping the oldest messages: %w", ErrOutboxOverflow))
		}
	}
}

// failAll fails what is left (Close gave up).
func (w *writer) failAll(err error) {
	b := w.box
	if len(b.msgs) == 0 {
		return
	}
	for _, m := range b.msgs {
		if m.failed != nil {
			m.failed(err)
		}
	}
	w.cnt.dropped.Add(uint64(len(b.msgs)))
	w.report(fmt.Errorf("redis adapter: %d messages left unpublished at close: %w", len(b.msgs), err))
	clear(b.msgs)
	b.msgs = nil
}

// errWaitSubscribers: Redis answers, the other processes have not
// subscribed again yet.
var errWaitSubscribers = errors.New("redis adapter: waiting for subscribers")

// attempt publishes the oldest batch.
func (w *writer) attempt() error {
	b := w.box
	ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
	defer cancel()
	if err := w.gate(ctx); err != nil {
		return w.failed(err)
	}
	var batch []outMsg
	var cmds []goredis.Cmder
	var err error
	if b.exact {
		sent := false
		err = w.client.Watch(ctx, func(tx *goredis.Tx) error {
			if b.uncertain {
				v, err := tx.Get(ctx, b.markKey).Uint64()
				if err != nil && !errors.Is(err, goredis.Nil) {
					return err
				}
				w.ran(v)
				b.uncertain = false
			}
			if !w.stillSubscribed() {
				return errWaitSubscribers
			}
			batch = w.batch()
			if len(batch) == 0 {
				return nil
			}
			sent = true
			var err error
			cmds, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
				for _, m := range batch {
					queueCmd(ctx, pipe, m)
				}
				pipe.Set(ctx, b.markKey, strconv.FormatUint(batch[len(batch)-1].id, 10), b.markTTL)
				return nil
			})
			return err
		}, b.markKey)
		if !sent {
			if err != nil {
				return w.failed(err)
			}
			return nil
		}
		if len(cmds) == len(batch)+1 && cmds[len(batch)].Err() == nil {
			err = nil // the transaction ran; a command's own error is its message's
		}
	} else {
		if !w.stillSubscribed() {
			return w.failed(errWaitSubscribers)
		}
		batch = w.batch()
		pipe := pipelineFor(ctx, w.client, w.pinKey)
		for _, m := range batch {
			queueCmd(ctx, pipe, m)
		}
		cmds, err = pipe.Exec(ctx)
		if err != nil && ranAll(cmds, len(batch)) {
			err = nil
		}
	}
	if err != nil {
		var rerr goredis.Error
		if errors.As(err, &rerr) && !errors.Is(err, goredis.TxFailedErr) && !transient(err) {
			// Redis refused the transaction itself (EXECABORT: a command
			// was rejected as queued): it did not run, and would not if
			// sent again.
			w.done1(batch, cmds, err)
			return nil
		}
		// A lost answer, or a stale attempt that ran meanwhile
		// (TxFailedErr): the marker tells, next time.
		b.uncertain = true
		return w.failed(err)
	}
	w.done1(batch, cmds, nil)
	if b.down {
		w.recovered()
	}
	w.countSubscribers(ctx)
	return nil
}

// ranAll reports whether every command of a plain pipeline has an answer
// of Redis's (maybe an error reply).
func ranAll(cmds []goredis.Cmder, n int) bool {
	if len(cmds) != n {
		return false
	}
	for _, c := range cmds {
		var rerr goredis.Error
		if err := c.Err(); err != nil && !errors.As(err, &rerr) {
			return false
		}
	}
	return true
}

// transient reports a Redis error reply that a later attempt may not get:
// the transaction did not run.
func transient(err error) bool {
	s := err.Error()
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM", "NOSCRIPT"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func queueCmd(ctx context.Context, pipe goredis.Pipeliner, m outMsg) {
	switch {
	case m.cmd != nil:
		m.cmd(ctx, pipe)
	case m.sharded:
		pipe.SPublish(ctx, m.channel, m.payload)
	default:
		pipe.Publish(ctx, m.channel, m.payload)
	}
}

// batch is the oldest messages, at most a pipeline's worth; they are
// marked as tried (an outcome may be unknown from now on).
func (w *writer) batch() []outMsg {
	b := w.box
	n, size := 0, 0
	for n < len(b.msgs) && n < maxBatchMessages && (n == 0 || size+len(b.msgs[n].payload) <= maxBatchBytes) {
		size += len(b.msgs[n].payload)
		b.msgs[n].tried = true
		n++
	}
	return b.msgs[:n:n]
}

// ran drops the messages the marker says ran (numbers up to last): an
// earlier attempt whose answer was lost.
func (w *writer) ran(last uint64) {
	b := w.box
	n := 0
	for n < len(b.msgs) && b.msgs[n].id <= last {
		w.cnt.published[b.msgs[n].kind].Add(1)
		if b.msgs[n].held {
			w.cnt.outboxHeld.Add(1)
		}
		n++
	}
	w.pop(n)
}

func (w *writer) pop(n int) {
	b := w.box
	clear(b.msgs[:n])
	b.msgs = b.msgs[n:]
	if len(b.msgs) == 0 {
		b.msgs = nil // let the array go
	}
}

// done1 ends a batch that Redis answered: published, or failed with its
// command's error (err: the whole batch's).
func (w *writer) done1(batch []outMsg, cmds []goredis.Cmder, err error) {
	failed := 0
	var first error
	for i, m := range batch {
		cerr := err
		if cerr == nil && i < len(cmds) {
			cerr = cmds[i].Err()
		}
		if cerr == nil {
			w.cnt.published[m.kind].Add(1)
			if m.held {
				w.cnt.outboxHeld.Add(1)
			}
			continue
		}
		failed++
		first = cmp(first, cerr)
		if m.failed != nil {
			m.failed(cerr)
		}
	}
	w.pop(len(batch))
	if failed > 0 {
		w.cnt.dropped.Add(uint64(failed))
		w.report(fmt.Errorf("redis adapter: publish %d of %d messages: %w", failed, len(batch), first))
	}
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// failed records a failed attempt: the first of an outage is reported and
// logged; the rest are not (the outbox's counters say what happens).
func (w *writer) failed(err error) error {
	b := w.box
	for i := range b.msgs {
		b.msgs[i].held = true
	}
	if errors.Is(err, errWaitSubscribers) {
		return err
	}
	b.resumeStart = time.Time{}
	if !b.down {
		b.down = true
		b.outageStart = time.Now()
		b.dropped = [2]uint64{}
		b.log.Warn("redis adapter: publishing failed; messages are kept in the outbox until Redis answers",
			"err", err.Error(), "waiting", len(b.msgs), "max_messages", b.opts.MaxMessages, "max_age", b.opts.MaxAge.String())
		w.report(fmt.Errorf("redis adapter: publish: %w", err))
	}
	return err
}

// recovered ends an outage: one line, with what was dropped.
func (w *writer) recovered() {
	b := w.box
	b.down = false
	b.recoveredAt = time.Now()
	attrs := []any{"outage", time.Since(b.outageStart).Round(time.Millisecond).String(), "waiting", len(b.msgs), "subscribers", b.lastSubs.Load()}
	if d := b.dropped[0] + b.dropped[1]; d > 0 {
		b.log.Warn("redis adapter: publishing again; the outbox overflowed during the outage",
			append(attrs, "dropped", d, "dropped_count", b.dropped[0], "dropped_age", b.dropped[1])...)
		w.report(fmt.Errorf("redis adapter: %d messages dropped during the outage: %w", d, ErrOutboxOverflow))
	} else {
		b.log.Info("redis adapter: publishing again; nothing was dropped", attrs...)
	}
	b.dropped = [2]uint64{}
}

// stillSubscribed checks this process's subscriptions again once Redis
// has answered (the WATCH): an attempt that began before an outage can
// reach a Redis restarted meanwhile, before anyone has subscribed again.
// False starts the wait of gate.
func (w *writer) stillSubscribed() bool {
	b := w.box
	if b.subscribed == nil || b.subscribed() {
		return true
	}
	b.gating = true
	return false
}

// gate is the wait after an outage (see above): nil when publishing may
// go on. It holds while this process's own subscriptions are not confirmed
// (they are lost with Redis, so the others' most likely are too, and an
// attempt may succeed before this writer ever saw one fail), and after an
// outage until the watched channel has its subscribers back; for at most
// ResumeWait since Redis last failed an attempt.
func (w *writer) gate(ctx context.Context) error {
	b := w.box
	own := b.subscribed == nil || b.subscribed()
	if own && !b.down && !b.gating {
		return nil
	}
	b.gating = true
	if b.resumeStart.IsZero() {
		b.resumeStart = time.Now()
	}
	if time.Since(b.resumeStart) < b.opts.ResumeWait {
		if !own {
			return errWaitSubscribers
		}
		ch := ""
		if b.subsChannel != nil {
			ch = b.subsChannel()
		}
		if want := b.lastSubs.Load(); ch != "" && want > 0 {
			n, err := countSubscribers(ctx, w.client, b.subsShard, ch)
			if err != nil {
				return err
			}
			if int64(n) < want {
				return errWaitSubscribers
			}
		}
	}
	b.gating, b.resumeStart = false, time.Time{}
	return nil
}

// countSubscribers remembers, at most once a second, how many subscribers
// the request channel has while all is well.
func (w *writer) countSubscribers(ctx context.Context) {
	b := w.box
	if b.subsChannel == nil || time.Since(b.lastSubsTime) < subsCountEvery {
		return
	}
	ch := b.subsChannel()
	if ch == "" {
		return
	}
	b.lastSubsTime = time.Now()
	if n, err := countSubscribers(ctx, w.client, b.subsShard, ch); err == nil {
		b.lastSubs.Store(int64(n))
	}
}
