// Issue 13, the application's part, against the built binary:
// - argument limits: postId, user ids (a token's sub, sendMessage's "to",
//   postUpdated's mentions) and event names have a maximum of 256
//   characters; past it, or with control/bidi characters in a user id, the
//   answer is invalid_args (invalid_token for a sub), counted in /metrics;
// - what one postUpdated can make the process write to Redis is bounded,
//   measured on a real redis-server (INFO stats, total_net_input_bytes);
// - a flooding socket is logged once, not once per event, while every
//   refused event still gets its rate_limited answer;
// - no secret (JWT_SECRET, API_KEY, the REDIS_URL password, tokens) in any
//   log line, Redis failing or not.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import {
  collect, connectSocket, devToken, emitWithAck, exited, freePort, signToken, startRedis, startSwitchboard, waitForPort,
} from './lib/harness.mjs';
import { assertLogLines, pollUntil, request, runToExit, scrape, stopSwitchboard } from './lib/process.mjs';

const SECRET = 'hardening-app-test-secret-of-more-than-32-bytes';
const MAX = 256; // handlers.MaxUserIDChars, MaxPostIDChars, MaxEventNameChars

const token = (sub) => signToken(SECRET, { sub, exp: Math.floor(Date.now() / 1000) + 3600 });
const connect = (sb, sub) => connectSocket(io, sb.url + '/socket', { auth: { token: token(sub) }, transports: ['websocket'] });

// refusedConnect resolves with the connect_error of a token for sub.
async function refusedConnect(sb, sub) {
  try {
    const s = await connect(sb, sub);
    s.close();
  } catch (err) {
    return err;
  }
  assert.fail(`a token with sub ${JSON.stringify(sub).slice(0, 80)}… connected`);
}

const metric = (m, name, labels = {}) => m.samples.find((s) => s.name === name
  && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value ?? 0;

// redisInfo reads one INFO section of a redis-server as a map.
function redisInfo(port, section) {
  const r = spawnSync('redis-cli', ['-p', String(port), 'INFO', section], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Object.fromEntries(r.stdout.split('\r\n').filter((l) => l.includes(':')).map((l) => l.split(':')));
}
const netInput = (port) => Number(redisInfo(port, 'stats').total_net_input_bytes);

function invalidArgs(ack, what) {
  assert.equal(ack?.ok, false, `${what}: acked ${JSON.stringify(ack).slice(0, 200)}`);
  assert.equal(ack.error.code, 'invalid_args', `${what}: ${JSON.stringify(ack.error)}`);
  assert.ok(JSON.stringify(ack).length < 2048, `${what}: the error echoes what it refuses`);
}

describe('argument limits (real Redis, classic adapter)', () => {
  let redis;
  let sb;
  let alice;
  before(async () => {
    redis = await startRedis();
    sb = await startSwitchboard({ env: { REDIS_URL: redis.url, JWT_SECRET: SECRET, RATE_LIMIT: '0' } });
    alice = await connect(sb, 'alice');
  });
  after(async () => {
    alice?.close();
    if (sb) {
      assertLogLines(sb.lines);
      assert.equal(await stopSwitchboard(sb), 0);
    }
    await redis?.stop();
  });

  it('postId: 256 characters accepted, 257 refused with invalid_args, both routes', async () => {
    for (const [label, emit] of [
      ['direct', (args) => emitWithAck(alice, 'postUpdated', args)],
      ['through message', (args) => emitWithAck(alice, 'message', { event: 'postUpdated', args })],
    ]) {
      const ok = await emit({ postId: 'p'.repeat(MAX), mentions: ['bob'] });
      assert.deepEqual(ok, { ok: true, notified: 1 }, `${label}: 256`);
      const wide = await emit({ postId: '😀'.repeat(MAX), mentions: ['bob'] });
      assert.deepEqual(wide, { ok: true, notified: 1 }, `${label}: 256 four-byte characters`);
      invalidArgs(await emit({ postId: 'p'.repeat(MAX + 1), mentions: ['bob'] }), `${label}: postId of 257`);
      invalidArgs(await emit({ postId: 'p'.repeat(450_000), mentions: ['bob'] }), `${label}: postId of 450 KB`);
    }
  });

  it('"to" and mentions: 256 accepted; 257, NUL, other controls and bidi overrides refused with invalid_args', async () => {
    const bad = ['u'.repeat(MAX + 1), 'bob\u0000', 'bob\n', '\u202ebob', 'b\u2067ob', 'bob\u0085'];
    const bob = await connect(sb, 'u'.repeat(MAX));
    try {
      const inbox = collect(bob);
      const sent = await emitWithAck(alice, 'sendMessage', { to: 'u'.repeat(MAX), text: 'hi' });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      await inbox.next((m) => m.event === 'message_sent' && m.args.text === 'hi');
      const ok = await emitWithAck(alice, 'postUpdated', { postId: 'p1', mentions: ['carol', 'u'.repeat(MAX)] });
      assert.deepEqual(ok, { ok: true, notified: 2 });
      await inbox.next((m) => m.event === 'post_updated_notification' && m.args.postId === 'p1');
      for (const id of bad) {
        invalidArgs(await emitWithAck(alice, 'sendMessage', { to: id, text: 'x' }), `to ${JSON.stringify(id).slice(0, 20)}`);
        invalidArgs(await emitWithAck(alice, 'postUpdated', { postId: 'p2', mentions: ['carol', id] }), `mention ${JSON.stringify(id).slice(0, 20)}`);
      }
      // Nothing of the refused events was delivered: the next delivery is
      // the one after them.
      await emitWithAck(alice, 'sendMessage', { to: 'u'.repeat(MAX), text: 'after' });
      await inbox.next((m) => m.args?.text === 'after');
      assert.deepEqual(inbox.got.map((m) => m.args.text ?? m.args.postId), ['hi', 'p1', 'after']);
    } finally {
      bob.close();
    }
  });

  it('event names: 256 characters is an unknown event, 257 is refused with invalid_args, the name cut to 256', async () => {
    const unknown = await emitWithAck(alice, 'e'.repeat(MAX), {});
    assert.equal(unknown.error?.code, 'unknown_event');
    invalidArgs(await emitWithAck(alice, 'e'.repeat(MAX + 1), {}), 'direct name of 257');
    invalidArgs(await emitWithAck(alice, 'message', { event: 'e'.repeat(450_000), args: {} }), 'envelope name of 450 KB');
    // Without an ack, the error envelope names the event, cut to 256.
    const inbox = collect(alice);
    alice.emit('e'.repeat(100_000), {});
    const err = await inbox.next((m) => m.event === 'error');
    assert.equal(err.args.code, 'invalid_args');
    assert.equal(err.args.event, 'e'.repeat(MAX));
  });

  it('a token whose sub is too long or holds NUL, a control or a bidi character is refused with invalid_token', async () => {
    const ok = await connect(sb, 'ü'.repeat(MAX));
    ok.close();
    for (const sub of ['s'.repeat(MAX + 1), 's'.repeat(450_000), 'ali\u0000ce', 'alice\r\nadmin', '\u202eecila', 'a\u2066b']) {
      const err = await refusedConnect(sb, sub);
      assert.equal(err.message, 'unauthorized', JSON.stringify(sub).slice(0, 40));
      assert.deepEqual(err.data, { reason: 'invalid_token' }, JSON.stringify(sub).slice(0, 40));
    }
    // A sub that is not UTF-8 at all: the claims' JSON carries raw bytes.
    const head = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
    const claims = Buffer.concat([Buffer.from('{"sub":"ali'), Buffer.from([0xff, 0xfe]), Buffer.from(`ce","exp":${Math.floor(Date.now() / 1000) + 60}}`)]);
    const unsigned = head + '.' + claims.toString('base64url');
    const raw = unsigned + '.' + createHmac('sha256', SECRET).update(unsigned).digest('base64url');
    try {
      (await connectSocket(io, sb.url + '/socket', { auth: { token: raw }, transports: ['websocket'] })).close();
      assert.fail('a sub of invalid UTF-8 connected');
    } catch (err) {
      assert.deepEqual(err.data, { reason: 'invalid_token' }, String(err));
    }
  });

  it('the HTTP API takes the same user ids: dev tokens and /api/events answer 400 past the limits', async () => {
    const dev = await startSwitchboard({ env: { API_KEY: 'hardening-key' } });
    try {
      const post = (p, body, headers = {}) => request(dev.url + p, {
        method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body),
      });
      const events = (users) => post('/api/events', { users, event: 'x', args: {} }, { authorization: 'Bearer hardening-key' });
      assert.equal((await post('/api/dev/token', { user: 'ü'.repeat(MAX) })).status, 200);
      assert.equal((await events(['ü'.repeat(MAX)])).status, 202);
      for (const id of ['u'.repeat(MAX + 1), 'a\u0000b', '\u202eab']) {
        assert.equal((await post('/api/dev/token', { user: id })).status, 400, JSON.stringify(id).slice(0, 20));
        assert.equal((await events(['bob', id])).status, 400, JSON.stringify(id).slice(0, 20));
      }
      const m = await scrape(dev.url);
      assert.equal(metric(m, 'switchboard_limit_refusals_total', { arg: 'user_id', reason: 'too_long' }), 2);
      assert.equal(metric(m, 'switchboard_limit_refusals_total', { arg: 'user_id', reason: 'bad_characters' }), 4);
    } finally {
      assert.equal(await stopSwitchboard(dev), 0);
    }
  });

  it('/metrics counts every refusal by argument and reason', async () => {
    const m = await scrape(sb.url);
    const refusals = (arg, reason) => metric(m, 'switchboard_limit_refusals_total', { arg, reason });
    assert.equal(m.types.get('switchboard_limit_refusals_total'), 'counter');
    // The tests above: 2 routes × 2 postIds; 6 bad ids × (to + mention);
    // 3 event names; 7 subs.
    assert.equal(refusals('post_id', 'too_long'), 4);
    assert.equal(refusals('user_id', 'too_long'), 2);
    assert.equal(refusals('user_id', 'bad_characters'), 10);
    assert.equal(refusals('event_name', 'too_long'), 3);
    assert.equal(refusals('token_sub', 'too_long'), 2);
    assert.equal(refusals('token_sub', 'bad_characters'), 5);
    assert.equal(metric(m, 'switchboard_auth_failures_total', { reason: 'invalid_token' }), 7);
  });

  it('one maximal postUpdated writes a bounded number of bytes to Redis; the 450 KB postId of the issue writes none', async () => {
    // The largest event the limits let through: a 256-character sender,
    // postId and 100 distinct 256-character mentions, every character 4
    // bytes of UTF-8. The last mention is connected here: with recovery on,
    // this process's own sockets get a broadcast back from Redis, after
    // every one before it.
    const wide = (c, i) => String(i).padStart(3, '0') + c.repeat(MAX - 3);
    const sender = await connect(sb, wide('😀', 999));
    const mentions = Array.from({ length: 100 }, (_, i) => wide('😃', i));
    const last = await connect(sb, mentions.at(-1));
    try {
      const inbox = collect(last);
      const postId = '📌'.repeat(MAX);
      const before = netInput(redis.port);
      const ack = await emitWithAck(sender, 'postUpdated', { postId, mentions });
      assert.deepEqual(ack, { ok: true, notified: 100 });
      await inbox.next((m) => m.event === 'post_updated_notification' && m.args.postId === postId);
      const maximal = netInput(redis.port) - before;

      const before450 = netInput(redis.port);
      invalidArgs(await emitWithAck(sender, 'postUpdated', { postId: 'x'.repeat(450_000), mentions }), '450 KB postId');
      // Anything it published would come before this delivery.
      await emitWithAck(sender, 'postUpdated', { postId: 'marker', mentions: [mentions.at(-1)] });
      await inbox.next((m) => m.args?.postId === 'marker');
      const refused = netInput(redis.port) - before450;

      // A maximal sendMessage: 4096 four-byte characters, between two
      // 256-character users, to the recipient and the sender's other device.
      const to = await connect(sb, wide('😎', 998));
      const otherDevice = await connect(sb, wide('😀', 999));
      const text = '💬'.repeat(4096);
      const beforeSend = netInput(redis.port);
      const toInbox = collect(to);
      const otherInbox = collect(otherDevice);
      assert.equal((await emitWithAck(sender, 'sendMessage', { to: wide('😎', 998), text })).ok, true);
      await toInbox.next((m) => m.event === 'message_sent' && m.args.text === text);
      await otherInbox.next((m) => m.event === 'message_sent' && m.args.text === text);
      const maximalSend = netInput(redis.port) - beforeSend;
      to.close();
      otherDevice.close();

      process.stderr.write(`# Redis total_net_input_bytes: maximal postUpdated ${maximal}, maximal sendMessage ${maximalSend}, `
        + `refused 450 KB postId + a 1-mention marker ${refused}\n`);
      // The bounds of the README's "Limits and guarantees": a delivery
      // carries each id, the postId and the text a bounded number of times
      // (the notes compute it): postUpdated at most 100 × 12 KiB,
      // sendMessage 2 × 32 KiB.
      assert.ok(maximal <= 100 * 12 * 1024, `one maximal postUpdated wrote ${maximal} bytes to Redis`);
      assert.ok(maximalSend <= 2 * 32 * 1024, `one maximal sendMessage wrote ${maximalSend} bytes to Redis`);
      assert.ok(maximal >= 100 * 4 * 4 * MAX, `the maximal event was measured (${maximal} bytes)`);
      assert.ok(refused < 64 * 1024, `the refused event wrote ${refused} bytes to Redis`);
    } finally {
      sender.close();
      last.close();
    }
  });
});

// stderrLines counts the JSON lines of sb's stderr that match pred.
const parsed = (sb) => sb.lines.map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter(Boolean);

describe('a flooding socket is logged once', () => {
  let sb;
  before(async () => {
    // A bucket that does not refill during the test: exactly RATE_BURST
    // events pass, every other one is refused.
    sb = await startSwitchboard({ env: { RATE_LIMIT: '0.001', RATE_BURST: '40' } });
  });
  after(async () => { if (sb) await stopSwitchboard(sb); });

  it('300 events over the limit: 300 rate_limited answers, one WARN line; flooding on disconnects it, still one WARN line', async () => {
    const s = await connectSocket(io, sb.url + '/socket', { auth: { token: await devToken(sb.url, 'flooder') }, transports: ['websocket'] });
    const id = s.id; // socket.io-client forgets it at disconnect
    const acks = await Promise.all(Array.from({ length: 340 }, (_, i) => emitWithAck(s, 'sendMessage', { to: 'nobody', text: `m${i}` })));
    assert.equal(acks.filter((a) => a.ok === true).length, 40);
    const limited = acks.filter((a) => a.ok === false && a.error.code === 'rate_limited');
    assert.equal(limited.length, 300, 'every refused event has its rate_limited answer');

    // Past ten bursts of refusals in a row the socket is disconnected.
    const gone = new Promise((resolve) => s.once('disconnect', resolve));
    for (let i = 0; i < 1000; i++) s.emit('sendMessage', { to: 'nobody', text: 'flood' });
    assert.match(await gone, /^(io server disconnect|transport close)$/);

    const m = await scrape(sb.url);
    assert.equal(metric(m, 'switchboard_flood_disconnects_total'), 1);
    assert.ok(metric(m, 'switchboard_events_total', { event: 'sendMessage', result: 'rate_limited' }) >= 400, 'ten bursts of refusals in a row, counted');

    assert.equal(await stopSwitchboard(sb), 0);
    assertLogLines(sb.lines);
    const mine = parsed(sb).filter((l) => JSON.stringify(l).includes(id));
    const warns = mine.filter((l) => l.level === 'WARN' || l.level === 'ERROR');
    assert.equal(warns.length, 1, `one WARN line for the flooding socket, got:\n${warns.map((l) => JSON.stringify(l)).join('\n')}`);
    assert.match(warns[0].msg, /rate limited/);
    assert.equal(warns[0].user, 'flooder');
    assert.equal(mine.filter((l) => /disconnecting a flooding socket/.test(l.msg)).length, 1);
    assert.ok(sb.lines.length < 50, `${sb.lines.length} log lines for one flood`);
  });
});

// A redis-server that wants a password other than the one switchboard has.
async function startRedisWithPassword(password) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-redis-auth-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--requirepass', password], { stdio: 'ignore' });
  await waitForPort(port);
  return { port, async stop() { proc.kill('SIGKILL'); await exited(proc); rmSync(dir, { recursive: true, force: true }); } };
}

describe('no secret in any log line', () => {
  const JWT = 'jwt-secret-that-must-never-be-logged-0123456789';
  const API_KEY = 'api-key-that-must-never-be-logged';
  const PASSWORD = 'redis-password-that-must-never-be-logged';

  async function exercise(redisURL) {
    const sb = await startSwitchboard({ env: { REDIS_URL: redisURL, JWT_SECRET: JWT, API_KEY, LOG_LEVEL: 'debug' } });
    const forged = signToken('not-the-secret', { sub: 'mallory', exp: Math.floor(Date.now() / 1000) + 60 });
    const good = signToken(JWT, { sub: 'alice', exp: Math.floor(Date.now() / 1000) + 60 });
    try {
      // Tokens in every source, good and bad; the push API with a wrong
      // key and the right one.
      for (const opts of [{ auth: { token: forged } }, { query: { token: forged } }, { extraHeaders: { Authorization: `Bearer ${forged}` } }]) {
        await assert.rejects(connectSocket(io, sb.url + '/socket', { transports: ['polling'], ...opts }));
      }
      const s = await connectSocket(io, sb.url + '/socket', { auth: { token: good }, query: { token: good } });
      await emitWithAck(s, 'sendMessage', { to: 'bob', text: 'hi' });
      s.close();
      for (const key of ['wrong-key', API_KEY]) {
        await request(sb.url + '/api/events', {
          method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ users: ['bob'], event: 'x', args: {} }),
        });
      }
      // The readiness probe has reported Redis by now.
      await pollUntil(() => sb.lines.some((l) => /redis/i.test(l) && /WARN|ERROR/.test(l)), { what: 'a log line about Redis' });
    } finally {
      assert.equal(await stopSwitchboard(sb), 0);
    }
    const stderr = sb.lines.join('\n');
    for (const secret of [JWT, API_KEY, PASSWORD, forged, good, forged.split('.')[2], good.split('.')[2]]) {
      assert.ok(!stderr.includes(secret), `stderr holds a secret (${secret.slice(0, 12)}…):\n${stderr}`);
    }
    return stderr;
  }

  it('Redis refusing the password of REDIS_URL', async () => {
    const redis = await startRedisWithPassword('the-other-password');
    try {
      const stderr = await exercise(`redis://:${PASSWORD}@127.0.0.1:${redis.port}/0`);
      assert.match(stderr, /WRONGPASS|invalid password|NOAUTH|auth/i, 'the Redis refusal was logged (without the password)');
    } finally {
      await redis.stop();
    }
  });

  it('Redis unreachable', async () => {
    await exercise(`redis://user:${PASSWORD}@127.0.0.1:${await freePort()}/0`);
  });

  it('a REDIS_URL too malformed to parse: the exit-2 line names the variable, not the password', async () => {
    for (const url of [`redis://:${PASSWORD}@h:notaport/0`, `redis://:${PASSWORD} x@h:6379/0`, `redis://:${PASSWORD}#x@h:6379/0`]) {
      const r = await runToExit({ REDIS_URL: url, JWT_SECRET: JWT });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /REDIS_URL/);
      assert.ok(!r.stderr.includes(PASSWORD), `the password is in ${r.stderr}`);
    }
  });

  it('a short JWT_SECRET: one WARN line at start, naming the variable, never the secret', async () => {
    const sb = await startSwitchboard({ env: { JWT_SECRET: 's3cret' } });
    assert.equal(await stopSwitchboard(sb), 0);
    const warns = parsed(sb).filter((l) => l.level === 'WARN' && /JWT_SECRET/.test(l.msg));
    assert.equal(warns.length, 1, sb.lines.join('\n'));
    assert.ok(!sb.lines.join('\n').includes('s3cret'));
  });
});
