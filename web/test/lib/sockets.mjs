// Helpers for the Socket.IO client-compatibility suites (socket-v4, socket-v3,
// socket-v2, cluster-delivery): tokens of every kind, connected devices with
// an inbox attached before the first packet can arrive, acks with a deadline,
// exact shape assertions for the contract's payloads, and bounded wait/retry
// loops.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { io as ioV3 } from 'socket.io-client-v3';
import { collect, signToken } from './harness.mjs';

export { ioV4, ioV3, ioV2 };

// The fixed JWT_SECRET every non-dev server in these suites runs with.
export const SECRET = 'switchboard-socket-suite-secret-6f1c2a';

let seq = 0;
// uid makes a user id that no other test (or earlier run) uses.
export function uid(prefix = 'u') {
  seq += 1;
  return `${prefix}-${process.pid}-${seq}-${Math.random().toString(36).slice(2, 8)}`;
}

const now = () => Math.floor(Date.now() / 1000);
const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

// token: a valid HS256 access token for user (harness.signToken does the signing).
export function token(user, { secret = SECRET, ttl = 3600, claims = {} } = {}) {
  return signToken(secret, { sub: user, iat: now(), exp: now() + ttl, ...claims });
}

// hmacToken signs with another HMAC algorithm (HS384, HS512) and the right
// secret: a server that accepts any HMAC would let it through.
export function hmacToken(alg, secret, claims) {
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  const head = b64({ alg, typ: 'JWT' }) + '.' + b64(claims);
  return head + '.' + createHmac(hash, secret).update(head).digest('base64url');
}

// The invalid tokens, each with what makes it invalid. All carry a future exp,
// so none of them may be reported as expired.
export function invalidTokens(user) {
  const claims = { sub: user, iat: now(), exp: now() + 3600 };
  const good = token(user);
  const [h, p] = good.split('.');
  const noneHead = b64({ alg: 'none', typ: 'JWT' });
  return {
    'bad signature (other secret)': token(user, { secret: SECRET + '-other' }),
    'tampered payload': `${h}.${b64({ ...claims, sub: user + '-admin' })}.${good.split('.')[2]}`,
    'alg none, empty signature': `${noneHead}.${p}.`,
    'alg none, HS256 signature bytes': `${noneHead}.${p}.${createHmac('sha256', SECRET).update(`${noneHead}.${p}`).digest('base64url')}`,
    'HS384 with the right secret': hmacToken('HS384', SECRET, claims),
    'HS512 with the right secret': hmacToken('HS512', SECRET, claims),
    'RS256 header, HMAC signature': signToken(SECRET, claims, { alg: 'RS256', typ: 'JWT' }),
    'no sub claim': signToken(SECRET, { iat: now(), exp: now() + 3600 }),
    'empty sub': signToken(SECRET, { sub: '', exp: now() + 3600 }),
    'sub not a string': signToken(SECRET, { sub: 42, exp: now() + 3600 }),
    'exp not a number': signToken(SECRET, { sub: user, exp: 'tomorrow' }),
    'garbage': 'garbage',
    'three garbage segments': 'not.a.jwt',
    'payload not JSON': `${h}.${Buffer.from('{"sub":').toString('base64url')}.${good.split('.')[2]}`,
  };
}

// open connects a client and resolves with a device: the socket, an inbox
// (harness.collect) attached before any packet can arrive, and the
// disconnect reasons seen. It rejects with the connect_error (v4) or the
// namespace error (v2, event "error").
export function open(io, url, opts = {}, timeoutMs = 10000) {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: timeoutMs, ...opts });
  const device = { socket, inbox: collect(socket), disconnects: [] };
  socket.on('disconnect', (reason) => {
    device.disconnects.push(reason);
    if (process.env.SB_SHOW_LOGS) console.error(`socket of ${url} disconnected: ${reason}`);
  });
  return new Promise((resolve, reject) => {
    const fail = (err) => { clearTimeout(t); socket.close(); reject(err); };
    const t = setTimeout(() => fail(new Error(`connect to ${url} timed out`)), timeoutMs + 1000);
    socket.once('connect', () => { clearTimeout(t); resolve(device); });
    socket.once('connect_error', fail);
    socket.once('error', fail);
  });
}

// refused resolves with the error of a connection attempt that must fail.
export async function refused(io, url, opts = {}) {
  let device;
  try {
    device = await open(io, url, opts);
  } catch (err) {
    return err;
  }
  device.socket.close();
  throw new assert.AssertionError({ message: `expected the connection to ${url} to be refused, but it connected` });
}

// Devices opens devices against one server within one test and closes every
// one of them when the test ends, pass or fail. They connect with io
// (socket.io-client v4 unless told), or with v2 when a device asks for it.
export function devices(t, baseUrl, io = ioV4) {
  const opened = [];
  t.after(() => { for (const d of opened) d.socket.close(); });
  return async function connect(user, { client = 'v4', via = 'auth', tok, transports, nsp = '/socket', url = baseUrl } = {}) {
    const tk = tok ?? token(user);
    const opts = {};
    if (transports) opts.transports = transports;
    if (via === 'auth') opts.auth = { token: tk };
    else if (via === 'query') opts.query = { token: tk };
    else if (via === 'header') opts.extraHeaders = { Authorization: `Bearer ${tk}` };
    const d = await open(client === 'v2' ? ioV2 : io, url + nsp, opts);
    d.user = user;
    opened.push(d);
    return d;
  };
}

// ack emits and resolves with the acknowledgement's first argument; a missing
// ack fails the test after timeoutMs instead of hanging it.
export function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ack for "${event}" within 10 s (socket connected: ${socket.connected})`)), 10000);
    socket.emit(event, ...args, (reply) => { clearTimeout(t); resolve(reply); });
  });
}

// RFC 3339 with exactly three fractional digits.
export const SENT_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(?:Z|[+-]\d{2}:\d{2})$/;

// assertMsg checks MSG exactly: {id, from, to, text, sentAt}, nothing else.
export function assertMsg(msg, { from, to, text }) {
  assert.equal(typeof msg, 'object');
  assert.equal(typeof msg.id, 'string', 'MSG.id must be a string');
  assert.ok(msg.id.length > 0, 'MSG.id must not be empty');
  assert.equal(typeof msg.sentAt, 'string', 'MSG.sentAt must be a string');
  assert.match(msg.sentAt, SENT_AT);
  assert.ok(!Number.isNaN(Date.parse(msg.sentAt)), `sentAt ${msg.sentAt} does not parse`);
  assert.deepEqual(msg, { id: msg.id, from, to, text, sentAt: msg.sentAt });
}

// assertSent checks a sendMessage ack exactly and returns MSG.
export function assertSent(reply, { from, to, text }) {
  assert.deepEqual(Object.keys(reply ?? {}).sort(), ['message', 'ok'], `ack ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, true);
  assertMsg(reply.message, { from, to, text });
  return reply.message;
}

// assertAckError checks {ok:false, error:{code, message}} exactly.
export function assertAckError(reply, code) {
  const message = reply?.error?.message;
  assert.equal(typeof message, 'string', `error.message must be a string in ${JSON.stringify(reply)}`);
  assert.ok(message.length > 0, 'error.message must not be empty');
  assert.deepEqual(reply, { ok: false, error: { code, message } });
}

// assertErrorEvent checks the ack-less error delivery exactly.
export function assertErrorEvent(m, { user, code, event }) {
  const message = m?.args?.message;
  assert.equal(typeof message, 'string', `args.message must be a string in ${JSON.stringify(m)}`);
  assert.ok(message.length > 0, 'args.message must not be empty');
  assert.deepEqual(m, { event: 'error', id: user, args: { code, message, event } });
}

export const isSent = (text) => (m) => m?.event === 'message_sent' && m?.args?.text === text;
export const isError = (m) => m?.event === 'error';

// countBefore counts the inbox messages matching pred that arrived before the
// first message matching markerPred (which it waits for). A duplicate of an
// earlier delivery that travelled the same path would have arrived first.
export async function countBefore(inbox, pred, markerPred, timeoutMs = 10000) {
  const marker = await inbox.next(markerPred, timeoutMs);
  return inbox.got.slice(0, inbox.got.indexOf(marker)).filter(pred).length;
}

// retry calls fn (attempt index) until it returns a truthy value; bounded.
export async function retry(fn, { attempts = 20, intervalMs = 500, what = 'condition' } = {}) {
  let last;
  for (let i = 0; i < attempts; i++) {
    last = await fn(i);
    if (last) return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what} not reached after ${attempts} attempts`);
}

export async function getJSON(url, init) {
  const r = await fetch(url, init);
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, headers: r.headers, body };
}

// waitStatus polls a health endpoint until it answers status (bounded). On
// failure the error carries the last answer (or the fetch error's cause) and,
// when server (a harness.startSwitchboard result) is given, its state and
// the tail of its stderr.
export async function waitStatus(url, status, { timeoutMs = 20000, server } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try { last = await getJSON(url); } catch (err) { last = { error: `${err}${err.cause ? ` (${err.cause})` : ''}` }; }
    if (last.status === status) return last;
    if (Date.now() > deadline) {
      let msg = `${url} did not answer ${status} within ${timeoutMs} ms; last: ${JSON.stringify({ status: last.status, body: last.body, error: last.error })}`;
      if (server) msg += `\nprocess exit code ${server.proc.exitCode}, signal ${server.proc.signalCode}; stderr tail:\n${server.lines.slice(-20).join('\n')}`;
      throw new Error(msg);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// marker sends a uniquely worded message from a device to a user and returns
// the predicate that recognises its delivery (see countBefore).
export async function marker(from, to) {
  const text = uid('marker');
  const reply = await ack(from.socket, 'sendMessage', { to, text });
  assert.equal(reply?.ok, true, `marker not accepted: ${JSON.stringify(reply)}`);
  return isSent(text);
}

// upgraded resolves once the client's Engine.IO connection runs on websocket.
export function upgraded(socket, timeoutMs = 10000) {
  const engine = socket.io.engine;
  if (engine.transport.name === 'websocket') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no upgrade to websocket')), timeoutMs);
    engine.once('upgrade', () => { clearTimeout(t); resolve(); });
  });
}

// pair connects two fresh users, a and b, one device each, for one test,
// with io (as devices).
export async function pair(t, baseUrl, { aOpts = {}, bOpts = {}, io = ioV4 } = {}) {
  const connect = devices(t, baseUrl, io);
  const a = uid('a');
  const b = uid('b');
  return { connect, a, b, a1: await connect(a, aOpts), b1: await connect(b, bOpts) };
}

// heartbeats resolves after the client's Manager (or emitter) has emitted
// event n times: "ping" for v4 (Engine.IO v4: the server pings), "pong" for
// v2 (Engine.IO v3: the client pings and the server must answer).
export function heartbeats(socket, event, n, timeoutMs = 15000, emitter = socket.io) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const on = () => { seen += 1; if (seen >= n) { clearTimeout(t); emitter.off(event, on); resolve(); } };
    const t = setTimeout(() => { emitter.off(event, on); reject(new Error(`saw ${seen} of ${n} "${event}" heartbeats (socket connected: ${socket.connected})`)); }, timeoutMs);
    emitter.on(event, on);
  });
}

// answeredPings is heartbeats(socket, "ping", n) for socket.io-client v3,
// whose Manager never emits "ping": it listens for the engine's "ping",
// which its engine.io-client 4.1 does not emit. That engine emits "pong"
// each time it has answered a ping of the server: those are counted.
export function answeredPings(socket, n, timeoutMs = 15000) {
  return heartbeats(socket, 'pong', n, timeoutMs, socket.io.engine);
}
