// Helpers for the connection state recovery tests: a socket.io-client v4
// device that records every `message` with the offset that came with it
// (the event's last argument), connects and reconnects by hand, and says
// whether it recovered; and reading one counter from /metrics.
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { scrape } from './process.mjs';
import { token } from './sockets.mjs';

// device opens a socket.io-client v4 socket to url/socket for user. It does
// not reconnect by itself: the tests say when (socket.connect()), and the
// client then sends its pid and last offset, as it would on its own.
export function device(url, user, { tok, transports = ['websocket'], auth = {} } = {}) {
  const socket = io(url + '/socket', {
    forceNew: true, reconnection: false, timeout: 10000, transports,
    auth: { token: tok ?? token(user), ...auth },
  });
  const got = []; // { m, offset }
  const waiters = [];
  socket.on('message', (m, offset, ...more) => {
    got.push({ m, offset, more });
    for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(w.t); w.resolve(m); }
  });
  const d = {
    user, socket, got,
    // connected resolves once the socket is connected (rejects with the
    // connect_error); it connects the socket if it is not connecting.
    connected(timeoutMs = 10000) {
      // A socket made with autoConnect may be connected before the caller
      // gets here (it awaited something else meanwhile): its connect event
      // is past.
      if (socket.connected) return Promise.resolve(d);
      return new Promise((resolve, reject) => {
        const done = () => { clearTimeout(t); socket.off('connect', ok); socket.off('connect_error', ko); };
        const ok = () => { done(); resolve(d); };
        const ko = (err) => { done(); reject(err); };
        const t = setTimeout(() => { done(); reject(new Error(`${user}: connect timed out`)); }, timeoutMs);
        socket.on('connect', ok);
        socket.on('connect_error', ko);
        // Not while the manager is opening or open: the socket is
        // connecting then, and connect() would send a second CONNECT.
        if (!socket.connected && !['opening', 'open'].includes(socket.io._readyState)) socket.connect();
      });
    },
    // disconnected resolves with the reason of the next disconnect.
    disconnected(timeoutMs = 10000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${user}: no disconnect within ${timeoutMs} ms`)), timeoutMs);
        socket.once('disconnect', (reason) => { clearTimeout(t); resolve(reason); });
      });
    },
    // next resolves with the first message, received or to come, matching pred.
    next(pred, timeoutMs = 10000) {
      const have = got.find((g) => pred(g.m));
      if (have) return Promise.resolve(have.m);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        w.t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`${user}: no matching message within ${timeoutMs} ms; it has ${got.length}, the last: ${JSON.stringify(got.slice(-2).map((g) => g.m))}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    // texts lists the texts of the message_sent deliveries received.
    texts() { return got.filter((g) => g.m?.event === 'message_sent').map((g) => g.m.args.text); },
    close() { socket.close(); },
  };
  return d;
}

// counter reads one sample of /metrics (0 when absent).
export async function counter(base, name, labels = {}) {
  const { samples } = await scrape(base);
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s ? s.value : 0;
}

// send has from's socket send text to user `to` and waits for the ack.
export async function send(from, to, text) {
  const reply = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${from.user}: no ack for "${text}"`)), 10000);
    from.socket.emit('sendMessage', { to, text }, (r) => { clearTimeout(t); resolve(r); });
  });
  assert.equal(reply?.ok, true, `sendMessage "${text}": ${JSON.stringify(reply)}`);
  return reply.message;
}
