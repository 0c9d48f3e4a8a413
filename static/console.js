// livechat console: a small client of the REST + WebSocket API (docs/openapi.json, docs/asyncapi.yaml), one ES module.
// User text is only ever put in the page as text (textContent / text nodes), never as HTML.

const $ = (selector) => document.querySelector(selector);
const POLL_MS = Number(document.body.dataset.pollMs) || 3000;
const TOKEN_KEY = 'livechat.token';
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10000;
const ACTIVE = new Set(['open', 'assigned']);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  user: null,
  chat: null,
  desk: null, // the inbox socket (Desk)
  stopFallback: null, // the REST poll that runs only while the desk socket is down
  inbox: new Map(), // conversationId -> list item, as pushed
  queue: new Map(), // conversationId -> place in the queue (candidate)
  supervisors: new Map(), // _id -> name (candidate and admin views)
  team: {supervisorId: null, agents: []}, // the roster on screen (supervisor: own; admin: chosen)
  presence: new Map(), // agentId -> available | away | offline
  presenceHeard: new Set(), // agents whose presence came as an event since subscribing
  myPresence: 'available', // agent: what this page last asked for
  teamReloadTimer: null,
  analyticsTimer: null,
  assignChoice: new Map(), // conversationId -> agentId picked in the supervisor list
  autoOpened: false,
};

// ---------------------------------------------------------------- small helpers

/** Build an element. Strings among the children become text nodes, so no markup is ever parsed. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const shortId = (id) => (id ? `…${id.slice(-6)}` : '—');
const fmtTime = (iso) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString([], {dateStyle: 'short', timeStyle: 'short'});
};
const fmtClock = (iso) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
};
const ROLE_LABELS = {candidate: 'Candidate', agent: 'Agent', supervisor: 'Supervisor', admin: 'Admin'};
const roleLabel = (role) => ROLE_LABELS[role] ?? role;

function newClientMessageId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function formData(form) {
  const data = {};
  for (const [key, value] of new FormData(form)) data[key] = typeof value === 'string' ? value.trim() : value;
  return data;
}

function notify(message, kind = 'error') {
  $('#notice-text').textContent = message;
  $('#notice').dataset.kind = kind;
  $('#notice').hidden = false;
}

function clearNotice() {
  $('#notice').hidden = true;
  $('#notice-text').textContent = '';
}

function report(err) {
  notify(err instanceof Error ? err.message : String(err));
}

/** Run ``fn`` now (or after ``ms`` when ``later``), then every ``ms`` until the returned function is called. */
function every(ms, fn, {later = false} = {}) {
  let stopped = false;
  let timer = null;
  let failure = null; // the notice this poll put up, taken down once it works again
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
      if (failure !== null && $('#notice-text').textContent === failure) clearNotice();
      failure = null;
    } catch (err) {
      if (!stopped) {
        report(err);
        failure = err.message;
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  if (later) timer = setTimeout(tick, ms);
  else tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---------------------------------------------------------------- REST

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** One API call; resolves to the envelope's ``data``, rejects with the envelope's ``error``. */
async function api(method, path, body, {auth = true} = {}) {
  const headers = {Accept: 'application/json'};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
  let res;
  try {
    res = await fetch(path, {
      method, headers, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'The server cannot be reached');
  }
  let envelope = null;
  try {
    envelope = await res.json();
  } catch {
    // not JSON: reported below with the status
  }
  if (res.ok && envelope?.success) return envelope.data;
  if (res.status === 401 && auth && state.user) {
    signOut('Your session has ended, please log in again.');
  }
  throw new ApiError(res.status, envelope?.error ?? `HTTP ${res.status}`);
}

// ---------------------------------------------------------------- signing in and out

async function signIn(token, user) {
  state.token = token;
  state.user = user;
  state.autoOpened = false;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#auth-view').hidden = true;
  $('#workspace').hidden = false;
  $('#whoami').hidden = false;
  $('#whoami-name').textContent = user.name;
  $('#whoami-role').textContent = user.role;
  document.body.dataset.role = user.role;
  showRoleView(user.role);
}

function signOut(message) {
  closeChat();
  stopRoleView();
  clearTimeout(state.analyticsTimer);
  state.inbox = new Map();
  state.queue = new Map();
  state.presence = new Map();
  state.presenceHeard = new Set();
  state.team = {supervisorId: null, agents: []};
  state.token = null;
  state.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const id of ['#candidate-view', '#supervisor-view', '#agent-view', '#admin-view', '#team-view']) {
    $(id).hidden = true;
  }
  for (const id of ['#candidate-list', '#supervisor-list', '#agent-list', '#admin-list', '#agent-roster']) {
    $(id).replaceChildren();
    delete $(id).dataset.signature;
  }
  $('#analytics tbody').replaceChildren();
  delete $('#analytics tbody').dataset.signature;
  $('#workspace').hidden = true;
  $('#whoami').hidden = true;
  $('#auth-view').hidden = false;
  delete document.body.dataset.role;
  if (message) notify(message, 'info');
  else clearNotice();
}

async function login(email, password) {
  const {token, user} = await api('POST', '/auth/login', {email, password}, {auth: false});
  state.token = token;
  await signIn(token, user ?? await api('GET', '/auth/me'));
}

function setupAuthForms() {
  const role = $('#signup-role');
  const syncSupervisorRow = () => {
    $('#signup-supervisor-row').hidden = role.value !== 'agent';
  };
  role.addEventListener('change', syncSupervisorRow);
  syncSupervisorRow();

  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const {email, password} = formData(ev.target);
    try {
      clearNotice();
      await login(email, password);
      ev.target.reset();
    } catch (err) {
      report(err);
    }
  });

  $('#signup-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = formData(ev.target);
    if (data.role !== 'agent') delete data.supervisorId;
    try {
      clearNotice();
      await api('POST', '/auth/signup', data, {auth: false});
      await login(data.email, data.password);
      ev.target.reset();
      syncSupervisorRow();
    } catch (err) {
      report(err);
    }
  });

  $('#logout').addEventListener('click', () => signOut('You are logged out.'));
  $('#notice-dismiss').addEventListener('click', clearNotice);
}

// ---------------------------------------------------------------- the pushed inbox

/**
 * The desk socket: one WebSocket per signed-in tab that subscribes to the inbox (docs/asyncapi.yaml)
 * and hears presence (C.3) and queue positions (C.4). Lists render from ``state.inbox``, which this
 * socket keeps current; only while it is down do the lists fall back to re-reading REST.
 */
class Desk {
  constructor() {
    this.ws = null;
    this.live = false; // subscribed: the inbox on screen is current
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.onOnline = () => {
      if (this.retryTimer !== null) this.connect();
    };
  }

  start() {
    window.addEventListener('online', this.onOnline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.live = false;
    clearTimeout(this.retryTimer);
    window.removeEventListener('online', this.onOnline);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, 'bye');
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    setDeskState('connecting', 'connecting…');
    const ws = openSocket();
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (ws === this.ws) ws.send(JSON.stringify({event: 'SUBSCRIBE_INBOX', data: {}}));
    });
    ws.addEventListener('message', (ev) => {
      if (ws === this.ws) this.onFrame(ev.data);
    });
    ws.addEventListener('close', (ev) => {
      if (ws === this.ws) this.onClose(ev);
    });
  }

  onClose(ev) {
    this.ws = null;
    this.live = false;
    if (this.stopped) return;
    if (ev.code === 4401) {
      signOut('Your session has ended, please log in again.');
      return;
    }
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    setDeskState('reconnecting', 'polling');
    syncPresenceToggle();
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** False when not connected: the caller tells the user. */
  send(event, data) {
    if (!this.live || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({event, data}));
    return true;
  }

  onFrame(text) {
    const frame = parseFrame(text);
    if (!frame) return;
    const data = frame.data ?? {};
    switch (frame.event) {
      case 'INBOX_SUBSCRIBED':
        this.live = true;
        this.attempt = 0;
        setDeskState('live', 'live');
        subscribed(data.conversations ?? []);
        break;
      case 'CONVERSATION_UPDATED':
        conversationUpdated(data.conversation);
        break;
      case 'CONVERSATION_REMOVED':
        conversationRemoved(data.conversationId);
        break;
      case 'PRESENCE':
        presenceChanged(data);
        break;
      case 'QUEUE_POSITION':
        queuePosition(data);
        break;
      case 'ERROR':
        notify(typeof data.message === 'string' ? data.message : 'Unknown error');
        break;
      default:
        break;
    }
  }
}

function openSocket() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // The WebSocket API cannot send headers: the token goes in this one URL (the server never logs it).
  return new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(state.token)}`);
}

function parseFrame(text) {
  try {
    const frame = JSON.parse(text);
    return frame && typeof frame.event === 'string' ? frame : null;
  } catch {
    return null;
  }
}

/** Jittered exponential backoff: half the step fixed, half random, so clients do not stampede. */
function backoffDelay(attempt) {
  const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(step / 2 + Math.random() * (step / 2));
}

function setDeskState(name, text) {
  const el = $('#inbox-connection');
  el.dataset.state = name;
  el.textContent = text;
}

/** The first page after (re)subscribing replaces the list: whatever happened while away is in it. */
function subscribed(conversations) {
  replaceInbox(conversations);
  if (state.user.role === 'agent' && state.myPresence === 'away') {
    // A reconnect may have made us a first socket again, which starts available: keep our choice.
    state.desk.send('SET_PRESENCE', {status: 'away'});
  }
  syncPresenceToggle();
  if (['supervisor', 'admin'].includes(state.user.role)) {
    state.presenceHeard.clear(); // presence events were missed while down: the roster re-reads it
    loadTeam().catch(report);
  }
}

function replaceInbox(conversations) {
  const before = state.inbox;
  state.inbox = new Map(conversations.map((c) => [c._id, {...before.get(c._id), ...c}]));
  inboxChanged();
  for (const c of conversations) state.chat?.inboxItem(c);
  autoOpenActiveConversation();
}

function conversationUpdated(item) {
  if (!item?._id) return;
  const before = state.inbox.get(item._id);
  state.inbox.set(item._id, {...before, ...item, lastMessage: item.lastMessage ?? before?.lastMessage ?? null});
  if (!before || before.agentId !== item.agentId || before.status !== item.status) teamLoadChanged();
  if (item.agentId || item.status !== 'open') state.queue.delete(item._id);
  inboxChanged();
  state.chat?.inboxItem(item);
}

function conversationRemoved(conversationId) {
  state.inbox.delete(conversationId);
  state.queue.delete(conversationId);
  inboxChanged();
  // No longer ours (reassigned or transferred away): REST says what we may still do with it —
  // unless we are the ones handing it over, and know.
  if (state.chat?.id === conversationId && !state.chat.handingOver) state.chat.refresh().catch(report);
}

/** While the desk socket is down, the lists are re-read every POLL_MS; while it is live, never. */
function pollWhileDeskIsDown() {
  return every(POLL_MS, async () => {
    if (!state.desk || state.desk.live) return;
    replaceInbox(await api('GET', '/conversations'));
    if (['supervisor', 'admin'].includes(state.user.role)) await loadTeam(); // presence is not pushed now
    if (state.chat && !state.chat.stopped) await state.chat.refresh();
  }, {later: true});
}

function autoOpenActiveConversation() {
  if (state.user.role !== 'candidate' || state.chat || state.autoOpened) return;
  const active = [...state.inbox.values()].find((c) => ACTIVE.has(c.status));
  if (active) {
    state.autoOpened = true;
    openChat(active._id);
  }
}

/** Newest first, as GET /conversations pages them; the role's status filter applied. */
function inboxItems(select) {
  const wanted = select?.value;
  return [...state.inbox.values()]
    .filter((c) => !wanted || c.status === wanted)
    .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '') || b._id.localeCompare(a._id));
}

function inboxChanged() {
  const render = {candidate: renderCandidateList, supervisor: renderSupervisorList, agent: renderAgentList,
    admin: renderAdminList}[state.user?.role];
  render?.();
}

// ---------------------------------------------------------------- role views

function showRoleView(role) {
  stopRoleView();
  const views = {candidate: candidateView, supervisor: supervisorView, agent: agentView, admin: adminView};
  for (const name of Object.keys(views)) $(`#${name}-view`).hidden = name !== role;
  $('#team-view').hidden = !['supervisor', 'admin'].includes(role);
  const view = views[role];
  if (!view) {
    notify(`Unknown role: ${role}`);
    return;
  }
  view();
  state.desk = new Desk();
  state.desk.start();
  state.stopFallback = pollWhileDeskIsDown();
}

function stopRoleView() {
  state.desk?.stop();
  state.desk = null;
  state.stopFallback?.();
  state.stopFallback = null;
  clearTimeout(state.teamReloadTimer);
  setDeskState('idle', 'idle');
}

/** Re-render a list only when its data changed, so open selects and focus survive updates. */
function renderList(ul, items, signature, renderItem, emptyText) {
  if (ul.dataset.signature === signature) return;
  ul.dataset.signature = signature;
  ul.replaceChildren(...(items.length ? items.map(renderItem) : [h('li', {class: 'empty muted'}, emptyText)]));
  markCurrent();
}

function markCurrent() {
  for (const li of document.querySelectorAll('.conv-list li[data-id]')) {
    if (state.chat && li.dataset.id === state.chat.id) li.setAttribute('aria-current', 'true');
    else li.removeAttribute('aria-current');
  }
}

function statusBadge(status) {
  return h('span', {class: 'status', dataset: {status}}, status);
}

const candidateLabel = (c) => c.candidateName ?? `Candidate ${shortId(c.candidateId)}`;
const agentLabel = (c) => (c.agentId ? (c.agentName ?? shortId(c.agentId)) : 'none');

/** How many messages from the other side this user has not read (C.6); nothing when none. */
function unreadBadge(c) {
  if (!(c.unread > 0) || state.chat?.id === c._id) return null;
  return h('span', {class: 'unread-badge', title: `${c.unread} unread`, dataset: {unread: String(c.unread)}},
    String(c.unread));
}

/** The last line, shortened: what a list shows of the conversation's text. */
function lastLine(c) {
  const text = c.lastMessage?.content;
  if (!text) return null;
  return h('span', {class: 'last-line muted small'}, `${roleLabel(c.lastMessage.senderRole)}: ${text}`);
}

/** Watch live while it is active; once closed, read the transcript. */
function watchButton(c) {
  const closed = c.status === 'closed';
  return h('button', {type: 'button', class: 'secondary view', onclick: () => openChat(c._id)},
    closed ? 'Transcript' : 'Watch');
}

function candidateView() {
  const select = $('#start-supervisor');
  api('GET', '/supervisors').then((sups) => {
    state.supervisors = new Map(sups.map((s) => [s._id, s.name]));
    select.replaceChildren(...(sups.length
      ? sups.map((s) => h('option', {value: s._id}, s.name))
      : [h('option', {value: ''}, 'No supervisor yet')]));
    renderCandidateList();
  }).catch(report);
}

function renderCandidateList() {
  const convs = inboxItems(null);
  renderList($('#candidate-list'), convs, JSON.stringify([convs, [...state.supervisors], [...state.queue]]), (c) =>
    h('li', {dataset: {id: c._id, status: c.status}},
      h('span', {class: 'conv-title'}, `With ${state.supervisors.get(c.supervisorId) ?? shortId(c.supervisorId)}`),
      statusBadge(c.status),
      unreadBadge(c),
      c.agentId ? h('span', {class: 'small'}, `Agent: ${agentLabel(c)}`) : null,
      state.queue.has(c._id) ? h('span', {class: 'small queue-inline'}, `Queue: #${state.queue.get(c._id)}`) : null,
      h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
      h('button', {type: 'button', class: 'secondary', onclick: () => openChat(c._id)}, 'Open')),
  'No conversation yet.');
}

async function startConversation(ev) {
  ev.preventDefault();
  const supervisorId = $('#start-supervisor').value;
  if (!supervisorId) {
    notify('Pick a supervisor first.');
    return;
  }
  try {
    clearNotice();
    const conv = await api('POST', '/conversations', {supervisorId});
    state.autoOpened = true;
    conversationUpdated(conv); // the inbox pushes it too (with names); show it without waiting
    await openChat(conv._id);
  } catch (err) {
    report(err);
  }
}

function supervisorView() {
  $('#supervisor-own-id').textContent = state.user._id;
  $('#team-title').textContent = 'Your team';
  $('#team-picker-row').hidden = true;
  $('#add-agent-details').hidden = false;
  state.team.supervisorId = state.user._id;
  loadTeam().catch(report);
  loadRouting().catch(report);
}

function renderSupervisorList() {
  const convs = inboxItems($('#supervisor-status'));
  const agents = state.team.agents;
  renderList($('#supervisor-list'), convs, JSON.stringify([convs, agents.map((a) => [a._id, a.name])]),
    (c) => supervisorItem(c, agents), 'No conversation with this status.');
}

function supervisorItem(c, agents) {
  const actions = [];
  if (c.status !== 'closed') {
    const selectId = `assign-${c._id}`;
    const select = h('select', {id: selectId, class: 'assign-agent'},
      agents.length ? agents.map((a) => h('option', {value: a._id}, a.name)) : [h('option', {value: ''}, 'no agents')]);
    const chosen = state.assignChoice.get(c._id) ?? c.agentId;
    if (chosen && agents.some((a) => a._id === chosen)) select.value = chosen;
    select.addEventListener('change', () => state.assignChoice.set(c._id, select.value));
    actions.push(
      h('label', {for: selectId, class: 'visually-hidden'}, `Agent for conversation ${c._id}`), select,
      h('button', {type: 'button', class: 'assign', onclick: () => assign(c._id, select.value)},
        c.agentId ? 'Reassign' : 'Assign'));
  }
  if (c.status === 'open') {
    actions.push(h('button', {type: 'button', class: 'danger close', onclick: () => closeOverHttp(c._id)}, 'Close'));
  }
  actions.push(watchButton(c));
  return h('li', {dataset: {id: c._id, status: c.status}},
    h('span', {class: 'conv-title'}, candidateLabel(c)),
    statusBadge(c.status),
    unreadBadge(c),
    h('span', {class: 'small agent-name'}, `Agent: ${agentLabel(c)}`),
    h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
    lastLine(c),
    h('span', {class: 'actions'}, actions));
}

async function assign(conversationId, agentId) {
  if (!agentId) {
    notify('Add an agent to your team first.');
    return;
  }
  try {
    await api('POST', `/conversations/${conversationId}/assign`, {agentId});
    state.assignChoice.delete(conversationId);
    notify(`Assigned to ${agentName(agentId)}.`, 'info');
  } catch (err) {
    report(err);
  }
}

async function closeOverHttp(conversationId) {
  try {
    await api('POST', `/conversations/${conversationId}/close`, {});
    notify('Conversation closed.', 'info');
    if (state.chat?.id === conversationId) await state.chat.refresh();
  } catch (err) {
    report(err);
  }
}

function agentView() {
  state.myPresence = 'available'; // a first socket starts available (C.3)
  syncPresenceToggle();
}

function renderAgentList() {
  const convs = inboxItems($('#agent-status'));
  renderList($('#agent-list'), convs, JSON.stringify(convs), (c) =>
    h('li', {dataset: {id: c._id, status: c.status}},
      h('span', {class: 'conv-title'}, candidateLabel(c)),
      statusBadge(c.status),
      unreadBadge(c),
      h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
      lastLine(c),
      h('button', {type: 'button', class: 'join', onclick: () => openChat(c._id)},
        c.status === 'closed' ? 'View' : 'Join')),
  'Nothing assigned to you.');
}

function adminView() {
  $('#team-title').textContent = 'Teams';
  $('#team-picker-row').hidden = false;
  $('#add-agent-details').hidden = true; // the admin creates accounts with the form above
  loadAnalytics().catch(report);
  loadSupervisorsForAdmin().catch(report);
}

function renderAdminList() {
  const convs = inboxItems($('#admin-status'));
  renderList($('#admin-list'), convs, JSON.stringify([convs, [...state.supervisors]]), (c) =>
    h('li', {dataset: {id: c._id, status: c.status}},
      h('span', {class: 'conv-title'}, candidateLabel(c)),
      statusBadge(c.status),
      unreadBadge(c),
      h('span', {class: 'small agent-name'}, `Agent: ${agentLabel(c)}`),
      h('span', {class: 'small'}, `Team: ${state.supervisors.get(c.supervisorId) ?? shortId(c.supervisorId)}`),
      h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
      lastLine(c),
      watchButton(c)),
  'No conversation with this status.');
  scheduleAnalytics(); // closes and new teams change the figures: re-read them (not pushed)
}

async function loadAnalytics() {
  const stats = await api('GET', '/admin/analytics');
  const body = $('#analytics tbody');
  const signature = JSON.stringify(stats);
  if (body.dataset.signature === signature) return;
  body.dataset.signature = signature;
  body.replaceChildren(...(stats.length ? stats.map((s) => h('tr', {dataset: {supervisorId: s.supervisorId}},
    h('th', {scope: 'row'}, s.supervisorName), h('td', {}, s.agents), h('td', {}, s.conversationsHandled)))
    : [h('tr', {}, h('td', {colspan: 3, class: 'muted'}, 'No supervisor yet.'))]));
}

function scheduleAnalytics() {
  clearTimeout(state.analyticsTimer);
  state.analyticsTimer = setTimeout(() => loadAnalytics().catch(report), TEAM_RELOAD_MS);
}

async function loadSupervisorsForAdmin() {
  const sups = await api('GET', '/supervisors');
  state.supervisors = new Map(sups.map((s) => [s._id, s.name]));
  const select = $('#team-supervisor');
  const keep = select.value;
  select.replaceChildren(...(sups.length
    ? sups.map((s) => h('option', {value: s._id}, s.name))
    : [h('option', {value: ''}, 'No supervisor yet')]));
  if (keep && state.supervisors.has(keep)) select.value = keep;
  await chooseTeam(select.value || null);
  renderAdminList();
}

async function chooseTeam(supervisorId) {
  state.team = {supervisorId, agents: []};
  renderRoster();
  if (!supervisorId) return;
  await Promise.all([loadTeam(), loadRouting()]);
}

async function createAccount(ev, role) {
  ev.preventDefault();
  const data = formData(ev.target);
  if (role) data.role = role;
  if (!data.supervisorId || data.role !== 'agent') delete data.supervisorId;
  try {
    const user = await api('POST', '/auth/signup', data);
    notify(`Created ${user.role} ${user.name} (ID ${user._id}).`, 'info');
    ev.target.reset();
    if (state.user.role === 'admin') {
      await Promise.all([loadAnalytics(), loadSupervisorsForAdmin()]);
    } else {
      await loadTeam();
    }
  } catch (err) {
    report(err);
  }
}

// ---------------------------------------------------------------- the team: agents, presence, routing

const PRESENCE_LABELS = {available: 'available', away: 'away', offline: 'offline'};
const TEAM_RELOAD_MS = 300;

const agentName = (id) => state.team.agents.find((a) => a._id === id)?.name ?? shortId(id);

/** GET /agents (the inbox does not carry the roster); an admin's list narrowed to the chosen team. */
async function loadTeam() {
  const supervisorId = state.team.supervisorId;
  if (!supervisorId) return;
  const agents = (await api('GET', '/agents')).filter((a) => a.supervisorId === supervisorId);
  if (state.team.supervisorId !== supervisorId) return; // another team was picked meanwhile
  state.team.agents = agents;
  for (const a of agents) {
    // A PRESENCE event heard since subscribing is newer than this read: it wins.
    if (!state.presenceHeard.has(a._id)) state.presence.set(a._id, a.presence);
  }
  renderRoster();
  inboxChanged(); // the supervisor's assign menus list the team
}

/** Active counts change with assignments; re-read them shortly after (several updates, one read). */
function teamLoadChanged() {
  if (!['supervisor', 'admin'].includes(state.user?.role)) return;
  clearTimeout(state.teamReloadTimer);
  state.teamReloadTimer = setTimeout(() => loadTeam().catch(report), TEAM_RELOAD_MS);
}

function presenceChanged({userId, status}) {
  if (!userId || !PRESENCE_LABELS[status]) return;
  state.presence.set(userId, status);
  state.presenceHeard.add(userId);
  renderRoster();
  if (state.chat?.watcher) syncTransferForm(state.chat);
}

function presenceDot(status) {
  const label = PRESENCE_LABELS[status] ?? 'offline';
  return h('span', {class: 'presence', dataset: {presence: label}},
    h('span', {class: 'dot', 'aria-hidden': 'true'}), h('span', {class: 'presence-text small'}, label));
}

function renderRoster() {
  const agents = state.team.agents.map((a) => ({...a, presence: state.presence.get(a._id) ?? a.presence}));
  const empty = state.user?.role === 'admin' ? 'No agent in this team.'
    : 'No agent yet: add one below, or share your supervisor ID.';
  renderList($('#agent-roster'), agents, JSON.stringify(agents), (a) =>
    h('li', {dataset: {agentId: a._id, presence: a.presence}},
      presenceDot(a.presence), ' ', h('strong', {}, a.name), ' ',
      h('span', {class: 'small'}, `${a.activeConversations} active`), ' ',
      h('span', {class: 'muted small'}, `${a.email} · ID ${a._id}`)),
  empty);
}

async function loadRouting() {
  const supervisorId = state.team.supervisorId;
  if (!supervisorId) return;
  showRouting(await api('GET', `/supervisors/${encodeURIComponent(supervisorId)}/routing`));
}

function showRouting(routing) {
  $('#routing-mode').value = routing.mode;
  $('#routing-max').value = String(routing.maxConcurrent);
  $('#routing-state').textContent = routing.mode === 'auto'
    ? `Now: auto, at most ${routing.maxConcurrent} active per agent.`
    : 'Now: manual.';
}

async function saveRouting(ev) {
  ev.preventDefault();
  const supervisorId = state.team.supervisorId;
  if (!supervisorId) {
    notify('Pick a team first.');
    return;
  }
  const {mode, maxConcurrent} = formData(ev.target);
  // Sent as typed (a number when it is one): the server's rules (1–50, whole) are the ones shown.
  const body = {mode, maxConcurrent: maxConcurrent === '' ? null : Number(maxConcurrent)};
  try {
    const routing = await api('PUT', `/supervisors/${encodeURIComponent(supervisorId)}/routing`, body);
    showRouting(routing);
    notify(`Routing saved: ${routing.mode}.`, 'info');
  } catch (err) {
    report(err);
  }
}

/** The agent's own availability: the server does not echo it, so the page shows what it asked. */
function togglePresence() {
  const next = state.myPresence === 'away' ? 'available' : 'away';
  if (!state.desk?.send('SET_PRESENCE', {status: next})) {
    notify('Not connected: try again when the connection is back.');
    return;
  }
  state.myPresence = next;
  syncPresenceToggle();
}

function syncPresenceToggle() {
  if (state.user?.role !== 'agent') return;
  const live = Boolean(state.desk?.live);
  const shown = live ? state.myPresence : 'offline';
  const label = $('#my-presence');
  label.textContent = shown;
  label.dataset.presence = shown;
  const button = $('#presence-toggle');
  button.disabled = !live;
  button.textContent = state.myPresence === 'away' ? 'Set available' : 'Set away';
  button.setAttribute('aria-pressed', String(state.myPresence === 'away'));
}

/** Candidates waiting in an auto team's queue hear their place (1 = next). */
function queuePosition({conversationId, position}) {
  if (!conversationId || !Number.isInteger(position)) return;
  const item = state.inbox.get(conversationId);
  if (item && (item.agentId || item.status !== 'open')) return; // already taken: a late count
  state.queue.set(conversationId, position);
  inboxChanged();
  if (state.chat?.id === conversationId) state.chat.showQueue();
}

// ---------------------------------------------------------------- the conversation view

/**
 * One conversation on screen. Live (candidate, agent): a WebSocket that joins with the highest
 * contiguous ``seq`` seen, so a reconnect replays exactly what was missed; lines are keyed by
 * ``seq`` so nothing shows twice. Watched (supervisor, admin): the same socket and resume, with
 * WATCH_CONVERSATION instead of JOIN, read-only. Closed: the HTTP transcript.
 * Status and names follow the pushed inbox; REST is re-read only while the desk socket is down.
 */
class Chat {
  constructor(id) {
    this.id = id;
    this.live = ['candidate', 'agent'].includes(state.user.role); // may write
    this.watcher = ['supervisor', 'admin'].includes(state.user.role);
    this.conv = null; // the latest list item (names, agent, supervisor)
    this.list = $('#messages');
    this.bySeq = new Map(); // seq -> <li>
    this.pending = new Map(); // clientMessageId -> {li, content}, in send order
    this.lastSeq = 0; // every seq up to this one is on screen
    this.status = null;
    this.ws = null;
    this.joining = false;
    this.joined = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.fatal = false;
    this.teamAgents = null; // the agents a transfer may go to, and for which current agent they were listed
    this.teamAgentsFor = undefined;
    this.handingOver = false; // our own transfer is in flight: its CONVERSATION_REMOVED is expected
    this.staff = state.user.role !== 'candidate'; // sees and writes private notes (C.7)
    this.notes = new Map(); // noteId -> <li>
    this.pendingNotes = new Map(); // clientMessageId -> <li>
    this.readByOthers = 0; // the other side has read our lines up to this seq (✓✓)
    this.toMark = false; // a message from the other side is on screen and not yet marked read
    this.markTimer = null;
    this.typingSentAt = 0; // when we last sent TYPING (the server forwards one per 2 s anyway)
    this.typingTimer = null;
    this.onOnline = () => {
      if (this.retryTimer !== null) this.connect();
    };
  }

  async start() {
    this.list.replaceChildren();
    $('#chat-id').textContent = this.id;
    $('#chat-title').textContent = this.live ? 'Chat' : 'Transcript';
    $('#chat-connection-wrap').hidden = true;
    $('#chat-people').textContent = '';
    $('#chat-queue').hidden = true;
    $('#chat-watch-note').hidden = true;
    $('#composer').hidden = true;
    $('#note-composer').hidden = true;
    $('#chat-typing').hidden = true;
    $('#chat-close').hidden = true;
    $('#transfer-form').hidden = true;
    this.setConnection('idle', 'not connected');
    this.renderStatus('…');
    this.updateEmpty();
    $('#chat-view').hidden = false;
    $('#workspace').classList.add('chatting');
    markCurrent();
    let conv;
    try {
      conv = await api('GET', `/conversations/${encodeURIComponent(this.id)}`);
    } catch (err) {
      if (state.chat === this) closeChat();
      throw err;
    }
    if (this.stopped) return;
    for (const m of conv.messages) this.addMessage(m);
    for (const n of conv.notes ?? []) this.addNote(n, conv.messages);
    this.inboxItem(conv);
    if (this.status !== 'closed') {
      if (this.watcher) {
        $('#chat-title').textContent = 'Watching';
        $('#chat-watch-note').hidden = false;
      }
      $('#chat-connection-wrap').hidden = false;
      window.addEventListener('online', this.onOnline);
      this.connect();
    }
  }

  get socketed() {
    return this.live || this.watcher;
  }

  /** The conversation as the inbox (or REST) last described it: status, people, queue. */
  inboxItem(item) {
    if (item._id !== this.id || this.stopped) return;
    this.conv = {...this.conv, ...item};
    const people = [`Candidate: ${candidateLabel(this.conv)}`, `Agent: ${agentLabel(this.conv)}`];
    // A candidate knows who they are: only the agent is news to them.
    $('#chat-people').textContent = state.user.role === 'candidate' ? people[1] : people.join(' · ');
    this.setStatus(item.status);
    this.showQueue();
    syncTransferForm(this);
  }

  showQueue() {
    const el = $('#chat-queue');
    const position = state.queue.get(this.id);
    const waiting = this.status === 'open' && !this.conv?.agentId && position !== undefined;
    el.hidden = !waiting;
    el.dataset.position = waiting ? String(position) : '';
    el.textContent = !waiting ? '' : position === 1
      ? 'You are next in the queue: an agent will be with you shortly.'
      : `You are number ${position} in the queue.`;
  }

  /** A REST read: the inbox said we lost it, or the desk socket is down (the fallback poll). */
  async refresh() {
    let conv;
    try {
      conv = await api('GET', `/conversations/${encodeURIComponent(this.id)}`);
    } catch (err) {
      if (this.stopped) return;
      if (err.status === 403 || err.status === 404) {
        this.fail(`${err.message}: you no longer have access to this conversation.`);
        return;
      }
      throw err;
    }
    if (this.stopped) return;
    if (!this.live) for (const m of conv.messages) this.addMessage(m);
    for (const n of conv.notes ?? []) this.addNote(n, conv.messages);
    this.inboxItem(conv);
  }

  renderStatus(status) {
    const el = $('#chat-status');
    el.textContent = status;
    el.dataset.status = status;
  }

  setStatus(status) {
    // Closed is final: a late inbox update (a message before the close) must not reopen it.
    if (!status || status === this.status || this.status === 'closed') return;
    this.status = status;
    this.renderStatus(status);
    for (const li of document.querySelectorAll(`.conv-list li[data-id="${this.id}"]`)) {
      li.dataset.status = status; // the list catches up with the inbox; show it at once
      const badge = li.querySelector('.status');
      if (badge) {
        badge.textContent = status;
        badge.dataset.status = status;
      }
    }
    const open = status !== 'closed';
    $('#composer').hidden = !(this.live && open);
    $('#note-composer').hidden = !(this.staff && open);
    $('#chat-close').hidden = !(state.user.role === 'agent' && open);
    if (!open) this.ended();
  }

  ended() {
    this.halt();
    for (const {li} of this.pending.values()) setDelivery(li, 'failed', 'not sent: the conversation is closed');
    this.pending.clear();
    $('#chat-queue').hidden = true;
    $('#transfer-form').hidden = true;
    if (this.socketed) this.setConnection('ended', 'conversation closed');
  }

  fail(message) {
    this.fatal = true;
    this.halt();
    this.setConnection('offline', 'not connected');
    $('#composer').hidden = true;
    $('#note-composer').hidden = true;
    $('#chat-close').hidden = true;
    $('#transfer-form').hidden = true;
    notify(message);
  }

  /** Stop the socket, the reconnects and the poll (the view may stay on screen). */
  halt() {
    clearTimeout(this.markTimer);
    clearTimeout(this.typingTimer);
    $('#chat-typing').hidden = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    window.removeEventListener('online', this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (this.watcher && this.joined) this.transmitOn(ws, 'UNWATCH_CONVERSATION', {conversationId: this.id});
    this.joined = this.joining = false;
    ws?.close(1000, 'bye');
  }

  stop() {
    this.stopped = true;
    this.halt();
  }

  setConnection(stateName, text) {
    const el = $('#chat-connection');
    el.dataset.state = stateName;
    el.textContent = text;
  }

  connect() {
    if (this.stopped || this.fatal || this.status === 'closed') return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.setConnection('connecting', this.attempt ? `reconnecting (attempt ${this.attempt + 1})…` : 'connecting…');
    const ws = openSocket();
    this.ws = ws;
    this.joined = false;
    this.joining = false;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      this.joining = true;
      this.setConnection('joining', this.watcher ? 'starting to watch…' : 'joining…');
      const event = this.watcher ? 'WATCH_CONVERSATION' : 'JOIN_CONVERSATION';
      this.transmit(event, {conversationId: this.id, lastSeq: this.lastSeq});
    });
    ws.addEventListener('message', (ev) => {
      if (ws === this.ws) this.onFrame(ev.data);
    });
    ws.addEventListener('close', (ev) => {
      if (ws === this.ws) this.onClose(ev);
    });
  }

  onClose(ev) {
    this.ws = null;
    this.joined = this.joining = false;
    if (this.stopped || this.fatal || this.status === 'closed') return;
    if (ev.code === 4401) {
      signOut('Your session has ended, please log in again.');
      return;
    }
    for (const {li} of this.pending.values()) setDelivery(li, 'pending', 'waiting for the connection…');
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setConnection('reconnecting', `disconnected, retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  transmit(event, data) {
    return this.transmitOn(this.ws, event, data);
  }

  transmitOn(ws, event, data) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({event, data}));
    return true;
  }

  onFrame(text) {
    const frame = parseFrame(text);
    if (!frame) return;
    const data = frame.data ?? {};
    if (data.conversationId !== undefined && data.conversationId !== this.id) return;
    switch (frame.event) {
      case 'JOINED_CONVERSATION':
      case 'WATCHING_CONVERSATION':
        this.joining = false;
        this.joined = true;
        this.attempt = 0;
        this.setConnection('connected', 'connected');
        this.setStatus(data.status);
        for (const clientMessageId of this.pending.keys()) this.sendPending(clientMessageId);
        this.markReadSoon();
        break;
      case 'NEW_MESSAGE':
        this.addMessage(data);
        break;
      case 'TYPING':
        this.showTyping(data);
        break;
      case 'READ':
        this.readUpTo(data);
        break;
      case 'NEW_NOTE':
        this.addNote(data);
        break;
      case 'NOTE_SENT':
        this.noteSent(data);
        break;
      case 'MESSAGE_SENT':
        this.acknowledged(data);
        break;
      case 'QUEUE_POSITION':
        queuePosition(data);
        break;
      case 'CONVERSATION_CLOSED':
        this.setStatus('closed');
        notify('The conversation is closed.', 'info');
        break;
      case 'ERROR':
        this.onError(data);
        break;
      default:
        break;
    }
  }

  onError(data) {
    const message = typeof data.message === 'string' ? data.message : 'Unknown error';
    const pending = data.clientMessageId && this.pending.get(data.clientMessageId);
    if (pending) {
      this.pending.delete(data.clientMessageId);
      setDelivery(pending.li, 'failed', `not sent: ${message}`);
    }
    const note = data.clientMessageId && this.pendingNotes.get(data.clientMessageId);
    if (note) {
      this.pendingNotes.delete(data.clientMessageId);
      setDelivery(note, 'failed', `not sent: ${message}`);
    }
    if (message === 'Conversation already closed') {
      this.setStatus('closed');
    } else if (this.joining && !pending && ['Not allowed to access this conversation', 'Forbidden for this role',
      'Invalid request schema'].includes(message)) {
      this.fail(message);
      return;
    }
    notify(message);
  }

  addMessage(m) {
    if (!Number.isInteger(m.seq) || this.bySeq.has(m.seq)) return; // seen already: a replay overlap
    const li = renderMessage(m);
    this.bySeq.set(m.seq, li);
    this.insert(li, m.seq);
    this.advance();
    if (m.senderId === state.user._id) {
      if (m.seq <= this.readByOthers) markLineRead(li);
    } else {
      this.toMark = true;
      this.markReadSoon();
      this.typingStopped(m.senderId); // the line they were typing has come
    }
  }

  /** Tell the server what we have seen (C.6), once things settle: one MARK_READ for a burst. */
  markReadSoon() {
    clearTimeout(this.markTimer);
    this.markTimer = setTimeout(() => {
      if (!this.toMark || !this.joined || !this.lastSeq) return;
      if (this.transmit('MARK_READ', {conversationId: this.id, seq: this.lastSeq})) this.toMark = false;
    }, 300);
  }

  /** Someone else read up to ``seq``: our own lines up to it get ✓✓ — when the reader is on the
   * other side (a watcher's read is staff reading staff, not a receipt for the candidate's agent). */
  readUpTo({userId, role, seq}) {
    if (userId === state.user._id || !Number.isInteger(seq)) return;
    if ((role === 'candidate') === (state.user.role === 'candidate')) return;
    this.readByOthers = Math.max(this.readByOthers, seq);
    for (const [lineSeq, li] of this.bySeq) {
      if (lineSeq <= seq && li.classList.contains('mine')) markLineRead(li);
    }
  }

  /** We are typing: say so, at most every 2 s (the server drops the rest anyway). */
  typed() {
    if (!this.live || !this.joined || Date.now() - this.typingSentAt < 2000) return;
    if (this.transmit('TYPING', {conversationId: this.id})) this.typingSentAt = Date.now();
  }

  showTyping({userId, role}) {
    if (userId === state.user._id) return;
    const el = $('#chat-typing');
    el.textContent = `${roleLabel(role)} is typing…`;
    el.dataset.userId = userId;
    el.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => { el.hidden = true; }, 5000); // C.5: gone 5 s after the last one
  }

  typingStopped(userId) {
    const el = $('#chat-typing');
    if (el.dataset.userId === userId) {
      clearTimeout(this.typingTimer);
      el.hidden = true;
    }
  }

  /** A private note (staff only): placed after the messages that were there when it was written. */
  addNote(n, messages = null) {
    if (!n?.noteId || this.notes.has(n.noteId)) return;
    const afterSeq = messages
      ? Math.max(0, ...messages.filter((m) => m.createdAt <= n.createdAt).map((m) => m.seq))
      : this.lastSeq;
    const li = renderNote(n, afterSeq);
    this.notes.set(n.noteId, li);
    this.insert(li, afterSeq + 0.5);
  }

  sendNote(content) {
    const clientMessageId = newClientMessageId();
    const li = renderNote({senderId: state.user._id, senderRole: state.user.role, content,
      createdAt: new Date().toISOString()}, this.lastSeq);
    this.pendingNotes.set(clientMessageId, li);
    this.insert(li, this.lastSeq + 0.5);
    setDelivery(li, 'pending', 'sending…');
    if (!this.joined || !this.transmit('SEND_NOTE', {conversationId: this.id, content, clientMessageId})) {
      this.pendingNotes.delete(clientMessageId);
      setDelivery(li, 'failed', 'not sent: not connected');
    }
  }

  noteSent(data) {
    const li = this.pendingNotes.get(data.clientMessageId);
    if (!li) return;
    this.pendingNotes.delete(data.clientMessageId);
    const known = this.notes.get(data.noteId);
    if (known) {
      li.remove();
      return;
    }
    li.dataset.noteId = data.noteId;
    this.notes.set(data.noteId, li);
    setDelivery(li, 'sent', '✓ saved');
  }

  /** Lines with a seq in seq order; our own unacknowledged lines stay at the bottom. */
  insert(li, seq) {
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 48;
    let after = null;
    for (let c = this.list.lastElementChild; c; c = c.previousElementSibling) {
      // A note sits after seq ``afterSeq``: it counts as ``afterSeq + 0.5``.
      const at = c.dataset.seq ? Number(c.dataset.seq) : c.dataset.afterSeq ? Number(c.dataset.afterSeq) + 0.5 : null;
      if (at !== null && at < seq) {
        after = c;
        break;
      }
    }
    this.list.insertBefore(li, after ? after.nextElementSibling : this.list.firstElementChild);
    this.updateEmpty();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  advance() {
    while (this.bySeq.has(this.lastSeq + 1)) this.lastSeq += 1;
  }

  updateEmpty() {
    $('#chat-empty').hidden = this.list.childElementCount > 0;
  }

  send(content) {
    const clientMessageId = newClientMessageId();
    const li = renderMessage({senderId: state.user._id, senderRole: state.user.role, content,
      createdAt: new Date().toISOString()});
    this.pending.set(clientMessageId, {li, content});
    this.list.append(li);
    this.updateEmpty();
    this.list.scrollTop = this.list.scrollHeight;
    if (!this.sendPending(clientMessageId)) setDelivery(li, 'pending', 'waiting for the connection…');
  }

  /** (Re)send: the same clientMessageId after a reconnect is stored once and acknowledged again. */
  sendPending(clientMessageId) {
    const {li, content} = this.pending.get(clientMessageId);
    if (!this.joined) return false;
    setDelivery(li, 'pending', 'sending…');
    return this.transmit('SEND_MESSAGE', {conversationId: this.id, content, clientMessageId});
  }

  acknowledged(data) {
    const pending = this.pending.get(data.clientMessageId);
    if (!pending) return; // a repeated acknowledgement
    this.pending.delete(data.clientMessageId);
    const known = this.bySeq.get(data.seq);
    if (known) {
      // The replay after a reconnect brought it back before its acknowledgement: keep one line.
      pending.li.remove();
      if (known.dataset.read !== 'true') setDelivery(known, 'sent', '✓ sent');
      this.updateEmpty();
      return;
    }
    pending.li.dataset.seq = String(data.seq);
    pending.li.dataset.messageId = data.messageId;
    if (data.seq <= this.readByOthers) markLineRead(pending.li);
    else setDelivery(pending.li, 'sent', '✓ sent');
    pending.li.remove();
    this.bySeq.set(data.seq, pending.li);
    this.insert(pending.li, data.seq);
    this.advance();
  }

  closeInChat() {
    if (!this.transmit('CLOSE_CONVERSATION', {conversationId: this.id})) {
      notify('Not connected: try again when the connection is back.');
    }
  }
}

// ---------------------------------------------------------------- transfer

/** The agents this user may hand the chat to (the server leaves the current agent out), again
 * whenever the chat's agent changes. For its assigned agent and for watchers. */
async function loadTransferChoices(chat) {
  const agentId = chat.conv?.agentId;
  if (!mayTransfer(chat) || chat.teamAgentsFor === agentId) return;
  chat.teamAgentsFor = agentId;
  const agents = await api('GET', `/conversations/${encodeURIComponent(chat.id)}/transfer-targets?limit=500`);
  if (state.chat !== chat || chat.teamAgentsFor !== agentId) return;
  chat.teamAgents = agents;
  for (const a of agents) {
    if (!state.presence.has(a._id)) state.presence.set(a._id, a.presence);
  }
  syncTransferForm(chat);
}

function mayTransfer(chat) {
  const conv = chat.conv ?? {};
  const active = Boolean(chat.status) && chat.status !== 'closed' && !chat.fatal;
  const mine = state.user.role === 'agent' && conv.agentId === state.user._id;
  return Boolean(active && conv.agentId && (mine || chat.watcher));
}

/** Shown for a conversation that has an agent and is not closed: to its agent, or to a watcher. */
function syncTransferForm(chat) {
  const form = $('#transfer-form');
  form.hidden = !mayTransfer(chat);
  if (form.hidden) return;
  if (chat.teamAgentsFor !== chat.conv.agentId) loadTransferChoices(chat).catch(report);
  fillTransferChoices($('#transfer-agent'), chat, chat.conv.agentId);
}

function fillTransferChoices(select, chat, currentAgentId) {
  const choices = (chat.teamAgents ?? []).filter((a) => a._id !== currentAgentId)
    .map((a) => ({id: a._id, text: `${a.name} (${state.presence.get(a._id) ?? a.presence})`}));
  const signature = JSON.stringify(choices);
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  const keep = select.value;
  select.replaceChildren(...(choices.length
    ? choices.map((c) => h('option', {value: c.id}, c.text))
    : [h('option', {value: ''}, 'no other agent in this team')]));
  if (choices.some((c) => c.id === keep)) select.value = keep;
}

async function transferChat(ev) {
  ev.preventDefault();
  const chat = state.chat;
  if (!chat) return;
  const agentId = $('#transfer-agent').value;
  if (!agentId) {
    notify('There is no other agent in this team.');
    return;
  }
  chat.handingOver = state.user.role === 'agent';
  try {
    const done = await api('POST', `/conversations/${encodeURIComponent(chat.id)}/transfer`, {agentId});
    const name = chat.teamAgents?.find((a) => a._id === done.agentId)?.name ?? `agent ${shortId(done.agentId)}`;
    if (state.user.role === 'agent') closeChat(); // it is no longer ours: the inbox drops it too
    notify(`Transferred to ${name}.`, 'info');
  } catch (err) {
    report(err);
  } finally {
    chat.handingOver = false;
  }
}

function renderMessage(m) {
  const mine = state.user && m.senderId === state.user._id;
  const li = h('li', {class: `msg ${mine ? 'mine' : 'theirs'}`,
    dataset: {seq: Number.isInteger(m.seq) ? String(m.seq) : '', role: m.senderRole ?? ''}},
  h('div', {class: 'msg-meta'},
    h('span', {class: 'who'}, mine ? 'You' : roleLabel(m.senderRole)),
    h('time', {datetime: m.createdAt}, fmtClock(m.createdAt)),
    mine ? h('span', {class: 'delivery'}) : null),
  h('p', {class: 'msg-text'}, m.content));
  if (mine && Number.isInteger(m.seq)) setDelivery(li, 'sent', '✓ sent');
  return li;
}

/** A private note: its own look (``.note``), never a seq, so it is never taken for a message. */
function renderNote(n, afterSeq) {
  const mine = state.user && n.senderId === state.user._id;
  return h('li', {class: `msg note ${mine ? 'mine' : 'theirs'}`, dataset: {afterSeq: String(afterSeq),
    noteId: n.noteId ?? '', role: n.senderRole ?? ''}},
  h('div', {class: 'msg-meta'},
    h('span', {class: 'who'}, mine ? 'You' : roleLabel(n.senderRole)),
    h('time', {datetime: n.createdAt}, fmtClock(n.createdAt)),
    mine ? h('span', {class: 'delivery'}) : null),
  h('p', {class: 'note-text'}, n.content));
}

/** ✓✓: the other side read it. Delivery stays "sent" (it is), ``data-read`` says the rest. */
function markLineRead(li) {
  li.dataset.read = 'true';
  setDelivery(li, 'sent', '✓✓ read');
}

function setDelivery(li, delivery, text) {
  li.dataset.delivery = delivery;
  const el = li.querySelector('.delivery');
  if (el) el.textContent = text;
}

async function openChat(id) {
  closeChat();
  clearNotice();
  const chat = new Chat(id);
  state.chat = chat;
  try {
    await chat.start();
  } catch (err) {
    report(err);
  }
}

function closeChat() {
  state.chat?.stop();
  state.chat = null;
  $('#chat-view').hidden = true;
  $('#workspace').classList.remove('chatting');
  markCurrent();
}

function setupChat() {
  const input = $('#composer-input');
  $('#composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const content = input.value.trim();
    if (!content || !state.chat) return;
    state.chat.send(content);
    input.value = '';
    input.focus();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $('#composer').requestSubmit();
    }
  });
  input.addEventListener('input', () => state.chat?.typed());
  const noteInput = $('#note-input');
  $('#note-composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const content = noteInput.value.trim();
    if (!content || !state.chat) return;
    state.chat.sendNote(content);
    noteInput.value = '';
  });
  $('#chat-close').addEventListener('click', () => state.chat?.closeInChat());
  $('#chat-back').addEventListener('click', closeChat);
}

// ---------------------------------------------------------------- start

function setup() {
  setupAuthForms();
  setupChat();
  $('#start-form').addEventListener('submit', startConversation);
  $('#add-agent-form').addEventListener('submit', (ev) => createAccount(ev, 'agent'));
  $('#create-account-form').addEventListener('submit', (ev) => createAccount(ev, null));
  $('#transcript-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = formData(ev.target).conversationId;
    if (id) openChat(id);
  });
  $('#routing-form').addEventListener('submit', saveRouting);
  $('#presence-toggle').addEventListener('click', togglePresence);
  $('#team-supervisor').addEventListener('change', (ev) => chooseTeam(ev.target.value || null).catch(report));
  $('#transfer-form').addEventListener('submit', transferChat);
  for (const select of document.querySelectorAll('.status-filter')) select.addEventListener('change', inboxChanged);
}

/** Simulate a lost network: act on it at once, as an offline page may never finish the close handshake. */
function dropSocket(client) {
  const ws = client?.ws;
  if (!ws) return;
  client.onClose({code: 4000});
  ws.close(4000, 'dropped');
}

// A small hook for tests and demos: simulate a network drop, look at the connection state.
window.livechat = Object.freeze({
  dropConnection() {
    dropSocket(state.chat);
  },
  connectionState() {
    return $('#chat-connection').dataset.state;
  },
  dropInbox() {
    dropSocket(state.desk);
  },
});

async function boot() {
  setup();
  if (!state.token) {
    signOut();
    return;
  }
  try {
    const user = await api('GET', '/auth/me');
    await signIn(state.token, user);
  } catch {
    signOut();
  }
}

boot();
