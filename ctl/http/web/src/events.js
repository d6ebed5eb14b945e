// The shim's event stream (GET /api/v1/events), shared by every page: every host's daemon
// events merged, each carrying its `host`, and `daemon` notices when a host goes down or comes
// back (the other hosts' events keep coming meanwhile).
//
// EventSource resumes by itself with `Last-Event-ID` after a dropped connection. When it gives
// up (an HTTP error: 401, 503), a new one is opened with `?after=<last id>` after a backoff, so
// no event is missed or doubled either way; the reason is found with a plain request, since
// EventSource does not expose the status. The id is the shim's position on every host
// (`b1:120,b2:98`): an opaque string, handed back as it came, never read as a number.

import { api } from './api.js';

const MAX_BACKOFF_MS = 5000;

// The shim names each event by its kind (`event: TaskPhase`), and EventSource delivers a named
// event only to a listener for that name: every kind of common's EventKind.
export const EVENT_KINDS = [
  'ConfigReloaded', 'ConfigRejected', 'Stopping',
  'SessionCreated', 'SessionEnded', 'SessionRemoved',
  'TaskCreated', 'TaskPhase', 'TaskProgress', 'TaskStalled', 'TaskWaitingInput', 'TaskExited',
  'TaskRemoved', 'TaskAgent', 'SessionOutputBlocked', 'SessionOutputResumed',
];

export class EventStream {
  constructor() {
    /** The `id:` of the last event received (opaque: `b1:120,b2:98`), or null before the first. */
    this.lastEventId = null;
    /** Hosts whose daemon the shim cannot reach now: name -> {reason, since}. */
    this.down = new Map();
    this.hostListeners = new Set();
    /** When the last notice about each host came (Date.now()). */
    this.noticeAt = new Map();
    /** `connecting`, `open`, `daemon_unavailable`, `retrying`, `unauthorized`, `stopped`. */
    this.state = 'stopped';
    /** Why it is not open, for people. */
    this.reason = '';
    this.source = null;
    this.since = Date.now();
    this.backoff = 500;
    this.timer = null;
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.resyncListeners = new Set();
  }

  /** `fn(event)` for each event: `{seq, at_ms, kind}` plus `name` (the kind's variant). */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  /** `fn(stream)` when the state changes. */
  onState(fn) {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }
  /** `fn({host, daemon: 'unavailable'|'available', message})` when a host goes down or comes back. */
  onHost(fn) {
    this.hostListeners.add(fn);
    return () => this.hostListeners.delete(fn);
  }
  /** `fn()` when events may have been missed (lagged, or reopened without a last id): refetch. */
  onResync(fn) {
    this.resyncListeners.add(fn);
    return () => this.resyncListeners.delete(fn);
  }

  setState(state, reason = '') {
    // `since`: when it last opened or stopped being open (a retry loop does not reset it).
    if ((state === 'open') !== (this.state === 'open')) this.since = Date.now();
    this.state = state;
    this.reason = reason;
    for (const fn of this.stateListeners) fn(this);
  }

  start() {
    if (this.source || this.timer) return;
    this.open();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
    this.setState('stopped');
  }

  open() {
    this.timer = null;
    const url = this.lastEventId === null ? '/api/v1/events' : `/api/v1/events?after=${encodeURIComponent(this.lastEventId)}`;
    const reopened = this.everOpened;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    this.setState('connecting', 'opening the event stream');
    source.onopen = () => {
      const again = this.everOpened;
      this.backoff = 500;
      this.setState('open');
      this.setHostsState();
      // Reopened without a last id: anything that happened in between is unknown.
      if (reopened && this.lastEventId === null) this.resync();
      // A host's return may have happened while the stream was away (a restarted shim has no
      // notice to send for it): ask the shim, so no host stays marked down for nothing.
      if (again && this.down.size) this.recheckHosts();
      this.everOpened = true;
    };
    source.onmessage = (e) => this.deliver(e);
    for (const kind of EVENT_KINDS) source.addEventListener(kind, (e) => this.deliver(e));
    // The shim lost a host's aifactoryd (its message says why: ssh's words, or the socket) and
    // reconnects by itself; the stream goes on meanwhile with the other hosts' events.
    source.addEventListener('daemon', (e) => {
      let notice = {};
      try {
        notice = JSON.parse(e.data);
      } catch {
        console.warn('event stream: a daemon notice that is not JSON', e.data);
        return;
      }
      this.hostNotice(notice);
    });
    source.addEventListener('lagged', (e) => {
      let missed = '?';
      try {
        missed = JSON.parse(e.data).missed;
      } catch {
        // keep '?'
      }
      console.warn(`event stream: ${missed} events were pruned before they could be sent; refetching`);
      this.resync();
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CONNECTING) {
        // The browser retries by itself, with Last-Event-ID.
        this.setState('retrying', 'the event stream dropped; the browser reconnects by itself');
        return;
      }
      source.close();
      if (this.source === source) this.source = null;
      this.diagnose();
    };
  }

  // EventSource reports no status: ask a plain route why the stream was refused.
  async diagnose() {
    let reason = 'the event stream was refused';
    try {
      await api.status();
      reason = 'the event stream was refused, though the API answers';
    } catch (e) {
      if (e.unauthorized) {
        this.error = { code: e.code, message: e.message };
        this.setState('unauthorized', e.message);
        return;
      }
      reason = e.message;
    }
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.setState('retrying', `${reason}; retrying in ${Math.round(wait / 1000) || 1} s`);
    this.timer = setTimeout(() => this.open(), wait);
  }

  hostNotice(notice) {
    const host = notice.host ?? '';
    this.noticeAt.set(host, Date.now());
    if (notice.daemon === 'unavailable') {
      const was = this.down.get(host);
      this.down.set(host, { reason: notice.message || 'aifactoryd does not answer', since: was ? was.since : Date.now() });
    } else if (notice.daemon === 'available') {
      this.down.delete(host);
    } else {
      console.warn('event stream: a daemon notice this page does not know', notice);
      return;
    }
    for (const fn of this.hostListeners) {
      try {
        fn({ ...notice, host });
      } catch (err) {
        console.error('host listener failed', err);
      }
    }
    this.setHostsState();
  }

  /** Takes the hosts' states from `GET /api/v1/hosts` (a page that fetched it): a host down
   * there that no notice reported yet (it went down before the stream opened), or back up.
   * `askedAt` (Date.now() when it was asked): a notice since then is newer and wins. */
  syncHosts(hosts, askedAt) {
    for (const host of hosts) {
      if ((this.noticeAt.get(host.name) ?? -Infinity) >= askedAt) continue;
      if (host.state === 'down' && !this.down.has(host.name)) this.hostNotice({ daemon: 'unavailable', host: host.name, message: host.reason });
      else if (host.state === 'up' && this.down.has(host.name)) this.hostNotice({ daemon: 'available', host: host.name });
    }
  }

  recheckHosts() {
    const askedAt = Date.now();
    api.hosts().then(
      (hosts) => this.syncHosts(hosts, askedAt),
      (e) => console.warn('event stream: cannot ask the shim for its hosts:', e.message),
    );
  }

  /** `daemon_unavailable` while any host is down (the reason names them), else open. */
  setHostsState() {
    if (this.state !== 'open' && this.state !== 'daemon_unavailable') return;
    if (!this.down.size) {
      this.setState('open');
      return;
    }
    const reasons = [...this.down].map(([host, d]) => `aifactoryd on ${host || 'its host'} is unavailable: ${d.reason}`);
    this.setState('daemon_unavailable', reasons.join('; '));
  }

  deliver(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      console.warn('event stream: an event that is not JSON', message.data);
      return;
    }
    if (message.lastEventId) this.lastEventId = message.lastEventId;
    const kind = event.kind;
    event.name = typeof kind === 'string' ? kind : Object.keys(kind || {})[0];
    event.data = typeof kind === 'string' ? {} : kind[event.name];
    for (const fn of this.listeners) {
      try {
        fn(event);
      } catch (e) {
        console.error('event listener failed', e);
      }
    }
  }

  resync() {
    for (const fn of this.resyncListeners) fn();
  }
}
