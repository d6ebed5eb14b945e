// `/hosts`: every host aifactory-http serves (GET /api/v1/hosts): its address, whether its
// daemon can be reached (and why not), the daemon's version, and its load. Kept live by the
// event stream: a host's `daemon` notice (down, back) and a task starting or ending (its
// running tasks) fetch the list again; nothing polls.

import { api } from '../api.js';
import { bytes, h, time } from '../dom.js';

/** `2 tasks running · 8 CPUs · load 0.52 0.40 0.31 · 3.1 GiB of 15.5 GiB memory available`. */
export function loadText(load) {
  if (!load) return null;
  const parts = [`${load.tasks_running} task${load.tasks_running === 1 ? '' : 's'} running`, `${load.cpus} CPU${load.cpus === 1 ? '' : 's'}`];
  const avg = load.load_average;
  parts.push(avg ? `load ${avg.one.toFixed(2)} ${avg.five.toFixed(2)} ${avg.fifteen.toFixed(2)}` : 'load unknown');
  const mem = load.memory;
  parts.push(mem ? `${bytes(mem.available_bytes)} of ${bytes(mem.total_bytes)} memory available` : 'memory unknown');
  return parts.join(' · ');
}

export function mount(main, _params, { events, handle }) {
  const error = h('p', { id: 'hosts-error', class: 'error', role: 'alert' });
  const body = h('tbody');
  const table = h(
    'table',
    { id: 'hosts-table', class: 'sessions hosts' },
    h('caption', { class: 'visually-hidden', text: 'Hosts' }),
    h('thead', {}, h('tr', {}, ['Host', 'Address', 'State', 'Daemon', 'Load'].map((t) => h('th', { scope: 'col', text: t })))),
    body,
  );
  const empty = h('p', { id: 'hosts-empty', class: 'help', text: 'Loading the hosts…' });
  main.append(h('h1', { text: 'Hosts' }), error, empty, h('div', { class: 'table-wrap' }, table));
  const state = { hosts: [], element: table, loads: 0, refresh: () => load() };
  handle.hosts = state;
  let gone = false;

  function row(x) {
    const since = x.since_ms ? time(new Date(x.since_ms).toISOString()) : null;
    const load = loadText(x.load);
    return h(
      'tr',
      { 'data-host': x.name, 'data-state': x.state },
      h('th', { scope: 'row', class: 'host-name' }, h('a', { href: `/?host=${encodeURIComponent(x.name)}`, title: `the board of ${x.name}`, text: x.name })),
      h('td', { 'data-label': 'Address' }, h('code', { class: 'host-url', text: x.url })),
      h(
        'td',
        { class: 'host-state', 'data-label': 'State' },
        h('span', { class: `state state-host-${x.state}`, text: x.state }),
        since ? [' since ', since] : null,
        x.reason ? h('p', { class: 'host-reason error-text', text: x.reason }) : null,
      ),
      h('td', { class: 'host-daemon', 'data-label': 'Daemon' }, x.version ? `aifactoryd ${x.version}` : '—', x.protocol !== null && x.protocol !== undefined ? h('span', { class: 'sub', text: ` protocol ${x.protocol}` }) : null),
      h('td', { class: 'host-load', 'data-label': 'Load' }, load || (x.state === 'up' ? 'not reported' : '—')),
    );
  }

  // One request at a time; notices that come meanwhile ask for one more afterwards.
  let loading = false;
  let again = false;
  async function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      const askedAt = Date.now();
      const list = await api.hosts();
      if (gone) return;
      events.syncHosts(list, askedAt);
      state.hosts = list;
      state.loads++;
      body.replaceChildren(...list.map(row));
      empty.hidden = list.length > 0;
      empty.textContent = 'aifactory-http serves no host.';
      error.textContent = '';
    } catch (e) {
      if (!gone && !e.unauthorized) {
        // Not through to the shim at all (it restarts, the network changed): once more, later.
        const again = e.status === 0;
        error.textContent = `Cannot list the hosts: ${e.message}${again ? '; trying again in 3 s' : ''}`;
        if (again) {
          clearTimeout(timer);
          timer = setTimeout(load, 3000);
        }
      }
    } finally {
      loading = false;
    }
    if (again && !gone) {
      again = false;
      load();
    }
  }

  let timer = null;
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(load, 200);
  };
  const unsubscribe = events.subscribe((ev) => {
    if (ev.name === 'TaskPhase' || ev.name === 'TaskExited' || ev.name === 'TaskRemoved') soon();
  });
  const unhost = events.onHost(soon);
  const unresync = events.onResync(soon);
  load();
  return () => {
    gone = true;
    clearTimeout(timer);
    unsubscribe();
    unhost();
    unresync();
    if (handle.hosts === state) handle.hosts = null;
  };
}
