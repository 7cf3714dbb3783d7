package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Bounds of one pipeline: a few hundred messages, about a megabyte (a
// single larger message still goes alone).
const (
	maxBatchMessages = 256
	maxBatchBytes    = 1 << 20
)

type outMsg struct {
	kind    msgKind
	channel string
	payload []byte
	sharded bool // SPUBLISH (the sharded adapter) instead of PUBLISH
	// cmd, when set, queues the message's one command in place of a
	// PUBLISH: recovery's stored broadcasts and session writes
	// (recovery.go).
	cmd func(ctx context.Context, pipe goredis.Pipeliner)
	// failed, when set, is told why the message could not be written
	// (on the writer's goroutine).
	failed func(error)

	// With the outbox on (outbox.go): when it was queued, its number,
	// and whether an attempt to publish it was made.
	at    time.Time
	id    uint64
	tried bool
	held  bool // queued during an outage (OutboxStats.Held)
}

// writer publishes the adapter's messages from one goroutine.
//
// A PUBLISH made on the goroutine that emits costs it a Redis round trip
// (take a connection, write, wait for the reply); Node's adapter does not
// wait for the reply either. The writer takes messages from a bounded
// queue and writes whatever has queued as one pipeline, so under load many
// messages share a round trip and the emitting goroutine never waits.
//
// Order is kept: one queue, one writer, and a pipeline keeps the order of
// its commands, so the messages of one process reach Redis (and every
// subscriber) in the order they were queued: a join before the broadcast
// that follows it.
//
// A full queue (Redis slower than the traffic, or down) drops the new
// message: enqueue fails with ErrQueueFull and the caller reports it. A
// failed pipeline (Redis down, PublishTimeout passed) loses its messages,
// reported once per pipeline. While Redis is down each pipeline fails as
// fast as the client's dial does, so the queue drains into errors rather
// than holding stale broadcasts for later: whether to publish at all during
// an outage is Options.Publishing's call.
//
// The client's retries apply to pipelines: a pipeline whose reply was lost
// after Redis ran it may be sent again (the server configures one retry).
//
// With Options.Outbox on, run is runOutbox instead (outbox.go): a failed
// pipeline is kept and sent again, once, when Redis answers, and the queue
// is bounded by the outbox's count and age rather than by QueueSize alone.
type writer struct {
	client  goredis.UniversalClient
	pinKey  string // see pipelineFor; "" for sharded publishes
	timeout time.Duration
	cnt     *counters
	report  func(error)
	queue   chan outMsg

	mu     sync.RWMutex // closed, and sending on queue
	closed bool

	box *outbox // nil: off (see useOutbox)

	ctx   context.Context // ends when close gives up on the queue
	abort context.CancelFunc
	done  chan struct{} // closed when run returns
}

func newWriter(client goredis.UniversalClient, opts Options, cnt *counters, report func(error)) *writer {
	ctx, abort := context.WithCancel(context.Background())
	return &writer{
		client:  client,
		timeout: opts.PublishTimeout,
		cnt:     cnt,
		report:  report,
		queue:   make(chan outMsg, opts.QueueSize),
		ctx:     ctx,
		abort:   abort,
		done:    make(chan struct{}),
	}
}

// enqueue queues m without waiting.
func (w *writer) enqueue(m outMsg) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	if w.box != nil {
		m.at = time.Now()
	}
	select {
	case w.queue <- m:
		return nil
	default:
		return ErrQueueFull
	}
}

// run writes until the queue is closed and empty (the writer goroutine).
func (w *writer) run() {
	if w.box != nil {
		w.runOutbox()
		return
	}
	defer close(w.done)
	batch := make([]outMsg, 0, maxBatchMessages)
	for m := range w.queue {
		batch = append(batch[:0], m)
		size := len(m.payload)
	fill:
		for len(batch) < maxBatchMessages && size < maxBatchBytes {
			select {
			case m, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, m)
				size += len(m.payload)
			default:
				break fill
			}
		}
		w.flush(batch)
		clear(batch) // let the payloads go
	}
}

func (w *writer) flush(batch []outMsg) {
	ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
	defer cancel()
	pipe := pipelineFor(ctx, w.client, w.pinKey)
	for _, m := range batch {
		queueCmd(ctx, pipe, m)
	}
	cmds, err := pipe.Exec(ctx)
	failed := 0
	for i, m := range batch {
		if i < len(cmds) && cmds[i].Err() == nil {
			w.cnt.published[m.kind].Add(1)
			continue
		}
		failed++
		if m.failed != nil {
			cerr := err
			if i < len(cmds) && cmds[i].Err() != nil {
				cerr = cmds[i].Err()
			}
			m.failed(cerr)
		}
	}
	if failed > 0 {
		w.cnt.dropped.Add(uint64(failed))
		w.report(fmt.Errorf("redis adapter: publish %d of %d messages: %w", failed, len(batch), err))
	}
}

// close stops taking messages and lets the writer write what is queued
// for at most grace; what is left then fails at once (and is reported).
// It returns when the writer goroutine has.
func (w *writer) close(grace time.Duration) {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		w.abort()
		<-w.done
	}
	w.abort()
}
