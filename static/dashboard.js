// livechat analytics dashboard: a client of GET /admin/analytics/summary (README "Analytics").
// Charts are inline SVG drawn here; text goes into the page as text only (textContent), never HTML.

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = 'livechat.token'; // the console's key (sessionStorage): one log-in for both pages
const SVG_NS = 'http://www.w3.org/2000/svg';
const DAY_MS = 86_400_000;
const WIDTH = 640;
const HEIGHT = 240;
const PAD = {left: 52, right: 12, top: 12, bottom: 28};

const state = {token: sessionStorage.getItem(TOKEN_KEY), user: null};

const COLUMNS = [
  ['created', 'Created', 'count'],
  ['closed', 'Closed', 'count'],
  ['open', 'Open', 'count'],
  ['waitMedianS', 'Wait median', 'time'],
  ['waitP90S', 'Wait p90', 'time'],
  ['firstResponseMedianS', 'First response median', 'time'],
  ['firstResponseP90S', 'First response p90', 'time'],
  ['resolutionMedianS', 'Resolution median', 'time'],
  ['resolutionP90S', 'Resolution p90', 'time'],
  ['messagesPerConversation', 'Messages / conversation', 'number'],
];
const GROUPS = {
  supervisor: {title: 'By supervisor', head: 'Supervisor', label: (r) => r.supervisorName ?? r.supervisorId},
  agent: {title: 'By agent', head: 'Agent', label: (r) => r.agentName ?? (r.agentId ? r.agentId : 'Never assigned')},
  day: {title: 'By day (UTC)', head: 'Day', label: (r) => r.day},
};

// ---------------------------------------------------------------- helpers

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') el.className = value;
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Seconds as a person reads them: 45s, 3m 20s, 2h 05m, 1d 4h; "—" for no sample. */
function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const t = Math.round(seconds);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m ${String(t % 60).padStart(2, '0')}s`;
  if (t < 86400) return `${Math.floor(t / 3600)}h ${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(t / 86400)}d ${Math.floor((t % 86400) / 3600)}h`;
}

function cell(value, kind) {
  if (kind === 'time') return duration(value);
  if (value === null || value === undefined) return '—';
  return kind === 'number' ? value.toFixed(2) : String(value);
}

const utcDay = (date) => date.toISOString().slice(0, 10);

function notice(text) {
  $('#notice-text').textContent = text;
  $('#notice').hidden = !text;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(path, {method = 'GET', body, raw = false} = {}) {
  const headers = {Accept: raw ? 'text/csv' : 'application/json'};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {method, headers, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body)});
  } catch {
    throw new ApiError(0, 'The server cannot be reached');
  }
  if (raw && res.ok) return res;
  let envelope = null;
  try {
    envelope = await res.json();
  } catch {
    // not JSON: reported with the status below
  }
  if (res.ok && envelope?.success) return envelope.data;
  if (res.status === 401) signOut('Your session has ended, please log in again.');
  throw new ApiError(res.status, envelope?.error ?? `HTTP ${res.status}`);
}

// ---------------------------------------------------------------- signing in

function showLogin() {
  $('#login-view').hidden = false;
  $('#dashboard').hidden = true;
  $('#whoami').hidden = true;
}

function signOut(message = '') {
  state.token = null;
  state.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin();
  notice(message);
}

async function start() {
  if (!state.token) return showLogin();
  try {
    state.user = await call('/auth/me');
  } catch (err) {
    if (err.status !== 401) notice(err.message);
    return showLogin();
  }
  if (!['admin', 'supervisor'].includes(state.user.role)) {
    showLogin();
    notice('The analytics are for admins and supervisors.');
    return;
  }
  $('#login-view').hidden = true;
  $('#dashboard').hidden = false;
  $('#whoami').hidden = false;
  $('#whoami-name').textContent = state.user.name;
  $('#whoami-role').textContent = state.user.role;
  document.body.dataset.role = state.user.role;
  if (state.user.role === 'supervisor') $('#range-group').value = 'agent'; // its team, agent by agent
  await refresh();
}

$('#login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const data = await call('/auth/login', {method: 'POST', body: {email: form.get('email'), password: form.get('password')}});
    state.token = data.token;
    sessionStorage.setItem(TOKEN_KEY, data.token);
    notice('');
    event.target.reset();
    await start();
  } catch (err) {
    notice(err.message);
  }
});

$('#logout').addEventListener('click', () => signOut());

// ---------------------------------------------------------------- the period

function setRange(days) {
  const today = new Date();
  $('#range-to').value = utcDay(today);
  $('#range-from').value = utcDay(new Date(today.getTime() - (days - 1) * DAY_MS));
}

function query(groupBy, format = 'json') {
  const params = new URLSearchParams({from: $('#range-from').value, to: $('#range-to').value, groupBy, format});
  return `/admin/analytics/summary?${params}`;
}

for (const button of document.querySelectorAll('.presets button')) {
  button.addEventListener('click', () => {
    setRange(Number(button.dataset.days));
    refresh();
  });
}

$('#range-form').addEventListener('submit', (event) => {
  event.preventDefault();
  refresh();
});

$('#range-group').addEventListener('change', () => refresh());

async function refresh() {
  const groupBy = $('#range-group').value;
  try {
    const [table, days] = await Promise.all([
      call(query(groupBy)),
      groupBy === 'day' ? null : call(query('day')),
    ]);
    const daily = days ?? table;
    notice('');
    renderTable(table);
    renderTotals(daily.rows);
    drawVolume($('#chart-volume'), daily.rows);
    drawTimes($('#chart-times'), daily.rows);
    document.body.dataset.loaded = `${table.from}/${table.to}/${groupBy}`;
  } catch (err) {
    notice(err.status === 400 ? 'Pick a period of at most 366 days, "from" before "to".' : err.message);
  }
}

// ---------------------------------------------------------------- the table

function renderTable(summary) {
  const group = GROUPS[summary.groupBy];
  $('#table-title').textContent = group.title;
  $('#summary-table thead tr').replaceChildren(h('th', {scope: 'col'}, group.head),
    ...COLUMNS.map(([, label]) => h('th', {scope: 'col'}, label)));
  const rows = summary.rows.map((row) => {
    const tr = h('tr', {}, h('th', {scope: 'row'}, group.label(row)),
      ...COLUMNS.map(([key, , kind]) => h('td', {'data-field': key}, cell(row[key], kind))));
    tr.dataset.key = row.supervisorId ?? row.agentId ?? row.day ?? 'unassigned';
    return tr;
  });
  if (!rows.length) rows.push(h('tr', {}, h('td', {colspan: COLUMNS.length + 1}, 'Nothing in this period.')));
  $('#summary-table tbody').replaceChildren(...rows);
}

function renderTotals(days) {
  const created = days.reduce((n, d) => n + d.created, 0);
  const closed = days.reduce((n, d) => n + d.closed, 0);
  const total = (label, value) => h('div', {class: 'total'}, h('div', {class: 'value'}, value),
    h('div', {class: 'label'}, label));
  $('#totals').replaceChildren(total('conversations created', created), total('closed', closed),
    total('still open', created - closed));
}

// ---------------------------------------------------------------- the charts (inline SVG)

function frame(svg, maxValue, tickText) {
  svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  svg.replaceChildren();
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - fraction);
    svg.append(s('line', {class: fraction ? 'grid' : 'axis', x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y}));
    svg.append(s('text', {class: 'tick', x: PAD.left - 6, y: y + 4, 'text-anchor': 'end'}, tickText(maxValue * fraction)));
  }
  return {plotW: WIDTH - PAD.left - PAD.right, plotH};
}

function dayLabels(svg, days, xOf) {
  const picks = new Set([0, Math.floor((days.length - 1) / 2), days.length - 1]);
  for (const i of picks) {
    svg.append(s('text', {class: 'tick', x: xOf(i), y: HEIGHT - 8, 'text-anchor': 'middle'}, days[i].day.slice(5)));
  }
}

function empty(svg, text) {
  svg.append(s('text', {class: 'empty', x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle'}, text));
}

/** Bars: conversations created per day, the closed ones drawn over them. */
function drawVolume(svg, days) {
  const max = Math.max(1, ...days.map((d) => d.created));
  const top = max <= 2 ? 2 : Math.ceil(max / 4) * 4; // the middle tick is then a whole number
  const {plotW, plotH} = frame(svg, top, (v) => String(Math.round(v)));
  if (!days.length) return empty(svg, 'No days in this period');
  const step = plotW / days.length;
  const barW = Math.max(1, step * 0.7);
  const xOf = (i) => PAD.left + step * i + step / 2;
  const yOf = (v) => PAD.top + plotH * (1 - v / top);
  days.forEach((d, i) => {
    const title = `${d.day}: ${d.created} created, ${d.closed} closed`;
    const created = s('rect', {class: 'bar-created', x: xOf(i) - barW / 2, y: yOf(d.created), width: barW,
      height: plotH * d.created / top, 'data-day': d.day, 'data-created': d.created});
    created.append(s('title', {}, title));
    const closed = s('rect', {class: 'bar-closed', x: xOf(i) - barW / 2, y: yOf(d.closed), width: barW,
      height: plotH * d.closed / top});
    closed.append(s('title', {}, title));
    svg.append(created, closed);
  });
  dayLabels(svg, days, xOf);
  if (!days.some((d) => d.created)) empty(svg, 'No conversations in this period');
}

/** Lines: median first response and median resolution per day; a day without a sample breaks the line. */
function drawTimes(svg, days) {
  const series = [['firstResponseMedianS', 'first-response', 'first response'],
    ['resolutionMedianS', 'resolution', 'resolution']];
  const values = days.flatMap((d) => series.map(([key]) => d[key])).filter((v) => v !== null);
  const max = Math.max(60, ...values); // at least a minute: ticks in whole seconds
  const {plotW, plotH} = frame(svg, max, duration);
  if (!days.length) return empty(svg, 'No days in this period');
  const step = plotW / days.length;
  const xOf = (i) => PAD.left + step * i + step / 2;
  const yOf = (v) => PAD.top + plotH * (1 - v / max);
  for (const [key, name, label] of series) {
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.append(s('polyline', {class: `line-${name}`, points: run.join(' ')}));
      run = [];
    };
    days.forEach((d, i) => {
      const v = d[key];
      if (v === null) return flush();
      run.push(`${xOf(i).toFixed(1)},${yOf(v).toFixed(1)}`);
      const dot = s('circle', {class: `dot-${name}`, cx: xOf(i), cy: yOf(v), r: 3, 'data-day': d.day});
      dot.append(s('title', {}, `${d.day}: median ${label} ${duration(v)}`));
      svg.append(dot);
    });
    flush();
  }
  dayLabels(svg, days, xOf);
  if (!values.length) empty(svg, 'No response or resolution in this period');
}

// ---------------------------------------------------------------- CSV

// A link cannot carry the Authorization header: fetch the CSV with the token, hand it to the
// browser as a Blob URL, and revoke that URL once the download has started.
$('#download-csv').addEventListener('click', async () => {
  try {
    const res = await call(query($('#range-group').value, 'csv'), {raw: true});
    const name = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') ?? '')?.[1] ?? 'livechat.csv';
    const url = URL.createObjectURL(await res.blob());
    const link = h('a', {href: url, download: name, hidden: ''});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    notice(err.message);
  }
});

setRange(30);
start();
