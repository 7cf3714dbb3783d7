// Memory before login (issue 13), measured: HOLDERS Engine.IO v3 websockets
// (socket.io-client v2's protocol, let into "/" without a token) each send a
// binary packet header of HEADER bytes announcing an attachment that never
// comes, and IDLE more v3 websockets just sit there. Reported each second:
// the server's RSS (from /proc), the connections still open, and
// switchboard_connect_timeouts_total; then the peak, and how long until the
// server had closed them all.
//
//   go build -tags nomsgpack -o bin/switchboard ./cmd/switchboard
//   cd web && node bench/unauthenticated.mjs     # HOLDERS=50 HEADER=990000 IDLE=1000 CONNECT_TIMEOUT=10s
import { readFileSync } from 'node:fs';
import { startSwitchboard } from '../test/lib/harness.mjs';
import { rawWebSocket, scrape } from '../test/lib/process.mjs';

const HOLDERS = Number(process.env.HOLDERS || 50);
const HEADER = Number(process.env.HEADER || 990000);
const IDLE = Number(process.env.IDLE || 1000);
const env = { JWT_SECRET: 'unauthenticated-bench-secret-0123456789ab' };
if (process.env.CONNECT_TIMEOUT) env.CONNECT_TIMEOUT = process.env.CONNECT_TIMEOUT;

const sb = await startSwitchboard({ env });
const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${sb.proc.pid}/status`, 'utf8'))[1]) * 1024;
const mb = (b) => (b / 1048576).toFixed(1);
const timeouts = async () => (await scrape(sb.url)).samples.find((s) => s.name === 'switchboard_connect_timeouts_total')?.value ?? 0;

const before = rss();
const start = Date.now();
let open = 0;
const opened = [];
async function connect(hold) {
  const ws = await rawWebSocket(sb.port, { path: '/socket.io/?EIO=3&transport=websocket' });
  await ws.next((f) => f.text === '40'); // let into "/"
  if (hold) ws.sendText('451-["upload",{"_placeholder":true,"num":0},"' + 'h'.repeat(HEADER - 42) + '"]');
  open += 1;
  ws.closed.then(() => { open -= 1; });
  opened.push(ws);
}
await Promise.all(Array.from({ length: HOLDERS }, () => connect(true)));
for (let i = 0; i < IDLE; i += 50) await Promise.all(Array.from({ length: Math.min(50, IDLE - i) }, () => connect(false)));
console.log(`switchboard pid ${sb.proc.pid}, CONNECT_TIMEOUT=${env.CONNECT_TIMEOUT ?? 'default (10s)'}; RSS before ${mb(before)} MB`);
console.log(`${HOLDERS} v3 websockets holding a ${HEADER}-byte partial binary packet in "/", ${IDLE} idle ones; opened in ${Date.now() - start} ms`);
let peak = before;
let allClosedAt = null;
for (let s = 1; s <= 30 && allClosedAt === null; s++) {
  await new Promise((r) => setTimeout(r, 1000));
  const now = rss();
  peak = Math.max(peak, now);
  console.log(`t=${s}s rss=${mb(now)} MB open=${open} connect_timeouts=${await timeouts()}`);
  if (open === 0) allClosedAt = Date.now() - start;
}
console.log(`RSS before ${mb(before)} MB, peak ${mb(peak)} MB, after ${mb(rss())} MB; `
  + (allClosedAt === null ? `${open} connections still open after 30 s` : `all ${HOLDERS + IDLE} closed by the server ${allClosedAt} ms after the first opened`));
for (const ws of opened) ws.destroy();
await sb.stop();
