// Switchboard demo page. Plain browser JavaScript, no build step.
//
// It signs in with a development token (POST /api/dev/token), connects to the
// Socket.IO namespace /socket on the page's own origin, and shows what the
// cluster does: which process answered (GET /api/whoami and the
// X-Switchboard-Node header, fetched again on every (re)connect because a load
// balancer may move the page), the transport and its upgrade, reconnects,
// messages, mention notifications and errors.
//
// Query parameters:
//   ?user=NAME            prefill the user name
//   ?transports=polling   use only HTTP long-polling (no websocket at all);
//                         also "websocket" for websocket only
//
// Every piece of user data reaches the DOM through textContent or a property,
// never through innerHTML.
'use strict';

(function () {
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const params = new URLSearchParams(location.search);

  // h builds an element: h('li', {class: 'x', dataset: {a: 1}}, 'text', child).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'onclick') el.addEventListener('click', v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // ------------------------------------------------------------ state ---
  const state = {
    user: '',
    token: '',
    socket: null,
    reconnects: 0,
    connects: 0, // CONNECT replies, the first one included
    messageIds: new Map(), // message id -> its list item
    peers: new Set(),
    messages: 0,
    notifications: 0,
    lastError: null, // {key, el, count}
  };

  const transportsParam = (params.get('transports') || '').split(',').map((s) => s.trim())
    .filter((s) => s === 'polling' || s === 'websocket');

  // ------------------------------------------------------ node display ---
  // A stable colour per process id, so moving between processes is visible.
  function nodeHue(id) {
    let x = 0x811c9dc5; // FNV-1a, so ids differing in one character get far-apart hues
    for (const ch of id) x = Math.imul(x ^ ch.codePointAt(0), 0x01000193) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x45d9f3b) >>> 0; // mix the last character into every bit
    const hues = [230, 150, 330, 30, 190, 270, 100, 0, 55, 300]; // ten clearly different hues
    return hues[((x ^ (x >>> 16)) >>> 0) % hues.length];
  }

  function showNode(id) {
    const chip = $('node');
    $('node-id').textContent = id || 'unknown';
    chip.dataset.node = id || '';
    chip.style.setProperty('--node-hue', String(id ? nodeHue(id) : 0));
  }

  async function whoami() {
    try {
      const r = await fetch('/api/whoami', { cache: 'no-store' });
      const header = r.headers.get('X-Switchboard-Node');
      let body = null;
      try { body = await r.json(); } catch { /* not JSON */ }
      return (body && typeof body.node === 'string' && body.node) || header || '';
    } catch {
      return '';
    }
  }

  // ----------------------------------------------------------- status ---
  const STATE_TEXT = {
    'signed-out': 'Signed out',
    connecting: 'Connecting…',
    connected: 'Connected',
    reconnecting: 'Reconnecting…',
    disconnected: 'Disconnected',
  };

  function setState(s, detail) {
    const pill = $('status');
    pill.dataset.state = s;
    $('status-text').textContent = STATE_TEXT[s] || s;
    $('state').textContent = STATE_TEXT[s] || s;
    $('state').dataset.state = s;
    if (detail !== undefined) $('conn-detail').textContent = detail;
  }

  function showTransport() {
    const engine = state.socket && state.socket.io.engine;
    const live = state.socket && state.socket.connected;
    const name = live && engine && engine.transport ? engine.transport.name : '';
    const el = $('transport');
    el.textContent = name ? (name === 'websocket' ? 'WebSocket' : 'HTTP long-polling') : '—';
    el.dataset.transport = name;
  }

  // showSession says whether the last (re)connect recovered the session
  // (socket.recovered: the server kept it, and sent what was missed).
  function showSession(socket) {
    const el = $('session');
    const kind = state.connects <= 1 ? 'new' : socket.recovered ? 'recovered' : 'fresh';
    el.dataset.session = kind;
    el.textContent = { new: 'new', recovered: 'recovered', fresh: 'new (not recovered)' }[kind];
  }

  function setUpgrade(kind, text) {
    const el = $('upgrade');
    el.dataset.upgrade = kind;
    el.textContent = text;
  }

  // -------------------------------------------------------------- errors ---
  const ERROR_TEXT = {
    rate_limited: 'Slow down: too many events, this one was dropped.',
    invalid_args: 'The server refused the request as invalid.',
    unknown_event: 'The server does not know this event.',
    internal: 'The server failed to handle the request.',
    unauthorized: 'The server refused the sign-in.',
    missing_token: 'No token was sent.',
    invalid_token: 'The token is not valid for this server.',
    expired_token: 'The token has expired.',
  };

  // showError adds a problem to the list; the same problem repeated in a row
  // is shown once with a counter instead of flooding the list.
  function showError(code, message, context) {
    const card = $('errors-card');
    card.hidden = false;
    const key = `${code}|${context || ''}|${message || ''}`;
    const now = new Date();
    if (state.lastError && state.lastError.key === key && state.lastError.el.isConnected) {
      state.lastError.count++;
      const badge = state.lastError.el.querySelector('.repeat');
      badge.textContent = `×${state.lastError.count}`;
      badge.hidden = false;
      state.lastError.el.dataset.count = String(state.lastError.count);
      const t = state.lastError.el.querySelector('time');
      t.dateTime = now.toISOString();
      t.textContent = now.toLocaleTimeString();
      return;
    }
    const el = h('li', { class: 'error-item', dataset: { testid: 'error', code, count: '1' } },
      h('div', { class: 'error-head' },
        h('strong', { class: 'code' }, code),
        context ? h('span', { class: 'context' }, `on ${context}`) : null,
        h('span', { class: 'repeat', hidden: true }, ''),
        h('time', { datetime: now.toISOString() }, now.toLocaleTimeString())),
      h('p', {}, ERROR_TEXT[code] || 'Something went wrong.'),
      message ? h('p', { class: 'detail' }, message) : null);
    $('errors').append(el);
    while ($('errors').children.length > 20) $('errors').firstElementChild.remove();
    state.lastError = { key, el, count: 1 };
  }

  // ------------------------------------------------------------ messages ---
  function fmtTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function addPeer(name) {
    if (!name || name === state.user || state.peers.has(name)) return;
    state.peers.add(name);
    const opt = document.createElement('option');
    opt.value = name;
    document.getElementById('peers').append(opt);
  }

  // addMessage renders a message once (by id). via: 'ack' (sent from this
  // device), 'delivery' (received or sent from another device).
  function addMessage(msg, via) {
    if (!msg || typeof msg !== 'object') return;
    const seen = state.messageIds.get(msg.id);
    if (seen) { // shown once; a repeated delivery is only counted (data-copies)
      seen.dataset.copies = String(Number(seen.dataset.copies) + 1);
      return;
    }
    const mine = msg.from === state.user;
    let direction; let label;
    if (mine && msg.to === state.user) { direction = 'self'; label = 'Note to self'; }
    else if (mine) { direction = 'out'; label = `To ${msg.to}`; }
    else { direction = 'in'; label = `From ${msg.from}`; }
    const origin = mine ? (via === 'ack' ? 'sent from this device' : 'sent from another device') : 'received';
    addPeer(mine ? msg.to : msg.from);

    const reply = direction === 'in'
      ? h('button', {
        type: 'button', class: 'btn link small', 'aria-label': `Reply to ${msg.from}`,
        onclick: () => { $('to-input').value = msg.from; $('text-input').focus(); },
      }, 'Reply')
      : null;
    const li = h('li', {
      class: `msg msg-${direction}`,
      dataset: { testid: 'message', id: String(msg.id), from: String(msg.from), to: String(msg.to), direction, via, copies: '1' },
    },
    h('div', { class: 'msg-meta' },
      h('span', { class: 'msg-who' }, label),
      h('span', { class: 'msg-origin' }, origin),
      h('time', { datetime: String(msg.sentAt || '') }, fmtTime(msg.sentAt))),
    h('p', { class: 'msg-text', dataset: { testid: 'message-text' } }, String(msg.text)),
    reply);
    state.messageIds.set(msg.id, li);
    state.messages = pushItem('messages', li, 200, false, state.messages);
  }

  // pushItem adds li to a list (at the end, or first when newestFirst), keeps
  // at most max items, updates the visible counter and hides the empty note.
  function pushItem(listId, li, max, newestFirst, count) {
    const list = $(listId);
    if (newestFirst) list.prepend(li); else list.append(li);
    while (list.children.length > max) (newestFirst ? list.lastElementChild : list.firstElementChild).remove();
    $(`${listId}-empty`).hidden = true;
    $(`${listId.replace(/s$/, '')}-count`).textContent = String(count + 1);
    if (!newestFirst) list.scrollTop = list.scrollHeight;
    return count + 1;
  }

  function addNotification(title, body, data) {
    const now = new Date();
    const li = h('li', { class: 'note', dataset: { testid: 'notification', ...data } },
      h('div', { class: 'note-head' },
        h('strong', {}, title),
        h('time', { datetime: now.toISOString() }, now.toLocaleTimeString())),
      body ? h('p', {}, body) : null);
    state.notifications = pushItem('notifications', li, 100, true, state.notifications);
  }

  // Every delivery is the event `message` with {event, id, args}.
  function onDelivery(d) {
    if (!d || typeof d !== 'object') return;
    const args = d.args;
    switch (d.event) {
      case 'message_sent':
        addMessage(args, 'delivery');
        break;
      case 'post_updated_notification':
        if (args && typeof args === 'object') {
          addNotification(`Mentioned in post ${args.postId}`, args.message ? String(args.message) : `${args.by} mentioned you`,
            { kind: 'mention', postId: String(args.postId), by: String(args.by) });
          addPeer(String(args.by));
        }
        break;
      case 'error':
        showError(args && args.code ? String(args.code) : 'internal', args && args.message ? String(args.message) : '',
          args && args.event ? String(args.event) : '');
        break;
      default: // events pushed through POST /api/events
        addNotification(`Event ${d.event}`, args === undefined ? '' : JSON.stringify(args),
          { kind: 'event', event: String(d.event) });
    }
  }

  // ---------------------------------------------------------- sending ---
  function route(event, args) {
    return new Promise((resolve) => {
      const s = state.socket;
      if (!s || !s.connected) {
        resolve({ ok: false, error: { code: 'disconnected', message: 'Not connected; try again once the page reconnects.' } });
        return;
      }
      s.timeout(10000).emit('message', { event, args }, (err, reply) => {
        if (err) resolve({ ok: false, error: { code: 'timeout', message: 'The server did not answer in time.' } });
        else resolve(reply);
      });
    });
  }

  function failure(reply, event) {
    const e = (reply && reply.error) || {};
    const code = String(e.code || 'internal');
    showError(code, e.message ? String(e.message) : '', event);
    return `${code}${e.message ? `: ${e.message}` : ''}`;
  }

  async function onSend(ev) {
    ev.preventDefault();
    const to = $('to-input').value.trim();
    const text = $('text-input').value;
    const result = $('send-result');
    result.dataset.state = 'pending';
    result.textContent = 'Sending…';
    const reply = await route('sendMessage', { to, text });
    if (reply && reply.ok) {
      addMessage(reply.message, 'ack');
      $('text-input').value = '';
      result.dataset.state = 'ok';
      result.textContent = `Sent to ${reply.message.to}.`;
    } else {
      result.dataset.state = 'error';
      result.textContent = `Not sent: ${failure(reply, 'sendMessage')}`;
    }
  }

  async function onPost(ev) {
    ev.preventDefault();
    const postId = $('post-id').value.trim();
    const mentions = $('mentions').value.split(',').map((s) => s.trim()).filter(Boolean);
    const result = $('post-result');
    result.dataset.state = 'pending';
    result.textContent = 'Notifying…';
    const reply = await route('postUpdated', { postId, mentions });
    if (reply && reply.ok) {
      result.dataset.state = 'ok';
      result.textContent = `Notified ${reply.notified} ${reply.notified === 1 ? 'person' : 'people'}.`;
      mentions.forEach(addPeer);
    } else {
      result.dataset.state = 'error';
      result.textContent = `Not sent: ${failure(reply, 'postUpdated')}`;
    }
  }

  // -------------------------------------------------------- connection ---
  async function getToken(user) {
    const r = await fetch('/api/dev/token', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user }),
    });
    let body = null;
    try { body = await r.json(); } catch { /* not JSON */ }
    if (r.status === 404) throw new Error('This server has development tokens turned off (DEV_TOKENS).');
    if (!r.ok || !body || typeof body.token !== 'string') {
      throw new Error((body && body.error && body.error.message) || `The token request failed (HTTP ${r.status}).`);
    }
    return body.token;
  }

  function watchEngine(engine) {
    showTransport();
    if (transportsParam.length === 1) {
      setUpgrade('none', `none (${transportsParam[0]} only)`);
    } else if (engine.transport && engine.transport.name === 'websocket') {
      setUpgrade('upgraded', 'polling → WebSocket');
    } else {
      setUpgrade('pending', 'trying WebSocket…');
    }
    engine.on('upgrade', () => { showTransport(); setUpgrade('upgraded', 'polling → WebSocket'); });
    engine.on('upgradeError', () => {
      showTransport();
      setUpgrade('failed', 'WebSocket unavailable, staying on polling');
    });
  }

  let refreshedToken = false;

  function connect() {
    const opts = {
      auth: (cb) => cb({ token: state.token }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
      timeout: 10000,
    };
    if (transportsParam.length) opts.transports = transportsParam;
    const socket = io('/socket', opts);
    state.socket = socket;
    setState('connecting', '');

    socket.io.on('open', () => watchEngine(socket.io.engine));
    socket.io.on('reconnect_attempt', (n) => {
      $('status').dataset.attempt = String(n);
      setState('reconnecting', `Attempt ${n}…`);
    });
    socket.io.on('reconnect', () => {
      state.reconnects++;
      $('reconnects').textContent = String(state.reconnects);
    });
    socket.io.on('reconnect_error', (err) => {
      $('conn-detail').textContent = `Cannot reach the server (${err && err.message ? err.message : 'error'}); retrying.`;
    });

    socket.on('connect', async () => {
      refreshedToken = false;
      delete $('status').dataset.attempt;
      state.connects++;
      showSession(socket);
      setState('connected', state.connects === 1 ? '' : socket.recovered
        ? 'Reconnected and recovered: the messages sent while you were away follow.'
        : 'Reconnected with a new session: messages sent while you were away are not shown.');
      showTransport();
      const node = await whoami();
      if (socket.connected) { showNode(node); $('node-note').textContent = ''; }
    });
    socket.on('disconnect', (reason) => {
      showTransport();
      $('node-note').textContent = 'last known';
      if (socket.active) setState('reconnecting', `Connection lost (${reason}).`);
      else setState('disconnected', reason === 'io client disconnect' ? 'You disconnected.' : `The server closed the connection (${reason}).`);
    });
    socket.on('connect_error', async (err) => {
      const reason = err && err.data && err.data.reason ? String(err.data.reason) : '';
      if (socket.active) { // transport-level failure: the manager retries by itself
        setState('reconnecting', `Cannot reach the server (${err.message}); retrying.`);
        return;
      }
      if (reason === 'expired_token' && !refreshedToken) { // fetch a new token once, then retry
        refreshedToken = true;
        try { state.token = await getToken(state.user); socket.connect(); return; } catch { /* shown below */ }
      }
      setState('disconnected', `Refused: ${err.message}${reason ? ` (${reason})` : ''}.`);
      showError(reason || String(err.message || 'connect_error'), err.message ? String(err.message) : '', 'connect');
    });
    socket.on('message', onDelivery);
  }

  async function onSignin(ev) {
    ev.preventDefault();
    const input = $('user-input');
    const errEl = $('signin-error');
    const user = input.value.trim();
    errEl.hidden = true;
    input.removeAttribute('aria-invalid');
    if (!user) {
      errEl.textContent = 'Enter a user name.';
      errEl.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    const button = $('join');
    button.disabled = true;
    try {
      state.token = await getToken(user);
    } catch (e) {
      errEl.textContent = e.message;
      errEl.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      button.disabled = false;
      return;
    }
    button.disabled = false;
    state.user = user;
    $('me').textContent = user;
    document.title = `${user} · Switchboard`;
    document.querySelector('.app h1').textContent = `Chat as ${user}`;
    $('signin').hidden = true;
    $('app').hidden = false;
    connect();
    $('to-input').focus();
  }

  function signOut() {
    if (state.socket) { state.socket.removeAllListeners(); state.socket.io.removeAllListeners(); state.socket.disconnect(); }
    Object.assign(state, { socket: null, user: '', token: '', reconnects: 0, connects: 0, messages: 0, notifications: 0, lastError: null });
    state.messageIds.clear();
    state.peers.clear();
    for (const id of ['messages', 'notifications', 'errors']) $(id).replaceChildren();
    document.getElementById('peers').replaceChildren();
    $('message-count').textContent = '0';
    $('notification-count').textContent = '0';
    $('reconnects').textContent = '0';
    $('session').textContent = '—';
    delete $('session').dataset.session;
    $('messages-empty').hidden = false;
    $('notifications-empty').hidden = false;
    $('errors-card').hidden = true;
    for (const id of ['send-result', 'post-result', 'conn-detail', 'node-note']) $(id).textContent = '';
    showNode('');
    $('node-id').textContent = '—';
    setState('signed-out');
    document.title = 'Switchboard · realtime demo';
    $('app').hidden = true;
    $('signin').hidden = false;
    $('user-input').focus();
  }

  // ------------------------------------------------------------- wiring ---
  document.getElementById('signin-form').addEventListener('submit', onSignin);
  document.getElementById('send-form').addEventListener('submit', onSend);
  document.getElementById('post-form').addEventListener('submit', onPost);
  $('text-input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      document.getElementById('send-form').requestSubmit();
    }
  });
  $('signout').addEventListener('click', signOut);
  $('errors-clear').addEventListener('click', () => {
    $('errors').replaceChildren();
    state.lastError = null;
    $('errors-card').hidden = true;
  });

  if (params.get('user')) $('user-input').value = params.get('user');
  whoami().then((node) => { $('page-node-id').textContent = node || 'unknown'; });
  if (typeof io !== 'function') {
    const errEl = $('signin-error');
    errEl.textContent = 'The Socket.IO client failed to load (/static/socket.io.min.js).';
    errEl.hidden = false;
  }
}());
