// The client-compatibility suite shared by socket.io-client v3 and v4 (both
// Engine.IO v4, Socket.IO protocol v5) against the built binary: transports,
// auth, namespaces, the message router, errors, rate limiting, binary and
// oversized payloads. Every payload is compared whole (deepStrictEqual): the
// contract's shapes have no extra keys. Each entry point (socket-v3.test.mjs,
// socket-v4.test.mjs) runs it with its client's io function; what differs
// between the clients' APIs is absorbed by the helpers, not the assertions.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { devToken, signToken, startSwitchboard } from './harness.mjs';
import {
  SECRET, ack, answeredPings, assertAckError, assertErrorEvent, assertSent, countBefore, devices as devicesWith, getJSON,
  heartbeats as managerHeartbeats, invalidTokens, ioV3, isError, isSent, marker, open, pair as pairWith, refused, retry,
  token, uid, upgraded,
} from './sockets.mjs';

// clientSuite registers the suite for one client: io is its io function
// (socket.io-client's export), label names it in the test names.
export function clientSuite({ io, label }) {
  // Every device of the suite connects with this client.
  const devices = (t, baseUrl) => devicesWith(t, baseUrl, io);
  const pair = (t, baseUrl, opts = {}) => pairWith(t, baseUrl, { ...opts, io });
  // v3's Manager does not report the server's pings (see answeredPings).
  const heartbeats = (socket, event, n) => (io === ioV3 && event === 'ping'
    ? answeredPings(socket, n) : managerHeartbeats(socket, event, n));

  describe(label, () => {
    const T = { timeout: 60000 };

    // server starts a switchboard for one describe block and stops it after;
    // its stderr is printed when the block had a failure, to explain it.
    function server(env) {
      const ref = { sb: null, failed: false };
      before(async () => { ref.sb = await startSwitchboard({ env }); });
      after(async () => {
        if (!ref.sb) return;
        const code = await ref.sb.stop();
        if (process.env.SB_SHOW_LOGS) console.error(ref.sb.lines.join('\n'));
        assert.ok(code === 0 || code === 'SIGTERM', `switchboard exited ${code}`);
      });
      return ref;
    }

    const NAMESPACE_CLOSED = (d) => d.disconnects.length === 0 && d.socket.connected;

    describe('transports', () => {
      const srv = server({ JWT_SECRET: SECRET });
      for (const [name, transports, expected] of [
        ['websocket only', ['websocket'], 'websocket'],
        ['polling only', ['polling'], 'polling'],
        ['default (polling, then upgrade)', undefined, 'websocket'],
      ]) {
        it(`${name}: connects, acks on both routes, receives`, T, async (t) => {
          const { a, b, a1: da, b1: db } = await pair(t, srv.sb.url, { aOpts: { transports }, bOpts: { transports } });
          if (!transports) {
            await upgraded(da.socket);
            await upgraded(db.socket);
          }
          assert.equal(da.socket.io.engine.transport.name, expected);
          assert.equal(db.socket.io.engine.transport.name, expected);

          const text1 = `direct over ${name}`;
          const m1 = assertSent(await ack(da.socket, 'sendMessage', { to: b, text: text1 }), { from: a, to: b, text: text1 });
          assert.deepEqual(await db.inbox.next(isSent(text1)), { event: 'message_sent', id: b, args: m1 });

          const text2 = `envelope over ${name}`;
          const m2 = assertSent(await ack(da.socket, 'message', { event: 'sendMessage', args: { to: b, text: text2 } }),
            { from: a, to: b, text: text2 });
          assert.deepEqual(await db.inbox.next(isSent(text2)), { event: 'message_sent', id: b, args: m2 });

          const reply = await ack(db.socket, 'postUpdated', { postId: 'p-' + name, mentions: [a] });
          assert.deepEqual(reply, { ok: true, notified: 1 });
          assert.equal(da.socket.io.engine.transport.name, expected, 'transport changed during the test');
          assert.equal(db.socket.io.engine.transport.name, expected, 'transport changed during the test');
        });
      }
    });

    describe('auth', () => {
      const srv = server({ JWT_SECRET: SECRET });
      const url = () => srv.sb.url + '/socket';

      async function assertRefused(opts, reason) {
        const err = await refused(io, url(), opts);
        assert.equal(err.message, 'unauthorized', `connect_error message for ${JSON.stringify(opts)}`);
        assert.deepEqual(err.data, { reason }, `connect_error data for ${JSON.stringify(opts)}`);
      }

      // whoami proves which user the server took the socket to be: MSG.from.
      async function assertUser(d, user) {
        const text = 'who am i';
        const reply = await ack(d.socket, 'sendMessage', { to: uid('nobody'), text });
        assert.equal(reply?.message?.from, user, `socket authenticated as ${JSON.stringify(reply)}`);
      }

      for (const [name, via, transports] of [
        ['handshake auth.token', 'auth', undefined],
        ['handshake auth.token, websocket only', 'auth', ['websocket']],
        ['query parameter token', 'query', undefined],
        ['query parameter token, websocket only', 'query', ['websocket']],
        ['Authorization: Bearer header (polling)', 'header', ['polling']],
        ['Authorization: Bearer header, websocket only', 'header', ['websocket']],
        ['Authorization: Bearer header, default transports', 'header', undefined],
      ]) {
        it(`accepts a token from the ${name}`, T, async (t) => {
          const user = uid('auth');
          const d = await devices(t, srv.sb.url)(user, { via, transports });
          await assertUser(d, user);
        });
      }

      it('accepts any well-formed HS256 token with a sub: no typ, no exp, extra claims', T, async (t) => {
        const connect = devices(t, srv.sb.url);
        const exp = Math.floor(Date.now() / 1000) + 600;
        for (const [user, claims, header] of [
          [uid('notyp'), { exp }, { alg: 'HS256' }],
          [uid('noexp'), {}, undefined],
          [uid('extra'), { exp, aud: 'switchboard', iss: 'tests', role: 'admin', n: 1 }, undefined],
        ]) {
          const d = await connect(user, { tok: signToken(SECRET, { sub: user, ...claims }, header) });
          await assertUser(d, user);
        }
      });

      it('refuses a connection without any token: missing_token', T, async () => {
        await assertRefused({}, 'missing_token');
        await assertRefused({ auth: {} }, 'missing_token');
        await assertRefused({ transports: ['websocket'] }, 'missing_token');
        await assertRefused({ extraHeaders: { Authorization: `Basic ${Buffer.from('u:p').toString('base64')}` } }, 'missing_token');
      });

      it('refuses an expired token from every source: expired_token', T, async () => {
        const tk = token(uid('old'), { ttl: -60 });
        await assertRefused({ auth: { token: tk } }, 'expired_token');
        await assertRefused({ query: { token: tk } }, 'expired_token');
        await assertRefused({ extraHeaders: { Authorization: `Bearer ${tk}` } }, 'expired_token');
        await assertRefused({ transports: ['websocket'], extraHeaders: { Authorization: `Bearer ${tk}` } }, 'expired_token');
      });

      for (const [name, tk] of Object.entries(invalidTokens('mallory'))) {
        it(`refuses an invalid token (${name}): invalid_token`, T, async () => {
          await assertRefused({ auth: { token: tk } }, 'invalid_token');
        });
      }

      it('refuses invalid tokens from the query and the header too', T, async () => {
        const bad = token(uid('x'), { secret: 'wrong-secret' });
        await assertRefused({ query: { token: bad } }, 'invalid_token');
        await assertRefused({ extraHeaders: { Authorization: `Bearer ${bad}` } }, 'invalid_token');
        await assertRefused({ transports: ['websocket'], extraHeaders: { Authorization: `Bearer ${bad}` } }, 'invalid_token');
        await assertRefused({ query: { token: 'garbage' } }, 'invalid_token');
      });

      it('the first source present wins: auth.token over query over header', T, async (t) => {
        const good = uid('good');
        const bad = token(uid('bad'), { secret: 'wrong-secret' });
        const expired = token(uid('old'), { ttl: -60 });
        // A bad auth.token is not rescued by a good query token or header.
        await assertRefused({ auth: { token: bad }, query: { token: token(good) } }, 'invalid_token');
        await assertRefused({ auth: { token: expired }, query: { token: token(good) } }, 'expired_token');
        await assertRefused({ auth: { token: bad }, extraHeaders: { Authorization: `Bearer ${token(good)}` } }, 'invalid_token');
        // A bad query token is not rescued by a good header.
        await assertRefused({ query: { token: bad }, extraHeaders: { Authorization: `Bearer ${token(good)}` } }, 'invalid_token');
        // And the first source decides the user when several are good.
        const q = uid('query-user');
        const h = uid('header-user');
        const viaAuth = await open(io, url(), { auth: { token: token(good) }, query: { token: bad } });
        t.after(() => viaAuth.socket.close());
        await assertUser(viaAuth, good);
        const viaQuery = await open(io, url(), { query: { token: token(q) }, extraHeaders: { Authorization: `Bearer ${token(h)}` } });
        t.after(() => viaQuery.socket.close());
        await assertUser(viaQuery, q);
      });

      it('an accepted socket stays usable after refused attempts (no state leaks between handshakes)', T, async (t) => {
        await assertRefused({ auth: { token: 'garbage' } }, 'invalid_token');
        const user = uid('after');
        const d = await devices(t, srv.sb.url)(user);
        await assertUser(d, user);
      });
    });

    describe('auth in development mode (no JWT_SECRET)', () => {
      const srv = server({});

      it('a token from POST /api/dev/token connects, as its user, on every transport', T, async (t) => {
        const connect = devices(t, srv.sb.url);
        for (const transports of [undefined, ['websocket'], ['polling']]) {
          const user = uid('dev');
          const tk = await devToken(srv.sb.url, user);
          const d = await connect(user, { tok: tk, transports });
          const reply = await ack(d.socket, 'sendMessage', { to: uid('nobody'), text: 'hi' });
          assert.equal(reply?.message?.from, user, JSON.stringify(reply));
        }
      });

      it('a token signed with any other secret is invalid_token', T, async () => {
        const err = await refused(io, srv.sb.url + '/socket', { auth: { token: token(uid('x')) } });
        assert.equal(err.message, 'unauthorized');
        assert.deepEqual(err.data, { reason: 'invalid_token' });
      });
    });

    describe('namespaces', () => {
      const srv = server({ JWT_SECRET: SECRET });

      for (const nsp of ['/', '/other', '/socket/42', '/socket-2', '/user-7f3a']) {
        it(`refuses namespace ${nsp} with "Invalid namespace"`, T, async () => {
          for (const transports of [['polling'], ['websocket']]) {
            const err = await refused(io, srv.sb.url + nsp, { auth: { token: token(uid('n')) }, transports });
            assert.equal(err.message, 'Invalid namespace', `${nsp} over ${transports}: ${err.message}`);
          }
          const err = await refused(io, srv.sb.url + nsp, {});
          assert.equal(err.message, 'Invalid namespace', `${nsp} without a token: ${err.message}`);
        });
      }

      it('a refused namespace on the same connection does not disturb /socket', T, async (t) => {
        const user = uid('mux');
        const d = await devices(t, srv.sb.url)(user);
        // Same Manager (multiplexed): the refusal arrives on the shared connection.
        const other = d.socket.io.socket('/other', { auth: { token: token(user) } });
        t.after(() => other.close());
        const err = await new Promise((resolve, reject) => {
          const tm = setTimeout(() => reject(new Error('no connect_error for /other')), 10000);
          other.once('connect_error', (e) => { clearTimeout(tm); resolve(e); });
          other.once('connect', () => { clearTimeout(tm); reject(new Error('/other connected')); });
          other.connect();
        });
        assert.equal(err.message, 'Invalid namespace');
        assert.ok(d.socket.connected);
        const reply = await ack(d.socket, 'sendMessage', { to: uid('x'), text: 'still here' });
        assert.equal(reply?.ok, true, JSON.stringify(reply));
      });
    });

    describe('message router', () => {
      // A generous bucket: these tests send many events from one socket.
      const srv = server({ JWT_SECRET: SECRET, RATE_LIMIT: '1000', RATE_BURST: '1000' });

      it('both routes reach sendMessage; recipient devices get id: to, sender\'s other devices id: from, never the sending socket', T, async (t) => {
        const connect = devices(t, srv.sb.url);
        const a = uid('a');
        const b = uid('b');
        const a1 = await connect(a);
        const a2 = await connect(a, { transports: ['websocket'] });
        const b1 = await connect(b);
        const b2 = await connect(b, { transports: ['polling'] });
        const routes = {
          envelope: (args) => ack(a1.socket, 'message', { event: 'sendMessage', args }),
          direct: (args) => ack(a1.socket, 'sendMessage', args),
        };
        const sent = [];
        for (const [route, send] of Object.entries(routes)) {
          const text = `via ${route} ${uid('t')}`;
          const reply = await send({ to: b, text });
          const msg = assertSent(reply, { from: a, to: b, text });
          assert.deepEqual(reply, { ok: true, message: msg });
          assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
          assert.deepEqual(await b2.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
          assert.deepEqual(await a2.inbox.next(isSent(text)), { event: 'message_sent', id: a, args: msg });
          sent.push(text);
        }
        // B answers A: the marker reaches a1 and a2 after anything a1 was sent before.
        const m = await marker(b1, a);
        for (const text of sent) {
          assert.equal(await countBefore(a1.inbox, isSent(text), m), 0, 'the sending socket received its own message_sent');
          assert.equal(await countBefore(a2.inbox, isSent(text), m), 1, 'a2: exactly one copy');
        }
        const m2 = await marker(a2, b);
        for (const text of sent) {
          assert.equal(await countBefore(b1.inbox, isSent(text), m2), 1, 'b1: exactly one copy');
          assert.equal(await countBefore(b2.inbox, isSent(text), m2), 1, 'b2: exactly one copy');
        }
        // a1 got b1's marker as a recipient (id: a), b2 as b's other device (id: b).
        assert.equal((await a1.inbox.next(m)).id, a);
        assert.equal((await b2.inbox.next(m)).id, b);
        assert.equal(b1.inbox.got.filter(m).length, 0, 'b1 received its own marker');
      });

      it('MSG ids are unique and sentAt has exactly three fractional digits', T, async (t) => {
        const { a, b, a1, b1 } = await pair(t, srv.sb.url);
        const texts = Array.from({ length: 15 }, (_, i) => `burst ${i}`);
        const replies = await Promise.all(texts.map((text) => ack(a1.socket, 'sendMessage', { to: b, text })));
        const msgs = replies.map((r, i) => assertSent(r, { from: a, to: b, text: texts[i] }));
        assert.equal(new Set(msgs.map((m) => m.id)).size, msgs.length, 'MSG ids repeat');
        for (const msg of msgs) {
          assert.deepEqual(await b1.inbox.next(isSent(msg.text)), { event: 'message_sent', id: b, args: msg });
        }
      });

      it('a message to oneself reaches only one\'s other sockets, exactly once', T, async (t) => {
        const connect = devices(t, srv.sb.url);
        const a = uid('a');
        const a1 = await connect(a);
        const a2 = await connect(a);
        const a3 = await connect(a, { transports: ['websocket'] });
        const text = 'note to self';
        const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: a, text }), { from: a, to: a, text });
        for (const d of [a2, a3]) {
          assert.deepEqual(await d.inbox.next(isSent(text)), { event: 'message_sent', id: a, args: msg });
        }
        const other = await connect(uid('o'));
        const m = await marker(other, a);
        assert.equal(await countBefore(a1.inbox, isSent(text), m), 0, 'the sending socket got its own message');
        assert.equal(await countBefore(a2.inbox, isSent(text), m), 1, 'a2: exactly one copy');
        assert.equal(await countBefore(a3.inbox, isSent(text), m), 1, 'a3: exactly one copy');
      });

      it('text length counts code points: 4096 emoji accepted, 4097 rejected, empty rejected', T, async (t) => {
        const { a, b, a1, b1 } = await pair(t, srv.sb.url);
        // Code points, not bytes and not UTF-16 units: 'e' + U+0301 is two of them.
        for (const text of ['😀'.repeat(4096), 'x'.repeat(4096), 'é'.repeat(4096), '中'.repeat(4096), 'e\u0301'.repeat(2048), '😀'.repeat(4095) + 'x', 'y']) {
          const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text }), { from: a, to: b, text });
          assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
        }
        const rejected = ['😀'.repeat(4097), 'x'.repeat(4097), '😀'.repeat(4096) + 'x', 'e\u0301'.repeat(2049), ''];
        for (const text of rejected) {
          assertAckError(await ack(a1.socket, 'sendMessage', { to: b, text }), 'invalid_args');
          assertAckError(await ack(a1.socket, 'message', { event: 'sendMessage', args: { to: b, text } }), 'invalid_args');
        }
        const m = await marker(a1, b);
        for (const text of rejected) assert.equal(await countBefore(b1.inbox, isSent(text), m), 0, 'a rejected text was delivered');
      });

      it('sendMessage with malformed args is invalid_args and delivers nothing', T, async (t) => {
        const { a, b, a1, b1 } = await pair(t, srv.sb.url);
        const cases = [
          undefined, null, 'text', 42, [b, 'hi'], {}, { to: b }, { text: 'hi' }, { to: '', text: 'hi' },
          { to: 5, text: 'hi' }, { to: [b], text: 'hi' }, { to: b, text: 5 }, { to: b, text: ['hi'] }, { to: b, text: null },
        ];
        for (const args of cases) {
          const label = JSON.stringify(args);
          assertAckError(await ack(a1.socket, 'sendMessage', args), 'invalid_args');
          assertAckError(await ack(a1.socket, 'message', { event: 'sendMessage', args }), 'invalid_args');
          a1.socket.emit('sendMessage', args);
          assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'invalid_args', event: 'sendMessage' });
          a1.inbox.got.length = 0;
          assert.ok(a1.socket.connected, `socket closed after ${label}`);
        }
        const m = await marker(a1, b);
        assert.equal(await countBefore(b1.inbox, (x) => x?.event === 'message_sent', m), 0, 'malformed sendMessage delivered something');
      });

      it('postUpdated notifies each distinct mentioned user\'s every socket exactly once', T, async (t) => {
        const connect = devices(t, srv.sb.url);
        const a = uid('a');
        const b = uid('b');
        const c = uid('c');
        const a1 = await connect(a);
        const a2 = await connect(a);
        const b1 = await connect(b);
        const b2 = await connect(b, { transports: ['websocket'] });
        const c1 = await connect(c, { transports: ['polling'] });
        const postId = uid('post');
        const isPost = (p) => (m) => m?.event === 'post_updated_notification' && m?.args?.postId === p;
        for (const [route, reply] of [
          ['direct', await ack(a1.socket, 'postUpdated', { postId, mentions: [b, c, b, c, b] })],
          ['envelope', await ack(a1.socket, 'message', { event: 'postUpdated', args: { postId: postId + '-2', mentions: [c, b] } })],
        ]) {
          assert.deepEqual(reply, { ok: true, notified: 2 }, `${route} ack`);
        }
        for (const [d, user] of [[b1, b], [b2, b], [c1, c]]) {
          for (const p of [postId, postId + '-2']) {
            const got = await d.inbox.next(isPost(p));
            const message = got?.args?.message;
            assert.equal(typeof message, 'string');
            assert.deepEqual(got, { event: 'post_updated_notification', id: user, args: { postId: p, by: a, message } });
          }
        }
        // Exactly once: a later notification through the same path comes after.
        const markerPost = uid('marker-post');
        assert.deepEqual(await ack(a1.socket, 'postUpdated', { postId: markerPost, mentions: [b, c, a] }), { ok: true, notified: 3 });
        for (const d of [b1, b2, c1]) {
          assert.equal(await countBefore(d.inbox, isPost(postId), isPost(markerPost)), 1, `${d.user}: copies of the notification`);
        }
        // A, not mentioned before the marker, got nothing before it; mentioned in
        // the marker, every socket of A gets it, the sending one included.
        for (const d of [a1, a2]) {
          assert.equal(await countBefore(d.inbox, isPost(postId), isPost(markerPost)), 0, 'unmentioned sender got the notification');
          const got = await d.inbox.next(isPost(markerPost));
          assert.deepEqual(got, { event: 'post_updated_notification', id: a, args: { postId: markerPost, by: a, message: got.args.message } });
        }
      });

      it('postUpdated: 100 mentions accepted, 101 and 0 rejected, malformed args invalid_args', T, async (t) => {
        const connect = devices(t, srv.sb.url);
        const a = uid('a');
        const c = uid('c');
        const a1 = await connect(a);
        const c1 = await connect(c);
        const hundred = [c, ...Array.from({ length: 99 }, () => uid('m'))];
        assert.deepEqual(await ack(a1.socket, 'postUpdated', { postId: 'p100', mentions: hundred }), { ok: true, notified: 100 });
        const got = await c1.inbox.next((m) => m?.event === 'post_updated_notification' && m?.args?.postId === 'p100');
        assert.deepEqual(got, { event: 'post_updated_notification', id: c, args: { postId: 'p100', by: a, message: got.args.message } });

        assert.deepEqual(await ack(a1.socket, 'postUpdated', { postId: 'same', mentions: Array(100).fill(c) }), { ok: true, notified: 1 });
        const bad = [
          { postId: 'p101', mentions: [c, ...Array.from({ length: 100 }, () => uid('m'))] },
          { postId: 'p0', mentions: [] },
          { postId: 'p', mentions: c },
          { postId: 'p', mentions: [c, 5] },
          { postId: 'p', mentions: [c, null] },
          { postId: 'p', mentions: [c, ''] },
          { postId: '', mentions: [c] },
          { postId: 'p' },
          { mentions: [c] },
          { postId: 5, mentions: [c] },
          null,
          'p',
          [c],
        ];
        for (const args of bad) {
          assertAckError(await ack(a1.socket, 'postUpdated', args), 'invalid_args');
          assertAckError(await ack(a1.socket, 'message', { event: 'postUpdated', args }), 'invalid_args');
        }
        a1.socket.emit('message', { event: 'postUpdated', args: bad[0] });
        assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'invalid_args', event: 'postUpdated' });
        const m = await marker(a1, c);
        assert.equal(await countBefore(c1.inbox, (x) => x?.event === 'post_updated_notification' && !['p100', 'same'].includes(x?.args?.postId), m), 0,
          'a rejected postUpdated notified someone');
      });
    });

    describe('router errors never close the socket', () => {
      const srv = server({ JWT_SECRET: SECRET, RATE_LIMIT: '1000', RATE_BURST: '1000' });

      it('unknown_event: with an ack on both routes, and as an error message without one', T, async (t) => {
        const a = uid('a');
        const a1 = await devices(t, srv.sb.url)(a);
        assertAckError(await ack(a1.socket, 'noSuchEvent', { x: 1 }), 'unknown_event');
        assertAckError(await ack(a1.socket, 'message', { event: 'noSuchEvent', args: { x: 1 } }), 'unknown_event');
        assertAckError(await ack(a1.socket, 'message', { event: 'message_sent', args: {} }), 'unknown_event');
        // "message" is the envelope, not a handler: an envelope inside one is unknown.
        assertAckError(await ack(a1.socket, 'message', { event: 'message', args: { event: 'sendMessage', args: { to: uid('x'), text: 'x' } } }),
          'unknown_event');

        a1.socket.emit('noSuchEvent', { x: 1 });
        assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'unknown_event', event: 'noSuchEvent' });
        a1.inbox.got.length = 0;
        a1.socket.emit('message', { event: 'otherUnknown', args: null });
        assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'unknown_event', event: 'otherUnknown' });
        a1.inbox.got.length = 0;
        a1.socket.emit('noArgsAtAll');
        assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'unknown_event', event: 'noArgsAtAll' });
        assert.ok(NAMESPACE_CLOSED(a1), `socket closed: ${a1.disconnects}`);
      });

      it('a message payload that is not an {event, args} object is invalid_args', T, async (t) => {
        const { a, b, a1, b1 } = await pair(t, srv.sb.url);
        const payloads = ['a string', ['sendMessage', { to: b, text: 'x' }], null, { event: 5 }, { event: 5, args: {} },
          { args: { to: b, text: 'x' } }, 42, true, { event: null, args: {} }, { event: ['sendMessage'], args: { to: b, text: 'x' } }];
        for (const p of payloads) {
          const label = JSON.stringify(p);
          const reply = await ack(a1.socket, 'message', p);
          assert.equal(reply?.error?.code, 'invalid_args', `payload ${label}: ${JSON.stringify(reply)}`);
          assertAckError(reply, 'invalid_args');
        }
        assertAckError(await ack(a1.socket, 'message'), 'invalid_args');
        // A well-formed envelope without args reaches the handler, which refuses it.
        assertAckError(await ack(a1.socket, 'message', { event: 'sendMessage' }), 'invalid_args');
        for (const p of payloads) {
          a1.inbox.got.length = 0;
          a1.socket.emit('message', p);
          const m = await a1.inbox.next(isError);
          // Which name a malformed envelope's error carries is not pinned by the
          // contract; it must still be a string, with the exact shape.
          assert.equal(typeof m?.args?.event, 'string', JSON.stringify(m));
          assertErrorEvent(m, { user: a, code: 'invalid_args', event: m.args.event });
        }
        assert.ok(NAMESPACE_CLOSED(a1), `socket closed: ${a1.disconnects}`);
        const mk = await marker(a1, b);
        assert.equal(await countBefore(b1.inbox, (x) => x?.event === 'message_sent', mk), 0, 'a malformed envelope delivered a message');
      });

      it('many errors in a row leave the socket connected and working', T, async (t) => {
        const { a, b, a1, b1 } = await pair(t, srv.sb.url, { aOpts: { transports: ['websocket'] } });
        for (let i = 0; i < 10; i++) {
          a1.socket.emit('bogus' + i, i);
          a1.socket.emit('message', 'junk');
          a1.socket.emit('sendMessage', { to: b });
        }
        await retry(() => a1.inbox.got.filter(isError).length >= 30, { attempts: 100, intervalMs: 50, what: '30 error messages' });
        assert.deepEqual(a1.disconnects, []);
        assert.ok(a1.socket.connected);
        const text = 'after the errors';
        const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text }), { from: a, to: b, text });
        assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
      });

      it('binary payloads: a Buffer where a string belongs is invalid_args; binary to an unknown event is unknown_event', T, async (t) => {
        const a = uid('a');
        const b = uid('b');
        const connect = devices(t, srv.sb.url);
        for (const transports of [['websocket'], ['polling']]) {
          const a1 = await connect(a, { transports });
          const b1 = await connect(b);
          assertAckError(await ack(a1.socket, 'sendMessage', { to: b, text: Buffer.from('hello') }), 'invalid_args');
          assertAckError(await ack(a1.socket, 'sendMessage', { to: Buffer.from(b), text: 'hello' }), 'invalid_args');
          assertAckError(await ack(a1.socket, 'message', { event: 'sendMessage', args: Buffer.from([1, 2, 3]) }), 'invalid_args');
          assertAckError(await ack(a1.socket, 'message', Buffer.alloc(64, 7)), 'invalid_args');
          assertAckError(await ack(a1.socket, 'postUpdated', { postId: Buffer.from('p'), mentions: [b] }), 'invalid_args');
          assertAckError(await ack(a1.socket, 'blob', Buffer.alloc(512, 1)), 'unknown_event');
          a1.socket.emit('blob', Buffer.alloc(512, 1));
          assertErrorEvent(await a1.inbox.next(isError), { user: a, code: 'unknown_event', event: 'blob' });
          assert.ok(NAMESPACE_CLOSED(a1), `socket closed over ${transports}: ${a1.disconnects}`);
          const text = 'after binary over ' + transports;
          const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text }), { from: a, to: b, text });
          assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
          assert.equal(b1.inbox.got.filter((m) => m?.event === 'message_sent').length, 1, 'binary sendMessage delivered something');
        }
      });
    });

    describe('rate limiting (RATE_LIMIT=1, RATE_BURST=5)', () => {
      const srv = server({ JWT_SECRET: SECRET, RATE_LIMIT: '1', RATE_BURST: '5' });

      // refilled retries a sendMessage until the bucket lets it through; each
      // attempt has its own text, and only the successful one may be delivered.
      async function refilled(d, to) {
        const tried = [];
        const ok = await retry(async (i) => {
          const text = `refill ${i} ${uid('r')}`;
          tried.push(text);
          const reply = await ack(d.socket, 'sendMessage', { to, text });
          if (reply?.ok) return text;
          assertAckError(reply, 'rate_limited');
          return null;
        }, { attempts: 15, intervalMs: 1000, what: 'bucket refill' });
        return { ok, refused: tried.filter((x) => x !== ok) };
      }

      it('the 6th rapid event is rate_limited on either route, is not delivered, and the socket stays open', T, async (t) => {
        const { a, b, a1, b1 } = await pair(t, srv.sb.url, { aOpts: { transports: ['websocket'] } });
        const texts = Array.from({ length: 8 }, (_, i) => `rl ${i}`);
        const replies = await Promise.all(texts.map((text, i) => (i % 2
          ? ack(a1.socket, 'message', { event: 'sendMessage', args: { to: b, text } })
          : ack(a1.socket, 'sendMessage', { to: b, text }))));
        for (let i = 0; i < 5; i++) assertSent(replies[i], { from: a, to: b, text: texts[i] });
        for (let i = 5; i < 8; i++) assertAckError(replies[i], 'rate_limited');
        assert.deepEqual(a1.disconnects, [], 'a burst a little over RATE_BURST closed the socket');
        assert.ok(a1.socket.connected);

        const { ok, refused: notLetThrough } = await refilled(a1, b);
        const isOk = isSent(ok);
        for (let i = 0; i < 5; i++) assert.equal(await countBefore(b1.inbox, isSent(texts[i]), isOk), 1, `${texts[i]} copies`);
        for (const text of [...texts.slice(5), ...notLetThrough]) {
          assert.equal(await countBefore(b1.inbox, isSent(text), isOk), 0, `rate-limited "${text}" was delivered`);
        }
        assert.deepEqual(a1.disconnects, []);
      });

      it('without an ack, the limited event\'s error names the router event, also through message', T, async (t) => {
        const { a, b, a1, b1 } = await pair(t, srv.sb.url);
        // Every event counts, whichever route and whatever its outcome: unknown
        // events, a malformed envelope and a refused sendMessage empty the bucket.
        const first = await Promise.all([
          ack(a1.socket, 'unknownThing', 1), ack(a1.socket, 'message', { event: 'unknownThing', args: 2 }), ack(a1.socket, 'unknownThing'),
          ack(a1.socket, 'message', 'junk'), ack(a1.socket, 'sendMessage', { to: b, text: '' }),
        ]);
        for (const [i, code] of ['unknown_event', 'unknown_event', 'unknown_event', 'invalid_args', 'invalid_args'].entries()) {
          assertAckError(first[i], code);
        }
        a1.socket.emit('message', { event: 'sendMessage', args: { to: b, text: 'limited 1' } });
        a1.socket.emit('postUpdated', { postId: 'limited', mentions: [b] });
        a1.socket.emit('message', { event: 'postUpdated', args: { postId: 'limited', mentions: [b] } });
        a1.socket.emit('sendMessage', { to: b, text: 'limited 2' });
        await retry(() => a1.inbox.got.filter(isError).length >= 4, { attempts: 100, intervalMs: 50, what: 'four error messages' });
        const errors = a1.inbox.got.filter(isError);
        assert.deepEqual(errors.map((m) => m.args.event), ['sendMessage', 'postUpdated', 'postUpdated', 'sendMessage']);
        for (const m of errors) assertErrorEvent(m, { user: a, code: 'rate_limited', event: m.args.event });
        const { ok } = await refilled(a1, b);
        for (const text of ['limited 1', 'limited 2']) assert.equal(await countBefore(b1.inbox, isSent(text), isSent(ok)), 0, `${text} delivered`);
        assert.equal(b1.inbox.got.filter((m) => m?.event === 'post_updated_notification').length, 0, 'a limited postUpdated notified');
        assert.deepEqual(a1.disconnects, []);
      });

      it('buckets are per socket: another socket of the same user is not limited', T, async (t) => {
        const connect = devices(t, srv.sb.url);
        const a = uid('a');
        const a1 = await connect(a);
        const a2 = await connect(a);
        const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => ack(a1.socket, 'sendMessage', { to: uid('x'), text: `t${i}` })));
        assertAckError(replies[5], 'rate_limited');
        const r = await ack(a2.socket, 'sendMessage', { to: uid('x'), text: 'fresh bucket' });
        assertSent(r, { from: a, to: r?.message?.to, text: 'fresh bucket' });
      });
    });

    describe('payload limit (MAX_PAYLOAD_BYTES=2000)', () => {
      const srv = server({ JWT_SECRET: SECRET, MAX_PAYLOAD_BYTES: '2000' });

      // Sends an oversized event and waits until the server either closes the
      // connection or answers it: it must not be delivered, and the server must
      // go on serving.
      async function oversized(t, transports, payloadOf) {
        const { connect, a, b, a1, b1 } = await pair(t, srv.sb.url, { aOpts: { transports } });
        const bigText = 'B'.repeat(3000);
        const outcome = await new Promise((resolve, reject) => {
          const tm = setTimeout(() => reject(new Error('neither a close nor an answer after an oversized event')), 15000);
          a1.socket.once('disconnect', (reason) => { clearTimeout(tm); resolve({ closed: reason }); });
          a1.socket.emit('sendMessage', payloadOf(b, bigText), (reply) => { clearTimeout(tm); resolve({ reply }); });
        });
        if (outcome.reply) assert.equal(outcome.reply.ok, false, `oversized event accepted: ${JSON.stringify(outcome.reply).slice(0, 200)}`);
        const health = await getJSON(srv.sb.url + '/healthz');
        assert.equal(health.status, 200);
        assert.deepEqual(health.body, { status: 'ok' });
        assert.equal(srv.sb.proc.exitCode, null, 'switchboard exited');
        // Another client is served; the oversized message was not delivered.
        const c1 = await connect(uid('c'), { transports });
        const m = await marker(c1, b);
        assert.equal(await countBefore(b1.inbox, (x) => x?.event === 'message_sent' && x?.args?.from === a, m), 0, 'oversized event delivered');
      }

      for (const transports of [['websocket'], ['polling']]) {
        it(`under the limit is delivered (${transports})`, T, async (t) => {
          const { a, b, a1, b1 } = await pair(t, srv.sb.url, { aOpts: { transports }, bOpts: { transports } });
          const text = 's'.repeat(1500);
          const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text }), { from: a, to: b, text });
          assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
        });
        it(`an event over the limit does not crash the server (${transports})`, T, async (t) => {
          await oversized(t, transports, (to, text) => ({ to, text }));
        });
        it(`a binary attachment over the limit does not crash the server (${transports})`, T, async (t) => {
          await oversized(t, transports, (to) => ({ to, text: 'x', blob: Buffer.alloc(3000, 9) }));
        });
      }
    });

    describe('heartbeat (PING_INTERVAL=200ms, PING_TIMEOUT=300ms)', () => {
      const srv = server({ JWT_SECRET: SECRET, PING_INTERVAL: '200ms', PING_TIMEOUT: '300ms' });
      for (const transports of [['websocket'], ['polling'], undefined]) {
        it(`the client answers the server's pings and stays connected (${transports ?? 'default'})`, T, async (t) => {
          const { a, b, a1, b1 } = await pair(t, srv.sb.url, { aOpts: { transports }, bOpts: { transports } });
          await heartbeats(a1.socket, 'ping', 5);
          assert.deepEqual(a1.disconnects, []);
          const text = 'after five pings';
          const msg = assertSent(await ack(a1.socket, 'sendMessage', { to: b, text }), { from: a, to: b, text });
          assert.deepEqual(await b1.inbox.next(isSent(text)), { event: 'message_sent', id: b, args: msg });
        });
      }
    });
  });
}
