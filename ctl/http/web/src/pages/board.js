// `/`: the board. One column per phase, a card per task, live from the event stream.

import { api } from '../api.js';
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
      result = await api.startTask(task.id);
    } else if (action === 'stop') {
      const ok = await ask({ title: `Stop ${name}?`, message: `The agent of “${task.title}” gets SIGTERM, then SIGKILL after 5 seconds.`, actions: [{ label: 'Stop', value: 'stop', danger: true }] });
      if (!ok) return;
      result = (await api.stopTask(task.id)).task;
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
      result = await api.restartTask(task.id, how === 'fresh');
    } else if (action === 'remove') {
      const ok = await ask({ title: `Remove ${name}?`, message: `Forgets the task “${task.title}” (its worktree stays).`, actions: [{ label: 'Remove', value: 'remove', danger: true }] });
      if (!ok) return;
      try {
        await api.removeTask(task.id);
      } catch (e) {
        if (e.code === 'method_not_allowed' || e.code === 'no_route') {
          e.message = `this aifactory-http does not offer removing a task (${e.message}); use \`aifactoryctl tasks remove ${name}\``;
        }
        throw e;
      }
      result = { removed: task.id };
    }
    if (onDone) onDone(result);
  } catch (e) {
    report(`${action} ${name}: ${e.message}`, e);
  }
}

export function actionButtons(task, handler) {
  const active = ACTIVE.has(task.phase);
  const b = (action, label, cls = '') => h('button', { type: 'button', class: `action ${cls}`.trim(), 'data-action': action, 'aria-label': `${label} ${task.spec_id}`, text: label, onclick: (e) => handler(action, task, e) });
  return [!active && b('start', 'Start', 'primary'), active && b('stop', 'Stop', 'danger'), task.phase !== 'backlog' && b('restart', 'Restart'), !active && b('remove', 'Remove', 'danger')];
}

export function mount(main, _params, { events, navigate, handle }) {
  const tasks = new Map();
  let projects = [];
  const params = new URLSearchParams(location.search);
  const state = {
    tasks,
    projects,
    filter: params.get('project') || '',
    loaded: false,
    error: null,
    element: null,
    columns: {},
    card: (id) => cards.get(id) || null,
    refresh: () => loadAll(),
  };
  handle.board = state;
  const cards = new Map();

  // Toolbar: project filter and the new task form.
  const filter = h('select', { id: 'project-filter', onchange: () => setFilter(filter.value) }, h('option', { value: '', text: 'All projects' }));
  const boardError = h('p', { id: 'board-error', class: 'error', role: 'alert' });
  const newTask = newTaskForm();
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    h('h1', { text: 'Board' }),
    h('label', { for: 'project-filter', class: 'filter-label', text: 'Project' }),
    filter,
    newTask.details,
  );
  const boardEl = h('div', { id: 'board', class: 'board', 'aria-label': 'Tasks by phase', role: 'region' });
  state.element = boardEl;
  const hint = h('p', { class: 'help board-hint', text: 'Arrow keys move between cards and columns; Enter opens a task.' });
  main.append(toolbar, boardError, boardEl, hint);

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

  function visible(task) {
    return !state.filter || task.project_id === state.filter || task.project_name === state.filter;
  }

  function setFilter(value) {
    state.filter = value;
    const url = new URL(location.href);
    if (value) url.searchParams.set('project', value);
    else url.searchParams.delete('project');
    history.replaceState(history.state, '', url.pathname + url.search);
    renderAll();
  }

  function handleAction(action, task) {
    const since = lastEvent.get(task.id);
    runAction(action, task, {
      report,
      onDone: (result) => {
        boardError.textContent = '';
        if (result && result.removed) removeTask(result.removed);
        else if (result && result.id) {
          // The answer is the task as it was when the daemon answered; events that came since
          // (the agent moving on) are newer, and it must not step the card back: ask again.
          if (lastEvent.get(result.id) === since) upsert(result, true);
          else refetch(result.id);
        }
      },
    });
  }

  function renderCard(task) {
    let card = cards.get(task.id);
    const cardId = `card-${task.id}`;
    if (!card) {
      card = h('article', { class: 'card', id: cardId, tabindex: '0', 'data-task-id': task.id, 'aria-labelledby': `${cardId}-title` });
      card.item = h('li', {}, card);
      cards.set(task.id, card);
    }
    card.dataset.phase = task.phase;
    const { percent, subtasks } = progressOf(task);
    const c = task.usage ? task.usage.cost_usd : null;
    card.replaceChildren(
      h('div', { class: 'card-head' }, h('a', { class: 'card-spec', href: `/tasks/${encodeURIComponent(task.id)}`, tabindex: '-1', text: task.spec_id }), h('span', { class: 'card-project', text: task.project_name })),
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
      h('p', { class: 'badges' }, badges(task)),
      h('div', { class: 'card-actions' }, actionButtons(task, handleAction)),
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
    // Oldest first within a column.
    const siblings = [...col.list.children].filter((li) => li !== card.item);
    const before = siblings.find((li) => {
      const other = tasks.get(li.firstChild.dataset.taskId);
      return other && (other.created_at > task.created_at || (other.created_at === task.created_at && other.id > task.id));
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
    const old = tasks.get(task.id);
    // A stale answer (a list fetched before a refetch of the same task) never wins.
    if (old && !force && old.updated_at && task.updated_at && task.updated_at < old.updated_at) return;
    tasks.set(task.id, task);
    place(renderCard(task), task);
    counts();
  }

  function removeTask(id) {
    tasks.delete(id);
    const card = cards.get(id);
    if (card) {
      card.item.remove();
      cards.delete(id);
    }
    counts();
  }

  function renderAll() {
    for (const task of tasks.values()) place(renderCard(task), task);
    counts();
  }

  function renderProjects() {
    const current = state.filter;
    filter.replaceChildren(h('option', { value: '', text: 'All projects' }), ...projects.map((p) => h('option', { value: p.id, text: p.name })));
    // A filter given by name in the URL selects that project.
    const byName = projects.find((p) => p.name === current);
    filter.value = byName ? byName.id : current;
    if (byName) state.filter = byName.id;
    newTask.setProjects(projects);
  }

  let gone = false;
  async function loadAll() {
    try {
      const [list, projs] = await Promise.all([api.tasks(), api.projects()]);
      if (gone) return;
      projects = projs;
      state.projects = projs;
      renderProjects();
      const seen = new Set(list.map((t) => t.id));
      for (const id of [...tasks.keys()]) if (!seen.has(id)) removeTask(id);
      for (const t of list) upsert(t);
      renderAll();
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

  // One GET per task, however many events arrive for it at once. A GET that was under way when a
  // newer event for its task arrived may answer with the older state: it is dropped and asked
  // again (otherwise a card would step back a column and forward again).
  const pending = new Set();
  const lastEvent = new Map();
  let refetchTimer = null;
  function refetch(id) {
    pending.add(id);
    if (!refetchTimer) refetchTimer = setTimeout(flush, 100);
  }
  async function flush() {
    refetchTimer = null;
    const ids = [...pending];
    pending.clear();
    await Promise.all(
      ids.map(async (id) => {
        const since = lastEvent.get(id);
        try {
          const t = await api.task(id);
          if (gone) return;
          if (lastEvent.get(id) === since) upsert(t, true);
          else refetch(id);
        } catch (e) {
          if (gone) return;
          if (e.status === 404) removeTask(id);
          else if (!e.unauthorized) report(`Cannot refresh task ${id}: ${e.message}`);
        }
      }),
    );
  }

  function patch(id, changes) {
    const t = tasks.get(id);
    if (!t) return false;
    const next = { ...t, ...changes };
    tasks.set(id, next);
    place(renderCard(next), next);
    counts();
    return true;
  }

  const unsubscribe = events.subscribe((ev) => {
    const d = ev.data || {};
    if (d.task_id) lastEvent.set(d.task_id, ev.seq);
    switch (ev.name) {
      case 'TaskPhase':
        // The card moves at once; the refetch brings the rest.
        patch(d.task_id, { phase: d.to });
        refetch(d.task_id);
        break;
      case 'TaskProgress': {
        const t = tasks.get(d.task_id);
        if (t) patch(d.task_id, { progress: d.progress, notes: d.note ? [...(t.notes || []), d.note].slice(-20) : t.notes });
        else refetch(d.task_id);
        break;
      }
      case 'TaskStalled':
        patch(d.task_id, { stall: d.evidence });
        refetch(d.task_id);
        break;
      case 'TaskWaitingInput':
        patch(d.task_id, { waiting_input: d.prompt });
        refetch(d.task_id);
        break;
      case 'TaskRemoved':
        removeTask(d.task_id);
        break;
      case 'TaskCreated':
      case 'TaskExited':
        refetch(d.task_id);
        break;
      case 'TaskAgent':
        // Usage and cost change with a result; the rest of the transcript is the task page's.
        if (d.entry && d.entry.event && d.entry.event.result) refetch(d.task_id);
        break;
      default:
    }
  });
  const unresync = events.onResync(() => loadAll());

  // Keyboard: arrows between cards and columns, Enter opens the task.
  boardEl.addEventListener('keydown', (e) => {
    const card = e.target.closest && e.target.closest('.card');
    if (!card || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === 'Enter' && e.target === card) {
      e.preventDefault();
      navigate(`/tasks/${encodeURIComponent(card.dataset.taskId)}`);
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
    navigate(`/tasks/${encodeURIComponent(card.dataset.taskId)}`);
  });

  function newTaskForm() {
    const project = h('select', { id: 'new-task-project', name: 'project', required: true });
    const spec = h('input', { id: 'new-task-spec', name: 'spec_id', required: true, pattern: '[a-z0-9][a-z0-9\\-]{0,63}', maxlength: '64', placeholder: '001-login-page', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'new-task-spec-help' });
    const title = h('input', { id: 'new-task-title', name: 'title', maxlength: '200', placeholder: 'default: the spec id', autocomplete: 'off' });
    const agent = h('input', { id: 'new-task-agent', name: 'agent', placeholder: "default: the daemon's default_agent", autocomplete: 'off', spellcheck: 'false' });
    const error = h('p', { id: 'new-task-error', class: 'error', role: 'alert' });
    const submit = h('button', { type: 'submit', id: 'new-task-submit', class: 'primary', text: 'Create task' });
    const form = h(
      'form',
      { id: 'new-task-form', class: 'new-task-form', novalidate: true },
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
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.textContent = '';
      const body = { project: project.value, spec_id: spec.value.trim() };
      if (!body.project) {
        error.textContent = 'Choose a project (register one with `aifactoryctl projects add PATH`).';
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
        const task = await api.createTask(body);
        upsert(task, true);
        const chosen = project.value;
        form.reset();
        project.value = chosen;
        details.open = false;
        const card = cards.get(task.id);
        if (card && card.isConnected) card.focus();
      } catch (err) {
        error.textContent = err.message;
      } finally {
        submit.disabled = false;
      }
    });
    return {
      details,
      setProjects(list) {
        const current = project.value;
        project.replaceChildren(h('option', { value: '', text: list.length ? 'Choose a project' : 'No project registered' }), ...list.map((p) => h('option', { value: p.id, text: p.name })));
        project.value = list.some((p) => p.id === current) ? current : state.filter || '';
      },
    };
  }

  loadAll();
  return () => {
    gone = true;
    clearTimeout(retryTimer);
    clearTimeout(refetchTimer);
    unsubscribe();
    unresync();
    if (handle.board === state) handle.board = null;
  };
}
