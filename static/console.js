// livechat console: a small client of the REST + WebSocket API (CONTRACT.md), one ES module.
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
  stopViewPoll: null,
  supervisors: new Map(), // _id -> name (candidate view)
  agents: new Map(), // _id -> name (supervisor view)
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
  state.stopViewPoll?.();
  state.stopViewPoll = null;
  state.token = null;
  state.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const id of ['#candidate-view', '#supervisor-view', '#agent-view', '#admin-view']) $(id).hidden = true;
  for (const id of ['#candidate-list', '#supervisor-list', '#agent-list', '#admin-list', '#agent-roster']) {
    $(id).replaceChildren();
    delete $(id).dataset.signature;
  }
  $('#analytics tbody').replaceChildren();
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

// ---------------------------------------------------------------- role views

function showRoleView(role) {
  state.stopViewPoll?.();
  const views = {candidate: candidateView, supervisor: supervisorView, agent: agentView, admin: adminView};
  for (const name of Object.keys(views)) $(`#${name}-view`).hidden = name !== role;
  const view = views[role];
  if (!view) {
    notify(`Unknown role: ${role}`);
    return;
  }
  state.stopViewPoll = view();
}

/** Re-render a list only when its data changed, so open selects and focus survive the polls. */
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

function conversationQuery(select) {
  return select.value ? `/conversations?status=${encodeURIComponent(select.value)}` : '/conversations';
}

function candidateView() {
  const select = $('#start-supervisor');
  api('GET', '/supervisors').then((sups) => {
    state.supervisors = new Map(sups.map((s) => [s._id, s.name]));
    select.replaceChildren(...(sups.length
      ? sups.map((s) => h('option', {value: s._id}, s.name))
      : [h('option', {value: ''}, 'No supervisor yet')]));
    delete $('#candidate-list').dataset.signature;
  }).catch(report);

  return every(POLL_MS, async () => {
    const convs = await api('GET', '/conversations');
    renderList($('#candidate-list'), convs, JSON.stringify([convs, [...state.supervisors]]), (c) =>
      h('li', {dataset: {id: c._id, status: c.status}},
        h('span', {class: 'conv-title'}, `With ${state.supervisors.get(c.supervisorId) ?? shortId(c.supervisorId)}`),
        statusBadge(c.status),
        h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
        h('button', {type: 'button', class: 'secondary', onclick: () => openChat(c._id)}, 'Open')),
    'No conversation yet.');
    const active = convs.find((c) => ACTIVE.has(c.status));
    if (active && !state.chat && !state.autoOpened) {
      state.autoOpened = true;
      openChat(active._id);
    }
  });
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
    await openChat(conv._id);
    await refreshView();
  } catch (err) {
    report(err);
  }
}

function supervisorView() {
  $('#supervisor-own-id').textContent = state.user._id;
  const list = $('#supervisor-list');
  return every(POLL_MS, async () => {
    const [agents, convs] = await Promise.all([
      api('GET', '/agents'), api('GET', conversationQuery($('#supervisor-status')))]);
    state.agents = new Map(agents.map((a) => [a._id, a.name]));
    renderList($('#agent-roster'), agents, JSON.stringify(agents), (a) =>
      h('li', {}, h('strong', {}, a.name), ' ', h('span', {class: 'muted small'}, `${a.email} · ID ${a._id}`)),
    'No agent yet: add one below, or share your supervisor ID.');
    renderList(list, convs, JSON.stringify([convs, agents]), (c) => supervisorItem(c, agents),
      'No conversation with this status.');
  });
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
  actions.push(h('button', {type: 'button', class: 'secondary view', onclick: () => openChat(c._id)}, 'View'));
  return h('li', {dataset: {id: c._id, status: c.status}},
    h('span', {class: 'conv-title'}, `Candidate ${shortId(c.candidateId)}`),
    statusBadge(c.status),
    h('span', {class: 'small'}, `Agent: ${c.agentId ? (state.agents.get(c.agentId) ?? shortId(c.agentId)) : 'none'}`),
    h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
    h('span', {class: 'actions'}, actions));
}

async function refreshView() {
  for (const ul of document.querySelectorAll('.conv-list')) delete ul.dataset.signature;
  if (state.user) showRoleView(state.user.role);
}

async function assign(conversationId, agentId) {
  if (!agentId) {
    notify('Add an agent to your team first.');
    return;
  }
  try {
    await api('POST', `/conversations/${conversationId}/assign`, {agentId});
    state.assignChoice.delete(conversationId);
    notify(`Assigned to ${state.agents.get(agentId) ?? agentId}.`, 'info');
    await refreshView();
  } catch (err) {
    report(err);
  }
}

async function closeOverHttp(conversationId) {
  try {
    await api('POST', `/conversations/${conversationId}/close`, {});
    notify('Conversation closed.', 'info');
    await refreshView();
    if (state.chat?.id === conversationId) state.chat.refresh();
  } catch (err) {
    report(err);
  }
}

function agentView() {
  return every(POLL_MS, async () => {
    const convs = await api('GET', conversationQuery($('#agent-status')));
    renderList($('#agent-list'), convs, JSON.stringify(convs), (c) =>
      h('li', {dataset: {id: c._id, status: c.status}},
        h('span', {class: 'conv-title'}, `Candidate ${shortId(c.candidateId)}`),
        statusBadge(c.status),
        h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
        h('button', {type: 'button', class: 'join', onclick: () => openChat(c._id)},
          c.status === 'closed' ? 'View' : 'Join')),
    'Nothing assigned to you.');
  });
}

function adminView() {
  return every(POLL_MS, async () => {
    const [stats, convs] = await Promise.all([
      api('GET', '/admin/analytics'), api('GET', conversationQuery($('#admin-status')))]);
    const body = $('#analytics tbody');
    const signature = JSON.stringify(stats);
    if (body.dataset.signature !== signature) {
      body.dataset.signature = signature;
      body.replaceChildren(...(stats.length ? stats.map((s) => h('tr', {dataset: {supervisorId: s.supervisorId}},
        h('th', {scope: 'row'}, s.supervisorName), h('td', {}, s.agents), h('td', {}, s.conversationsHandled)))
        : [h('tr', {}, h('td', {colspan: 3, class: 'muted'}, 'No supervisor yet.'))]));
    }
    renderList($('#admin-list'), convs, JSON.stringify(convs), (c) =>
      h('li', {dataset: {id: c._id, status: c.status}},
        h('span', {class: 'conv-title'}, `Conversation ${shortId(c._id)}`),
        statusBadge(c.status),
        h('span', {class: 'small'}, `Agent: ${shortId(c.agentId)}`),
        h('span', {class: 'muted small'}, fmtTime(c.createdAt)),
        h('button', {type: 'button', class: 'secondary view', onclick: () => openChat(c._id)}, 'Transcript')),
    'No conversation with this status.');
  });
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
    await refreshView();
  } catch (err) {
    report(err);
  }
}

// ---------------------------------------------------------------- the conversation view

/**
 * One conversation on screen. Live (candidate, agent): a WebSocket that joins with the highest
 * contiguous ``seq`` seen, so a reconnect replays exactly what was missed; lines are keyed by
 * ``seq`` so nothing shows twice. Read-only (supervisor, admin, or closed): the HTTP transcript.
 */
class Chat {
  constructor(id) {
    this.id = id;
    this.live = ['candidate', 'agent'].includes(state.user.role);
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
    this.stopPoll = null;
    this.onOnline = () => {
      if (this.retryTimer !== null) this.connect();
    };
  }

  async start() {
    this.list.replaceChildren();
    $('#chat-id').textContent = this.id;
    $('#chat-title').textContent = this.live ? 'Chat' : 'Transcript';
    $('#chat-connection-wrap').hidden = !this.live;
    $('#composer').hidden = true;
    $('#chat-close').hidden = true;
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
    this.setStatus(conv.status);
    if (this.status !== 'closed') {
      this.stopPoll = every(POLL_MS, () => this.refresh(), {later: true});
      if (this.live) {
        window.addEventListener('online', this.onOnline);
        this.connect();
      }
    }
  }

  /** The poll: status changes (open → assigned → closed); the transcript too when read-only. */
  async refresh() {
    let conv;
    try {
      conv = await api('GET', `/conversations/${encodeURIComponent(this.id)}`);
    } catch (err) {
      if (err.status === 403 || err.status === 404) {
        this.fail(`${err.message}: you no longer have access to this conversation.`);
        return;
      }
      throw err;
    }
    if (this.stopped) return;
    if (!this.live) for (const m of conv.messages) this.addMessage(m);
    this.setStatus(conv.status);
  }

  renderStatus(status) {
    const el = $('#chat-status');
    el.textContent = status;
    el.dataset.status = status;
  }

  setStatus(status) {
    if (!status || status === this.status) return;
    this.status = status;
    this.renderStatus(status);
    for (const li of document.querySelectorAll(`.conv-list li[data-id="${this.id}"]`)) {
      li.dataset.status = status; // the list catches up at its next poll; show it at once
      const badge = li.querySelector('.status');
      if (badge) {
        badge.textContent = status;
        badge.dataset.status = status;
      }
    }
    const open = status !== 'closed';
    $('#composer').hidden = !(this.live && open);
    $('#chat-close').hidden = !(state.user.role === 'agent' && open);
    if (!open) this.ended();
  }

  ended() {
    this.halt();
    for (const {li} of this.pending.values()) setDelivery(li, 'failed', 'not sent: the conversation is closed');
    this.pending.clear();
    if (this.live) this.setConnection('ended', 'conversation closed');
  }

  fail(message) {
    this.fatal = true;
    this.halt();
    this.setConnection('offline', 'not connected');
    $('#composer').hidden = true;
    $('#chat-close').hidden = true;
    notify(message);
  }

  /** Stop the socket, the reconnects and the poll (the view may stay on screen). */
  halt() {
    this.stopPoll?.();
    this.stopPoll = null;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    window.removeEventListener('online', this.onOnline);
    const ws = this.ws;
    this.ws = null;
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
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // The WebSocket API cannot send headers: the token goes in this one URL (the server never logs it).
    const ws = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(state.token)}`);
    this.ws = ws;
    this.joined = false;
    this.joining = false;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      this.joining = true;
      this.setConnection('joining', 'joining…');
      this.transmit('JOIN_CONVERSATION', {conversationId: this.id, lastSeq: this.lastSeq});
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
    // Jittered exponential backoff: half the step fixed, half random, so clients do not stampede.
    const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(step / 2 + Math.random() * (step / 2));
    this.attempt += 1;
    this.setConnection('reconnecting', `disconnected, retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  transmit(event, data) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({event, data}));
    return true;
  }

  onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const data = frame?.data ?? {};
    if (data.conversationId !== undefined && data.conversationId !== this.id) return;
    switch (frame?.event) {
      case 'JOINED_CONVERSATION':
        this.joining = false;
        this.joined = true;
        this.attempt = 0;
        this.setConnection('connected', 'connected');
        this.setStatus(data.status);
        for (const clientMessageId of this.pending.keys()) this.sendPending(clientMessageId);
        break;
      case 'NEW_MESSAGE':
        this.addMessage(data);
        break;
      case 'MESSAGE_SENT':
        this.acknowledged(data);
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
  }

  /** Lines with a seq in seq order; our own unacknowledged lines stay at the bottom. */
  insert(li, seq) {
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 48;
    let after = null;
    for (let c = this.list.lastElementChild; c; c = c.previousElementSibling) {
      if (c.dataset.seq && Number(c.dataset.seq) < seq) {
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
      setDelivery(known, 'sent', 'sent');
      this.updateEmpty();
      return;
    }
    pending.li.dataset.seq = String(data.seq);
    pending.li.dataset.messageId = data.messageId;
    setDelivery(pending.li, 'sent', 'sent');
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

function renderMessage(m) {
  const mine = state.user && m.senderId === state.user._id;
  const li = h('li', {class: `msg ${mine ? 'mine' : 'theirs'}`,
    dataset: {seq: Number.isInteger(m.seq) ? String(m.seq) : '', role: m.senderRole ?? ''}},
  h('div', {class: 'msg-meta'},
    h('span', {class: 'who'}, mine ? 'You' : roleLabel(m.senderRole)),
    h('time', {datetime: m.createdAt}, fmtClock(m.createdAt)),
    mine ? h('span', {class: 'delivery'}) : null),
  h('p', {class: 'msg-text'}, m.content));
  if (mine && Number.isInteger(m.seq)) setDelivery(li, 'sent', 'sent');
  return li;
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
  for (const select of document.querySelectorAll('.status-filter')) select.addEventListener('change', refreshView);
}

// A small hook for tests and demos: simulate a network drop, look at the connection state.
window.livechat = Object.freeze({
  dropConnection() {
    state.chat?.ws?.close(4000, 'dropped');
  },
  connectionState() {
    return $('#chat-connection').dataset.state;
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
