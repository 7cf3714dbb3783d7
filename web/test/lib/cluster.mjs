// Helpers for the load-balancer topology tests: run the shipped HAProxy
// configuration (deploy/haproxy.cfg) as a foreground process on loopback,
// render its round-robin variant, and trace which Switchboard process answered
// every Engine.IO request a socket.io-client makes.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fetch, NodeWebSocket } from 'socket.io-client';
import { ROOT, exited, freePort, waitForPort } from './harness.mjs';

export const HAPROXY_CFG = path.join(ROOT, 'deploy', 'haproxy.cfg');
export const CLUSTER_SH = path.join(ROOT, 'deploy', 'cluster.sh');
export const NODE_HEADER = 'x-switchboard-node';
export const SESSION_UNKNOWN = { code: 1, message: 'Session ID unknown' };

export function requireHaproxy() {
  if (spawnSync('sh', ['-c', 'command -v haproxy']).status !== 0) {
    throw new Error('haproxy is missing: apt-get install -y haproxy');
  }
}

// roundRobinVariant removes the cookie persistence from the shipped
// configuration and nothing else, so that the two balancers differ only in
// stickiness. It fails when the shipped file no longer has the lines it
// removes, rather than silently testing something else.
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
// the status and the X-Switchboard-Node header of the answer: each polling
// response, and the 101 of each websocket handshake, with the Engine.IO
// session (sid) it belongs to where the request or the open packet names it.
// Bodies of failed polling responses are kept too.
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
        const entry = { transport: 'polling', method: data === undefined ? 'GET' : 'POST', status: res.status, node: res.headers.get(NODE_HEADER), sid };
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
      ws.once('upgrade', (res) => record({ transport: 'websocket', status: res.statusCode, node: res.headers[NODE_HEADER], sid }));
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
  return { status: res.status, body, node: res.headers.get(NODE_HEADER), setCookie };
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
