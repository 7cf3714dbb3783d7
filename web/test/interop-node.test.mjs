// A mixed cluster on one private Redis: the Node peer (shared/peer: socket.io
// 4 with @socket.io/redis-adapter, classic format), one Switchboard process,
// a Node backend publishing with @socket.io/redis-emitter (this test process)
// and a third Node socket.io server with the Redis adapter (lib/node-caller.mjs)
// that makes the adapter's cluster-wide calls. The contract says they
// "share one Redis as one cluster"; these tests hold it to that:
//
//   - the contract's deliveries (sendMessage, postUpdated, POST /api/events)
//     cross between the peer and Switchboard both ways, each device once,
//     the sending socket never;
//   - what the emitter sends to one room, several rooms, with except, or to
//     the whole namespace reaches exactly the right devices, once;
//   - a Node server's fetchSockets, allRooms, socketsJoin/socketsLeave,
//     disconnectSockets, serverSideEmit (with and without an ack) and
//     broadcasts with acknowledgements see and reach Switchboard's sockets.
//
// INTEROP_SB=peer runs a second Node peer where Switchboard would be (the
// tests themselves proven against Node's own adapter); otherwise
// bin/switchboard (SWITCHBOARD_BIN overrides). SB_SHOW_LOGS=1 prints every
// process's stderr at the end.
//
// "Exactly once" and "not at all" are proved without sleeping, as in
// cluster-delivery.test.mjs: after the expected deliveries, a marker travels
// the same path (same publisher, same targeting), and nothing may have
// duplicated, or leaked, before it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Emitter } from '@socket.io/redis-emitter';
import { createClient } from 'redis';
import { startRedis, startSwitchboard } from './lib/harness.mjs';
import { preparePeer, startCaller, startPeer, watchResponses } from './lib/interop.mjs';
import { pollUntil, stopSwitchboard } from './lib/process.mjs';
import {
  SECRET, ack, assertSent, devices, getJSON, isSent, retry, uid, waitStatus,
} from './lib/sockets.mjs';

const T = { timeout: 60000 };
const API_KEY = 'interop-suite-api-key';
const STAND_IN = process.env.INTEROP_SB === 'peer';
const PEER_NODE = 'interop-peer';
const SB_NODE = 'interop-sb';
// How long a delivery that must arrive is waited for. Generous for a loaded
// two-core machine; only a delivery that never comes takes it.
const WAIT = 5000;

let redis;
let peer; // the Node peer
let sb; // Switchboard (or, with INTEROP_SB=peer, a second Node peer)
let caller; // the third Node process, driven over IPC
let emitterClient;
let emitter; // @socket.io/redis-emitter on /socket

before(async () => {
  const peerDir = await preparePeer();
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, JWT_SECRET: SECRET, API_KEY };
  // Settled each on its own: a process that did start is kept, and so
  // stopped by after(), when the other one failed to.
  const [p, s] = await Promise.allSettled([
    startPeer(peerDir, { env: { ...env, NODE_ID: PEER_NODE } }),
    STAND_IN
      ? startPeer(peerDir, { env: { ...env, NODE_ID: SB_NODE } })
      : startSwitchboard({ env: { ...env, NODE_ID: SB_NODE } }),
  ]);
  peer = p.value;
  sb = s.value;
  for (const r of [p, s]) if (r.status === 'rejected') throw r.reason;
  await waitStatus(peer.url + '/readyz', 200, { server: peer });
  await waitStatus(sb.url + '/readyz', 200, { server: sb });
  caller = await startCaller(redis.url);
  emitterClient = createClient({ url: redis.url });
  emitterClient.on('error', () => {});
  await emitterClient.connect();
  emitter = new Emitter(emitterClient).of('/socket');
}, { timeout: 180000 }); // the first run installs the peer's node_modules

after(async () => {
  // Each bounded: SIGKILL for a server still up 20 s after SIGTERM.
  const results = await Promise.allSettled([caller?.stop(), stopSwitchboard(peer), stopSwitchboard(sb), emitterClient?.quit()]);
  await redis?.stop();
  if (process.env.SB_SHOW_LOGS) {
    for (const [name, p] of [['peer', peer], [STAND_IN ? 'stand-in peer' : 'switchboard', sb], ['caller', caller]]) {
      if (p) console.error(`--- ${name}\n${p.lines.join('\n')}`);
    }
  }
  const [callerCode, peerCode, sbCode] = results.map((r) => (r.status === 'fulfilled' ? r.value : r.reason));
  if (caller) assert.equal(callerCode, 0, 'the Node caller\'s exit code');
  for (const [name, code] of [['the peer', peerCode], [where(), sbCode]]) {
    if (code !== null) assert.ok(code === 0 || code === 'SIGTERM', `${name} exited ${code}`);
  }
});

const where = () => (STAND_IN ? 'the stand-in peer' : 'switchboard');

// on(server, t) connects devices to one process for one test; each device
// gets a label that failure messages name.
function on(server, t) {
  const connect = devices(t, server.url);
  const name = server === peer ? 'peer' : where();
  return async (user, opts = {}) => {
    const d = await connect(user, opts);
    d.label = `${user} on ${name}${opts.transports ? ` (${opts.transports.join('+')})` : ''}${opts.client === 'v2' ? ' (v2 client)' : ''}`;
    return d;
  };
}

const room = (user) => `user:${user}`;
const isEvent = (event, tag) => (m) => m?.event === event && (tag === undefined || m?.args?.tag === tag);
const isPost = (postId) => (m) => m?.event === 'post_updated_notification' && m?.args?.postId === postId;

// arrives waits for the device's first message matching pred, failing with
// the device and what was expected rather than a bare timeout.
async function arrives(d, pred, what) {
  try {
    return await d.inbox.next(pred, WAIT);
  } catch {
    throw new assert.AssertionError({
      message: `${d.label}: ${what} did not arrive within ${WAIT} ms; it has ${d.inbox.got.length} messages, the last: ${JSON.stringify(d.inbox.got.slice(-3))}`,
    });
  }
}

// receive waits, on every device at once, for its first message matching
// pred, and checks it against the device's expected message (a value, or a
// function of the message that returns it). Failing, it names every device
// that missed it, and those that did not.
async function receive(pairs, pred, what) {
  const got = await Promise.all(pairs.map(([d]) => d.inbox.next(pred, WAIT).then((m) => ({ m }), () => null)));
  const missed = pairs.filter((_, i) => got[i] === null).map(([d]) => d.label);
  if (missed.length > 0) {
    const reached = pairs.filter((_, i) => got[i] !== null).map(([d]) => d.label);
    throw new assert.AssertionError({
      message: `${what} did not arrive within ${WAIT} ms at: ${missed.join(', ')}${reached.length ? `; it did at: ${reached.join(', ')}` : ''}`,
    });
  }
  pairs.forEach(([d, want], i) => {
    const { m } = got[i];
    assert.deepEqual(m, typeof want === 'function' ? want(m) : want, `${d.label}: ${what}`);
  });
}

// copies counts the messages matching pred that reached d before its first
// message matching markerPred (which it waits for).
async function copies(d, pred, markerPred, what) {
  const mk = await arrives(d, markerPred, `the marker after ${what}`);
  return d.inbox.got.slice(0, d.inbox.got.indexOf(mk)).filter(pred).length;
}

async function assertOnce(d, pred, markerPred, what) {
  assert.equal(await copies(d, pred, markerPred, what), 1, `${d.label}: copies of ${what}`);
}

async function assertNone(d, pred, markerPred, what) {
  assert.equal(await copies(d, pred, markerPred, what), 0, `${d.label}: got ${what}, which was not for it`);
}

// disconnected resolves with the reason of the device's next disconnect, or
// null when none comes within WAIT.
function disconnected(d) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { d.socket.off('disconnect', on); resolve(null); }, WAIT);
    const on = (reason) => { clearTimeout(t); resolve(reason); };
    d.socket.once('disconnect', on);
  });
}

function postEvents(base, body) {
  return getJSON(base + '/api/events', {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` }, body: JSON.stringify(body),
  });
}

// sentMarker sends a sendMessage from device `from` to user `to` and returns
// the predicate of its delivery.
async function sentMarker(from, to) {
  const text = uid('marker');
  const reply = await ack(from.socket, 'sendMessage', { to, text });
  assert.equal(reply?.ok, true, `marker not accepted: ${JSON.stringify(reply)}`);
  return isSent(text);
}

describe('the mixed cluster forms', () => {
  it(`every server process is counted on /socket: PUBSUB NUMSUB of the request channel is 3 (peer, ${STAND_IN ? 'stand-in' : 'switchboard'}, caller)`, T, async () => {
    // The adapter's callers wait for this many answers (less themselves).
    let last;
    await pollUntil(async () => { last = await caller.call('serverCount'); return last === 3; }, { timeoutMs: WAIT, what: 'three subscribers of socket.io-request#/socket#' })
      .catch(() => {});
    assert.equal(last, 3, 'subscribers of socket.io-request#/socket# (a server that does not subscribe is never asked; one that subscribes twice is waited for twice)');
  });

  it(`a delivery crosses from the peer to ${where()} and back (retried until the subscriptions are up)`, T, async (t) => {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const w = uid('W');
    const wP = await onP(w);
    const wS = await onS(w);
    const crosses = (from, to) => retry(async (i) => {
      const text = `warm-up ${i} ${uid('t')}`;
      const reply = await ack(from.socket, 'sendMessage', { to: w, text });
      assert.equal(reply?.ok, true, JSON.stringify(reply));
      return to.inbox.next(isSent(text), 500).then(() => true, () => false);
    }, { attempts: 10, intervalMs: 100, what: `a sendMessage from ${from.label} reaching ${to.label}` });
    await crosses(wP, wS);
    await crosses(wS, wP);
  });
});

describe('the contract\'s deliveries between the peer and Switchboard', () => {
  // A on both processes, B on both processes.
  async function kitchen(t) {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const a = uid('A');
    const b = uid('B');
    return {
      a, b,
      aP: await onP(a),
      aS: await onS(a, { transports: ['websocket'] }),
      bS: await onS(b, { transports: ['polling'] }),
      bP: await onP(b),
    };
  }

  it('sendMessage from the peer to switchboard and back: every device once, the sending socket never', T, async (t) => {
    const { a, b, aP, aS, bS, bP } = await kitchen(t);

    const t1 = 'A on the peer to B ' + uid('t');
    const m1 = assertSent(await ack(aP.socket, 'sendMessage', { to: b, text: t1 }), { from: a, to: b, text: t1 });
    await receive([[bS, b], [bP, b], [aS, a]].map(([d, id]) => [d, { event: 'message_sent', id, args: m1 }]), isSent(t1), 'A\'s message');
    const mk1 = await sentMarker(aP, b);
    for (const d of [bS, bP, aS]) await assertOnce(d, isSent(t1), mk1, 'A\'s message');

    const t2 = 'B on switchboard to A ' + uid('t');
    const m2 = assertSent(await ack(bS.socket, 'message', { event: 'sendMessage', args: { to: a, text: t2 } }), { from: b, to: a, text: t2 });
    await receive([[aP, a], [aS, a], [bP, b]].map(([d, id]) => [d, { event: 'message_sent', id, args: m2 }]), isSent(t2), 'B\'s reply');
    const mk2 = await sentMarker(bS, a);
    for (const d of [aP, aS, bP]) await assertOnce(d, isSent(t2), mk2, 'B\'s reply');

    // The senders: A's peer socket never got its own message, B's
    // switchboard socket never got its own reply.
    await assertNone(aP, isSent(t1), mk2, 'its own message');
    const mk3 = await sentMarker(aS, b);
    await assertNone(bS, isSent(t2), mk3, 'its own reply');
  });

  it('a message to oneself from switchboard reaches one\'s socket on the peer once, and not the sender', T, async (t) => {
    const { a, aP, aS, bP } = await kitchen(t);
    const text = 'note to self ' + uid('t');
    const msg = assertSent(await ack(aS.socket, 'sendMessage', { to: a, text }), { from: a, to: a, text });
    await receive([[aP, { event: 'message_sent', id: a, args: msg }]], isSent(text), 'the note to self');
    const mk = await sentMarker(bP, a);
    await assertOnce(aP, isSent(text), mk, 'the note to self');
    await assertNone(aS, isSent(text), mk, 'its own note to self');
  });

  it('postUpdated from either process reaches every device of each mentioned user once', T, async (t) => {
    const { a, b, aP, aS, bS, bP } = await kitchen(t);

    const p1 = uid('post');
    assert.deepEqual(await ack(aS.socket, 'postUpdated', { postId: p1, mentions: [a, b, a] }), { ok: true, notified: 2 });
    const notice = (id, postId, by) => (m) => ({ event: 'post_updated_notification', id, args: { postId, by, message: typeof m?.args?.message === 'string' ? m.args.message : 'a string' } });
    await receive([[aP, a], [aS, a], [bS, b], [bP, b]].map(([d, id]) => [d, notice(id, p1, a)]), isPost(p1), 'the post from switchboard');
    const mk1 = uid('post-marker');
    assert.deepEqual(await ack(aS.socket, 'postUpdated', { postId: mk1, mentions: [b, a] }), { ok: true, notified: 2 });
    for (const d of [aP, aS, bS, bP]) await assertOnce(d, isPost(p1), isPost(mk1), 'the post from switchboard');

    const p2 = uid('post');
    assert.deepEqual(await ack(bP.socket, 'message', { event: 'postUpdated', args: { postId: p2, mentions: [a] } }), { ok: true, notified: 1 });
    await receive([aP, aS].map((d) => [d, notice(a, p2, b)]), isPost(p2), 'the post from the peer');
    const mk2 = uid('post-marker');
    assert.deepEqual(await ack(bP.socket, 'postUpdated', { postId: mk2, mentions: [a, b] }), { ok: true, notified: 2 });
    for (const d of [aP, aS]) await assertOnce(d, isPost(p2), isPost(mk2), 'the post from the peer');
    for (const d of [bS, bP]) await assertNone(d, isPost(p2), isPost(mk2), 'a post that mentioned only A');
  });

  for (const origin of ['peer', 'switchboard']) {
    it(`POST /api/events on the ${origin === 'peer' ? 'peer' : 'switchboard process'} reaches every device on both, once, as {event, id, args}`, T, async (t) => {
      const { a, b, aP, aS, bS, bP } = await kitchen(t);
      const server = origin === 'peer' ? peer : sb;
      const event = uid('order_ready');
      const args = { orderId: 42, items: ['tea', 'cake'], note: null, nested: { ok: true } };
      const r = await postEvents(server.url, { users: [a, b, a], event, args });
      assert.deepEqual([r.status, r.body], [202, { users: 2 }]);
      await receive([[aP, a], [aS, a], [bS, b], [bP, b]].map(([d, id]) => [d, { event, id, args }]), isEvent(event), `the ${origin}'s event`);
      const mkEvent = uid('order_marker');
      const r2 = await postEvents(server.url, { users: [b, a], event: mkEvent, args: 1 });
      assert.deepEqual([r2.status, r2.body], [202, { users: 2 }]);
      for (const d of [aP, aS, bS, bP]) await assertOnce(d, isEvent(event), isEvent(mkEvent), `the ${origin}'s event`);
    });
  }
});

describe('@socket.io/redis-emitter from a Node backend', () => {
  // A on both processes; B on switchboard only (one of them a v2 client);
  // C on both.
  async function devicesABC(t) {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const a = uid('A');
    const b = uid('B');
    const c = uid('C');
    const all = {
      a, b, c,
      aS: await onS(a, { transports: ['websocket'] }),
      aP: await onP(a),
      bS: await onS(b, { transports: ['polling'] }),
      bS2: await onS(b, { client: 'v2', via: 'query' }),
      cS: await onS(c),
      cP: await onP(c),
    };
    all.ofA = [all.aS, all.aP];
    all.ofB = [all.bS, all.bS2];
    all.ofC = [all.cS, all.cP];
    return all;
  }

  // Each user's own marker, sent to their room alone: what reached a device
  // before it, and was not for it, would have leaked.
  function roomMarkers(users) {
    const tag = uid('mk');
    for (const u of users) emitter.to(room(u)).emit('message', { event: 'room_marker', id: u, args: { tag } });
    return isEvent('room_marker', tag);
  }

  it('to one user room: that user\'s devices on both processes, once, in the contract\'s shape; nobody else', T, async (t) => {
    const { a, b, c, ofA, ofB, ofC } = await devicesABC(t);
    const tag = uid('one');
    const payload = { event: 'backend_notice', id: a, args: { tag, text: 'from the backend', n: [1, 2, 3], none: null } };
    emitter.to(room(a)).emit('message', payload);
    await receive(ofA.map((d) => [d, payload]), isEvent('backend_notice', tag), 'the emitter\'s message');
    const mkTag = uid('one-marker');
    emitter.to(room(a)).emit('message', { event: 'backend_marker', id: a, args: { tag: mkTag } });
    for (const d of ofA) await assertOnce(d, isEvent('backend_notice', tag), isEvent('backend_marker', mkTag), 'the emitter\'s message');
    const mk = roomMarkers([b, c]);
    for (const d of [...ofB, ...ofC]) await assertNone(d, isEvent('backend_notice', tag), mk, 'A\'s message');
  });

  it('to several rooms at once: the devices of each, once; nobody else', T, async (t) => {
    const { a, b, c, ofA, ofB, ofC } = await devicesABC(t);
    const tag = uid('rooms');
    const payload = { event: 'bulletin', args: { tag, for: 'A and B' } };
    emitter.to([room(a), room(b)]).emit('message', payload);
    await receive([...ofA, ...ofB].map((d) => [d, payload]), isEvent('bulletin', tag), 'the emitter\'s two-room message');
    const mkTag = uid('rooms-marker');
    emitter.to([room(a), room(b)]).emit('message', { event: 'bulletin_marker', args: { tag: mkTag } });
    for (const d of [...ofA, ...ofB]) await assertOnce(d, isEvent('bulletin', tag), isEvent('bulletin_marker', mkTag), 'the two-room message');
    const mk = roomMarkers([c]);
    for (const d of ofC) await assertNone(d, isEvent('bulletin', tag), mk, 'the message to A and B');
  });

  it('to several rooms except one: everyone targeted once, the excepted room never', T, async (t) => {
    const { a, b, c, ofA, ofB, ofC } = await devicesABC(t);
    const tag1 = uid('except-rooms');
    const p1 = { event: 'except_rooms', args: { tag: tag1 } };
    emitter.to([room(a), room(b), room(c)]).except(room(b)).emit('message', p1);
    await receive([...ofA, ...ofC].map((d) => [d, p1]), isEvent('except_rooms', tag1), 'the message to A, B, C except B');
    const mk1Tag = uid('except-rooms-marker');
    emitter.to([room(a), room(b), room(c)]).except(room(b)).emit('message', { event: 'except_marker', args: { tag: mk1Tag } });
    for (const d of [...ofA, ...ofC]) await assertOnce(d, isEvent('except_rooms', tag1), isEvent('except_marker', mk1Tag), 'the message to A, B, C except B');
    const mkB = roomMarkers([b]);
    for (const d of ofB) await assertNone(d, isEvent('except_rooms', tag1), mkB, 'a message that excepted B');
  });

  it('namespace-wide except one room: everyone else once, the excepted room never', T, async (t) => {
    const { a, ofA, ofB, ofC } = await devicesABC(t);
    const tag2 = uid('except-all');
    const p2 = { event: 'except_all', args: { tag: tag2 } };
    emitter.except(room(a)).emit('message', p2);
    await receive([...ofB, ...ofC].map((d) => [d, p2]), isEvent('except_all', tag2), 'the namespace-wide message except A');
    const mk2Tag = uid('except-all-marker');
    emitter.except(room(a)).emit('message', { event: 'except_marker', args: { tag: mk2Tag } });
    for (const d of [...ofB, ...ofC]) await assertOnce(d, isEvent('except_all', tag2), isEvent('except_marker', mk2Tag), 'the namespace-wide message except A');
    const mkA = roomMarkers([a]);
    for (const d of ofA) await assertNone(d, isEvent('except_all', tag2), mkA, 'a message that excepted A');
  });

  it('namespace-wide: every device on both processes, once', T, async (t) => {
    const { ofA, ofB, ofC } = await devicesABC(t);
    const tag = uid('all');
    const payload = { event: 'all_hands', args: { tag } };
    emitter.emit('message', payload);
    await receive([...ofA, ...ofB, ...ofC].map((d) => [d, payload]), isEvent('all_hands', tag), 'the namespace-wide message');
    const mkTag = uid('all-marker');
    emitter.emit('message', { event: 'all_hands_marker', args: { tag: mkTag } });
    for (const d of [...ofA, ...ofB, ...ofC]) await assertOnce(d, isEvent('all_hands', tag), isEvent('all_hands_marker', mkTag), 'the namespace-wide message');
  });
});

describe('cluster-wide calls from a third Node process', () => {
  // A marker from the caller to one user's room.
  async function callerMarker(user) {
    const tag = uid('caller-mk');
    await caller.call('emit', { in: [room(user)], event: 'message', args: [{ event: 'caller_marker', args: { tag } }] });
    return isEvent('caller_marker', tag);
  }

  it('fetchSockets sees switchboard\'s sockets with their ids, rooms (user:<id>) and data.user', T, async (t) => {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const a = uid('A');
    const b = uid('B');
    const aS1 = await onS(a, { transports: ['websocket'] });
    const aS2 = await onS(a, { transports: ['polling'] });
    const aP = await onP(a);
    const bS = await onS(b);

    const ofA = await caller.call('fetchSockets', { in: [room(a)] });
    const byId = new Map(ofA.map((s) => [s.id, s]));
    assert.deepEqual([...byId.keys()].sort(), [aS1, aS2, aP].map((d) => d.socket.id).sort(),
      `fetchSockets in ${room(a)}: the socket ids of A's devices (${aS1.label}, ${aS2.label}, ${aP.label}); got ${JSON.stringify(ofA)}`);
    assert.equal(ofA.length, 3, `fetchSockets listed a socket twice: ${JSON.stringify(ofA)}`);
    for (const d of [aS1, aS2, aP]) {
      const s = byId.get(d.socket.id);
      assert.deepEqual([...s.rooms].sort(), [d.socket.id, room(a)].sort(), `${d.label}: rooms (its own id and its user room)`);
      assert.equal(s.data?.user, a, `${d.label}: data.user in ${JSON.stringify(s.data)}`);
    }

    const everyone = await caller.call('fetchSockets', {});
    const bInfo = everyone.find((s) => s.id === bS.socket.id);
    assert.ok(bInfo, `namespace-wide fetchSockets does not list ${bS.label} (${bS.socket.id})`);
    assert.equal(bInfo.data?.user, b);
    assert.deepEqual([...bInfo.rooms].sort(), [bS.socket.id, room(b)].sort());
    for (const d of [aS1, aS2, aP]) assert.ok(everyone.some((s) => s.id === d.socket.id), `namespace-wide fetchSockets does not list ${d.label}`);
  });

  it('emit on a RemoteSocket of switchboard\'s (from fetchSockets) reaches that socket only', T, async (t) => {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const a = uid('A');
    const aS1 = await onS(a, { transports: ['websocket'] });
    const aS2 = await onS(a, { transports: ['polling'] });
    const aP = await onP(a);
    const tag = uid('just-you');
    await caller.call('remoteSocketEmit', { in: [room(a)], id: aS2.socket.id, event: 'message', args: [{ event: 'just_you', args: { tag } }] });
    await receive([[aS2, { event: 'just_you', args: { tag } }]], isEvent('just_you', tag), 'the RemoteSocket\'s emit');
    const mk = await callerMarker(a);
    await assertOnce(aS2, isEvent('just_you', tag), mk, 'the RemoteSocket\'s emit');
    for (const d of [aS1, aP]) await assertNone(d, isEvent('just_you', tag), mk, `a RemoteSocket emit to ${aS2.label}`);
  });

  it('allRooms includes the user rooms and socket ids of switchboard\'s sockets', T, async (t) => {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const a = uid('A');
    const b = uid('B');
    const aS = await onS(a);
    const bP = await onP(b);
    const rooms = new Set(await caller.call('allRooms'));
    for (const r of [room(a), aS.socket.id]) assert.ok(rooms.has(r), `allRooms lacks ${r} (of ${aS.label})`);
    for (const r of [room(b), bP.socket.id]) assert.ok(rooms.has(r), `allRooms lacks ${r} (of ${bP.label})`);
  });

  it('socketsJoin puts switchboard\'s sockets in a room that broadcasts then reach, once; after socketsLeave they no longer do', T, async (t) => {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const a = uid('A');
    const b = uid('B');
    const aS1 = await onS(a, { transports: ['websocket'] });
    const aS2 = await onS(a, { transports: ['polling'] });
    const aP = await onP(a);
    const bS = await onS(b);
    const ofA = [aS1, aS2, aP];
    const team = uid('team');
    const toTeam = (ev, tg) => caller.call('emit', { in: [team], event: 'message', args: [{ event: ev, args: { tag: tg } }] });

    await caller.call('socketsJoin', { in: [room(a)], rooms: [team] });
    // The join is a request and the broadcast a message on another channel:
    // retried until the join has been applied everywhere, bounded.
    await retry(async (i) => {
      const tg = `${team}-probe-${i}`;
      await toTeam('team_probe', tg);
      const got = await Promise.all(ofA.map((d) => d.inbox.next(isEvent('team_probe', tg), 500).then(() => true, () => false)));
      return got.every(Boolean);
    }, { attempts: 10, intervalMs: 100, what: `a broadcast to ${team} reaching ${ofA.map((d) => d.label).join(', ')} after socketsJoin` });
    const news = uid('news');
    await toTeam('team_news', news);
    await receive(ofA.map((d) => [d, { event: 'team_news', args: { tag: news } }]), isEvent('team_news', news), `the broadcast to ${team}`);
    const mkTeam = uid('team-mk');
    await toTeam('team_marker', mkTeam);
    for (const d of ofA) await assertOnce(d, isEvent('team_news', news), isEvent('team_marker', mkTeam), `the broadcast to ${team}`);
    await assertNone(bS, (m) => m?.event?.startsWith('team_'), await callerMarker(b), `a broadcast to ${team}, which B never joined`);

    await caller.call('socketsLeave', { in: [room(a)], rooms: [team] });
    // Until the leave has been applied a probe may still arrive; once one
    // does not (its marker, sent after it, came first), none may.
    await retry(async (i) => {
      const tg = `${team}-gone-${i}`;
      await toTeam('team_gone_probe', tg);
      const mk = await callerMarker(a);
      const counts = await Promise.all(ofA.map((d) => copies(d, isEvent('team_gone_probe', tg), mk, 'a probe after socketsLeave')));
      return counts.every((n) => n === 0);
    }, { attempts: 10, intervalMs: 100, what: `a broadcast to ${team} no longer reaching A's devices after socketsLeave` });
    const late = uid('late');
    await toTeam('team_news', late);
    const mkLate = await callerMarker(a);
    for (const d of ofA) await assertNone(d, isEvent('team_news', late), mkLate, `a broadcast to ${team} after socketsLeave`);
  });

  for (const close of [false, true]) {
    it(`disconnectSockets(${close}) disconnects switchboard's sockets in the room: the client sees "io server disconnect"; others stay`, T, async (t) => {
      const onP = on(peer, t);
      const onS = on(sb, t);
      const a = uid('A');
      const b = uid('B');
      const ofA = [await onS(a, { transports: ['websocket'] }), await onS(a, { transports: ['polling'] }), await onP(a)];
      const bS = await onS(b);

      const gone = ofA.map(disconnected);
      await caller.call('disconnectSockets', { in: [room(a)], close });
      assert.deepEqual(await Promise.all(gone), ofA.map(() => 'io server disconnect'),
        `disconnect reasons of ${ofA.map((d) => d.label).join(', ')} (null: none within ${WAIT} ms)`);

      // B was not targeted: still connected and still reached.
      const mk = await callerMarker(b);
      await arrives(bS, mk, 'a message after the others were disconnected');
      assert.equal(bS.socket.connected, true);
      assert.deepEqual(bS.disconnects, []);
    });
  }

  it('serverSideEmit("switchboard:ping"): without an ack nobody answers; with one, the peer and switchboard each answer once with {node}', T, async (t) => {
    const watch = await watchResponses(redis.url);
    t.after(() => watch.stop());

    assert.equal(await caller.call('serverSideEmit', { event: 'switchboard:ping', args: [], ack: false }), null);
    const { error, responses } = await caller.call('serverSideEmit', { event: 'switchboard:ping', args: [], ack: true });
    const byNode = (x, y) => String(x?.node).localeCompare(String(y?.node));
    assert.deepEqual({ error, responses: [...responses].sort(byNode) }, { error: null, responses: [{ node: PEER_NODE }, { node: SB_NODE }].sort(byNode) },
      'serverSideEmit with an ack: {error, responses}');

    // On Redis: exactly the two answers to the call with an ack, carrying its
    // request id; the one without an ack got none.
    await pollUntil(() => watch.seen.length >= 2, { timeoutMs: WAIT, what: 'the two answers on the response channels' });
    const requestId = watch.seen[0].body?.requestId;
    assert.equal(typeof requestId, 'string', `answer without a requestId: ${JSON.stringify(watch.seen[0])}`);
    assert.deepEqual(watch.seen.map((m) => m.body).sort((x, y) => byNode(x.data, y.data)),
      [{ type: 6, requestId, data: { node: PEER_NODE } }, { type: 6, requestId, data: { node: SB_NODE } }].sort((x, y) => byNode(x.data, y.data)),
      `answers published: ${JSON.stringify(watch.seen)}`);
    assert.deepEqual(sb.lines.filter((l) => /panic/i.test(l)), [], `${where()} logged a panic`);
  });

  it('a broadcast with acknowledgements (timeout().emit) to a user room on switchboard: one answer per device, no timeout', T, async (t) => {
    const onP = on(peer, t);
    const onS = on(sb, t);
    const a = uid('A');
    const b = uid('B');
    const ofA = [await onS(a, { transports: ['websocket'] }), await onS(a, { transports: ['polling'] }), await onP(a)];
    const bS = await onS(b);
    const asked = [];
    for (const d of [...ofA, bS]) {
      d.socket.on('ask', (q, cb) => { asked.push(d); cb({ user: d.user, sid: d.socket.id, q }); });
    }
    const q = { question: 'still there?', n: 7 };
    const { error, responses } = await caller.call('emitWithAcks', { in: [room(a)], event: 'ask', args: [q], timeoutMs: 5000 });
    const bySid = (x, y) => String(x?.sid).localeCompare(String(y?.sid));
    assert.deepEqual({ error, responses: [...responses].sort(bySid) }, { error: null, responses: ofA.map((d) => ({ user: a, sid: d.socket.id, q })).sort(bySid) },
      'the broadcast with acks: {error, responses}, one answer per device of A');
    const mk = await callerMarker(b);
    await arrives(bS, mk, 'the marker after the broadcast with acks');
    assert.deepEqual(asked.filter((d) => d === bS).map((d) => d.label), [], 'asked a device outside the room');
  });
});

describe('the processes', () => {
  it('every process is still up at the end', T, async () => {
    for (const [name, p] of [['peer', peer], [where(), sb]]) {
      assert.equal(p.proc.exitCode, null, `${name} exited early:\n${p.lines.slice(-20).join('\n')}`);
      const h = await getJSON(p.url + '/healthz');
      assert.deepEqual([h.status, h.body], [200, { status: 'ok' }], name);
    }
  });
});
