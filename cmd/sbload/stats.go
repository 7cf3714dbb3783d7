package main

import (
	"slices"
	"time"
)

// latency summarises a set of durations in milliseconds.
type latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// summarise sorts xs in place and returns its percentiles (nearest rank).
func summarise(xs []time.Duration) latency {
	if len(xs) == 0 {
		return latency{}
	}
	slices.Sort(xs)
	return latency{
		Count: len(xs),
		P50:   ms(rank(xs, 0.50)),
		P90:   ms(rank(xs, 0.90)),
		P99:   ms(rank(xs, 0.99)),
		Max:   ms(xs[len(xs)-1]),
	}
}

// rank returns the nearest-rank q-quantile of sorted xs.
func rank(xs []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(xs))+0.999999999) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
