// The transport's limits, on the built binary (issue 13): a slow consumer is
// closed past MAX_QUEUED_BYTES and nobody else notices; every connection that
// has not joined /socket with a valid token is closed at CONNECT_TIMEOUT,
// whatever its protocol and transport; a partial binary packet counts against
// MAX_PAYLOAD_BYTES; HTTP connections idle between requests and bodies that
// trickle are cut, long-polls and websockets are not. Each limit is counted
// in /metrics, and well-behaved clients are never closed.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startSwitchboard } from './lib/harness.mjs';
import {
  pollingHandshake, pollUntil, rawWebSocket, request, socketIOOverRaw, withTimeout,
} from './lib/process.mjs';
import { counter } from './lib/recovery.mjs';
import { SECRET, ack, devices, heartbeats, token, uid } from './lib/sockets.mjs';

const T = { timeout: 90000 };

// closedBy resolves once the server has closed a raw websocket (its frames
// read to the end: a client that stopped reading is resumed first).
function closedBy(ws, what, ms = 20000) {
  ws.sock.resume();
  return withTimeout(ws.closed, ms, `the server closes ${what}`);
}

// pollToClose GETs a polling session until it answers its close packet or
// "Session ID unknown": either way the session is gone. v3 answers carry a
// length prefix ("1:1").
async function pollToClose(base, sid, eio) {
  for (let i = 0; i < 4; i++) {
    const r = await request(`${base}/socket.io/?EIO=${eio}&transport=polling&sid=${sid}`);
    if (r.status === 400) return r;
    assert.equal(r.status, 200, `GET: HTTP ${r.status} ${r.text}`);
    const close = eio === 4 ? r.text.split('\x1e').includes('1') : /(^|\D)1:1$/.test(r.text);
    if (close) return r;
  }
  throw new Error(`polling session ${sid} still open after four GETs`);
}

// ------------------------------------------------------------ slow consumer ---

describe('a slow consumer (MAX_QUEUED_BYTES=65536)', () => {
  let sb;
  before(async () => {
    sb = await startSwitchboard({ env: { JWT_SECRET: SECRET, MAX_PAYLOAD_BYTES: '32768', MAX_QUEUED_BYTES: '65536' } });
  });
  after(async () => { await sb?.stop(); });

  it('a device that stops reading (websocket) and one that never polls are closed and counted; the user\'s other device and other users get everything', T, async (t) => {
    const connect = devices(t, sb.url);
    const user = uid('slow');
    const before = await counter(sb.url, 'switchboard_slow_consumer_disconnects_total');

    // The stalled devices: a raw websocket that stops reading once joined,
    // and a polling session that joins and never polls again.
    const stalledWS = await socketIOOverRaw(sb.port, token(user));
    stalledWS.sock.pause();
    t.after(() => stalledWS.destroy());
    const hs = await pollingHandshake(sb.url);
    const post = await request(`${sb.url}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`, {
      method: 'POST', body: '40/socket,' + JSON.stringify({ token: token(user) }),
    });
    assert.equal(post.status, 200, post.text);

    // The same user's healthy device, the user's senders, and two other users.
    const healthy = await connect(user, { transports: ['websocket'] });
    const senders = [];
    for (let i = 0; i < 8; i++) senders.push(await connect(user, { transports: ['websocket'] }));
    const other = uid('other');
    const otherDevice = await connect(other, { transports: ['polling'] });
    const peer = await connect(uid('peer'), { transports: ['websocket'] });

    // Within the rate limit (20/s, burst 40): 14 a second per sender.
    const filler = 'x'.repeat(4000);
    const acked = { mine: [], other: [] };
    const failures = [];
    let n = 0;
    const emit = (d, to, text, into) => d.socket.emit('sendMessage', { to, text }, (r) => {
      if (r?.ok) into.push(text); else failures.push(JSON.stringify(r));
    });
    const timer = setInterval(() => {
      n += 1;
      for (const [i, s] of senders.entries()) emit(s, user, `m${n}.${i} ${filler}`, acked.mine);
      emit(peer, other, `o${n}`, acked.other);
    }, 70);
    try {
      await pollUntil(async () => (await counter(sb.url, 'switchboard_slow_consumer_disconnects_total')) >= before + 2,
        { timeoutMs: 60000, intervalMs: 200, what: 'both stalled devices counted as slow consumers' });
    } finally {
      clearInterval(timer);
    }
    // Everything sent is acked, and then received by the healthy devices.
    const sent = n * senders.length;
    await pollUntil(() => acked.mine.length + failures.length === sent && acked.other.length === n,
      { timeoutMs: 20000, what: 'every ack' });
    assert.deepEqual(failures, [], 'every send acked ok');
    const texts = (d) => new Set(d.inbox.got.filter((m) => m?.event === 'message_sent').map((m) => m.args.text));
    await pollUntil(() => acked.mine.every((x) => texts(healthy).has(x)), { timeoutMs: 20000, what: 'the healthy device to get every delivery' });
    await pollUntil(() => acked.other.every((x) => texts(otherDevice).has(x)), { timeoutMs: 20000, what: 'the other user to get every delivery' });
    for (const d of [healthy, otherDevice, peer, ...senders]) assert.deepEqual(d.disconnects, [], 'no healthy device was disconnected');

    // The stalled ones were closed by the server.
    await closedBy(stalledWS, 'the websocket that stopped reading');
    const last = await pollToClose(sb.url, hs.sid, 4);
    assert.ok(last.text.length < 100, `the closed polling session answers its close, not its queue: ${last.text.length} bytes`);
    // And the healthy device still works.
    const reply = await ack(healthy.socket, 'sendMessage', { to: other, text: 'still here' });
    assert.equal(reply?.ok, true, JSON.stringify(reply));
  });
});

// ---------------------------------------------------------- connect timeout ---

describe('the connect timeout and the payload limit (CONNECT_TIMEOUT=1s, MAX_PAYLOAD_BYTES=32768)', () => {
  let sb;
  before(async () => {
    // Pings far from the connect timeout: a raw client that answers none
    // would be closed for that only after 7 s.
    sb = await startSwitchboard({
      env: { JWT_SECRET: SECRET, CONNECT_TIMEOUT: '1s', PING_INTERVAL: '2s', PING_TIMEOUT: '5s', MAX_PAYLOAD_BYTES: '32768' },
    });
  });
  after(async () => { await sb?.stop(); });

  const timeouts = () => counter(sb.url, 'switchboard_connect_timeouts_total');

  // Each raw websocket case: what it does once open, before it is closed.
  const cases = [
    ['v4 websocket that never sends a CONNECT', 4, async () => {}],
    ['v3 websocket (socket.io-client v2) idle in its implicit /', 3, async (ws) => {
      assert.ok(await ws.next((f) => f.text === '40'), 'the implicit / connect');
    }],
    ['v3 websocket holding a partial binary packet in /', 3, async (ws) => {
      await ws.next((f) => f.text === '40');
      ws.sendText('451-["upload",{"_placeholder":true,"num":0}]'); // its attachment never comes
    }],
    ['v3 websocket refused on /socket (bad token) and on another namespace', 3, async (ws) => {
      await ws.next((f) => f.text === '40');
      ws.sendText('40/socket?token=garbage,');
      assert.ok(await ws.next((f) => f.text?.startsWith('44/socket')), 'refused on /socket');
      ws.sendText('40/admin,');
      assert.ok(await ws.next((f) => f.text?.startsWith('44/admin')), 'refused on /admin');
    }],
    ['v4 websocket refused on /, on another namespace and on /socket with a bad token', 4, async (ws) => {
      ws.sendText('40');
      assert.ok(await ws.next((f) => f.text?.startsWith('44{')), 'refused on /');
      ws.sendText('40/admin,');
      assert.ok(await ws.next((f) => f.text?.startsWith('44/admin')), 'refused on /admin');
      ws.sendText('40/socket,{"token":"garbage"}');
      assert.ok(await ws.next((f) => f.text?.startsWith('44/socket')), 'refused on /socket');
    }],
  ];
  for (const [name, eio, act] of cases) {
    it(`${name}: closed and counted`, T, async () => {
      const before = await timeouts();
      const ws = await rawWebSocket(sb.port, { path: `/socket.io/?EIO=${eio}&transport=websocket` });
      assert.equal(ws.status, 101, ws.head);
      assert.ok(await ws.next((f) => f.text?.startsWith('0{')), 'the open packet');
      await act(ws);
      await closedBy(ws, name);
      assert.ok(ws.frames.some((f) => f.close), 'a close frame before the close');
      assert.equal(await timeouts(), before + 1, 'one connect timeout counted');
    });
  }

  for (const eio of [4, 3]) {
    it(`a v${eio} polling session that never polls is closed at the connect timeout and counted`, T, async () => {
      const before = await timeouts();
      const r = await request(`${sb.url}/socket.io/?EIO=${eio}&transport=polling`);
      assert.equal(r.status, 200, r.text);
      const sid = /"sid":"([^"]+)"/.exec(r.text)?.[1];
      assert.ok(sid, r.text);
      await pollUntil(async () => (await timeouts()) === before + 1, { what: 'the connect timeout counted' });
      await pollToClose(sb.url, sid, eio);
    });
  }

  it('a v4 polling session with a parked GET and a refused CONNECT gets its close packet at the connect timeout', T, async () => {
    const before = await timeouts();
    const hs = await pollingHandshake(sb.url);
    const q = `${sb.url}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`;
    assert.equal((await request(q, { method: 'POST', body: '40/socket,{"token":"garbage"}' })).status, 200);
    const refused = await request(q);
    assert.ok(refused.text.startsWith('44/socket'), refused.text);
    const parked = await request(q, { timeoutMs: 20000 });
    assert.equal(parked.text, '1', 'the parked GET answered with the close packet');
    assert.equal(await timeouts(), before + 1);
  });

  it('a well-behaved client (v4 websocket, v4 polling, v2) is never closed: connected across two heartbeats', T, async (t) => {
    const connect = devices(t, sb.url);
    const before = await timeouts();
    const a = uid('good');
    const ws = await connect(a, { transports: ['websocket'] });
    const poll = await connect(a, { transports: ['polling'] });
    const v2 = await connect(a, { client: 'v2', via: 'query', transports: ['websocket'] });
    // Two pings of a 2 s interval: past the 1 s connect timeout.
    await Promise.all([heartbeats(ws.socket, 'ping', 2), heartbeats(poll.socket, 'ping', 2), heartbeats(v2.socket, 'pong', 2)]);
    for (const d of [ws, poll, v2]) {
      assert.deepEqual(d.disconnects, []);
      const reply = await ack(d.socket, 'sendMessage', { to: uid('x'), text: 'after two heartbeats' });
      assert.equal(reply?.ok, true, JSON.stringify(reply));
    }
    assert.equal(await timeouts(), before, 'no connect timeout counted');
  });

  it('a websocket message and a polling POST over MAX_PAYLOAD_BYTES close their connections and are counted', T, async () => {
    const name = 'switchboard_payload_too_large_total';
    const before = await counter(sb.url, name, { kind: 'message' });
    const ws = await rawWebSocket(sb.port);
    assert.ok(await ws.next((f) => f.text?.startsWith('0{')));
    ws.sendText('4' + 'x'.repeat(40000));
    await closedBy(ws, 'the websocket that sent 40 KB in one message');
    assert.equal(ws.frames.find((f) => f.close)?.code, 1009, 'closed with 1009 (message too big)');
    const hs = await pollingHandshake(sb.url);
    const r = await request(`${sb.url}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`, { method: 'POST', body: '4' + 'x'.repeat(40000) });
    assert.equal(r.status, 413, r.text);
    assert.equal(await counter(sb.url, name, { kind: 'message' }), before + 2);
  });

  it('a binary packet whose header and attachments exceed MAX_PAYLOAD_BYTES closes the connection and is counted', T, async () => {
    const name = 'switchboard_payload_too_large_total';
    const before = await counter(sb.url, name, { kind: 'binary_packet' });
    const ws = await socketIOOverRaw(sb.port, token(uid('bin')));
    // Each message is under the 32768-byte limit; together they are not.
    ws.sendText('451-/socket,["message",{"_placeholder":true,"num":0},"' + 'h'.repeat(20000) + '"]');
    ws.sendBinary(Buffer.alloc(20000, 1));
    await closedBy(ws, 'the connection holding 40 KB of one packet');
    assert.equal(await counter(sb.url, name, { kind: 'binary_packet' }), before + 1);
  });
});

// ------------------------------------------------------------ HTTP timeouts ---

describe('HTTP timeouts (idle, body and write at 1s, PING_INTERVAL=2s)', () => {
  let sb;
  before(async () => {
    sb = await startSwitchboard({
      env: {
        JWT_SECRET: SECRET, HTTP_IDLE_TIMEOUT: '1s', HTTP_BODY_TIMEOUT: '1s', HTTP_WRITE_TIMEOUT: '1s',
        PING_INTERVAL: '2s', PING_TIMEOUT: '2s',
      },
    });
  });
  after(async () => { await sb?.stop(); });

  const timeouts = (kind) => counter(sb.url, 'switchboard_http_timeouts_total', { kind });

  it('a keep-alive connection idle after its request is closed by the server and counted', T, async () => {
    const before = await timeouts('idle');
    const sock = net.connect(sb.port, '127.0.0.1');
    sock.on('error', () => {});
    let got = '';
    sock.on('data', (d) => { got += d; });
    const closed = new Promise((r) => sock.once('close', r));
    sock.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await withTimeout(closed, 20000, 'the server closes the idle keep-alive connection');
    assert.match(got, /^HTTP\/1\.1 200 /, 'the request was answered first');
    assert.doesNotMatch(got, /Connection: close/i, 'kept alive after the answer');
    // At least this one: the harness's own keep-alive connections go idle too.
    assert.ok(await timeouts('idle') >= before + 1, 'the idle close counted');
  });

  it('a polling POST trickling one byte at a time is cut and counted', T, async () => {
    const before = await timeouts('body');
    const hs = await pollingHandshake(sb.url);
    const sock = net.connect(sb.port, '127.0.0.1');
    sock.on('error', () => {});
    let got = '';
    sock.on('data', (d) => { got += d; });
    const closed = new Promise((r) => sock.once('close', r));
    sock.write(`POST /socket.io/?EIO=4&transport=polling&sid=${hs.sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
      + 'Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 100000\r\n\r\n');
    const trickle = setInterval(() => { if (!sock.destroyed) sock.write('4'); }, 100);
    try {
      await withTimeout(closed, 20000, 'the server cuts the trickling POST');
    } finally {
      clearInterval(trickle);
    }
    assert.doesNotMatch(got, /^HTTP\/1\.1 200 /, `the trickled body was not accepted: ${got.slice(0, 100)}`);
    assert.equal(await timeouts('body'), before + 1);
    await pollToClose(sb.url, hs.sid, 4);
  });

  it('a long-poll GET parked across the ping interval (longer than the write timeout) is answered with the ping', T, async () => {
    const hs = await pollingHandshake(sb.url);
    const q = `${sb.url}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`;
    assert.equal((await request(q, { method: 'POST', body: '40/socket,' + JSON.stringify({ token: token(uid('lp')) }) })).status, 200);
    const conn = await request(q);
    assert.ok(conn.text.startsWith('40/socket,'), conn.text);
    const parked = await request(q, { timeoutMs: 20000 });
    assert.equal(parked.status, 200);
    assert.equal(parked.text, '2', 'the parked GET answered with the ping');
  });

  it('websocket, polling and upgraded clients stay connected across two ping intervals (past every HTTP timeout)', T, async (t) => {
    const connect = devices(t, sb.url);
    const a = uid('steady');
    const ws = await connect(a, { transports: ['websocket'] });
    const poll = await connect(a, { transports: ['polling'] });
    const upgraded = await connect(a); // polling, then the upgrade to websocket
    await Promise.all([heartbeats(ws.socket, 'ping', 2), heartbeats(poll.socket, 'ping', 2), heartbeats(upgraded.socket, 'ping', 2)]);
    assert.equal(upgraded.socket.io.engine.transport.name, 'websocket', 'the default client upgraded');
    for (const d of [ws, poll, upgraded]) {
      assert.deepEqual(d.disconnects, []);
      const reply = await ack(d.socket, 'sendMessage', { to: a, text: 'after two pings' });
      assert.equal(reply?.ok, true, JSON.stringify(reply));
    }
  });
});
