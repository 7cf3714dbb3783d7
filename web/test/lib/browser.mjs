// Helpers for the browser test: Debian's chromium through playwright-core,
// a TCP "load balancer" the test can re-point, and page helpers for the demo
// page's data-testid hooks.
import { existsSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// launchChromium starts headless Debian chromium; no downloaded browser.
export async function launchChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

// startBalancer listens on a free loopback port and forwards every new TCP
// connection to the current target port (a layer-4 balancer with one
// backend). point(port) moves new connections to another backend; existing
// ones stay where they are until their backend goes away, then the client
// sees the connection close, as it would behind a real balancer.
export function startBalancer(targetPort) {
  let target = targetPort;
  const conns = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    conns.add(client); conns.add(upstream);
    const done = () => { client.destroy(); upstream.destroy(); conns.delete(client); conns.delete(upstream); };
    client.on('error', done); upstream.on('error', done);
    client.on('close', done); upstream.on('close', done);
    client.pipe(upstream); upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        get target() { return target; },
        point(p) { target = p; },
        // cut drops every connection open now, as a network change would.
        cut() { for (const c of conns) c.destroy(); },
        close() {
          for (const c of conns) c.destroy();
          return new Promise((res) => server.close(() => res()));
        },
      });
    });
  });
}

// Screenshots go to a fresh temporary folder; paths are printed.
export function screenshotDir() {
  return mkdtempSync(path.join(os.tmpdir(), 'switchboard-screens-'));
}

export async function shoot(page, dir, name) {
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
  return file;
}

// Page helpers. `tid` builds a data-testid selector.
export const tid = (id) => `[data-testid="${id}"]`;

export async function signIn(page, user) {
  await page.fill(tid('user-input'), user);
  await page.click(tid('join'));
  await page.waitForSelector(`${tid('status')}[data-state="connected"]`);
  // The process id is filled in after each (re)connect by GET /api/whoami.
  await page.waitForFunction(() => {
    const n = document.querySelector('[data-testid="node"]');
    return n && n.dataset.node;
  });
}

export async function send(page, to, text) {
  await page.fill(tid('to-input'), to);
  await page.fill(tid('text-input'), text);
  await page.click(tid('send'));
}

// waitMessage waits until the page lists a message with this text (and,
// when given, direction), and returns its data attributes.
export async function waitMessage(page, text, direction) {
  const handle = await page.waitForFunction(([t, d]) => {
    for (const li of document.querySelectorAll('[data-testid="message"]')) {
      const p = li.querySelector('[data-testid="message-text"]');
      if (p && p.textContent === t && (!d || li.dataset.direction === d)) return { ...li.dataset };
    }
    return null;
  }, [text, direction]);
  return handle.jsonValue();
}

export async function nodeShown(page) {
  return page.$eval(tid('node'), (el) => el.dataset.node);
}

export async function transportShown(page) {
  return page.$eval(tid('transport'), (el) => el.dataset.transport);
}

// horizontalOverflow lists elements wider than the viewport (none expected).
export function horizontalOverflow(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const bad = [];
    if (document.documentElement.scrollWidth > width) bad.push(`document scrollWidth ${document.documentElement.scrollWidth} > ${width}`);
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.right > width + 0.5 || r.left < -0.5) {
        // an element inside a scroll container may legitimately overflow it
        const style = getComputedStyle(el);
        if (style.position === 'absolute' && r.bottom < 0) continue; // the off-screen skip link
        bad.push(`${el.tagName.toLowerCase()}${el.dataset.testid ? `[${el.dataset.testid}]` : ''} ${Math.round(r.left)}..${Math.round(r.right)}`);
      }
    }
    return bad;
  });
}

// lowContrast lists visible text whose colour against its effective
// background is below WCAG AA (4.5:1; 3:1 for large text). Backgrounds are
// the nearest ancestor's opaque background colour (gradients and images are
// not considered; the page uses none behind text).
export function lowContrast(page) {
  return page.evaluate(() => {
    const parse = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a >= 0.99) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const bad = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el || !el.checkVisibility() || el.closest('.sr-only')) continue;
      const s = getComputedStyle(el);
      const fg = parse(s.color);
      const bg = background(el);
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      const size = parseFloat(s.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) bad.push(`"${n.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
    }
    return bad;
  });
}
