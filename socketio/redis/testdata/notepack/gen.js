// Generates the golden vectors in this directory: the exact bytes Node's
// @socket.io/redis-adapter 8.3.0 (socket.io 4.8.4, notepack.io 3.0.1)
// publishes, captured from fake Redis clients, with what notepack decodes
// them to ("value", in a typed JSON: $map with its $keys in order, $bin,
// $date, $undefined, $num, $repeat). It was run once, with the packages of
// /work/shared/peer installed:
//
//   NODE_PATH=/path/to/peer/node_modules node gen.js out && cp out/* .
//
// Request ids are random, so a new run changes them; the tests do not care.
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const msgpack = require("notepack.io");

const out = [];
const typed = (v) => {
  if (v === undefined) return { $undefined: true };
  if (v === null) return null;
  if (Buffer.isBuffer(v)) {
    if (v.length > 64 && v.every((b) => b === v[0])) return { $binrepeat: v[0], n: v.length };
    return { $bin: v.toString("hex") };
  }
  if (typeof v === "string" && v.length > 64 && [...v].every((c) => c === v[0])) return { $repeat: v[0], n: v.length };
  if (v instanceof Date) return { $date: isNaN(v) ? null : v.toISOString() };
  if (Array.isArray(v)) return v.map(typed);
  if (typeof v === "number") {
    if (Number.isNaN(v)) return { $num: "NaN" };
    if (!Number.isFinite(v)) return { $num: v > 0 ? "Inf" : "-Inf" };
    if (Object.is(v, -0)) return { $num: "-0" };
    return v;
  }
  if (typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = typed(v[k]);
    return { $map: o, $keys: Object.keys(v) };
  }
  return v;
};
const record = (name, channel, buf) => {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf);
  let decoded;
  if (b[0] === 0x7b) decoded = { $json: JSON.parse(b.toString()) };
  else decoded = typed(msgpack.decode(b));
  out.push({ name, channel, hex: b.toString("hex"), value: decoded });
};

const listeners = {};
const pub = {
  publish(channel, msg) { record(pub.next || "unnamed", channel, msg); pub.next = undefined; return Promise.resolve(1); },
  sendCommand(args) { return Promise.resolve([args[2], 3]); },
  pSubscribe() {}, sSubscribe() {}, subscribe() {}, on() {}, off() {},
};
const sub = {
  pSubscribe(p, l) { listeners.psub = l; },
  subscribe(chs, l) { listeners.sub = l; },
  pUnsubscribe() {}, unsubscribe() {}, on() {}, off() {},
};
const io = new Server({ adapter: createAdapter(pub, sub) });
const nsp = io.of("/");
const adapter = nsp.adapter;
adapter.uid = "Abc123"; // fixed, so the vectors are stable

const named = (name, fn) => { pub.next = name; fn(); };

(async () => {
  named("broadcast_all", () => io.emit("message", { args: { text: "hi" }, event: "message_sent", id: "alice" }));
  named("broadcast_one_room", () => io.to("user:bob").emit("message", "hello", 42));
  named("broadcast_rooms_except", () => io.to(["user:bob", "user:carol"]).except("user:alice").emit("ev", 1));
  named("broadcast_except_only", () => io.except("user:alice").emit("ev"));
  named("broadcast_volatile", () => io.volatile.to("r").emit("ev", null));
  named("broadcast_compress", () => io.compress(false).emit("ev", true, false));
  named("broadcast_values", () => io.emit("values",
    0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 9007199254740991,
    -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9007199254740991,
    1.5, -0.25, 1e300, NaN, Infinity, -Infinity, -0,
    "", "short", "é€😀", "x".repeat(31), "y".repeat(32), "z".repeat(255), "w".repeat(256),
    Buffer.from([]), Buffer.from([1, 2, 3]), Buffer.alloc(256, 7),
    new Date(0), new Date(1700000000000), new Date(1700000000123), new Date(-1000), new Date(17179869184000),
    [undefined, null, true], { a: undefined, b: 1 },
    Array.from({ length: 16 }, (_, i) => i), Object.fromEntries(Array.from({ length: 16 }, (_, i) => ["k" + String(i).padStart(2, "0"), i])),
    { nested: { deeper: [[[{}]]] } }));
  named("broadcast_ack_request", () => io.timeout(1000).to("room1").emit("question", "q?", () => {}));
  named("broadcast_ack_request_binary", () => io.timeout(2500).emit("bin", Buffer.from("abc"), () => {}));

  named("request_fetch_sockets", () => { io.in("room1").except("room2").fetchSockets().catch(() => {}); });
  await new Promise((r) => setTimeout(r, 20));
  named("request_all_rooms", () => { adapter.allRooms().catch(() => {}); });
  await new Promise((r) => setTimeout(r, 20));
  named("request_sockets_join", () => io.in("room1").socketsJoin(["room2", "room3"]));
  named("request_sockets_leave", () => io.in("room1").socketsLeave("room2"));
  named("request_disconnect", () => io.in("room1").disconnectSockets(true));
  named("request_server_side_emit", () => io.serverSideEmit("hello", "world", 1));
  named("request_server_side_emit_ack", () => { io.serverSideEmitWithAck("ping", { n: 1 }).catch(() => {}); });
  await new Promise((r) => setTimeout(r, 20));

  // Responses Node publishes when answering requests.
  nsp.on("ping", (arg, cb) => cb({ pong: arg }));
  named("response_all_rooms", () => listeners.sub(Buffer.from(JSON.stringify({ uid: "other1", requestId: "req001", type: 1 })), "socket.io-request#/#"));
  await new Promise((r) => setTimeout(r, 20));
  named("response_fetch_sockets", () => listeners.sub(Buffer.from(JSON.stringify({ uid: "other1", requestId: "req002", type: 5, opts: { rooms: [], except: [] } })), "socket.io-request#/#"));
  await new Promise((r) => setTimeout(r, 20));
  named("response_server_side_emit", () => listeners.sub(Buffer.from(JSON.stringify({ uid: "other1", requestId: "req003", type: 6, data: ["ping", 7] })), "socket.io-request#/#"));
  await new Promise((r) => setTimeout(r, 20));
  named("response_broadcast_client_count", () => listeners.sub(msgpack.encode({ uid: "other1", requestId: "req004", type: 7, packet: { type: 2, data: ["q"], nsp: "/" }, opts: { rooms: [], except: [], flags: { timeout: 1000 } } }), "socket.io-request#/#"));
  await new Promise((r) => setTimeout(r, 20));

  // What notepack makes of a broadcast ack (type 9), as the adapter builds it.
  out.push({ name: "response_broadcast_ack", channel: "socket.io-response#/#", hex: msgpack.encode({ type: 9, requestId: "req004", packet: { answer: 42, at: new Date(1700000000123) } }).toString("hex") });
  out.push({ name: "response_broadcast_ack_undefined", channel: "socket.io-response#/#", hex: msgpack.encode({ type: 9, requestId: "req004", packet: undefined }).toString("hex") });
  for (const o of out.slice(-2)) o.value = typed(msgpack.decode(Buffer.from(o.hex, "hex")));

  // Plain notepack encodings, for byte-for-byte comparison with ours.
  const plain = {
    notepack_numbers: [0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 9007199254740991,
      -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9007199254740991,
      1.5, -0.25, 0.1, 1e-7, 2 ** 63, -(2 ** 63), NaN, Infinity, -Infinity, -0],
    notepack_dates: [new Date(0), new Date(1700000000000), new Date(1700000000123), new Date(-1000),
      new Date(-1), new Date(17179869184000), new Date(4294967295000), new Date(4294967296000), new Date(8.64e15), new Date(-8.64e15)],
    notepack_strings: ["", "a", "é€😀", "x".repeat(31), "y".repeat(32), "z".repeat(255), "w".repeat(256), "\u0000"],
    notepack_containers: [[], {}, Array.from({ length: 15 }, () => null), Array.from({ length: 16 }, () => true),
      { a: 1, b: [1, { c: "d" }], e: Buffer.from([0xde, 0xad]) }],
  };
  for (const [name, v] of Object.entries(plain)) {
    const b = msgpack.encode(v);
    out.push({ name, channel: "", hex: b.toString("hex"), value: typed(msgpack.decode(b)) });
  }

  // The emitter's shapes (redis-emitter 5.1 builds them by hand).
  const emitterMsg = msgpack.encode(["emitter", { type: 2, data: ["news", { title: "t" }], nsp: "/" }, { rooms: ["room1"], flags: {}, except: [] }]);
  out.push({ name: "emitter_broadcast", channel: "socket.io#/#room1#", hex: emitterMsg.toString("hex"), value: typed(msgpack.decode(emitterMsg)) });

  const fs = require("fs");
  const dir = process.argv[2];
  fs.mkdirSync(dir, { recursive: true });
  for (const o of out) {
    o.file = o.name + ".bin";
    fs.writeFileSync(dir + "/" + o.file, Buffer.from(o.hex, "hex"));
    delete o.hex;
  }
  fs.writeFileSync(dir + "/vectors.json", JSON.stringify(out, null, 1) + "\n");
  io.close();
  process.exit(0);
})();
