'use strict';
// Preloaded (`node -r`) into the Node peer by the interop tests. Switchboard's
// /socket namespace answers the server-side event "switchboard:ping" with
// {"node": NODE_ID}; the peer has no such handler, and a Node caller's
// serverSideEmit with an acknowledgement waits for every other server of the
// cluster, so without it every such call would end in a timeout. This adds
// the same handler to the peer's /socket and changes nothing else.
//
// It patches the socket.io that the peer itself loads (resolved from the
// peer's server.js), not the copy the tests use.
const { createRequire } = require('node:module');
const path = require('node:path');

const main = process.argv[1];
if (!main) throw new Error('peer-ping.cjs: no main script to take socket.io from');
const { Server } = createRequire(path.resolve(main))('socket.io');

const of = Server.prototype.of;
const patched = new WeakSet();
Server.prototype.of = function patchedOf(name, fn) {
  const nsp = of.call(this, name, fn);
  if (name === '/socket' && !patched.has(nsp)) {
    patched.add(nsp);
    nsp.on('switchboard:ping', (...args) => {
      const ack = args[args.length - 1];
      if (typeof ack === 'function') ack({ node: process.env.NODE_ID || 'switchboard' });
    });
  }
  return nsp;
};
