// The price of polling without sticky sessions, measured: the same three
// switchboard processes on one Redis behind HAProxy with deploy/haproxy.cfg
// (sticky) and with deploy/haproxy-roundrobin.cfg (round robin, every
// request to the next process, which relays it to the session's owner).
//
//   go build -tags nomsgpack -o bin/switchboard ./cmd/switchboard
//   cd web && node bench/balancers.mjs            # ROUNDS=3 CLIENTS=30 MESSAGES=40 TUNNELS=500
//
// Phase 1, per balancer (alternating which goes first, ROUNDS times):
// CLIENTS polling-only socket.io-client v4 clients in pairs; each sends
// MESSAGES acknowledged sendMessage events to its partner, one at a time.
// Reported: the ack's round trip (emit → ack, a POST and the parked GET that
// brings the answer back) p50 and p99, and the CPU time of the three
// switchboard processes and of HAProxy per 1000 messages (from /proc).
// Phase 2: TUNNELS websockets upgraded from polling sessions held by sb1,
// each upgrade sent straight to sb2, which tunnels it to sb1; then as many
// upgraded on sb1 itself. Reported: what one tunnel costs sb2 (live heap
// and stacks after a forced GC, goroutines, file descriptors) and what the
// same websocket costs its owner.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';
import { connectSocket, emitWithAck, freePort, signToken, startRedis, startSwitchboard } from '../test/lib/harness.mjs';
import { HAPROXY_CFG, ROUND_ROBIN_CFG, handshakeSid, startHaproxy } from '../test/lib/cluster.mjs';

const ROUNDS = Number(process.env.ROUNDS || 3);
const CLIENTS = Number(process.env.CLIENTS || 30);
const MESSAGES = Number(process.env.MESSAGES || 40);
const TUNNELS = Number(process.env.TUNNELS || 500);
const SECRET = 'balancers-bench-secret';
const token = (sub) => signToken(SECRET, { sub, exp: Math.floor(Date.now() / 1000) + 3600 });
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS;
}

async function metric(url, name) {
  const text = await (await fetch(url + '/metrics')).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function phase1(name, lb, sbs) {
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    const id = `${name}-${i}-${Date.now()}`;
    clients.push({ id, socket: await connectSocket(io, lb.url + '/socket', { auth: { token: token(id) }, transports: ['polling'], withCredentials: true }) });
  }
  const cpu0 = sbs.map((s) => cpuSeconds(s.proc.pid));
  const lb0 = cpuSeconds(lb.proc.pid);
  const rtts = [];
  await Promise.all(clients.map(async (c, i) => {
    const to = clients[i ^ 1].id;
    for (let m = 0; m < MESSAGES; m++) {
      const t0 = performance.now();
      const ack = await emitWithAck(c.socket, 'sendMessage', { to, text: `m${m}` });
      rtts.push(performance.now() - t0);
      if (!ack.ok) throw new Error(JSON.stringify(ack));
    }
  }));
  const n = CLIENTS * MESSAGES;
  const sbCpu = sbs.reduce((a, s, i) => a + cpuSeconds(s.proc.pid) - cpu0[i], 0);
  const lbCpu = cpuSeconds(lb.proc.pid) - lb0;
  for (const c of clients) c.socket.close();
  // CPU milliseconds per 1000 messages.
  return { p50: pct(rtts, 0.5), p99: pct(rtts, 0.99), sbCpuPer1000: (sbCpu / n) * 1e6, lbCpuPer1000: (lbCpu / n) * 1e6 };
}

// frame is a masked websocket text frame (client to server), short payloads.
function frame(text) {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

// upgrade opens a polling session on owner and upgrades it to a websocket
// through via (raw: the upgrade request, the probe, "5"); it resolves with
// the connection once the session is on it.
function upgrade(owner, via) {
  return fetch(owner.url + '/socket.io/?EIO=4&transport=polling').then((r) => r.text()).then((hs) => new Promise((resolve, reject) => {
    const sid = handshakeSid(hs);
    const sock = net.connect(via.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    sock.once('error', reject);
    sock.on('connect', () => sock.write(`GET /socket.io/?EIO=4&transport=websocket&sid=${sid} HTTP/1.1\r\nHost: 127.0.0.1:${via.port}\r\n`
      + `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) { reject(new Error(buf.toString())); return; }
        upgraded = true;
        buf = buf.subarray(end + 4);
        sock.write(frame('2probe'));
      }
      // Server frames are unmasked and short here: 0x81, length, payload.
      while (buf.length >= 2 && buf.length >= 2 + buf[1]) {
        const msg = buf.subarray(2, 2 + buf[1]).toString();
        buf = buf.subarray(2 + buf[1]);
        if (msg === '3probe') { sock.write(frame('5')); resolve(sock); }
      }
    });
  }));
}

// footprint reads a process's live memory (heap objects and goroutine stacks
// right after a forced GC, which pprof's heap profile with gc=1 runs),
// goroutines and file descriptors.
async function footprint(s) {
  await (await fetch(`http://${s.debug}/debug/pprof/heap?gc=1`)).arrayBuffer();
  return {
    live: await metric(s.url, 'go_memstats_heap_alloc_bytes') + await metric(s.url, 'go_memstats_stack_inuse_bytes'),
    goroutines: await metric(s.url, 'go_goroutines'),
    fds: await metric(s.url, 'process_open_fds'),
  };
}

async function phase2(sb1, sb2) {
  const out = {};
  for (const [label, via] of [['tunneled', sb2], ['direct', sb1]]) {
    const before = { sb1: await footprint(sb1), sb2: await footprint(sb2) };
    const socks = [];
    for (let i = 0; i < TUNNELS; i++) socks.push(await upgrade(sb1, via));
    const after = { sb1: await footprint(sb1), sb2: await footprint(sb2) };
    const per = (who, k) => (after[who][k] - before[who][k]) / TUNNELS;
    out[label] = {
      ownerKiB: per('sb1', 'live') / 1024, relayKiB: per('sb2', 'live') / 1024,
      relayGoroutines: per('sb2', 'goroutines'), relayFds: per('sb2', 'fds'), ownerFds: per('sb1', 'fds'),
    };
    for (const sock of socks) sock.destroy();
    // Until both processes have let go of them.
    for (let i = 0; i < 200 && (await metric(sb1.url, 'switchboard_relay_tunnels') > 0 || await metric(sb2.url, 'switchboard_relay_tunnels') > 0
      || (await footprint(sb1)).fds > before.sb1.fds); i++) await new Promise((r) => setTimeout(r, 50));
  }
  return out;
}

const redis = await startRedis();
const sbs = [];
let sticky; let rr;
try {
  for (const n of ['sb1', 'sb2', 'sb3']) {
    const debug = `127.0.0.1:${await freePort()}`;
    const s = await startSwitchboard({ env: { NODE_ID: n, REDIS_URL: redis.url, JWT_SECRET: SECRET, RATE_LIMIT: '0', DEBUG_ADDR: debug } });
    sbs.push(Object.assign(s, { debug }));
  }
  const upstreams = sbs.map((s) => s.port);
  sticky = await startHaproxy({ upstreams, cfgText: readFileSync(HAPROXY_CFG, 'utf8') });
  rr = await startHaproxy({ upstreams, cfgText: readFileSync(ROUND_ROBIN_CFG, 'utf8') });
  const rows = { sticky: [], roundrobin: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [['roundrobin', rr], ['sticky', sticky]] : [['sticky', sticky], ['roundrobin', rr]];
    for (const [name, lb] of order) rows[name].push(await phase1(name, lb, sbs));
  }
  const fmt = (xs, k, d) => xs.map((x) => x[k].toFixed(d)).join(' / ');
  console.log(`machine: ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores; ${CLIENTS} polling clients, ${MESSAGES} acked messages each, ${ROUNDS} rounds (first / second / ...)`);
  console.log('| balancer | ack round trip p50 (ms) | p99 (ms) | switchboard CPU ms per 1000 messages | HAProxy CPU ms per 1000 |');
  console.log('|---|---:|---:|---:|---:|');
  for (const [name, xs] of Object.entries(rows)) {
    console.log(`| ${name} | ${fmt(xs, 'p50', 1)} | ${fmt(xs, 'p99', 1)} | ${fmt(xs, 'sbCpuPer1000', 0)} | ${fmt(xs, 'lbCpuPer1000', 0)} |`);
  }
  const t = await phase2(sbs[0], sbs[1]);
  console.log(`\n${TUNNELS} upgraded websockets held by sb1, upgraded through sb2 (tunneled) or on sb1 (direct), per websocket:`);
  console.log('| upgrade | owner live KiB | owner fds | relaying process live KiB | goroutines | fds |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [k, v] of Object.entries(t)) {
    console.log(`| ${k} | ${v.ownerKiB.toFixed(1)} | ${v.ownerFds.toFixed(2)} | ${v.relayKiB.toFixed(1)} | ${v.relayGoroutines.toFixed(2)} | ${v.relayFds.toFixed(2)} |`);
  }
} finally {
  for (const lb of [sticky, rr]) if (lb) await lb.stop();
  for (const s of sbs) await s.stop();
  await redis.stop();
}
