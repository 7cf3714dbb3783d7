// No goroutine is left behind when sockets close, whatever their transport:
// the binary's own go_goroutines gauge (GET /metrics) returns to its
// baseline after many polling, websocket and upgraded clients connect, talk
// and close. And an idle websocket costs no goroutine at all: websockets are
// read by the engine's event loop, while a polling client holds one parked
// GET. (server/integration_test.go checks websocket sockets in-process.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startSwitchboard, devToken, connectSocket, emitWithAck } from './lib/harness.mjs';

async function goroutines(url) {
  const text = await (await fetch(url + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith('go_goroutines '));
  assert.ok(line, 'go_goroutines is exported');
  return Number(line.split(' ')[1]);
}

async function sockets(url) {
  const text = await (await fetch(url + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith('switchboard_sockets '));
  return Number(line.split(' ')[1]);
}

// settle polls until cond holds, bounded; returns the last value seen.
async function settle(read, cond, what) {
  const deadline = Date.now() + 20000;
  let v = await read();
  while (!cond(v)) {
    if (Date.now() > deadline) throw new Error(`${what}: last value ${v}`);
    await new Promise((r) => setTimeout(r, 100));
    v = await read();
  }
  return v;
}

test('sockets of every transport leave no goroutine behind when they close', async (t) => {
  // A short heartbeat so that a polling session the client abandons is
  // reaped quickly; the point is what remains after closes, not timing.
  const sb = await startSwitchboard({ env: { PING_INTERVAL: '1s', PING_TIMEOUT: '1s' } });
  t.after(() => sb.stop());
  const token = await devToken(sb.url, 'leak-check');

  // Warm up every code path once, then take the baseline.
  for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
    const s = await connectSocket(io, sb.url + '/socket', { auth: { token }, transports });
    await emitWithAck(s, 'sendMessage', { to: 'nobody', text: 'warm' });
    s.close();
  }
  await settle(() => sockets(sb.url), (n) => n === 0, 'warm-up sockets to close');
  const baseline = await settle(() => goroutines(sb.url), () => true, 'baseline');

  const connectAll = async (n, transports, offset) => {
    const clients = [];
    for (let i = 0; i < n; i++) {
      clients.push(connectSocket(io, sb.url + '/socket', { auth: { token: await devToken(sb.url, `u${(offset + i) % 10}`) }, transports }));
    }
    const socks = await Promise.all(clients);
    for (const [i, s] of socks.entries()) {
      const reply = await emitWithAck(s, 'sendMessage', { to: `u${(offset + i + 1) % 10}`, text: 'hi' });
      assert.equal(reply.ok, true);
    }
    return socks;
  };

  // 30 websockets that have connected and talked, now idle: no goroutine
  // each (a handful may come and go: HTTP keep-alive, timers firing).
  const websockets = await connectAll(30, ['websocket'], 0);
  const idle = await settle(() => goroutines(sb.url), (n) => n <= baseline + 10,
    `30 idle websockets to cost no goroutine each over the baseline ${baseline}`);
  assert.ok(idle < baseline + 30, `30 idle websockets hold ${idle - baseline} goroutines`);

  // 30 polling clients each hold a parked GET (its goroutine), so the
  // measure sees sockets; 30 more upgrade to websocket.
  const polling = await connectAll(30, ['polling'], 30);
  const upgraded = await connectAll(30, ['polling', 'websocket'], 60);
  const during = await settle(() => goroutines(sb.url), (n) => n >= baseline + 30,
    `the measure to see the polling sockets' parked GETs over the baseline ${baseline}`);
  assert.ok(during >= baseline + 30);
  const connected = [...websockets, ...polling, ...upgraded];

  for (const s of connected) s.close();
  await settle(() => sockets(sb.url), (n) => n === 0, 'sockets to close');
  // A handful of goroutines (HTTP keep-alive, timers) may come and go; a leak
  // per socket would be 90 or more.
  const after = await settle(() => goroutines(sb.url), (n) => n <= baseline + 10,
    `goroutines to return to the baseline ${baseline}`);
  assert.ok(after <= baseline + 10);
});
