// The docker-compose topology, run for real without Docker: a real
// redis-server, three switchboard processes (NODE_ID sb1..sb3, one Redis, one
// JWT secret) and HAProxy running deploy/haproxy.cfg unchanged, with loopback
// addresses in its environment. socket.io-client v4 goes through the balancer
// with polling only, websocket only and polling-then-upgrade. Every Engine.IO
// request's answer is traced (status, X-Switchboard-Node, session) by the
// client's own transports, so "stays on one process" is checked request by
// request. A second HAProxy runs the same file with the cookie lines removed
// (plain round robin) to show that polling breaks without stickiness and
// websocket does not; nginx with an address hash shows why that key was not
// chosen; chromium on the demo page shows that browsers keep the cookie; a
// process is stopped with SIGTERM and its clients move. deploy/cluster.sh, the
// README's "without Docker" script, is run last.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import {
  BIN, collect, connectSocket, emitWithAck, exited, freePort, requireBinary, signToken,
  startRedis, startSwitchboard,
} from './lib/harness.mjs';
import { launchChromium, nodeShown, send as sendFromPage, signIn, waitMessage } from './lib/browser.mjs';
import {
  CLUSTER_SH, SESSION_UNKNOWN, handshakeSid, rawPoll, readShipped, roundRobinVariant, startHaproxy,
  startNginxAddressHash, tracer,
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

// send delivers one message from a to b and waits for it on b.
async function send(a, b, text) {
  const ack = await emitWithAck(a.socket, 'sendMessage', { to: b.id, text });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const got = await b.inbox.next((m) => m.event === 'message_sent' && m.args.id === ack.message.id);
  assert.deepEqual(got, { event: 'message_sent', id: b.id, args: ack.message });
  return ack.message.id;
}

// ring sends one message from each client to the next and checks that each
// arrived exactly once: after a second message on every path has arrived
// (same sender, same recipient, so ordered behind the first), the first is
// counted.
async function ring(clients) {
  const ids = [];
  for (let i = 0; i < clients.length; i++) ids.push(await send(clients[i], clients[(i + 1) % clients.length], `hello ${i}`));
  for (let i = 0; i < clients.length; i++) await send(clients[i], clients[(i + 1) % clients.length], `again ${i}`);
  for (let i = 0; i < clients.length; i++) {
    const b = clients[(i + 1) % clients.length];
    assert.equal(b.inbox.got.filter((m) => m.args && m.args.id === ids[i]).length, 1, `message ${i} to ${b.id} not exactly once`);
  }
}

// crossing returns how many ring hops join two different processes.
function crossing(clients, nodes) {
  return clients.filter((_, i) => nodes[i] !== nodes[(i + 1) % clients.length]).length;
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
  rr = await startHaproxy({ upstreams, cfgText: roundRobinVariant(readShipped()) });
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

  it('pins a raw polling session with the SB_NODE cookie; without it the session is lost', async () => {
    const hs = await rawPoll(sticky.url);
    assert.equal(hs.status, 200);
    const sid = handshakeSid(hs.body);
    assert.deepEqual(hs.setCookie, [`SB_NODE=${hs.node}`], 'the balancer names the answering server in its cookie');
    for (let i = 0; i < 4; i++) {
      const r = await rawPoll(sticky.url, { sid, cookie: hs.setCookie[0] });
      assert.deepEqual({ status: r.status, body: r.body, node: r.node }, { status: 200, body: 'ok', node: hs.node });
      assert.deepEqual(r.setCookie, [], 'a request with a valid cookie is not given a new one');
    }
    const lost = [];
    for (let i = 0; i < 3; i++) lost.push(await rawPoll(sticky.url, { sid }));
    assertSessionLost(hs.node, lost);
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

// assertSessionLost: requests for a session owned by owner that reach another
// process get 400 {"code":1,"message":"Session ID unknown"}; at least one did.
function assertSessionLost(owner, answers) {
  for (const r of answers) {
    if (r.node === owner) assert.deepEqual([r.status, r.body], [200, 'ok']);
    else {
      assert.equal(r.status, 400, JSON.stringify(r));
      assert.deepEqual(JSON.parse(r.body), SESSION_UNKNOWN);
    }
  }
  assert.ok(answers.some((r) => r.node !== owner), `all answers came from ${owner}: ${JSON.stringify(answers)}`);
}

describe('round-robin balancer: the same file without the cookie lines', () => {
  it('loses a raw polling session: "Session ID unknown" from the other processes', async () => {
    const hs = await rawPoll(rr.url);
    assert.equal(hs.status, 200);
    assert.deepEqual(hs.setCookie, [], 'the variant sets no cookie');
    const sid = handshakeSid(hs.body);
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await rawPoll(rr.url, { sid }));
    assertSessionLost(hs.node, answers);
  });

  it('a polling socket.io client cannot connect, and is told "Session ID unknown"', async () => {
    const trace = tracer();
    const err = await connectSocket(io, rr.url + '/socket', {
      auth: { token: token(user('rr-poll')) }, transports: trace.polling, withCredentials: true,
    }).then((s) => { open.push(s); return null; }, (e) => e);
    assert.ok(err, `connected anyway: ${JSON.stringify(trace.seen)}`);
    assert.match(err.message, /fetch (read|write) error/);
    assert.equal(err.description, 400);
    const lost = trace.seen.filter((e) => e.status === 400);
    assert.ok(lost.length >= 1, JSON.stringify(trace.seen));
    const owner = trace.seen[0].node;
    for (const e of lost) {
      assert.notEqual(e.node, owner);
      assert.deepEqual(JSON.parse(e.body), SESSION_UNKNOWN);
    }
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
  it('starts redis, three processes and the balancer; stops them all on SIGTERM', async () => {
    const ports = { LB_PORT: await freePort(), REDIS_PORT: await freePort() };
    const sbPorts = [await freePort(), await freePort(), await freePort()];
    const env = {
      ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      SB_PORTS: sbPorts.join(' '), SWITCHBOARD_BIN: BIN, LOG_DIR: mkdtempSync(path.join(os.tmpdir(), 'sb-cluster-sh-')),
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
      const a = await connectSocket(io, base + '/socket', { auth: { token: tok.token }, transports: trace.both, withCredentials: true });
      try {
        await trace.next((e) => e.transport === 'websocket');
        stuck({ id: 'script-a', trace });
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
