// Small DOM helpers. Text goes in through textContent only, never markup, and no element ever
// gets a `style` attribute (the CSP has no 'unsafe-inline').

/**
 * h('div', {class: 'x', text: 'hi', onclick: fn, 'aria-label': 'y'}, child, ...)
 * Attributes: `class`, `text`, `dataset` (object), `on<event>` (listener), `hidden`,
 * `disabled`, `checked`, `value` (as properties); anything else through setAttribute.
 * Children: nodes, strings, numbers, arrays of those; null/undefined/false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'hidden' || key === 'disabled' || key === 'checked' || key === 'required') el[key] = Boolean(value);
    else if (key === 'value') el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** `$1.23`, or an em dash when the CLI reports no cost. */
export function cost(usd) {
  if (usd === null || usd === undefined) return '—';
  if (usd > 0 && usd < 0.01) return '<$0.01';
  return `$${usd.toFixed(2)}`;
}

export function tokens(n) {
  if (!n) return '0';
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** A cgroup's CPU time (`ResourceUsage.cpu_usec`): `1.2 s CPU`. */
export function cpuTime(usec) {
  return `${(usec / 1e6).toFixed(1)} s CPU`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A local time for an RFC 3339 stamp, with the stamp itself for the title. */
export function time(stamp) {
  if (!stamp) return h('span', { text: '—' });
  const d = new Date(stamp);
  const text = Number.isNaN(d.getTime()) ? stamp : d.toLocaleString();
  return h('time', { datetime: stamp, title: stamp, text });
}

/** The exit status as the shim words it (`exited 0`, `killed by signal 9`). */
export function exitText(exit) {
  if (!exit) return null;
  if (exit.code !== null && exit.code !== undefined) return `exited ${exit.code}`;
  if (exit.signal !== null && exit.signal !== undefined) return `killed by signal ${exit.signal}`;
  return 'ended';
}

/** The name of a serde externally tagged enum value: `"Stopping"` or `{"TaskPhase": {...}}`. */
export function variant(value) {
  if (typeof value === 'string') return [value, null];
  if (value && typeof value === 'object') {
    const key = Object.keys(value)[0];
    return [key, value[key]];
  }
  return [null, null];
}
