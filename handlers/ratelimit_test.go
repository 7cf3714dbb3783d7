package handlers_test

import (
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/handlers"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// allowN calls Allow n times at now and returns how many were allowed.
func allowN(b *handlers.Bucket, n int, now time.Time) int {
	allowed := 0
	for range n {
		if b.Allow(now) {
			allowed++
		}
	}
	return allowed
}

func TestBucketStartsFull(t *testing.T) {
	for _, burst := range []int{1, 2, 40} {
		b := handlers.NewBucket(20, burst, t0)
		if got := allowN(b, burst, t0); got != burst {
			t.Fatalf("burst %d: %d allowed at one instant, want all", burst, got)
		}
		if b.Allow(t0) {
			t.Fatalf("burst %d: event %d allowed at the same instant", burst, burst+1)
		}
	}
}

func TestBucketRefill(t *testing.T) {
	type step struct {
		at      time.Duration // since t0
		n       int
		allowed int
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"one token per 1/rate", 2, 4, []step{
			{0, 4, 4},
			{499 * time.Millisecond, 1, 0},
			{500 * time.Millisecond, 2, 1},
			{1500 * time.Millisecond, 3, 2},
		}},
		{"fractional tokens carry over denied events", 1, 1, []step{
			{0, 1, 1},
			{400 * time.Millisecond, 1, 0},
			{800 * time.Millisecond, 1, 0},
			{1000 * time.Millisecond, 1, 1},
		}},
		{"refill is capped at burst", 10, 3, []step{
			{0, 3, 3},
			{time.Hour, 5, 3},
		}},
		{"time going backwards adds nothing", 1, 1, []step{
			{10 * time.Second, 1, 1},
			{0, 1, 0},
			{5 * time.Second, 1, 0},
			{11 * time.Second, 1, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := handlers.NewBucket(tt.rate, tt.burst, t0)
			for i, s := range tt.steps {
				if got := allowN(b, s.n, t0.Add(s.at)); got != s.allowed {
					t.Fatalf("step %d (t0+%v): %d of %d allowed, want %d", i, s.at, got, s.n, s.allowed)
				}
			}
		})
	}
}

func TestBucketRateZeroDisables(t *testing.T) {
	for _, rate := range []float64{0, -1} {
		b := handlers.NewBucket(rate, 1, t0)
		if got := allowN(b, 10_000, t0); got != 10_000 {
			t.Fatalf("rate %v: %d of 10000 allowed, want all", rate, got)
		}
		if b.Flooding() {
			t.Fatalf("rate %v: a disabled bucket reports flooding", rate)
		}
	}
}

func TestBucketFlooding(t *testing.T) {
	const burst = 4
	b := handlers.NewBucket(1, burst, t0)
	allowN(b, burst, t0)
	// One burst a little over the limit is answered, not disconnected.
	if allowN(b, 10*burst-1, t0) != 0 || b.Flooding() {
		t.Fatalf("flooding after %d denials, want only at %d", 10*burst-1, 10*burst)
	}
	if b.Allow(t0) || !b.Flooding() {
		t.Fatal("not flooding after 10×burst consecutive denials")
	}
	// An allowed event ends the flood.
	if !b.Allow(t0.Add(time.Second)) {
		t.Fatal("no token a second later at rate 1")
	}
	if b.Flooding() {
		t.Fatal("still flooding after an allowed event")
	}
	if b.Allow(t0.Add(time.Second)) || b.Flooding() {
		t.Fatal("one denial after the reset counts as flooding")
	}
}
