// The deploy scenario of connection state recovery (issue 11), as a test and
// as the measurement the README quotes: three Switchboard processes on one
// Redis behind HAProxy running deploy/haproxy.cfg unchanged, hundreds of
// socket.io-client 4.8.1 devices (websocket, and a tenth long-polling with
// the balancer's cookie) sending and receiving all along, and every process
// restarted in turn (SIGTERM, then started again on its port) while they do.
// The clients reconnect by themselves, as a browser's would.
//
// For every device it counts the deliveries it should have had (every
// acknowledged sendMessage to its user, and from its user's other devices),
// received, missing and duplicated. The same run does it twice: with
// Switchboard's defaults (RECOVERY_WINDOW=2m) nothing may be missing or
// duplicated and every reconnect must have recovered; with RECOVERY_WINDOW=0
// the devices that reconnected miss what was sent meanwhile (and the test
// fails if nothing is missing then: it would not be measuring anything).
//
// The end of the traffic is awaited, not slept on: once every send has its
// acknowledgement, each process is asked (POST /api/events) to deliver a
// marker to every user; a process's deliveries leave it in order, so a device
// that has the three markers has everything those processes were to send it.
//
// DEPLOY_USERS (default 100, with 2 or 3 devices each) and DEPLOY_SEND_MS
// (default 3000: each device sends once in every such period, on average)
// size the run; the table is printed at the end.
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { io } from 'socket.io-client';
import { freePort, startRedis, startSwitchboard } from './lib/harness.mjs';
import { startHaproxy } from './lib/cluster.mjs';
import { assertLogLines, pollUntil, stopSwitchboard } from './lib/process.mjs';
import { SECRET, token, uid } from './lib/sockets.mjs';

const USERS = Number(process.env.DEPLOY_USERS || 100);
const SEND_MS = Number(process.env.DEPLOY_SEND_MS || 3000);
const API_KEY = 'deploy-test-key';
const MARKER = 'deploy-marker';

const reports = [];
after(() => {
  if (reports.length) console.log(`\n${table(reports)}\n`);
});

it('rolling restart behind HAProxy: recovery on loses and duplicates nothing; off, the reconnected devices miss what was sent meanwhile', { timeout: 600000 }, async () => {
  const on = await run({ label: 'recovery on (RECOVERY_WINDOW=2m, the default)', env: {} });
  const off = await run({ label: 'recovery off (RECOVERY_WINDOW=0)', env: { RECOVERY_WINDOW: '0' } });

  assert.ok(on.reconnects >= on.devices / 3, `recovery on: only ${on.reconnects} reconnects; the restarts moved too few devices to prove anything`);
  assert.equal(on.missing, 0, `recovery on: ${on.missing} deliveries missing, on ${on.lossy} devices`);
  assert.equal(on.duplicated, 0, `recovery on: ${on.duplicated} deliveries duplicated`);
  assert.equal(on.recovered, on.reconnects, `recovery on: ${on.reconnects - on.recovered} reconnects got a fresh session`);
  assert.equal(off.duplicated, 0, `recovery off: ${off.duplicated} deliveries duplicated`);
  assert.equal(off.recovered, 0);
  assert.ok(off.missing > 0, 'recovery off: nothing missing; the scenario did not disturb the deliveries');
});

async function run({ label, env }) {
  const redis = await startRedis();
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const common = { REDIS_URL: redis.url, JWT_SECRET: SECRET, API_KEY, RATE_LIMIT: '0', ...env };
  const start = (i, gen) => startSwitchboard({ port: ports[i], env: { ...common, NODE_ID: `d${i + 1}-${gen}` } });
  const procs = await Promise.all([0, 1, 2].map((i) => start(i, 1)));
  const all = [...procs];
  const lb = await startHaproxy({ upstreams: ports });
  const devices = [];
  try {
    for (const p of procs) await pollUntil(async () => (await fetch(p.url + '/readyz')).status === 200, { what: `${p.node} ready` });

    // Users with 2 or 3 devices; every tenth device long-polls.
    const users = Array.from({ length: USERS }, () => uid('dep'));
    users.forEach((u, i) => {
      for (let k = 0; k < 2 + (i % 2); k++) devices.push(device(lb.url, u, devices.length % 10 === 9 ? 'polling' : 'websocket'));
    });
    await pollUntil(() => devices.every((d) => d.socket.connected), { timeoutMs: 60000, what: 'every device connected' });

    // Traffic: each device sends to a random user (itself included) once
    // in every SEND_MS on average, while connected.
    const sent = new Map(); // text -> { from: device, to: user, acked }
    let pending = 0;
    let seq = 0;
    const byUser = new Map();
    for (const d of devices) byUser.set(d.user, [...(byUser.get(d.user) || []), d]);
    for (const d of devices) d.nextSend = Date.now() + Math.random() * SEND_MS;
    const ticker = setInterval(() => {
      const now = Date.now();
      for (const d of devices) {
        if (now < d.nextSend || !d.socket.connected) continue;
        d.nextSend = now + SEND_MS / 2 + Math.random() * SEND_MS;
        const to = users[Math.floor(Math.random() * users.length)];
        const text = `m${++seq}`;
        const rec = { from: d, to, acked: false };
        sent.set(text, rec);
        pending++;
        d.socket.timeout(15000).emit('sendMessage', { to, text }, (err, reply) => {
          pending--;
          rec.acked = !err && reply?.ok === true;
        });
      }
    }, 20);

    const traffic = (ms) => new Promise((r) => setTimeout(r, ms)); // the load runs meanwhile: it is what is measured
    await traffic(3000);
    for (let i = 0; i < 3; i++) {
      assert.equal(await stopSwitchboard(procs[i]), 0, `${procs[i].node} exit code`);
      procs[i] = await start(i, 2);
      all.push(procs[i]);
      await pollUntil(async () => (await fetch(procs[i].url + '/readyz')).status === 200, { what: `${procs[i].node} ready` });
      await pollUntil(() => devices.every((d) => d.socket.connected), { timeoutMs: 60000, what: 'every device connected again' });
      // The balancer takes the process back (its health check) before the
      // next one goes.
      await pollUntil(async () => {
        const r = await fetch(lb.url + '/api/whoami');
        return (await r.json()).node === procs[i].node;
      }, { timeoutMs: 30000, intervalMs: 100, what: `the balancer to route to ${procs[i].node}` });
      await traffic(2000);
    }
    clearInterval(ticker);
    await pollUntil(() => pending === 0, { timeoutMs: 30000, what: 'every acknowledgement' });

    // The markers: one from each process to every user, after everything.
    for (const [k, p] of procs.entries()) {
      const r = await fetch(p.url + '/api/events', {
        method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ users, event: MARKER, args: k }),
      });
      assert.equal(r.status, 202);
    }
    await pollUntil(() => devices.every((d) => d.markers.size === 3), { timeoutMs: 60000, what: 'every device to get the three markers' });

    // Expected per device: every acknowledged message to its user, and
    // those its user's other devices sent.
    for (const [text, rec] of sent) {
      if (!rec.acked) continue;
      const targets = new Set(byUser.get(rec.to));
      for (const d of byUser.get(rec.from.user)) targets.add(d);
      targets.delete(rec.from);
      for (const d of targets) d.expected.add(text);
    }
    const acked = [...sent.values()].filter((rec) => rec.acked).length;
    const r = { label, devices: devices.length, acked, reconnects: 0, recovered: 0, expected: 0, received: 0, missing: 0, duplicated: 0, lossy: 0, unconfirmed: 0 };
    const unacked = new Set([...sent].filter(([, rec]) => !rec.acked).map(([text]) => text));
    for (const d of devices) {
      r.reconnects += d.connects - 1;
      r.recovered += d.recovered;
      r.expected += d.expected.size;
      let missing = 0;
      for (const text of d.expected) {
        const n = d.got.get(text) || 0;
        if (n === 0) missing++;
        else r.received++;
        if (n > 1) r.duplicated += n - 1;
      }
      for (const [text, n] of d.got) {
        if (d.expected.has(text)) continue;
        if (unacked.has(text)) r.unconfirmed += n;
        else r.duplicated += n; // a delivery it was never to have
      }
      r.missing += missing;
      if (missing > 0) r.lossy++;
    }
    reports.push(r);
    return r;
  } finally {
    for (const d of devices) d.socket.close();
    await lb.stop();
    await Promise.allSettled(procs.map((p) => stopSwitchboard(p)));
    await redis.stop();
    for (const p of all) assertLogLines(p.lines, `switchboard ${p.node}`);
  }
}

function device(url, user, transport) {
  const socket = io(url + '/socket', {
    forceNew: true, auth: { token: token(user) }, transports: [transport], withCredentials: transport === 'polling',
  });
  const d = { user, socket, got: new Map(), expected: new Set(), markers: new Set(), connects: 0, recovered: 0 };
  socket.on('connect', () => {
    d.connects++;
    if (d.connects > 1 && socket.recovered) d.recovered++;
  });
  socket.on('message', (m) => {
    if (m?.event === 'message_sent') d.got.set(m.args.text, (d.got.get(m.args.text) || 0) + 1);
    else if (m?.event === MARKER) d.markers.add(m.args);
  });
  return d;
}

function table(rs) {
  const cols = [
    ['mode', (r) => r.label], ['devices', (r) => r.devices], ['messages acknowledged', (r) => r.acked],
    ['reconnects', (r) => r.reconnects], ['recovered', (r) => r.recovered],
    ['expected', (r) => r.expected], ['received', (r) => r.received], ['missing', (r) => r.missing],
    ['duplicated', (r) => r.duplicated], ['devices missing some', (r) => r.lossy],
    ['deliveries of unacknowledged sends', (r) => r.unconfirmed],
  ];
  const head = `| ${cols.map(([h]) => h).join(' | ')} |\n|${cols.map(() => '---').join('|')}|`;
  return `deploy scenario (${USERS} users, one send per device every ~${SEND_MS} ms):\n${head}\n${rs.map((r) => `| ${cols.map(([, f]) => f(r)).join(' | ')} |`).join('\n')}`;
}
