// `/hosts/{host}/tasks/{id}`: one task of one host, and its agent's transcript as a
// conversation that follows live.

import { api, pages } from '../api.js';
import { bytes, cost, cpuTime, duration, exitText, h, time, tokens } from '../dom.js';
import { actionButtons, badges, progressOf, runAction, stallText } from './board.js';

function usageLine(usage) {
  if (!usage) return '';
  const parts = [`${tokens(usage.input_tokens)} in`, `${tokens(usage.output_tokens)} out`];
  if (usage.cache_read_tokens) parts.push(`${tokens(usage.cache_read_tokens)} cache read`);
  if (usage.cache_write_tokens) parts.push(`${tokens(usage.cache_write_tokens)} cache write`);
  parts.push(cost(usage.cost_usd));
  return parts.join(' · ');
}

/** The transcript as a conversation; tool results are folded into their calls. */
class Conversation {
  constructor() {
    this.element = h('ol', { id: 'transcript', class: 'transcript', 'aria-label': 'Transcript' });
    this.lastSeq = 0;
    this.lastAttempt = null;
    /** call_id -> the <details> of the call, for its result. */
    this.calls = new Map();
    /** The latest call without a result, for results without a call_id. */
    this.openCall = null;
    this.count = 0;
  }

  add(entry) {
    if (entry.seq <= this.lastSeq) return; // already shown (a refetch overlapping the live stream)
    this.lastSeq = entry.seq;
    this.count++;
    if (entry.attempt !== this.lastAttempt) {
      this.lastAttempt = entry.attempt;
      this.element.append(h('li', { class: 'entry entry-attempt', 'data-attempt': entry.attempt }, h('h3', { text: `Attempt ${entry.attempt}` })));
    }
    const [kind, body] = typeof entry.event === 'string' ? [entry.event, {}] : Object.entries(entry.event)[0];
    const stamp = time(entry.at);
    const li = (cls, ...children) => h('li', { class: `entry entry-${cls}`, 'data-seq': entry.seq, 'data-kind': kind }, ...children);
    switch (kind) {
      case 'started':
        this.element.append(li('started', h('p', { class: 'meta' }, 'Conversation ', h('code', { text: body.agent_session_id }), body.model ? ` with ${body.model}` : '', body.tools && body.tools.length ? ` · ${body.tools.length} tools` : '', ' · ', stamp)));
        break;
      case 'message':
        this.element.append(li('message', h('div', { class: 'bubble' }, h('p', { class: 'text', text: body.text })), h('p', { class: 'meta' }, stamp)));
        break;
      case 'tool_call': {
        const result = h('div', { class: 'tool-result pending', text: 'no result yet' });
        const details = h(
          'details',
          { class: 'tool' },
          h('summary', {}, h('span', { class: 'tool-name', text: body.tool }), ' ', h('span', { class: 'tool-summary', text: body.summary })),
          result,
        );
        details.result = result;
        if (body.call_id) this.calls.set(body.call_id, details);
        this.openCall = details;
        this.element.append(li('tool_call', details));
        break;
      }
      case 'tool_result': {
        const target = (body.call_id && this.calls.get(body.call_id)) || (!body.call_id && this.openCall) || null;
        const text = h('pre', { class: 'tool-output', text: body.summary });
        if (target && target.result.classList.contains('pending')) {
          target.result.className = `tool-result ${body.ok ? 'ok' : 'failed'}`;
          target.result.replaceChildren(h('span', { class: 'result-status', text: body.ok ? 'ok' : 'error' }), text);
          if (!body.ok) target.classList.add('failed');
          if (target === this.openCall) this.openCall = null;
        } else {
          this.element.append(li('tool_result', h('details', { class: `tool ${body.ok ? '' : 'failed'}`.trim() }, h('summary', {}, h('span', { class: 'tool-name', text: body.tool || 'tool' }), ' result', body.ok ? '' : ' (error)'), text)));
        }
        break;
      }
      case 'denied':
        this.element.append(li('denied', h('p', { class: 'denied' }, h('strong', { text: 'Denied: ' }), h('span', { class: 'tool-name', text: body.tool }), ' ', body.summary)));
        break;
      case 'result':
        this.element.append(
          li(
            'result',
            h('p', { class: `result-line ${body.ok ? 'ok' : 'failed'}` }, h('strong', { text: body.ok ? 'Finished' : 'Failed' }), ` (${body.status})`, body.turns !== null && body.turns !== undefined ? ` · ${body.turns} turns` : '', body.duration_ms ? ` · ${duration(body.duration_ms)}` : '', ' · ', usageLine(body.usage)),
            body.message ? h('div', { class: 'bubble result-message' }, h('p', { class: 'text', text: body.message })) : null,
          ),
        );
        break;
      default:
        this.element.append(li('unknown', h('pre', { text: JSON.stringify(entry.event) })));
    }
  }
}

export function mount(main, [host, id], { events, navigate, handle }) {
  const header = h('div', { class: 'task-header' }, h('h1', { id: 'task-title', text: id }));
  const error = h('p', { id: 'task-error', class: 'error', role: 'alert' });
  const info = h('section', { id: 'task-info', class: 'task-info', 'aria-label': 'Task' });
  const conversation = new Conversation();
  const dropped = h('p', { class: 'help', id: 'transcript-dropped', hidden: true });
  const empty = h('p', { class: 'help', id: 'transcript-empty', text: 'Loading the transcript…' });
  const attemptsEl = h('ol', { id: 'attempts', class: 'attempts' });
  const follow = h('label', { class: 'follow' }, h('input', { type: 'checkbox', id: 'transcript-follow', checked: true }), ' Follow');
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '/', text: '← Board' })),
    header,
    error,
    info,
    h('section', { class: 'attempts-section', 'aria-labelledby': 'attempts-title' }, h('h2', { id: 'attempts-title', text: 'Attempts' }), attemptsEl),
    h('section', { class: 'conversation', 'aria-labelledby': 'transcript-title' }, h('div', { class: 'section-head' }, h('h2', { id: 'transcript-title', text: 'Transcript' }), follow), dropped, empty, conversation.element),
  );
  const state = { host, id, task: null, conversation, transcript: conversation.element, attempts: [], error: null };
  handle.task = state;
  let gone = false;

  function report(message) {
    state.error = message || null;
    error.textContent = message;
  }

  function renderInfo(task) {
    state.task = task;
    header.replaceChildren(h('h1', { id: 'task-title' }, h('span', { class: 'card-spec', text: task.spec_id }), ' ', task.title), h('p', { class: 'badges' }, h('span', { class: `phase phase-${task.phase}`, 'data-phase': task.phase, text: task.phase }), badges(task)));
    const { percent, subtasks } = progressOf(task);
    const rows = [
      ['Host', h('a', { id: 'task-host', href: '/hosts', text: host })],
      ['Project', task.project_name],
      ['Agent', task.agent],
      ['Progress', h('span', {}, h('progress', { max: '100', value: String(percent ?? 0) }), ' ', subtasks || (percent === null ? 'nothing reported yet' : `${percent}%`))],
      ['Attempts', String(task.attempts)],
      ['Usage', usageLine(task.usage) + (task.turns ? ` · ${task.turns} turns` : '')],
      ['Session', task.session_id ? h('a', { id: 'task-console-link', href: pages.console(host, task.session_id), text: `Live Console (${task.session_id})` }) : 'none yet'],
      ['Branch', h('code', { text: task.branch })],
      ['Worktree', h('code', { text: task.worktree })],
      ['Last tool', task.last_tool || '—'],
      ['Last output', time(task.last_output_at)],
      ['Updated', time(task.updated_at)],
    ];
    if (task.waiting_input) rows.push(['Waiting for input', h('pre', { class: 'prompt', text: task.waiting_input })]);
    if (task.stall) rows.push(['Stalled', stallText(task.stall)]);
    if (task.last_error) rows.push(['Last error', h('span', { class: 'error-text', text: task.last_error })]);
    if (task.failure) rows.push(['Failure', h('span', {}, h('span', { class: 'badge badge-failure', 'data-kind': task.failure.kind, text: task.failure.kind }), ' ', task.failure.message, h('br'), h('strong', { text: 'Fix: ' }), task.failure.fix)]);
    if (task.resources) {
      const r = task.resources;
      rows.push(['Resources', `${cpuTime(r.cpu_usec)} · ${bytes(r.memory_bytes)} memory (peak ${bytes(r.memory_peak_bytes)}${r.memory_max ? ` of ${bytes(r.memory_max)}` : ''}) · ${r.processes} processes${r.oom_kills ? ` · ${r.oom_kills} OOM kills` : ''}`]);
    }
    if (task.confinement) rows.push(['Confinement', task.confinement]);
    const notes = (task.notes || []).length ? h('ul', { id: 'task-notes', class: 'notes' }, task.notes.map((n) => h('li', { text: n }))) : h('p', { class: 'help', text: 'No progress notes yet.' });
    info.replaceChildren(
      h('div', { class: 'task-actions' }, actionButtons(task, act, events.down.has(host) ? `host ${host} is down: ${events.down.get(host).reason}` : null)),
      h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)])),
      h('h2', { text: 'Progress notes' }),
      notes,
    );
    renderAttempts();
  }

  // An action's answer is the task as it was when the daemon answered: after an event for the
  // task (the agent moving on), it is older than what the page shows, so the page asks again.
  let eventsSeen = 0;
  function act(action, task) {
    const since = eventsSeen;
    runAction(action, task, {
      report,
      onDone: (r) => {
        if (gone) return;
        if (r && r.removed) navigate('/');
        else if (r && r.id) {
          if (eventsSeen === since) renderInfo(r);
          else loadTask();
        }
      },
    });
  }

  /** Every attempt, oldest first, from the daemon's record (GET /tasks/{id}/attempts). */
  function renderAttempts() {
    const list = state.attempts || [];
    attemptsEl.replaceChildren(...(list.length ? list.map(attemptItem) : [h('li', { class: 'help', text: 'Not started yet.' })]));
  }

  function attemptItem(a) {
    const r = a.resources;
    return h(
      'li',
      { 'data-attempt': String(a.n), 'data-run-attempt': String(a.attempt), 'data-state': a.ended_at ? 'ended' : 'running' },
      h('strong', { text: `#${a.n}` }),
      a.attempt > 1 ? ` (attempt ${a.attempt} of its run)` : '',
      ` · ${a.ended_at ? (a.exit ? exitText(a.exit) : 'ended without an exit status') : 'running'}`,
      a.failure ? [' · ', h('span', { class: 'badge badge-failure', 'data-kind': a.failure.kind, title: `${a.failure.message}\nFix: ${a.failure.fix}`, text: a.failure.kind })] : '',
      r ? ` · ${cpuTime(r.cpu_usec)} · peak ${bytes(r.memory_peak_bytes ?? r.memory_bytes)}` : '',
      ' · started ',
      time(a.started_at),
      a.reason ? h('p', { class: 'attempt-reason help', text: a.reason }) : '',
    );
  }

  function followScroll() {
    if (document.getElementById('transcript-follow')?.checked) conversation.element.lastElementChild?.scrollIntoView({ block: 'end' });
  }

  // A request that did not get through (the shim unreachable, the network changed under the
  // browser) is tried again; a host that is down is asked again when its notice says it is back.
  let taskRetry = null;
  async function loadTask() {
    clearTimeout(taskRetry);
    try {
      const [task, attempts] = await Promise.all([api.task(host, id), api.attempts(host, id)]);
      if (gone) return;
      state.attempts = attempts;
      if (error.textContent.startsWith(`Cannot load task ${id}`)) report('');
      renderInfo(task);
    } catch (e) {
      if (gone || e.unauthorized) return;
      if (e.status === 404) {
        report(`No task ${id} on ${host}: ${e.message}`);
        return;
      }
      const again = e.status === 0 || (e.status >= 500 && !events.down.has(host));
      report(`Cannot load task ${id} on ${host}: ${e.message}${again ? '; trying again in 3 s' : ''}`);
      if (again) taskRetry = setTimeout(loadTask, 3000);
    }
  }

  // Entries arrive in order; a gap (missed while away) is fetched. Until the first fetch is in,
  // live entries wait, so none is shown out of order.
  let transcriptLoaded = false;
  const queued = [];
  function liveEntry(entry) {
    if (!transcriptLoaded || loadingTranscript) {
      queued.push(entry);
      return;
    }
    if (entry.seq === conversation.lastSeq + 1) {
      conversation.add(entry);
      empty.hidden = true;
      followScroll();
    } else if (entry.seq > conversation.lastSeq) {
      loadTranscript();
    }
  }

  let loadingTranscript = false;
  let transcriptRetry = null;
  async function loadTranscript() {
    if (loadingTranscript) return;
    loadingTranscript = true;
    let ok = false;
    try {
      const t = await api.transcript(host, id, conversation.lastSeq || undefined);
      if (gone) return;
      if (t.dropped && !conversation.count) {
        dropped.hidden = false;
        dropped.textContent = `${t.dropped} older entries were dropped to keep the transcript bounded.`;
      }
      for (const entry of t.entries) conversation.add(entry);
      empty.hidden = conversation.count > 0;
      empty.textContent = 'The agent has said nothing yet.';
      transcriptLoaded = true;
      ok = true;
      if (error.textContent.startsWith('Cannot load the transcript')) error.textContent = '';
      followScroll();
    } catch (e) {
      if (!gone && !e.unauthorized) {
        report(`Cannot load the transcript: ${e.message}; trying again in 3 s`);
        clearTimeout(transcriptRetry);
        transcriptRetry = setTimeout(loadTranscript, 3000);
      }
    } finally {
      loadingTranscript = false;
    }
    if (ok && queued.length) {
      const waiting = queued.splice(0).sort((a, b) => a.seq - b.seq);
      for (const entry of waiting) liveEntry(entry);
    }
  }

  let refetchTimer = null;
  const unsubscribe = events.subscribe((ev) => {
    const d = ev.data || {};
    const task = state.task;
    if (ev.host !== host || !d.task_id || (d.task_id !== id && (!task || d.task_id !== task.id))) return;
    eventsSeen++;
    if (ev.name === 'TaskAgent') {
      liveEntry(d.entry);
      if (!(d.entry.event && d.entry.event.result)) return;
    }
    if (ev.name === 'TaskRemoved') {
      report('This task was removed.');
      return;
    }
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(loadTask, 100);
  });
  const unresync = events.onResync(() => {
    loadTask();
    loadTranscript();
  });
  // Its host down: said above the task, its actions off; back: everything fetched again.
  const unhost = events.onHost((notice) => {
    if (notice.host !== host) return;
    if (notice.daemon === 'unavailable') {
      report(`Host ${host} is down: ${notice.message}. This page shows the task as it was; it updates when the host is back.`);
      if (state.task) renderInfo(state.task);
    } else {
      if (error.textContent.startsWith(`Host ${host} is down`)) report('');
      loadTask();
      loadTranscript();
    }
  });

  loadTask().then(loadTranscript);
  return () => {
    gone = true;
    clearTimeout(refetchTimer);
    clearTimeout(transcriptRetry);
    clearTimeout(taskRetry);
    unsubscribe();
    unresync();
    unhost();
    if (handle.task === state) handle.task = null;
  };
}
