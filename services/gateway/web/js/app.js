// papo web client: wires the session, the REST API, the WebSocket and the
// DOM. Plain ES modules, no build step; all text goes in as text nodes.

import { Api, ApiError, Session } from "./api.js";
import { Socket } from "./socket.js";
import { Room } from "./rooms.js";
import { appendRich, ago, clock, dayKey, dayLabel, fullDate, hue, initials, newID } from "./text.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const TYPING_SEND_EVERY = 3000; // ms between our typing frames
const TYPING_SHOWN_FOR = 6000; // ms a typing signal stays visible
const ACK_TIMEOUT = 10000; // ms before an unacked send is shown as failed
const GROUP_GAP = 5 * 60 * 1000; // messages closer than this group together

const session = new Session();
const api = new Api(session);

const state = {
  me: null,
  rooms: new Map(), // id -> Room
  current: null, // open room id
  users: new Map(), // id -> user
  userFetches: new Map(), // id -> promise
  presence: new Map(), // user id -> {status, last_seen}
  ops: new Map(), // client_id of edits/deletes -> room id
  ackTimers: new Map(), // client_id -> timeout
  lastTypingSent: 0,
  readTimer: 0,
  unreadMark: 0, // "new messages" divider of the open room
  roomsReload: 0,
  routed: new Set(), // rooms the socket delivers: in its hello, or seen an event of
  routeWaits: new Map(), // room id -> timer: sends held until the room's first event
};
const ROOMS_POLL = 15000; // ms between room-list refreshes while visible
const ROUTE_WAIT = 5000; // ms a held send waits for its new room's first event

const socket = new Socket({
  getToken: async () => {
    if (!session.loggedIn || session.expiresAt - Date.now() < 15000) await session.refresh();
    return session.accessToken;
  },
  tokenExpired: () => {
    session.expiresAt = 0;
  },
  onAuthLost: () => endSession("Your session ended. Please log in again."),
  onHello: (hello) => onHello(hello),
  onFrame: (f) => onFrame(f),
  onState: (s, info) => renderConn(s, info),
});

// ---------------------------------------------------------------- boot

document.addEventListener("DOMContentLoaded", boot);

async function boot() {
  wireAuth();
  wireApp();
  session.onChange((what) => {
    if (what === "tokens" && socket.online) socket.send({ type: "auth", token: session.accessToken });
  });
  if (session.hasRefreshToken()) {
    try {
      await session.refresh();
      await enterApp();
      return;
    } catch (err) {
      if (err.status !== 401 && err.status !== 403) {
        showAuth("papo could not reach the server. Try again in a moment.");
        return;
      }
    }
  }
  showAuth("");
}

function setView(v) {
  document.body.dataset.view = v;
  $("boot").hidden = v !== "boot";
  $("auth").hidden = v !== "auth";
  $("app").hidden = v !== "app";
}

// ---------------------------------------------------------------- auth view

let authMode = "login";

function wireAuth() {
  $("tab-login").addEventListener("click", () => setAuthMode("login"));
  $("tab-register").addEventListener("click", () => setAuthMode("register"));
  for (const id of ["tab-login", "tab-register"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        const next = authMode === "login" ? "register" : "login";
        setAuthMode(next);
        $(next === "login" ? "tab-login" : "tab-register").focus();
      }
    });
  }
  $("auth-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("auth-username").value.trim().toLowerCase();
    const password = $("auth-password").value;
    const display = $("auth-display").value.trim();
    const err = $("auth-error");
    err.textContent = "";
    if (!/^[a-z0-9_.-]{3,32}$/.test(username)) {
      err.textContent = "Usernames are 3–32 characters: lowercase letters, digits, _ . -";
      $("auth-username").focus();
      return;
    }
    if (password.length < 8) {
      err.textContent = "Passwords have at least 8 characters.";
      $("auth-password").focus();
      return;
    }
    const btn = $("auth-submit");
    btn.disabled = true;
    btn.setAttribute("aria-busy", "true");
    try {
      if (authMode === "register") await api.register(username, password, display);
      await api.login(username, password);
      $("auth-password").value = "";
      await enterApp();
    } catch (ex) {
      err.textContent = authMessage(ex);
    } finally {
      btn.disabled = false;
      btn.removeAttribute("aria-busy");
    }
  });
}

function authMessage(ex) {
  switch (ex.code) {
    case "invalid_credentials":
      return "That username and password do not match.";
    case "username_taken":
      return "That username is taken. Try another one.";
    default:
      return ex.message || "Something went wrong. Try again.";
  }
}

function setAuthMode(mode) {
  authMode = mode;
  const reg = mode === "register";
  $("tab-login").setAttribute("aria-selected", String(!reg));
  $("tab-register").setAttribute("aria-selected", String(reg));
  $("tab-login").tabIndex = reg ? -1 : 0;
  $("tab-register").tabIndex = reg ? 0 : -1;
  $("display-row").hidden = !reg;
  $("username-hint").hidden = !reg;
  $("auth-password").autocomplete = reg ? "new-password" : "current-password";
  $("auth-submit").textContent = reg ? "Create account" : "Log in";
  $("auth-error").textContent = "";
}

function showAuth(message) {
  setView("auth");
  setAuthMode(authMode);
  $("auth-error").textContent = message || "";
  $("auth-username").focus();
}

function endSession(message) {
  socket.stop();
  session.clear();
  resetState();
  history.replaceState(null, "", "/");
  showAuth(message);
}

function resetState() {
  state.me = null;
  state.rooms.clear();
  state.current = null;
  state.presence.clear();
  state.ops.clear();
  for (const t of state.ackTimers.values()) clearTimeout(t);
  state.ackTimers.clear();
  $("room-list").replaceChildren();
  $("dm-list").replaceChildren();
  $("messages").replaceChildren();
}

// ---------------------------------------------------------------- app view

async function enterApp() {
  state.me = session.user;
  state.users.set(state.me.id, state.me);
  renderMe();
  await loadRooms();
  setView("app");
  socket.start();
  const m = location.pathname.match(/^\/r\/([^/]+)$/);
  const id = m ? decodeURIComponent(m[1]) : "";
  if (id && state.rooms.has(id)) openRoom(id, { push: false });
  else showEmpty();
  api
    .invitations()
    .then((res) => {
      const n = (res.invitations || []).length;
      if (n) toast(`You have ${n} invitation${n === 1 ? "" : "s"} to private rooms: see Browse rooms.`);
    })
    .catch(() => {});
}

function wireApp() {
  $("logout-btn").addEventListener("click", async () => {
    socket.stop();
    try {
      await api.logout();
    } catch {
      /* the session ends locally either way */
    }
    endSession("You are logged out.");
  });
  $("conn-retry").addEventListener("click", () => socket.retryNow());
  $("new-room-btn").addEventListener("click", () => openDialog("dlg-room"));
  $("browse-btn").addEventListener("click", openBrowse);
  $("browse-link").addEventListener("click", openBrowse);
  $("empty-browse").addEventListener("click", openBrowse);
  $("new-dm-btn").addEventListener("click", () => openUserDialog("dm"));
  $("empty-dm").addEventListener("click", () => openUserDialog("dm"));
  $("add-member-btn").addEventListener("click", () => openUserDialog("member"));
  $("leave-btn").addEventListener("click", leaveCurrent);
  $("back-btn").addEventListener("click", () => {
    state.current = null;
    history.pushState(null, "", "/");
    showEmpty();
  });
  for (const b of document.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  $("room-form").addEventListener("submit", createRoom);
  $("user-form").addEventListener("submit", submitUserDialog);
  $("browse-filter").addEventListener("input", renderBrowse);
  $("browse-more").addEventListener("click", morePublic);

  const composer = $("composer");
  composer.addEventListener("keydown", onComposerKey);
  composer.addEventListener("input", () => {
    autoGrow(composer);
    renderCounter();
    if (composer.value.trim()) sendTyping();
  });
  $("composer-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendComposer();
  });
  $("scroller").addEventListener("scroll", onScroll, { passive: true });
  $("jump-btn").addEventListener("click", () => {
    scrollToBottom();
    $("composer").focus();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") scheduleRead();
  });
  window.addEventListener("focus", scheduleRead);
  window.addEventListener("popstate", () => {
    const m = location.pathname.match(/^\/r\/([^/]+)$/);
    const id = m ? decodeURIComponent(m[1]) : "";
    if (id && state.rooms.has(id)) openRoom(id, { push: false });
    else {
      state.current = null;
      showEmpty();
    }
  });
  setInterval(() => {
    // Typing lines expire; "last seen" phrases age.
    if (state.current) renderTyping();
  }, 1000);
  // Rooms come live with their member_joined events (a DM someone opened,
  // an invitation); the list is refreshed too, in case one was missed.
  setInterval(() => {
    if (state.me && socket.online && document.visibilityState === "visible") loadRooms().catch(() => {});
  }, ROOMS_POLL);
}

function renderMe() {
  const me = state.me;
  $("me-name").textContent = me.display_name || me.username;
  $("me-handle").textContent = "@" + me.username;
  setAvatar($("me-avatar"), me.id, me.display_name || me.username);
}

function setAvatar(el, id, name) {
  el.textContent = initials(name);
  el.className = el.className.replace(/\bhue-\d\b/g, "").trim() + " hue-" + hue(id);
}

// ---------------------------------------------------------------- rooms

async function loadRooms() {
  const res = await api.rooms();
  const seen = new Set();
  for (const r of res.rooms || []) {
    seen.add(r.id);
    const have = state.rooms.get(r.id);
    if (have) have.merge(r);
    else state.rooms.set(r.id, new Room(r));
  }
  for (const id of [...state.rooms.keys()]) {
    if (!seen.has(id)) state.rooms.delete(id);
  }
  const dmPeers = [];
  for (const r of state.rooms.values()) {
    const peer = dmPeer(r);
    if (peer) {
      dmPeers.push(peer);
      userName(peer);
    }
  }
  fetchPresence(dmPeers);
  renderSidebar();
}

// A room created or a DM opened while connected reaches the socket with
// its founding member_joined events, a moment after the HTTP answer. A
// send refused as not_a_member before that is held, and goes again when
// the room's first event arrives (routed). Should that event never come
// (its announcement lost), one reconnect makes the next hello list the
// room, and the hello re-sends what is held.
function holdForRoute(r, p) {
  p.held = true;
  if (state.routeWaits.has(r.id)) return;
  state.routeWaits.set(
    r.id,
    setTimeout(() => {
      state.routeWaits.delete(r.id);
      if (!state.routed.has(r.id) && [...r.pending.values()].some((q) => q.held)) socket.reconnect();
    }, ROUTE_WAIT),
  );
}

// routed records that the socket delivers a room, and sends what was held
// for it.
function routed(roomID) {
  if (state.routed.has(roomID)) return;
  state.routed.add(roomID);
  clearTimeout(state.routeWaits.get(roomID));
  state.routeWaits.delete(roomID);
  const r = state.rooms.get(roomID);
  if (!r) return;
  for (const p of r.pending.values()) if (p.held && p.state === "sending") transmit(r, p);
}

// reloadRooms refreshes the room list soon, once for a burst of callers.
function reloadRooms() {
  clearTimeout(state.roomsReload);
  state.roomsReload = setTimeout(() => loadRooms().catch(() => {}), 200);
}

function dmPeer(room) {
  if (room.kind !== "dm" || !state.me) return "";
  return room.members.find((m) => m !== state.me.id) || "";
}

function roomTitle(room) {
  if (room.kind === "dm") {
    const peer = dmPeer(room);
    return peer ? userName(peer) : "Direct message";
  }
  return room.name || "room";
}

function renderSidebar() {
  const rooms = [];
  const dms = [];
  for (const r of state.rooms.values()) (r.kind === "dm" ? dms : rooms).push(r);
  const byTitle = (a, b) => roomTitle(a).localeCompare(roomTitle(b));
  rooms.sort(byTitle);
  dms.sort(byTitle);
  fillList($("room-list"), rooms);
  fillList($("dm-list"), dms);
  $("rooms-empty").hidden = rooms.length > 0;
  $("dms-empty").hidden = dms.length > 0;
  const total = [...state.rooms.values()].reduce((n, r) => n + (r.unread > 0 ? 1 : 0), 0);
  document.title = total > 0 ? `(${total}) papo` : "papo";
}

function fillList(ul, rooms) {
  const items = rooms.map((r) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "room-item";
    b.dataset.roomId = r.id;
    b.dataset.kind = r.kind;
    if (r.id === state.current) b.setAttribute("aria-current", "page");
    const title = roomTitle(r);
    if (r.kind === "dm") {
      const peer = dmPeer(r);
      const av = document.createElement("span");
      av.className = "avatar small";
      setAvatar(av, peer || r.id, title);
      const dot = document.createElement("span");
      dot.className = "presence";
      dot.dataset.presence = presenceOf(peer);
      av.append(dot);
      b.append(av);
    } else {
      const icon = document.createElement("span");
      icon.className = "room-icon";
      icon.setAttribute("aria-hidden", "true");
      icon.textContent = r.kind === "private" ? "🔒" : "#";
      b.append(icon);
    }
    const name = document.createElement("span");
    name.className = "room-name";
    name.textContent = title;
    b.append(name);
    let label = (r.kind === "dm" ? "Direct message with " : "Room ") + title;
    if (r.kind === "dm") label += ", " + presenceOf(dmPeer(r));
    if (r.unread > 0) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = r.unread > 99 ? "99+" : String(r.unread);
      b.append(badge);
      b.classList.add("has-unread");
      label += `, ${r.unread} unread`;
    }
    b.setAttribute("aria-label", label);
    b.addEventListener("click", () => openRoom(r.id));
    li.append(b);
    return li;
  });
  ul.replaceChildren(...items);
}

// ---------------------------------------------------------------- users & presence

// userName returns a user's display name, fetching it once if unknown.
function userName(id) {
  const u = state.users.get(id);
  if (u) return u.display_name || u.username;
  if (!state.userFetches.has(id)) {
    const p = api
      .user(id)
      .then((res) => {
        state.users.set(id, res.user);
        scheduleRender();
      })
      .catch(() => {
        state.users.set(id, { id, username: "unknown", display_name: "Someone" });
      });
    state.userFetches.set(id, p);
  }
  return "…";
}

function presenceOf(id) {
  const p = state.presence.get(id);
  return p && p.status === "online" ? "online" : "offline";
}

async function fetchPresence(ids) {
  const want = [...new Set(ids.filter((id) => id && id !== state.me?.id))];
  for (let i = 0; i < want.length; i += 100) {
    try {
      const res = await api.presence(want.slice(i, i + 100));
      for (const p of res.presence || []) state.presence.set(p.user_id, p);
    } catch {
      /* presence is a nicety; frames will fill it in */
    }
  }
  scheduleRender();
}

// ---------------------------------------------------------------- rendering loop

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderSidebar();
    if (state.current) {
      renderHeader();
      renderMessages();
      renderTyping();
    }
  });
}

function renderConn(s, info) {
  document.body.dataset.conn = s;
  const text = $("conn-text");
  const retry = $("conn-retry");
  retry.hidden = s !== "waiting";
  clearInterval(renderConn.timer);
  switch (s) {
    case "online":
      text.textContent = "Online";
      break;
    case "connecting":
      text.textContent = info.attempt ? "Reconnecting…" : "Connecting…";
      break;
    case "waiting": {
      const tick = () => {
        const s = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
        text.textContent = s > 0 ? `Offline · ${s}s` : "Reconnecting…";
      };
      tick();
      renderConn.timer = setInterval(tick, 1000);
      break;
    }
    default:
      text.textContent = "Offline";
  }
  $("offline-banner").hidden = s === "online" || s === "connecting";
  if (s !== "online") {
    // Unacked sends wait for the next connection instead of failing.
    for (const t of state.ackTimers.values()) clearTimeout(t);
    state.ackTimers.clear();
  }
  if (state.current) renderMessages();
}

// ---------------------------------------------------------------- socket frames

function onHello(hello) {
  const rooms = {};
  let unknown = false;
  state.routed = new Set((hello.rooms || []).map((c) => c.room_id));
  for (const t of state.routeWaits.values()) clearTimeout(t);
  state.routeWaits.clear(); // what is held goes again below
  for (const c of hello.rooms || []) {
    const r = state.rooms.get(c.room_id);
    if (!r) {
      unknown = true;
      continue;
    }
    rooms[c.room_id] = r.seen();
  }
  // resume must be the first frame: live delivery starts after it, from
  // these cursors, so nothing between the last event seen and now is lost.
  socket.send({ type: "resume", rooms });
  if (unknown || (hello.rooms || []).length !== state.rooms.size) reloadRooms();
  // Sends that never got their ack go again with the same client_id; the
  // server answers a retried client_id with the seq it already has.
  for (const r of state.rooms.values()) {
    for (const p of r.pending.values()) if (p.state === "sending") transmit(r, p);
  }
  const people = new Set();
  for (const r of state.rooms.values()) {
    const peer = dmPeer(r);
    if (peer) people.add(peer);
  }
  const cur = state.rooms.get(state.current);
  if (cur && cur.memberIds) for (const id of cur.memberIds) people.add(id);
  fetchPresence([...people]);
  scheduleRead();
}

function onFrame(f) {
  switch (f.type) {
    case "event":
      onEvent(f.event);
      break;
    case "ack": {
      clearTimeout(state.ackTimers.get(f.client_id));
      state.ackTimers.delete(f.client_id);
      if (state.ops.has(f.client_id)) {
        state.ops.delete(f.client_id);
        break;
      }
      const r = state.rooms.get(f.room_id);
      const p = r && r.pending.get(f.client_id);
      if (p) {
        p.state = "sent";
        p.seq = f.seq;
        if (r.events.has(f.seq)) r.pending.delete(f.client_id);
        if (r.id === state.current) renderMessages();
      }
      break;
    }
    case "typing": {
      if (!state.me || f.user_id === state.me.id) break;
      const r = state.rooms.get(f.room_id);
      if (!r) break;
      r.typing.set(f.user_id, Date.now() + TYPING_SHOWN_FOR);
      if (r.id === state.current) renderTyping();
      break;
    }
    case "presence":
      state.presence.set(f.user_id, { user_id: f.user_id, status: f.status, last_seen: f.last_seen });
      scheduleRender();
      break;
    case "error":
      onErrorFrame(f);
      break;
    default:
      break;
  }
}

function notMember(code) {
  return code === "not_a_member" || code === "not_member";
}

function onErrorFrame(f) {
  if (f.ref) {
    clearTimeout(state.ackTimers.get(f.ref));
    state.ackTimers.delete(f.ref);
    if (state.ops.has(f.ref)) {
      state.ops.delete(f.ref);
      toast(f.message || "That change was refused.");
      return;
    }
    for (const r of state.rooms.values()) {
      const p = r.pending.get(f.ref);
      if (p && notMember(f.code) && !p.heldOnce) {
        // Sent before the socket delivered the room (just created or
        // opened): it goes again once the room's first event is here, or
        // now if that came meanwhile. Once only: a second refusal is final.
        p.heldOnce = true;
        if (state.routed.has(r.id)) transmit(r, p);
        else holdForRoute(r, p);
        return;
      }
      if (p) {
        p.state = "failed";
        p.error = f.message || f.code;
        if (r.id === state.current) renderMessages();
        return;
      }
    }
  }
  if (notMember(f.code)) {
    reloadRooms();
    return;
  }
  if (f.code !== "rate_limited") toast(f.message || f.code);
}

function onEvent(e) {
  let r = state.rooms.get(e.room_id);
  if (!r) {
    // A room we were just added to (a DM someone opened, an invitation).
    r = new Room({ id: e.room_id, name: "", kind: "public", last_seq: e.seq - 1 });
    state.rooms.set(r.id, r);
    reloadRooms();
  }
  routed(e.room_id);
  const fresh = r.ingest(e, state.me.id);
  if (!fresh) return;
  if (e.type === "member_left" && (e.user_id || e.sender_id) === state.me.id) {
    state.rooms.delete(r.id);
    if (state.current === r.id) {
      state.current = null;
      showEmpty();
    }
    renderSidebar();
    return;
  }
  if ((e.type === "member_joined" || e.type === "member_left") && r.memberIds) {
    const uid = e.user_id || e.sender_id;
    if (e.type === "member_joined" && !r.memberIds.includes(uid)) r.memberIds.push(uid);
    if (e.type === "member_left") r.memberIds = r.memberIds.filter((x) => x !== uid);
    fetchPresence([uid]);
  }
  if (e.type === "message") {
    if (e.sender_id === state.me.id) {
      if (e.seq > r.readSeq) r.readSeq = e.seq; // what I wrote, I have read
    } else if (e.seq > r.readSeq) {
      r.unread += 1;
    }
  }
  if (r.id === state.current) {
    renderMessages();
    renderTyping();
    scheduleRead();
  }
  renderSidebar();
}

// ---------------------------------------------------------------- opening a room

async function openRoom(id, { push = true } = {}) {
  const r = state.rooms.get(id);
  if (!r) return;
  const switching = state.current !== id;
  state.current = id;
  if (push && location.pathname !== "/r/" + encodeURIComponent(id)) {
    history.pushState(null, "", "/r/" + encodeURIComponent(id));
  }
  document.body.classList.add("in-room");
  $("chat-empty").hidden = true;
  $("chat-room").hidden = false;
  if (switching) {
    state.unreadMark = r.unread > 0 ? r.readSeq : 0;
    $("messages").replaceChildren();
    $("composer").value = r.draft || "";
    autoGrow($("composer"));
    renderCounter();
  }
  renderSidebar();
  renderHeader();
  renderMessages();
  renderTyping();
  $("composer").focus();
  if (!r.loaded && !r.loading) {
    await loadLatest(r);
  }
  if (!r.memberIds) loadMembers(r);
  scrollToBottom();
  scheduleRead();
}

async function loadLatest(r) {
  r.resetWindow();
  r.loading = true;
  setHistoryState("Loading messages…");
  try {
    let res;
    if (r.lastSeq > 0) res = await api.history(r.id, { before: r.lastSeq + 1, limit: PAGE });
    else {
      res = await api.history(r.id, { after: 0, limit: PAGE });
      const top = res.events.length ? res.events[res.events.length - 1].seq : 0;
      if (res.last_seq > top) res = await api.history(r.id, { before: res.last_seq + 1, limit: PAGE });
    }
    r.addPage(res.events || [], res.last_seq);
    r.loaded = true;
    const n = r.unreadFrom(state.me.id);
    if (n !== null) r.unread = n;
  } catch (err) {
    setHistoryState("");
    toast("Could not load messages: " + err.message);
    return;
  } finally {
    r.loading = false;
  }
  if (r.id === state.current) {
    renderMessages();
    scrollToBottom();
    fillViewport(r);
  }
}

async function loadOlder(r) {
  if (!r.loaded || !r.hasMore || r.loadingOlder) return;
  r.loadingOlder = true;
  setHistoryState("Loading earlier messages…");
  try {
    const res = await api.history(r.id, { before: r.oldest, limit: PAGE });
    const sc = $("scroller");
    const before = sc.scrollHeight - sc.scrollTop;
    r.addPage(res.events || [], res.last_seq);
    if (!res.events || res.events.length === 0) r.hasMore = false;
    if (r.id === state.current) {
      renderMessages({ keepScroll: false });
      // Keep the message under the reader's eyes where it was.
      sc.scrollTop = sc.scrollHeight - before;
    }
  } catch (err) {
    toast("Could not load earlier messages: " + err.message);
  } finally {
    r.loadingOlder = false;
    if (r.id === state.current) renderHistoryState(r);
  }
}

// fillViewport loads older pages until the scroller can scroll.
async function fillViewport(r) {
  const sc = $("scroller");
  for (let i = 0; i < 5 && r.hasMore && r.id === state.current && sc.scrollHeight <= sc.clientHeight + 50; i++) {
    await loadOlder(r);
  }
}

async function loadMembers(r) {
  try {
    const res = await api.members(r.id);
    r.memberIds = res.members || [];
    for (const id of r.memberIds) userName(id);
    await fetchPresence(r.memberIds);
  } catch {
    r.memberIds = r.members.length ? r.members : null;
  }
  if (r.id === state.current) renderHeader();
}

function showEmpty() {
  document.body.classList.remove("in-room");
  $("chat-empty").hidden = false;
  $("chat-room").hidden = true;
  renderSidebar();
}

function setHistoryState(text) {
  $("history-state").textContent = text;
}

function renderHistoryState(r) {
  if (!r.loaded) return;
  if (r.hasMore) setHistoryState("");
  else if (r.lastSeq === 0 && r.pending.size === 0) setHistoryState("No messages yet. Say hello!");
  else setHistoryState(r.kind === "dm" ? "This is the beginning of your conversation." : "This is the beginning of the room.");
}

function renderHeader() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const title = $("chat-title");
  title.replaceChildren();
  if (r.kind === "dm") {
    const peer = dmPeer(r);
    const dot = document.createElement("span");
    dot.className = "presence inline";
    dot.dataset.presence = presenceOf(peer);
    dot.setAttribute("aria-hidden", "true");
    title.append(dot, document.createTextNode(roomTitle(r)));
    const p = state.presence.get(peer);
    let sub = presenceOf(peer) === "online" ? "Online" : "Offline";
    if (sub === "Offline" && p && p.last_seen) sub = "Last seen " + ago(new Date(p.last_seen));
    $("chat-sub").textContent = sub;
    $("chat-sub").dataset.presence = presenceOf(peer);
  } else {
    title.append(document.createTextNode((r.kind === "private" ? "🔒 " : "# ") + roomTitle(r)));
    const parts = [r.kind === "private" ? "Private room" : "Public room"];
    if (r.memberIds) {
      const online = r.memberIds.filter((id) => id === state.me.id || presenceOf(id) === "online").length;
      parts.push(`${r.memberIds.length} member${r.memberIds.length === 1 ? "" : "s"}`);
      parts.push(`${online} online`);
    }
    $("chat-sub").textContent = parts.join(" · ");
    delete $("chat-sub").dataset.presence;
  }
  $("add-member-btn").hidden = r.kind === "dm";
  $("leave-btn").hidden = r.kind === "dm";
  $("composer").placeholder = r.kind === "dm" ? `Message ${roomTitle(r)}` : `Message #${roomTitle(r)}`;
  $("composer-label").textContent = `Message ${r.kind === "dm" ? roomTitle(r) : "#" + roomTitle(r)}`;
}

// ---------------------------------------------------------------- message list

// renderMessages reconciles #messages with the room's view: elements are
// keyed and rebuilt only when what they show changed, so scrolling,
// focus and an edit in progress survive new events.
function renderMessages() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const box = $("messages");
  const sc = $("scroller");
  const atBottom = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 60;
  const items = r.view();
  const wanted = [];
  let prev = null;
  let prevDay = "";
  let markShown = false;
  for (const it of items) {
    const day = dayKey(it.at);
    if (day !== prevDay) {
      wanted.push({ key: "d:" + day, sig: dayLabel(it.at), build: () => buildDay(it.at) });
      prevDay = day;
      prev = null;
    }
    if (!markShown && state.unreadMark && it.seq > state.unreadMark && it.kind === "msg" && !it.pending && it.sender !== state.me.id) {
      wanted.push({ key: "u", sig: "u", build: buildUnreadMark });
      markShown = true;
      prev = null;
    }
    if (it.kind === "sys") {
      const who = it.user === state.me.id ? "You" : userName(it.user);
      const text = `${who} ${it.type === "member_joined" ? "joined" : "left"}`;
      wanted.push({ key: "s:" + it.seq, sig: text, build: () => buildSys(it, text) });
      prev = null;
      continue;
    }
    const sender = it.pending ? state.me.id : it.sender;
    const grouped = prev && prev.sender === sender && it.at - prev.at < GROUP_GAP && !prev.deleted;
    const mine = sender === state.me.id;
    const name = mine ? "You" : userName(sender);
    const editing = !it.pending && r.editing === it.seq;
    const pstate = it.pending ? it.pending.state : "sent";
    const sig = [name, it.text, it.edited, it.deleted, grouped, editing, pstate, socket.online, it.pending?.error || ""].join("\u0001");
    const key = it.pending ? "p:" + it.clientID : "m:" + it.seq;
    wanted.push({ key, sig, build: () => buildMessage(r, it, { mine, name, grouped, editing, pstate, sender }) });
    prev = { sender, at: it.at, deleted: it.deleted };
  }

  const existing = new Map();
  for (const el of box.children) existing.set(el.dataset.key, el);
  const keep = new Set();
  let cursor = box.firstElementChild;
  for (const w of wanted) {
    let el = existing.get(w.key);
    if (!el || el.dataset.sig !== w.sig) {
      const fresh = w.build();
      fresh.dataset.key = w.key;
      fresh.dataset.sig = w.sig;
      if (el) {
        el.replaceWith(fresh);
        if (cursor === el) cursor = fresh;
      }
      el = fresh;
    }
    keep.add(w.key);
    if (el !== cursor) box.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const [k, el] of existing) {
    if (!keep.has(k)) el.remove();
  }
  renderHistoryState(r);
  if (atBottom) scrollToBottom();
  else if (items.length && r.lastSeq > r.readSeq) $("jump-btn").hidden = false;
  const ed = box.querySelector("textarea.edit-box");
  if (ed && document.activeElement !== ed && ed.dataset.fresh === "1") {
    ed.dataset.fresh = "0";
    ed.focus();
    ed.setSelectionRange(ed.value.length, ed.value.length);
  }
}

function buildDay(at) {
  const el = document.createElement("div");
  el.className = "day";
  el.setAttribute("role", "separator");
  const s = document.createElement("span");
  s.textContent = dayLabel(at);
  el.append(s);
  return el;
}

function buildUnreadMark() {
  const el = document.createElement("div");
  el.className = "unread-mark";
  el.setAttribute("role", "separator");
  const s = document.createElement("span");
  s.textContent = "New messages";
  el.append(s);
  return el;
}

function buildSys(it, text) {
  const el = document.createElement("div");
  el.className = "sys";
  el.dataset.seq = String(it.seq);
  el.textContent = text;
  const t = document.createElement("time");
  t.dateTime = it.at.toISOString();
  t.textContent = " · " + clock(it.at);
  el.append(t);
  return el;
}

function buildMessage(r, it, o) {
  const el = document.createElement("article");
  el.className = "msg " + (o.mine ? "mine" : "theirs") + (o.grouped ? " grouped" : "");
  el.dataset.state = o.pstate === "sent" && it.pending ? "sent" : it.pending ? o.pstate : "confirmed";
  if (!socket.online && it.pending && o.pstate === "sending") el.dataset.state = "queued";
  if (it.seq) el.dataset.seq = String(it.seq);
  if (it.clientID) el.dataset.clientId = it.clientID;
  if (it.deleted) el.classList.add("deleted");
  el.setAttribute("aria-label", `${o.name}, ${clock(it.at)}`);

  if (!o.mine) {
    const av = document.createElement("span");
    av.className = "avatar";
    av.setAttribute("aria-hidden", "true");
    if (!o.grouped) setAvatar(av, o.sender, o.name);
    else av.classList.add("spacer");
    el.append(av);
  }
  const body = document.createElement("div");
  body.className = "msg-body";
  if (!o.grouped) {
    const meta = document.createElement("div");
    meta.className = "meta";
    if (!o.mine && r.kind !== "dm") {
      const a = document.createElement("span");
      a.className = "author hue-text-" + hue(o.sender);
      a.textContent = o.name;
      meta.append(a);
    }
    const t = document.createElement("time");
    t.dateTime = it.at.toISOString();
    t.title = fullDate(it.at);
    t.textContent = clock(it.at);
    meta.append(t);
    body.append(meta);
  }
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  if (it.deleted) {
    bubble.textContent = "This message was deleted.";
  } else if (o.editing) {
    bubble.append(buildEditor(r, it));
  } else {
    const p = document.createElement("p");
    p.className = "text";
    const words = document.createElement("span");
    words.className = "t";
    appendRich(words, it.text);
    p.append(words);
    if (it.edited) {
      const ed = document.createElement("span");
      ed.className = "edited";
      ed.textContent = "(edited)";
      p.append(ed);
    }
    bubble.append(p);
  }
  body.append(bubble);

  if (it.pending) {
    const st = document.createElement("div");
    st.className = "status";
    if (o.pstate === "failed") {
      st.classList.add("failed");
      st.append(document.createTextNode("Not sent" + (it.pending.error ? ` — ${it.pending.error}` : "") + ". "));
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "link";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => {
        it.pending.state = "sending";
        it.pending.error = "";
        transmit(r, it.pending);
        renderMessages();
      });
      const discard = document.createElement("button");
      discard.type = "button";
      discard.className = "link";
      discard.textContent = "Discard";
      discard.addEventListener("click", () => {
        r.pending.delete(it.pending.client_id);
        renderMessages();
      });
      st.append(retry, document.createTextNode(" · "), discard);
    } else if (o.pstate === "sent") {
      st.textContent = "Sent";
    } else {
      st.textContent = socket.online ? "Sending…" : "Waiting for connection…";
    }
    body.append(st);
  }

  if (o.mine && !it.pending && !it.deleted && !o.editing) {
    const actions = document.createElement("div");
    actions.className = "actions";
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "act";
    edit.textContent = "Edit";
    edit.setAttribute("aria-label", "Edit message");
    edit.addEventListener("click", () => startEdit(r, it.seq));
    const del = document.createElement("button");
    del.type = "button";
    del.className = "act danger";
    del.textContent = "Delete";
    del.setAttribute("aria-label", "Delete message");
    del.addEventListener("click", () => {
      if (del.dataset.armed === "1") {
        sendOp(r, "delete", it.seq, "");
        return;
      }
      del.dataset.armed = "1";
      del.textContent = "Really delete?";
      setTimeout(() => {
        del.dataset.armed = "0";
        del.textContent = "Delete";
      }, 4000);
    });
    actions.append(edit, del);
    body.append(actions);
  }
  el.append(body);
  return el;
}

function buildEditor(r, it) {
  const wrap = document.createElement("div");
  wrap.className = "editor";
  const ta = document.createElement("textarea");
  ta.className = "edit-box";
  ta.value = it.text;
  ta.maxLength = 4000;
  ta.rows = 2;
  ta.dataset.fresh = "1";
  ta.setAttribute("aria-label", "Edit message");
  const save = () => {
    const text = ta.value;
    if (!text.trim()) return;
    if (text !== it.text) sendOp(r, "edit", it.seq, text);
    r.editing = 0;
    renderMessages();
    $("composer").focus();
  };
  const cancel = () => {
    r.editing = 0;
    renderMessages();
    $("composer").focus();
  };
  ta.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save();
    } else if (e.key === "Escape") {
      e.preventDefault();
      cancel();
    }
  });
  const row = document.createElement("div");
  row.className = "editor-row";
  const hint = document.createElement("span");
  hint.textContent = "Enter to save · Esc to cancel";
  const bCancel = document.createElement("button");
  bCancel.type = "button";
  bCancel.className = "ghost small";
  bCancel.textContent = "Cancel";
  bCancel.addEventListener("click", cancel);
  const bSave = document.createElement("button");
  bSave.type = "button";
  bSave.className = "primary small";
  bSave.textContent = "Save";
  bSave.addEventListener("click", save);
  row.append(hint, bCancel, bSave);
  wrap.append(ta, row);
  return wrap;
}

function startEdit(r, seq) {
  r.editing = seq;
  renderMessages();
}

function scrollToBottom() {
  const sc = $("scroller");
  sc.scrollTop = sc.scrollHeight;
  $("jump-btn").hidden = true;
}

function onScroll() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const sc = $("scroller");
  if (sc.scrollTop < 300) loadOlder(r);
  if (sc.scrollHeight - sc.scrollTop - sc.clientHeight < 60) $("jump-btn").hidden = true;
  scheduleRead();
}

// ---------------------------------------------------------------- typing

function renderTyping() {
  const r = state.rooms.get(state.current);
  const el = $("typing");
  if (!r) return;
  const who = r.typingUsers().map(userName);
  let text = "";
  if (who.length === 1) text = `${who[0]} is typing…`;
  else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) text = "Several people are typing…";
  if (el.textContent !== text) el.textContent = text;
  el.classList.toggle("on", text !== "");
}

function sendTyping() {
  const now = Date.now();
  if (!state.current || now - state.lastTypingSent < TYPING_SEND_EVERY) return;
  if (socket.send({ type: "typing", room_id: state.current })) state.lastTypingSent = now;
}

// ---------------------------------------------------------------- sending

function onComposerKey(e) {
  const ta = e.currentTarget;
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendComposer();
    return;
  }
  if (e.key === "ArrowUp" && ta.value === "") {
    const r = state.rooms.get(state.current);
    if (!r) return;
    const mine = r.view().filter((it) => it.kind === "msg" && !it.pending && !it.deleted && it.sender === state.me.id);
    if (mine.length) {
      e.preventDefault();
      startEdit(r, mine[mine.length - 1].seq);
    }
  }
}

function sendComposer() {
  const ta = $("composer");
  const r = state.rooms.get(state.current);
  // Blank lines around the message are never meant.
  const text = ta.value.replace(/^(\s*\n)+/, "").replace(/\s+$/, "");
  if (!r || !text.trim()) return;
  if ([...text].length > 4000) {
    toast("Messages are limited to 4000 characters.");
    return;
  }
  const p = { client_id: newID(), text, state: "sending", seq: 0, error: "", at: Date.now() };
  r.pending.set(p.client_id, p);
  ta.value = "";
  r.draft = "";
  autoGrow(ta);
  renderCounter();
  transmit(r, p);
  renderMessages();
  scrollToBottom();
}

// transmit sends (or re-sends, same client_id) a pending message; if no
// socket is up it waits for the next hello.
function transmit(r, p) {
  p.held = false;
  const ok = socket.send({ type: "send", room_id: r.id, client_id: p.client_id, text: p.text });
  clearTimeout(state.ackTimers.get(p.client_id));
  if (!ok) return;
  state.ackTimers.set(
    p.client_id,
    setTimeout(() => {
      state.ackTimers.delete(p.client_id);
      if (p.state === "sending") {
        p.state = "failed";
        p.error = "no answer from the server";
        if (r.id === state.current) renderMessages();
      }
    }, ACK_TIMEOUT),
  );
}

function sendOp(r, type, targetSeq, text) {
  const id = newID();
  const frame = { type, room_id: r.id, client_id: id, target_seq: targetSeq };
  if (type === "edit") frame.text = text;
  if (!socket.send(frame)) {
    toast("You are offline; try again when papo reconnects.");
    return;
  }
  state.ops.set(id, r.id);
}

function autoGrow(ta) {
  ta.style.height = "auto";
  ta.style.height = Math.min(ta.scrollHeight, 200) + "px";
}

function renderCounter() {
  const n = [...$("composer").value].length;
  const c = $("counter");
  c.textContent = n > 3500 ? `${n}/4000` : "";
  c.classList.toggle("over", n > 4000);
  const r = state.rooms.get(state.current);
  if (r) r.draft = $("composer").value;
}

// ---------------------------------------------------------------- read marker

function scheduleRead() {
  clearTimeout(state.readTimer);
  state.readTimer = setTimeout(flushRead, 400);
}

// newestOnScreen is the highest seq whose element is at least half inside
// the scroller's visible area (walking up from the bottom).
function newestOnScreen(r) {
  const view = $("scroller").getBoundingClientRect();
  const els = $("messages").children;
  for (let i = els.length - 1; i >= 0; i--) {
    const el = els[i];
    const seq = Number(el.dataset.seq || 0);
    if (!seq) continue;
    const b = el.getBoundingClientRect();
    if (b.top >= view.bottom) continue; // below the fold
    if (b.bottom <= view.top) return 0; // everything from here up is above it
    const shown = Math.min(b.bottom, view.bottom) - Math.max(b.top, view.top);
    if (shown >= Math.min(b.height, view.height) / 2 && r.events.has(seq)) return seq;
  }
  return 0;
}

// flushRead advances the open room's read marker to the newest message on
// screen, while the page is visible.
function flushRead() {
  const r = state.rooms.get(state.current);
  if (!r || !r.loaded || document.visibilityState !== "visible") return;
  const top = newestOnScreen(r);
  if (top <= r.readSeq) {
    if (r.unread > 0 && r.unreadFrom(state.me.id) === 0) {
      r.unread = 0;
      renderSidebar();
    }
    return;
  }
  r.readSeq = top;
  const n = r.unreadFrom(state.me.id);
  r.unread = n === null ? Math.max(0, r.unread - 1) : n;
  if (!socket.send({ type: "read", room_id: r.id, seq: top })) {
    api.markRead(r.id, top).catch(() => {});
  }
  renderSidebar();
}

// ---------------------------------------------------------------- dialogs

function openDialog(id) {
  const d = $(id);
  for (const e of d.querySelectorAll(".form-error")) e.textContent = "";
  d.showModal();
  const first = d.querySelector("input:not([type=radio])");
  if (first) {
    first.value = "";
    first.focus();
  }
}

// The last room creation asked for: submitting the same name and kind
// again (after an error whose answer may have been lost) reuses its
// client_id, so the server answers the room it made instead of a second.
let roomIntent = { name: "", kind: "", id: "" };

async function createRoom(e) {
  e.preventDefault();
  const d = $("dlg-room");
  const name = $("room-name").value.trim();
  const kind = d.querySelector("input[name=kind]:checked").value;
  const err = d.querySelector(".form-error");
  if (!name) {
    err.textContent = "Give the room a name.";
    return;
  }
  if (roomIntent.name !== name || roomIntent.kind !== kind) {
    roomIntent = { name, kind, id: newID() };
  }
  try {
    const res = await api.createRoom(name, kind, roomIntent.id);
    roomIntent = { name: "", kind: "", id: "" };
    addRoom(res.room);
    d.close();
    openRoom(res.room.id);
  } catch (ex) {
    err.textContent = ex.message;
  }
}

function addRoom(room) {
  const have = state.rooms.get(room.id);
  if (have) have.merge(room);
  else state.rooms.set(room.id, new Room(room));
  renderSidebar();
}

let publicRooms = [];
// nextPublic is the cursor of the next page of public rooms ("" at the end).
let nextPublic = "";

async function openBrowse() {
  openDialog("dlg-browse");
  const list = $("browse-list");
  const li = document.createElement("li");
  li.className = "muted";
  li.textContent = "Loading…";
  list.replaceChildren(li);
  publicRooms = [];
  nextPublic = "";
  loadInvitations();
  await morePublic();
}

// morePublic fetches the next page of public rooms (the server pages them,
// newest first) and adds it to the list.
async function morePublic() {
  try {
    const res = await api.publicRooms(nextPublic);
    publicRooms = publicRooms.concat(res.rooms || []);
    nextPublic = res.next_cursor || "";
    $("browse-more").hidden = !nextPublic;
    renderBrowse();
  } catch (ex) {
    $("dlg-browse").querySelector(".form-error").textContent = ex.message;
    if (!publicRooms.length) $("browse-list").replaceChildren();
  }
}

// loadInvitations shows the invitations to private rooms waiting for an
// answer, each with Accept (join the room) and Decline.
async function loadInvitations() {
  let invs = [];
  try {
    invs = (await api.invitations()).invitations || [];
  } catch (ex) {
    $("dlg-browse").querySelector(".form-error").textContent = ex.message;
  }
  // Name who invited: fetch the users not known yet before drawing.
  await Promise.all(
    invs
      .filter((inv) => !state.users.has(inv.invited_by))
      .map((inv) =>
        api
          .user(inv.invited_by)
          .then((res) => state.users.set(res.user.id, res.user))
          .catch(() => {}),
      ),
  );
  $("invite-section").hidden = invs.length === 0;
  $("invite-list").replaceChildren(
    ...invs.map((inv) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "browse-name";
      name.textContent = inv.room.name;
      const from = document.createElement("span");
      from.className = "muted";
      from.textContent = "from " + userName(inv.invited_by);
      const accept = document.createElement("button");
      accept.type = "button";
      accept.className = "primary small";
      accept.textContent = "Accept";
      accept.setAttribute("aria-label", "Accept " + inv.room.name);
      accept.addEventListener("click", async () => {
        try {
          const res = await api.joinRoom(inv.room.id);
          addRoom(res.room);
          $("dlg-browse").close();
          openRoom(inv.room.id);
        } catch (ex) {
          $("dlg-browse").querySelector(".form-error").textContent = ex.message;
        }
      });
      const decline = document.createElement("button");
      decline.type = "button";
      decline.className = "ghost small";
      decline.textContent = "Decline";
      decline.setAttribute("aria-label", "Decline " + inv.room.name);
      decline.addEventListener("click", async () => {
        try {
          await api.declineInvitation(inv.room.id);
          loadInvitations();
        } catch (ex) {
          $("dlg-browse").querySelector(".form-error").textContent = ex.message;
        }
      });
      li.append(name, from, accept, decline);
      return li;
    }),
  );
  return invs.length;
}

function renderBrowse() {
  const f = $("browse-filter").value.trim().toLowerCase();
  const list = $("browse-list");
  const rooms = publicRooms.filter((r) => !f || r.name.toLowerCase().includes(f)).sort((a, b) => a.name.localeCompare(b.name));
  if (rooms.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = publicRooms.length ? "No room matches." : "No public rooms yet. Create the first one!";
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(
    ...rooms.map((room) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "browse-name";
      name.textContent = "# " + room.name;
      const b = document.createElement("button");
      b.type = "button";
      const joined = state.rooms.has(room.id);
      b.className = joined ? "ghost small" : "primary small";
      b.textContent = joined ? "Open" : "Join";
      b.setAttribute("aria-label", (joined ? "Open " : "Join ") + room.name);
      b.addEventListener("click", async () => {
        try {
          if (!joined) {
            const res = await api.joinRoom(room.id);
            addRoom(res.room);
          }
          $("dlg-browse").close();
          openRoom(room.id);
        } catch (ex) {
          $("dlg-browse").querySelector(".form-error").textContent = ex.message;
        }
      });
      li.append(name, b);
      return li;
    }),
  );
}

let userMode = "dm";

function openUserDialog(mode) {
  userMode = mode;
  const r = state.rooms.get(state.current);
  const invite = mode !== "dm" && r && r.kind === "private";
  $("dlg-user-title").textContent =
    mode === "dm" ? "New direct message" : `${invite ? "Invite" : "Add"} someone to #${r ? roomTitle(r) : ""}`;
  $("user-submit").textContent = mode === "dm" ? "Start chat" : invite ? "Invite" : "Add to room";
  openDialog("dlg-user");
}

async function submitUserDialog(e) {
  e.preventDefault();
  const d = $("dlg-user");
  const err = d.querySelector(".form-error");
  const username = $("user-name").value.trim().toLowerCase().replace(/^@/, "");
  if (!username) {
    err.textContent = "Type a username.";
    return;
  }
  try {
    const res = await api.findUser(username);
    const u = (res.users || [])[0];
    if (!u) {
      err.textContent = `Nobody is called “${username}”.`;
      return;
    }
    state.users.set(u.id, u);
    if (userMode === "dm") {
      if (u.id === state.me.id) {
        err.textContent = "That is you! Pick someone else.";
        return;
      }
      const dm = await api.openDM(u.id);
      addRoom(dm.room);
      d.close();
      fetchPresence([u.id]);
      openRoom(dm.room.id);
    } else {
      const r = state.rooms.get(state.current);
      if (!r) return;
      const res = await api.addMember(r.id, u.id);
      d.close();
      // Into a private room an add is an invitation the person accepts.
      toast(`${u.display_name || u.username} was ${res.invitation ? "invited" : "added"}.`);
      loadMembers(r);
    }
  } catch (ex) {
    err.textContent = ex.message;
  }
}

async function leaveCurrent() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const btn = $("leave-btn");
  if (btn.dataset.armed !== "1") {
    btn.dataset.armed = "1";
    btn.textContent = "Leave for real?";
    setTimeout(() => {
      btn.dataset.armed = "0";
      btn.textContent = "Leave";
    }, 4000);
    return;
  }
  btn.dataset.armed = "0";
  btn.textContent = "Leave";
  try {
    await api.leaveRoom(r.id);
    state.rooms.delete(r.id);
    state.current = null;
    history.pushState(null, "", "/");
    showEmpty();
  } catch (ex) {
    toast(ex.message);
  }
}

// ---------------------------------------------------------------- toasts

function toast(text) {
  const el = document.createElement("div");
  el.className = "toast";
  el.textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), 5000);
}

export { ApiError };
