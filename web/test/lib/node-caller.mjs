// A third Node process of the mixed cluster (started by interop.startCaller):
// socket.io 4 with @socket.io/redis-adapter on REDIS_URL, holding namespace
// /socket but serving no clients. The test drives it over the IPC channel:
// each message {id, op, args} runs one of the operations below and is
// answered with {id, ok: true, result} or {id, ok: false, error}.
//
// The operations are the adapter's cluster-wide calls as a Node application
// makes them, so what Switchboard answers is what such an application sees.
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { Server } from 'socket.io';

const pub = createClient({ url: process.env.REDIS_URL });
const sub = pub.duplicate();
for (const c of [pub, sub]) c.on('error', (err) => process.stderr.write(`redis: ${err.message}\n`));
await Promise.all([pub.connect(), sub.connect()]);

const io = new Server({ adapter: createAdapter(pub, sub, { requestsTimeout: Number(process.env.REQUESTS_TIMEOUT) || 5000 }) });
const nsp = io.of('/socket');
// The adapter subscribed (PSUBSCRIBE, SUBSCRIBE) on sub without waiting; a
// subscription made afterwards on the same connection is confirmed only after
// those are: from then on the caller hears the cluster.
await sub.subscribe('switchboard-interop:caller-ready', () => {});

// target applies {in: rooms, except: rooms} to the namespace.
function target({ in: rooms, except } = {}) {
  let op = nsp;
  if (rooms && rooms.length) op = op.in(rooms);
  if (except && except.length) op = op.except(except);
  return op;
}

const plain = (s) => ({ id: s.id, rooms: [...s.rooms], data: s.data });
const settled = (fn) => new Promise((resolve) => fn((err, responses) => resolve({ error: err ? err.message : null, responses })));

const ops = {
  // PUBSUB NUMSUB of the request channel: the servers the adapter waits for.
  serverCount: () => nsp.adapter.serverCount(),
  // RemoteSocket list: {id, rooms, data} each.
  fetchSockets: async (a) => (await target(a).fetchSockets()).map(plain),
  allRooms: async () => [...await nsp.adapter.allRooms()],
  socketsJoin: (a) => { target(a).socketsJoin(a.rooms); return null; },
  socketsLeave: (a) => { target(a).socketsLeave(a.rooms); return null; },
  disconnectSockets: (a) => { target(a).disconnectSockets(Boolean(a.close)); return null; },
  // A plain broadcast through the adapter.
  emit: (a) => { target(a).emit(a.event, ...a.args); return null; },
  // emit on the RemoteSocket that fetchSockets returns for a.id.
  remoteSocketEmit: async (a) => {
    const found = (await target(a).fetchSockets()).find((s) => s.id === a.id);
    if (!found) throw new Error(`fetchSockets found no socket ${a.id}`);
    found.emit(a.event, ...a.args);
    return null;
  },
  // serverSideEmit, with an acknowledgement ({error, responses}) or without.
  serverSideEmit: (a) => {
    if (!a.ack) { nsp.serverSideEmit(a.event, ...a.args); return null; }
    return settled((cb) => nsp.serverSideEmit(a.event, ...a.args, cb));
  },
  // A broadcast that expects one acknowledgement per client: {error, responses}.
  emitWithAcks: (a) => settled((cb) => target(a).timeout(a.timeoutMs).emit(a.event, ...a.args, cb)),
  exit: async () => {
    await Promise.allSettled([pub.quit(), sub.quit()]);
    process.exit(0);
  },
};

process.on('message', async ({ id, op, args }) => {
  try {
    if (!Object.hasOwn(ops, op)) throw new Error(`unknown operation ${op}`);
    const result = await ops[op](args);
    process.send({ id, ok: true, result });
  } catch (err) {
    process.send({ id, ok: false, error: String(err && err.message || err) });
  }
});
// The test runner went away: do not outlive it.
process.on('disconnect', () => { ops.exit(); });
process.on('SIGTERM', () => { ops.exit(); });

process.send({ ready: true, uid: nsp.adapter.uid });
