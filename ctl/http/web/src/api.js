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

export const api = {
  status: () => request('GET', '/api/v1/status'),
  projects: () => request('GET', '/api/v1/projects'),
  tasks: (project) => request('GET', '/api/v1/tasks', { query: { project } }),
  task: (id) => request('GET', `/api/v1/tasks/${enc(id)}`),
  createTask: (task) => request('POST', '/api/v1/tasks', { body: task }),
  startTask: (id) => request('POST', `/api/v1/tasks/${enc(id)}/start`, { body: {} }),
  stopTask: (id) => request('POST', `/api/v1/tasks/${enc(id)}/stop`, { body: {} }),
  restartTask: (id, fresh) => request('POST', `/api/v1/tasks/${enc(id)}/restart`, { query: { fresh: fresh ? 'true' : 'false' }, body: {} }),
  removeTask: (id) => request('DELETE', `/api/v1/tasks/${enc(id)}`),
  attempts: (id) => request('GET', `/api/v1/tasks/${enc(id)}/attempts`),
  transcript: (id, after) => request('GET', `/api/v1/tasks/${enc(id)}/transcript`, { query: { after } }),
  sessions: () => request('GET', '/api/v1/sessions'),
  session: (id, opts) => request('GET', `/api/v1/sessions/${enc(id)}`, opts),
  doctor: () => request('GET', '/api/v1/doctor'),
  login: (credential) => request('POST', '/api/v1/login', { body: credential, quiet401: true }),
  logout: () => request('POST', '/api/v1/logout', { body: {}, quiet401: true }),
};
