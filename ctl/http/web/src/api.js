// The REST API, same-origin with the login cookie (the page never sees the token).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    /** HTTP status; 0 when the shim could not be reached at all. */
    this.status = status;
    /** The API's stable code (`missing_token`, `daemon_unavailable`, `not_found`, ...). */
    this.code = code;
  }
  get unauthorized() {
    return this.status === 401;
  }
}

const listeners = new Set();
/** `fn(error)` runs on every 401 answer (the app sends the page to /login). */
export function onUnauthorized(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText || 'error'}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's page?): keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/**
 * One request. `body` (an object) is sent as JSON. Resolves to the parsed JSON body, or null
 * for an empty answer (204); rejects with an ApiError.
 */
export async function request(method, path, { body, query, signal, quiet401 = false } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
    const q = params.toString();
    if (q) url += (url.includes('?') ? '&' : '?') + q;
  }
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', `aifactory-http cannot be reached (${e && e.message ? e.message : e}): is it running, and is this the right address?`);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (error.unauthorized && !quiet401) for (const fn of listeners) fn(error);
    throw error;
  }
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

const enc = encodeURIComponent;
// Objects live on a host: every object route is addressed by (host, id).
const on = (host, kind, id) => `/api/v1/hosts/${enc(host)}/${kind}/${enc(id)}`;

export const api = {
  status: () => request('GET', '/api/v1/status'),
  hosts: () => request('GET', '/api/v1/hosts'),
  host: (name) => request('GET', `/api/v1/hosts/${enc(name)}`),
  projects: () => request('GET', '/api/v1/projects'),
  tasks: ({ project, host } = {}) => request('GET', '/api/v1/tasks', { query: { project, host } }),
  task: (host, id) => request('GET', on(host, 'tasks', id)),
  createTask: (task) => request('POST', '/api/v1/tasks', { body: task }),
  startTask: (host, id) => request('POST', `${on(host, 'tasks', id)}/start`, { body: {} }),
  stopTask: (host, id) => request('POST', `${on(host, 'tasks', id)}/stop`, { body: {} }),
  restartTask: (host, id, fresh) => request('POST', `${on(host, 'tasks', id)}/restart`, { query: { fresh: fresh ? 'true' : 'false' }, body: {} }),
  /** `prune`: its worktree goes too; `force`: even with uncommitted changes. */
  removeTask: (host, id, { prune = false, force = false } = {}) =>
    request('DELETE', on(host, 'tasks', id), { query: { prune: prune || undefined, force: force || undefined } }),
  attempts: (host, id) => request('GET', `${on(host, 'tasks', id)}/attempts`),
  transcript: (host, id, after) => request('GET', `${on(host, 'tasks', id)}/transcript`, { query: { after } }),
  sessions: () => request('GET', '/api/v1/sessions'),
  session: (host, id, opts) => request('GET', on(host, 'sessions', id), opts),
  /** The console WebSocket's path (the page adds the scheme, host and `?from=`). */
  consolePath: (host, id) => `${on(host, 'sessions', id)}/console`,
  doctor: () => request('GET', '/api/v1/doctor'),
  login: (credential) => request('POST', '/api/v1/login', { body: credential, quiet401: true }),
  logout: () => request('POST', '/api/v1/logout', { body: {}, quiet401: true }),
};

/** The page's own URLs of an object: `/hosts/{host}/tasks/{id}`, `/hosts/{host}/sessions/{id}/console`. */
export const pages = {
  task: (host, id) => `/hosts/${enc(host)}/tasks/${enc(id)}`,
  console: (host, id) => `/hosts/${enc(host)}/sessions/${enc(id)}/console`,
};

/** The key of an object on the page: ids are a host's own, so (host, id) names one. */
export const keyOf = (host, id) => `${host}/${id}`;
