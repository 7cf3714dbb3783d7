// Helpers for the load-balancer topology tests: run the shipped HAProxy
// configurations (deploy/haproxy.cfg, deploy/haproxy-roundrobin.cfg) as
// foreground processes on loopback, check that the round-robin one is the
// sticky one without its cookie lines, trace which Switchboard process
// answered (and which held the session of) every Engine.IO request a
// socket.io-client makes, and exchange messages between clients.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fetch, NodeWebSocket } from 'socket.io-client';
import assert from 'node:assert/strict';
import { ROOT, emitWithAck, exited, freePort, waitForPort } from './harness.mjs';

export const HAPROXY_CFG = path.join(ROOT, 'deploy', 'haproxy.cfg');
export const ROUND_ROBIN_CFG = path.join(ROOT, 'deploy', 'haproxy-roundrobin.cfg');
export const CLUSTER_SH = path.join(ROOT, 'deploy', 'cluster.sh');
export const NODE_HEADER = 'x-switchboard-node';
// On an answer relayed from the process that holds the session: that process.
export const OWNER_HEADER = 'x-switchboard-owner';
export const SESSION_UNKNOWN = { code: 1, message: 'Session ID unknown' };

export function requireHaproxy() {
  if (spawnSync('sh', ['-c', 'command -v haproxy']).status !== 0) {
    throw new Error('haproxy is missing: apt-get install -y haproxy');
  }
}

// roundRobinVariant removes the cookie persistence from the sticky
// configuration and nothing else: what deploy/haproxy-roundrobin.cfg must be
// (comments aside; see significant). It fails when the sticky file no longer
// has the lines it removes, rather than silently testing something else.
export function roundRobinVariant(text) {
  const cookieLine = /^\s*cookie SB_NODE .*\n/m;
  if (!cookieLine.test(text)) throw new Error('deploy/haproxy.cfg: no "cookie SB_NODE" line to remove');
  let out = text.replace(cookieLine, '');
  const serverCookie = /^(\s*server sb\d .*?) cookie sb\d$/gm;
  const servers = out.match(serverCookie) || [];
  if (servers.length !== 3) throw new Error(`deploy/haproxy.cfg: expected 3 servers with a cookie, found ${servers.length}`);
  out = out.replace(serverCookie, '$1');
  if (/cookie/.test(out.replace(/^\s*#.*$/gm, ''))) throw new Error('round-robin variant still mentions a cookie');
  return out;
}

// significant is a configuration without its comments and blank lines.
export function significant(text) {
  return text.split('\n').filter((l) => l.trim() !== '' && !/^\s*#/.test(l)).join('\n');
}

// startHaproxy runs `haproxy -db -f cfg` (foreground, logs on stdout) with the
// three upstream addresses and a free loopback port in its environment.
export async function startHaproxy({ upstreams, cfgText, port } = {}) {
  requireHaproxy();
  if (!upstreams || upstreams.length !== 3) throw new Error('startHaproxy needs three upstream ports');
  port = port || await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-haproxy-'));
  let cfg = HAPROXY_CFG;
  if (cfgText !== undefined) {
    cfg = path.join(dir, 'haproxy.cfg');
    writeFileSync(cfg, cfgText);
  }
  const env = {
    PATH: process.env.PATH,
    LB_BIND: `127.0.0.1:${port}`,
    SB1_ADDR: `127.0.0.1:${upstreams[0]}`,
    SB2_ADDR: `127.0.0.1:${upstreams[1]}`,
    SB3_ADDR: `127.0.0.1:${upstreams[2]}`,
  };
  const check = spawnSync('haproxy', ['-c', '-q', '-f', cfg], { env, encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy -c ${cfg} failed:\n${check.stdout}${check.stderr}`);
  const proc = spawn('haproxy', ['-db', '-f', cfg], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const keep = (d) => lines.push(...d.toString().split('\n').filter(Boolean));
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  try {
    await Promise.race([
      waitForPort(port),
      exited(proc).then((code) => { throw new Error(`haproxy exited ${code}`); }),
    ]);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}\nhaproxy output:\n${lines.join('\n')}`);
  }
  return {
    port, url: `http://127.0.0.1:${port}`, proc, lines, cfg,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// tracer gives a client transports that record, for every Engine.IO request,
// the status and the X-Switchboard-Node header of the answer (node: the
// process the balancer sent it to), and owner: the process that holds the
// session (X-Switchboard-Owner on an answer relayed from it, else node). Each
// polling response, and the 101 of each websocket handshake, with the
// Engine.IO session (sid) it belongs to where the request or the open packet
// names it. Bodies of failed polling responses are kept too.
// Pass `transports: t.polling | t.websocket | t.both`.
export function tracer() {
  const seen = [];
  const waiters = [];
  const record = (entry) => {
    seen.push(entry);
    for (const w of [...waiters]) {
      if (w.pred(entry)) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(w.timer); w.resolve(entry); }
    }
  };
  class TracedFetch extends Fetch {
    _fetch(data) {
      const sid = this.query.sid;
      return super._fetch(data).then(async (res) => {
        const node = res.headers.get(NODE_HEADER);
        const entry = { transport: 'polling', method: data === undefined ? 'GET' : 'POST', status: res.status, node, owner: res.headers.get(OWNER_HEADER) || node, sid };
        if (!res.ok) entry.body = await res.clone().text();
        else if (!sid) entry.sid = handshakeSid(await res.clone().text());
        record(entry);
        return res;
      });
    }
  }
  class TracedWebSocket extends NodeWebSocket {
    createSocket(uri, protocols, opts) {
      const ws = super.createSocket(uri, protocols, opts);
      const sid = this.query.sid; // absent on a websocket-only handshake
      ws.once('upgrade', (res) => record({
        transport: 'websocket', status: res.statusCode, node: res.headers[NODE_HEADER], owner: res.headers[OWNER_HEADER] || res.headers[NODE_HEADER], sid,
      }));
      return ws;
    }
  }
  return {
    seen,
    polling: [TracedFetch],
    websocket: [TracedWebSocket],
    both: [TracedFetch, TracedWebSocket],
    nodes() { return [...new Set(seen.map((e) => e.node))]; },
    // next resolves with the first recorded (or future) entry matching pred.
    next(pred, timeoutMs = 10000) {
      const have = seen.find(pred);
      if (have) return Promise.resolve(have);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        w.timer = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); reject(new Error(`no such request within ${timeoutMs} ms: ${JSON.stringify(seen)}`)); }, timeoutMs);
        waiters.push(w);
      });
    },
  };
}

// rawPoll performs one Engine.IO v4 polling request without any client
// library: a handshake (no sid) or a POST of a noop packet for sid (a POST
// is answered at once, where a GET would be held until the next ping).
export async function rawPoll(baseUrl, { sid, cookie } = {}) {
  const q = new URLSearchParams({ EIO: '4', transport: 'polling' });
  if (sid) q.set('sid', sid);
  const headers = { 'content-type': 'text/plain;charset=UTF-8' };
  if (cookie) headers.cookie = cookie;
  const res = await fetch(`${baseUrl}/socket.io/?${q}`, sid ? { method: 'POST', body: '6', headers } : { headers });
  const body = await res.text();
  const setCookie = res.headers.getSetCookie().map((c) => c.split(';')[0]);
  const node = res.headers.get(NODE_HEADER);
  return { status: res.status, body, node, owner: res.headers.get(OWNER_HEADER) || node, setCookie };
}

export function handshakeSid(body) {
  const m = /^0(\{[^\x1e]*\})/.exec(body);
  if (!m) throw new Error(`not an Engine.IO open packet: ${JSON.stringify(body)}`);
  return JSON.parse(m[1]).sid;
}

export function readShipped() {
  return readFileSync(HAPROXY_CFG, 'utf8');
}

// startNginxAddressHash runs Debian's nginx as a balancer keyed on the client
// address (hash $remote_addr consistent, the usual open-source recipe), with
// the websocket headers and timeouts a Socket.IO proxy needs. It is not
// shipped: it is the alternative the tests measure against.
export async function startNginxAddressHash({ upstreams }) {
  if (spawnSync('sh', ['-c', 'command -v nginx']).status !== 0) throw new Error('nginx is missing: apt-get install -y nginx-light');
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-nginx-'));
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, `daemon off;
pid ${dir}/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream switchboard {
    hash $remote_addr consistent;
${upstreams.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://switchboard;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
    }
  }
}
`);
  const proc = spawn('nginx', ['-p', dir, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  proc.stderr.on('data', (d) => lines.push(d.toString()));
  try {
    await Promise.race([waitForPort(port), exited(proc).then((c) => { throw new Error(`nginx exited ${c}`); })]);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}\n${lines.join('')}`);
  }
  return {
    port, url: `http://127.0.0.1:${port}`, lines,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// send delivers one message from a to b (clients as { id, socket, inbox })
// and waits for it on b.
export async function send(a, b, text) {
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
export async function ring(clients) {
  const ids = [];
  for (let i = 0; i < clients.length; i++) ids.push(await send(clients[i], clients[(i + 1) % clients.length], `hello ${i}`));
  for (let i = 0; i < clients.length; i++) await send(clients[i], clients[(i + 1) % clients.length], `again ${i}`);
  for (let i = 0; i < clients.length; i++) {
    const b = clients[(i + 1) % clients.length];
    assert.equal(b.inbox.got.filter((m) => m.args && m.args.id === ids[i]).length, 1, `message ${i} to ${b.id} not exactly once`);
  }
}

// crossing returns how many ring hops join two different processes.
export function crossing(clients, nodes) {
  return clients.filter((_, i) => nodes[i] !== nodes[(i + 1) % clients.length]).length;
}
