// Shared harness for the Node-side tests: real redis-server processes on free
// ports, real switchboard processes (the built binary), tokens, and small
// promise helpers. Every test file imports from here so that processes are
// started and stopped the same way everywhere.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

// The binary under test. .ci/test builds it first; SWITCHBOARD_BIN overrides.
export const BIN = process.env.SWITCHBOARD_BIN || path.join(ROOT, 'bin', 'switchboard');

export function requireBinary() {
  if (!existsSync(BIN)) {
    const r = spawnSync('go', ['build', '-tags', 'nomsgpack', '-o', BIN, './cmd/switchboard'], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`cannot build ${BIN}: run "go build -tags nomsgpack -o bin/switchboard ./cmd/switchboard"`);
  }
  return BIN;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function waitForPort(port, { timeoutMs = 10000, host = '127.0.0.1' } = {}) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, host);
      s.once('connect', () => { s.destroy(); resolve(); });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`port ${port} did not open within ${timeoutMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

// Resolves with the child's exit code (or signal name).
export function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode ?? child.signalCode);
  }
  return new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
}

// startRedis starts a private redis-server on a free port (nothing on disk).
// Fails with the install command when the binary is missing.
export async function startRedis({ port } = {}) {
  const which = spawnSync('sh', ['-c', 'command -v redis-server']);
  if (which.status !== 0) throw new Error('redis-server is missing: apt-get install -y redis-server');
  port = port || await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-redis-'));
  let proc;
  const start = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir, '--protected-mode', 'no'], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitForPort(port);
  };
  await start();
  const r = {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    get proc() { return proc; },
    async kill() { // abrupt: SIGKILL, as an outage would be
      if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited(proc); }
    },
    async restart() { await r.kill(); await start(); },
    async stop() { await r.kill(); rmSync(dir, { recursive: true, force: true }); },
  };
  return r;
}

// startSwitchboard spawns the binary with env and waits for /healthz.
// Its stderr is kept (JSON lines) for assertions and shown on failure.
export async function startSwitchboard({ env = {}, port } = {}) {
  requireBinary();
  port = port || await freePort();
  const fullEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ADDR: `127.0.0.1:${port}`, ...env };
  const proc = spawn(BIN, [], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let partial = '';
  proc.stderr.on('data', (d) => {
    partial += d.toString();
    let i;
    while ((i = partial.indexOf('\n')) >= 0) { lines.push(partial.slice(0, i)); partial = partial.slice(i + 1); }
  });
  proc.stdout.on('data', (d) => lines.push('[stdout] ' + d.toString()));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`switchboard exited ${proc.exitCode}:\n${lines.join('\n')}`);
    try {
      const r = await fetch(base + '/healthz');
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`switchboard did not become healthy:\n${lines.join('\n')}`); }
    await new Promise((res) => setTimeout(res, 50));
  }
  const node = (await fetch(base + '/healthz')).headers.get('x-switchboard-node');
  return {
    port, url: base, proc, lines, node,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) { proc.kill(signal); }
      return exited(proc);
    },
  };
}

// JWT HS256, signed here independently of the server's code.
const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
export function signToken(secret, claims, header = { alg: 'HS256', typ: 'JWT' }) {
  const head = b64(header) + '.' + b64(claims);
  return head + '.' + createHmac('sha256', secret).update(head).digest('base64url');
}

export async function devToken(baseUrl, user) {
  const r = await fetch(baseUrl + '/api/dev/token', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user }),
  });
  if (r.status !== 200) throw new Error(`dev token for ${user}: HTTP ${r.status}`);
  return (await r.json()).token;
}

// once resolves with the first emission of event (all its arguments as an
// array when there are several); rejects after timeoutMs so a test fails with
// a message instead of hanging.
export function once(emitter, event, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { emitter.off(event, on); reject(new Error(`timed out waiting for "${event}"`)); }, timeoutMs);
    const on = (...args) => { clearTimeout(t); resolve(args.length > 1 ? args : args[0]); };
    emitter.once(event, on);
  });
}

// connectSocket resolves with a connected socket, or rejects with the
// connect_error. io is the client's io/lookup function (v4 or v2).
export function connectSocket(io, url, opts = {}, timeoutMs = 10000) {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: timeoutMs, ...opts });
  return new Promise((resolve, reject) => {
    // Listeners are removed once settled, so that a later reconnect error of
    // a socket with reconnection on does not close it behind the test's back.
    const done = () => { clearTimeout(t); socket.off('connect', onConnect); socket.off('connect_error', onError); socket.off('error', onError); };
    const onConnect = () => { done(); resolve(socket); };
    const onError = (err) => { done(); socket.close(); reject(err); };
    const t = setTimeout(() => { done(); socket.close(); reject(new Error('connect timed out')); }, timeoutMs + 1000);
    socket.once('connect', onConnect);
    socket.once('connect_error', onError);
    socket.once('error', onError); // v2 reports middleware errors here
  });
}

// collect gathers every `message` event a socket receives, with a waiter.
export function collect(socket) {
  const got = [];
  const waiters = [];
  socket.on('message', (m) => {
    got.push(m);
    for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(w.t); w.resolve(m); }
  });
  return {
    got,
    // next resolves with the first already-received or future message matching pred.
    next(pred = () => true, timeoutMs = 10000) {
      const have = got.find(pred);
      if (have) return Promise.resolve(have);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        w.t = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); reject(new Error('timed out waiting for a message')); }, timeoutMs);
        waiters.push(w);
      });
    },
  };
}

export function emitWithAck(socket, ...args) {
  return new Promise((resolve) => socket.emit(...args, (reply) => resolve(reply)));
}
