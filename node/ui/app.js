// Firn's web UI: one page, no dependencies, served from the binary. The whole view lives in
// the URL (so a link restores it); every number on screen comes from Firn's HTTP API.
'use strict';

const $ = (id) => document.getElementById(id);
const ROW = 18;
const MAX_NODES = 65536;
const SERIES_LIMIT = 8;
const TOP_ROWS = 500;
const PALETTE = ['#2563b9', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#be185d', '#4d7c0f'];

// ---- the view's state, mirrored in the URL -------------------------------------------------

const DEFAULTS = {
  tenant: '', type: '', query: '', from: 'now-1h', until: 'now', group: '', view: 'flame',
  search: '', focus: '', fn: '', rquery: '', rfrom: '', runtil: '', sort: 'self',
};
const state = { ...DEFAULTS };

function readUrl() {
  Object.assign(state, DEFAULTS);
  const p = new URLSearchParams(location.search);
  for (const k of Object.keys(DEFAULTS)) {
    if (p.has(k)) state[k] = p.get(k);
  }
  if (!state.tenant) state.tenant = localStorage.getItem('firn.tenant') || '';
}

function writeUrl() {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) {
    if (v !== DEFAULTS[k] && v !== '') p.set(k, v);
  }
  const text = p.toString();
  history.replaceState(null, '', text ? `?${text}` : location.pathname);
}

// ---- talking to Firn ------------------------------------------------------------------------

let config = { auth: 'none' };

async function api(path, params, as = 'json') {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = {};
  const token = localStorage.getItem('firn.token');
  if (token) headers.Authorization = `Bearer ${token}`;
  if (state.tenant) headers['X-Scope-OrgID'] = state.tenant;
  const response = await fetch(url, { headers });
  if (response.status === 401) {
    askToken();
    throw new Error('this node asks for a token');
  }
  if (!response.ok) {
    const text = (await response.text()).trim();
    throw new Error(text || `${response.status} ${response.statusText}`);
  }
  if (as === 'blob') return response.blob();
  return response.json();
}

function showError(e) {
  const box = $('error');
  box.textContent = e ? String(e.message || e) : '';
  box.hidden = !e;
}

function askToken() {
  const dialog = $('token-dialog');
  if (!dialog.open) dialog.showModal();
}

// ---- times and units ------------------------------------------------------------------------

const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };

// A time as the API reads it (`now`, `now-1h`, RFC 3339, unix seconds or milliseconds), in ms.
function resolveTime(text, now) {
  const t = (text || '').trim();
  if (t === '' || t === 'now') return now;
  const rel = /^now\s*([-+])\s*(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(t);
  if (rel) return now + (rel[1] === '-' ? -1 : 1) * Number(rel[2]) * UNIT_MS[rel[3]];
  if (/^\d+$/.test(t)) return t.length >= 13 ? Number(t.slice(0, 13)) : Number(t) * 1e3;
  const parsed = Date.parse(t);
  if (Number.isNaN(parsed)) throw new Error(`time ${JSON.stringify(t)}: not now, now-1h, RFC 3339 or unix time`);
  return parsed;
}

function iso(ms) {
  return new Date(ms).toISOString().replace(/\.000Z$/, 'Z');
}

let unit = 'count';

function formatValue(v, u = unit) {
  const abs = Math.abs(v);
  if (u === 'nanoseconds') {
    if (abs >= 3600e9) return `${(v / 3600e9).toFixed(2)} h`;
    if (abs >= 60e9) return `${(v / 60e9).toFixed(2)} min`;
    if (abs >= 1e9) return `${(v / 1e9).toFixed(2)} s`;
    if (abs >= 1e6) return `${(v / 1e6).toFixed(2)} ms`;
    if (abs >= 1e3) return `${(v / 1e3).toFixed(2)} µs`;
    return `${Math.round(v)} ns`;
  }
  if (u === 'bytes') {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let x = v;
    while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
    return i === 0 ? `${Math.round(x)} B` : `${x.toFixed(2)} ${units[i]}`;
  }
  if (abs >= 1e9) return `${(v / 1e9).toFixed(2)} G`;
  if (abs >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (abs >= 1e4) return `${(v / 1e3).toFixed(1)} k`;
  return `${Math.round(v)}`;
}

function percent(part, whole) {
  return whole > 0 ? `${((100 * part) / whole).toFixed(2)}%` : '–';
}

// ---- the selection --------------------------------------------------------------------------

function matchers(text) {
  const t = (text || '').trim();
  if (t === '') return '{}';
  return t.startsWith('{') ? t : `{${t}}`;
}

function selector(text = state.query) {
  return `${state.type}${matchers(text)}`;
}

let range = { from: 0, until: 0 };

function resolveRange() {
  const now = Date.now();
  const from = resolveTime(state.from, now);
  const until = resolveTime(state.until, now);
  if (!(from < until)) throw new Error(`from (${state.from}) must be before until (${state.until})`);
  range = { from, until };
  return range;
}

// ---- flame graph data: the API's tree, flattened in depth-first order -----------------------

// Each node: its name, its x offset and width in value units, its depth, its self value, the
// index just past its subtree (to skip it whole), and in a diff the right side's values.
function flatten(root, diff) {
  const names = [];
  const x = [];
  const width = [];
  const depth = [];
  const self = [];
  const left = [];
  const right = [];
  const rightSelf = [];
  const end = [];
  const parent = [];
  const stack = [[root, 0, 0, -1]];
  while (stack.length) {
    const [node, offset, d, p] = stack.pop();
    const i = names.length;
    const l = node.total;
    const r = diff && node.right ? node.right[0] : 0;
    names.push(node.name);
    x.push(offset);
    width.push(diff ? l + r : l);
    depth.push(d);
    self.push(node.self);
    left.push(l);
    right.push(r);
    rightSelf.push(diff && node.right ? node.right[1] : 0);
    parent.push(p);
    end.push(0);
    // Children left to right: pushed in reverse so the first pops first.
    let childOffset = offset;
    const placed = [];
    for (const c of node.children || []) {
      placed.push([c, childOffset, d + 1, i]);
      childOffset += diff ? c.total + (c.right ? c.right[0] : 0) : c.total;
    }
    for (let k = placed.length - 1; k >= 0; k -= 1) stack.push(placed[k]);
  }
  // A subtree ends where the next node at its depth or above begins.
  const open = [];
  for (let i = 0; i < names.length; i += 1) {
    while (open.length && depth[open[open.length - 1]] >= depth[i]) end[open.pop()] = i;
    open.push(i);
  }
  while (open.length) end[open.pop()] = names.length;
  let maxDepth = 0;
  for (const d of depth) maxDepth = Math.max(maxDepth, d);
  return { names, x, width, depth, self, left, right, rightSelf, end, parent, maxDepth, diff: !!diff, n: names.length };
}

function pathOf(flat, i) {
  const path = [];
  for (let k = i; k > 0; k = flat.parent[k]) path.push(flat.names[k]);
  return path.reverse();
}

// The node at `path` (frame names below the root), or the root when it is gone.
function nodeAt(flat, path) {
  let i = 0;
  for (const name of path) {
    let found = -1;
    for (let c = i + 1; c < flat.end[i]; c = flat.end[c]) {
      if (flat.names[c] === name) { found = c; break; }
    }
    if (found < 0) return i;
    i = found;
  }
  return i;
}

// ---- the icicle renderer ---------------------------------------------------------------------

function hue(name) {
  let h = 0;
  for (let k = 0; k < name.length; k += 1) h = (h * 31 + name.charCodeAt(k)) >>> 0;
  return h;
}

function frameColor(name) {
  const h = hue(name);
  // Warm colours, as flame graphs are read.
  return `hsl(${10 + (h % 40)}, ${62 + (h % 20)}%, ${60 + ((h >> 8) % 12)}%)`;
}

function diffColor(flat, i, rootLeft, rootRight) {
  const l = rootLeft > 0 ? flat.left[i] / rootLeft : 0;
  const r = rootRight > 0 ? flat.right[i] / rootRight : 0;
  const change = Math.max(l, r) > 0 ? (r - l) / Math.max(l, r) : 0;
  const strength = Math.min(1, Math.abs(change));
  if (strength < 0.05) return 'hsl(220, 8%, 78%)';
  const lightness = 82 - 34 * strength;
  return change > 0 ? `hsl(3, 70%, ${lightness}%)` : `hsl(140, 50%, ${lightness}%)`;
}

function escapeRegex(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function searchRegex(text) {
  if (!text) return null;
  try {
    return new RegExp(text, 'i');
  } catch {
    return new RegExp(escapeRegex(text), 'i');
  }
}

// Draws `flat` on `canvas`, zoomed to node `zoom`; returns the rectangles drawn (for hover,
// clicks and tests) and records how long it took.
function render(canvas, flat, zoom, search) {
  const started = performance.now();
  const dpr = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || canvas.parentElement.clientWidth || 800;
  const rows = flat.maxDepth + 1;
  const cssHeight = rows * ROW;
  canvas.style.height = `${cssHeight}px`;
  canvas.width = Math.round(cssWidth * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  ctx.font = '11px ui-monospace, SFMono-Regular, Menlo, monospace';
  ctx.textBaseline = 'middle';
  const charWidth = ctx.measureText('m').width || 7;
  const x0 = flat.x[zoom];
  const w0 = flat.width[zoom] || 1;
  const scale = cssWidth / w0;
  const rootLeft = flat.left[0];
  const rootRight = flat.right[0];
  const drawn = [];
  let matched = 0;
  let i = 0;
  // The zoomed node's ancestors span the width (they hold it); others outside are skipped.
  while (i < flat.n) {
    const px = (flat.x[i] - x0) * scale;
    const pw = flat.width[i] * scale;
    if (pw < 0.35 || px >= cssWidth || px + pw <= 0) {
      i = flat.end[i];
      continue;
    }
    const left = Math.max(0, px);
    const right = Math.min(cssWidth, px + pw);
    const y = flat.depth[i] * ROW;
    const name = flat.names[i];
    const hit = search ? search.test(name) : false;
    if (hit) matched += 1;
    let fill;
    if (search && !hit) fill = '#e3e5e8';
    else if (hit) fill = '#c026d3';
    else if (flat.diff) fill = diffColor(flat, i, rootLeft, rootRight);
    else fill = i === 0 ? '#b8bec6' : frameColor(name);
    ctx.fillStyle = fill;
    ctx.fillRect(left, y, Math.max(right - left - 0.5, 0.35), ROW - 1);
    const room = right - left - 6;
    if (room > charWidth * 3) {
      const fits = Math.floor(room / charWidth);
      const label = name.length > fits ? `${name.slice(0, Math.max(fits - 1, 1))}…` : name;
      ctx.fillStyle = hit ? '#fff' : '#1d232b';
      ctx.fillText(label, left + 3, y + ROW / 2);
    }
    drawn.push({ i, name, x: left, y, w: right - left, h: ROW - 1, fill, matched: hit });
    i += 1;
  }
  const ms = performance.now() - started;
  canvas.dataset.renderMs = ms.toFixed(2);
  canvas.dataset.nodes = String(flat.n);
  canvas.dataset.drawn = String(drawn.length);
  canvas.dataset.matched = String(matched);
  return drawn;
}

// The share of the root's value in frames matching `search`, each counted once per stack.
function searchShare(flat, search) {
  if (!search) return 0;
  let sum = 0;
  let i = 1;
  while (i < flat.n) {
    if (search.test(flat.names[i])) {
      sum += flat.width[i];
      i = flat.end[i];
    } else {
      i += 1;
    }
  }
  return flat.width[0] > 0 ? sum / flat.width[0] : 0;
}

// ---- top functions and the sandwich, from the tree -----------------------------------------

function topFunctions(flat) {
  const byName = new Map();
  const onPath = new Map();
  const path = [];
  for (let i = 1; i < flat.n; i += 1) {
    while (path.length && flat.depth[path[path.length - 1]] >= flat.depth[i]) {
      const gone = flat.names[path.pop()];
      onPath.set(gone, onPath.get(gone) - 1);
    }
    const name = flat.names[i];
    let e = byName.get(name);
    if (!e) { e = { name, self: 0, total: 0 }; byName.set(name, e); }
    e.self += flat.self[i];
    // A recursive function counts once per stack.
    if (!onPath.get(name)) e.total += flat.width[i];
    onPath.set(name, (onPath.get(name) || 0) + 1);
    path.push(i);
  }
  return [...byName.values()];
}

function treeNode(name) {
  return { name, total: 0, self: 0, kids: new Map() };
}

function toApiTree(node) {
  const children = [...node.kids.values()].sort((a, b) => b.total - a.total).map(toApiTree);
  return { name: node.name, total: node.total, self: node.self, children };
}

// Callers (each row one caller further up) and callees of every outermost `fn` frame.
function sandwich(flat, fn) {
  const callers = treeNode(fn);
  const callees = treeNode(fn);
  let i = 1;
  while (i < flat.n) {
    if (flat.names[i] !== fn) { i += 1; continue; }
    const value = flat.width[i];
    callers.total += value;
    callers.self += flat.self[i];
    const up = pathOf(flat, i).slice(0, -1).reverse();
    let node = callers;
    for (const name of up) {
      let next = node.kids.get(name);
      if (!next) { next = treeNode(name); node.kids.set(name, next); }
      next.total += value;
      node = next;
    }
    callees.total += value;
    callees.self += flat.self[i];
    for (let c = i + 1; c < flat.end[i]; c = flat.end[c]) mergeSubtree(callees, flat, c);
    i = flat.end[i];
  }
  return { callers: toApiTree(callers), callees: toApiTree(callees) };
}

function mergeSubtree(into, flat, i) {
  let node = into.kids.get(flat.names[i]);
  if (!node) { node = treeNode(flat.names[i]); into.kids.set(flat.names[i], node); }
  node.total += flat.width[i];
  node.self += flat.self[i];
  for (let c = i + 1; c < flat.end[i]; c = flat.end[c]) mergeSubtree(node, flat, c);
}

// ---- the page --------------------------------------------------------------------------------

const view = {
  flat: null,
  drawn: [],
  zoom: 0,
  sandwich: null,
  types: [],
  namesCache: null,
  valuesCache: new Map(),
  // Values by label and typed prefix, answered (see valueOptions).
  prefixed: new Map(),
  prefixTimer: null,
};

async function loadTypes() {
  const r = await api('/api/v1/profile-types', { from: range.from, until: range.until });
  view.types = r.profile_types;
  const select = $('profile-type');
  select.textContent = '';
  for (const t of view.types) {
    const o = document.createElement('option');
    o.value = t.id;
    o.textContent = `${t.name} · ${t.sample_type} (${t.sample_unit})`;
    select.append(o);
  }
  if (!view.types.some((t) => t.id === state.type)) {
    const cpu = view.types.find((t) => t.sample_unit === 'nanoseconds') || view.types[0];
    state.type = cpu ? cpu.id : '';
  }
  select.value = state.type;
  const t = view.types.find((x) => x.id === state.type);
  unit = t ? t.sample_unit : 'count';
}

async function loadTenants() {
  if (config.auth !== 'none') return;
  try {
    const r = await api('/api/v1/admin/usage', {});
    const ids = Array.isArray(r.tenants) ? r.tenants.map((t) => t.tenant || t.id) : Object.keys(r.tenants || {});
    const list = $('tenants');
    list.textContent = '';
    for (const id of ids.filter(Boolean)) {
      const o = document.createElement('option');
      o.value = id;
      list.append(o);
    }
  } catch {
    // Usage is an operator's view; without it the tenant is typed.
  }
}

async function loadGroupBy() {
  const names = await labelNames();
  const select = $('group-by');
  const keep = state.group;
  select.textContent = '';
  const none = document.createElement('option');
  none.value = '';
  none.textContent = '(none)';
  select.append(none);
  for (const n of names.filter((x) => !x.startsWith('__'))) {
    const o = document.createElement('option');
    o.value = n;
    o.textContent = n;
    select.append(o);
  }
  select.value = names.includes(keep) ? keep : '';
}

// Both cache the request itself, so keystrokes in a row ask once.
function labelNames() {
  if (!view.namesCache) {
    view.namesCache = api('/api/v1/labels', { query: selector('{}'), from: range.from, until: range.until })
      .then((r) => r.names);
    view.namesCache.catch(() => { view.namesCache = null; });
  }
  return view.namesCache;
}

const VALUES_CACHED = 64;

// A label's first page of values, filtered here as the user types; a label with more values
// than a page is asked again for those starting with the typed text.
function labelValues(name, prefix) {
  const key = `${name}\u0000${prefix}`;
  if (!view.valuesCache.has(key)) {
    if (view.valuesCache.size >= VALUES_CACHED) view.valuesCache.clear();
    const params = { query: selector('{}'), from: range.from, until: range.until };
    if (prefix) Object.assign(params, { prefix, limit: 50 });
    const values = api(`/api/v1/labels/${encodeURIComponent(name)}/values`, params)
      .then((r) => ({ values: r.values, more: r.next_cursor != null }));
    values.catch(() => view.valuesCache.delete(key));
    view.valuesCache.set(key, values);
  }
  return view.valuesCache.get(key);
}

// The first page at once; for a label with more, the values starting with the typed text
// once typing pauses (so a large label is not asked for each key), then suggested again.
async function valueOptions(name, prefix) {
  const first = await labelValues(name, '');
  if (!first.more || !prefix) return first.values;
  const key = `${name}\u0000${prefix}`;
  const started = view.prefixed.get(key);
  if (started) return [...new Set([...started, ...first.values])];
  clearTimeout(view.prefixTimer);
  view.prefixTimer = setTimeout(() => {
    labelValues(name, prefix).then((r) => {
      if (view.prefixed.size >= VALUES_CACHED) view.prefixed.clear();
      view.prefixed.set(key, r.values);
      suggest();
    }, showError);
  }, 150);
  return first.values;
}

// ---- the time-series chart -------------------------------------------------------------------

const chart = { series: [], drag: null };

// About 300 steps across the chart, at least 15 s each.
function seriesStep() {
  return Math.max(15, Math.ceil((range.until - range.from) / 1000 / 300));
}

async function fetchSeries() {
  const r = await api('/api/v1/series', {
    query: selector(), from: range.from, until: range.until, group_by: state.group, limit: SERIES_LIMIT,
    step: `${seriesStep()}s`,
  });
  return r.series;
}

async function loadSeries() {
  chart.series = await fetchSeries();
  drawChart();
}

function drawChart() {
  const canvas = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 64, r: 8, t: 8, b: 18 };
  let max = 0;
  for (const s of chart.series) for (const [, v] of s.points) max = Math.max(max, v);
  const xOf = (t) => pad.l + ((t - range.from) / (range.until - range.from)) * (w - pad.l - pad.r);
  const yOf = (v) => h - pad.b - (max > 0 ? (v / max) * (h - pad.t - pad.b) : 0);
  ctx.font = '10px system-ui, sans-serif';
  ctx.fillStyle = '#68707a';
  ctx.strokeStyle = '#e5e7ea';
  ctx.textBaseline = 'middle';
  for (let k = 0; k <= 3; k += 1) {
    const v = (max * k) / 3;
    const y = yOf(v);
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    ctx.fillText(formatValue(v), 4, y);
  }
  ctx.textBaseline = 'alphabetic';
  for (let k = 0; k <= 4; k += 1) {
    const t = range.from + ((range.until - range.from) * k) / 4;
    const label = new Date(t).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
    ctx.fillText(label, Math.min(xOf(t), w - 90), h - 4);
  }
  const legend = $('legend');
  legend.textContent = '';
  // Points are steps with profiles: a line joins neighbouring steps only, a gap stays a gap.
  const step = seriesStep() * 1000;
  chart.series.forEach((s, k) => {
    const color = PALETTE[k % PALETTE.length];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.points.forEach(([t, v], j) => {
      const joined = j > 0 && t - s.points[j - 1][0] <= step * 1.5;
      if (joined) ctx.lineTo(xOf(t), yOf(v)); else ctx.moveTo(xOf(t), yOf(v));
    });
    ctx.stroke();
    for (const [t, v] of s.points) ctx.fillRect(xOf(t) - 2, yOf(v) - 2, 4, 4);
    const item = document.createElement('span');
    item.style.setProperty('--c', color);
    const labels = Object.entries(s.labels).map(([k2, v]) => `${k2}=${v}`).join(', ');
    item.textContent = labels || 'total';
    legend.append(item);
  });
  if (chart.drag) {
    ctx.fillStyle = '#2563b922';
    const a = Math.min(chart.drag.a, chart.drag.b);
    ctx.fillRect(a, pad.t, Math.abs(chart.drag.b - chart.drag.a), h - pad.t - pad.b);
  }
  chart.xToTime = (px) => range.from + ((px - pad.l) / (w - pad.l - pad.r)) * (range.until - range.from);
  canvas.dataset.series = String(chart.series.length);
}

function wireChart() {
  const canvas = $('chart');
  const xOf = (e) => e.clientX - canvas.getBoundingClientRect().left;
  canvas.addEventListener('mousedown', (e) => { chart.drag = { a: xOf(e), b: xOf(e) }; });
  canvas.addEventListener('mousemove', (e) => {
    if (!chart.drag) return;
    chart.drag.b = xOf(e);
    drawChart();
  });
  window.addEventListener('mouseup', () => {
    const d = chart.drag;
    chart.drag = null;
    if (!d) return;
    if (Math.abs(d.b - d.a) < 4) { drawChart(); return; }
    const from = Math.round(chart.xToTime(Math.min(d.a, d.b)));
    const until = Math.round(chart.xToTime(Math.max(d.a, d.b)));
    state.from = iso(Math.max(from, range.from));
    state.until = iso(Math.min(until, range.until));
    syncInputs();
    run();
  });
}

// ---- flame graph, table and sandwich views ---------------------------------------------------

// The selection's flame graph (or diff), flattened; committed by the run that asked for it.
async function fetchProfile() {
  let tree;
  let asked;
  let flat;
  if (state.view === 'diff') {
    const now = Date.now();
    const rightFrom = state.rfrom ? resolveTime(state.rfrom, now) : range.from;
    const rightUntil = state.runtil ? resolveTime(state.runtil, now) : range.until;
    tree = await api('/api/v1/diff', {
      left_query: selector(), left_from: range.from, left_until: range.until,
      right_query: selector(state.rquery || state.query), right_from: rightFrom, right_until: rightUntil,
      format: 'flamegraph', max_nodes: MAX_NODES,
    });
    asked = performance.now();
    flat = flatten(tree.root, true);
  } else {
    tree = await api('/api/v1/merge', {
      query: selector(), from: range.from, until: range.until, format: 'flamegraph', max_nodes: MAX_NODES,
    });
    asked = performance.now();
    flat = flatten(tree.root, false);
  }
  return { flat, flattenMs: performance.now() - asked };
}

function showProfile({ flat, flattenMs }) {
  view.flat = flat;
  $('flame').dataset.flattenMs = flattenMs.toFixed(2);
  view.zoom = nodeAt(flat, state.focus ? state.focus.split('\u001f') : []);
  $('status').textContent = `${flat.n.toLocaleString()} nodes · total ${formatValue(flat.left[0])}`
    + (flat.diff ? ` → ${formatValue(flat.right[0])}` : '');
}

function draw() {
  if (!view.flat) return;
  const search = searchRegex(state.search);
  for (const v of ['flame', 'table', 'sandwich']) {
    $(`${v}-view`).hidden = (state.view === 'diff' ? 'flame' : state.view) !== v;
  }
  $('diff-bar').hidden = state.view !== 'diff';
  $('flame-bar').hidden = state.view === 'table';
  for (const b of document.querySelectorAll('#tabs button')) {
    b.classList.toggle('active', b.dataset.view === state.view);
  }
  if (state.view === 'flame' || state.view === 'diff') {
    view.drawn = render($('flame'), view.flat, view.zoom, search);
  } else if (state.view === 'table') {
    drawTable();
  } else if (state.view === 'sandwich') {
    drawSandwich(search);
  }
  const share = searchShare(view.flat, search);
  $('search-share').textContent = search ? `matches ${(100 * share).toFixed(2)}% of the total` : '';
  $('search-share').dataset.share = search ? share.toFixed(6) : '';
  writeUrl();
}

function drawTable() {
  const rows = topFunctions(view.flat);
  const key = state.sort;
  rows.sort((a, b) => (key === 'name' ? a.name.localeCompare(b.name) : b[key] - a[key]));
  const body = document.querySelector('#top tbody');
  body.textContent = '';
  const whole = view.flat.width[0];
  for (const r of rows.slice(0, TOP_ROWS)) {
    const tr = document.createElement('tr');
    tr.dataset.fn = r.name;
    const cells = [
      [r.name, 'fn'], [formatValue(r.self), 'num'], [percent(r.self, whole), 'num'],
      [formatValue(r.total), 'num'], [percent(r.total, whole), 'num'],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement('td');
      td.className = cls;
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
  for (const th of document.querySelectorAll('#top th')) {
    th.classList.toggle('sorted', th.dataset.sort === key);
  }
}

function drawSandwich(search) {
  const fn = state.fn;
  $('sandwich-fn').textContent = fn || '(none)';
  $('sandwich-note').hidden = !!fn;
  if (!fn) {
    for (const id of ['callers', 'callees']) $(id).getContext('2d').clearRect(0, 0, $(id).width, $(id).height);
    return;
  }
  const trees = sandwich(view.flat, fn);
  view.sandwich = { callers: flatten(trees.callers, false), callees: flatten(trees.callees, false) };
  view.sandwich.drawnCallers = render($('callers'), view.sandwich.callers, 0, search);
  view.sandwich.drawnCallees = render($('callees'), view.sandwich.callees, 0, search);
}

function focusFunction(name) {
  // The flame graph zoomed to the function's largest frame, every frame of it highlighted.
  let best = 0;
  for (let i = 1; i < view.flat.n; i += 1) {
    if (view.flat.names[i] === name && (best === 0 || view.flat.width[i] > view.flat.width[best])) best = i;
  }
  view.zoom = best;
  state.focus = pathOf(view.flat, best).join('\u001f');
  state.search = `^${escapeRegex(name)}$`;
  state.fn = name;
  state.view = 'flame';
  $('search').value = state.search;
  draw();
}

function hitTest(drawn, canvas, e) {
  const rect = canvas.getBoundingClientRect();
  const x = e.clientX - rect.left;
  const y = e.clientY - rect.top;
  return drawn.find((d) => x >= d.x && x < d.x + d.w && y >= d.y && y < d.y + d.h + 1);
}

function tooltip(flat, d, e) {
  const tip = $('tooltip');
  if (!d) { tip.hidden = true; return; }
  const i = d.i;
  const lines = [];
  if (flat.diff) {
    const lt = flat.left[0];
    const rt = flat.right[0];
    const ls = lt > 0 ? flat.left[i] / lt : 0;
    const rs = rt > 0 ? flat.right[i] / rt : 0;
    lines.push(`baseline: ${formatValue(flat.left[i])} (${percent(flat.left[i], lt)})`);
    lines.push(`comparison: ${formatValue(flat.right[i])} (${percent(flat.right[i], rt)})`);
    lines.push(`change: ${rs >= ls ? '+' : ''}${(100 * (rs - ls)).toFixed(2)} points of the total`);
  } else {
    const whole = flat.width[0];
    lines.push(`total: ${formatValue(flat.width[i])} (${percent(flat.width[i], whole)})`);
    lines.push(`self: ${formatValue(flat.self[i])} (${percent(flat.self[i], whole)})`);
  }
  tip.textContent = '';
  const b = document.createElement('b');
  b.textContent = flat.names[i];
  tip.append(b, `\n${lines.join('\n')}`);
  tip.hidden = false;
  tip.style.left = `${Math.min(e.clientX + 12, window.innerWidth - 340)}px`;
  tip.style.top = `${e.clientY + 14}px`;
}

function wireFlame() {
  const canvas = $('flame');
  canvas.addEventListener('mousemove', (e) => tooltip(view.flat, hitTest(view.drawn, canvas, e), e));
  canvas.addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
  canvas.addEventListener('click', (e) => {
    const d = hitTest(view.drawn, canvas, e);
    if (!d) return;
    view.zoom = d.i === view.zoom ? view.flat.parent[d.i] : d.i;
    if (view.zoom < 0) view.zoom = 0;
    state.focus = pathOf(view.flat, view.zoom).join('\u001f');
    draw();
  });
  canvas.addEventListener('contextmenu', (e) => {
    const d = hitTest(view.drawn, canvas, e);
    if (!d || d.i === 0) return;
    e.preventDefault();
    state.fn = d.name;
    state.view = 'sandwich';
    draw();
  });
  for (const [id, key] of [['callers', 'drawnCallers'], ['callees', 'drawnCallees']]) {
    const c = $(id);
    c.addEventListener('mousemove', (e) => {
      if (!view.sandwich) return;
      tooltip(view.sandwich[id], hitTest(view.sandwich[key], c, e), e);
    });
    c.addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
  }
}

// ---- autocompletion of label names and values ------------------------------------------------

const complete = { items: [], active: 0, context: null, asked: 0 };

function completionContext(text, caret) {
  const before = text.slice(0, caret);
  const value = /([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)$/.exec(before);
  if (value) return { kind: 'value', name: value[1], op: value[2], prefix: value[3], start: caret - value[3].length };
  const name = /(^|[{,])\s*([A-Za-z_][A-Za-z0-9_.]*)?$/.exec(before);
  if (name) {
    const prefix = name[2] || '';
    return { kind: 'name', prefix, start: caret - prefix.length };
  }
  return null;
}

async function suggest() {
  const input = $('selector');
  const ctx = completionContext(input.value, input.selectionStart);
  const mine = ++complete.asked;
  let options = [];
  try {
    if (ctx && ctx.kind === 'name') options = (await labelNames()).filter((n) => !n.startsWith('__'));
    if (ctx && ctx.kind === 'value') {
      // The server completes a literal's start; a regular expression is matched here only.
      const literal = ctx.op === '=' || ctx.op === '!=';
      options = await valueOptions(ctx.name, literal ? ctx.prefix.replace(/\\(.)/g, '$1') : '');
    }
  } catch (e) {
    showError(e);
  }
  // Only the latest keystroke's answer is shown.
  if (mine !== complete.asked) return;
  complete.context = ctx;
  const prefix = ctx ? ctx.prefix.toLowerCase() : '';
  complete.items = options.filter((o) => o.toLowerCase().includes(prefix)).slice(0, 50);
  complete.active = 0;
  drawSuggestions();
}

function drawSuggestions() {
  const list = $('suggestions');
  list.textContent = '';
  complete.items.forEach((item, k) => {
    const li = document.createElement('li');
    li.textContent = item;
    li.classList.toggle('active', k === complete.active);
    li.addEventListener('mousedown', (e) => { e.preventDefault(); accept(k); });
    list.append(li);
  });
  list.hidden = complete.items.length === 0;
}

function accept(k) {
  const ctx = complete.context;
  const item = complete.items[k];
  if (!ctx || item === undefined) return;
  const input = $('selector');
  const caret = input.selectionStart;
  let text = input.value;
  if (!text.trim().startsWith('{') && ctx.kind === 'name' && text.trim() === '') text = '{';
  const start = text === input.value ? ctx.start : text.length;
  const insert = ctx.kind === 'name' ? `${item}="` : `${item.replace(/["\\]/g, '\\$&')}"`;
  const after = text === input.value ? text.slice(caret) : '';
  let next = text.slice(0, start) + insert + after;
  if (ctx.kind === 'value' && !next.includes('}')) next += '}';
  input.value = next;
  const pos = start + insert.length;
  input.setSelectionRange(pos, pos);
  $('suggestions').hidden = true;
  complete.items = [];
  if (ctx.kind === 'name') suggest();
}

function wireSelector() {
  const input = $('selector');
  input.addEventListener('input', suggest);
  input.addEventListener('focus', suggest);
  input.addEventListener('blur', () => { $('suggestions').hidden = true; });
  input.addEventListener('keydown', (e) => {
    const open = !$('suggestions').hidden && complete.items.length > 0;
    if (open && e.key === 'ArrowDown') {
      complete.active = (complete.active + 1) % complete.items.length; drawSuggestions(); e.preventDefault();
    } else if (open && e.key === 'ArrowUp') {
      complete.active = (complete.active + complete.items.length - 1) % complete.items.length;
      drawSuggestions(); e.preventDefault();
    } else if (open && (e.key === 'Tab' || (e.key === 'Enter' && !e.ctrlKey))) {
      accept(complete.active); e.preventDefault();
    } else if (e.key === 'Escape') {
      $('suggestions').hidden = true;
    } else if (e.key === 'Enter') {
      $('suggestions').hidden = true; readInputs(); run();
    }
  });
}

// ---- inputs, tabs and actions ----------------------------------------------------------------

function syncInputs() {
  $('tenant').value = state.tenant;
  $('selector').value = state.query;
  $('from').value = state.from;
  $('until').value = state.until;
  const preset = [...$('preset').options].find((o) => o.value === state.from && state.until === 'now');
  $('preset').value = preset ? preset.value : 'custom';
  $('search').value = state.search;
  $('right-selector').value = state.rquery;
  $('right-from').value = state.rfrom;
  $('right-until').value = state.runtil;
}

function readInputs() {
  state.tenant = $('tenant').value.trim();
  state.query = $('selector').value.trim();
  state.from = $('from').value.trim() || DEFAULTS.from;
  state.until = $('until').value.trim() || DEFAULTS.until;
  state.rquery = $('right-selector').value.trim();
  state.rfrom = $('right-from').value.trim();
  state.runtil = $('right-until').value.trim();
}

let running = 0;

async function run() {
  const mine = ++running;
  showError(null);
  delete document.body.dataset.failed;
  try {
    resolveRange();
    view.namesCache = null;
    view.valuesCache.clear();
    view.prefixed.clear();
    await loadTypes();
    if (mine !== running) return;
    if (!state.type) {
      $('status').textContent = 'no profiles in this range';
      view.flat = null;
      writeUrl();
      document.body.dataset.loaded = String(mine);
      return;
    }
    // A newer run (another click meanwhile) wins: only the latest one's answers are shown.
    const [series, profile] = await Promise.all([fetchSeries(), fetchProfile(), loadGroupBy()]);
    if (mine !== running) return;
    chart.series = series;
    drawChart();
    showProfile(profile);
    draw();
    document.body.dataset.loaded = String(mine);
  } catch (e) {
    showError(e);
    document.body.dataset.failed = String(mine);
  }
}

async function download() {
  try {
    resolveRange();
    const blob = await api('/api/v1/merge', {
      query: selector(), from: range.from, until: range.until, format: 'pprof',
    }, 'blob');
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    const service = /service_name="([^"]+)"/.exec(state.query);
    a.download = `${service ? service[1] : 'profile'}-${iso(range.from).replace(/[:]/g, '')}.pb.gz`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    showError(e);
  }
}

async function share() {
  writeUrl();
  const link = location.href;
  try {
    await navigator.clipboard.writeText(link);
    $('status').textContent = 'link copied';
  } catch {
    window.prompt('Copy this link:', link);
  }
}

function wire() {
  $('run').addEventListener('click', () => { readInputs(); run(); });
  $('preset').addEventListener('change', () => {
    const v = $('preset').value;
    if (v === 'custom') {
      resolveRange();
      $('from').value = iso(range.from);
      $('until').value = iso(range.until);
      return;
    }
    $('from').value = v;
    $('until').value = 'now';
    readInputs();
    run();
  });
  for (const id of ['from', 'until', 'right-selector', 'right-from', 'right-until']) {
    $(id).addEventListener('keydown', (e) => { if (e.key === 'Enter') { readInputs(); run(); } });
  }
  $('tenant').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('tenant').blur(); });
  $('tenant').addEventListener('change', () => {
    state.tenant = $('tenant').value.trim();
    localStorage.setItem('firn.tenant', state.tenant);
    state.type = '';
    run();
  });
  $('profile-type').addEventListener('change', () => {
    state.type = $('profile-type').value;
    state.focus = '';
    run();
  });
  $('group-by').addEventListener('change', () => {
    state.group = $('group-by').value;
    loadSeries().then(writeUrl).catch(showError);
  });
  $('search').addEventListener('input', () => { state.search = $('search').value; draw(); });
  $('reset-zoom').addEventListener('click', () => { view.zoom = 0; state.focus = ''; draw(); });
  for (const b of document.querySelectorAll('#tabs button')) {
    b.addEventListener('click', () => {
      const was = state.view;
      state.view = b.dataset.view;
      readInputs();
      if ((was === 'diff') !== (state.view === 'diff')) {
        state.focus = '';
        run();
      } else {
        draw();
      }
    });
  }
  for (const th of document.querySelectorAll('#top th')) {
    th.addEventListener('click', () => { state.sort = th.dataset.sort; draw(); });
  }
  document.querySelector('#top tbody').addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (tr) focusFunction(tr.dataset.fn);
  });
  $('download').addEventListener('click', download);
  $('share').addEventListener('click', share);
  $('error').addEventListener('click', () => showError(null));
  $('token-button').addEventListener('click', askToken);
  $('token-dialog').addEventListener('close', () => {
    if ($('token-dialog').returnValue !== 'save') return;
    const token = $('token-input').value.trim();
    if (token) localStorage.setItem('firn.token', token); else localStorage.removeItem('firn.token');
    run();
  });
  window.addEventListener('resize', () => { drawChart(); draw(); });
  window.addEventListener('popstate', () => { readUrl(); syncInputs(); run(); });
  wireChart();
  wireFlame();
  wireSelector();
}

async function start() {
  readUrl();
  try {
    const r = await fetch('/ui/config.json');
    if (r.ok) config = await r.json();
  } catch {
    // An older node: assume the laptop default.
  }
  $('token-button').hidden = config.auth !== 'token';
  $('tenant-box').hidden = config.auth === 'token' && !state.tenant;
  syncInputs();
  wire();
  if (config.auth === 'token' && !localStorage.getItem('firn.token')) {
    // Nothing to ask the API before the token: the dialog runs the page when closed.
    askToken();
    return;
  }
  loadTenants();
  await run();
}

// Exposed for tests and for the console: the current view's drawn frames and timing.
window.firn = {
  state,
  frames: () => view.drawn.map(({ name, x, y, w, h, fill, matched }) => ({ name, x, y, w, h, fill, matched })),
  sandwich: () => view.sandwich && {
    callers: view.sandwich.drawnCallers.map((d) => d.name),
    callees: view.sandwich.drawnCallees.map((d) => d.name),
  },
  redraw: () => {
    const started = performance.now();
    draw();
    return performance.now() - started;
  },
  run,
};

start();
