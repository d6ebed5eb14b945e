// `/sessions`: every terminal session of every host that is up, its state and command, with a
// link to its console.

import { api, pages } from '../api.js';
import { exitText, h, time } from '../dom.js';

export function mount(main, _params, { events, handle }) {
  const error = h('p', { id: 'sessions-error', class: 'error', role: 'alert' });
  const body = h('tbody');
  const table = h(
    'table',
    { id: 'sessions-table', class: 'sessions' },
    h('caption', { class: 'visually-hidden', text: 'Terminal sessions' }),
    h('thead', {}, h('tr', {}, ['Session', 'Host', 'State', 'Command', 'Directory', 'Started', 'Console'].map((t) => h('th', { scope: 'col', text: t })))),
    body,
  );
  const empty = h('p', { id: 'sessions-empty', class: 'help', text: 'Loading sessions…' });
  main.append(h('h1', { text: 'Sessions' }), error, empty, h('div', { class: 'table-wrap' }, table));
  const state = { sessions: [], element: table, refresh: () => load() };
  handle.sessions = state;
  let gone = false;

  function row(s) {
    const href = pages.console(s.host, s.id);
    let st = s.state;
    if (s.state === 'exited' && s.exit) st = `exited (${exitText(s.exit)})`;
    if (s.state === 'lost') st = `lost: ${s.lost_reason || 'monitor gone'}`;
    if (s.output_blocked) st += ` · output blocked: ${s.output_blocked.reason}`;
    return h(
      'tr',
      { 'data-session-id': s.id, 'data-host': s.host, 'data-state': s.state },
      h('th', { scope: 'row' }, h('a', { href, text: s.name || s.id }), s.name ? h('span', { class: 'sub', text: ` ${s.id}` }) : null),
      h('td', { class: 'session-host' }, s.host),
      h('td', {}, h('span', { class: `state state-${s.state}`, text: st })),
      h('td', {}, h('code', { class: 'command', text: s.command.join(' ') })),
      h('td', {}, h('code', { text: s.cwd })),
      h('td', {}, time(s.created_at)),
      h('td', {}, h('a', { href, class: 'console-link', text: 'Live Console', 'aria-label': `Live Console of ${s.name || s.id}` })),
    );
  }

  async function load() {
    try {
      const list = await api.sessions();
      if (gone) return;
      list.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
      state.sessions = list;
      body.replaceChildren(...list.map(row));
      empty.hidden = list.length > 0;
      empty.textContent = 'No sessions.';
      error.textContent = '';
    } catch (e) {
      if (!gone && !e.unauthorized) error.textContent = `Cannot list the sessions: ${e.message}`;
    }
  }

  let timer = null;
  const unsubscribe = events.subscribe((ev) => {
    if (ev.name.startsWith('Session') || ev.name === 'TaskExited') {
      clearTimeout(timer);
      timer = setTimeout(load, 150);
    }
  });
  // A host that goes down drops out of the list; back, its sessions are in it again.
  const unhost = events.onHost(() => {
    clearTimeout(timer);
    timer = setTimeout(load, 150);
  });
  const unresync = events.onResync(load);
  load();
  return () => {
    gone = true;
    clearTimeout(timer);
    unsubscribe();
    unresync();
    unhost();
    if (handle.sessions === state) handle.sessions = null;
  };
}
