// Helpers for the mixed Node/Switchboard cluster tests (interop-node.test.mjs):
// the Node peer (../shared/peer, socket.io 4 with @socket.io/redis-adapter)
// installed once per version and run as a real process; a third Node
// process with the Redis adapter (node-caller.mjs) that the test drives over
// an IPC channel to make the adapter's cluster-wide calls; and a watcher of
// the adapter's response channels.
import { fork, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { ROOT, exited, freePort } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// The peer's sources: shared/peer beside the repository (as CI lays it out,
// and as cmd/sbload/bench.sh finds it); PEER_SRC overrides.
export const PEER_SRC = process.env.PEER_SRC || path.join(ROOT, '..', 'shared', 'peer');
const PEER_FILES = ['package.json', 'package-lock.json', 'server.js'];

// Loaded into every peer process with `node -r`: the handler of the
// server-side event switchboard:ping, which Switchboard registers too.
export const PEER_PING = path.join(HERE, 'peer-ping.cjs');

// preparePeer returns a directory holding the peer's files and its
// node_modules. The peer is copied to the system's temporary directory and
// `npm ci`-ed there once per version of its files (the directory's name
// carries their hash); later runs reuse it. PEER_DIR names a ready one.
export async function preparePeer() {
  if (process.env.PEER_DIR) {
    if (!existsSync(path.join(process.env.PEER_DIR, 'node_modules', 'socket.io'))) {
      throw new Error(`PEER_DIR=${process.env.PEER_DIR} has no node_modules/socket.io: run npm ci there`);
    }
    return process.env.PEER_DIR;
  }
  if (!existsSync(path.join(PEER_SRC, 'server.js'))) {
    throw new Error(`the Node peer is not at ${PEER_SRC} (shared/peer beside the repository): set PEER_SRC`);
  }
  const hash = createHash('sha256');
  for (const f of PEER_FILES) hash.update(f).update(readFileSync(path.join(PEER_SRC, f)));
  const dir = path.join(os.tmpdir(), `switchboard-peer-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(path.join(dir, 'node_modules', 'socket.io', 'package.json'))) return dir;

  // Installed beside the final name and renamed into place, so that a run
  // interrupted halfway, or two runs at once, never leave a half-installed
  // directory under the final name.
  const tmp = mkdtempSync(`${dir}.partial-`);
  try {
    for (const f of PEER_FILES) cpSync(path.join(PEER_SRC, f), path.join(tmp, f));
    const npm = spawn('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    npm.stdout.on('data', (d) => { out += d; });
    npm.stderr.on('data', (d) => { out += d; });
    const code = await exited(npm);
    if (code !== 0) throw new Error(`npm ci for the Node peer (in ${tmp}) failed with ${code}:\n${out}`);
    try {
      renameSync(tmp, dir);
    } catch (err) {
      if (!existsSync(path.join(dir, 'node_modules', 'socket.io', 'package.json'))) throw err;
      // Another run installed the same version meanwhile: use theirs.
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

// startPeer runs the peer's server.js from dir with env (ADDR defaults to a
// free loopback port), with the switchboard:ping handler preloaded, and
// waits for /healthz. Same shape as harness.startSwitchboard's result.
export async function startPeer(dir, { env = {}, port } = {}) {
  port = port || await freePort();
  const fullEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ADDR: `127.0.0.1:${port}`, ...env };
  const proc = spawn(process.execPath, ['-r', PEER_PING, path.join(dir, 'server.js')], {
    cwd: dir, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'],
  });
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
    if (proc.exitCode !== null) throw new Error(`the Node peer exited ${proc.exitCode}:\n${lines.join('\n')}`);
    try {
      const r = await fetch(base + '/healthz');
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`the Node peer did not become healthy:\n${lines.join('\n')}`); }
    await new Promise((res) => setTimeout(res, 50));
  }
  return {
    port, url: base, proc, lines,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited(proc);
    },
  };
}

// startCaller forks node-caller.mjs: a socket.io 4 server (no listener: it
// only takes part in the cluster) with @socket.io/redis-adapter on redisUrl,
// holding namespace /socket. It resolves once the adapter's subscriptions
// are in place. call(op, args) runs one of the operations listed in
// node-caller.mjs and resolves with its result, or rejects with its error.
export async function startCaller(redisUrl, { requestsTimeout = 5000 } = {}) {
  const proc = fork(path.join(HERE, 'node-caller.mjs'), [], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, REDIS_URL: redisUrl, REQUESTS_TIMEOUT: String(requestsTimeout) },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const lines = [];
  for (const s of [proc.stdout, proc.stderr]) s.on('data', (d) => lines.push(...d.toString().split('\n').filter(Boolean)));
  const pending = new Map();
  let seq = 0;
  let ready;
  const readyP = new Promise((resolve, reject) => {
    ready = { resolve, reject };
  });
  proc.on('message', (m) => {
    if (m.ready) { ready.resolve(m); return; }
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    clearTimeout(p.t);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(`caller ${p.op}: ${m.error}`));
  });
  proc.once('exit', (code, sig) => {
    const err = new Error(`the Node caller exited ${code ?? sig}:\n${lines.join('\n')}`);
    ready.reject(err);
    for (const p of pending.values()) { clearTimeout(p.t); p.reject(err); }
    pending.clear();
  });
  let t;
  const info = await Promise.race([
    readyP,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`the Node caller was not ready within 30 s:\n${lines.join('\n')}`)), 30000); }),
  ]).catch((err) => { proc.kill('SIGKILL'); throw err; }).finally(() => clearTimeout(t));
  return {
    proc, lines, uid: info.uid,
    // call bounds every operation: one that never answers fails the test
    // with its name instead of hanging it.
    call(op, args = {}, timeoutMs = 20000) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        const p = { op, resolve, reject };
        p.t = setTimeout(() => { pending.delete(id); reject(new Error(`caller ${op}: no answer within ${timeoutMs} ms`)); }, timeoutMs);
        pending.set(id, p);
        proc.send({ id, op, args });
      });
    },
    // stop asks the caller to close its Redis clients and exit; resolves
    // with its exit code (SIGKILL after 10 s).
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode ?? proc.signalCode;
      const done = exited(proc);
      if (proc.connected) proc.send({ id: 0, op: 'exit', args: {} });
      else proc.kill('SIGTERM');
      const k = setTimeout(() => proc.kill('SIGKILL'), 10000);
      try { return await done; } finally { clearTimeout(k); }
    },
  };
}

// watchResponses subscribes to every response channel of the namespace's
// adapters (socket.io-response#<nsp>#, and the per-requester
// socket.io-response#<nsp>#<uid>#) and keeps what is published there,
// decoded when it is JSON.
export async function watchResponses(redisUrl, nsp = '/socket') {
  const client = createClient({ url: redisUrl });
  client.on('error', () => {});
  await client.connect();
  const seen = [];
  await client.pSubscribe(`socket.io-response#${nsp}#*`, (msg, channel) => {
    let body;
    try { body = msg[0] === 0x7b ? JSON.parse(msg.toString()) : { binary: msg.toString('base64') }; } catch { body = { raw: msg.toString() }; }
    seen.push({ channel, body });
  }, true);
  return {
    seen,
    async stop() { await client.quit().catch(() => client.disconnect()); },
  };
}
