// `/`: the board. One column per phase, a card per task of every host the shim serves, live
// from the event stream. A task is named by (host, id); a host that is down keeps its cards,
// greyed and marked stale, until it is back and its tasks are fetched again.
//
// One file past 600 lines on purpose: `mount` is one closure over the board's state (the tasks
// by host and id, the filters, each host's state, the pending refetches) that its cards, its
// event handlers, its keyboard and its new-task form all read and patch; split, that state
// would be passed to every part.

import { api, keyOf, pages } from '../api.js';
import { ask } from '../dialog.js';
import { bytes, cost, cpuTime, h } from '../dom.js';

/** common's TaskPhase, in its order. */
export const PHASES = [
  ['backlog', 'Backlog'],
  ['planning', 'Planning'],
  ['coding', 'Coding'],
  ['qa', 'QA'],
  ['done', 'Done'],
  ['failed', 'Failed'],
  ['stopped', 'Stopped'],
  ['stalled', 'Stalled'],
];
const ACTIVE = new Set(['planning', 'coding', 'qa', 'stalled']);
const SPEC_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

export function stallText(stall) {
  if (!stall) return '';
  const parts = [`stalled since ${stall.detected_at} (no sign of life for ${stall.stall_after_s} s)`];
  parts.push(`last output ${stall.last_output_at || 'never'}`);
  parts.push(`last progress ${stall.last_progress_at || 'never'}`);
  if (stall.pid) {
    let p = `pid ${stall.pid}`;
    if (stall.process_state) p += ` state ${stall.process_state}`;
    if (stall.cpu_time_ms !== null && stall.cpu_time_ms !== undefined) p += `, ${stall.cpu_time_ms} ms CPU`;
    parts.push(p);
  }
  return parts.join('; ');
}

/** What the task's agent used, from its cgroup (nothing shown when it had none). */
function resources(r) {
  if (!r) return null;
  const peak = r.memory_peak_bytes ?? r.memory_bytes;
  return h('span', {
    class: 'card-resources',
    title: `CPU time, peak memory and processes of its cgroup${r.oom_kills ? `; ${r.oom_kills} OOM kills` : ''}`,
    text: `${cpuTime(r.cpu_usec)} · ${bytes(peak)} · ${r.processes} proc`,
  });
}

export function progressOf(task) {
  const p = task.progress || {};
  let percent = p.percent;
  if ((percent === null || percent === undefined) && p.subtasks_total) percent = Math.round((100 * (p.subtasks_done || 0)) / p.subtasks_total);
  const subtasks = p.subtasks_total ? `subtask ${p.subtasks_done || 0}/${p.subtasks_total}` : null;
  return { percent: percent === null || percent === undefined ? null : Math.max(0, Math.min(100, percent)), subtasks };
}

/** The badges of a task: stalled (evidence in the title), waiting input, failure kind. */
export function badges(task) {
  const out = [];
  if (task.stall || task.phase === 'stalled') out.push(h('span', { class: 'badge badge-stalled', title: stallText(task.stall) || 'stalled', text: 'stalled' }));
  if (task.waiting_input) out.push(h('span', { class: 'badge badge-waiting', title: `waiting for input: ${task.waiting_input}`, text: 'waiting input' }));
  if (task.failure) {
    out.push(
      h('span', {
        class: 'badge badge-failure',
        'data-kind': task.failure.kind,
        title: `${task.failure.message}\nFix: ${task.failure.fix}`,
        text: task.failure.kind.replace(/_/g, ' '),
      }),
    );
  }
  return out;
}

/** start / stop / restart / remove, confirmed when destructive; `report(error)` on refusal. */
export async function runAction(action, task, { onDone, report }) {
  const name = task.spec_id;
  try {
    let result = null;
    if (action === 'start') {
      result = await api.startTask(task.host, task.id);
    } else if (action === 'stop') {
      const ok = await ask({ title: `Stop ${name}?`, message: `The agent of “${task.title}” gets SIGTERM, then SIGKILL after 5 seconds.`, actions: [{ label: 'Stop', value: 'stop', danger: true }] });
      if (!ok) return;
      result = (await api.stopTask(task.host, task.id)).task;
    } else if (action === 'restart') {
      const how = await ask({
        title: `Restart ${name}?`,
        message: `Stops the agent of “${task.title}” if it runs, then starts it again: resume its conversation, or start it fresh.`,
        actions: [
          { label: 'Resume', value: 'resume', danger: ACTIVE.has(task.phase) },
          { label: 'Start fresh', value: 'fresh', danger: true },
        ],
      });
      if (!how) return;
      result = await api.restartTask(task.host, task.id, how === 'fresh');
    } else if (action === 'remove') {
      const how = await ask({
        title: `Remove ${name}?`,
        message: `Forgets the task “${task.title}”. Its worktree ${task.worktree} stays unless you delete it too; its branch stays either way (it holds the agent's commits).`,
        actions: [
          { label: 'Remove', value: 'remove', danger: true },
          { label: 'Remove and delete worktree', value: 'prune', danger: true },
        ],
      });
      if (!how) return;
      try {
        if (!(await forgetTask(task, how === 'prune'))) return;
      } catch (e) {
        if (e.code === 'method_not_allowed' || e.code === 'no_route') {
          e.message = `this aifactory-http does not offer removing a task (${e.message}); use \`aifactoryctl tasks remove ${name}\` on host ${task.host}`;
        }
        throw e;
      }
      result = { removed: task.id, host: task.host };
    }
    if (onDone) onDone(result);
  } catch (e) {
    report(`${action} ${name}: ${e.message}`, e);
  }
}

/**
 * Removes the task, with its worktree when `prune`. git refuses a worktree with uncommitted
 * changes (409 conflict, the task stays): the person is asked whether to delete them too.
 * Resolves to false when they decline (nothing removed).
 */
async function forgetTask(task, prune) {
  try {
    await api.removeTask(task.host, task.id, { prune });
  } catch (e) {
    // The daemon's words for git's refusal; any other conflict (it started meanwhile) is shown.
    if (!prune || e.code !== 'conflict' || !e.message.startsWith('cannot remove the worktree')) throw e;
    const force = await ask({
      title: `Delete the uncommitted changes of ${task.spec_id}?`,
      message: `The worktree ${task.worktree} has changes or files that are not committed: deleting it loses them. Cancel keeps the task and its worktree.`,
      actions: [{ label: 'Delete with changes', value: 'force', danger: true }],
    });
    if (!force) return false;
    await api.removeTask(task.host, task.id, { prune: true, force: true });
  }
  return true;
}

/** The task's buttons; `disabled` (with why) while its host is down. */
export function actionButtons(task, handler, disabled = null) {
  const active = ACTIVE.has(task.phase);
  const b = (action, label, cls = '') =>
    h('button', { type: 'button', class: `action ${cls}`.trim(), 'data-action': action, 'aria-label': `${label} ${task.spec_id}`, text: label, disabled: Boolean(disabled), title: disabled || undefined, onclick: (e) => handler(action, task, e) });
  return [!active && b('start', 'Start', 'primary'), active && b('stop', 'Stop', 'danger'), task.phase !== 'backlog' && b('restart', 'Restart'), !active && b('remove', 'Remove', 'danger')];
}

export function mount(main, _params, { events, navigate, handle }) {
  /** key (host/id) -> TaskInfo (with its `host`). */
  const tasks = new Map();
  let projects = [];
  const params = new URLSearchParams(location.search);
  const state = {
    tasks,
    projects,
    /** GET /api/v1/hosts, as last fetched. */
    hosts: [],
    filter: params.get('project') || '',
    hostFilter: params.get('host') || '',
    loaded: false,
    error: null,
    element: null,
    columns: {},
    card: (host, id) => cards.get(keyOf(host, id)) || null,
    refresh: () => loadAll(),
  };
  handle.board = state;
  const cards = new Map();

  // Toolbar: host and project filters, the new task form; under it, a notice per host down.
  const hostFilter = h('select', { id: 'host-filter', onchange: () => setFilter('host', hostFilter.value) }, h('option', { value: '', text: 'All hosts' }));
  const filter = h('select', { id: 'project-filter', onchange: () => setFilter('project', filter.value) }, h('option', { value: '', text: 'All projects' }));
  const boardError = h('p', { id: 'board-error', class: 'error', role: 'alert' });
  const notices = h('div', { id: 'host-notices', class: 'host-notices', role: 'status', 'aria-live': 'polite' });
  const newTask = newTaskForm();
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    h('h1', { text: 'Board' }),
    // Each label with its select, so that a narrow toolbar wraps between them, not inside.
    h('span', { class: 'filter' }, h('label', { for: 'host-filter', class: 'filter-label', text: 'Host' }), hostFilter),
    h('span', { class: 'filter' }, h('label', { for: 'project-filter', class: 'filter-label', text: 'Project' }), filter),
    newTask.details,
  );
  const boardEl = h('div', { id: 'board', class: 'board', 'aria-label': 'Tasks by phase', role: 'region' });
  state.element = boardEl;
  const hint = h('p', { class: 'help board-hint', text: 'Arrow keys move between cards and columns; Enter opens a task.' });
  main.append(toolbar, notices, boardError, boardEl, hint);

  for (const [phase, label] of PHASES) {
    const count = h('span', { class: 'count', text: '0' });
    const list = h('ul', { class: 'cards', role: 'list' });
    const col = h('section', { class: 'column', id: `column-${phase}`, 'data-phase': phase, 'aria-labelledby': `column-${phase}-title` }, h('h2', { id: `column-${phase}-title` }, label, ' ', count), list);
    state.columns[phase] = col;
    col.list = list;
    col.count = count;
    boardEl.append(col);
  }
  const loading = h('p', { id: 'board-loading', class: 'help', text: 'Loading tasks…' });
  boardEl.before(loading);

  function report(message) {
    state.error = message;
    boardError.textContent = message;
  }

  /** Why the host of `task` cannot be reached, or null while it can. */
  const downReason = (host) => events.down.get(host)?.reason ?? null;

  function visible(task) {
    if (state.hostFilter && task.host !== state.hostFilter) return false;
    return !state.filter || task.project_id === state.filter || task.project_name === state.filter;
  }

  function setFilter(param, value) {
    if (param === 'host') {
      state.hostFilter = value;
      // A project is its host's: another host's project filter would hide every card.
      const project = projects.find((p) => p.id === state.filter || p.name === state.filter);
      if (value && project && project.host !== value) state.filter = '';
      renderProjects();
    } else state.filter = value;
    const url = new URL(location.href);
    for (const [name, v] of [
      ['host', state.hostFilter],
      ['project', state.filter],
    ]) {
      if (v) url.searchParams.set(name, v);
      else url.searchParams.delete(name);
    }
    history.replaceState(history.state, '', url.pathname + url.search);
    renderAll();
  }

  function handleAction(action, task) {
    const key = keyOf(task.host, task.id);
    const since = lastEvent.get(key);
    runAction(action, task, {
      report,
      onDone: (result) => {
        boardError.textContent = '';
        if (result && result.removed) removeTask(key);
        else if (result && result.id) {
          // The answer is the task as it was when the daemon answered; events that came since
          // (the agent moving on) are newer, and it must not step the card back: ask again.
          const answered = { ...result, host: result.host ?? task.host };
          if (lastEvent.get(key) === since) upsert(answered, true);
          else refetch(task.host, task.id);
        }
      },
    });
  }

  function renderCard(task) {
    const key = keyOf(task.host, task.id);
    let card = cards.get(key);
    const cardId = `card-${task.host}-${task.id}`;
    if (!card) {
      card = h('article', { class: 'card', id: cardId, tabindex: '0', 'data-task-id': task.id, 'data-host': task.host, 'aria-labelledby': `${cardId}-title` });
      card.key = key;
      card.item = h('li', {}, card);
      cards.set(key, card);
    }
    card.dataset.phase = task.phase;
    const down = downReason(task.host);
    card.classList.toggle('stale', down !== null);
    const { percent, subtasks } = progressOf(task);
    const c = task.usage ? task.usage.cost_usd : null;
    card.replaceChildren(
      h(
        'div',
        { class: 'card-head' },
        h('a', { class: 'card-spec', href: pages.task(task.host, task.id), tabindex: '-1', text: task.spec_id }),
        h('span', { class: 'card-where' }, h('span', { class: 'card-host', title: `host ${task.host}`, text: task.host }), h('span', { class: 'card-project', text: task.project_name })),
      ),
      h('h3', { class: 'card-title', id: `${cardId}-title`, text: task.title }),
      h(
        'p',
        { class: 'card-meta' },
        h('span', { class: 'card-agent', title: 'agent', text: task.agent }),
        h('span', { class: 'card-attempt', text: `attempt ${task.attempts}` }),
        h('span', { class: 'card-cost', title: 'cost so far', text: cost(c) }),
        resources(task.resources),
      ),
      h(
        'div',
        { class: 'card-progress' },
        h('progress', { max: '100', value: String(percent ?? 0), 'aria-label': `progress of ${task.spec_id}`, title: percent === null ? 'no progress reported yet' : `${percent}%` }),
        h('span', { class: 'card-subtasks', text: subtasks || (percent === null ? '' : `${percent}%`) }),
      ),
      h(
        'p',
        { class: 'badges' },
        down !== null && h('span', { class: 'badge badge-stale', title: `host ${task.host} is down: ${down}`, text: `stale: ${task.host} is down` }),
        badges(task),
      ),
      h('div', { class: 'card-actions' }, actionButtons(task, handleAction, down !== null ? `host ${task.host} is down: ${down}` : null)),
    );
    return card;
  }

  function place(card, task) {
    const col = state.columns[task.phase] || state.columns.backlog;
    const show = visible(task);
    const hadFocus = card.contains(document.activeElement);
    if (!show) {
      card.item.remove();
      return;
    }
    // Oldest first within a column (then by host and id, so the order is total).
    const siblings = [...col.list.children].filter((li) => li !== card.item);
    const before = siblings.find((li) => {
      const other = tasks.get(li.firstChild.key);
      if (!other) return false;
      if (other.created_at !== task.created_at) return other.created_at > task.created_at;
      return other.host !== task.host ? other.host > task.host : other.id > task.id;
    });
    if (card.item.parentNode !== col.list || card.item.nextSibling !== (before || null)) {
      col.list.insertBefore(card.item, before || null);
      if (hadFocus) card.focus({ preventScroll: true });
    }
  }

  function counts() {
    for (const [phase] of PHASES) {
      const col = state.columns[phase];
      col.count.textContent = String(col.list.children.length);
    }
  }

  function upsert(task, force = false) {
    const key = keyOf(task.host, task.id);
    const old = tasks.get(key);
    // A stale answer (a list fetched before a refetch of the same task) never wins.
    if (old && !force && old.updated_at && task.updated_at && task.updated_at < old.updated_at) return;
    tasks.set(key, task);
    place(renderCard(task), task);
    counts();
  }

  function removeTask(key) {
    tasks.delete(key);
    const card = cards.get(key);
    if (card) {
      card.item.remove();
      cards.delete(key);
    }
    counts();
  }

  function renderAll() {
    for (const task of tasks.values()) place(renderCard(task), task);
    counts();
  }

  /** Projects are a host's: labelled with it when the shim serves several. */
  const hostNames = () => [...new Set([...state.hosts.map((x) => x.name), ...projects.map((p) => p.host)])];
  function projectLabel(p) {
    return hostNames().length > 1 ? `${p.name} (${p.host})` : p.name;
  }

  function renderProjects() {
    const names = hostNames();
    hostFilter.replaceChildren(h('option', { value: '', text: 'All hosts' }), ...names.map((n) => h('option', { value: n, text: downReason(n) !== null ? `${n} (down)` : n })));
    hostFilter.value = names.includes(state.hostFilter) ? state.hostFilter : '';
    if (state.hostFilter && !names.includes(state.hostFilter)) {
      // A host named in the URL that the shim does not serve: say so rather than show nothing.
      hostFilter.append(h('option', { value: state.hostFilter, text: `${state.hostFilter} (unknown)` }));
      hostFilter.value = state.hostFilter;
    }
    const current = state.filter;
    const shown = projects.filter((p) => !state.hostFilter || p.host === state.hostFilter);
    filter.replaceChildren(h('option', { value: '', text: 'All projects' }), ...shown.map((p) => h('option', { value: p.id, text: projectLabel(p) })));
    // A filter given by name in the URL selects that project.
    const byName = shown.find((p) => p.name === current);
    filter.value = byName ? byName.id : current;
    if (byName) state.filter = byName.id;
    newTask.setHosts(names, projects);
  }

  function renderNotices() {
    const down = [...events.down].filter(([host]) => hostNames().includes(host) || [...tasks.values()].some((t) => t.host === host));
    notices.replaceChildren(
      ...down.map(([host, d]) =>
        h(
          'p',
          { class: 'host-notice', 'data-host': host },
          h('strong', { text: `Host ${host} is down: ` }),
          d.reason,
          `. Its cards are greyed: they show the tasks as they were when it went down, and update when it is back (aifactory-http reconnects by itself).`,
        ),
      ),
    );
  }

  /** Every card of `host` again, with or without the stale mark. */
  function renderHost(host) {
    for (const task of tasks.values()) if (task.host === host) place(renderCard(task), task);
    counts();
    renderProjects();
    renderNotices();
  }

  let gone = false;
  async function loadAll() {
    try {
      const askedAt = Date.now();
      const [list, projs, hosts] = await Promise.all([api.tasks(), api.projects(), api.hosts()]);
      if (gone) return;
      state.hosts = hosts;
      events.syncHosts(hosts, askedAt);
      projects = projs;
      state.projects = projs;
      renderProjects();
      // Notices that came before the hosts were known (the stream opened first) show now.
      renderNotices();
      // A host that is not up is left out of the list: its cards stay (stale), not removed.
      const listed = new Set(hosts.filter((x) => x.state === 'up' && !events.down.has(x.name)).map((x) => x.name));
      const known = new Set(hosts.map((x) => x.name));
      reconcile(list, (task) => listed.has(task.host) || !known.has(task.host));
      state.loaded = true;
      state.error = null;
      loading.remove();
      if (!list.length) boardError.textContent = '';
      if (boardError.textContent.startsWith('Cannot load')) boardError.textContent = '';
    } catch (e) {
      if (gone || e.unauthorized) return;
      loading.textContent = '';
      report(`Cannot load the board: ${e.message}`);
      retryTimer = setTimeout(loadAll, 3000);
    }
  }
  let retryTimer = null;

  /** Takes a fresh list: cards it does not have go when `covered(task)` says the list speaks for them. */
  function reconcile(list, covered) {
    const seen = new Set(list.map((t) => keyOf(t.host, t.id)));
    for (const [key, task] of [...tasks]) if (!seen.has(key) && covered(task)) removeTask(key);
    for (const t of list) upsert(t);
    renderAll();
  }

  /** A host came back: its tasks (and projects) are fetched again, its cards fresh. */
  async function reloadHost(host) {
    try {
      const [list, projs] = await Promise.all([api.tasks({ host }), api.projects()]);
      if (gone || events.down.has(host)) return;
      projects = projs;
      state.projects = projs;
      reconcile(
        list.filter((t) => t.host === host),
        (task) => task.host === host,
      );
      renderHost(host);
    } catch (e) {
      if (!gone && !e.unauthorized) report(`Cannot refresh the tasks of host ${host}: ${e.message}`);
    }
  }

  // One GET per task, however many events arrive for it at once. A GET that was under way when a
  // newer event for its task arrived may answer with the older state: it is dropped and asked
  // again (otherwise a card would step back a column and forward again).
  const pending = new Map();
  const lastEvent = new Map();
  let refetchTimer = null;
  function refetch(host, id) {
    pending.set(keyOf(host, id), [host, id]);
    if (!refetchTimer) refetchTimer = setTimeout(flush, 100);
  }
  async function flush() {
    refetchTimer = null;
    const wanted = [...pending];
    pending.clear();
    await Promise.all(
      wanted.map(async ([key, [host, id]]) => {
        const since = lastEvent.get(key);
        try {
          const t = await api.task(host, id);
          if (gone) return;
          if (lastEvent.get(key) === since) upsert({ ...t, host: t.host ?? host }, true);
          else refetch(host, id);
        } catch (e) {
          if (gone) return;
          if (e.status === 404 && e.code !== 'unknown_host') removeTask(key);
          else if (e.status === 503 && events.down.has(host)) return; // its notice says it all
          else if (!e.unauthorized) report(`Cannot refresh task ${id} on ${host}: ${e.message}`);
        }
      }),
    );
  }

  function patch(key, changes) {
    const t = tasks.get(key);
    if (!t) return false;
    const next = { ...t, ...changes };
    tasks.set(key, next);
    place(renderCard(next), next);
    counts();
    return true;
  }

  const unsubscribe = events.subscribe((ev) => {
    const d = ev.data || {};
    if (!d.task_id) return;
    const host = ev.host;
    const key = keyOf(host, d.task_id);
    lastEvent.set(key, ev.seq);
    switch (ev.name) {
      case 'TaskPhase':
        // The card moves at once; the refetch brings the rest.
        patch(key, { phase: d.to });
        refetch(host, d.task_id);
        break;
      case 'TaskProgress': {
        const t = tasks.get(key);
        if (t) patch(key, { progress: d.progress, notes: d.note ? [...(t.notes || []), d.note].slice(-20) : t.notes });
        else refetch(host, d.task_id);
        break;
      }
      case 'TaskStalled':
        patch(key, { stall: d.evidence });
        refetch(host, d.task_id);
        break;
      case 'TaskWaitingInput':
        patch(key, { waiting_input: d.prompt });
        refetch(host, d.task_id);
        break;
      case 'TaskRemoved':
        removeTask(key);
        break;
      case 'TaskCreated':
      case 'TaskExited':
        refetch(host, d.task_id);
        break;
      case 'TaskAgent':
        // Usage and cost change with a result; the rest of the transcript is the task page's.
        if (d.entry && d.entry.event && d.entry.event.result) refetch(host, d.task_id);
        break;
      default:
    }
  });
  const unresync = events.onResync(() => loadAll());
  // A host down: its cards greyed, with the notice. Back: its tasks fetched again.
  const unhost = events.onHost((notice) => {
    renderHost(notice.host);
    if (notice.daemon === 'available') reloadHost(notice.host);
  });

  // Keyboard: arrows between cards and columns, Enter opens the task.
  boardEl.addEventListener('keydown', (e) => {
    const card = e.target.closest && e.target.closest('.card');
    if (!card || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === 'Enter' && e.target === card) {
      e.preventDefault();
      navigate(pages.task(card.dataset.host, card.dataset.taskId));
      return;
    }
    if (e.target !== card) return;
    const columns = PHASES.map(([p]) => [...state.columns[p].list.querySelectorAll('.card')]);
    const ci = columns.findIndex((c) => c.includes(card));
    const ri = columns[ci].indexOf(card);
    let target = null;
    if (e.key === 'ArrowDown') target = columns[ci][ri + 1];
    else if (e.key === 'ArrowUp') target = columns[ci][ri - 1];
    else if (e.key === 'Home') target = columns[ci][0];
    else if (e.key === 'End') target = columns[ci][columns[ci].length - 1];
    else if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      const step = e.key === 'ArrowRight' ? 1 : -1;
      for (let c = ci + step; c >= 0 && c < columns.length; c += step) {
        if (columns[c].length) {
          target = columns[c][Math.min(ri, columns[c].length - 1)];
          break;
        }
      }
    } else return;
    e.preventDefault();
    if (target) {
      target.focus();
      target.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    }
  });
  // A click on a card (not on its buttons) opens it.
  boardEl.addEventListener('click', (e) => {
    const card = e.target.closest('.card');
    if (!card || e.target.closest('button, a, summary, input, select')) return;
    navigate(pages.task(card.dataset.host, card.dataset.taskId));
  });

  function newTaskForm() {
    const host = h('select', { id: 'new-task-host', name: 'host', required: true, onchange: () => showProjects() });
    const project = h('select', { id: 'new-task-project', name: 'project', required: true });
    const spec = h('input', { id: 'new-task-spec', name: 'spec_id', required: true, pattern: '[a-z0-9][a-z0-9\\-]{0,63}', maxlength: '64', placeholder: '001-login-page', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'new-task-spec-help' });
    const title = h('input', { id: 'new-task-title', name: 'title', maxlength: '200', placeholder: 'default: the spec id', autocomplete: 'off' });
    const agent = h('input', { id: 'new-task-agent', name: 'agent', placeholder: "default: the daemon's default_agent", autocomplete: 'off', spellcheck: 'false' });
    const error = h('p', { id: 'new-task-error', class: 'error', role: 'alert' });
    const submit = h('button', { type: 'submit', id: 'new-task-submit', class: 'primary', text: 'Create task' });
    const form = h(
      'form',
      { id: 'new-task-form', class: 'new-task-form', novalidate: true },
      h('label', { for: 'new-task-host', text: 'Host' }),
      host,
      h('label', { for: 'new-task-project', text: 'Project' }),
      project,
      h('label', { for: 'new-task-spec', text: 'Spec id' }),
      spec,
      h('p', { id: 'new-task-spec-help', class: 'help', text: 'Lowercase letters, digits and dashes; names the worktree, the branch and the spec directory.' }),
      h('label', { for: 'new-task-title', text: 'Title' }),
      title,
      h('label', { for: 'new-task-agent', text: 'Agent profile' }),
      agent,
      h('div', { class: 'form-actions' }, submit),
      error,
    );
    const details = h('details', { id: 'new-task', class: 'new-task' }, h('summary', { text: 'New task' }), form);
    let allProjects = [];
    function showProjects() {
      const current = project.value;
      const list = allProjects.filter((p) => p.host === host.value);
      project.replaceChildren(h('option', { value: '', text: list.length ? 'Choose a project' : 'No project registered on this host' }), ...list.map((p) => h('option', { value: p.id, text: p.name })));
      const filtered = list.some((p) => p.id === state.filter) ? state.filter : '';
      project.value = list.some((p) => p.id === current) ? current : filtered;
    }
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.textContent = '';
      const body = { host: host.value, project: project.value, spec_id: spec.value.trim() };
      if (!body.host) {
        error.textContent = 'Choose a host (aifactory-http serves the hosts of its [[hosts]] config).';
        host.focus();
        return;
      }
      if (!body.project) {
        error.textContent = `Choose a project (register one on ${body.host} with \`aifactoryctl projects add PATH\`).`;
        project.focus();
        return;
      }
      if (!SPEC_ID.test(body.spec_id)) {
        error.textContent = 'The spec id is 1 to 64 lowercase letters, digits and dashes, starting with a letter or digit.';
        spec.focus();
        return;
      }
      if (title.value.trim()) body.title = title.value.trim();
      if (agent.value.trim()) body.agent = agent.value.trim();
      submit.disabled = true;
      try {
        const made = await api.createTask(body);
        const task = { ...made, host: made.host ?? body.host };
        upsert(task, true);
        const [chosenHost, chosen] = [host.value, project.value];
        form.reset();
        host.value = chosenHost;
        showProjects();
        project.value = chosen;
        details.open = false;
        const card = cards.get(keyOf(task.host, task.id));
        if (card && card.isConnected) card.focus();
      } catch (err) {
        error.textContent = err.message;
      } finally {
        submit.disabled = false;
      }
    });
    return {
      details,
      /** The hosts to choose from (the filter's host first), and every host's projects. */
      setHosts(names, list) {
        allProjects = list;
        const current = host.value;
        host.replaceChildren(...names.map((n) => h('option', { value: n, text: downReason(n) !== null ? `${n} (down)` : n })));
        const first = names.find((n) => downReason(n) === null) || names[0] || '';
        host.value = names.includes(current) ? current : names.includes(state.hostFilter) ? state.hostFilter : first;
        showProjects();
      },
    };
  }

  renderNotices();
  loadAll();
  return () => {
    gone = true;
    clearTimeout(retryTimer);
    clearTimeout(refetchTimer);
    unsubscribe();
    unresync();
    unhost();
    if (handle.board === state) handle.board = null;
  };
}
