package server

import (
	"context"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// maxPublishBatch bounds one pipeline: a few hundred deliveries of a few
// hundred bytes each is one write of well under a megabyte.
const maxPublishBatch = 256

// publishCloseGrace bounds how long close waits for the queue to be
// written before abandoning what is left (Redis gone as the process stops).
const publishCloseGrace = 2 * time.Second

// publishBatcher pipelines the adapter's PUBLISH commands.
//
// The adapter publishes every broadcast with a synchronous PUBLISH on the
// goroutine of the socket that sent the event, so each delivery cost that
// goroutine a Redis round trip (a pooled connection, a write and a read
// syscall, a park and a wake-up), and Redis one read per message. Node's
// adapter does not wait for the reply. As a go-redis hook on the publishing
// client, the batcher queues each PUBLISH and returns at once; one goroutine
// writes whatever has queued as a single pipeline, so under load many
// deliveries share one round trip, and the socket goes back to reading.
//
// Order is kept: one queue, one writer, and the pipeline preserves the order
// of its commands, so the emits of one socket reach Redis in the order they
// were made. A full queue blocks the publisher (backpressure), as a slow
// Redis did before. A failed pipeline is reported to onError, as the adapter
// reports a failed PUBLISH. Commands other than PUBLISH pass through.
type publishBatcher struct {
	client  *goredis.Client
	queue   chan goredis.Cmder
	onError func(error)

	mu     sync.RWMutex // closed, and sending on queue
	closed bool
	done   chan struct{}

	ctx   context.Context // ends when close gives up on the queue
	abort context.CancelFunc
}

var _ goredis.Hook = (*publishBatcher)(nil)

// newPublishBatcher starts the writer; client is the client the batcher is
// hooked into (its pipelines bypass the hook).
func newPublishBatcher(client *goredis.Client, onError func(error)) *publishBatcher {
	ctx, abort := context.WithCancel(context.Background())
	b := &publishBatcher{
		client:  client,
		queue:   make(chan goredis.Cmder, 4*maxPublishBatch),
		onError: onError,
		done:    make(chan struct{}),
		ctx:     ctx,
		abort:   abort,
	}
	go b.run()
	return b
}

func (b *publishBatcher) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (b *publishBatcher) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

func (b *publishBatcher) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if cmd.Name() != "publish" {
			return next(ctx, cmd)
		}
		b.mu.RLock()
		defer b.mu.RUnlock()
		if b.closed {
			return next(ctx, cmd)
		}
		// The caller owns cmd and may read it as soon as this returns; the
		// writer gets a command of its own with the same arguments.
		b.queue <- goredis.NewIntCmd(context.Background(), cmd.Args()...)
		return nil
	}
}

func (b *publishBatcher) run() {
	defer close(b.done)
	batch := make([]goredis.Cmder, 0, maxPublishBatch)
	for cmd := range b.queue {
		batch = append(batch[:0], cmd)
	fill:
		for len(batch) < maxPublishBatch {
			select {
			case c, ok := <-b.queue:
				if !ok {
					break fill
				}
				batch = append(batch, c)
			default:
				break fill
			}
		}
		b.flush(batch)
	}
}

func (b *publishBatcher) flush(batch []goredis.Cmder) {
	ctx, cancel := context.WithTimeout(b.ctx, redisOpTimeout)
	defer cancel()
	pipe := b.client.Pipeline()
	for _, cmd := range batch {
		_ = pipe.Process(ctx, cmd)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.onError(err)
	}
}

// close writes what is queued, waiting at most publishCloseGrace and no
// longer than ctx, and stops the writer; later publishes go straight to the
// client. It is idempotent.
func (b *publishBatcher) close(ctx context.Context) {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	t := time.NewTimer(publishCloseGrace)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
	case <-ctx.Done():
	}
	b.abort() // what is left fails at once and is reported
	<-b.done
}
