package redis

import (
	"context"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
)

// countSubscribers is PUBSUB NUMSUB (or SHARDNUMSUB when shard) of one
// channel. On a Redis Cluster each node counts only its own subscribers,
// so the counts of every master are summed, as Node's adapter does.
func countSubscribers(ctx context.Context, client goredis.UniversalClient, shard bool, channel string) (int, error) {
	one := func(ctx context.Context, c goredis.Cmdable) (int64, error) {
		var res map[string]int64
		var err error
		if shard {
			res, err = c.PubSubShardNumSub(ctx, channel).Result()
		} else {
			res, err = c.PubSubNumSub(ctx, channel).Result()
		}
		return res[channel], err
	}
	if cc, ok := client.(*goredis.ClusterClient); ok {
		var total atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			n, err := one(ctx, node)
			total.Add(n)
			return err
		})
		return int(total.Load()), err
	}
	n, err := one(ctx, client)
	return int(n), err
}
