// Switchboard and the Node peer (shared/peer: socket.io 4 with
// @socket.io/redis-adapter's createShardedAdapter, dynamic mode), both with
// REDIS_ADAPTER=sharded, as one cluster: on one Redis, and on a Redis
// Cluster of three masters (REDIS_CLUSTER=1, node-redis createCluster in
// the peer, go-redis ClusterClient in Switchboard).
//
//   - both take part: PUBSUB SHARDNUMSUB of socket.io#/socket# counts them
//     (summed over the masters);
//   - a user is reachable from the other process as soon as its client has
//     connected (each waits for its user room's SSUBSCRIBE before the
//     CONNECT reply): nothing is retried;
//   - sendMessage, postUpdated and POST /api/events cross both ways, each
//     device once (a marker on the same path after each), the sending
//     socket never;
//   - a user room's channel has a subscriber per process holding the user,
//     and none once the user's devices are gone.
//
// INTEROP_SB=peer runs a second Node peer where Switchboard would be.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClient } from 'redis';
import { startRedis, startSwitchboard } from './lib/harness.mjs';
import { preparePeer, startPeer } from './lib/interop.mjs';
import { pollUntil, stopSwitchboard } from './lib/process.mjs';
import { startRedisCluster } from './lib/rediscluster.mjs';
import { SECRET, ack, assertSent, devices, getJSON, isSent, uid, waitStatus } from './lib/sockets.mjs';

const T = { timeout: 60000 };
const API_KEY = 'interop-sharded-api-key';
const STAND_IN = process.env.INTEROP_SB === 'peer';
const WAIT = 5000;
const NSP_CHANNEL = 'socket.io#/socket#';
const roomChannel = (user) => `socket.io#/socket#user:${user}#`;

for (const topology of ['one Redis', 'a Redis Cluster of three masters']) {
  const cluster = topology !== 'one Redis';
  describe(`sharded adapters on ${topology}`, () => {
    let redis;
    let peer;
    let sb;
    let numShardSub;

    before(async () => {
      const peerDir = await preparePeer();
      if (cluster) {
        redis = await startRedisCluster({ masters: 3 });
        numShardSub = (ch) => redis.numShardSub(ch);
      } else {
        redis = await startRedis();
        numShardSub = async (ch) => {
          const c = createClient({ url: redis.url });
          c.on('error', () => {});
          await c.connect();
          try { return Number((await c.sendCommand(['PUBSUB', 'SHARDNUMSUB', ch]))[1]); } finally { await c.quit(); }
        };
      }
      const env = {
        REDIS_URL: redis.url, REDIS_ADAPTER: 'sharded', REDIS_CLUSTER: cluster ? '1' : '0', JWT_SECRET: SECRET, API_KEY,
      };
      const [p, s] = await Promise.allSettled([
        startPeer(peerDir, { env: { ...env, NODE_ID: 'sharded-peer' } }),
        STAND_IN ? startPeer(peerDir, { env: { ...env, NODE_ID: 'sharded-sb' } }) : startSwitchboard({ env: { ...env, NODE_ID: 'sharded-sb' } }),
      ]);
      peer = p.value;
      sb = s.value;
      for (const r of [p, s]) if (r.status === 'rejected') throw r.reason;
      await waitStatus(peer.url + '/readyz', 200, { server: peer });
      await waitStatus(sb.url + '/readyz', 200, { server: sb });
    }, { timeout: 180000 });

    after(async () => {
      const codes = await Promise.allSettled([stopSwitchboard(peer), stopSwitchboard(sb)]);
      await redis?.stop();
      if (process.env.SB_SHOW_LOGS) {
        for (const [name, p] of [['peer', peer], ['switchboard', sb]]) if (p) console.error(`--- ${name}\n${p.lines.join('\n')}`);
      }
      for (const r of codes) {
        const code = r.status === 'fulfilled' ? r.value : r.reason;
        if (code !== null) assert.ok(code === 0 || code === 'SIGTERM', `a process exited ${code}`);
      }
      if (sb && !STAND_IN) {
        const notJSON = sb.lines.filter((l) => { try { JSON.parse(l); return false; } catch { return true; } });
        assert.deepEqual(notJSON, [], 'every stderr line of switchboard is JSON');
      }
    });

    function on(server, t) {
      const connect = devices(t, server.url);
      const name = server === peer ? 'peer' : 'switchboard';
      return async (user, opts = {}) => {
        const d = await connect(user, opts);
        d.label = `${user} on ${name}`;
        return d;
      };
    }

    // once checks that d got exactly one message matching pred before the
    // first matching marker (which comes the same way, after it).
    async function once(d, pred, marker, what) {
      let mk;
      try {
        mk = await d.inbox.next(marker, WAIT);
      } catch {
        assert.fail(`${d.label}: the marker after ${what} did not arrive; it has ${JSON.stringify(d.inbox.got.slice(-3))}`);
      }
      const n = d.inbox.got.slice(0, d.inbox.got.indexOf(mk)).filter(pred).length;
      assert.equal(n, 1, `${d.label}: copies of ${what}`);
    }

    async function none(d, pred, marker, what) {
      const mk = await d.inbox.next(marker, WAIT);
      assert.equal(d.inbox.got.slice(0, d.inbox.got.indexOf(mk)).filter(pred).length, 0, `${d.label}: got ${what}`);
    }

    it('both processes subscribe to the namespace channel (SHARDNUMSUB, summed over the masters)', T, async () => {
      await pollUntil(async () => (await numShardSub(NSP_CHANNEL)) === 2, { timeoutMs: WAIT, what: `two subscribers of ${NSP_CHANNEL}` });
    });

    it('sendMessage crosses both ways as soon as the clients have connected: every device once, never the sender', T, async (t) => {
      const onP = on(peer, t);
      const onS = on(sb, t);
      const a = uid('A');
      const b = uid('B');
      const aP = await onP(a);
      const bS = await onS(b);
      // No warm-up, no retry: b's room was subscribed on switchboard
      // before its client saw CONNECT.
      const t1 = 'A on the peer to B ' + uid('t');
      assertSent(await ack(aP.socket, 'sendMessage', { to: b, text: t1 }), { from: a, to: b, text: t1 });
      await bS.inbox.next(isSent(t1), WAIT).catch(() => assert.fail(`${bS.label} did not get ${t1}`));

      const t2 = 'B on switchboard to A ' + uid('t');
      assertSent(await ack(bS.socket, 'sendMessage', { to: a, text: t2 }), { from: b, to: a, text: t2 });
      await aP.inbox.next(isSent(t2), WAIT).catch(() => assert.fail(`${aP.label} did not get ${t2}`));

      // Second devices, the other way round.
      const aS = await onS(a);
      const bP = await onP(b);
      const t3 = 'A on switchboard to B ' + uid('t');
      const m3 = assertSent(await ack(aS.socket, 'sendMessage', { to: b, text: t3 }), { from: a, to: b, text: t3 });
      for (const [d, id] of [[bS, b], [bP, b], [aP, a]]) {
        const got = await d.inbox.next(isSent(t3), WAIT).catch(() => assert.fail(`${d.label} did not get ${t3}`));
        assert.deepEqual(got, { event: 'message_sent', id, args: m3 }, d.label);
      }
      const mk = 'marker ' + uid('t');
      assertSent(await ack(aS.socket, 'sendMessage', { to: b, text: mk }), { from: a, to: b, text: mk });
      for (const d of [bS, bP, aP]) await once(d, isSent(t3), isSent(mk), t3);
      const mk2 = 'marker ' + uid('t');
      assertSent(await ack(bP.socket, 'sendMessage', { to: a, text: mk2 }), { from: b, to: a, text: mk2 });
      await none(aS, isSent(t3), isSent(mk2), 'its own message');
    });

    it('postUpdated and POST /api/events from either process reach every device once', T, async (t) => {
      const onP = on(peer, t);
      const onS = on(sb, t);
      const a = uid('A');
      const b = uid('B');
      const devs = [await onP(a), await onS(a), await onS(b), await onP(b)];
      const isPost = (id) => (m) => m?.event === 'post_updated_notification' && m?.args?.postId === id;
      for (const from of [devs[1], devs[3]]) { // a on switchboard, b on the peer
        const post = uid('post');
        assert.deepEqual(await ack(from.socket, 'postUpdated', { postId: post, mentions: [a, b] }), { ok: true, notified: 2 });
        const mk = uid('post-marker');
        assert.deepEqual(await ack(from.socket, 'postUpdated', { postId: mk, mentions: [b, a] }), { ok: true, notified: 2 });
        for (const d of devs) await once(d, isPost(post), isPost(mk), `the post from ${from.label}`);
      }
      for (const server of [peer, sb]) {
        const post = (body) => getJSON(server.url + '/api/events', {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` }, body: JSON.stringify(body),
        });
        const event = uid('evt');
        const mkEvent = uid('evt-marker');
        assert.deepEqual(await post({ users: [a, b], event, args: { n: 1 } }).then((r) => [r.status, r.body]), [202, { users: 2 }]);
        assert.deepEqual(await post({ users: [b, a], event: mkEvent, args: 0 }).then((r) => [r.status, r.body]), [202, { users: 2 }]);
        for (const d of devs) await once(d, (m) => m?.event === event, (m) => m?.event === mkEvent, `${event} from ${server === peer ? 'the peer' : 'switchboard'}`);
      }
    });

    it('a user room is subscribed by each process holding the user, and by none once the user is gone', T, async (t) => {
      const c = uid('C');
      const onP = on(peer, t);
      const onS = on(sb, t);
      const cP = await onP(c);
      assert.equal(await numShardSub(roomChannel(c)), 1, 'subscribers once C is connected to the peer');
      const cS = await onS(c);
      assert.equal(await numShardSub(roomChannel(c)), 2, 'subscribers once C is connected to both');
      cP.socket.close();
      cS.socket.close();
      await pollUntil(async () => (await numShardSub(roomChannel(c))) === 0, { timeoutMs: WAIT, what: `no subscriber of ${roomChannel(c)}` });
      if (!STAND_IN) {
        const m = await fetch(sb.url + '/metrics').then((r) => r.text());
        assert.match(m, /^switchboard_adapter_subscriptions_pending 0$/m);
        assert.match(m, /^switchboard_adapter_messages_received_total\{kind="broadcast"\} [1-9]/m);
      }
    });
  });
}
