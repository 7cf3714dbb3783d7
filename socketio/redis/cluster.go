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

// pipelineFor is the pipeline the writer publishes with. On a Redis
// Cluster, classic PUBLISHes (pinKey set) all go through the master that
// owns pinKey's slot: any node relays a PUBLISH to the whole cluster, but
// go-redis sends a keyless command to a random node, and two messages of
// this process sent through two nodes could reach a subscriber in the
// wrong order (a join after the broadcast that follows it). SPUBLISH is
// routed by its channel's slot, as it must be.
func pipelineFor(ctx context.Context, client goredis.UniversalClient, pinKey string) goredis.Pipeliner {
	if cc, ok := client.(*goredis.ClusterClient); ok && pinKey != "" {
		if node, err := cc.MasterForKey(ctx, pinKey); err == nil {
			return node.Pipeline()
		}
	}
	return client.Pipeline()
}
