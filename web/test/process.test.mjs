// The built binary as a process: configuration errors (exit 2, one JSON
// line naming the variable), a taken port, log levels, graceful shutdown on
// SIGTERM/SIGINT with well-behaved and with hanging clients, and garbage at
// the transport (polling bodies, raw websocket frames) that must not kill it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { connectSocket, devToken, emitWithAck, freePort, once, startSwitchboard } from './lib/harness.mjs';
import {
  assertLogLines, closed, encodeFrame, hangingRequest, logProblems, pollingHandshake, rawWebSocket, request,
  runToExit, socketIOOverRaw, stopSwitchboard, withTimeout,
} from './lib/process.mjs';

// ---------------------------------------------------------- configuration ---

describe('configuration', () => {
  const bad = [
    ['ADDR', 'not-an-address'],
    ['ADDR', '127.0.0.1:99999'],
    ['ADDR', '127.0.0.1:http-ish'],
    ['REDIS_URL', 'http://x'],
    ['REDIS_URL', 'redis://:99999999'],
    ['REDIS_URL', 'not a url'],
    ['REDIS_URL', 'redis://127.0.0.1:6379/notadb'],
    ['PING_INTERVAL', 'abc'],
    ['PING_INTERVAL', '10'],
    ['PING_INTERVAL', '-5s'],
    ['PING_TIMEOUT', 'soon'],
    ['PING_TIMEOUT', '-1s'],
    ['SHUTDOWN_TIMEOUT', 'forever'],
    ['SHUTDOWN_TIMEOUT', '-2s'],
    ['RATE_LIMIT', '-1'],
    ['RATE_LIMIT', 'fast'],
    ['RATE_BURST', '-5'],
    ['RATE_BURST', 'lots'],
    ['MAX_PAYLOAD_BYTES', '-1'],
    ['MAX_PAYLOAD_BYTES', 'big'],
    ['LOG_LEVEL', 'verbose'],
    ['LOG_LEVEL', 'loud'],
    ['DEV_TOKENS', 'maybe'],
    ['ADVERTISE_ADDR', '0.0.0.0:7999'],
    ['ADVERTISE_ADDR', 'sb1'],
    ['ADVERTISE_ADDR', 'sb1:0'],
    ['REDIS_ADAPTER', 'streams'],
    ['REDIS_ADAPTER', 'dynamic-private'],
    ['REDIS_CLUSTER', '2'],
    ['REDIS_CLUSTER', 'cluster'],
    ['RECOVERY_WINDOW', 'a while'],
    ['RECOVERY_WINDOW', '120'],
    ['RECOVERY_WINDOW', '-2m'],
    ['RECOVERY_WINDOW', '100ms'],
    ['RECOVERY_WINDOW', '48h'],
    ['RECOVERY_MAX_PACKETS', '0'],
    ['RECOVERY_MAX_PACKETS', 'all'],
    ['RECOVERY_MAX_PACKETS', '2000000'],
    ['MAX_QUEUED_BYTES', '0'],
    ['MAX_QUEUED_BYTES', 'lots'],
    ['MAX_QUEUED_BYTES', '1000'], // under twice MAX_PAYLOAD_BYTES
    ['CONNECT_TIMEOUT', '10'],
    ['CONNECT_TIMEOUT', '0s'],
    ['HTTP_IDLE_TIMEOUT', 'never'],
    ['HTTP_BODY_TIMEOUT', '-1s'],
    ['HTTP_WRITE_TIMEOUT', '30'],
    ['OUTBOX_MAX_MESSAGES', '-1'],
    ['OUTBOX_MAX_MESSAGES', 'lots'],
    ['OUTBOX_MAX_AGE', '30'],
    ['OUTBOX_MAX_AGE', '1h'],
    ['JWT_SECRET_FILE', '/nonexistent/jwt_secret'],
    ['API_KEY_FILE', '/nonexistent/api_key'],
  ];
  for (const [name, value] of bad) {
    it(`${name}=${JSON.stringify(value)} exits 2 with one JSON stderr line naming ${name}`, async () => {
      const r = await runToExit({ [name]: value });
      assert.equal(r.timedOut, false, `${name}=${value}: the process kept running (it should refuse the value); stderr:\n${r.stderr}`);
      assert.equal(r.code, 2, `${name}=${value}: exit code; stderr:\n${r.stderr}`);
      assert.equal(r.lines.length, 1, `${name}=${value}: exactly one stderr line; got:\n${r.stderr}`);
      assertLogLines(r.lines);
      assert.ok(r.lines[0].includes(name), `${name}=${value}: the line names the variable: ${r.lines[0]}`);
    });
  }

  it('REDIS_CLUSTER=1 with a database other than 0 exits 2 naming REDIS_URL, without its password', async () => {
    const r = await runToExit({ REDIS_URL: 'redis://:hush-hush@127.0.0.1:6379/3', REDIS_CLUSTER: '1' });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.lines.length, 1, r.stderr);
    assertLogLines(r.lines);
    assert.ok(r.lines[0].includes('REDIS_URL'), r.lines[0]);
    assert.ok(!r.lines[0].includes('hush-hush'), `the password is in the log: ${r.lines[0]}`);
  });

  it('REDIS_ADAPTER=sharded with REDIS_CLUSTER=1 and no cluster to be found serves, is not ready, and stops', async () => {
    const seed = await freePort(); // nothing listens
    const sb = await startSwitchboard({ env: { REDIS_URL: `redis://127.0.0.1:${seed}`, REDIS_ADAPTER: 'sharded', REDIS_CLUSTER: 'yes' } });
    try {
      assert.equal((await request(sb.url + '/healthz')).status, 200);
      assert.equal((await request(sb.url + '/readyz')).status, 503, 'the cluster is unreachable');
      const hs = await pollingHandshake(sb.url);
      assert.ok(hs.open.sid, 'Engine.IO still answers');
    } finally {
      assert.equal(await stopSwitchboard(sb), 0);
      assertLogLines(sb.lines);
    }
  });

  it('good non-default values for every variable start a serving process', async () => {
    const redisPort = await freePort(); // nothing listens: the process must serve anyway
    const sb = await startSwitchboard({
      env: {
        REDIS_URL: `redis://:pw@127.0.0.1:${redisPort}/3`, PING_INTERVAL: '1m30s', PING_TIMEOUT: '1500ms',
        SHUTDOWN_TIMEOUT: '3s', RATE_LIMIT: '5', RATE_BURST: '7', MAX_PAYLOAD_BYTES: '12345', LOG_LEVEL: 'debug',
        DEV_TOKENS: '1', JWT_SECRET: 'cfg-secret', API_KEY: 'cfg-key', CORS_ORIGINS: 'http://a.test,http://b.test',
        ADVERTISE_ADDR: 'sb9.cluster.test:7999',
        RECOVERY_WINDOW: '90s', RECOVERY_MAX_PACKETS: '50',
      },
    });
    try {
      const hs = await pollingHandshake(sb.url);
      assert.equal(hs.open.pingInterval, 90000, 'PING_INTERVAL=1m30s in the Engine.IO open packet');
      assert.equal(hs.open.pingTimeout, 1500, 'PING_TIMEOUT=1500ms in the Engine.IO open packet');
      assert.equal(hs.open.maxPayload, 12345, 'MAX_PAYLOAD_BYTES in the Engine.IO open packet');
      assert.equal((await request(sb.url + '/readyz')).status, 503, 'Redis configured but down');
      const listening = sb.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'listening');
      assert.equal(listening.advertise, 'sb9.cluster.test:7999', 'ADVERTISE_ADDR in the start line');
      assert.match(hs.open.sid, /^[0-9a-f]{12}[\w-]{20}$/, 'with Redis, session ids start with the process\'s tag');
    } finally {
      assert.equal(await stopSwitchboard(sb), 0);
      assertLogLines(sb.lines);
    }
  });

  it('LOG_LEVEL=error writes only ERROR lines (nothing at info while starting, serving and stopping)', async () => {
    const sb = await startSwitchboard({ env: { LOG_LEVEL: 'error' } });
    try {
      const token = await devToken(sb.url, 'quiet');
      const s = await connectSocket(io, sb.url + '/socket', { auth: { token } });
      s.close();
    } finally {
      assert.equal(await stopSwitchboard(sb), 0);
    }
    assertLogLines(sb.lines);
    const levels = sb.lines.filter((l) => !l.startsWith('[stdout] ')).map((l) => JSON.parse(l).level);
    assert.deepEqual(levels.filter((l) => !/^error$/i.test(l)), [], `levels written with LOG_LEVEL=error: ${levels}`);
  });

  for (const level of ['warn', 'info']) {
    it(`LOG_LEVEL=${level} is accepted`, async () => {
      const sb = await startSwitchboard({ env: { LOG_LEVEL: level } });
      assert.equal(await stopSwitchboard(sb), 0);
      assertLogLines(sb.lines);
    });
  }

  it('a taken port (ADDR of a listening socket) fails at start: non-zero exit, JSON lines', async () => {
    const srv = net.createServer();
    await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
    try {
      const r = await runToExit({ ADDR: `127.0.0.1:${srv.address().port}` });
      assert.equal(r.timedOut, false, `the process kept running with a taken port; stderr:\n${r.stderr}`);
      assert.notEqual(r.code, 0, `exit code with a taken port; stderr:\n${r.stderr}`);
      assert.ok(r.lines.length >= 1, 'at least one stderr line explains the failure');
      assertLogLines(r.lines);
    } finally {
      srv.close();
    }
  });
});

// --------------------------------------------------------------- shutdown ---

// A socket.io-client v4 socket with reconnection on, recording its connects
// and disconnect reasons.
async function trackedClient(base, user, transports) {
  const token = await devToken(base, user);
  const socket = await connectSocket(io, base + '/socket', {
    auth: { token }, transports, reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 400,
  });
  // harness.connectSocket leaves once-listeners that close the socket on a
  // later connect_error/error; a reconnecting client must keep going.
  socket.off('connect_error');
  socket.off('error');
  const rec = { socket, connects: 1, reasons: [], errors: [] };
  socket.on('connect', () => { rec.connects += 1; });
  socket.on('connect_error', (err) => rec.errors.push({ message: err.message, data: err.data }));
  socket.on('disconnect', (reason) => rec.reasons.push(reason));
  return rec;
}

// After the signal the server may still answer (503) or be gone; a 200 is wrong.
async function readyzAfterSignal(base) {
  try {
    const r = await request(base + '/readyz', { timeoutMs: 5000 });
    return r.status;
  } catch (err) {
    return err.code || err.message;
  }
}

describe('shutdown', () => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    it(`${signal}: websocket and polling clients see a transport close (so they reconnect elsewhere) and the process exits 0`, async () => {
      const sb = await startSwitchboard({ env: { SHUTDOWN_TIMEOUT: '5s' } });
      const clients = [];
      try {
        clients.push(await trackedClient(sb.url, 'sd-ws', ['websocket']));
        clients.push(await trackedClient(sb.url, 'sd-poll', ['polling']));
        for (const c of clients) {
          const ack = await emitWithAck(c.socket, 'sendMessage', { to: 'nobody', text: 'before shutdown' });
          assert.equal(ack.ok, true, JSON.stringify(ack));
        }
        const disconnects = clients.map((c) => once(c.socket, 'disconnect', 15000).then((v) => (Array.isArray(v) ? v[0] : v)));
        sb.proc.kill(signal);
        const reasons = await Promise.all(disconnects);
        // The server has acted on the signal: it must not report ready now.
        const ready = await readyzAfterSignal(sb.url);
        assert.ok(ready === 503 || typeof ready === 'string', `/readyz after ${signal}: ${ready}`);
        const code = await closed(sb.proc, 20000);
        assert.equal(code, 0, `exit code after ${signal}`);
        for (const [i, c] of clients.entries()) {
          const what = i === 0 ? 'websocket client' : 'polling client';
          const seen = `connects ${c.connects}, disconnect reasons ${JSON.stringify(c.reasons)}, connect errors ${JSON.stringify(c.errors)}`;
          assert.ok(['transport close', 'transport error'].includes(reasons[i]), `${what} disconnect reason: ${reasons[i]}`);
          assert.equal(c.connects, 1, `${what} must not have reconnected to the draining process (${seen})`);
          // A CONNECT refused by the server (connect_error with data) stops a
          // v4 client for good; a failed transport only delays its retry.
          assert.deepEqual(c.errors.filter((e) => e.data !== undefined), [], `${what} was refused by the draining process (${seen})`);
          assert.equal(c.socket.active, true, `${what} will reconnect (socket.active; ${seen})`);
        }
      } finally {
        for (const c of clients) c.socket.close();
        await stopSwitchboard(sb, 'SIGKILL');
        assertLogLines(sb.lines);
      }
    });

    if (signal === 'SIGTERM') it(`${signal} ends every pending long-poll itself: well-behaved polling clients do not hold the drain (SHUTDOWN_TIMEOUT=60s)`, async () => {
      // With only well-behaved clients nothing may keep the process until
      // SHUTDOWN_TIMEOUT: the server closes every Engine.IO connection,
      // polling ones included. The bound below is far under 60 s.
      const sb = await startSwitchboard({ env: { SHUTDOWN_TIMEOUT: '60s' } });
      const clients = [];
      try {
        for (let i = 0; i < 4; i++) clients.push(await trackedClient(sb.url, `lp-${i}`, ['polling']));
        for (const c of clients) {
          const ack = await emitWithAck(c.socket, 'sendMessage', { to: 'nobody', text: 'poll' });
          assert.equal(ack.ok, true, JSON.stringify(ack));
        }
        const disconnects = clients.map((c) => once(c.socket, 'disconnect', 25000).then((v) => (Array.isArray(v) ? v[0] : v), (e) => e.message));
        sb.proc.kill(signal);
        const code = await withTimeout(closed(sb.proc, 30000), 15000,
          `exit after ${signal} with only polling clients, whose disconnects so far are ${JSON.stringify(clients.map((c) => c.reasons))} (a pending long-poll held the drain?); stderr:\n${sb.lines.slice(-5).join('\n')}`);
        assert.equal(code, 0);
        const reasons = await Promise.all(disconnects);
        for (const r of reasons) assert.ok(['transport close', 'transport error'].includes(r), `polling client disconnect reason: ${r}`);
      } finally {
        for (const c of clients) c.socket.close();
        await stopSwitchboard(sb, 'SIGKILL');
        assertLogLines(sb.lines);
      }
    });

    it(`${signal} with SHUTDOWN_TIMEOUT=2s: clients that never finish (raw websocket, hanging poll, half-sent requests) do not hold the process`, async () => {
      const sb = await startSwitchboard({ env: { SHUTDOWN_TIMEOUT: '2s' } });
      const socks = [];
      try {
        // Websocket upgrade sent, nothing ever read or answered.
        socks.push((await rawWebSocket(sb.port, { read: false })).sock);
        // A websocket that joined /socket and then stops reading.
        const token = await devToken(sb.url, 'hang');
        const ws = await socketIOOverRaw(sb.port, token);
        ws.sock.pause();
        socks.push(ws.sock);
        // A polling session whose long-poll GET is left hanging, never read.
        const { sid } = await pollingHandshake(sb.url);
        socks.push(await hangingRequest(sb.port,
          `GET /socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
        // An HTTP request whose headers never end, and a POST whose body never comes.
        socks.push(await hangingRequest(sb.port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
        socks.push(await hangingRequest(sb.port,
          'POST /api/dev/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"us'));
        // The process still serves with all of those open.
        assert.equal((await request(sb.url + '/healthz')).status, 200);
        sb.proc.kill(signal);
        const code = await withTimeout(closed(sb.proc, 30000), 30000, `exit after ${signal}`);
        assert.equal(code, 0, `exit code after ${signal} with hanging clients`);
      } finally {
        for (const s of socks) s.destroy();
        await stopSwitchboard(sb, 'SIGKILL');
        assertLogLines(sb.lines);
      }
    });
  }
});

// ------------------------------------------------------ bad transport input ---

describe('bad input at the transport (MAX_PAYLOAD_BYTES=5000)', () => {
  let sb;
  before(async () => { sb = await startSwitchboard({ env: { MAX_PAYLOAD_BYTES: '5000' } }); });
  afterEach(() => { if (sb) assertLogLines(sb.lines); });
  after(async () => {
    if (!sb) return;
    const code = await stopSwitchboard(sb);
    assertLogLines(sb.lines, 'stderr after SIGTERM');
    assert.equal(code, 0, 'exit code after SIGTERM');
  });

  // The process is alive, healthy, and a fresh client connects and gets an ack.
  async function assertStillServing(user) {
    assert.equal(sb.proc.exitCode, null, `the process died:\n${sb.lines.join('\n')}`);
    const h = await request(sb.url + '/healthz');
    assert.equal(h.status, 200);
    for (const transports of [['websocket'], ['polling']]) {
      const token = await devToken(sb.url, user);
      const s = await connectSocket(io, sb.url + '/socket', { auth: { token }, transports });
      try {
        const ack = await emitWithAck(s, 'sendMessage', { to: 'someone', text: `after garbage (${transports})` });
        assert.equal(ack.ok, true, `ack after garbage over ${transports}: ${JSON.stringify(ack)}`);
      } finally {
        s.close();
      }
    }
    assert.deepEqual(logProblems(sb.lines), []);
  }

  it('garbage polling POST bodies do not hurt the process; an oversized one is refused', async () => {
    const u = sb.url;
    const bodies = [
      Buffer.from([0, 1, 0xff, 0xfe, 0x1e, 0x80]), '4', '42[', '42["message",', '4{', '40/socket,{bad', '9', '',
      '\x1e\x1e\x1e', '42/socket,["sendMessage"]', '40/socket,[1]', '4' + '['.repeat(4000), 'b' + '!!!notbase64',
      randomBytes(3000), '41/socket,', '2', '3', '5', '6', '1',
    ];
    const statuses = [];
    for (const body of bodies) {
      const { sid } = await pollingHandshake(u);
      const ct = Buffer.isBuffer(body) ? 'application/octet-stream' : 'text/plain;charset=UTF-8';
      const r = await request(`${u}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', headers: { 'content-type': ct }, body });
      statuses.push(r.status);
    }
    // Sessions that do not exist, or no session at all.
    for (const path of ['/socket.io/?EIO=4&transport=polling&sid=nope', '/socket.io/?EIO=4&transport=polling', '/socket.io/?EIO=4&transport=bogus', '/socket.io/?transport=polling']) {
      const r = await request(u + path, { method: 'POST', body: '40/socket,' });
      assert.notEqual(r.status, 200, `POST ${path} must not be accepted: ${r.text}`);
    }
    // A well-formed message over MAX_PAYLOAD_BYTES on a session that joined
    // /socket: not accepted, and never processed.
    const token = await devToken(u, 'oversize-poll');
    const { sid } = await pollingHandshake(u);
    const post = (body) => request(`${u}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body });
    assert.equal((await post('40/socket,' + JSON.stringify({ token }))).status, 200);
    const big = '42/socket,5' + JSON.stringify(['message', { event: 'sendMessage', args: { to: 'x', text: 'y'.repeat(3000) }, pad: 'z'.repeat(3000) }]);
    assert.ok(Buffer.byteLength(big) > 5000);
    const r = await post(big);
    assert.notEqual(r.status, 200, `a ${Buffer.byteLength(big)}-byte polling POST over MAX_PAYLOAD_BYTES=5000 was accepted`);
    await assertStillServing('after-polling-garbage');
  });

  it('an Engine.IO message of exactly MAX_PAYLOAD_BYTES is handled; one byte more is not (websocket and polling)', async (t) => {
    const token = await devToken(sb.url, 'limit');
    // One Engine.IO message (type "4" included) of exactly `size` bytes: a
    // valid, acked postUpdated padded by a key the handler ignores (postId
    // has a limit of its own, 256 characters).
    const packet = (size, ackId) => {
      const make = (n) => `42/socket,${ackId}` + JSON.stringify(['postUpdated', { postId: 'p', mentions: ['nobody'], pad: 'p'.repeat(n) }]);
      const text = make(size - Buffer.byteLength(make(0)));
      assert.equal(Buffer.byteLength(text), size);
      return text;
    };
    const isOkAck = (text, id) => text.startsWith(`43/socket,${id}[`) && JSON.parse(text.slice(`43/socket,${id}`.length))[0]?.ok === true;

    // websocket
    const ws = await socketIOOverRaw(sb.port, token);
    const ws2 = await socketIOOverRaw(sb.port, token);
    try {
      ws.sendText(packet(5000, 81));
      const ack = await ws.next((f) => f.text?.startsWith('43/socket,81'), 10000);
      assert.ok(ack && isOkAck(ack.text, 81), `websocket: a 5000-byte message must be handled: ${ack?.text?.slice(0, 200) ?? 'connection closed'}`);
      ws2.sendText(packet(5001, 82));
      const over = await ws2.next((f) => f.text?.startsWith('43/socket,82'), 4000).then((f) => (f ? 'answered' : 'closed'), () => 'silent');
      t.diagnostic(`websocket, 5001-byte message: ${over}`);
      assert.notEqual(over, 'answered', 'websocket: a 5001-byte message over MAX_PAYLOAD_BYTES=5000 was handled');
    } finally {
      ws.destroy();
      ws2.destroy();
    }

    // polling: one message per POST body, so body size = message size
    const u = sb.url;
    const session = async () => {
      const { sid } = await pollingHandshake(u);
      const q = `${u}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
      const post = (body) => request(q, { method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body });
      const get = async (pred) => { // long-poll until a packet matches, bounded
        for (let i = 0; i < 5; i++) {
          const r = await request(q, { timeoutMs: 15000 });
          assert.equal(r.status, 200, `poll GET: ${r.text}`);
          const hit = r.text.split('\x1e').find(pred);
          if (hit) return hit;
        }
        return null;
      };
      assert.equal((await post('40/socket,' + JSON.stringify({ token }))).status, 200);
      assert.ok(await get((p) => p.startsWith('40/socket,')), 'polling: namespace connect reply');
      return { post, get };
    };
    const a = await session();
    const okPost = await a.post(packet(5000, 83));
    assert.equal(okPost.status, 200, `polling: a 5000-byte POST: HTTP ${okPost.status} ${okPost.text}`);
    const pAck = await a.get((p) => p.startsWith('43/socket,83'));
    assert.ok(pAck && isOkAck(pAck, 83), `polling: the 5000-byte message must be handled: ${pAck?.slice(0, 200)}`);
    const b = await session();
    const overPost = await b.post(packet(5001, 84));
    assert.notEqual(overPost.status, 200, 'polling: a 5001-byte POST over MAX_PAYLOAD_BYTES=5000 was accepted');
  });

  it('malformed Engine.IO/Socket.IO packets and broken frames over a raw websocket do not hurt the process', async (t) => {
    const token = await devToken(sb.url, 'raw-ws');
    const probeAck = '42/socket,77["sendMessage",{"to":"probe","text":"still alive"}]';
    const frame = (s) => encodeFrame(1, Buffer.from(s));
    // Before the namespace CONNECT: garbage, then try to connect /socket.
    const early = [
      frame('4'), frame('42['), frame('42["message",'), frame('4{'), frame(''), frame('0'), frame('5'), frame('6'),
      frame('1x'), frame('40/socket,{'), frame('40/socket,[1]'), frame('40/socket,"x"'), frame('41/socket,'),
      frame('4' + '['.repeat(4000)), frame('2probe'),
      encodeFrame(2, randomBytes(256)),
      frame('4' + 'x'.repeat(6000)), // over MAX_PAYLOAD_BYTES
      encodeFrame(1, Buffer.alloc(10), { declaredLength: 2 ** 40 }), // a huge frame announced, never sent
      encodeFrame(1, Buffer.from('40/socket,'), { rsv: 4 }), // reserved bit without an extension
      encodeFrame(1, Buffer.from('40/socket,'), { mask: false }), // client frames must be masked
      encodeFrame(0, Buffer.from('42["x"]')), // continuation without a start
      encodeFrame(1, Buffer.from([0xff, 0xfe, 0xfd])), // invalid UTF-8 in a text frame
      encodeFrame(9, Buffer.alloc(200)), // control frame over 125 bytes
      encodeFrame(3, Buffer.from('??')), // reserved opcode
      Buffer.concat([encodeFrame(1, Buffer.from('4'), { fin: false }), encodeFrame(1, Buffer.from('2'))]), // new message inside a fragmented one
    ];
    // After joining /socket: malformed Socket.IO packets, then an acked event.
    const late = [
      '42/socket,[', '42/socket,[]', '42/socket,[null]', '42/socket,[1,2]', '42/socket,{}', '42/socket,"str"',
      '42/socket,["message"]', '42/socket,["message",null]', '42/socket,["message","text"]',
      '42/socket,["sendMessage",{"to":{"a":1},"text":["x"]}]', '42/socket,["message",{"event":{"x":1},"args":null}]',
      '42/socket,99999999999999999999999["sendMessage",{}]', '42/socket,-1["sendMessage",{}]', '42/socket,1.5["sendMessage",{}]',
      '45-/socket,[]', '4599999999999-/socket,["x"]', '43/socket,12345[]', '42/other,["x"]', '40/socket,{"token":"x"}',
      '42/socket,["sendMessage",' + '['.repeat(2000) + ']'.repeat(2000) + ']',
      '4' + randomBytes(64).toString('latin1'),
    ];
    const lateBinary = [
      ['451-/socket,["sendMessage",{"_placeholder":true,"num":5}]', randomBytes(8)],
      ['451-/socket,["message",{"event":"sendMessage","args":{"_placeholder":true,"num":-1}}]', randomBytes(8)],
      ['451-/socket,["message",{"_placeholder":"yes","num":"0"}]', randomBytes(8)],
      ['452-/socket,["message",{"_placeholder":true,"num":0}]', null], // a text frame where an attachment is due
    ];
    const outcome = (ws, pred, ms = 4000) => ws.next(pred, ms).then((f) => (f ? 'answered' : 'closed'), () => 'silent');
    const isAck = (f) => f.text?.startsWith('43/socket,77');
    const isConnectReply = (f) => f.text?.startsWith('40/socket,') || f.text?.startsWith('44/socket,');
    const conns = [];
    const runs = [];
    try {
      for (const bytes of early) {
        runs.push((async () => {
          const ws = await rawWebSocket(sb.port);
          conns.push(ws);
          assert.equal(ws.status, 101, ws.head);
          await ws.next((f) => f.text?.startsWith('0'), 5000);
          ws.sendRaw(bytes);
          ws.sendText('40/socket,' + JSON.stringify({ token }));
          return outcome(ws, isConnectReply);
        })());
      }
      for (const text of late) {
        runs.push((async () => {
          const ws = await socketIOOverRaw(sb.port, token);
          conns.push(ws);
          ws.sendText(text);
          ws.sendText(probeAck);
          return outcome(ws, isAck);
        })());
      }
      for (const [text, bin] of lateBinary) {
        runs.push((async () => {
          const ws = await socketIOOverRaw(sb.port, token);
          conns.push(ws);
          ws.sendText(text);
          if (bin) ws.sendBinary(bin); else ws.sendText('42/socket,["x"]');
          ws.sendText(probeAck);
          return outcome(ws, isAck);
        })());
      }
      // A well-formed event over MAX_PAYLOAD_BYTES is refused, never handled.
      const oversize = (async () => {
        const ws = await socketIOOverRaw(sb.port, token);
        conns.push(ws);
        const big = '42/socket,78' + JSON.stringify(['message', { event: 'sendMessage', args: { to: 'x', text: 'y'.repeat(3000) }, pad: 'z'.repeat(3000) }]);
        ws.sendText(big);
        return outcome(ws, (f) => f.text?.startsWith('43/socket,78'));
      })();
      const results = await Promise.all(runs);
      t.diagnostic(`raw websocket outcomes (early, late, binary): ${results.join(' ')}`);
      const big = await oversize;
      assert.notEqual(big, 'answered', 'a message over MAX_PAYLOAD_BYTES was handled (acked)');
      // Some connection must have survived its garbage and answered, or the probes prove nothing.
      assert.ok(results.includes('answered'), `outcomes: ${results.join(', ')}`);
    } finally {
      for (const ws of conns) ws.destroy();
    }
    await assertStillServing('after-ws-garbage');
  });
});
