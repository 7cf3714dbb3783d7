package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The subscriber must receive every message of a burst: under go-redis
// v9.18's default RESP3 a few buffered pub/sub messages were silently lost
// (seen as missing cross-process deliveries under load).
func TestSubscriberReceivesEveryMessage(t *testing.T) {
	redis := startRedis(t)
	opt, err := goredis.ParseURL(redis.url())
	if err != nil {
		t.Fatal(err)
	}
	subOpt := subscriberOptions(opt)
	sub := goredis.NewClient(&subOpt)
	pub := goredis.NewClient(opt)
	t.Cleanup(func() { _ = sub.Close(); _ = pub.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ps := sub.PSubscribe(ctx, "burst#*")
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}

	const n = 60000
	done := make(chan error, 1)
	go func() {
		// Several publishers at once, as handler goroutines publish.
		errs := make(chan error, 8)
		for w := range 8 {
			go func() {
				for i := w; i < n; i += 8 {
					// Payloads of delivery size and varying length, so that
					// frames straddle the reader's buffer boundaries.
					payload := strconv.Itoa(i) + ":" + strings.Repeat("x", 200+i%400)
					if err := pub.Publish(ctx, "burst#"+strconv.Itoa(i%50)+"#", payload).Err(); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()

	seen := make([]bool, n)
	for got := 0; got < n; {
		// Like the adapter, read with ReceiveMessage in a loop; the bound
		// turns a lost message into a failure instead of a hang.
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := ps.ReceiveMessage(rctx)
		rcancel()
		if err != nil {
			missing := 0
			for _, s := range seen {
				if !s {
					missing++
				}
			}
			t.Fatalf("received %d of %d messages, %d missing: %v", got, n, missing, err)
		}
		head, _, _ := strings.Cut(msg.Payload, ":")
		i, err := strconv.Atoi(head)
		if err != nil || i < 0 || i >= n || seen[i] {
			t.Fatalf("unexpected or duplicated message %q", msg.Payload)
		}
		seen[i] = true
		got++
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
