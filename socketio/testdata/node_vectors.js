// Generates node_vectors.json: how Node's socket.io-parser decodes a set of
// inputs (a text message, then binary attachments). The Go tests check
// that the Go decoder never accepts what Node refuses and decodes alike
// what both accept. Run from this directory:
//
//	node node_vectors.js /tmp/peer/node_modules > node_vectors.json
"use strict";
const path = require("path");
const root = process.argv[2] || "/tmp/peer/node_modules";
const { Decoder } = require(path.join(root, "socket.io-parser"));

const ph = (n) => ({ _placeholder: true, num: n });
const J = JSON.stringify;
const bin = (hex) => ({ bin: hex });
const deep = (n) => "[".repeat(n) + "]".repeat(n);

const inputs = [
  ["0"], ["0/admin,"], ["0/admin"], ['0{"token":1}'], ['0/admin,{"a":1}'], ["0null"], ["0[]"], ['0"x"'], ["0/admin?token=1,"],
  ["1"], ["1/admin,"], ["1{}"], ["1null"],
  ['2["a"]'], ['2["a",1,{"b":[1,2]},null,true]'], ['2/admin,["a"]'], ['21["a"]'], ['2/admin,12["a"]'], ["2[]"], ["2[1]"],
  ["2[1.5]"], ["2[null]"], ['2["connect"]'], ['2["connect_error"]'], ['2["disconnect"]'], ['2["disconnecting"]'],
  ['2["newListener"]'], ['2["removeListener"]'], ['2["error"]'], ["2{}"], ['2"a"'], ["2"], ["2["], ['2["a"]x'], ['2["a"] '],
  ['2["a\\u0000b"]'], ['2["é😀"]'], ['2["a",{"a":1,"a":2}]'],
  ["3[]"], ["31[]"], ["31"], ["3/admin,5[1]"], ["3{}"], ['3[{"_placeholder":true,"num":0}]'],
  ['4"err"'], ['4{"message":"x"}'], ["4[]"], ["4"],
  ['51-' + J(["a", ph(0)]), bin("0102")],
  ['52-' + J(["a", ph(0), { x: ph(1) }]), bin("01"), bin("02")],
  ['52-' + J(["a", ph(1), ph(0)]), bin("01"), bin("02")],
  ['51-' + J(["a", ph(1)]), bin("01")],
  ['51-' + J(["a", ph(-1)]), bin("01")],
  ['51-' + J(["a", { _placeholder: true, num: "0" }]), bin("01")],
  ['51-' + J(["a", { _placeholder: true, num: 0.5 }]), bin("01")],
  ['51-' + J(["a", { _placeholder: true }]), bin("01")],
  ['51-' + J(["a", { _placeholder: "true", num: 0 }]), bin("01")],
  ['51-' + J(["a"]), bin("01")],
  ['52-' + J(["a", ph(0)]), bin("01"), bin("02")],
  ['52-' + J(["a", ph(0)]), bin("01")],
  ['51-' + J(["a", ph(0)]), bin("01"), bin("02")],
  ['51-' + J(["a", ph(0)]), '2["b"]'],
  ['50-' + J(["a"])], ['5-' + J(["a"])], ['5a-' + J(["a"])], ['5' + J(["a"])], ["51-"], ['5-1-' + J(["a"])],
  ['511-' + J(["a", ph(0)]), bin("01")],
  ['510-' + J(["a", ph(0)]), bin("01"), bin("02"), bin("03"), bin("04"), bin("05"), bin("06"), bin("07"), bin("08"), bin("09"), bin("0a")],
  ['51-/admin,7' + J(["a", ph(0)]), bin("ff")],
  ['51-' + J([ph(0)]), bin("01")],
  ['51-' + J(["connect", ph(0)]), bin("01")],
  ['61-0' + J([ph(0)]), bin("01")],
  ['61-/admin,3' + J([{ a: ph(0) }]), bin("01")],
  ['61-' + J({ a: ph(0) }), bin("01")],
  [bin("01")],
  ["29007199254740991[\"a\"]"], ["29007199254740992[\"a\"]"], ["2123456789012345678901[\"a\"]"], ["30[]"], ["3007[]"],
  ['2["a",' + deep(60) + "]"], ['2["a",' + deep(100) + "]"],
  ['2["a",{"s":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]'],
  ['2/,["a"]'], ['2/["a"]'], ['2/a b,["x"]'], ['2/é,["x"]'], ['2/admin,'], ['0/admin,,'],
  ["7"], ["8[]"], ["9"], ["x"], ["/"], ["-1"],
  ['2 ["a"]'], ['2\n["a"]'], ['2["a",1e400]'], ['2["a",1e2]'], ['2["a",-0]'], ['2["\\ud800"]'],
];

const out = [];
for (const input of inputs) {
  const d = new Decoder();
  const decoded = [];
  d.on("decoded", (p) => decoded.push(p));
  let ok = true;
  let err = "";
  try {
    for (const m of input) {
      d.add(typeof m === "string" ? m : Buffer.from(m.bin, "hex"));
    }
  } catch (e) {
    ok = false;
    err = e.message;
  }
  const v = { in: input, ok: ok && decoded.length === 1 && !d.reconstructor };
  if (!ok) v.err = err;
  if (decoded.length === 1) {
    const p = decoded[0];
    v.packet = { type: p.type, nsp: p.nsp, id: p.id === undefined ? -1 : p.id, data: enc(p.data) };
  }
  if (ok && decoded.length === 0) v.err = "incomplete";
  out.push(v);
}

function enc(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (Array.isArray(v)) return v.map(enc);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = enc(v[k]);
    return o;
  }
  if (typeof v === "number" && !isFinite(v)) return { $number: String(v) };
  return v;
}

process.stdout.write(JSON.stringify(out, null, 1) + "\n");
