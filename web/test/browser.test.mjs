// The demo page in a real browser (Debian chromium via playwright-core)
// against two switchboard processes sharing one real Redis.
//
//   cd web && node --test test/browser.test.mjs
//   UPDATE_SCREENSHOT=1 node --test test/browser.test.mjs   # also refreshes web/screenshot.png
//
// Screenshots of the key steps go to a fresh temporary folder; their paths
// are printed.
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, signToken, startRedis, startSwitchboard } from './lib/harness.mjs';
import {
  horizontalOverflow, launchChromium, lowContrast, nodeShown, screenshotDir, send, shoot, signIn, startBalancer, tid,
  transportShown, waitMessage,
} from './lib/browser.mjs';

const LAPTOP = { viewport: { width: 1280, height: 860 } };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

let redis; let p1; let p2; let browser; let balancer; let shots;
const cleanups = [];

before(async () => {
  browser = await launchChromium(); // fails with "apt-get install -y chromium" when missing
  cleanups.push(() => browser.close());
  redis = await startRedis();
  cleanups.push(() => redis.stop());
  const env = { REDIS_URL: redis.url, JWT_SECRET: 'browser-test-secret', DEV_TOKENS: '1' };
  p1 = await startSwitchboard({ env: { ...env, NODE_ID: 'switchboard-1' } });
  cleanups.push(() => p1.stop('SIGKILL'));
  p2 = await startSwitchboard({ env: { ...env, NODE_ID: 'switchboard-2' } });
  cleanups.push(() => p2.stop('SIGKILL'));
  assert.notEqual(p1.node, p2.node, 'the two processes report different node ids');
  shots = screenshotDir();
  console.log(`screenshots folder: ${shots}`);
});

after(async () => {
  for (const c of cleanups.reverse()) {
    try { await c(); } catch (e) { console.error('cleanup:', e.message); }
  }
});

// open gives a new page (own browser context, so own cookies and storage) on url.
async function open(url, device = LAPTOP, setup) {
  const ctx = await browser.newContext(device);
  cleanups.push(() => ctx.close());
  if (setup) await setup(ctx);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`page error on ${url}: ${e.message}`));
  await page.goto(url);
  return page;
}

const messageCopies = (page, text) => page.$$eval(tid('message'), (lis, t) => lis
  .filter((li) => li.querySelector('[data-testid="message-text"]').textContent === t)
  .map((li) => Number(li.dataset.copies)), text);

test('one user on two processes (laptop and phone) and another user: messages, mentions, errors', async () => {
  const laptop = await open(`${p1.url}/`);
  const phone = await open(`${p2.url}/`, PHONE);

  // The sign-in page fits a phone.
  assert.deepEqual(await horizontalOverflow(phone), [], 'nothing overflows 390px on the sign-in page');
  await shoot(phone, shots, '01-phone-sign-in');

  await signIn(laptop, 'alice');
  await signIn(phone, 'alice');
  // bob uses only the keyboard: type the name, press Enter.
  const bob = await open(`${p2.url}/`);
  await bob.focus(tid('user-input'));
  await bob.keyboard.type('bob');
  await bob.keyboard.press('Enter');
  await bob.waitForSelector(`${tid('status')}[data-state="connected"]`);
  await bob.waitForFunction(() => document.querySelector('[data-testid="node"]').dataset.node);

  // Every form control has a label; the page has its landmarks.
  assert.deepEqual(await bob.$$eval('input, textarea', (els) => els.filter((e) => e.labels.length === 0).map((e) => e.id)), []);
  assert.deepEqual(await bob.$$eval('header[role=banner], main, footer[role=contentinfo]', (els) => els.length), 3);

  // Each page shows the process that answered it.
  assert.equal(await nodeShown(laptop), p1.node);
  assert.equal(await nodeShown(phone), p2.node);
  assert.equal(await nodeShown(bob), p2.node);
  assert.equal(await laptop.textContent(tid('page-node-id')), p1.node);

  // A sends from the laptop (process 1): B and A's phone (process 2) show it.
  const hello = 'Hello Bob, this is Alice on her laptop';
  await send(laptop, 'bob', hello);
  const atBob = await waitMessage(bob, hello, 'in');
  assert.equal(atBob.from, 'alice');
  assert.equal(atBob.to, 'bob');
  const atPhone = await waitMessage(phone, hello, 'out');
  assert.equal(atPhone.via, 'delivery');
  const atLaptop = await waitMessage(laptop, hello, 'out');
  assert.equal(atLaptop.via, 'ack', 'the sending device shows its message from the ack');
  assert.equal(atLaptop.id, atBob.id, 'one message id everywhere');
  assert.equal(atPhone.id, atBob.id);
  assert.match(await laptop.textContent(tid('send-result')), /Sent to bob/);

  // B replies (Reply button, then Enter in the text box): both of A's devices show it.
  const reply = 'Hi Alice! Bob here, replying from process 2';
  await bob.click(`${tid('message')}[data-direction="in"] button`);
  assert.equal(await bob.inputValue(tid('to-input')), 'alice');
  await bob.keyboard.type(reply); // the Reply button moved the focus to the text box
  await bob.keyboard.press('Enter');
  assert.equal((await waitMessage(laptop, reply, 'in')).from, 'bob');
  assert.equal((await waitMessage(phone, reply, 'in')).from, 'bob');
  // Each device got each message exactly once (a repeated delivery would count 2).
  assert.deepEqual(await messageCopies(laptop, hello), [1]);
  assert.deepEqual(await messageCopies(phone, hello), [1]);
  assert.deepEqual(await messageCopies(bob, hello), [1]);
  assert.deepEqual(await messageCopies(phone, reply), [1]);

  // A mentions B in a post: B gets a notification.
  await laptop.fill(tid('post-id'), 'launch-plan');
  await laptop.fill(tid('mentions'), 'bob, carol');
  await laptop.click(tid('post-send'));
  await laptop.waitForSelector(`${tid('post-result')}[data-state="ok"]`);
  assert.match(await laptop.textContent(tid('post-result')), /Notified 2 people/);
  const note = await bob.waitForSelector(`${tid('notification')}[data-post-id="launch-plan"]`);
  assert.equal(await note.getAttribute('data-by'), 'alice');
  // and B mentions A back: both of A's devices are notified.
  await bob.fill(tid('post-id'), 'release-notes');
  await bob.fill(tid('mentions'), 'alice');
  await bob.click(tid('post-send'));
  for (const page of [laptop, phone]) {
    const n = await page.waitForSelector(`${tid('notification')}[data-post-id="release-notes"]`);
    assert.equal(await n.getAttribute('data-by'), 'bob');
  }

  // Errors reach the user: an empty text is refused by the server (invalid_args).
  await send(laptop, 'bob', '');
  await laptop.waitForSelector(`${tid('error')}[data-code="invalid_args"]`);
  assert.equal(await laptop.getAttribute(tid('send-result'), 'data-state'), 'error');
  assert.match(await laptop.textContent(tid('send-result')), /invalid_args/);
  assert.equal(await laptop.getAttribute(tid('status'), 'data-state'), 'connected', 'an error does not close the socket');

  // The phone layout shows the conversation without horizontal overflow.
  await phone.waitForSelector(`${tid('notification')}[data-post-id="release-notes"]`);
  assert.deepEqual(await horizontalOverflow(phone), [], 'nothing overflows 390px with messages shown');

  // Text is readable: WCAG AA contrast everywhere on both layouts.
  assert.deepEqual(await lowContrast(laptop), [], 'contrast on the laptop page');
  assert.deepEqual(await lowContrast(phone), [], 'contrast on the phone page');

  const key = await shoot(laptop, shots, '02-laptop-alice-process-1');
  await shoot(phone, shots, '03-phone-alice-process-2');
  await shoot(bob, shots, '04-laptop-bob-process-2');
  if (process.env.UPDATE_SCREENSHOT === '1') {
    copyFileSync(key, path.join(ROOT, 'web', 'screenshot.png'));
    console.log(`updated ${path.join(ROOT, 'web', 'screenshot.png')}`);
  }

  // User text is shown as text, never parsed as HTML.
  const markup = '<img src=x onerror="window.__xss=1"> <b>bold?</b>';
  await send(bob, 'alice', markup);
  await waitMessage(phone, markup, 'in');
  assert.equal(await phone.$$eval(`${tid('messages')} img, ${tid('messages')} b`, (els) => els.length), 0);
  assert.equal(await phone.evaluate(() => window.__xss), undefined);
});

test('a burst over the rate limit is shown as rate_limited and the socket stays up', async () => {
  const carol = await open(`${p1.url}/`, PHONE);
  await signIn(carol, 'carol');
  await carol.fill(tid('to-input'), 'nobody');
  await carol.fill(tid('text-input'), 'burst');
  // 50 sends in one go: the bucket (RATE_BURST 40 by default) runs dry.
  await carol.evaluate(() => {
    const form = document.getElementById('send-form');
    for (let i = 0; i < 50; i++) form.requestSubmit();
  });
  const err = await carol.waitForSelector(`${tid('error')}[data-code="rate_limited"]`);
  assert.match(await err.textContent(), /sendMessage/);
  await carol.waitForFunction(() => document.querySelectorAll('[data-testid="message"]').length > 0);
  assert.equal(await carol.getAttribute(tid('status'), 'data-state'), 'connected');
  assert.deepEqual(await horizontalOverflow(carol), [], 'nothing overflows 390px with errors shown');
  await shoot(carol, shots, '05-phone-rate-limited');
});

test('a token the server refuses is shown as a connect error', async () => {
  // The page receives a token signed with another secret (as if issued by a
  // different cluster) in place of the dev token; the server refuses it.
  const foreign = signToken('not-this-clusters-secret', { sub: 'mallory', exp: Math.floor(Date.now() / 1000) + 600 });
  const page = await open(`${p2.url}/`, PHONE, (ctx) => ctx.route('**/api/dev/token', (route) => route.fulfill({
    status: 200, contentType: 'application/json', body: JSON.stringify({ token: foreign }),
  })));
  await page.fill(tid('user-input'), 'mallory');
  await page.click(tid('join'));
  const err = await page.waitForSelector(`${tid('error')}[data-code="invalid_token"]`);
  assert.match(await err.textContent(), /unauthorized/);
  assert.equal(await page.getAttribute(tid('status'), 'data-state'), 'disconnected');
  assert.match(await page.textContent(tid('conn-detail')), /unauthorized \(invalid_token\)/);
});

test('websocket blocked: the page stays on HTTP long-polling and still delivers', async () => {
  // dave's browser cannot open websockets at all (every attempt is closed by
  // the browser's network layer), so the client's upgrade probe fails.
  let wsBlocked = 0;
  const dave = await open(`${p1.url}/`, LAPTOP, (ctx) => ctx.routeWebSocket(/\/socket\.io\//, (ws) => {
    wsBlocked++;
    ws.close({ code: 1011, reason: 'websocket blocked by the test' });
  }));
  // erin's page is told to use polling only (?transports=polling): it must
  // not even try a websocket (counted here, but let through).
  let erinWs = 0;
  const erin = await open(`${p2.url}/?transports=polling`, PHONE, (ctx) => ctx.routeWebSocket(/.*/, (ws) => {
    erinWs++;
    ws.connectToServer();
  }));
  await signIn(dave, 'dave');
  await signIn(erin, 'erin');
  await dave.waitForSelector(`${tid('upgrade')}[data-upgrade="failed"]`);
  assert.ok(wsBlocked >= 1, 'the page tried a websocket and it was blocked');
  assert.equal(await erin.getAttribute(tid('upgrade'), 'data-upgrade'), 'none');

  await send(dave, 'erin', 'over long-polling, from process 1');
  await waitMessage(erin, 'over long-polling, from process 1', 'in');
  await send(erin, 'dave', 'long-polling back, from process 2');
  await waitMessage(dave, 'long-polling back, from process 2', 'in');

  assert.equal(await transportShown(dave), 'polling');
  assert.equal(await transportShown(erin), 'polling');
  assert.equal(erinWs, 0, 'a polling-only page opens no websocket');
  await shoot(dave, shots, '06-laptop-websocket-blocked');
});

test('restarting the process behind a page (SIGTERM, then started again): it shows recovered, and nothing sent meanwhile is lost', async () => {
  // A third process, restarted on its port the way a deploy does it, behind
  // a balancer the page talks to.
  const env = { REDIS_URL: redis.url, JWT_SECRET: 'browser-test-secret', DEV_TOKENS: '1' };
  let p3 = await startSwitchboard({ env: { ...env, NODE_ID: 'switchboard-3' } });
  cleanups.push(() => p3.stop('SIGKILL'));
  const lb = await startBalancer(p3.port);
  cleanups.push(() => lb.close());
  const henry = await open(`${lb.url}/`);
  const ivy = await open(`${p2.url}/`, PHONE);
  await signIn(henry, 'henry');
  await signIn(ivy, 'ivy');
  assert.equal(await henry.getAttribute(tid('session'), 'data-session'), 'new');
  await send(ivy, 'henry', 'before the restart');
  await waitMessage(henry, 'before the restart', 'in');

  assert.equal(await p3.stop('SIGTERM'), 0, 'the process exits 0');
  await henry.waitForSelector(`${tid('status')}[data-state="reconnecting"]`);
  const away = ['sent during the restart 1', 'sent during the restart 2', 'sent during the restart 3'];
  for (const text of away) {
    await send(ivy, 'henry', text);
    await ivy.waitForFunction((t) => [...document.querySelectorAll('[data-testid="message"]')]
      .some((li) => li.querySelector('[data-testid="message-text"]').textContent === t && li.dataset.direction === 'out'), text);
  }
  p3 = await startSwitchboard({ port: p3.port, env: { ...env, NODE_ID: 'switchboard-3-again' } });
  await henry.waitForSelector(`${tid('status')}[data-state="connected"]`);
  await henry.waitForSelector(`${tid('session')}[data-session="recovered"]`);
  assert.equal(await henry.textContent(tid('session')), 'recovered');
  assert.match(await henry.textContent(tid('conn-detail')), /recovered/);
  for (const text of away) await waitMessage(henry, text, 'in');
  await send(ivy, 'henry', 'after the restart');
  await waitMessage(henry, 'after the restart', 'in');
  for (const text of ['before the restart', ...away, 'after the restart']) {
    assert.deepEqual(await messageCopies(henry, text), [1], `"${text}" shown once, received once`);
  }
  assert.deepEqual(await horizontalOverflow(henry), []);
  await shoot(henry, shots, '07-laptop-recovered-after-restart');
});

test('killing the process behind a page: it shows reconnecting, then works on the other process', async () => {
  // The page is opened through a small TCP balancer in front of process 1,
  // the way a deployment would put one in front of the cluster; after the
  // kill the test points the balancer at process 2 and the page, which only
  // ever talks to its own origin, reconnects there by itself.
  balancer = await startBalancer(p1.port);
  cleanups.push(() => balancer.close());
  const frank = await open(`${balancer.url}/`);
  const grace = await open(`${p2.url}/`, PHONE);
  await signIn(frank, 'frank');
  await signIn(grace, 'grace');
  assert.equal(await nodeShown(frank), p1.node);

  await send(frank, 'grace', 'before the crash');
  await waitMessage(grace, 'before the crash', 'in');

  await p1.stop('SIGKILL');
  await frank.waitForSelector(`${tid('status')}[data-state="reconnecting"]`);
  // Wait until at least one reconnection attempt has failed against the dead process.
  await frank.waitForFunction(() => Number(document.querySelector('[data-testid="status"]').dataset.attempt) >= 2);
  assert.equal(await frank.textContent(tid('status-text')), 'Reconnecting…');
  assert.equal(await frank.textContent(tid('node-note')), 'last known');
  await shoot(frank, shots, '08-laptop-reconnecting');

  balancer.point(p2.port);
  await frank.waitForSelector(`${tid('status')}[data-state="connected"]`);
  await frank.waitForFunction((n) => document.querySelector('[data-testid="node"]').dataset.node === n, p2.node);
  assert.equal(await frank.textContent(tid('reconnects')), '1');
  assert.equal(await frank.textContent(tid('node-note')), '');
  // Killed (-9), its connected sessions are recovered from Redis all the same.
  assert.equal(await frank.getAttribute(tid('session'), 'data-session'), 'recovered');

  await send(frank, 'grace', 'after the crash, via process 2');
  await waitMessage(grace, 'after the crash, via process 2', 'in');
  await send(grace, 'frank', 'got it');
  await waitMessage(frank, 'got it', 'in');
  await shoot(frank, shots, '09-laptop-reconnected-process-2');
});
