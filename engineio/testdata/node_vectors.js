// Generates node_vectors.json: how Node's parsers (engine.io-parser 5 for
// protocol v4, engine.io's parser-v3 for v3) decode a set of inputs. The Go
// tests check that the Go decoders never accept what Node refuses and decode
// alike what both accept. Run from this directory:
//
//	node node_vectors.js /tmp/peer/node_modules > node_vectors.json
"use strict";
const path = require("path");
const root = process.argv[2] || "/tmp/peer/node_modules";
const v4 = require(path.join(root, "engine.io-parser"));
const v3 = require(path.join(root, "engine.io/build/parser-v3"));

// A deterministic generator, so that the vectors are reproducible.
let seed = 12345;
const rnd = (n) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
const pick = (a) => a[rnd(a.length)];

const packets = ["0", "1", "2", "2probe", "3", "3probe", "4", "4hello", "4é€😀", "5", "6",
  "7", "9x", "x", "", "b", "bAQID", "bAQI", "b4AQID", "b4", "b2AQID", "b4AQ=", "b====",
  "4\u001e", " 4", "b4Zm9v", "bZm9v", "bZm9v===", "b!!!", "b4!!!", "4{\"a\":1}"];

const out = { v4packet: [], v4payload: [], v3payload: [], v3binary: [] };

for (const p of packets) {
  const d = v4.decodePacket(p, "nodebuffer");
  out.v4packet.push(describe(p, d));
}

const v4payloads = ["4a\u001e4b", "4a\u001e", "\u001e4a", "", "2\u001e3\u001e4", "4a\u001ebAQID",
  "4a\u001ex", "4\u001e\u001e4"];
for (let i = 0; i < 60; i++) {
  const n = 1 + rnd(4);
  const parts = [];
  for (let j = 0; j < n; j++) parts.push(pick(packets));
  v4payloads.push(parts.join("\u001e"));
}
for (const p of v4payloads) {
  const ps = v4.decodePayload(p, "nodebuffer");
  out.v4payload.push({ in: p, ok: !ps.some((x) => x.type === "error"), packets: ps.map((x) => describe(null, x)) });
}

const v3payloads = ["6:4hello", "6:4hello2:4a", "0:", "0:6:4hello", "", ":", "1:", "2:4", "1:4x",
  "5:4héé", "4:4héé", "3:4😀", "2:4😀", "04:4abc", "+4:4abc", "-0:", "a:4", "4:4abc1", "10:b4AQIDBA==",
  "6:b4AQID", "3:b4A", "1:1", "2:2x", "7:2probe", "1:7", "1:x", "4:4abc:", "99999999999:4",
  "4:4abc4:4def", "1:6", "2:4\u001e", "5:b4Zm9", "5:bZm9v"];
for (let i = 0; i < 40; i++) {
  const n = 1 + rnd(3);
  let s = "";
  for (let j = 0; j < n; j++) {
    const p = pick(packets);
    let len = p.length;
    if (rnd(6) === 0) len += rnd(3) - 1;
    s += len + ":" + p;
  }
  v3payloads.push(s);
}
for (const p of v3payloads) {
  const got = [];
  let ok = true;
  v3.decodePayload(p, (packet) => {
    if (packet.type === "error") { ok = false; return false; }
    got.push(describe(null, packet));
  });
  out.v3payload.push({ in: p, ok, packets: got });
}

// v3 binary payloads (application/octet-stream), as hex.
const v3bin = [
  [0, 6, 255, ...Buffer.from("4hello")],
  [1, 4, 255, 4, 1, 2, 3],
  [0, 6, 255, ...Buffer.from("4hello"), 1, 3, 255, 4, 9, 9],
  [0, 1, 255, ...Buffer.from("2")],
  [0, 2, 255, ...Buffer.from("2p")],
  [1, 1, 255, 4],
  [0, 1, 255, ...Buffer.from("6")],
  [0, 5, 255, ...Buffer.from("4é€").slice(0, 5)],
  [0, 6, 255, ...Buffer.from("4é€")],
  [0, 7, 255, ...Buffer.from("4é€")], // a length past the end: Node truncates
  [0, 3, 255, ...Buffer.from("4"), 0xed, 0xa0],
  [0, 1, 0, 255, ...Buffer.from("4hellohello")],
];
for (const b of v3bin) {
  const got = [];
  let ok = true;
  try {
    v3.decodePayload(Buffer.from(b), (packet) => {
      if (packet.type === "error" || packet.type === undefined) { ok = false; return; }
      got.push(describe(null, packet));
    });
  } catch (e) {
    ok = false;
  }
  out.v3binary.push({ hex: Buffer.from(b).toString("hex"), ok, packets: got });
}

function describe(input, d) {
  const r = {};
  if (input !== null) r.in = input;
  r.ok = d.type !== "error" && d.type !== undefined;
  r.type = d.type === undefined ? "undefined" : d.type;
  if (Buffer.isBuffer(d.data)) {
    r.binary = true;
    r.hex = d.data.toString("hex");
  } else if (d.data !== undefined) {
    r.data = d.data;
  }
  return r;
}

process.stdout.write(JSON.stringify(out, null, 1) + "\n");
