package redis

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// redisCluster is a private Redis Cluster: masters and their replicas,
// each a redis-server --cluster-enabled yes on a free port, joined by
// redis-cli --cluster create. A test may kill a master to fail it over.
type redisCluster struct {
	t     *testing.T
	nodes []*redisProc
}

func startRedisCluster(t *testing.T, masters, replicas int) *redisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli is missing: apt-get install -y redis-tools")
	}
	rc := &redisCluster{t: t}
	var addrs []string
	for range masters * (1 + replicas) {
		r := &redisProc{t: t, port: freePort(t), dir: t.TempDir()}
		r.args = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			// The bus port on a free port of its own (port+10000, the
			// default, may be taken or out of range).
			"--cluster-port", strconv.Itoa(freePort(t)),
			// Fail over within a few seconds of a master's death; a
			// replica syncs at once (not after Redis 7's 5 s wait for
			// more replicas) and may take over however fresh its data.
			"--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0",
			"--cluster-replica-validity-factor", "0"}
		r.start()
		t.Cleanup(r.kill)
		rc.nodes = append(rc.nodes, r)
		addrs = append(addrs, r.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	rc.waitHealthy()
	return rc
}

// seed is the address the processes are given (the first node's).
func (rc *redisCluster) seed() string { return rc.nodes[0].addr() }

// live are the nodes still running.
func (rc *redisCluster) live() []*redisProc {
	var out []*redisProc
	for _, r := range rc.nodes {
		if r.cmd != nil {
			out = append(out, r)
		}
	}
	return out
}

// waitHealthy waits until every running node says the cluster is ok and
// they agree on who owns every slot.
func (rc *redisCluster) waitHealthy() {
	rc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := rc.healthy()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("the cluster did not become healthy: %s", why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (rc *redisCluster) healthy() (bool, string) {
	ctx := context.Background()
	var first string
	for _, r := range rc.live() {
		c := goredis.NewClient(&goredis.Options{Addr: r.addr(), MaxRetries: -1})
		info, err := c.ClusterInfo(ctx).Result()
		slots, serr := c.ClusterSlots(ctx).Result()
		repl, rerr := c.Info(ctx, "replication").Result()
		_ = c.Close()
		if err != nil || serr != nil || rerr != nil {
			return false, fmt.Sprintf("%s: %v %v %v", r.addr(), err, serr, rerr)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return false, r.addr() + " is not in sync with its master"
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return false, r.addr() + " is not ok"
		}
		var owners []string
		covered := 0
		for _, s := range slots {
			owners = append(owners, fmt.Sprintf("%d-%d:%s", s.Start, s.End, s.Nodes[0].Addr))
			covered += int(s.End - s.Start + 1)
		}
		if covered != 16384 {
			return false, fmt.Sprintf("%s covers %d slots", r.addr(), covered)
		}
		slices.Sort(owners)
		view := strings.Join(owners, ",")
		if first == "" {
			first = view
		} else if view != first {
			return false, "the nodes disagree on the slots"
		}
		for _, s := range slots {
			if !rc.running(s.Nodes[0].Addr) {
				return false, s.Nodes[0].Addr + " is dead and still owns slots"
			}
		}
	}
	return true, ""
}

func (rc *redisCluster) running(addr string) bool {
	for _, r := range rc.live() {
		if r.addr() == addr {
			return true
		}
	}
	return false
}

// masterOf is the node that owns channel's slot.
func (rc *redisCluster) masterOf(channel string) *redisProc {
	rc.t.Helper()
	c := rc.client(rc.t)
	m, err := c.MasterForKey(context.Background(), channel)
	if err != nil {
		rc.t.Fatal(err)
	}
	for _, r := range rc.nodes {
		if r.addr() == m.Options().Addr {
			return r
		}
	}
	rc.t.Fatalf("no node at %s", m.Options().Addr)
	return nil
}

func (rc *redisCluster) client(t *testing.T) *goredis.ClusterClient {
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{rc.seed()}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startClusterNode starts a node over cluster clients seeded with the
// first node, as the server builds them.
func startClusterNode(t *testing.T, kind adapterKind, rc *redisCluster, name string, opts Options, nsps ...string) *node {
	t.Helper()
	pub := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{rc.seed()}, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1})
	sub := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{rc.seed()}, Protocol: 2, DialTimeout: time.Second})
	return startNodeWith(t, kind, pub, sub, name, opts, nsps...)
}

// ------------------------------------------------------------------ tests ---

// roomsOnEveryMaster picks n room names whose channels spread over the
// cluster's masters.
func roomsOnEveryMaster(t *testing.T, rc *redisCluster, n int) []string {
	t.Helper()
	masters := map[string]bool{}
	var rooms []string
	for i := 0; len(rooms) < n; i++ {
		room := fmt.Sprintf("room-%d", i)
		m := rc.masterOf("socket.io#/chat#" + room + "#").addr()
		if len(rooms) >= n-3 && masters[m] && len(masters) < 3 {
			continue // keep the last ones for masters not used yet
		}
		masters[m] = true
		rooms = append(rooms, room)
	}
	if len(masters) < 3 {
		t.Fatalf("rooms on %d masters only", len(masters))
	}
	return rooms
}

// deliverEachOnce has every node emit to every room, then a marker per
// node and room; each client checks it got every message exactly once
// before its room's markers (one channel keeps each publisher's order).
func deliverEachOnce(t *testing.T, nodes []*node, rooms []string, members map[string][]*client, round string) {
	t.Helper()
	for i, nd := range nodes {
		for _, room := range rooms {
			for k := range 3 {
				if err := nd.nsp("/chat").To(room).Emit("msg", round, i, k); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, nd := range nodes {
		for _, room := range rooms {
			if err := nd.nsp("/chat").To(room).Emit("marker", round); err != nil {
				t.Fatal(err)
			}
		}
	}
	for room, cs := range members {
		for _, c := range cs {
			var got []event
			for range nodes {
				got = append(got, c.waitEvent("marker")...)
			}
			seen := map[string]int{}
			for _, e := range got {
				if e.name == "msg" && e.args[0] == round {
					seen[fmt.Sprint(e.args[1:])]++
				}
			}
			if len(seen) != 3*len(nodes) {
				t.Errorf("%s in %s: %d distinct messages of round %s, want %d", c.name, room, len(seen), round, 3*len(nodes))
			}
			for m, n := range seen {
				if n != 1 {
					t.Errorf("%s in %s: %s received %d times", c.name, room, m, n)
				}
			}
		}
	}
}

// Three processes on a Redis Cluster of three masters: deliveries reach
// every socket in a room exactly once whichever master owns the room's
// channel, and subscriptions follow the sockets.
func TestShardedOnRedisCluster(t *testing.T) {
	rc := startRedisCluster(t, 3, 0)
	cc := rc.client(t)
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, startClusterNode(t, shardedKind, rc, fmt.Sprintf("node%d", i), Options{}, "/chat"))
	}
	nspBase, _ := countSubscribers(context.Background(), cc, true, "socket.io#/chat#")
	if nspBase != 3 {
		t.Fatalf("namespace channel subscribers %d, want 3 (summed over the masters)", nspBase)
	}
	rooms := roomsOnEveryMaster(t, rc, 6)
	members := map[string][]*client{}
	for i, room := range rooms {
		for j := range 2 { // each room on two processes
			nd := nodes[(i+j)%3]
			members[room] = append(members[room], dial(t, nd, room+"@"+nd.name, "/chat", map[string]any{"rooms": []string{room}}))
		}
		waitShardSubscribers(t, cc, "socket.io#/chat#"+room+"#", 2)
	}
	deliverEachOnce(t, nodes, rooms, members, "one")
	if n, err := nodes[0].nsp("/chat").Adapter().ServerCount(context.Background()); err != nil || n != 3 {
		t.Fatalf("server count %d, %v", n, err)
	}

	// Thousands of users come and go: the subscriptions return where they
	// started.
	before := shardChannelsOnCluster(t, cc)
	const users = 1500
	var clients []*client
	for i := range users {
		nd := nodes[i%3]
		clients = append(clients, dial(t, nd, "u", "/chat", map[string]any{"rooms": []string{fmt.Sprintf("user:%d", i)}}))
	}
	waitFor(t, "every user's room to be subscribed", func() bool { return len(shardChannelsOnCluster(t, cc)) == len(before)+users })
	for _, c := range clients {
		c.close()
	}
	for _, cs := range members {
		for _, c := range cs {
			c.close()
		}
	}
	waitFor(t, "the subscriptions to return to the namespace's", func() bool {
		return len(shardChannelsOnCluster(t, cc)) == 4 // the namespace channel and three response channels
	})
	for _, nd := range nodes {
		if st := nd.sharded.Subscriptions(); st.Rooms != 0 || st.Pending != 0 || st.Failures != 0 {
			t.Errorf("%s: %+v", nd.name, st)
		}
	}
}

// shardChannelsOnCluster lists the sharded channels of /chat with a
// subscriber, on every master.
func shardChannelsOnCluster(t *testing.T, cc *goredis.ClusterClient) []string {
	t.Helper()
	var all []string
	var mu = make(chan struct{}, 1)
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, m *goredis.Client) error {
		chs, err := m.PubSubShardChannels(ctx, "socket.io#/chat#*").Result()
		mu <- struct{}{}
		all = append(all, chs...)
		<-mu
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// A master dies; its replica takes over: each process subscribes the
// channels of its slots again, on the new master, and deliveries are
// exactly once before and after.
func TestShardedClusterFailover(t *testing.T) {
	rc := startRedisCluster(t, 3, 1)
	cc := rc.client(t)
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, startClusterNode(t, shardedKind, rc, fmt.Sprintf("node%d", i), Options{}, "/chat"))
	}
	rooms := roomsOnEveryMaster(t, rc, 6)
	members := map[string][]*client{}
	for i, room := range rooms {
		for j := range 2 {
			nd := nodes[(i+j)%3]
			members[room] = append(members[room], dial(t, nd, room+"@"+nd.name, "/chat", map[string]any{"rooms": []string{room}}))
		}
		waitShardSubscribers(t, cc, "socket.io#/chat#"+room+"#", 2)
	}
	deliverEachOnce(t, nodes, rooms, members, "before")

	victim := rc.masterOf("socket.io#/chat#" + rooms[0] + "#")
	victim.kill()
	rc.waitHealthy() // a replica owns the victim's slots
	for _, nd := range nodes {
		waitFor(t, nd.name+" to subscribe again", func() bool {
			st := nd.sharded.Subscriptions()
			return nd.sharded.Subscribed() && st.Pending == 0 && st.Rooms == 4
		})
	}
	for _, room := range rooms {
		waitShardSubscribers(t, cc, "socket.io#/chat#"+room+"#", 2)
	}
	deliverEachOnce(t, nodes, rooms, members, "after")
	lost := 0
	for _, nd := range nodes {
		if nd.sharded.Subscriptions().Failures > 0 {
			lost++
		}
	}
	if lost == 0 {
		t.Fatal("no process counted the lost subscriptions")
	}
}

// The classic adapter works on a cluster too (every node relays every
// message: it does not scale there, but it delivers).
func TestClassicOnRedisCluster(t *testing.T) {
	rc := startRedisCluster(t, 3, 0)
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, startClusterNode(t, classicKind, rc, fmt.Sprintf("node%d", i), Options{}, "/chat"))
	}
	rooms := roomsOnEveryMaster(t, rc, 3)
	members := map[string][]*client{}
	for i, room := range rooms {
		for j := range 2 {
			nd := nodes[(i+j)%3]
			members[room] = append(members[room], dial(t, nd, room+"@"+nd.name, "/chat", map[string]any{"rooms": []string{room}}))
		}
	}
	deliverEachOnce(t, nodes, rooms, members, "one")
	if n, err := nodes[0].nsp("/chat").Adapter().ServerCount(context.Background()); err != nil || n != 3 {
		t.Fatalf("server count %d, %v (summed over the masters)", n, err)
	}
}
