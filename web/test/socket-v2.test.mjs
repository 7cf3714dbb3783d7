// socket.io-client v2 (Engine.IO v3, let in by the server's allowEIO3)
// against the built binary. v2 has no handshake `auth`: it sends the token in
// the query (or a header), joins `/` implicitly, and reports namespace errors
// with the event "error" rather than "connect_error".
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startSwitchboard } from './lib/harness.mjs';
import {
  SECRET, ack, assertAckError, heartbeats, assertErrorEvent, assertSent, countBefore, devices, ioV2, isError, isSent, marker, open,
  refused, token, uid, upgraded,
} from './lib/sockets.mjs';

const T = { timeout: 60000 };
const TRANSPORTS = [['default (polling, then upgrade)', undefined, 'websocket'], ['websocket only', ['websocket'], 'websocket'],
  ['polling only', ['polling'], 'polling']];

let sb;
before(async () => { sb = await startSwitchboard({ env: { JWT_SECRET: SECRET, RATE_LIMIT: '1000', RATE_BURST: '1000' } }); });
after(async () => {
  if (!sb) return;
  const code = await sb.stop();
  if (process.env.SB_SHOW_LOGS) console.error(sb.lines.join('\n'));
  assert.ok(code === 0 || code === 'SIGTERM', `switchboard exited ${code}`);
});

// v2 reports a refused namespace connect with whatever the server put in the
// error packet: for an Engine.IO v3 client socket.io sends the error's data
// when it has some ({reason}), else its message. Both carriers of the same
// facts are accepted; the facts are not negotiable.
function assertV2Unauthorized(err, reason) {
  if (err && typeof err === 'object' && 'message' in err && 'data' in err) {
    assert.deepEqual({ message: err.message, data: err.data }, { message: 'unauthorized', data: { reason } });
  } else {
    assert.deepEqual(err, { reason }, `v2 error payload ${JSON.stringify(err)}`);
  }
}

describe('v2 client: connecting', () => {
  for (const [name, transports, expected] of TRANSPORTS) {
    it(`joins the main namespace "/" (implicit in its protocol), ${name}`, T, async (t) => {
      const d = await open(ioV2, sb.url, transports ? { transports } : {});
      t.after(() => d.socket.close());
      assert.ok(d.socket.connected);
      if (!transports) await upgraded(d.socket);
      assert.equal(d.socket.io.engine.transport.name, expected);
    });

    it(`joins /socket with the token in the query and sends, ${name}`, T, async (t) => {
      const connect = devices(t, sb.url);
      const a = uid('v2a');
      const b = uid('v2b');
      const a1 = await connect(a, { client: 'v2', via: 'query', transports });
      const b1 = await connect(b, { client: 'v2', via: 'query', transports });
      if (!transports) { await upgraded(a1.socket); await upgraded(b1.socket); }
      assert.equal(a1.socket.io.engine.transport.name, expected);
      const text = `v2 over ${name}`;
      const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text }), { from: a, to: b, text });
      assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
      assert.equal(a1.socket.io.engine.transport.name, expected, 'transport changed during the test');
    });
  }

  it('accepts the token from an Authorization: Bearer header', T, async (t) => {
    const connect = devices(t, sb.url);
    for (const transports of [['polling'], ['websocket']]) {
      const a = uid('v2h');
      const a1 = await connect(a, { client: 'v2', via: 'header', transports });
      const reply = await ack(a1.socket, 'sendMessage', { to: uid('x'), text: 'hi' });
      assert.equal(reply?.message?.from, a, `over ${transports}: ${JSON.stringify(reply)}`);
    }
  });

  it('refuses /socket without a token, with a bad one, with an expired one', T, async () => {
    assertV2Unauthorized(await refused(ioV2, sb.url + '/socket', {}), 'missing_token');
    assertV2Unauthorized(await refused(ioV2, sb.url + '/socket', { query: { token: 'garbage' } }), 'invalid_token');
    assertV2Unauthorized(await refused(ioV2, sb.url + '/socket', { query: { token: token('x', { secret: 'other' }) } }), 'invalid_token');
    assertV2Unauthorized(await refused(ioV2, sb.url + '/socket', { query: { token: token('x', { ttl: -60 }) } }), 'expired_token');
    assertV2Unauthorized(await refused(ioV2, sb.url + '/socket', { transports: ['websocket'], query: { token: 'garbage' } }), 'invalid_token');
  });

  it('refuses other namespaces with "Invalid namespace"', T, async () => {
    for (const nsp of ['/other', '/socket/42']) {
      const err = await refused(ioV2, sb.url + nsp, { query: { token: token(uid('n')) } });
      const message = typeof err === 'string' ? err : err?.message;
      assert.equal(message, 'Invalid namespace', `${nsp}: ${JSON.stringify(err)}`);
    }
  });
});

describe('v2 client: the router', () => {
  it('both routes, deliveries to v2 and v4 devices, sender\'s other devices get id: from', T, async (t) => {
    const connect = devices(t, sb.url);
    const a = uid('a');
    const b = uid('b');
    const a1 = await connect(a, { client: 'v2', via: 'query' });
    const a2 = await connect(a); // v4
    const b1 = await connect(b, { client: 'v2', via: 'query', transports: ['websocket'] });
    const b2 = await connect(b, { transports: ['polling'] }); // v4
    const texts = [];
    for (const [route, send] of [
      ['direct', (args) => ack(a1.socket, 'sendMessage', args)],
      ['envelope', (args) => ack(a1.socket, 'message', { event: 'sendMessage', args })],
    ]) {
      const text = `v2 ${route} ${uid('t')}`;
      const msg = assertSent(await send({ to: b, text }), { from: a, to: b, text });
      for (const d of [b1, b2]) assert.deepEqual(await d.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
      assert.deepEqual(await a2.inbox.next(isSent(text)), { event: 'message_sent', id: a, args: msg });
      texts.push(text);
    }
    // A v4 device answers; the v2 sender did not get its own messages.
    const m = await marker(b2, a);
    for (const text of texts) {
      assert.equal(await countBefore(a1.inbox, isSent(text), m), 0, 'the v2 sending socket got its own message_sent');
      assert.equal(await countBefore(a2.inbox, isSent(text), m), 1);
    }
    const got = await a1.inbox.next(m);
    assert.equal(got.id, a);
    assert.equal(got.args.from, b);
  });

  it('postUpdated reaches v2 devices; errors answer by ack or by message, and the socket stays', T, async (t) => {
    const connect = devices(t, sb.url);
    const a = uid('a');
    const b = uid('b');
    const a1 = await connect(a, { client: 'v2', via: 'query' });
    const b1 = await connect(b, { client: 'v2', via: 'query' });
    const postId = uid('post');
    assert.deepEqual(await ack(a1.socket, 'message', { event: 'postUpdated', args: { postId, mentions: [b, b] } }), { ok: true, notified: 1 });
    const n = await b1.inbox.next((m) => m?.event === 'post_updated_notification');
    assert.equal(typeof n?.args?.message, 'string');
    assert.deepEqual(n, { event: 'post_updated_notification', id: b, args: { postId, by: a, message: n.args.message } });

    assertAckError(await ack(a1.socket, 'nope', {}), 'unknown_event');
    assertAckError(await ack(a1.socket, 'message', 'not an envelope'), 'invalid_args');
    assertAckError(await ack(a1.socket, 'sendMessage', { to: b, text: '' }), 'invalid_args');
    assertAckError(await ack(a1.socket, 'sendMessage', { to: b, text: Buffer.from('bin') }), 'invalid_args');
    a1.socket.emit('nope', {});
    assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'unknown_event', event: 'nope' });
    a1.inbox.got.length = 0;
    a1.socket.emit('message', { event: 'sendMessage', args: { to: b } });
    assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'invalid_args', event: 'sendMessage' });
    assert.deepEqual(a1.disconnects, []);
    assert.ok(a1.socket.connected);
    const text = '😀'.repeat(4096);
    const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text }), { from: a, to: b, text });
    assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
  });
});

describe('v2 client: heartbeat (Engine.IO v3: the client pings)', () => {
  let fast;
  before(async () => { fast = await startSwitchboard({ env: { JWT_SECRET: SECRET, PING_INTERVAL: '200ms', PING_TIMEOUT: '300ms' } }); });
  after(async () => { await fast?.stop(); });
  for (const transports of [['websocket'], ['polling'], undefined]) {
    it(`the server answers the client's pings and the connection stays (${transports ?? 'default'})`, T, async (t) => {
      const connect = devices(t, fast.url);
      const a = uid('a');
      const a1 = await connect(a, { client: 'v2', via: 'query', transports });
      await heartbeats(a1.socket, 'pong', 5);
      assert.deepEqual(a1.disconnects, []);
      const reply = await ack(a1.socket, 'sendMessage', { to: uid('x'), text: 'after five pongs' });
      assert.equal(reply?.ok, true, JSON.stringify(reply));
    });
  }
});
