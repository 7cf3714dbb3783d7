// HTTP API of the built binary, as CONTRACT.md ("HTTP") and COMMON.md
// ("Interfaces the binary offers") pin it: health, readiness with and without
// Redis, metrics, the demo page, the node header, dev tokens, the push API
// (auth, shapes, payload limit) and CORS. Each suite starts its own process.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { collect, connectSocket, devToken, freePort, startRedis, startSwitchboard } from './lib/harness.mjs';
import {
  assertJSONError, assertLogLines, labelKey, pollingHandshake, pollUntil, rawWebSocket, request, scrape, stopSwitchboard,
} from './lib/process.mjs';

const ORIGIN = 'http://example.test';

// serverSuite starts one process for a describe block, checks its stderr
// after every test, and stops it (exit 0, JSON lines) at the end.
function serverSuite(env) {
  const ctx = { sb: null };
  before(async () => { ctx.sb = await startSwitchboard({ env }); });
  afterEach(() => { if (ctx.sb) assertLogLines(ctx.sb.lines); });
  after(async () => {
    if (!ctx.sb) return;
    const code = await stopSwitchboard(ctx.sb);
    assertLogLines(ctx.sb.lines, 'stderr after SIGTERM');
    assert.equal(code, 0, 'exit code after SIGTERM');
  });
  return ctx;
}

const decodeJWTPart = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));

// A valid push body padded (inside args) to exactly `size` bytes.
function paddedEventsBody(size) {
  const make = (n) => JSON.stringify({ users: ['pad-user'], event: 'padded', args: { pad: 'x'.repeat(n) } });
  const base = Buffer.byteLength(make(0));
  assert.ok(size >= base, `size ${size} below the minimal body ${base}`);
  const body = make(size - base);
  assert.equal(Buffer.byteLength(body), size);
  return body;
}

function assertAllowsOrigin(res, origin, what) {
  const acao = res.headers['access-control-allow-origin'];
  assert.ok(acao === '*' || acao === origin,
    `${what}: Access-Control-Allow-Origin should be "*" or ${origin}, got ${JSON.stringify(acao)} (HTTP ${res.status})`);
}

function assertNoPermissiveOrigin(res, origin, what) {
  const acao = res.headers['access-control-allow-origin'];
  assert.ok(acao === undefined || (acao !== '*' && acao !== origin && acao !== 'null'),
    `${what}: origin ${origin} must get no permissive Access-Control-Allow-Origin, got ${JSON.stringify(acao)} (HTTP ${res.status})`);
}

describe('development-mode process (no JWT_SECRET, no API_KEY, NODE_ID set)', () => {
  const NODE = 'sb-http-node-1';
  const ctx = serverSuite({ NODE_ID: NODE });

  it('GET /healthz answers 200 {"status":"ok"} as JSON', async () => {
    const res = await request(ctx.sb.url + '/healthz');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.deepEqual(res.json(), { status: 'ok' });
  });

  it('GET /readyz answers 200 when no Redis is configured', async () => {
    const res = await request(ctx.sb.url + '/readyz');
    assert.equal(res.status, 200, `readyz body: ${res.text}`);
  });

  it('GET / serves the demo page as HTML', async () => {
    const res = await request(ctx.sb.url + '/');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.match(res.text, /<html[\s>]/i);
  });

  it('GET /api/whoami answers {"node": NODE_ID}', async () => {
    const res = await request(ctx.sb.url + '/api/whoami');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.deepEqual(res.json(), { node: NODE });
    assert.equal(ctx.sb.node, NODE, 'header seen by the harness on /healthz');
  });

  it('every response, errors and 404s included, carries X-Switchboard-Node', async () => {
    const u = ctx.sb.url;
    const json = { 'content-type': 'application/json' };
    const cases = [
      ['GET', '/healthz'], ['GET', '/readyz'], ['GET', '/metrics'], ['GET', '/'], ['GET', '/api/whoami'],
      ['GET', '/no-such-page'], ['GET', '/api/no-such-route'], ['GET', '/static/no-such-file.js'],
      ['POST', '/api/events', { ...json, authorization: 'Bearer x' }, '{"users":["a"],"event":"e"}'],
      ['POST', '/api/dev/token', json, '{"user":"hdr"}'],
      ['POST', '/api/dev/token', json, '{broken'],
      ['GET', '/socket.io/?EIO=4&transport=polling'],
      ['GET', '/socket.io/?EIO=4&transport=polling&sid=no-such-sid'],
      ['GET', '/socket.io/?EIO=99&transport=bogus'],
      ['OPTIONS', '/api/dev/token', { origin: ORIGIN, 'access-control-request-method': 'POST' }],
      ['DELETE', '/healthz'],
    ];
    for (const [method, path, headers = {}, body] of cases) {
      const res = await request(u + path, { method, headers, body });
      assert.equal(res.headers['x-switchboard-node'], NODE, `${method} ${path} (HTTP ${res.status}): X-Switchboard-Node`);
    }
    // The websocket upgrade's 101 is an HTTP response too.
    const ws = await rawWebSocket(ctx.sb.port);
    try {
      assert.equal(ws.status, 101, ws.head);
      assert.match(ws.head, new RegExp(`^x-switchboard-node: ${NODE}\r?$`, 'im'), `101 Switching Protocols: X-Switchboard-Node\n${ws.head}`);
    } finally {
      ws.destroy();
    }
  });

  it('HEAD answers wherever GET does, with the status and headers of GET and no body', async () => {
    const u = ctx.sb.url;
    for (const path of ['/', '/healthz', '/readyz', '/metrics', '/api/whoami', '/static/app.js',
      '/socket.io/?EIO=4&transport=polling']) {
      const get = await request(u + path);
      const head = await request(u + path, { method: 'HEAD' });
      assert.equal(head.status, get.status, `HEAD ${path}: HTTP ${head.status}, GET gave ${get.status}`);
      assert.equal(head.status, 200, `HEAD ${path}`);
      assert.equal(head.text, '', `HEAD ${path} has no body`);
      assert.equal(String(head.headers['content-type']).split(';')[0], String(get.headers['content-type']).split(';')[0], `HEAD ${path}: content-type`);
    }
    // HEAD on an Engine.IO session neither opens one nor takes its packets.
    const { sid } = await pollingHandshake(u);
    const q = `${u}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    assert.equal((await request(q, { method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: '40/socket,{}' })).status, 200);
    assert.equal((await request(q, { method: 'HEAD' })).status, 200);
    const poll = await request(q);
    assert.match(poll.text, /^44\/socket,/, `the connect_error is still there for the GET after a HEAD: ${poll.text}`);
    assert.equal((await request(`${u}/socket.io/?EIO=4&transport=polling&sid=nope`, { method: 'HEAD' })).status, 400, 'HEAD with an unknown sid');
  });

  it('an unknown /api route is a 404 JSON error', async () => {
    assertJSONError(await request(ctx.sb.url + '/api/no-such-route'), 404, 'GET /api/no-such-route');
  });

  it('POST /api/dev/token answers 200 {"token"} with an HS256 JWT for the user, and it connects', async () => {
    const res = await request(ctx.sb.url + '/api/dev/token', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice' }),
    });
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = res.json();
    assert.deepEqual(Object.keys(body), ['token']);
    const parts = body.token.split('.');
    assert.equal(parts.length, 3, 'a JWT has three parts');
    assert.equal(decodeJWTPart(parts[0]).alg, 'HS256');
    assert.equal(decodeJWTPart(parts[1]).sub, 'alice');
    const socket = await connectSocket(io, ctx.sb.url + '/socket', { auth: { token: body.token } });
    try {
      assert.equal(socket.connected, true);
    } finally {
      socket.close();
    }
  });

  it('POST /api/dev/token answers a malformed body with a 400 JSON error', async () => {
    const bodies = ['{broken', '', '[]', '"alice"', 'null', '{}', '{"user":5}', '{"user":["alice"]}', '{"user":""}'];
    for (const body of bodies) {
      const res = await request(ctx.sb.url + '/api/dev/token', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body,
      });
      assertJSONError(res, 400, `POST /api/dev/token body ${JSON.stringify(body)}`);
    }
  });

  it('POST /api/events answers a 404 JSON error when API_KEY is empty', async () => {
    for (const auth of [undefined, 'Bearer ', 'Bearer anything']) {
      const res = await request(ctx.sb.url + '/api/events', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(auth === undefined ? {} : { authorization: auth }) },
        body: '{"users":["a"],"event":"e","args":1}',
      });
      assertJSONError(res, 404, `POST /api/events (no API_KEY) with Authorization ${JSON.stringify(auth)}`);
    }
  });

  it('CORS in development mode allows any origin: API requests, preflight and the polling handshake', async () => {
    const u = ctx.sb.url;
    const token = await request(u + '/api/dev/token', {
      method: 'POST', headers: { origin: ORIGIN, 'content-type': 'application/json' }, body: '{"user":"cors"}',
    });
    assert.equal(token.status, 200);
    assertAllowsOrigin(token, ORIGIN, 'POST /api/dev/token');
    assertAllowsOrigin(await request(u + '/api/whoami', { headers: { origin: ORIGIN } }), ORIGIN, 'GET /api/whoami');
    const pre = await request(u + '/api/dev/token', {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.ok(pre.status >= 200 && pre.status < 300, `preflight OPTIONS /api/dev/token: HTTP ${pre.status}`);
    assertAllowsOrigin(pre, ORIGIN, 'preflight OPTIONS /api/dev/token');
    const hs = await request(u + '/socket.io/?EIO=4&transport=polling', { headers: { origin: ORIGIN } });
    assert.equal(hs.status, 200, hs.text);
    assertAllowsOrigin(hs, ORIGIN, 'GET /socket.io/?EIO=4&transport=polling');
  });
});

describe('push API: POST /api/events (development mode, API_KEY, MAX_PAYLOAD_BYTES=5000)', () => {
  const KEY = 'test-key-5000';
  const ctx = serverSuite({ API_KEY: KEY, MAX_PAYLOAD_BYTES: '5000' });
  const post = (body, headers = { authorization: `Bearer ${KEY}` }, opts = {}) => request(ctx.sb.url + '/api/events', {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, ...opts,
  });
  const valid = '{"users":["u1"],"event":"e","args":{"a":1}}';

  it('401 JSON error for a missing header, a non-Bearer scheme or a wrong key', async () => {
    const cases = [
      [{}, valid],
      [{ authorization: `Basic ${Buffer.from(`x:${KEY}`).toString('base64')}` }, valid],
      [{ authorization: KEY }, valid],
      [{ authorization: `Token ${KEY}` }, valid],
      [{ authorization: 'Bearer' }, valid],
      [{ authorization: 'Bearer ' }, valid],
      [{ authorization: 'Bearer wrong-key' }, valid],
      [{ authorization: `Bearer ${KEY}x` }, valid],
      [{ authorization: `Bearer ${KEY.slice(0, -1)}` }, valid],
      [{ authorization: 'Bearer wrong-key' }, '{not json'],
    ];
    for (const [headers, body] of cases) {
      const res = await post(body, headers);
      assertJSONError(res, 401, `POST /api/events Authorization ${JSON.stringify(headers.authorization)} body ${body}`);
    }
  });

  it('400 JSON error for invalid JSON and for JSON of the wrong shape', async () => {
    const bodies = [
      '{not json', '', '{"users":["u1"],"event":"e"', // invalid JSON
      'null', '[]', '"text"', '42', 'true', '[{"users":["u1"],"event":"e"}]', // not an object
      '{"event":"e"}', '{"users":"u1","event":"e"}', '{"users":{"0":"u1"},"event":"e"}', '{"users":null,"event":"e"}', // users not an array
      '{"users":[1],"event":"e"}', '{"users":[null],"event":"e"}', '{"users":[["u1"]],"event":"e"}', // users not ids
      '{"users":["u1"]}', '{"users":["u1"],"event":5}', '{"users":["u1"],"event":null}', '{"users":["u1"],"event":["e"]}', '{"users":["u1"],"event":{}}', // event
    ];
    for (const body of bodies) {
      assertJSONError(await post(body), 400, `POST /api/events body ${JSON.stringify(body)}`);
    }
  });

  it('202 {"users": N} counts distinct users and delivers each exactly once', async () => {
    const token = await devToken(ctx.sb.url, 'recv1');
    const socket = await connectSocket(io, ctx.sb.url + '/socket', { auth: { token } });
    try {
      const inbox = collect(socket);
      let res = await post(JSON.stringify({ users: ['recv1', 'recv1', 'nobody-here'], event: 'custom_evt', args: { k: [1, 'two'] } }));
      assert.equal(res.status, 202, res.text);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      assert.deepEqual(res.json(), { users: 2 }, 'users ["recv1","recv1","nobody-here"]: N is the distinct count');
      res = await post(JSON.stringify({ users: ['a', 'b', 'c'], event: 'x', args: null }));
      assert.equal(res.status, 202, res.text);
      assert.deepEqual(res.json(), { users: 3 });
      res = await post(JSON.stringify({ users: ['recv1'], event: 'marker' }));
      assert.equal(res.status, 202, res.text);
      assert.deepEqual(res.json(), { users: 1 });
      // Deliveries to one socket keep their order: once the marker is in,
      // every copy of custom_evt has arrived.
      const marker = await inbox.next((m) => m && m.event === 'marker');
      assert.deepEqual(Object.keys(marker).sort(), ['args', 'event', 'id']);
      assert.equal(marker.id, 'recv1');
      const got = inbox.got.filter((m) => m && m.event === 'custom_evt');
      assert.equal(got.length, 1, `custom_evt deliveries to recv1: ${JSON.stringify(inbox.got)}`);
      assert.deepEqual(got[0], { event: 'custom_evt', id: 'recv1', args: { k: [1, 'two'] } });
    } finally {
      socket.close();
    }
  });

  it('a body of exactly MAX_PAYLOAD_BYTES gets 202; one byte more gets a 413 JSON error (with and without Content-Length)', async () => {
    for (const chunked of [false, true]) {
      const how = chunked ? 'chunked' : 'Content-Length';
      const ok = await post(paddedEventsBody(5000), undefined, { chunked });
      assert.equal(ok.status, 202, `5000-byte body (${how}): HTTP ${ok.status} ${ok.text}`);
      assert.deepEqual(ok.json(), { users: 1 });
      assertJSONError(await post(paddedEventsBody(5001), undefined, { chunked }), 413, `5001-byte body (${how})`);
      assertJSONError(await post(paddedEventsBody(60000), undefined, { chunked }), 413, `60000-byte body (${how})`);
    }
  });

  it('an HTTP body over MAX_PAYLOAD_BYTES on /api/dev/token also gets a 413 JSON error', async () => {
    const body = JSON.stringify({ user: 'u'.repeat(6000) });
    const res = await request(ctx.sb.url + '/api/dev/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assertJSONError(res, 413, `POST /api/dev/token with a ${body.length}-byte body`);
  });

  it('a preflight for /api/events in development mode allows the origin', async () => {
    const pre = await request(ctx.sb.url + '/api/events', {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.ok(pre.status >= 200 && pre.status < 300, `preflight OPTIONS /api/events: HTTP ${pre.status} ${pre.text}`);
    assertAllowsOrigin(pre, ORIGIN, 'preflight OPTIONS /api/events');
    const res = await post(valid, { authorization: `Bearer ${KEY}`, origin: ORIGIN });
    assert.equal(res.status, 202);
    assertAllowsOrigin(res, ORIGIN, 'POST /api/events');
  });

  it('a wrong method on /api/events is a JSON error', async () => {
    const res = await request(ctx.sb.url + '/api/events', { headers: { authorization: `Bearer ${KEY}` } });
    assert.ok(res.status === 404 || res.status === 405, `GET /api/events: HTTP ${res.status}`);
    assertJSONError(res, res.status, 'GET /api/events');
  });
});

describe('push API with the default MAX_PAYLOAD_BYTES (1000000)', () => {
  const KEY = 'test-key-default';
  const ctx = serverSuite({ API_KEY: KEY });
  const post = (body) => request(ctx.sb.url + '/api/events', {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body,
  });

  it('1000000 bytes gets 202, 1000001 bytes gets a 413 JSON error', async () => {
    const ok = await post(paddedEventsBody(1000000));
    assert.equal(ok.status, 202, `1000000-byte body: HTTP ${ok.status} ${ok.text.slice(0, 200)}`);
    assert.deepEqual(ok.json(), { users: 1 });
    assertJSONError(await post(paddedEventsBody(1000001)), 413, '1000001-byte body');
  });
});

describe('production mode (JWT_SECRET, API_KEY, CORS_ORIGINS=http://a.test)', () => {
  const KEY = 'prod-key';
  const ctx = serverSuite({ JWT_SECRET: 'prod-secret', API_KEY: KEY, CORS_ORIGINS: 'http://a.test' });

  it('POST /api/dev/token is a 404 JSON error when JWT_SECRET is set and DEV_TOKENS unset', async () => {
    const res = await request(ctx.sb.url + '/api/dev/token', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"alice"}',
    });
    assertJSONError(res, 404, 'POST /api/dev/token');
  });

  it('CORS: the listed origin is allowed, another origin gets no permissive header', async () => {
    const u = ctx.sb.url;
    const preflight = (origin) => request(u + '/api/events', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    const handshake = (origin) => request(u + '/socket.io/?EIO=4&transport=polling', { headers: { origin } });
    const push = (origin) => request(u + '/api/events', {
      method: 'POST', headers: { origin, 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: '{"users":["u"],"event":"e"}',
    });
    const good = 'http://a.test';
    const evil = 'http://evil.test';

    const pre = await preflight(good);
    assert.ok(pre.status >= 200 && pre.status < 300, `preflight from ${good}: HTTP ${pre.status}`);
    assert.equal(pre.headers['access-control-allow-origin'], good, 'preflight OPTIONS /api/events from the listed origin');
    const hs = await handshake(good);
    assert.equal(hs.status, 200, hs.text);
    assert.equal(hs.headers['access-control-allow-origin'], good, 'polling handshake from the listed origin');
    const ok = await push(good);
    assert.equal(ok.status, 202, ok.text);
    assert.equal(ok.headers['access-control-allow-origin'], good, 'POST /api/events from the listed origin');

    assertNoPermissiveOrigin(await preflight(evil), evil, 'preflight OPTIONS /api/events');
    assertNoPermissiveOrigin(await handshake(evil), evil, 'polling handshake');
    assertNoPermissiveOrigin(await push(evil), evil, 'POST /api/events');
    assertNoPermissiveOrigin(await request(u + '/healthz', { headers: { origin: evil } }), evil, 'GET /healthz');
    assertNoPermissiveOrigin(await request(u + '/api/whoami', { headers: { origin: evil } }), evil, 'GET /api/whoami');
  });
});

describe('DEV_TOKENS=1 with JWT_SECRET set', () => {
  const SECRET = 'dev-tokens-secret';
  const ctx = serverSuite({ JWT_SECRET: SECRET, DEV_TOKENS: '1' });

  it('POST /api/dev/token issues a token signed with JWT_SECRET', async () => {
    const res = await request(ctx.sb.url + '/api/dev/token', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"bob"}',
    });
    assert.equal(res.status, 200, res.text);
    const { token } = res.json();
    const [h, p, s] = token.split('.');
    assert.equal(decodeJWTPart(h).alg, 'HS256');
    assert.equal(decodeJWTPart(p).sub, 'bob');
    assert.equal(s, createHmac('sha256', SECRET).update(`${h}.${p}`).digest('base64url'), 'signature made with JWT_SECRET');
    const socket = await connectSocket(io, ctx.sb.url + '/socket', { auth: { token } });
    socket.close();
  });
});

describe('DEV_TOKENS=0 in development mode', () => {
  const ctx = serverSuite({ DEV_TOKENS: '0' });

  it('POST /api/dev/token is a 404 JSON error', async () => {
    const res = await request(ctx.sb.url + '/api/dev/token', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"alice"}',
    });
    assertJSONError(res, 404, 'POST /api/dev/token with DEV_TOKENS=0');
  });
});

describe('GET /metrics', () => {
  const ctx = serverSuite({});

  it('is Prometheus text with HELP/TYPE for every switchboard_* family', async () => {
    const m = await scrape(ctx.sb.url);
    assert.match(String(m.res.headers['content-type']),
      /^(text\/plain; ?version=0\.0\.4|application\/openmetrics-text)/, 'content-type');
    const ours = m.samples.filter((s) => s.name.startsWith('switchboard_'));
    for (const s of ours) {
      assert.ok(s.family, `sample ${s.name} has a # TYPE line`);
      assert.ok(m.help.has(s.family), `family ${s.family} has a # HELP line`);
    }
    const families = [...m.types.keys()].filter((n) => n.startsWith('switchboard_'));
    assert.ok(families.some((n) => /(adapter|redis|broadcast|publish)/.test(n) && /(error|fail)/.test(n)),
      `an adapter errors metric among ${families.join(', ')}`);
  });

  it('counts sendMessage/ok and tracks connected sockets (1, 2, then 0)', async () => {
    const u = ctx.sb.url;
    const before0 = await scrape(u);
    const isOkSend = (s, types) => s.name.startsWith('switchboard_') && Object.values(s.labels).includes('sendMessage')
      && Object.values(s.labels).includes('ok') && types.get(s.family) === 'counter';
    const okBefore = new Map(before0.samples.filter((s) => isOkSend(s, before0.types)).map((s) => [labelKey(s), s.value]));
    const gaugesBefore = new Map(before0.samples.filter((s) => s.name.startsWith('switchboard_')).map((s) => [labelKey(s), s.value]));

    const alice = await connectSocket(io, u + '/socket', { auth: { token: await devToken(u, 'm-alice') } });
    let bob;
    try {
      // The gauge: a switchboard_* gauge (name about sockets/connections) at 0
      // (or absent) before and 1 now.
      const gauge = await pollUntil(async () => {
        const m = await scrape(u);
        return m.samples.find((s) => s.name.startsWith('switchboard_') && m.types.get(s.family) === 'gauge'
          && /sock|conn|client/.test(s.name) && s.value === 1 && (gaugesBefore.get(labelKey(s)) ?? 0) === 0);
      }, { what: 'a connected-sockets gauge at 1' });
      const gaugeValue = async () => (await scrape(u)).samples.find((s) => labelKey(s) === labelKey(gauge))?.value;

      bob = await connectSocket(io, u + '/socket', { auth: { token: await devToken(u, 'm-bob') } });
      await pollUntil(async () => (await gaugeValue()) === 2, { what: `${gauge.name} at 2 with two sockets` });

      const inbox = collect(bob);
      const ack = await new Promise((resolve) => alice.emit('sendMessage', { to: 'm-bob', text: 'count me' }, resolve));
      assert.equal(ack.ok, true, JSON.stringify(ack));
      await inbox.next((m) => m && m.event === 'message_sent');
      const sample = await pollUntil(async () => {
        const m = await scrape(u);
        return m.samples.find((s) => isOkSend(s, m.types) && s.value === (okBefore.get(labelKey(s)) ?? 0) + 1);
      }, { what: 'the events counter for sendMessage/ok to increase by 1' });
      assert.ok(sample.name.startsWith('switchboard_'));
      // Deliveries: a switchboard_*deliver* counter family that grew.
      const deliveries = (m) => m.samples.filter((s) => s.name.startsWith('switchboard_') && /deliver/.test(s.name)
        && m.types.get(s.family) === 'counter').reduce((sum, s) => sum + s.value, 0);
      await pollUntil(async () => deliveries(await scrape(u)) > deliveries(before0),
        { what: 'a switchboard_*deliver* counter to count the message_sent deliveries' });

      alice.close();
      bob.close();
      await pollUntil(async () => (await gaugeValue()) === 0, { what: `${gauge.name} back at 0 after the sockets closed` });
    } finally {
      alice.close();
      bob?.close();
    }
  });
});

describe('GET /readyz with REDIS_URL where nothing listens yet', () => {
  let redisPort;
  let redis;
  const ctx = { sb: null };
  before(async () => {
    redisPort = await freePort();
    // SHUTDOWN_TIMEOUT is short only to keep the suite fast: with Redis down
    // the drain can run to its end.
    ctx.sb = await startSwitchboard({ env: { REDIS_URL: `redis://127.0.0.1:${redisPort}/0`, SHUTDOWN_TIMEOUT: '2s' } });
  });
  after(async () => {
    try {
      if (ctx.sb) {
        const code = await stopSwitchboard(ctx.sb);
        assertLogLines(ctx.sb.lines, 'stderr after SIGTERM');
        assert.equal(code, 0, 'exit code after SIGTERM');
      }
    } finally {
      await redis?.stop();
    }
  });

  it('serves with /healthz 200 and /readyz 503 naming the reason, then 200 once Redis runs, 503 again when it dies', async () => {
    const u = ctx.sb.url;
    const health = await request(u + '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(health.json(), { status: 'ok' });

    const notReady = await request(u + '/readyz');
    assert.equal(notReady.status, 503, `readyz without Redis: ${notReady.text}`);
    assert.match(String(notReady.headers['content-type']), /^application\/json/);
    const body = notReady.json();
    assert.ok(body && typeof body === 'object' && !Array.isArray(body), `readyz 503 body is a JSON object: ${notReady.text}`);
    assert.match(JSON.stringify(body), /redis/i, `readyz 503 body names the reason (Redis): ${notReady.text}`);

    redis = await startRedis({ port: redisPort });
    await pollUntil(async () => (await request(u + '/readyz')).status === 200, { timeoutMs: 30000, what: '/readyz 200 after Redis started' });
    assert.equal((await request(u + '/healthz')).status, 200);

    await redis.kill();
    const again = await pollUntil(async () => {
      const r = await request(u + '/readyz');
      return r.status === 503 ? r : null;
    }, { timeoutMs: 30000, what: '/readyz 503 after Redis died' });
    assert.match(JSON.stringify(again.json()), /redis/i, `readyz 503 names the reason: ${again.text}`);
    assert.equal((await request(u + '/healthz')).status, 200, '/healthz stays 200 while Redis is down');
    assertLogLines(ctx.sb.lines);
  });
});
