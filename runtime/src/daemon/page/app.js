// The status page: fetches /api/status and /api/probe, draws them, and
// follows /api/events. Every value is set with textContent or an attribute:
// lease fields (process names, LAN client ids) come from outside.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const state = { status: null, probe: null, events: [], renders: 0 };
// A broker may hold 10,000 leases: the picture and the table stay usable.
const MAX_BARS = 40;
const MAX_ROWS = 500;
let pending = null;
// Fetches start at least this far apart: with 10,000 leases a status is
// 2 MB of JSON, and a burst of events must not turn into a burst of them.
const MIN_GAP_MS = 1000;
// Without events, times shown ("in 540 s") are brought up to date this often.
const IDLE_REFRESH_MS = 30000;
let lastFetch = -Infinity;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
  return e;
}

function sv(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = String(text);
  return e;
}

// A MOD's colour, the same on every page: its name hashed to a hue.
function modeColor(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h}, 65%, 42%)`;
}

function ago(unixS) {
  if (!unixS) return '';
  const d = Math.round(unixS - Date.now() / 1000);
  return d >= 0 ? `in ${d} s` : `${-d} s ago`;
}

function owner(l) {
  return l.lan_client ? `LAN ${l.lan_client}` : `uid ${l.owner_uid}`;
}

function node(g, x, y, w, lines, warn) {
  const h = 22 + 16 * (lines.length - 1);
  g.append(sv('rect', { x, y, width: w, height: h, rx: 6, class: warn ? 'node warn' : 'node' }));
  lines.forEach((t, i) => {
    g.append(sv('text', { x: x + 8, y: y + 15 + 16 * i, class: i === 0 ? 'title' : '' }, t));
  });
  return { x, y, w, h };
}

function edge(g, a, b) {
  g.append(sv('line', {
    x1: a.x + a.w, y1: a.y + a.h / 2, x2: b.x - 4, y2: b.y + b.h / 2, class: 'edge',
  }));
}

// host → gateways → external addresses (→ double NAT / CGNAT) → internet,
// then one bar per lease in its MOD's colour.
function drawTopology() {
  const s = state.status, p = state.probe, svg = document.getElementById('topology');
  svg.replaceChildren();
  const defs = sv('defs');
  const m = sv('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 7, refY: 4, markerWidth: 8, markerHeight: 8, orient: 'auto' });
  m.append(sv('path', { d: 'M0,0 L8,4 L0,8 z', fill: '#5b6770' }));
  defs.append(m);
  svg.append(defs);
  const g = sv('g');
  svg.append(g);
  const addrs = s.network.addresses.filter(a => !a.startsWith('127.') && !a.startsWith('::1/'));
  const host = node(g, 10, 10, 220, ['This host', ...addrs.slice(0, 4)]);
  const gws = [...new Set([...s.network.gateways, ...(p.gateways || [])])];
  const probes = p.probes || [];
  let y = 10, right = [];
  if (gws.length === 0) gws.push(null);
  for (const gw of gws) {
    const serving = probes.filter(x => x.ok && (x.gateway === gw || gw === null)).map(x => x.mode);
    const gnode = node(g, 280, y, 200, [gw ? `Gateway ${gw}` : 'No gateway', serving.length ? `MODs: ${serving.join(', ')}` : 'no MOD answered']);
    edge(g, host, gnode);
    const ext = probes.find(x => x.ok && x.external_address && (x.gateway === gw || gw === null));
    const extAddr = ext ? ext.external_address : p.external_address;
    const cls = ext && ext.external_class;
    const warn = p.double_nat || (cls && cls !== 'global');
    const enode = node(g, 530, y, 200, [`External ${extAddr || 'unknown'}`, cls ? `address class: ${cls}` : ''], warn);
    edge(g, gnode, enode);
    right.push({ enode, warn });
    y += Math.max(gnode.h, enode.h) + 16;
  }
  let nat = null;
  if (p.double_nat) {
    nat = node(g, 780, 10, 200, ['Double NAT / CGNAT', (p.double_nat_why || 'the gateway is not the edge').slice(0, 30)], true);
    right.forEach(r => edge(g, r.enode, nat));
  }
  const inet = node(g, nat ? 1030 : 780, 10, 150, ['Internet', p.nat ? `NAT: ${p.nat.traversal}` : '']);
  if (nat) edge(g, nat, inet); else right.forEach(r => edge(g, r.enode, inet));
  y = Math.max(y, 90) + 10;
  g.append(sv('text', { x: 10, y: y, class: 'title' }, s.leases.length ? 'Leases' : 'No leases'));
  y += 10;
  for (const l of s.leases.slice(0, MAX_BARS)) {
    g.append(sv('rect', {
      x: 10, y, width: 36, height: 18, rx: 3, fill: modeColor(l.mode),
      'data-lease': l.id, 'data-mode': l.mode,
    }));
    g.append(sv('text', { x: 56, y: y + 13 },
      `#${l.id} ${l.transport} ${l.internal} → ${l.external} via ${l.mode} (${l.state}, ${owner(l)})`));
    y += 26;
  }
  if (s.leases.length > MAX_BARS) {
    g.append(sv('text', { x: 10, y: y + 13 }, `… and ${s.leases.length - MAX_BARS} more (see the table)`));
    y += 26;
  }
  svg.setAttribute('width', nat ? 1190 : 940);
  svg.setAttribute('height', y + 6);
  const note = [];
  if (p.nat) note.push(`NAT behaviour: ${p.nat.detail}`);
  if (p.double_nat_why) note.push(p.double_nat_why);
  document.getElementById('topology-note').textContent = note.join(' — ');
}

function drawTables() {
  const s = state.status, p = state.probe;
  document.getElementById('summary').textContent =
    `version ${s.broker_version} · up ${s.uptime_s} s · ${s.leases.length} lease(s) · ${s.modes.length} MOD(s)`;
  const lb = document.querySelector('#leases tbody');
  const shown = s.leases.slice(0, MAX_ROWS);
  lb.replaceChildren(...shown.map(l => {
    const tr = el('tr', { 'data-lease-id': l.id },
      el('td', {}, l.id), el('td', {}, l.transport), el('td', { class: 'mono' }, l.internal),
      el('td', { class: 'mono' }, l.external), el('td', {}, l.mode), el('td', {}, l.state),
      el('td', {}, owner(l)), el('td', {}, ago(l.renew_at)));
    tr.children[4].style.color = modeColor(l.mode);
    return tr;
  }));
  if (s.leases.length > shown.length) {
    lb.append(el('tr', {}, el('td', { colspan: 8 },
      `showing ${shown.length} of ${s.leases.length} leases; p2pb list --json has them all`)));
  }
  const mb = document.querySelector('#mods tbody');
  mb.replaceChildren(...s.modes.map(m => {
    const pr = m.probe;
    return el('tr', { 'data-mode': m.name },
      el('td', {}, m.name), el('td', {}, m.version),
      el('td', { class: pr ? (pr.ok ? 'ok' : 'fail') : '' }, pr ? (pr.ok ? 'ok' : pr.kind || 'failed') : 'not probed'),
      el('td', { class: 'mono' }, pr && pr.gateway), el('td', { class: 'mono' }, pr && pr.external_address),
      el('td', {}, pr && pr.detail));
  }));
  document.getElementById('chosen').textContent =
    p.chosen ? `A map now would try ${p.chosen} first: ${p.why}` : `No MOD would map now: ${p.why}`;
  document.getElementById('refused').replaceChildren(
    ...s.refused.map(r => el('li', { class: 'fail' }, `${r.file}: not loaded: ${r.reason}`)));
  const pol = s.policy;
  document.getElementById('policy').textContent = [
    pol.source, pol.version ? `serial ${pol.version}` : 'unsigned',
    pol.expires_at ? `expires ${new Date(pol.expires_at * 1000).toISOString()}` : 'does not expire',
    ...(pol.warnings || []), pol.error ? `last update refused: ${pol.error}` : '',
  ].filter(Boolean).join(' · ');
}

function drawEvents() {
  document.getElementById('events').replaceChildren(...state.events.map(e =>
    el('li', {}, `${e.at} ${e.event} #${e.lease.id} ${e.lease.transport} ${e.lease.external} via ${e.lease.mode}${e.reason ? ' — ' + e.reason : ''}`)));
}

async function refresh() {
  pending = null;
  lastFetch = performance.now();
  try {
    const [s, p] = await Promise.all(['/api/status', '/api/probe'].map(u =>
      fetch(u, { cache: 'no-store' }).then(r => r.ok ? r.json() : Promise.reject(new Error(`${u}: ${r.status}`)))));
    state.status = s;
    state.probe = p;
    drawTables();
    drawTopology();
    state.renders += 1;
    document.body.dataset.renders = state.renders;
    // When the first full picture was up, in ms since navigation began
    // (the daemon bench reads it with 10,000 leases).
    if (!document.body.dataset.firstRenderMs) {
      document.body.dataset.firstRenderMs = Math.round(performance.now());
    }
  } catch (e) {
    document.getElementById('summary').textContent = `cannot reach the broker: ${e.message}`;
  }
}

// Events come in bursts (a gateway restart loses every lease at once):
// one refresh per burst, and never two within MIN_GAP_MS.
function soon() {
  if (pending) return;
  const wait = Math.max(200, lastFetch + MIN_GAP_MS - performance.now());
  pending = setTimeout(refresh, wait);
}

// A routine renewal changes no row but its times: it is listed, not fetched.
function changesRows(e) {
  if (e.event !== 'renewed' || !state.status) return true;
  const l = state.status.leases.find(x => x.id === e.lease.id);
  return !l || l.external !== e.lease.external;
}

function follow() {
  const live = document.getElementById('live');
  const es = new EventSource('/api/events');
  es.addEventListener('hello', () => { live.textContent = 'live'; live.className = 'on'; soon(); });
  es.addEventListener('lease', m => {
    const e = JSON.parse(m.data);
    e.at = new Date().toLocaleTimeString();
    state.events.unshift(e);
    state.events.length = Math.min(state.events.length, 50);
    drawEvents();
    if (changesRows(e)) soon();
  });
  es.addEventListener('lagged', soon);
  es.onerror = () => { live.textContent = 'reconnecting'; live.className = 'off'; };
}

refresh();
follow();
setInterval(soon, IDLE_REFRESH_MS);
