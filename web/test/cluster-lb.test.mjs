// The docker-compose topology, run for real without Docker: a real
// redis-server, three switchboard processes (NODE_ID sb1..sb3, one Redis, one
// JWT secret) and HAProxy running deploy/haproxy.cfg unchanged, with loopback
// addresses in its environment. socket.io-client v4 goes through the balancer
// with polling only, websocket only and polling-then-upgrade. Every Engine.IO
// request's answer is traced (status, X-Switchboard-Node, session) by the
// client's own transports, so "stays on one process" is checked request by
// request. A second HAProxy runs deploy/haproxy-roundrobin.cfg, the same file
// with the cookie lines removed (plain round robin): the requests of one
// polling session reach every process and all succeed, because a process
// relays a request for another's session to it (cluster-roundrobin.test.mjs
// covers that balancer in depth); nginx with an address hash shows why that
// key was not chosen; chromium on the demo page shows that browsers keep the cookie; a
// process is stopped with SIGTERM and its clients move. deploy/cluster.sh, the
// README's "without Docker" script, is run last.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import {
  BIN, collect, connectSocket, exited, freePort, requireBinary, signToken,
  startRedis, startSwitchboard,
} from './lib/harness.mjs';
import { launchChromium, nodeShown, send as sendFromPage, signIn, waitMessage } from './lib/browser.mjs';
import {
  CLUSTER_SH, ROUND_ROBIN_CFG, crossing, handshakeSid, rawPoll, readShipped, ring, roundRobinVariant,
  send, significant, startHaproxy, startNginxAddressHash, tracer,
} from './lib/cluster.mjs';

const SECRET = 'cluster-lb-test-secret';
const NODES = ['sb1', 'sb2', 'sb3'];
let seq = 0;
const user = (prefix) => `${prefix}-${process.pid}-${++seq}`;
const token = (sub) => signToken(SECRET, { sub, exp: Math.floor(Date.now() / 1000) + 3600 });

const open = []; // every socket, closed in after()

// client connects user through baseUrl with traced transports.
async function client(baseUrl, prefix, { mode, cookies = true, ...opts }) {
  const id = user(prefix);
  const trace = tracer();
  const socket = await connectSocket(io, baseUrl + '/socket', {
    auth: { token: token(id) }, transports: trace[mode], upgrade: mode === 'both', withCredentials: cookies, ...opts,
  });
  open.push(socket);
  const c = { id, socket, trace, inbox: collect(socket) };
  // With the upgrade, wait until the balancer has passed the websocket
  // handshake of this session through (its 101), which the server grants only
  // to the process holding the sid. Not for the probe exchange that follows
  // to complete: that is between client and server, not the balancer's doing
  // (and about 1 in 300 upgrades to this server never finish it, even with
  // no balancer; the client then simply stays on polling).
  if (mode === 'both') await trace.next((e) => e.transport === 'websocket');
  if (mode !== 'both') assert.equal(socket.io.engine.transport.name, mode);
  return c;
}

// stuck asserts that every traced answer a client got (in Engine.IO session
// sid, if given) came from one process, with success statuses, and returns
// that process.
function stuck(c, { sid } = {}) {
  const seen = sid ? c.trace.seen.filter((e) => e.sid === sid) : c.trace.seen;
  assert.ok(seen.length > 0, `${c.id}: no traced request`);
  const sids = new Set(seen.map((e) => e.sid).filter(Boolean));
  assert.ok(sids.size <= 1, `${c.id}: requests of several sessions: ${[...sids]}`);
  for (const e of seen) {
    assert.ok(e.status === 200 || (e.transport === 'websocket' && e.status === 101), `${c.id}: ${JSON.stringify(e)}`);
  }
  const nodes = [...new Set(seen.map((e) => e.node))];
  assert.equal(nodes.length, 1, `${c.id} was answered by ${nodes.join(', ')}: ${JSON.stringify(seen)}`);
  assert.ok(NODES.includes(nodes[0]), `unknown node ${nodes[0]}`);
  return nodes[0];
}

let redis;
const sb = {};
let sticky; let rr;

before(async () => {
  requireBinary();
  redis = await startRedis();
  for (const node of NODES) {
    sb[node] = await startSwitchboard({
      env: { NODE_ID: node, REDIS_URL: redis.url, JWT_SECRET: SECRET, API_KEY: 'cluster-lb-key', DEV_TOKENS: '1' },
    });
  }
  const upstreams = NODES.map((n) => sb[n].port);
  sticky = await startHaproxy({ upstreams });
  rr = await startHaproxy({ upstreams, cfgText: readFileSync(ROUND_ROBIN_CFG, 'utf8') });
});

after(async () => {
  for (const s of open) s.close();
  for (const lb of [sticky, rr]) if (lb) await lb.stop();
  for (const p of Object.values(sb)) await p.stop('SIGKILL');
  if (redis) await redis.stop();
});

describe('sticky balancer: deploy/haproxy.cfg as shipped', () => {
  it('reaches all three processes, round robin for requests without the cookie', async () => {
    const nodes = [];
    for (let i = 0; i < 3; i++) {
      const r = await fetch(sticky.url + '/api/whoami');
      assert.equal(r.status, 200);
      const { node } = await r.json();
      assert.equal(r.headers.get('x-switchboard-node'), node);
      nodes.push(node);
    }
    assert.deepEqual([...nodes].sort(), NODES);
  });

  it('pins a raw polling session with the SB_NODE cookie; without it the requests are relayed to the owner', async () => {
    const hs = await rawPoll(sticky.url);
    assert.equal(hs.status, 200);
    const sid = handshakeSid(hs.body);
    assert.deepEqual(hs.setCookie, [`SB_NODE=${hs.node}`], 'the balancer names the answering server in its cookie');
    for (let i = 0; i < 4; i++) {
      const r = await rawPoll(sticky.url, { sid, cookie: hs.setCookie[0] });
      assert.deepEqual({ status: r.status, body: r.body, node: r.node }, { status: 200, body: 'ok', node: hs.node });
      assert.deepEqual(r.setCookie, [], 'a request with a valid cookie is not given a new one');
    }
    // Without the cookie the balancer is round robin: other processes get
    // the requests and relay them to the owner.
    const loose = [];
    for (let i = 0; i < 3; i++) loose.push(await rawPoll(sticky.url, { sid }));
    for (const r of loose) assert.deepEqual([r.status, r.body, r.owner], [200, 'ok', hs.node], JSON.stringify(r));
    assert.ok(loose.some((r) => r.node !== hs.node), `all answers came from ${hs.node}: ${JSON.stringify(loose)}`);
  });

  it('polling only: every request of a client stays on one process; messages cross processes exactly once', async () => {
    const clients = [];
    for (let i = 0; i < 6; i++) clients.push(await client(sticky.url, 'poll', { mode: 'polling' }));
    await ring(clients);
    const nodes = clients.map((c) => stuck(c));
    for (const c of clients) assert.ok(c.trace.seen.length >= 3, `${c.id}: handshake, connect and polls traced`);
    assert.deepEqual([...new Set(nodes)].sort(), NODES, 'clients spread over the three processes');
    assert.ok(crossing(clients, nodes) > 0);
  });

  it('websocket only: one connection per client, needs no cookie; messages cross processes', async () => {
    const clients = [];
    for (let i = 0; i < 6; i++) clients.push(await client(sticky.url, 'ws', { mode: 'websocket', cookies: false }));
    await ring(clients);
    const nodes = clients.map((c) => stuck(c));
    for (const c of clients) assert.deepEqual(c.trace.seen.map((e) => e.status), [101]);
    assert.deepEqual([...new Set(nodes)].sort(), NODES);
    assert.ok(crossing(clients, nodes) > 0);
  });

  it('polling then upgrade: handshake, polls and the websocket upgrade all reach one process', async () => {
    const clients = [];
    for (let i = 0; i < 6; i++) clients.push(await client(sticky.url, 'up', { mode: 'both' }));
    await ring(clients);
    const nodes = clients.map((c) => stuck(c));
    for (const c of clients) {
      const kinds = c.trace.seen.map((e) => e.transport);
      assert.ok(kinds.includes('polling') && kinds.filter((k) => k === 'websocket').length === 1, JSON.stringify(c.trace.seen));
    }
    assert.deepEqual([...new Set(nodes)].sort(), NODES);
    assert.ok(crossing(clients, nodes) > 0);
  });
});

describe('round-robin balancer: deploy/haproxy-roundrobin.cfg, the same file without the cookie lines', () => {
  it('is deploy/haproxy.cfg without its cookie lines, and nothing else', () => {
    assert.equal(significant(readFileSync(ROUND_ROBIN_CFG, 'utf8')), significant(roundRobinVariant(readShipped())));
  });

  it('spreads the requests of a raw polling session over the three processes, and every one succeeds', async () => {
    const hs = await rawPoll(rr.url);
    assert.equal(hs.status, 200);
    assert.deepEqual(hs.setCookie, [], 'the variant sets no cookie');
    const sid = handshakeSid(hs.body);
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await rawPoll(rr.url, { sid }));
    for (const r of answers) {
      // Served as if it had reached the owner, wherever it reached.
      assert.deepEqual({ status: r.status, body: r.body, owner: r.owner }, { status: 200, body: 'ok', owner: hs.node }, JSON.stringify(r));
    }
    assert.deepEqual([...new Set(answers.map((r) => r.node))].sort(), NODES, `reached: ${JSON.stringify(answers)}`);
  });

  it('a polling socket.io client connects and talks, whichever process each request reaches', async () => {
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await client(rr.url, 'rr-poll', { mode: 'polling', cookies: false }));
    await ring(clients);
    let relayed = 0;
    for (const c of clients) {
      for (const e of c.trace.seen) assert.equal(e.status, 200, `${c.id}: ${JSON.stringify(e)}`);
      const owners = new Set(c.trace.seen.map((e) => e.owner));
      assert.equal(owners.size, 1, `${c.id}: one session, one owner: ${JSON.stringify(c.trace.seen)}`);
      relayed += c.trace.seen.filter((e) => e.node !== e.owner).length;
    }
    assert.ok(relayed > 0, 'no request reached a process other than its owner');
  });

  it('websocket-only clients work without stickiness', async () => {
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await client(rr.url, 'rr-ws', { mode: 'websocket', cookies: false }));
    await ring(clients);
    const nodes = clients.map((c) => stuck(c));
    assert.deepEqual([...new Set(nodes)].sort(), NODES);
  });
});

describe('why not nginx: an address hash puts one address on one process', () => {
  it('sends every client from 127.0.0.1 to the same process', async (t) => {
    const nginx = await startNginxAddressHash({ upstreams: NODES.map((n) => sb[n].port) });
    t.after(() => nginx.stop());
    const count = {};
    for (let i = 0; i < 12; i++) {
      const c = await client(nginx.url, 'ngx', { mode: 'polling' });
      const node = stuck(c); // each client does stay on one process
      count[node] = (count[node] || 0) + 1;
      c.socket.close();
    }
    t.diagnostic(`nginx hash $remote_addr consistent, 12 polling clients from one address: ${JSON.stringify(count)}`);
    // ...but all of them on the same one: behind one NAT or proxy, or in a
    // load test from one machine, the other replicas get nothing.
    assert.equal(Object.keys(count).length, 1);
  });
});

describe('a browser on the demo page, through the sticky balancer', () => {
  it('keeps each page on one process by the cookie alone, shows that process, and pages talk across processes', async () => {
    const browser = await launchChromium();
    try {
      const pages = [];
      for (let i = 0; i < 3; i++) {
        const context = await browser.newContext(); // its own cookie jar
        const page = await context.newPage();
        const seen = [];
        page.on('response', (res) => {
          if (new URL(res.url()).pathname.startsWith('/socket.io/')) seen.push({ status: res.status(), node: res.headers()['x-switchboard-node'] });
        });
        await page.goto(`${sticky.url}/?transports=polling`);
        const id = user('page');
        await signIn(page, id);
        pages.push({ page, seen, id });
      }
      for (let i = 0; i < pages.length; i++) {
        const a = pages[i];
        const b = pages[(i + 1) % pages.length];
        await sendFromPage(a.page, b.id, `from page ${i}`);
        await waitMessage(b.page, `from page ${i}`);
      }
      const nodes = [];
      for (const p of pages) {
        assert.ok(p.seen.length >= 3, `${p.id}: polling requests seen: ${JSON.stringify(p.seen)}`);
        assert.ok(p.seen.every((e) => e.status === 200), JSON.stringify(p.seen));
        const mine = [...new Set(p.seen.map((e) => e.node))];
        assert.equal(mine.length, 1, `${p.id} polled ${mine.join(', ')}`);
        // The page asks GET /api/whoami, an ordinary request: the cookie
        // alone sends it to the process that holds the page's session.
        assert.equal(await nodeShown(p.page), mine[0]);
        nodes.push(mine[0]);
      }
      assert.ok(new Set(nodes).size >= 2, `pages all on ${nodes[0]}: nothing crossed processes`);
    } finally {
      await browser.close();
    }
  });
});

describe('failover through the sticky balancer', () => {
  it('clients of a stopped process reconnect to another one and keep working', async () => {
    // Victims: a polling-only client and an upgraded one on the same process;
    // the witness sits on another process.
    const polling = await client(sticky.url, 'fo-poll', { mode: 'polling', reconnection: true });
    const victim = stuck(polling);
    let upgraded;
    for (let i = 0; i < 6 && !upgraded; i++) {
      const c = await client(sticky.url, 'fo-up', { mode: 'both', reconnection: true });
      if (stuck(c) === victim) upgraded = c;
    }
    assert.ok(upgraded, `no upgraded client landed on ${victim} in 6 tries`);
    let witness;
    for (let i = 0; i < 6 && !witness; i++) {
      const c = await client(sticky.url, 'fo-wit', { mode: 'websocket', cookies: false });
      if (stuck(c) !== victim) witness = c;
    }
    assert.ok(witness, 'no witness on another process');

    const before = new Map([polling, upgraded].map((c) => [c, c.socket.io.engine.id]));
    const back = [polling, upgraded].map((c) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${c.id} did not reconnect`)), 30000);
      c.socket.once('disconnect', (reason) => {
        c.socket.once('connect', () => { clearTimeout(t); resolve(reason); });
      });
    }));
    const code = await sb[victim].stop('SIGTERM');
    assert.equal(code, 0, `${victim} exit status after SIGTERM`);
    const reasons = await Promise.all(back);
    for (const r of reasons) assert.notEqual(r, 'io server disconnect', 'the client must be allowed to reconnect');

    // Requests of the old session may still be answered after the disconnect
    // (the client's parting close packet, redispatched to a process that does
    // not know it): the new session is the one that must stay in one place.
    for (const c of [polling, upgraded]) {
      const sid = c.socket.io.engine.id;
      if (c === upgraded) await c.trace.next((e) => e.transport === 'websocket' && e.sid === sid);
      assert.notEqual(sid, before.get(c));
      const now = stuck(c, { sid });
      assert.notEqual(now, victim, `${c.id} came back to the stopped process`);
      await send(c, witness, 'after failover');
      await send(witness, c, 'welcome back');
    }

    // A browser keeps its cookie across reconnections: a handshake that still
    // names the stopped process is redispatched and the cookie rewritten.
    const hs = await rawPoll(sticky.url, { cookie: `SB_NODE=${victim}` });
    assert.equal(hs.status, 200);
    assert.notEqual(hs.node, victim);
    assert.deepEqual(hs.setCookie, [`SB_NODE=${hs.node}`]);
    const r = await rawPoll(sticky.url, { sid: handshakeSid(hs.body), cookie: hs.setCookie[0] });
    assert.deepEqual([r.status, r.body, r.node], [200, 'ok', hs.node]);
  });
});

describe('deploy/cluster.sh (the same topology, as the README runs it)', () => {
  for (const mode of ['sticky', 'roundrobin']) it(`LB_MODE=${mode}: starts redis, three processes and the balancer; stops them all on SIGTERM`, async () => {
    const ports = { LB_PORT: await freePort(), REDIS_PORT: await freePort() };
    const sbPorts = [await freePort(), await freePort(), await freePort()];
    const env = {
      ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      SB_PORTS: sbPorts.join(' '), SWITCHBOARD_BIN: BIN, LOG_DIR: mkdtempSync(path.join(os.tmpdir(), 'sb-cluster-sh-')),
      LB_MODE: mode,
    };
    const script = spawn('bash', [CLUSTER_SH], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    script.stdout.on('data', (d) => out.push(d.toString()));
    script.stderr.on('data', (d) => out.push(d.toString()));
    let stopped = false;
    try {
      const ready = new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('cluster.sh did not report ready')), 30000);
        script.stdout.on('data', () => { if (out.join('').includes('cluster ready')) { clearTimeout(t); resolve(); } });
        script.once('exit', (c) => { clearTimeout(t); reject(new Error(`cluster.sh exited ${c}`)); });
      });
      await ready.catch((e) => { throw new Error(`${e.message}\n${out.join('')}`); });
      const base = `http://127.0.0.1:${ports.LB_PORT}`;
      const nodes = [];
      for (let i = 0; i < 3; i++) nodes.push((await (await fetch(base + '/api/whoami')).json()).node);
      assert.deepEqual([...nodes].sort(), NODES);
      const tok = await (await fetch(base + '/api/dev/token', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"script-a"}',
      })).json();
      const trace = tracer();
      const a = await connectSocket(io, base + '/socket', { auth: { token: tok.token }, transports: trace.both, withCredentials: mode === 'sticky' });
      try {
        await trace.next((e) => e.transport === 'websocket');
        if (mode === 'sticky') stuck({ id: 'script-a', trace });
        else {
          // Wherever each request went, it was served by the session's owner.
          for (const e of trace.seen) assert.ok(e.status === 200 || e.status === 101, JSON.stringify(e));
          assert.equal(new Set(trace.seen.map((e) => e.owner)).size, 1, JSON.stringify(trace.seen));
        }
      } finally { a.close(); }

      script.kill('SIGTERM');
      stopped = true;
      assert.equal(await exited(script), 0, out.join(''));
      for (const port of [ports.LB_PORT, ports.REDIS_PORT, ...sbPorts]) {
        assert.equal(await portOpen(port), false, `port ${port} still open after cluster.sh stopped`);
      }
    } finally {
      if (!stopped) { script.kill('SIGTERM'); await exited(script); }
      rmSync(env.LOG_DIR, { recursive: true, force: true });
    }
  });
});

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
