// The slow-reader attack of issue 13, measured: STALLED raw websockets of one
// user join /socket and stop reading (and are opened again as soon as the
// server closes one: a persistent attacker), while SENDERS other devices of
// the same user each send it RATE sendMessage events a second (within the
// rate limit) of TEXT characters. Every delivery goes to every stalled
// device. Reported each second: the server's RSS (from /proc), the slow
// consumers closed so far (switchboard_slow_consumer_disconnects_total) and
// the stalled devices open, and the Go heap in use (go_memstats_heap_alloc_bytes);
// then the peak and the RSS after the attack.
//
//   go build -tags nomsgpack -o bin/switchboard ./cmd/switchboard
//   cd web && node bench/slow-reader.mjs        # STALLED=50 SENDERS=20 RATE=19 TEXT=4000 SECONDS=15
//   MAX_QUEUED_BYTES=1073741824 node bench/slow-reader.mjs   # the bound out of the way, for comparison
import { readFileSync } from 'node:fs';
import { io } from 'socket.io-client';
import { connectSocket, signToken, startSwitchboard } from '../test/lib/harness.mjs';
import { encodeFrame, scrape, socketIOOverRaw } from '../test/lib/process.mjs';

const STALLED = Number(process.env.STALLED || 50);
const SENDERS = Number(process.env.SENDERS || 20);
const RATE = Number(process.env.RATE || 19);
const TEXT = Number(process.env.TEXT || 4000);
const SECONDS = Number(process.env.SECONDS || 15);
const SECRET = 'slow-reader-bench-secret-0123456789abcdef';

const env = { JWT_SECRET: SECRET };
if (process.env.MAX_QUEUED_BYTES) env.MAX_QUEUED_BYTES = process.env.MAX_QUEUED_BYTES;
const sb = await startSwitchboard({ env });
const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${sb.proc.pid}/status`, 'utf8'))[1]) * 1024;
const mb = (b) => (b / 1048576).toFixed(1);
const metric = async (name) => (await scrape(sb.url)).samples.find((s) => s.name === name)?.value ?? 0;
const slow = () => metric('switchboard_slow_consumer_disconnects_total');
const heap = () => metric('go_memstats_heap_alloc_bytes');

const user = 'victim';
const tok = signToken(SECRET, { sub: user, exp: Math.floor(Date.now() / 1000) + 3600 });
let running = true;
let open = 0;
const stalled = new Set();
async function stall() {
  const ws = await socketIOOverRaw(sb.port, tok);
  ws.sock.pause();
  open += 1;
  stalled.add(ws);
  ws.closed.then(() => { open -= 1; stalled.delete(ws); if (running) stall(); });
}
const senders = [];
for (let i = 0; i < SENDERS; i++) {
  senders.push(await connectSocket(io, sb.url + '/socket', { auth: { token: tok }, transports: ['websocket'] }));
}
const before = rss();
for (let i = 0; i < STALLED; i++) await stall();
console.log(`switchboard pid ${sb.proc.pid}, MAX_QUEUED_BYTES=${env.MAX_QUEUED_BYTES ?? 'default'}; RSS before: ${mb(before)} MB`);
console.log(`${STALLED} stalled devices, ${SENDERS} senders x ${RATE}/s x ${TEXT} chars for ${SECONDS} s`);

const text = 'x'.repeat(TEXT);
let acked = 0;
let refused = 0;
const timers = senders.map((s) => setInterval(() => {
  s.emit('sendMessage', { to: user, text }, (r) => { if (r?.ok) acked += 1; else refused += 1; });
}, 1000 / RATE));
let peak = before;
// A stalled device reads nothing, so it learns of the server's close by
// writing: a websocket ping each second to a closed connection is reset.
for (let s = 1; s <= SECONDS; s++) {
  await new Promise((r) => setTimeout(r, 1000));
  for (const ws of stalled) ws.sendRaw(encodeFrame(9));
  const now = rss();
  peak = Math.max(peak, now);
  console.log(`t=${s}s rss=${mb(now)} MB heap=${mb(await heap())} MB slow_consumers_closed=${await slow()} stalled_open=${open}`);
}
running = false;
for (const t of timers) clearInterval(t);
await new Promise((r) => setTimeout(r, 2000));
for (const ws of stalled) ws.destroy();
for (const s of senders) s.close();
await new Promise((r) => setTimeout(r, 2000));
console.log(`acked ${acked}, refused ${refused}; RSS before ${mb(before)} MB, peak ${mb(peak)} MB, after ${mb(rss())} MB; slow consumers closed: ${await slow()}`);
await sb.stop();
