package redis

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// waitShardSubscribers waits until channel has n sharded subscribers.
func waitShardSubscribers(t *testing.T, c goredis.UniversalClient, channel string, n int) {
	t.Helper()
	waitFor(t, channel+" to have its subscribers", func() bool {
		got, err := countSubscribers(context.Background(), c, true, channel)
		return err == nil && got == n
	})
}
