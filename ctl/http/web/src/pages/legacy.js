// `/tasks/{id}` and `/sessions/{id}`: the URLs of a task and a console from before the shim
// served several hosts (links kept in notes, bookmarks). The id alone does not say which host
// it is on: the page looks it up in the shim's lists and moves to its hosted URL
// (`/hosts/{host}/...`), or lists the hosts when more than one has that id.

import { api, pages } from '../api.js';
import { h } from '../dom.js';

function resolver(what, list, target) {
  return (main, [id], { navigate }) => {
    const status = h('p', { id: 'legacy-status', class: 'help', text: `Finding the host of ${what} ${id}…` });
    const error = h('p', { id: 'legacy-error', class: 'error', role: 'alert' });
    main.append(h('h1', { text: `${what[0].toUpperCase()}${what.slice(1)} ${id}` }), status, error);
    let gone = false;
    list().then(
      (objects) => {
        if (gone) return;
        const found = objects.filter((o) => o.id === id);
        if (found.length === 1) {
          navigate(target(found[0].host, id), null, { replace: true });
        } else if (!found.length) {
          status.textContent = '';
          error.textContent = `No ${what} ${id} on any host that is up (a host that is down is not listed: see Hosts).`;
        } else {
          status.replaceChildren(`${found.length} hosts have a ${what} ${id}: `, ...found.flatMap((o, i) => [i ? ', ' : '', h('a', { href: target(o.host, id), text: o.host })]));
        }
      },
      (e) => {
        if (!gone && !e.unauthorized) error.textContent = `Cannot look ${what} ${id} up: ${e.message}`;
      },
    );
    return () => {
      gone = true;
    };
  };
}

/** Pages as main.js mounts them. */
export const task = { mount: resolver('task', () => api.tasks(), pages.task) };
export const sessionConsole = { mount: resolver('session', () => api.sessions(), pages.console) };
