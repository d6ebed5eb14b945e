// `/hosts/{host}/sessions/{id}/console`: the Live Console of a session on one host. xterm.js on the console WebSocket: output replayed from
// offset 0 and then live, typing sent as binary frames, resizes as `{"resize": ...}`. Every byte
// received is counted; after any disconnect it reconnects by itself from the next offset
// (backoff up to 5 s), so no byte is lost or shown twice. Output reaches xterm no faster than
// it parses it (flow control, below), so xterm never throws any away.

import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';

import { api, pages } from '../api.js';
import { exitText, h } from '../dom.js';
import { withStyleBridge } from '../xterm-csp.js';

const SCROLLBACK = 10000;
// Flow control (see `feed` below): output bytes handed to xterm and not yet parsed. xterm.js 6
// throws a write away ("write data discarded") once more than 50,000,000 bytes are pending in
// its write buffer; the page keeps it far below that.
const HIGH_WATERMARK = 2 * 1024 * 1024;
const LOW_WATERMARK = 512 * 1024;
const MAX_BACKOFF_MS = 5000;
const FIRST_BACKOFF_MS = 250;

export const CLOSE = { ENDED: 1000, GOING_AWAY: 1001, LOST: 4001, GONE: 4004 };

export function mount(main, [host, id], { handle }) {
  const consoleUrl = pages.console(host, id);
  const title = h('h1', { id: 'console-title' }, 'Live Console ', h('code', { text: id }), ' on ', h('span', { id: 'console-host', class: 'host-name', text: host }));
  const meta = h('p', { id: 'console-meta', class: 'help' });
  const statusText = h('span', { class: 'console-status-text' });
  const statusTimer = h('span', { class: 'console-status-timer', 'aria-hidden': 'true' });
  const statusEl = h('p', { id: 'console-status', class: 'console-status', role: 'status', 'aria-live': 'polite' }, statusText, statusTimer);
  const notice = h('p', { id: 'console-notice', class: 'console-notice', hidden: true });
  const container = h('div', { id: 'terminal', class: 'terminal', 'aria-label': `Terminal of session ${id} on ${host}` });
  main.classList.add('main-console');
  main.append(h('p', { class: 'crumbs' }, h('a', { href: '/sessions', text: '← Sessions' })), h('div', { class: 'console-head' }, title, meta), statusEl, notice, container);

  const term = new Terminal({
    scrollback: SCROLLBACK,
    cursorBlink: true,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, monospace',
    fontSize: 14,
    allowProposedApi: false,
    theme: { background: '#0d1117', foreground: '#e6edf3', cursor: '#e6edf3', selectionBackground: '#264f78' },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  withStyleBridge(() => term.open(container));

  const state = {
    host,
    sessionId: id,
    session: null,
    term,
    fit,
    /** The WebSocket in use (null between connections). */
    socket: null,
    /** The offset the first connection asked for. */
    start: 0,
    /** The next output offset expected: where a reconnect starts (`from`). */
    offset: 0,
    /** Output bytes received over every connection. */
    received: 0,
    /** Output bytes received but not yet parsed by xterm (held in the page or in xterm's
     * write buffer); 0 once the terminal has consumed everything received. */
    pending: 0,
    /** Connections opened so far. */
    connects: 0,
    /** connecting, live, daemon_unavailable, waiting, unauthorized, ended, lost, gone, closed */
    state: 'connecting',
    /** The status line's text. */
    status: '',
    /** How the last connection closed: {code, reason, wasClean}. */
    closed: null,
    /** `lagged` notices: [{requested, resume_from}]. */
    lagged: [],
    /** Text notices and errors from the shim, newest last (at most 50). */
    notices: [],
    reconnect: () => reconnectNow(),
  };
  handle.console = state;

  let gone = false;
  // Since the current state began, and since the console was last live (or opened).
  let since = Date.now();
  let downSince = Date.now();
  let timerText = () => '';
  let backoff = FIRST_BACKOFF_MS;
  let retryTimer = null;
  let retryAt = 0;
  let attempt = 0;
  let openedAt = 0;
  let lastSent = null;
  const encoder = new TextEncoder();

  // Flow control. The shim honours back-pressure: it awaits each frame's send, so it reads
  // aifactoryd's stream only as fast as this socket drains. But the browser's WebSocket cannot
  // be paused: Chromium reads the socket and queues a message event for whatever arrives,
  // whether or not the page is ready for it. So the page cannot push back; what it can do is
  // not hand xterm more than it can parse. Output waits here, in arrival order, and goes to
  // xterm while less than HIGH_WATERMARK bytes are pending there; once over, nothing more is
  // written until xterm's write callbacks bring it under LOW_WATERMARK. Nothing is dropped or
  // reordered; the price is that a page that falls behind (a replay of a long session, a
  // background tab whose timers the browser throttles) holds the excess in its own memory
  // until xterm catches up. (WebSocketStream would let the page stop reading and the TCP
  // window carry the back-pressure to the shim, but only Chromium has it.)
  const backlog = [];
  let backlogHead = 0;
  let inXterm = 0;
  let paused = false;

  function feed() {
    while (!gone && backlogHead < backlog.length) {
      // Over HIGH_WATERMARK it pauses, and stays paused until under LOW_WATERMARK.
      if (inXterm >= (paused ? LOW_WATERMARK : HIGH_WATERMARK)) {
        paused = true;
        break;
      }
      paused = false;
      const bytes = backlog[backlogHead];
      backlog[backlogHead++] = undefined;
      inXterm += bytes.length;
      term.write(bytes, () => {
        inXterm -= bytes.length;
        state.pending -= bytes.length;
        if (inXterm < LOW_WATERMARK) feed();
      });
    }
    if (backlogHead === backlog.length) {
      backlog.length = 0;
      backlogHead = 0;
    } else if (backlogHead > 1024) {
      backlog.splice(0, backlogHead);
      backlogHead = 0;
    }
  }

  function output(bytes) {
    state.pending += bytes.length;
    backlog.push(bytes);
    feed();
  }

  function setStatus(kind, text, { timer = null, link = null } = {}) {
    if (kind !== state.state) since = Date.now();
    if (kind === 'live') downSince = null;
    else if (downSince === null) downSince = Date.now();
    state.state = kind;
    state.status = text;
    statusEl.dataset.state = kind;
    statusText.replaceChildren(text);
    if (link) statusText.append(' ', link);
    timerText = timer || (() => '');
    statusTimer.textContent = timerText();
    term.options.disableStdin = kind !== 'live';
  }
  const seconds = () => Math.floor((Date.now() - since) / 1000);
  const downSeconds = () => Math.floor((Date.now() - (downSince ?? Date.now())) / 1000);
  const tick = setInterval(() => {
    statusTimer.textContent = timerText();
  }, 1000);

  function addNotice(text) {
    state.notices.push({ at: Date.now(), text });
    if (state.notices.length > 50) state.notices.shift();
    notice.hidden = false;
    notice.textContent = text;
  }

  function send(data) {
    const ws = state.socket;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
  }

  function sendResize(force = false) {
    const size = `${term.cols}x${term.rows}`;
    if (!force && size === lastSent) return;
    const ws = state.socket;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ resize: { cols: term.cols, rows: term.rows } }));
      lastSent = size;
    }
  }

  term.onData((text) => send(encoder.encode(text)));
  term.onBinary((text) => send(Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(() => sendResize());

  // Fit to the window (and to the container's own changes), at most once a frame.
  let fitFrame = 0;
  function refit() {
    if (fitFrame) return;
    fitFrame = requestAnimationFrame(() => {
      fitFrame = 0;
      if (gone || !container.isConnected) return;
      try {
        fit.fit();
      } catch (e) {
        console.warn('fit:', e);
      }
    });
  }
  const observer = new ResizeObserver(refit);
  observer.observe(container);
  window.addEventListener('resize', refit);
  fit.fit();

  function connect() {
    retryTimer = null;
    if (gone) return;
    const from = state.offset;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}${api.consolePath(host, id)}?from=${from}`);
    ws.binaryType = 'arraybuffer';
    state.socket = ws;
    state.connects++;
    lastSent = null;
    setStatus('connecting', `Connecting: waiting for aifactory-http to open the console WebSocket (output from byte ${from})…`, {
      timer: () => ` ${seconds()} s${state.connects > 1 ? `; not connected for ${downSeconds()} s` : ''}`,
    });

    ws.onopen = () => {
      if (ws !== state.socket) return;
      openedAt = Date.now();
      attempt = 0;
      setStatus('live', `Live: connected to session ${id}.`);
      sendResize(true);
    };
    ws.onmessage = (e) => {
      if (ws !== state.socket) return;
      if (e.data instanceof ArrayBuffer) {
        const bytes = new Uint8Array(e.data);
        state.received += bytes.length;
        state.offset += bytes.length;
        backoff = FIRST_BACKOFF_MS;
        output(bytes);
        return;
      }
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        addNotice(`The shim sent a notice this page does not know: ${e.data}`);
        return;
      }
      if (msg.lagged) {
        // The bytes from `requested` were rotated away before they could be sent.
        state.lagged.push(msg.lagged);
        const lost = msg.lagged.resume_from - msg.lagged.requested;
        state.offset = msg.lagged.resume_from;
        addNotice(`Lagged: ${lost} bytes of output (from byte ${msg.lagged.requested} to ${msg.lagged.resume_from}) were rotated away on the server before they could be shown; the console goes on from byte ${msg.lagged.resume_from}.`);
      } else if (msg.daemon === 'unavailable') {
        setStatus('daemon_unavailable', `aifactoryd on ${host} is unavailable: ${msg.message || 'the shim lost it'}. aifactory-http reconnects to it by itself and the console goes on where it stopped;`, { timer: () => ` waiting for ${seconds()} s.` });
      } else if (msg.daemon === 'available') {
        setStatus('live', `Live: aifactoryd is back; connected to session ${id}.`);
      } else if (msg.error) {
        addNotice(`Refused (${msg.error.code}): ${msg.error.message}`);
      } else {
        addNotice(`Notice: ${e.data}`);
      }
    };
    ws.onclose = (e) => {
      if (ws !== state.socket) return;
      state.socket = null;
      state.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      if (gone) return;
      if (e.code === CLOSE.ENDED && e.reason) {
        setStatus('ended', `Session ended: ${e.reason}.`);
      } else if (e.code === CLOSE.LOST) {
        // The reason (`lost: WHY`) is cut to fit a close frame; the session has it whole.
        setStatus('lost', `Session lost: ${e.reason.replace(/^lost: /, '') || 'its monitor could not be re-adopted'}.`);
        api.session(host, id, { quiet401: true }).then(
          (s) => {
            if (gone || state.state !== 'lost' || s.state !== 'lost') return;
            showSession(s);
            setStatus('lost', `Session lost: ${s.lost_reason || 'its monitor could not be re-adopted'}.`);
          },
          () => {},
        );
      } else if (e.code === CLOSE.GONE) {
        setStatus('gone', `Session gone: ${e.reason || 'it no longer exists'}.`);
      } else if (e.code === CLOSE.GOING_AWAY) {
        retry(`aifactory-http is stopping (${e.reason || 'going away'})`);
      } else {
        // 1006 and the like: a refused upgrade (401, 404, 503) looks the same; ask why.
        diagnose(e);
      }
    };
  }

  async function diagnose(e) {
    setStatus('connecting', `Disconnected (WebSocket closed with ${e.code}); asking aifactory-http why…`, { timer: () => ` ${seconds()} s` });
    try {
      const s = await api.session(host, id, { quiet401: true });
      if (gone) return;
      showSession(s);
      if (s.state === 'exited') setStatus('ended', `Session ended: ${exitText(s.exit) || 'ended'}.`);
      else if (s.state === 'lost') setStatus('lost', `Session lost: ${s.lost_reason || 'its monitor could not be re-adopted'}.`);
      else retry(`the WebSocket closed (${e.code}${e.reason ? `: ${e.reason}` : ''}) though the session runs`);
    } catch (err) {
      if (gone) return;
      if (err.unauthorized) {
        setStatus('unauthorized', `Not signed in (${err.code}): the shim refuses the console without a valid login cookie.`, {
          link: h('a', { href: `/login?next=${encodeURIComponent(consoleUrl)}`, id: 'console-login-link', text: 'Sign in' }),
        });
      } else if (err.status === 404) {
        setStatus('gone', `Session gone: ${err.message}.`);
      } else if (err.status === 503 || err.code === 'daemon_unavailable') {
        retry(`aifactoryd on ${host} is unavailable: ${err.message}`);
      } else if (err.status === 0) {
        retry(err.message);
      } else {
        retry(`${err.message} (${err.code})`);
      }
    }
  }

  function retry(why) {
    if (gone) return;
    // A connection that opened and then dropped at once does not reset the backoff.
    if (openedAt && Date.now() - openedAt > 2000) backoff = FIRST_BACKOFF_MS;
    openedAt = 0;
    const wait = backoff;
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    attempt++;
    retryAt = Date.now() + wait;
    setStatus('waiting', `Disconnected: ${why}. Reconnecting from byte ${state.offset} (attempt ${attempt})`, {
      timer: () => ` in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s; not connected for ${downSeconds()} s.`,
    });
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, wait);
  }

  function reconnectNow() {
    clearTimeout(retryTimer);
    if (state.socket) {
      const old = state.socket;
      state.socket = null;
      old.close(1000, 'reconnecting');
    }
    connect();
  }

  function showSession(s) {
    state.session = s;
    meta.replaceChildren(s.name ? `${s.name} · ` : '', h('code', { text: s.command.join(' ') }), ` · ${s.cols}×${s.rows} · ${s.state}`);
  }

  api.session(host, id, { quiet401: true }).then((s) => !gone && showSession(s), () => {});
  connect();
  term.focus();

  return () => {
    gone = true;
    clearInterval(tick);
    clearTimeout(retryTimer);
    if (fitFrame) cancelAnimationFrame(fitFrame);
    observer.disconnect();
    window.removeEventListener('resize', refit);
    if (state.socket) {
      const ws = state.socket;
      state.socket = null;
      ws.close(1000, 'page closed');
    }
    state.state = 'closed';
    term.dispose();
    main.classList.remove('main-console');
    if (handle.console === state) handle.console = null;
  };
}
