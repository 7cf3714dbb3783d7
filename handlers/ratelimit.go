package handlers

import "time"

// Bucket is a token bucket: it starts full with burst tokens, refills at rate
// tokens per second, and every event takes one. It is per socket and is only
// used from that socket's event goroutine, so it needs no lock.
type Bucket struct {
	rate   float64 // tokens per second; 0 disables limiting
	burst  float64
	tokens float64
	last   time.Time
	// denied counts events refused since the last allowed one: a client that
	// keeps sending into an empty bucket is flooding, not bursting.
	denied int
}

// NewBucket returns a full bucket. rate <= 0 allows every event.
func NewBucket(rate float64, burst int, now time.Time) *Bucket {
	return &Bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// Allow takes a token if there is one.
func (b *Bucket) Allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(b.burst, b.tokens+elapsed*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		b.denied++
		return false
	}
	b.tokens--
	b.denied = 0
	return true
}

// Flooding reports whether the client has kept sending into an empty bucket
// for ten bursts' worth of events: one burst a little over the limit is
// answered with errors, a sustained flood is disconnected.
func (b *Bucket) Flooding() bool {
	return b.rate > 0 && float64(b.denied) >= 10*b.burst
}
