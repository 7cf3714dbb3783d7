// Two switchboard processes sharing one real redis-server behave as one
// server: every delivery reaches each of a user's devices exactly once,
// whichever process the sender, the HTTP call and the devices are on. Then
// Redis goes away (readiness 503, local delivery goes on) and comes back
// (cross-process delivery resumes).
//
// "Exactly once" is proved without sleeping: after the expected deliveries
// have arrived, a marker travels the same path, and nothing may have
// duplicated before it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort, startRedis, startSwitchboard } from './lib/harness.mjs';
import {
  SECRET, ack, assertSent, countBefore, devices, getJSON, isSent, marker, retry, uid, waitStatus,
} from './lib/sockets.mjs';

const T = { timeout: 90000 };
const API_KEY = 'cluster-suite-api-key';

let redis;
let p1;
let p2;

before(async () => {
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, JWT_SECRET: SECRET, API_KEY };
  [p1, p2] = await Promise.all([
    startSwitchboard({ env: { ...env, NODE_ID: 'cluster-1' } }),
    startSwitchboard({ env: { ...env, NODE_ID: 'cluster-2' } }),
  ]);
  await waitStatus(p1.url + '/readyz', 200, { server: p1 });
  await waitStatus(p2.url + '/readyz', 200, { server: p2 });
});

after(async () => {
  const codes = await Promise.all([p1?.stop(), p2?.stop()]);
  await redis?.stop();
  if (process.env.SB_SHOW_LOGS) for (const p of [p1, p2]) if (p) console.error(p.lines.join('\n'));
  for (const code of codes) if (code !== undefined) assert.ok(code === 0 || code === 'SIGTERM', `switchboard exited ${code}`);
});

function postEvents(base, body, key = API_KEY) {
  return getJSON(base + '/api/events', {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body),
  });
}

const isEvent = (event) => (m) => m?.event === event;
const isPost = (postId) => (m) => m?.event === 'post_updated_notification' && m?.args?.postId === postId;

// Opens every device of the kitchen: A on both processes, B on process 2.
async function kitchen(t) {
  const on1 = devices(t, p1.url);
  const on2 = devices(t, p2.url);
  const a = uid('A');
  const b = uid('B');
  return {
    a, b, on1, on2,
    a1: await on1(a),
    a2: await on2(a, { transports: ['websocket'] }),
    b1: await on2(b, { transports: ['polling'] }),
  };
}

describe('delivery across two processes', () => {
  it('the processes are distinct (NODE_ID) and both ready', T, async () => {
    const [w1, w2] = await Promise.all([getJSON(p1.url + '/api/whoami'), getJSON(p2.url + '/api/whoami')]);
    assert.deepEqual([w1.status, w1.body, w2.status, w2.body], [200, { node: 'cluster-1' }, 200, { node: 'cluster-2' }]);
  });

  it('kitchen: A (device on each process) and B (process 2) message each other; each delivery exactly once', T, async (t) => {
    const { a, b, a1, a2, b1 } = await kitchen(t);

    const t1 = 'A to B ' + uid('t');
    const m1 = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text: t1 }), { from: a, to: b, text: t1 });
    assert.deepEqual(await b1.inbox.next(isSent(t1)), { event: 'message_sent', id: b, args: m1 });
    assert.deepEqual(await a2.inbox.next(isSent(t1)), { event: 'message_sent', id: a, args: m1 });
    const mkAB = await marker(a1, b);
    assert.equal(await countBefore(b1.inbox, isSent(t1), mkAB), 1, 'B: copies of A\'s message');
    assert.equal(await countBefore(a2.inbox, isSent(t1), mkAB), 1, 'A\'s other device: copies of A\'s message');

    const t2 = 'B to A ' + uid('t');
    const m2 = assertSent(await ack(b1.socket, 'message', { event: 'sendMessage', args: { to: a, text: t2 } }), { from: b, to: a, text: t2 });
    assert.deepEqual(await a1.inbox.next(isSent(t2)), { event: 'message_sent', id: a, args: m2 });
    assert.deepEqual(await a2.inbox.next(isSent(t2)), { event: 'message_sent', id: a, args: m2 });
    const mkBA = await marker(b1, a);
    assert.equal(await countBefore(a1.inbox, isSent(t2), mkBA), 1, 'A on process 1: copies of B\'s reply');
    assert.equal(await countBefore(a2.inbox, isSent(t2), mkBA), 1, 'A on process 2: copies of B\'s reply');
    assert.equal(await countBefore(a1.inbox, isSent(t1), mkBA), 0, 'the sending socket got its own message');
    const mkAB2 = await marker(a2, b);
    assert.equal(await countBefore(b1.inbox, isSent(t2), mkAB2), 0, 'B\'s sending socket got its own reply');
  });

  it('a message to oneself reaches one\'s sockets on the other process only once, and not the sender', T, async (t) => {
    const { a, b, a1, a2, b1 } = await kitchen(t);
    const text = 'self ' + uid('t');
    const msg = assertSent(await ack(a2.socket, 'sendMessage', { to: a, text }), { from: a, to: a, text });
    assert.deepEqual(await a1.inbox.next(isSent(text)), { event: 'message_sent', id: a, args: msg });
    const mk = await marker(b1, a);
    assert.equal(await countBefore(a1.inbox, isSent(text), mk), 1);
    assert.equal(await countBefore(a2.inbox, isSent(text), mk), 0, 'the sending socket got its own message');
    assert.equal(b1.inbox.got.filter(isSent(text)).length, 0, `${b} received A's note to self`);
  });

  it('postUpdated on process 1 mentioning A and B reaches every device of both exactly once', T, async (t) => {
    const { a, b, a1, a2, b1, on1 } = await kitchen(t);
    const b2 = await on1(b); // B gets a device on process 1 too
    const postId = uid('post');
    assert.deepEqual(await ack(a1.socket, 'postUpdated', { postId, mentions: [a, b, a] }), { ok: true, notified: 2 });
    for (const [d, user] of [[a1, a], [a2, a], [b1, b], [b2, b]]) {
      const got = await d.inbox.next(isPost(postId));
      assert.equal(typeof got?.args?.message, 'string');
      assert.deepEqual(got, { event: 'post_updated_notification', id: user, args: { postId, by: a, message: got.args.message } });
    }
    const mk = uid('marker-post');
    assert.deepEqual(await ack(a1.socket, 'postUpdated', { postId: mk, mentions: [b, a] }), { ok: true, notified: 2 });
    for (const d of [a1, a2, b1, b2]) assert.equal(await countBefore(d.inbox, isPost(postId), isPost(mk)), 1, `${d.user}: copies`);
  });

  it('POST /api/events on one process reaches devices on the other exactly once, as {event, id, args}', T, async (t) => {
    const { a, b, a1, a2, b1, on2 } = await kitchen(t);
    const c = uid('C');
    const c1 = await on2(c);
    const c2 = await on2(c, { client: 'v2', via: 'query' });
    const args = { orderId: 42, items: ['tea', 'cake'], note: null, nested: { ok: true } };
    const r = await postEvents(p1.url, { users: [a, b, c], event: 'order_ready', args });
    assert.deepEqual([r.status, r.body], [202, { users: 3 }]);
    for (const [d, user] of [[a1, a], [a2, a], [b1, b], [c1, c], [c2, c]]) {
      assert.deepEqual(await d.inbox.next(isEvent('order_ready')), { event: 'order_ready', id: user, args });
    }
    const r2 = await postEvents(p2.url, { users: [c, b, a], event: 'order_marker', args: 1 });
    assert.deepEqual([r2.status, r2.body], [202, { users: 3 }]);
    for (const d of [a1, a2, b1, c1, c2]) {
      assert.equal(await countBefore(d.inbox, isEvent('order_ready'), isEvent('order_marker')), 1, `${d.user}: copies`);
      assert.equal((await d.inbox.next(isEvent('order_marker'))).args, 1);
    }
  });

  it('a v2 client in the cluster sends and receives across processes', T, async (t) => {
    const { a, a1, a2, on1, on2 } = await kitchen(t);
    const d = uid('D');
    const dv2 = await on2(d, { client: 'v2', via: 'query' });
    const dv4 = await on1(d);
    const t1 = 'to v2 ' + uid('t');
    const m1 = assertSent(await ack(a1.socket, 'sendMessage', { to: d, text: t1 }), { from: a, to: d, text: t1 });
    assert.deepEqual(await dv2.inbox.next(isSent(t1)), { event: 'message_sent', id: d, args: m1 });
    assert.deepEqual(await dv4.inbox.next(isSent(t1)), { event: 'message_sent', id: d, args: m1 });
    const t2 = 'from v2 ' + uid('t');
    const m2 = assertSent(await ack(dv2.socket, 'sendMessage', { to: a, text: t2 }), { from: d, to: a, text: t2 });
    for (const x of [a1, a2]) assert.deepEqual(await x.inbox.next(isSent(t2)), { event: 'message_sent', id: a, args: m2 });
    assert.deepEqual(await dv4.inbox.next(isSent(t2)), { event: 'message_sent', id: d, args: m2 });
    const mk = await marker(a2, d);
    assert.equal(await countBefore(dv2.inbox, isSent(t1), mk), 1, 'v2 device: copies');
    assert.equal(await countBefore(dv2.inbox, isSent(t2), mk), 0, 'v2 sender got its own message');
    assert.equal(await countBefore(dv4.inbox, isSent(t2), mk), 1, 'D\'s v4 device: copies');
  });

  it('a device is reachable from the other process as soon as it sees connect', T, async (t) => {
    const on1 = devices(t, p1.url);
    const on2 = devices(t, p2.url);
    const a = uid('A');
    const a1 = await on1(a);
    for (let i = 0; i < 5; i++) {
      const e = uid('E');
      const e1 = await on2(e, { transports: i % 2 ? ['websocket'] : undefined });
      const text = `right after connect ${i}`;
      const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: e, text }), { from: a, to: e, text });
      assert.deepEqual(await e1.inbox.next(isSent(text)), { event: 'message_sent', id: e, args: msg });
    }
  });
});

describe('redis outage and recovery', () => {
  it('without Redis: /readyz 503 with a reason, /healthz 200, same-process delivery works; with it back, cross-process delivery resumes', { timeout: 120000 }, async (t) => {
    const on1 = devices(t, p1.url);
    const on2 = devices(t, p2.url);
    const e = uid('E');
    const f = uid('F');
    const g = uid('G');
    const e1 = await on1(e);
    const f1 = await on1(f);
    const f2 = await on1(f, { transports: ['websocket'] });
    const g1 = await on2(g);

    await redis.kill();
    for (const p of [p1, p2]) {
      const r = await waitStatus(p.url + '/readyz', 503, { server: p });
      assert.equal(typeof r.body, 'object', `/readyz 503 body is not JSON: ${r.body}`);
      const reason = r.body?.reason ?? r.body?.error?.message;
      assert.equal(typeof reason, 'string', `/readyz 503 has no reason: ${JSON.stringify(r.body)}`);
      assert.ok(reason.length > 0);
      const h = await getJSON(p.url + '/healthz');
      assert.deepEqual([h.status, h.body], [200, { status: 'ok' }]);
    }

    // Same process: delivery goes on, and new devices can connect.
    const t1 = 'during the outage ' + uid('t');
    const m1 = assertSent(await ack(e1.socket, 'sendMessage', { to: f, text: t1 }), { from: e, to: f, text: t1 });
    for (const d of [f1, f2]) assert.deepEqual(await d.inbox.next(isSent(t1)), { event: 'message_sent', id: f, args: m1 });
    const e2 = await on1(e, { transports: ['polling'] });
    const t2 = 'new device during the outage ' + uid('t');
    const m2 = assertSent(await ack(e2.socket, 'sendMessage', { to: f, text: t2 }), { from: e, to: f, text: t2 });
    assert.deepEqual(await f1.inbox.next(isSent(t2)), { event: 'message_sent', id: f, args: m2 });
    assert.deepEqual(await e1.inbox.next(isSent(t2)), { event: 'message_sent', id: e, args: m2 });
    assert.equal(p1.proc.exitCode, null);
    assert.equal(p2.proc.exitCode, null);

    await redis.restart();
    await waitStatus(p1.url + '/readyz', 200, { timeoutMs: 30000, server: p1 });
    await waitStatus(p2.url + '/readyz', 200, { timeoutMs: 30000, server: p2 });

    // Cross-process, both directions, and the HTTP API: retried until the
    // subscriptions are back, bounded.
    const delivered = (from, to, recipient) => retry(async (i) => {
      const text = `after recovery ${i} ${uid('t')}`;
      const reply = await ack(from.socket, 'sendMessage', { to, text });
      assert.equal(reply?.ok, true, JSON.stringify(reply));
      return recipient.inbox.next(isSent(text), 1000).then((m) => m, () => null);
    }, { attempts: 20, intervalMs: 200, what: `cross-process delivery ${from.user} → ${to}` });
    const got1 = await delivered(e1, g, g1);
    assert.equal(got1.id, g);
    const got2 = await delivered(g1, e, e1);
    assert.equal(got2.id, e);
    await retry(async (i) => {
      const r = await postEvents(p2.url, { users: [f], event: 'recovered', args: i });
      assert.equal(r.status, 202);
      return f1.inbox.next((m) => m?.event === 'recovered' && m.args === i, 1000).then(() => true, () => false);
    }, { attempts: 20, intervalMs: 200, what: 'POST /api/events across processes after recovery' });
  });

  it('Redis unreachable at start: both processes serve (ready 503), then join up when it appears', { timeout: 120000 }, async (t) => {
    const port = await freePort();
    const env = { REDIS_URL: `redis://127.0.0.1:${port}/0`, JWT_SECRET: SECRET, API_KEY };
    const starting = [1, 2].map((n) => startSwitchboard({ env: { ...env, NODE_ID: `late-${n}` } }));
    t.after(async () => { await Promise.all(starting.map((p) => p.then((q) => q.stop(), () => {}))); });
    const procs = await Promise.all(starting);
    const [q1, q2] = procs;
    for (const p of procs) {
      const r = await waitStatus(p.url + '/readyz', 503, { server: p });
      assert.equal(typeof (r.body?.reason ?? r.body?.error?.message), 'string', `/readyz 503 has no reason: ${JSON.stringify(r.body)}`);
    }
    const on1 = devices(t, q1.url);
    const on2 = devices(t, q2.url);
    const h = uid('H');
    const k = uid('K');
    const h1 = await on1(h);
    const k1 = await on1(k);
    const k2 = await on2(k);
    const text = 'no redis yet ' + uid('t');
    const msg = assertSent(await ack(h1.socket, 'sendMessage', { to: k, text }), { from: h, to: k, text });
    assert.deepEqual(await k1.inbox.next(isSent(text)), { event: 'message_sent', id: k, args: msg });

    const late = await startRedis({ port });
    t.after(() => late.stop());
    await waitStatus(q1.url + '/readyz', 200, { timeoutMs: 30000, server: q1 });
    await waitStatus(q2.url + '/readyz', 200, { timeoutMs: 30000, server: q2 });
    const got = await retry(async (i) => {
      const t2 = `redis arrived ${i} ${uid('t')}`;
      const reply = await ack(h1.socket, 'sendMessage', { to: k, text: t2 });
      assert.equal(reply?.ok, true, JSON.stringify(reply));
      return k2.inbox.next(isSent(t2), 1000).then((m) => m, () => null);
    }, { attempts: 20, intervalMs: 200, what: 'cross-process delivery once Redis appeared' });
    assert.equal(got.id, k);
    // Exactly once, now that both paths exist: k1 (same process) and k2 (other).
    const mk = await marker(h1, k);
    assert.equal(await countBefore(k1.inbox, isSent(got.args.text), mk), 1, 'same-process device: copies');
    assert.equal(await countBefore(k2.inbox, isSent(got.args.text), mk), 1, 'other-process device: copies');
  });
});
