package server

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Publishes made through the batcher from many goroutines all reach Redis,
// each goroutine's in the order it made them, including those still queued
// when the batcher closes; after close, publishing goes straight through.
func TestPublishBatcherKeepsOrderAndFlushesOnClose(t *testing.T) {
	redis := startRedis(t)
	opt, err := goredis.ParseURL(redis.url())
	if err != nil {
		t.Fatal(err)
	}
	pub := goredis.NewClient(opt)
	sub := goredis.NewClient(opt)
	t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
	var errMu sync.Mutex
	var errs []error
	b := newPublishBatcher(pub, func(err error) { errMu.Lock(); errs = append(errs, err); errMu.Unlock() })
	pub.AddHook(b)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ps := sub.PSubscribe(ctx, "batch#*")
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	const publishers, each = 8, 5000
	var wg sync.WaitGroup
	for w := range publishers {
		wg.Go(func() {
			for i := range each {
				// The hook answers at once; a non-nil error here would mean a
				// PUBLISH went around the queue and failed.
				if err := pub.Publish(ctx, "batch#"+strconv.Itoa(w)+"#", strconv.Itoa(w)+":"+strconv.Itoa(i)).Err(); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.close(ctx) // what is still queued is written before close returns
	if err := pub.Publish(ctx, "batch#after#", "after:0").Err(); err != nil {
		t.Fatalf("publish after close: %v", err)
	}
	b.close(ctx) // idempotent

	next := make([]int, publishers)
	for got := 0; got < publishers*each; got++ {
		msg := receive(ctx, t, ps)
		w, i := parsePair(t, msg.Payload)
		if w < 0 || w >= publishers || i != next[w] {
			t.Fatalf("message %q out of order or unknown: publisher %d expected %d next", msg.Payload, w, next[w])
		}
		next[w]++
	}
	if msg := receive(ctx, t, ps); msg.Payload != "after:0" {
		t.Fatalf("after close: got %q", msg.Payload)
	}
	errMu.Lock()
	defer errMu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("batcher reported errors: %v", errors.Join(errs...))
	}
}

// A pipeline that fails (Redis gone) is reported, and the batcher keeps
// serving the queue instead of blocking publishers.
func TestPublishBatcherReportsFailedPipeline(t *testing.T) {
	redis := startRedis(t)
	opt, err := goredis.ParseURL(redis.url())
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries = -1
	opt.DialTimeout = 200 * time.Millisecond
	pub := goredis.NewClient(opt)
	t.Cleanup(func() { _ = pub.Close() })
	reported := make(chan error, 1000)
	b := newPublishBatcher(pub, func(err error) { reported <- err })
	pub.AddHook(b)
	t.Cleanup(func() { b.close(context.Background()) })

	redis.kill()
	ctx := context.Background()
	for i := range 2 * cap(b.queue) { // more than the queue holds: must not block for good
		_ = pub.Publish(ctx, "gone#", strconv.Itoa(i)).Err()
	}
	select {
	case err := <-reported:
		if err == nil {
			t.Fatal("reported a nil error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no failure reported for publishes to a dead Redis")
	}
}

func receive(ctx context.Context, t *testing.T, ps *goredis.PubSub) *goredis.Message {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := ps.ReceiveMessage(rctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return msg
}

func parsePair(t *testing.T, s string) (int, int) {
	t.Helper()
	a, b, ok := strings.Cut(s, ":")
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("malformed payload %q", s)
	}
	return x, y
}

// Closing while Redis accepts connections but never answers: close gives up
// on what is left after its grace period instead of waiting out every
// batch's timeout, and reports the abandoned publishes.
func TestPublishBatcherCloseGivesUpOnASilentRedis(t *testing.T) {
	b, reported := silentBatcher(t)
	closeWithin(t, b, context.Background())
	if !slices.ContainsFunc(reported(), func(err error) bool { return errors.Is(err, context.Canceled) }) {
		t.Fatalf("no publish reported as abandoned at close; errors: %v", reported())
	}
}

// Shutdown's own deadline bounds close too: with the caller's context
// already ended, close abandons the queue at once, so even the batch in
// flight fails as abandoned rather than by its own timeout.
func TestPublishBatcherCloseRespectsTheCallersContext(t *testing.T) {
	b, reported := silentBatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	closeWithin(t, b, ctx)
	errs := reported()
	if len(errs) == 0 || !errors.Is(errs[0], context.Canceled) {
		t.Fatalf("the first failure should be the abandonment, got %v", errs)
	}
}

// silentBatcher is a batcher over a "Redis" that accepts connections and
// never answers, with a full queue of publishes; reported returns what it
// reported so far.
func silentBatcher(t *testing.T) (b *publishBatcher, reported func() []error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var heldMu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c) // read nothing, answer nothing
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})

	pub := goredis.NewClient(&goredis.Options{Addr: ln.Addr().String(), Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = pub.Close() })
	var errMu sync.Mutex
	var errs []error
	b = newPublishBatcher(pub, func(err error) { errMu.Lock(); errs = append(errs, err); errMu.Unlock() })
	pub.AddHook(b)
	// Each batch waits redisOpTimeout for its reply: a full queue is four
	// batches, twice the grace period.
	for i := range cap(b.queue) {
		_ = pub.Publish(context.Background(), "silent#", strconv.Itoa(i)).Err()
	}
	return b, func() []error {
		errMu.Lock()
		defer errMu.Unlock()
		return slices.Clone(errs)
	}
}

func closeWithin(t *testing.T, b *publishBatcher, ctx context.Context) {
	t.Helper()
	closed := make(chan struct{})
	go func() { b.close(ctx); close(closed) }()
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("close never returned")
	}
}
