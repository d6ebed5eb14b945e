#!/usr/bin/env node
// A stand-in for aifactory-http, for working on the page without a daemon (dev only; nothing
// here is shipped). Serves a build the way the shim will (manifest, CSP, index.html for the
// page's routes), a login cookie, the REST routes the page uses with made-up data on two hosts
// (`local` and `b2`, with a task id both have), the event stream merging them, and a console
// WebSocket whose session prints a line every half second.
//
//   node build.mjs --out dist --node-modules ./node_modules
//   node dev/mock-server.mjs [--dist dist] [--port 8080]
//   open http://127.0.0.1:8080/login#code=onetime   (or the token: secret)
//
// Drive it with POST /mock/phase?task=ID&to=PHASE[&host=b2], /mock/agent?task=ID, /mock/drop (drops
// every console WebSocket abnormally), /mock/host?name=local|b2&up=0|1 (a host down or back;
// /mock/daemon?up=0|1 is host local), /mock/end?code=N, /mock/rotate?keep=BYTES, /mock/logout-all.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, v, i, a) => (v.startsWith('--') ? [...acc, [v.slice(2), a[i + 1]]] : acc), []));
const dist = path.resolve(args.dist || 'dist');
const port = Number(args.port || 8080);
const CSP = "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const TOKEN = 'secret';
const SOCKET = '/run/user/1000/aifactory/aifactoryd.sock';

// Read again on every request, so a rebuild needs no restart.
const assets = () => new Map(JSON.parse(fs.readFileSync(path.join(dist, 'manifest.json'), 'utf8')).map((e) => [e.path, e]));

const HOSTS = [
  { name: 'local', url: `unix://${SOCKET}`, up: true, since_ms: Date.now(), reason: null },
  { name: 'b2', url: 'ssh://agent@b2.example', up: true, since_ms: Date.now(), reason: null },
];
const hostOf = (name) => HOSTS.find((x) => x.name === name);
/** Every host's last event's seq. */
const seqs = new Map(HOSTS.map((x) => [x.name, 0]));
const streams = new Set();
const kept = [];
const sessionsCookie = new Set();
const now = () => new Date().toISOString();
const usage = (c) => ({ input_tokens: 1200, output_tokens: 340, cache_read_tokens: 5000, cache_write_tokens: 0, cost_usd: c });
const projects = [
  { host: 'b2', id: 'p-0000b2b2', name: 'remote-app', path: '/srv/remote-app', origin_url: null, provider: 'github', detected_provider: 'github', provider_manual: false, default_branch: 'main', created_at: now(), usage: usage(0.1) },
  { id: 'p-0000abcd', name: 'my-app', path: '/home/me/src/my-app', origin_url: null, provider: 'github', detected_provider: 'github', provider_manual: false, default_branch: 'main', created_at: now(), usage: usage(1.5) },
  { id: 'p-0000ef01', name: 'other', path: '/home/me/src/other', origin_url: null, provider: 'unknown', detected_provider: 'unknown', provider_manual: false, default_branch: 'main', created_at: now(), usage: usage(0) },
];
function task(id, spec, title, phase, extra = {}) {
  return {
    host: 'local', id, project_id: 'p-0000abcd', project_name: 'my-app', spec_id: spec, title, agent: 'claude', phase,
    progress: { percent: null, subtasks_done: null, subtasks_total: null }, session_id: null, attempts: 0,
    worktree: `/home/me/src/my-app/.aifactory/worktrees/tasks/${spec}`, branch: `aifactory/${spec}`, spec_dir: '/x', progress_file: '/x/progress',
    notes: [], stall: null, waiting_input: null, last_output_at: null, last_progress_at: null, last_error: null,
    created_at: `2026-01-0${id.slice(-1)}T00:00:00Z`, updated_at: now(), agent_session_id: null, usage: usage(null), turns: null,
    last_tool: null, failure: null, resources: null, confinement: null, ...extra,
  };
}
const tasks = new Map(
  [
    task('t-1', '001-login-page', 'Login page', 'coding', { session_id: 's-1', attempts: 1, progress: { percent: 40, subtasks_done: 2, subtasks_total: 5 }, usage: usage(0.42), notes: ['wrote the form', 'testing'] }),
    task('t-2', '002-api', 'REST API', 'backlog'),
    task('t-3', '003-stall', 'Stalls a lot', 'stalled', { attempts: 2, session_id: 's-1', stall: { detected_at: now(), stall_after_s: 600, last_output_at: now(), last_progress_at: null, pid: 42, process_state: 'S (sleeping)', cpu_time_ms: 1200 }, waiting_input: 'Continue? [y/N]' }),
    task('t-4', '004-broken', 'Broken key', 'failed', { attempts: 1, failure: { kind: 'auth', message: 'Invalid API key', fix: 'log the CLI in', retry_after_ms: null } }),
    task('t-1', '001-remote', 'On the other host', 'coding', { host: 'b2', project_id: 'p-0000b2b2', project_name: 'remote-app', attempts: 1, progress: { percent: 70, subtasks_done: null, subtasks_total: null } }),
  ].map((t) => [`${t.host}/${t.id}`, t]),
);
for (const p of projects) p.host ??= 'local';
const transcripts = new Map([['local/t-1', []]]);
function agentEntry(taskId, event, host = 'local') {
  const list = transcripts.get(`${host}/${taskId}`) || [];
  transcripts.set(`${host}/${taskId}`, list);
  const entry = { seq: list.length + 1, attempt: 1, at: now(), event };
  list.push(entry);
  emit({ TaskAgent: { task_id: taskId, entry } }, host);
  return entry;
}
[
  { started: { agent_session_id: 'abc-123', model: 'claude-x', tools: ['Bash', 'Edit'] } },
  { message: { text: 'I will write the login page.\nFirst, the form.' } },
  { tool_call: { call_id: 'c1', tool: 'Bash', summary: 'ls src' } },
  { tool_result: { call_id: 'c1', tool: 'Bash', ok: true, summary: 'main.rs\nlib.rs' } },
  { denied: { tool: 'WebFetch', summary: 'https://example.com' } },
  { result: { ok: true, status: 'success', message: 'Done.', turns: 4, duration_ms: 65000, usage: usage(0.42) } },
].forEach((e) => agentEntry('t-1', e));

const session = { host: 'local', id: 's-1', name: 'task-001', command: ['claude', '-p', 'go'], cwd: '/home/me/src/my-app', state: 'running', pid: 100, monitor_pid: 99, cols: 120, rows: 40, pane_dir: '/run/panes/s-1', exit: null, lost_reason: null, created_at: now(), output_blocked: null };
let output = Buffer.from('\x1b[1;32mwelcome\x1b[0m to the mock session \x1b[38;2;255;128;0mtrue colour\x1b[0m \x1b[31mred\x1b[0m\r\n');
let tick = 0;
let rotatedTo = 0; // output before this offset was rotated away
const consoles = new Set();
setInterval(() => {
  if (session.state !== 'running') return;
  appendOutput(`tick ${++tick} ${'.'.repeat(tick % 40)}\r\n`);
}, 500);
function appendOutput(text) {
  const start = output.length;
  const bytes = Buffer.from(text);
  output = Buffer.concat([output, bytes]);
  for (const c of consoles) if (c.live && hostOf('local').up) c.sendFrom(start);
}

// SSE: one stream of every host's events; the id is every host's position (`local:12,b2:3`).
function emit(kind, host = 'local') {
  if (!hostOf(host).up) return;
  seqs.set(host, seqs.get(host) + 1);
  const ev = { seq: seqs.get(host), at_ms: Date.now(), kind, host };
  const position = HOSTS.map((x) => `${x.name}:${seqs.get(x.name)}`).join(',');
  kept.push([ev, position]);
  if (kept.length > 1000) kept.shift();
  for (const s of streams) s.write(sse(ev, position));
}
function sse(ev, position) {
  const name = typeof ev.kind === 'string' ? ev.kind : Object.keys(ev.kind)[0];
  return `id: ${position}\nevent: ${name}\ndata: ${JSON.stringify(ev)}\n\n`;
}
function notice(x) {
  const data = x.up ? { daemon: 'available', host: x.name } : { daemon: 'unavailable', host: x.name, message: x.reason };
  for (const s of streams) s.write(`event: daemon\ndata: ${JSON.stringify(data)}\n\n`);
}
function setHost(name, up) {
  const x = hostOf(name);
  if (!x || x.up === up) return;
  Object.assign(x, { up, since_ms: Date.now(), reason: up ? null : name === 'local' ? `aifactoryd is not running at ${SOCKET} (connection refused)` : 'ssh: connect to host b2.example port 22: Connection refused' });
  notice(x);
  if (name !== 'local') return;
  for (const c of consoles) c.text(up ? { daemon: 'available' } : { daemon: 'unavailable', message: x.reason });
  if (up) for (const c of consoles) c.sendFrom(c.next);
}
function hostInfo(x) {
  const mine = [...tasks.values()].filter((t) => t.host === x.name);
  const load = { tasks_running: mine.filter((t) => ['planning', 'coding', 'qa'].includes(t.phase)).length, cpus: 8, load_average: { one: 0.52, five: 0.4, fifteen: 0.31 }, memory: { total_bytes: 16e9, available_bytes: 9.5e9 } };
  return { name: x.name, url: x.url, state: x.up ? 'up' : 'down', reason: x.reason, since_ms: x.since_ms, version: x.up ? '0.9.0-mock' : null, protocol: x.up ? 12 : null, load: x.up ? load : null, status: null };
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}
const err = (res, status, code, message) => json(res, status, { error: { code, message } });
function authed(req) {
  const cookie = req.headers.cookie || '';
  const m = /(?:^|;\s*)aifactory_session=([^;]+)/.exec(cookie);
  return m && sessionsCookie.has(m[1]);
}
async function body(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  return data ? JSON.parse(data) : null;
}
const unavailable = (res, x) => err(res, 503, 'host_unavailable', `host ${x.name} is down: ${x.reason}`);

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  try {
    if (p.startsWith('/mock/')) return mock(p, url, res);
    if (p === '/api/v1/login' && req.method === 'POST') {
      const b = await body(req);
      if ((b && b.token === TOKEN) || (b && b.code === 'onetime')) {
        const sid = createHash('sha256').update(String(Math.random())).digest('hex');
        sessionsCookie.add(sid);
        res.writeHead(204, { 'set-cookie': `aifactory_session=${sid}; HttpOnly; SameSite=Strict; Path=/` });
        return res.end();
      }
      return err(res, 401, 'invalid_token', b && b.code ? 'the one-time code is unknown or was used already: print a new link with `aifactory-http --login-url`' : 'invalid token: the token is in <state dir>/http-token');
    }
    if (p === '/api/v1/logout' && req.method === 'POST') {
      res.writeHead(204, { 'set-cookie': 'aifactory_session=; HttpOnly; Max-Age=0; Path=/' });
      return res.end();
    }
    if (p.startsWith('/api/')) {
      if (!authed(req)) return err(res, 401, 'missing_token', 'missing token: sign in');
      return apiRoute(req, res, p, url);
    }
    if (p === '/healthz') return json(res, 200, { status: HOSTS.every((x) => x.up) ? 'ok' : 'unavailable' });
    const byPath = assets();
    const entry = byPath.get(p) || (p.startsWith('/assets/') ? null : byPath.get('/'));
    if (!entry) return err(res, 404, 'no_route', `no ${p}`);
    const accept = req.headers['accept-encoding'] || '';
    let file = entry.file;
    const headers = { 'content-type': entry.content_type, 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'cache-control': entry.immutable ? 'public, max-age=31536000, immutable' : 'no-cache', vary: 'accept-encoding' };
    if (entry.br && /\bbr\b/.test(accept)) [file, headers['content-encoding']] = [entry.br, 'br'];
    else if (entry.gzip && /\bgzip\b/.test(accept)) [file, headers['content-encoding']] = [entry.gzip, 'gzip'];
    res.writeHead(200, headers);
    res.end(fs.readFileSync(path.join(dist, file)));
  } catch (e) {
    err(res, 500, 'internal', String(e && e.stack));
  }
});

async function apiRoute(req, res, p, url) {
  if (p === '/api/v1/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(': hello\n\n');
    // `local:12,b2:3`; a host missing from it starts at now.
    const from = req.headers['last-event-id'] || url.searchParams.get('after');
    const after = new Map(HOSTS.map((x) => [x.name, seqs.get(x.name)]));
    if (from) for (const part of from.split(',')) { const [h, n] = part.split(':'); if (after.has(h)) after.set(h, Number(n)); }
    for (const [ev, position] of kept) if (ev.seq > after.get(ev.host)) res.write(sse(ev, position));
    for (const x of HOSTS) if (!x.up) res.write(`event: daemon\ndata: ${JSON.stringify({ daemon: 'unavailable', host: x.name, message: x.reason })}\n\n`);
    streams.add(res);
    req.on('close', () => streams.delete(res));
    return;
  }
  const upHosts = HOSTS.filter((x) => x.up).map((x) => x.name);
  const listed = (list) => list.filter((o) => upHosts.includes(o.host) && (!url.searchParams.get('host') || o.host === url.searchParams.get('host')));
  let m;
  if (p === '/api/v1/hosts') return json(res, 200, HOSTS.map(hostInfo));
  if ((m = /^\/api\/v1\/hosts\/([^/]+)$/.exec(p))) return hostOf(m[1]) ? json(res, 200, hostInfo(hostOf(m[1]))) : err(res, 404, 'unknown_host', `no host ${m[1]}`);
  if (p === '/api/v1/status') return json(res, 200, { version: 'mock', pid: 1 });
  if (p === '/api/v1/projects') return json(res, 200, listed(projects));
  if (p === '/api/v1/tasks' && req.method === 'GET') return json(res, 200, listed([...tasks.values()]).filter((t) => !url.searchParams.get('project') || t.project_id === url.searchParams.get('project')));
  if (p === '/api/v1/sessions') return json(res, 200, listed([session]));
  if (p === '/api/v1/tasks' && req.method === 'POST') {
    const b = await body(req);
    const x = hostOf(b.host);
    if (!x) return err(res, 400, 'host_required', 'name the host: {"host": NAME}');
    if (!x.up) return unavailable(res, x);
    if ([...tasks.values()].some((t) => t.host === x.name && t.spec_id === b.spec_id)) return err(res, 409, 'conflict', `the project already has a task for spec ${b.spec_id}`);
    const id = `t-${tasks.size + 1}`;
    const t = task(id, b.spec_id, b.title || b.spec_id, 'backlog', { host: x.name, project_id: b.project, project_name: (projects.find((y) => y.id === b.project) || {}).name });
    tasks.set(`${x.name}/${id}`, t);
    emit({ TaskCreated: { task_id: id, project_id: b.project, spec_id: b.spec_id } }, x.name);
    return json(res, 201, t, { location: `/api/v1/hosts/${x.name}/tasks/${id}` });
  }
  if (!(m = /^\/api\/v1\/hosts\/([^/]+)(\/.*)$/.exec(p))) return err(res, 404, 'no_route', `no route ${req.method} ${p}`);
  const x = hostOf(decodeURIComponent(m[1]));
  if (!x) return err(res, 404, 'unknown_host', `no host ${m[1]}`);
  if (!x.up) return unavailable(res, x);
  const rest = m[2];
  if ((m = /^\/tasks\/([^/]+)$/.exec(rest))) {
    const t = tasks.get(`${x.name}/${decodeURIComponent(m[1])}`);
    if (req.method === 'DELETE') return err(res, 405, 'method_not_allowed', `DELETE is not served on ${p}: see /api/v1/openapi.json for the methods each route takes`);
    return t ? json(res, 200, t) : err(res, 404, 'not_found', `no task ${m[1]}`);
  }
  if ((m = /^\/tasks\/([^/]+)\/(start|stop|restart|transcript|attempts)$/.exec(rest))) {
    const t = tasks.get(`${x.name}/${decodeURIComponent(m[1])}`);
    if (!t) return err(res, 404, 'not_found', `no task ${m[1]}`);
    if (m[2] === 'transcript') {
      const after = Number(url.searchParams.get('after') || 0);
      return json(res, 200, { task_id: t.id, entries: (transcripts.get(`${x.name}/${t.id}`) || []).filter((e) => e.seq > after), dropped: 0 });
    }
    if (m[2] === 'attempts') {
      const started = t.updated_at;
      return json(res, 200, Array.from({ length: t.attempts }, (_, i) => ({ n: i + 1, attempt: i + 1, session_id: 's-1', agent: t.agent, started_at: started, ended_at: i + 1 < t.attempts ? started : null, reason: i + 1 < t.attempts ? `attempt ${i + 1} failed; restarting after 2000 ms` : null, exit: i + 1 < t.attempts ? { code: 1, signal: null, ended_at: started } : null, failure: i + 1 < t.attempts ? { kind: 'rate_limited', message: 'the API said 429', fix: 'wait', retry_after_ms: 2000 } : null, resources: null })));
    }
    if (m[2] === 'start' && ['planning', 'coding', 'qa'].includes(t.phase)) return err(res, 409, 'conflict', `task ${t.spec_id} already runs (session s-1)`);
    if (m[2] === 'stop' && !['planning', 'coding', 'qa', 'stalled'].includes(t.phase)) return err(res, 400, 'invalid', `task ${t.spec_id} does not run: nothing to stop`);
    const to = m[2] === 'stop' ? 'stopped' : 'planning';
    const from = t.phase;
    Object.assign(t, { phase: to, updated_at: now(), attempts: m[2] === 'stop' ? t.attempts : t.attempts + 1, session_id: 's-1' });
    emit({ TaskPhase: { task_id: t.id, from, to, reason: m[2] } }, x.name);
    return json(res, 200, m[2] === 'stop' ? { task: t, signalled: [], survivors: [] } : t);
  }
  if ((m = /^\/sessions\/([^/]+)$/.exec(rest))) return x.name === session.host && m[1] === session.id ? json(res, 200, session) : err(res, 404, 'not_found', `no session ${m[1]} on ${x.name}`);
  if (p === '/api/v1/doctor') {
    return json(res, 200, [
      { check: 'daemon', status: 'ok', message: 'aifactoryd answers at ' + SOCKET, fix: null },
      { check: 'landlock', status: 'warn', message: 'Landlock ABI 1: no network rules', fix: 'upgrade the kernel to 6.7 or later' },
      { check: 'agent claude', status: 'fail', message: '`claude` is not on PATH', fix: 'npm install -g @anthropic-ai/claude-code' },
    ]);
  }
  return err(res, 404, 'no_route', `no route ${req.method} ${p}`);
}

function mock(p, url, res) {
  const q = url.searchParams;
  if (p === '/mock/phase') {
    const t = tasks.get(`${q.get('host') || 'local'}/${q.get('task')}`);
    const from = t.phase;
    Object.assign(t, { phase: q.get('to'), updated_at: now() });
    emit({ TaskPhase: { task_id: t.id, from, to: t.phase, reason: 'mock' } }, t.host);
  } else if (p === '/mock/agent') {
    agentEntry(q.get('task'), { message: { text: q.get('text') || `live message at ${now()}` } });
  } else if (p === '/mock/drop') {
    for (const c of consoles) c.socket.destroy();
  } else if (p === '/mock/daemon' || p === '/mock/host') {
    setHost(q.get('name') || 'local', q.get('up') === '1');
  } else if (p === '/mock/end') {
    session.state = 'exited';
    session.exit = { code: Number(q.get('code') || 0), signal: null, ended_at: now() };
    for (const c of consoles) c.close(1000, `exited ${session.exit.code}`);
  } else if (p === '/mock/rotate') {
    rotatedTo = Math.max(0, output.length - Number(q.get('keep') || 100));
  } else if (p === '/mock/logout-all') {
    sessionsCookie.clear();
  }
  json(res, 200, { ok: true, seqs: Object.fromEntries(seqs), bytes: output.length, consoles: consoles.size });
}

// A minimal WebSocket server (RFC 6455) for the console.
server.on('upgrade', (req, socket) => {
  const url = new URL(req.url, 'http://x');
  const m = /^\/api\/v1\/hosts\/local\/sessions\/([^/]+)\/console$/.exec(url.pathname);
  const refuse = (status, text) => {
    socket.end(`HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n`);
  };
  if (!m) return refuse(404, 'Not Found');
  if (!authed(req)) return refuse(401, 'Unauthorized');
  if (!hostOf('local').up) return refuse(503, 'Service Unavailable');
  if (m[1] !== session.id) return refuse(404, 'Not Found');
  const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`);
  const frame = (op, payload) => {
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | op, len]) : len < 65536 ? Buffer.from([0x80 | op, 126, len >> 8, len & 255]) : (() => { const b = Buffer.alloc(10); b[0] = 0x80 | op; b[1] = 127; b.writeBigUInt64BE(BigInt(len), 2); return b; })();
    if (!socket.destroyed) socket.write(Buffer.concat([head, payload]));
  };
  const c = {
    socket, live: false, next: Number(url.searchParams.get('from') || 0),
    text: (obj) => frame(1, Buffer.from(JSON.stringify(obj))),
    sendFrom(start) {
      if (start < c.next) start = c.next;
      if (start >= output.length) return;
      frame(2, output.subarray(start));
      c.next = output.length;
    },
    closing: false,
    close(code, reason) {
      c.closing = true;
      const r = Buffer.from(reason);
      frame(8, Buffer.concat([Buffer.from([code >> 8, code & 255]), r]));
      setTimeout(() => socket.end(), 100);
      consoles.delete(c);
    },
  };
  if (c.next < rotatedTo) {
    c.text({ lagged: { requested: c.next, resume_from: rotatedTo } });
    c.next = rotatedTo;
  }
  consoles.add(c);
  socket.on('close', () => consoles.delete(c));
  socket.on('error', () => consoles.delete(c));
  c.sendFrom(c.next);
  c.live = true;
  if (session.state === 'exited') c.close(1000, `exited ${session.exit.code}`);
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const op = buf[0] & 15;
      let len = buf[1] & 127;
      let off = 2;
      if (len === 126) { len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const data = Buffer.from(buf.subarray(off + 4, off + 4 + len)).map((b, i) => b ^ mask[i % 4]);
      buf = buf.subarray(off + 4 + len);
      if (op === 2) appendOutput(`[typed ${JSON.stringify(Buffer.from(data).toString())}]\r\n`);
      else if (op === 1) {
        const msg = JSON.parse(Buffer.from(data).toString());
        if (msg.resize) Object.assign(session, { cols: msg.resize.cols, rows: msg.resize.rows });
        else c.text({ error: { code: 'invalid', message: 'unknown text frame' } });
      } else if (op === 8) {
        if (!c.closing) frame(8, Buffer.from([3, 232]));
        socket.end();
        consoles.delete(c);
      }
      else if (op === 9) frame(10, data);
    }
  });
});

server.listen(port, '127.0.0.1', () => console.log(`mock aifactory-http on http://127.0.0.1:${port}/ (token: ${TOKEN}, link: /login#code=onetime)`));
