// Polling without sticky sessions, for real: HAProxy running
// deploy/haproxy-roundrobin.cfg (plain round robin: no cookie, no source
// hash) in front of three switchboard processes on one Redis, with a short
// ping interval so that "many ping intervals" pass in seconds. Every
// Engine.IO request is traced by the client's own transports: the process
// the balancer sent it to (X-Switchboard-Node) and the process that holds the
// session (X-Switchboard-Owner on a relayed answer). Then the same balancer
// in front of a mixed cluster, the Node peer (which relays by the same
// scheme) and two switchboard processes, relaying in both directions.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createClient } from 'redis';
import { io } from 'socket.io-client';
import {
  collect, connectSocket, freePort, once, requireBinary, signToken, startRedis, startSwitchboard,
} from './lib/harness.mjs';
import {
  ROUND_ROBIN_CFG, SESSION_UNKNOWN, crossing, handshakeSid, rawPoll, ring, send, startHaproxy, tracer,
} from './lib/cluster.mjs';
import { preparePeer, startPeer } from './lib/interop.mjs';

const SECRET = 'cluster-roundrobin-test-secret';
const NODES = ['sb1', 'sb2', 'sb3'];
// Pings every second; a client that misses one is given 5 s (a loaded
// two-core machine), so a session that survives ten pings has survived ten
// rounds of polling through the balancer, not a lenient timeout.
const TIMING = { PING_INTERVAL: '1s', PING_TIMEOUT: '5s' };
const PINGS = 10;
let seq = 0;
const user = (prefix) => `${prefix}-${process.pid}-${++seq}`;
const token = (sub) => signToken(SECRET, { sub, exp: Math.floor(Date.now() / 1000) + 3600 });
const open = []; // every socket, closed in after()
const rrConfig = () => readFileSync(ROUND_ROBIN_CFG, 'utf8');

// client connects a user through baseUrl with traced transports; mode is
// polling, websocket or both (polling, then the upgrade).
async function client(baseUrl, prefix, { mode, ...opts }) {
  const id = user(prefix);
  const trace = tracer();
  const socket = await connectSocket(io, baseUrl + '/socket', {
    auth: { token: token(id) }, transports: trace[mode], upgrade: mode === 'both', ...opts,
  });
  open.push(socket);
  const c = { id, socket, trace, inbox: collect(socket), sid: socket.io.engine.id };
  // A websocket-only handshake names no session: it opens this one.
  for (const e of trace.seen) if (e.sid === undefined) e.sid = c.sid;
  if (mode === 'both' && socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade');
  assert.equal(socket.io.engine.transport.name, mode === 'both' ? 'websocket' : mode);
  return c;
}

// owner asserts that every traced answer a client got in its session was a
// success served by one process, the session's owner, and returns it.
function owner(c) {
  const seen = c.trace.seen.filter((e) => e.sid === c.sid);
  assert.ok(seen.length > 0, `${c.id}: no traced request`);
  for (const e of seen) assert.ok(e.status === 200 || (e.transport === 'websocket' && e.status === 101), `${c.id}: ${JSON.stringify(e)}`);
  const owners = [...new Set(seen.map((e) => e.owner))];
  assert.equal(owners.length, 1, `${c.id}: one session, one owner: ${JSON.stringify(seen)}`);
  return owners[0];
}

// relayed lists the traced answers that came from another process than the
// one the balancer chose.
const relayed = (c) => c.trace.seen.filter((e) => e.sid === c.sid && e.node !== e.owner);

// pings resolves once the client's engine has received n pings, and fails if
// the engine closes first.
function pings(c, n) {
  const engine = c.socket.io.engine;
  return new Promise((resolve, reject) => {
    let count = 0;
    const onPing = () => { if (++count >= n) { done(); resolve(count); } };
    const onClose = (reason) => { done(); reject(new Error(`${c.id}: engine closed (${reason}) after ${count} pings`)); };
    const done = () => { engine.off('ping', onPing); engine.off('close', onClose); };
    engine.on('ping', onPing);
    engine.on('close', onClose);
  });
}

after(() => { for (const s of open) s.close(); });

describe('round robin in front of three switchboard processes', () => {
  let redis;
  const sb = {};
  let lb;

  before(async () => {
    requireBinary();
    redis = await startRedis();
    for (const node of NODES) {
      sb[node] = await startSwitchboard({ env: { NODE_ID: node, REDIS_URL: redis.url, JWT_SECRET: SECRET, ...TIMING } });
    }
    lb = await startHaproxy({ upstreams: NODES.map((n) => sb[n].port), cfgText: rrConfig() });
  });

  after(async () => {
    for (const s of open) s.close();
    if (lb) await lb.stop();
    for (const p of Object.values(sb)) await p.stop('SIGKILL');
    if (redis) await redis.stop();
  });

  it('the raw polling requests of one session reach all three processes, and all succeed', async () => {
    const hs = await rawPoll(lb.url);
    assert.equal(hs.status, 200);
    const sid = handshakeSid(hs.body);
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await rawPoll(lb.url, { sid }));
    for (const r of answers) assert.deepEqual([r.status, r.body, r.owner], [200, 'ok', hs.node], JSON.stringify(r));
    assert.deepEqual([...new Set(answers.map((r) => r.node))].sort(), NODES, JSON.stringify(answers));
  });

  it(`polling-only clients stay connected over ${PINGS} ping intervals and exchange messages exactly once across processes`, async () => {
    const clients = [];
    for (let i = 0; i < 6; i++) clients.push(await client(lb.url, 'poll', { mode: 'polling' }));
    const drops = [];
    for (const c of clients) c.socket.on('disconnect', (reason) => drops.push(`${c.id}: ${reason}`));
    await Promise.all(clients.map((c) => pings(c, PINGS)));
    await ring(clients);
    assert.deepEqual(drops, []);
    const owners = clients.map((c) => owner(c));
    for (const c of clients) assert.equal(c.socket.io.engine.id, c.sid, `${c.id} changed sessions`);
    // Requests reached other processes than their owner, and were relayed.
    const relays = clients.flatMap(relayed);
    assert.ok(relays.length > 0, 'no request was relayed');
    assert.deepEqual([...new Set(relays.map((e) => e.node))].sort(), NODES, 'every process relayed');
    assert.ok(new Set(owners).size >= 2 && crossing(clients, owners) > 0, `owners ${owners}: nothing crossed processes`);
    for (const c of clients) c.socket.close();
  });

  it('polling-then-upgrade clients upgrade (through a tunnel when the upgrade reaches another process) and work', async () => {
    const clients = [];
    // Round robin sends each upgrade to the next process: two in three are
    // tunneled. Add clients until one was (twelve misses: one in 500,000).
    while (clients.length < 3 || (!clients.some((c) => tunneled(c)) && clients.length < 12)) {
      clients.push(await client(lb.url, 'up', { mode: 'both' }));
    }
    assert.ok(clients.some((c) => tunneled(c)), 'no upgrade was tunneled');
    for (const c of clients) {
      owner(c);
      assert.equal(c.trace.seen.filter((e) => e.transport === 'websocket').length, 1, JSON.stringify(c.trace.seen));
    }
    await ring(clients);
    for (const c of clients) c.socket.close();
  });

  it('websocket-only clients work', async () => {
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await client(lb.url, 'ws', { mode: 'websocket' }));
    await ring(clients);
    const owners = clients.map((c) => owner(c));
    assert.deepEqual([...new Set(owners)].sort(), NODES);
    for (const c of clients) c.socket.close();
  });

  it('SIGTERM of the owner: its sessions are "Session ID unknown" at once everywhere, its clients reconnect and carry on', async () => {
    const polling = await client(lb.url, 'fo-poll', { mode: 'polling', reconnection: true });
    const victim = owner(polling);
    let upgraded;
    for (let i = 0; i < 12 && !upgraded; i++) {
      const c = await client(lb.url, 'fo-up', { mode: 'both', reconnection: true });
      if (owner(c) === victim) upgraded = c;
      else {
        c.socket.close();
        if (Math.random() < 0.5) await rawPoll(lb.url); // see the SIGKILL test
      }
    }
    assert.ok(upgraded, `no upgraded client owned by ${victim} in 12 tries`);
    let witness;
    for (let i = 0; i < 12 && !witness; i++) {
      const c = await client(lb.url, 'fo-wit', { mode: 'websocket' });
      if (owner(c) !== victim) witness = c;
      else c.socket.close();
    }
    assert.ok(witness, 'no witness on another process');
    let raw;
    for (let i = 0; i < 12 && !raw; i++) {
      const hs = await rawPoll(lb.url);
      if (hs.node === victim) raw = handshakeSid(hs.body);
    }
    assert.ok(raw, `no raw session on ${victim}`);

    const victims = [polling, upgraded];
    const back = victims.map((c) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${c.id} did not reconnect`)), 30000);
      c.socket.once('disconnect', (reason) => {
        c.socket.once('connect', () => { clearTimeout(t); resolve(reason); });
      });
    }));
    assert.equal(await sb[victim].stop('SIGTERM'), 0, `${victim} exit status after SIGTERM`);

    // The stopped process's sessions: every process left answers at once.
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await rawPoll(lb.url, { sid: raw }));
    for (const r of answers) {
      assert.equal(r.status, 400, JSON.stringify(r));
      assert.deepEqual(JSON.parse(r.body), SESSION_UNKNOWN);
      assert.notEqual(r.node, victim);
    }

    const reasons = await Promise.all(back);
    for (const r of reasons) assert.notEqual(r, 'io server disconnect', 'the client must be allowed to reconnect');
    for (const c of victims) {
      const before = c.sid;
      c.sid = c.socket.io.engine.id;
      assert.notEqual(c.sid, before);
      if (c === upgraded && c.socket.io.engine.transport.name !== 'websocket') await once(c.socket.io.engine, 'upgrade');
      assert.notEqual(owner(c), victim, `${c.id} came back to the stopped process`);
      await send(c, witness, 'after failover');
      await send(witness, c, 'welcome back');
    }
  });

  it('SIGKILL of an owner: its registration outlives it, yet its sessions are "Session ID unknown" at once and its clients reconnect', async () => {
    const alive = NODES.filter((n) => sb[n].proc.exitCode === null && sb[n].proc.signalCode === null);
    assert.equal(alive.length, 2, `after the SIGTERM test: ${alive}`);
    let polling;
    for (let i = 0; i < 12 && !polling; i++) {
      const c = await client(lb.url, 'crash-poll', { mode: 'polling', reconnection: true });
      if (owner(c) === alive[0]) polling = c;
      else {
        c.socket.close();
        // A client makes several requests and round robin counts them all,
        // so the handshakes of successive clients may keep landing on the
        // same process: a random extra request breaks the pattern.
        if (Math.random() < 0.5) await rawPoll(lb.url);
      }
    }
    assert.ok(polling, `no polling client owned by ${alive[0]} in 12 tries`);
    const victim = alive[0];
    const survivor = alive[1];
    let witness;
    for (let i = 0; i < 12 && !witness; i++) {
      const c = await client(lb.url, 'crash-wit', { mode: 'websocket' });
      if (owner(c) === survivor) witness = c;
      else c.socket.close();
    }
    assert.ok(witness, `no witness on ${survivor}`);
    let raw;
    for (let i = 0; i < 12 && !raw; i++) {
      const hs = await rawPoll(lb.url);
      if (hs.node === victim) raw = handshakeSid(hs.body);
    }
    assert.ok(raw, `no raw session on ${victim}`);

    const back = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${polling.id} did not reconnect`)), 30000);
      polling.socket.once('disconnect', () => polling.socket.once('connect', () => { clearTimeout(t); resolve(); }));
    });
    await sb[victim].stop('SIGKILL');
    // Its registration is still in Redis (it had no chance to remove it),
    // and the survivor answers its sessions at once all the same.
    const kv = createClient({ url: redis.url });
    kv.on('error', () => {});
    await kv.connect();
    try {
      assert.equal(await kv.get('switchboard:node:' + raw.slice(0, 12)), `127.0.0.1:${sb[victim].port}`);
    } finally { await kv.quit(); }
    for (let i = 0; i < 3; i++) {
      const r = await rawPoll(lb.url, { sid: raw });
      assert.deepEqual([r.status, JSON.parse(r.body), r.node], [400, SESSION_UNKNOWN, survivor], JSON.stringify(r));
    }
    await back;
    polling.sid = polling.socket.io.engine.id;
    assert.equal(owner(polling), survivor);
    await send(polling, witness, 'after the crash');
    await send(witness, polling, 'welcome back');
  });
});

// tunneled: the client's websocket upgrade reached another process than the
// session's owner.
function tunneled(c) {
  return c.trace.seen.some((e) => e.transport === 'websocket' && e.sid === c.sid && e.node !== e.owner);
}

describe('round robin in front of a mixed cluster: the Node peer and two switchboard processes', () => {
  let redis;
  let kv;
  let lb;
  const procs = {}; // name → process; 'peer', 'sbA', 'sbB'

  before(async () => {
    requireBinary();
    const peerDir = await preparePeer();
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, JWT_SECRET: SECRET, ...TIMING };
    const peerPort = await freePort();
    procs.peer = await startPeer(peerDir, { port: peerPort, env: { ...env, ADVERTISE_ADDR: `127.0.0.1:${peerPort}` } });
    procs.sbA = await startSwitchboard({ env: { ...env, NODE_ID: 'sbA' } });
    procs.sbB = await startSwitchboard({ env: { ...env, NODE_ID: 'sbB' } });
    kv = createClient({ url: redis.url });
    kv.on('error', () => {});
    await kv.connect();
    // Every process has registered its tag.
    for (let i = 0; i < 200 && (await kv.keys('switchboard:node:*')).length < 3; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await kv.keys('switchboard:node:*')).length, 3);
    lb = await startHaproxy({ upstreams: [procs.peer.port, procs.sbA.port, procs.sbB.port], cfgText: rrConfig() });
  }, { timeout: 180000 }); // the first run installs the peer's node_modules

  after(async () => {
    for (const s of open) s.close();
    if (lb) await lb.stop();
    for (const p of Object.values(procs)) await p.stop('SIGKILL');
    if (kv) await kv.quit().catch(() => {});
    if (redis) await redis.stop();
  });

  // ownerOf names the process whose tag starts sid, from the registry.
  async function ownerOf(sid) {
    const addr = await kv.get('switchboard:node:' + sid.slice(0, 12));
    const port = addr && Number(addr.split(':').pop());
    return Object.keys(procs).find((k) => procs[k].port === port);
  }

  // The balancer's access log says which upstream got each request: the
  // server names in deploy/haproxy-roundrobin.cfg, sb1..sb3, are the peer,
  // sbA and sbB here. It waits for the n lines of requests naming sid.
  async function upstreamsOf(sid, n) {
    const names = { sb1: 'peer', sb2: 'sbA', sb3: 'sbB' };
    for (let i = 0; i < 200; i++) {
      const lines = lb.lines.filter((l) => l.includes(`sid=${sid}`));
      if (lines.length >= n) return lines.map((l) => names[/ switchboard\/(sb\d) /.exec(l)[1]]);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`fewer than ${n} log lines for ${sid}:\n${lb.lines.join('\n')}`);
  }

  it('relays in both directions: each session\'s raw requests reach all three processes and all succeed', async () => {
    const sessions = {}; // owner → sid
    for (let i = 0; i < 9 && Object.keys(sessions).length < 3; i++) {
      const hs = await rawPoll(lb.url);
      assert.equal(hs.status, 200);
      const sid = handshakeSid(hs.body);
      sessions[await ownerOf(sid)] = sid;
    }
    assert.deepEqual(Object.keys(sessions).sort(), ['peer', 'sbA', 'sbB'], 'a session on each process');
    for (const [own, sid] of Object.entries(sessions)) {
      const answers = [];
      for (let i = 0; i < 6; i++) answers.push(await rawPoll(lb.url, { sid }));
      for (const r of answers) assert.deepEqual([r.status, r.body], [200, 'ok'], `${own}'s session: ${JSON.stringify(r)}`);
      const reached = await upstreamsOf(sid, 6);
      assert.deepEqual([...new Set(reached)].sort(), ['peer', 'sbA', 'sbB'], `${own}'s session reached ${reached}`);
    }
  });

  it('polling-only and polling-then-upgrade clients on every process talk to each other exactly once', async () => {
    const clients = [];
    const owners = new Set();
    for (let i = 0; i < 18 && (owners.size < 3 || clients.length < 6); i++) {
      const c = await client(lb.url, 'mix', { mode: i % 2 ? 'both' : 'polling' });
      clients.push(c);
      owners.add(await ownerOf(c.sid));
      // Round robin counts every request of a client: a random extra one
      // keeps successive handshakes from landing on the same two processes.
      if (owners.size < 3 && Math.random() < 0.5) await rawPoll(lb.url);
    }
    assert.deepEqual([...owners].sort(), ['peer', 'sbA', 'sbB'], 'clients on every process');
    await Promise.all(clients.map((c) => pings(c, 3)));
    await ring(clients);
    for (const c of clients) {
      assert.equal(c.socket.io.engine.id, c.sid);
      for (const e of c.trace.seen.filter((x) => x.sid === c.sid)) {
        assert.ok(e.status === 200 || e.status === 101, `${c.id}: ${JSON.stringify(e)}`);
      }
    }
  });
});
