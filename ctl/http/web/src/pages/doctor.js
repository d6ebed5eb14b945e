// `/doctor`: the doctor's checks (GET /api/v1/doctor), each with its fix.

import { api } from '../api.js';
import { h } from '../dom.js';

export function mount(main, _params, { handle }) {
  const error = h('p', { id: 'doctor-error', class: 'error', role: 'alert' });
  const list = h('ul', { id: 'doctor-checks', class: 'checks' });
  const summary = h('p', { id: 'doctor-summary', class: 'help', text: 'Running the checks…' });
  const again = h('button', { type: 'button', id: 'doctor-rerun', text: 'Check again', onclick: () => load() });
  main.append(h('div', { class: 'toolbar' }, h('h1', { text: 'Doctor' }), again), summary, error, list);
  const state = { checks: null, supported: null, element: list, refresh: () => load() };
  handle.doctor = state;
  let gone = false;

  async function load() {
    again.disabled = true;
    error.textContent = '';
    try {
      const checks = await api.doctor();
      if (gone) return;
      state.checks = checks;
      state.supported = true;
      const by = (s) => checks.filter((c) => c.status === s).length;
      summary.textContent = `${checks.length} checks: ${by('ok')} ok, ${by('warn')} warnings, ${by('fail')} failures, ${by('skip')} skipped.`;
      list.replaceChildren(
        ...checks.map((c) =>
          h(
            'li',
            { class: `check check-${c.status}`, 'data-status': c.status, 'data-check': c.check },
            h('span', { class: `status-badge status-${c.status}`, text: c.status.toUpperCase() }),
            ' ',
            h('strong', { class: 'check-name', text: c.check }),
            h('p', { class: 'check-message', text: c.message }),
            c.fix ? h('p', { class: 'check-fix' }, h('span', { text: 'Fix: ' }), h('code', { text: c.fix })) : null,
          ),
        ),
      );
    } catch (e) {
      if (gone || e.unauthorized) return;
      if (e.status === 404 && (e.code === 'no_route' || e.code === 'http_404')) {
        state.supported = false;
        summary.textContent = '';
        error.textContent = 'This aifactory-http does not offer the doctor (GET /api/v1/doctor answers 404): run `aifactoryctl doctor` on the server instead.';
      } else {
        error.textContent = `The doctor cannot run: ${e.message}`;
      }
    } finally {
      again.disabled = false;
    }
  }

  load();
  return () => {
    gone = true;
    if (handle.doctor === state) handle.doctor = null;
  };
}
