// aifactory web app: routes, the shared event stream, the status line, and the devtools handle.
//
// window.aifactory is for the browser's devtools (and the browser tests): the live objects of
// the page, kept under stable names. See README.md in this directory for its shape.

import '@xterm/xterm/css/xterm.css';
import './style.css';

import { api, onUnauthorized } from './api.js';
import { h } from './dom.js';
import { EventStream } from './events.js';
import * as board from './pages/board.js';
import * as consolePage from './pages/console.js';
import * as doctor from './pages/doctor.js';
import * as hosts from './pages/hosts.js';
import * as legacy from './pages/legacy.js';
import * as login from './pages/login.js';
import * as sessions from './pages/sessions.js';
import * as task from './pages/task.js';

const events = new EventStream();

const handle = {
  /** The route being shown: {name, params, path}. */
  route: null,
  api,
  /** The shared EventStream: state, reason, lastEventId, source (the EventSource). */
  events,
  /** Set by the pages while they are shown (null otherwise). */
  board: null,
  task: null,
  sessions: null,
  console: null,
  doctor: null,
  hosts: null,
  login: null,
  /** Navigates within the app (History API). */
  navigate: (path, state) => navigate(path, state),
};
window.aifactory = handle;

// A task or session is its host's: its page's URL names both (`params` = [host, id]). The
// older host-less URLs find the host by the id and move to the hosted URL.
const ROUTES = [
  { name: 'board', re: /^\/$/, page: board, title: 'Board' },
  { name: 'hosts', re: /^\/hosts\/?$/, page: hosts, title: 'Hosts' },
  { name: 'task', re: /^\/hosts\/([^/]+)\/tasks\/([^/]+)\/?$/, page: task, title: 'Task' },
  { name: 'console', re: /^\/hosts\/([^/]+)\/sessions\/([^/]+)\/console\/?$/, page: consolePage, title: 'Live Console' },
  { name: 'task_by_id', re: /^\/tasks\/([^/]+)\/?$/, page: legacy.task, title: 'Task' },
  { name: 'sessions', re: /^\/sessions\/?$/, page: sessions, title: 'Sessions' },
  { name: 'console_by_id', re: /^\/sessions\/([^/]+)\/?$/, page: legacy.sessionConsole, title: 'Live Console' },
  { name: 'doctor', re: /^\/doctor\/?$/, page: doctor, title: 'Doctor' },
  { name: 'login', re: /^\/login\/?$/, page: login, title: 'Sign in' },
];

// The frame: header with navigation, the status line, the page.
const statusLine = h('p', { id: 'status', class: 'status', role: 'status', 'aria-live': 'polite' });
const main = h('main', { id: 'main', tabindex: '-1' });
const nav = h(
  'nav',
  { 'aria-label': 'Main' },
  h('a', { href: '/', 'data-route': 'board', text: 'Board' }),
  h('a', { href: '/sessions', 'data-route': 'sessions', text: 'Sessions' }),
  h('a', { href: '/hosts', 'data-route': 'hosts', text: 'Hosts' }),
  h('a', { href: '/doctor', 'data-route': 'doctor', text: 'Doctor' }),
);
const logoutButton = h('button', { type: 'button', id: 'logout', class: 'link-button', text: 'Sign out', onclick: logout });
const header = h(
  'header',
  { class: 'topbar' },
  h('a', { href: '/', class: 'brand', text: 'aifactory' }),
  nav,
  h('span', { class: 'spacer' }),
  logoutButton,
);
const app = document.getElementById('app');
app.replaceChildren(h('a', { href: '#main', class: 'skip-link', text: 'Skip to content' }), header, statusLine, main);

let cleanup = null;

function match(path) {
  for (const route of ROUTES) {
    const m = route.re.exec(path);
    if (m) return { route, params: m.slice(1).map(decodeURIComponent) };
  }
  return null;
}

function render() {
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error('page cleanup failed', e);
    }
    cleanup = null;
  }
  const path = location.pathname;
  const found = match(path);
  main.replaceChildren();
  for (const a of nav.querySelectorAll('a')) {
    if (found && a.dataset.route === found.route.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!found) {
    handle.route = { name: 'not_found', params: [], path };
    document.title = 'Not found · aifactory';
    main.append(h('h1', { text: 'Not found' }), h('p', { class: 'error', role: 'alert', text: `This page has no ${path}.` }), h('p', {}, h('a', { href: '/', text: 'Go to the board' })));
    return;
  }
  const { route, params } = found;
  handle.route = { name: route.name, params, path };
  document.title = `${route.title} · aifactory`;
  const isLogin = route.name === 'login';
  header.hidden = isLogin;
  if (isLogin) {
    events.stop();
    statusText.textContent = '';
    statusTimer.textContent = '';
  } else {
    events.start();
  }
  cleanup = route.page.mount(main, params, { events, navigate, handle, statusLine }) || null;
}

export function navigate(path, state = null, { replace = false } = {}) {
  if (replace) history.replaceState(state, '', path);
  else history.pushState(state, '', path);
  render();
  // Focus moves to the new page, unless the page put it somewhere itself (the console).
  if (!replace && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

// Same-origin links navigate in the page.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return;
  if (url.pathname === location.pathname && url.hash) return;
  e.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});
window.addEventListener('popstate', render);

// A page left for another may be kept, frozen, in the back-forward cache: its event stream must
// not stay open meanwhile (each held stream takes one of the browser's six connections to the
// shim, and a few of them stall every other request). Shown again, it reopens from its last id.
window.addEventListener('pagehide', () => events.stop());
window.addEventListener('pageshow', (e) => {
  if (e.persisted && handle.route && handle.route.name !== 'login') events.start();
});

// Any 401 sends the page to /login, with the reason and the way back.
onUnauthorized((error) => goToLogin(error));
events.onState((stream) => {
  if (stream.state === 'unauthorized') goToLogin(stream.error || { code: 'invalid_token', message: stream.reason });
  updateStatus();
});

// The Live Console stays (its output is still worth reading): it says why in its status line,
// with a link to sign in, and so does the page's.
function goToLogin(error) {
  if (handle.route && handle.route.name === 'login') return;
  if (handle.route && handle.route.name === 'console') {
    events.stop();
    statusText.replaceChildren(`Not signed in (${error.code}): ${error.message} `, h('a', { href: loginHref(), id: 'status-login-link', text: 'Sign in' }));
    statusLine.dataset.state = 'unauthorized';
    return;
  }
  navigate(loginHref(), { reason: { code: error.code, message: error.message } }, { replace: true });
}

function loginHref() {
  const next = location.pathname + location.search;
  return next && next !== '/' && !next.startsWith('/login') ? `/login?next=${encodeURIComponent(next)}` : '/login';
}

async function logout() {
  try {
    await api.logout();
  } catch (e) {
    console.warn('logout:', e.message);
  }
  navigate('/login', { reason: { code: 'logged_out', message: 'You signed out.' } });
}

// The status line: the event stream's state, with how long it has been so (the counter is
// hidden from screen readers, so the live region speaks only when the state changes).
const statusText = h('span', { class: 'status-text' });
const statusTimer = h('span', { class: 'status-timer', 'aria-hidden': 'true' });
statusLine.append(statusText, statusTimer);
function updateStatus() {
  if (handle.route && handle.route.name === 'login') return;
  if (events.state === 'stopped' && statusLine.dataset.state === 'unauthorized') return;
  const seconds = Math.floor((Date.now() - events.since) / 1000);
  let text;
  let timer = '';
  statusLine.dataset.state = events.state;
  switch (events.state) {
    case 'open':
      text = "Live: following aifactoryd's events.";
      break;
    case 'connecting':
      text = 'Connecting to the event stream (/api/v1/events)…';
      timer = ` ${seconds} s`;
      break;
    case 'daemon_unavailable':
      text = `${events.reason}. Waiting for it to come back`;
      timer = ` (${seconds} s)`;
      break;
    case 'retrying':
      text = `Not live: ${events.reason}.`;
      timer = ` (${seconds} s)`;
      break;
    case 'unauthorized':
      text = `Not signed in: ${events.reason}`;
      break;
    default:
      text = '';
  }
  if (statusText.textContent !== text) statusText.textContent = text;
  if (statusTimer.textContent !== timer) statusTimer.textContent = timer;
}
setInterval(() => {
  if (events.state !== 'open') updateStatus();
}, 1000);

render();
