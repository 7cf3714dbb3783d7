// Helpers for the process-level tests (http-api.test.mjs, process.test.mjs):
// running the binary to its exit, plain HTTP requests with full control over
// headers and bodies, stderr log-line checks, a Prometheus text parser, a raw
// (hand-framed) websocket client and raw Engine.IO polling.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { BIN, freePort, requireBinary } from './harness.mjs';

// ------------------------------------------------------------ processes ---

// runToExit spawns the binary with env (ADDR defaults to a free loopback
// port) and resolves when it has exited and its streams are drained. A
// process still running after timeoutMs is killed and reported as timedOut.
export async function runToExit(env = {}, { timeoutMs = 10000 } = {}) {
  requireBinary();
  const port = await freePort();
  const fullEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ADDR: `127.0.0.1:${port}`, ...env };
  const proc = spawn(BIN, [], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => { stdout += d; });
  proc.stderr.on('data', (d) => { stderr += d; });
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; proc.kill('SIGKILL'); }, timeoutMs);
  const [code, signal] = await new Promise((resolve) => proc.once('close', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  return { code, signal, timedOut, stdout, stderr, lines: splitLines(stderr) };
}

export function splitLines(text) {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

// Waits until a child's stdio has been closed (so every stderr line it wrote
// has been seen), bounded.
export function closed(proc, timeoutMs = 20000) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    if (proc.stderr.readableEnded || proc.stderr.destroyed) return Promise.resolve(proc.exitCode ?? proc.signalCode);
  }
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`process ${proc.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    proc.once('close', (c, s) => { clearTimeout(t); resolve(c ?? s); });
  });
}

// stopSwitchboard signals a harness-started process and resolves with its
// exit code once its streams are closed. Safe to call twice; kills with
// SIGKILL if it does not exit within timeoutMs.
export async function stopSwitchboard(sb, signal = 'SIGTERM', timeoutMs = 20000) {
  if (!sb) return null;
  const { proc } = sb;
  if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
  try {
    return await closed(proc, timeoutMs);
  } catch (err) {
    proc.kill('SIGKILL');
    await closed(proc, 5000).catch(() => {});
    throw err;
  }
}

// logProblems lists every stderr line that is not a JSON object with string
// `level` and `msg`, and every line that mentions a panic. Lines the harness
// captured from stdout ("[stdout] ...") are not stderr and are skipped.
export function logProblems(lines) {
  const problems = [];
  for (const line of lines) {
    if (line.startsWith('[stdout] ')) continue;
    if (/panic/i.test(line)) problems.push(`mentions a panic: ${line}`);
    let v;
    try { v = JSON.parse(line); } catch { problems.push(`not JSON: ${JSON.stringify(line)}`); continue; }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) { problems.push(`not a JSON object: ${line}`); continue; }
    if (typeof v.level !== 'string') problems.push(`no string "level": ${line}`);
    if (typeof v.msg !== 'string') problems.push(`no string "msg": ${line}`);
  }
  return problems;
}

export function assertLogLines(lines, what = 'stderr') {
  const problems = logProblems(lines);
  assert.deepEqual(problems, [], `${what}: every line must be a JSON object with string level and msg, and none a panic`);
}

// --------------------------------------------------------------- polling ---

// pollUntil calls fn until it returns a truthy value (which it resolves
// with), or rejects after timeoutMs with the last value/error in the message.
export async function pollUntil(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// withTimeout rejects when p does not settle within ms.
export function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]);
}

// ------------------------------------------------------------------ HTTP ---

// request does one HTTP/1.1 request on a fresh connection. body may be a
// string or Buffer; chunked: true sends it without Content-Length. Resolves
// with { status, headers, text, json() } (json() throws with the raw text).
export function request(url, { method = 'GET', headers = {}, body, chunked = false, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const h = { ...headers };
    const buf = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
    if (buf && !chunked) h['content-length'] = String(buf.length);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: h, agent: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode,
          headers: res.headers,
          text,
          json() {
            try { return JSON.parse(text); } catch { throw new Error(`${method} ${u.pathname}: HTTP ${res.statusCode} body is not JSON: ${text.slice(0, 300)}`); }
          },
        });
      });
      res.on('error', (err) => { clearTimeout(timer); reject(err); });
    });
    const timer = setTimeout(() => { req.destroy(new Error(`${method} ${url} timed out`)); }, timeoutMs);
    // A server may answer (413) and close before it has read the whole body;
    // the write error is then expected and the response is what counts.
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
    if (buf && chunked) {
      // Several chunks, so no single chunk announces the total size.
      const step = Math.max(1, Math.ceil(buf.length / 4));
      for (let i = 0; i < buf.length; i += step) req.write(buf.subarray(i, i + step));
    } else if (buf) {
      req.write(buf);
    }
    req.end();
  });
}

// assertJSONError checks the contract's error shape {"error":{"code","message"}}
// and the status; returns the parsed body.
export function assertJSONError(res, status, what) {
  const label = `${what}: HTTP ${res.status} ${res.text.slice(0, 200)}`;
  assert.equal(res.status, status, label);
  assert.match(String(res.headers['content-type']), /^application\/json/, `${label}: content-type`);
  const body = res.json();
  assert.ok(body && typeof body === 'object' && !Array.isArray(body), `${label}: body is an object`);
  assert.ok(body.error && typeof body.error === 'object', `${label}: has "error" object`);
  assert.equal(typeof body.error.code, 'string', `${label}: error.code is a string`);
  assert.ok(body.error.code.length > 0, `${label}: error.code is not empty`);
  assert.equal(typeof body.error.message, 'string', `${label}: error.message is a string`);
  return body;
}

// ------------------------------------------------------------ Prometheus ---

const SUFFIXES = ['_total', '_created', '_bucket', '_sum', '_count', '_info'];

// parseMetrics parses the Prometheus text exposition format (0.0.4, and the
// OpenMetrics subset it shares). Throws on a line that fits neither a
// comment nor a sample. Returns { types: Map, help: Map, samples: [...] }
// where a sample is { name, family, labels: {..}, value: Number }.
export function parseMetrics(text) {
  const types = new Map();
  const help = new Map();
  const samples = [];
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    if (line === '' || line === '# EOF') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$/.exec(line);
      if (!m) {
        if (/^# (HELP|TYPE|UNIT)\b/.test(line)) throw new Error(`metrics line ${i + 1}: bad comment: ${line}`);
        continue; // free comment
      }
      if (m[1] === 'TYPE') {
        if (!/^(counter|gauge|histogram|summary|untyped|unknown|info|stateset|gaugehistogram)$/.test(m[3] || '')) {
          throw new Error(`metrics line ${i + 1}: bad type: ${line}`);
        }
        types.set(m[2], m[3]);
      } else {
        help.set(m[2], m[3] || '');
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)(?: (-?\d+(?:\.\d+)?))?$/.exec(line);
    if (!m) throw new Error(`metrics line ${i + 1}: not a sample: ${line}`);
    const labels = {};
    if (m[3]) {
      const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;
      let pos = 0;
      const src = m[3];
      while (pos < src.length) {
        re.lastIndex = pos;
        const l = re.exec(src);
        if (!l) throw new Error(`metrics line ${i + 1}: bad labels: ${line}`);
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        pos = re.lastIndex;
      }
    }
    const value = Number(m[4].replace(/^\+?Inf$/, 'Infinity').replace(/^-Inf$/, '-Infinity'));
    if (Number.isNaN(value) && m[4] !== 'NaN') throw new Error(`metrics line ${i + 1}: bad value: ${line}`);
    samples.push({ name: m[1], labels, value, family: null });
  }
  for (const s of samples) {
    if (types.has(s.name)) { s.family = s.name; continue; }
    for (const suf of SUFFIXES) {
      if (s.name.endsWith(suf) && types.has(s.name.slice(0, -suf.length))) { s.family = s.name.slice(0, -suf.length); break; }
    }
  }
  return { types, help, samples };
}

export async function scrape(base) {
  const res = await request(base + '/metrics');
  assert.equal(res.status, 200, `GET /metrics: HTTP ${res.status}`);
  return { res, ...parseMetrics(res.text) };
}

export const labelKey = (s) => s.name + JSON.stringify(Object.entries(s.labels).sort());

// --------------------------------------------------------- raw websocket ---

// encodeFrame builds one client (masked) websocket frame. declaredLength
// lets a test announce a length it never sends.
export function encodeFrame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, rsv = 0, declaredLength } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = declaredLength ?? data.length;
  let head;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = randomBytes(4);
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++) masked[i] ^= key[i & 3];
  return Buffer.concat([head, key, masked]);
}

// rawWebSocket opens a TCP connection and sends an HTTP Upgrade request.
// With read: false it never reads anything (a client that never answers);
// otherwise it parses the 101 response and the server's frames. Resolves
// once the request is written (read: false) or the response head is in.
export function rawWebSocket(port, { path = '/socket.io/?EIO=4&transport=websocket', read = true, headers = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    const upgrade = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('raw websocket: no upgrade response')); }, timeoutMs);
    sock.once('error', (err) => { clearTimeout(timer); reject(err); });
    if (!read) {
      sock.pause();
      sock.on('error', () => {});
      sock.once('connect', () => sock.write(upgrade, () => { clearTimeout(timer); resolve({ sock }); }));
      return;
    }
    const frames = [];
    const waiters = [];
    let buf = Buffer.alloc(0);
    let head = null;
    let isClosed = false;
    let closeResolve;
    const closedP = new Promise((r) => { closeResolve = r; });
    const ws = {
      sock, frames, closed: closedP,
      get isClosed() { return isClosed; },
      status: 0,
      sendText(s) { if (!sock.destroyed) sock.write(encodeFrame(1, Buffer.from(s))); },
      sendBinary(b) { if (!sock.destroyed) sock.write(encodeFrame(2, b)); },
      sendRaw(b) { if (!sock.destroyed) sock.write(b); },
      // next resolves with the first received text/binary frame matching pred,
      // or with null when the connection closes first; rejects after timeoutMs.
      next(pred = () => true, ms = 10000) {
        const have = frames.find((f) => pred(f));
        if (have) return Promise.resolve(have);
        if (isClosed) return Promise.resolve(null);
        return new Promise((res, rej) => {
          const w = { pred, res };
          w.t = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); rej(new Error('raw websocket: timed out waiting for a frame')); }, ms);
          waiters.push(w);
        });
      },
      destroy() { sock.destroy(); },
    };
    const finish = () => {
      if (isClosed) return;
      isClosed = true;
      for (const w of waiters.splice(0)) { clearTimeout(w.t); w.res(null); }
      closeResolve();
    };
    sock.on('close', finish);
    sock.on('error', () => {});
    sock.once('connect', () => sock.write(upgrade));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!head) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        ws.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] || 0);
        ws.head = head;
        clearTimeout(timer);
        resolve(ws);
      }
      if (ws.status !== 101) return;
      for (;;) {
        if (buf.length < 2) return;
        const op = buf[0] & 0x0f;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2)); off = 10;
        }
        if (buf[1] & 0x80) off += 4; // servers must not mask; tolerate it anyway
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (op === 8) { frames.push({ op, close: true, code: payload.length >= 2 ? payload.readUInt16BE(0) : null }); sock.end(); continue; }
        if (op === 9) { sock.write(encodeFrame(10, payload)); continue; }
        const f = { op, text: op === 1 ? payload.toString('utf8') : null, data: Buffer.from(payload) };
        frames.push(f);
        for (const w of [...waiters]) if (w.pred(f)) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(w.t); w.res(f); }
      }
    });
  });
}

// socketIOOverRaw completes the Engine.IO open and the /socket namespace
// CONNECT on a raw websocket; resolves with the connected ws.
export async function socketIOOverRaw(port, token) {
  const ws = await rawWebSocket(port);
  assert.equal(ws.status, 101, `websocket upgrade answered ${ws.head}`);
  const open = await ws.next((f) => f.text?.startsWith('0'));
  assert.ok(open, 'engine.io open packet');
  ws.sendText('40/socket,' + JSON.stringify({ token }));
  const conn = await ws.next((f) => f.text?.startsWith('40/socket,') || f.text?.startsWith('44/socket,'));
  assert.ok(conn && conn.text.startsWith('40/socket,'), `namespace connect answered ${conn?.text}`);
  return ws;
}

// ------------------------------------------------------------ raw polling ---

export async function pollingHandshake(base, headers = {}) {
  const res = await request(`${base}/socket.io/?EIO=4&transport=polling`, { headers });
  assert.equal(res.status, 200, `polling handshake: HTTP ${res.status} ${res.text}`);
  assert.ok(res.text.startsWith('0{'), `polling handshake body: ${res.text}`);
  const open = JSON.parse(res.text.slice(1));
  assert.equal(typeof open.sid, 'string');
  return { res, sid: open.sid, open };
}

// hangingRequest writes raw bytes on a fresh TCP connection and never reads.
export function hangingRequest(port, bytes) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.pause();
    sock.once('error', reject);
    sock.once('connect', () => sock.write(bytes, () => { sock.removeListener('error', reject); sock.on('error', () => {}); resolve(sock); }));
  });
}
