// Connection state recovery with the real socket.io-client 4.8.1 against
// the binary: a device whose connection drops comes back (by hand here,
// with reconnection off, so that the test says when) with the pid and
// offset the client keeps, and gets every message it missed, once, in
// order, with its socket id, and socket.recovered true:
//
//   - on another process (Redis, a TCP balancer re-pointed between), over
//     websocket and over polling; after a SIGTERM of its process; after a
//     kill -9 of it;
//   - on the one process of the in-memory mode;
//   - past RECOVERY_WINDOW it gets a fresh session that works;
//   - a forged pid or offset, or another user's session asked for with
//     one's own valid token, gets a fresh session and nothing of anyone
//     else's;
//   - RECOVERY_WINDOW=0: no pid, no offsets.
//
// "Exactly once" is checked by the whole sequence a device received, up to
// a last live message sent after the others.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startRedis, startSwitchboard } from './lib/harness.mjs';
import { startBalancer } from './lib/browser.mjs';
import { assertLogLines, pollUntil, stopSwitchboard } from './lib/process.mjs';
import { counter, device, send } from './lib/recovery.mjs';
import { SECRET, token, uid } from './lib/sockets.mjs';

const T = { timeout: 60000 };
const PERSISTED = 'switchboard_recovery_sessions_persisted_total';
const RECOVERED = 'switchboard_recovery_sessions_recovered_total';
const EXPIRED = 'switchboard_recovery_sessions_expired_total';
const REFUSED = 'switchboard_recovery_sessions_refused_total';
const isText = (text) => (m) => m?.event === 'message_sent' && m.args?.text === text;

const started = [];
async function sb(env) {
  const p = await startSwitchboard({ env: { JWT_SECRET: SECRET, ...env } });
  started.push(p);
  return p;
}
after(async () => {
  await Promise.allSettled(started.map((p) => stopSwitchboard(p)));
  for (const p of started) assertLogLines(p.lines, `switchboard ${p.port}`);
});

// dropAndWait cuts a device's connection at the balancer and waits until
// the process it was on has kept its session (or, killed, is gone).
async function dropAndWait(bal, d, from, { killed = false } = {}) {
  const gone = d.disconnected();
  const kept = killed ? 0 : await counter(from.url, PERSISTED);
  bal.cut();
  const reason = await gone;
  assert.ok(['transport close', 'transport error', 'ping timeout'].includes(reason), `disconnect reason ${reason}`);
  if (!killed) await pollUntil(async () => (await counter(from.url, PERSISTED)) > kept, { what: 'the session to be kept' });
}

// recovered reconnects d and checks that it took its session back.
async function recovered(d, { id, target }) {
  const before = await counter(target.url, RECOVERED);
  await d.connected();
  assert.equal(d.socket.recovered, true, `${d.user}: socket.recovered`);
  assert.equal(d.socket.id, id, `${d.user}: socket id`);
  assert.equal(await counter(target.url, RECOVERED), before + 1, 'the process counts the recovery');
}

describe('across processes', () => {
  let redis;
  let p1;
  let p2;
  before(async () => {
    redis = await startRedis();
    // A short heartbeat: a polling client whose connection drops between
    // two requests is noticed by the ping timeout, not at once.
    const env = { REDIS_URL: redis.url, PING_INTERVAL: '1s', PING_TIMEOUT: '1s' };
    [p1, p2] = await Promise.all([sb({ ...env, NODE_ID: 'r1' }), sb({ ...env, NODE_ID: 'r2' })]);
    for (const p of [p1, p2]) await pollUntil(async () => (await fetch(p.url + '/readyz')).status === 200, { what: 'readyz' });
  });
  after(async () => { await redis?.stop(); });

  for (const transports of [['websocket'], ['polling']]) {
    it(`a device back on another process gets what it missed, once, in order (${transports})`, T, async (t) => {
      const bal = await startBalancer(p1.port);
      t.after(() => bal.close());
      const alice = uid('alice');
      const bob = uid('bob');
      const a = await device(bal.url, alice, { transports }).connected();
      const b = await device(p1.url, bob).connected();
      t.after(() => { a.close(); b.close(); });
      assert.equal(typeof a.socket._pid, 'string', 'the CONNECT reply carries a pid');

      await send(b, alice, 'before');
      await a.next(isText('before'));
      assert.match(a.got[0].offset, /^\d+-\d+$/, 'a delivery carries its offset as its last argument');
      const id = a.socket.id;

      bal.point(p2.port);
      await dropAndWait(bal, a, p1);
      const away = ['away 1', 'away 2', 'away 3'];
      for (const text of away) await send(b, alice, text);

      await recovered(a, { id, target: p2 });
      await send(b, alice, 'live');
      await a.next(isText('live'));
      assert.deepEqual(a.texts(), ['before', ...away, 'live']);
      const offsets = a.got.map((g) => g.offset);
      for (let i = 1; i < offsets.length; i++) {
        const [m0, s0] = offsets[i - 1].split('-').map(BigInt);
        const [m1, s1] = offsets[i].split('-').map(BigInt);
        assert.ok(m1 > m0 || (m1 === m0 && s1 > s0), `offsets grow: ${offsets}`);
      }
    });
  }

  it('a device back after its process got SIGTERM gets what was sent meanwhile', T, async (t) => {
    const p3 = await sb({ REDIS_URL: redis.url, NODE_ID: 'r3' });
    await pollUntil(async () => (await fetch(p3.url + '/readyz')).status === 200, { what: 'readyz' });
    const bal = await startBalancer(p3.port);
    t.after(() => bal.close());
    const alice = uid('alice');
    const bob = uid('bob');
    const a = await device(bal.url, alice).connected();
    const b = await device(p2.url, bob).connected();
    t.after(() => { a.close(); b.close(); });
    await send(b, alice, 'before');
    await a.next(isText('before'));
    const id = a.socket.id;

    bal.point(p2.port);
    const gone = a.disconnected();
    const stopping = stopSwitchboard(p3);
    assert.equal(await gone, 'transport close');
    await send(b, alice, 'during the restart');
    assert.equal(await stopping, 0, 'exit code');
    await recovered(a, { id, target: p2 });
    await send(b, alice, 'live');
    await a.next(isText('live'));
    assert.deepEqual(a.texts(), ['before', 'during the restart', 'live']);
  });

  it('a device back after its process was killed (-9) gets what was sent meanwhile', T, async (t) => {
    const p3 = await sb({ REDIS_URL: redis.url, NODE_ID: 'r4' });
    await pollUntil(async () => (await fetch(p3.url + '/readyz')).status === 200, { what: 'readyz' });
    const bal = await startBalancer(p3.port);
    t.after(() => bal.close());
    const alice = uid('alice');
    const bob = uid('bob');
    const a = await device(bal.url, alice).connected();
    const b = await device(p2.url, bob).connected();
    t.after(() => { a.close(); b.close(); });
    await send(b, alice, 'before');
    await a.next(isText('before'));
    const id = a.socket.id;

    bal.point(p2.port);
    const gone = a.disconnected();
    p3.proc.kill('SIGKILL');
    await gone;
    await send(b, alice, 'after the kill');
    await recovered(a, { id, target: p2 });
    await send(b, alice, 'live');
    await a.next(isText('live'));
    assert.deepEqual(a.texts(), ['before', 'after the kill', 'live']);
  });

  it('another user asking for a session with his own valid token gets a fresh one, and none of its messages', T, async (t) => {
    const bal = await startBalancer(p1.port);
    t.after(() => bal.close());
    const alice = uid('alice');
    const mallory = uid('mallory');
    const bob = uid('bob');
    const a = await device(bal.url, alice).connected();
    const b = await device(p1.url, bob).connected();
    t.after(() => { a.close(); b.close(); });
    await send(b, alice, 'hers');
    await a.next(isText('hers'));
    const { id } = a.socket;
    await dropAndWait(bal, a, p1);
    await send(b, alice, 'secret');

    // socket.io-client sends the pid and offset it holds; this one holds
    // alice's, with mallory's token.
    const m = device(p2.url, mallory);
    t.after(() => m.close());
    m.socket._pid = a.socket._pid;
    m.socket._lastOffset = a.socket._lastOffset;
    const refused = await counter(p2.url, REFUSED, { reason: 'other_user' });
    await m.connected();
    assert.equal(m.socket.recovered, false);
    assert.notEqual(m.socket.id, id);
    assert.equal(await counter(p2.url, REFUSED, { reason: 'other_user' }), refused + 1);
    await send(b, mallory, 'to mallory');
    await m.next(isText('to mallory'));
    assert.deepEqual(m.texts(), ['to mallory'], 'mallory got none of alice\'s messages');

    // Alice's session is still hers.
    bal.point(p2.port);
    await recovered(a, { id, target: p2 });
    await send(b, alice, 'live');
    await a.next(isText('live'));
    assert.deepEqual(a.texts(), ['hers', 'secret', 'live']);
  });

  it('a forged pid or offset gets a fresh session that works', T, async (t) => {
    const bob = uid('bob');
    const b = await device(p1.url, bob).connected();
    t.after(() => b.close());
    for (const [pid, offset] of [['sbr.AAAAAAAAAA.BBBBBBBBBBBBBBBBBBBB', '1-0'], ['not a pid', undefined], [null, 'garbage']]) {
      const alice = uid('alice');
      const a = device(p1.url, alice);
      t.after(() => a.close());
      if (pid) {
        a.socket._pid = pid;
        a.socket._lastOffset = offset;
      } else {
        // a real session, with an offset that is not one
        await a.connected();
        await send(b, alice, 'hers');
        await a.next(isText('hers'));
        const gone = a.disconnected();
        a.socket.io.engine.close();
        await gone;
        await pollUntil(async () => (await counter(p1.url, PERSISTED)) > 0, { what: 'a kept session' });
        a.socket._lastOffset = offset;
      }
      const was = a.socket.id;
      await a.connected();
      assert.equal(a.socket.recovered, false, `pid ${pid} offset ${offset}`);
      if (was) assert.notEqual(a.socket.id, was);
      await send(b, alice, 'fresh');
      await a.next(isText('fresh'));
    }
  });
});

describe('in-memory mode', () => {
  it('recovers on its one process', T, async (t) => {
    const p = await sb({});
    const bal = await startBalancer(p.port);
    t.after(() => bal.close());
    const alice = uid('alice');
    const bob = uid('bob');
    const a = await device(bal.url, alice).connected();
    const b = await device(p.url, bob).connected();
    t.after(() => { a.close(); b.close(); });
    await send(b, alice, 'before');
    await a.next(isText('before'));
    const id = a.socket.id;
    await dropAndWait(bal, a, p);
    await send(b, alice, 'away');
    await recovered(a, { id, target: p });
    await send(b, alice, 'live');
    await a.next(isText('live'));
    assert.deepEqual(a.texts(), ['before', 'away', 'live']);
  });

  it('past RECOVERY_WINDOW a fresh session, which works', T, async (t) => {
    const p = await sb({ RECOVERY_WINDOW: '1s' });
    const bal = await startBalancer(p.port);
    t.after(() => bal.close());
    const alice = uid('alice');
    const bob = uid('bob');
    const a = await device(bal.url, alice).connected();
    const b = await device(p.url, bob).connected();
    t.after(() => { a.close(); b.close(); });
    await send(b, alice, 'before');
    await a.next(isText('before'));
    const id = a.socket.id;
    await dropAndWait(bal, a, p);
    await send(b, alice, 'too long ago');
    // The window is a duration: nothing to wait for but the clock.
    await new Promise((r) => setTimeout(r, 1500));
    const expired = await counter(p.url, EXPIRED);
    await a.connected();
    assert.equal(a.socket.recovered, false);
    assert.notEqual(a.socket.id, id);
    assert.equal(await counter(p.url, EXPIRED), expired + 1);
    await send(b, alice, 'fresh');
    await a.next(isText('fresh'));
    assert.deepEqual(a.texts(), ['before', 'fresh']);
  });

  it('RECOVERY_WINDOW=0: no pid, no offsets', T, async (t) => {
    const p = await sb({ RECOVERY_WINDOW: '0' });
    const alice = uid('alice');
    const a = await device(p.url, alice).connected();
    const b = await device(p.url, uid('bob')).connected();
    t.after(() => { a.close(); b.close(); });
    assert.equal(a.socket._pid, undefined);
    await send(b, alice, 'plain');
    await a.next(isText('plain'));
    assert.equal(a.got[0].offset, undefined, 'a delivery has one argument');
  });
});

// Tokens signed here must match the server's secret.
assert.ok(token('x').split('.').length === 3);
