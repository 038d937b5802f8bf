// The open room: opening it (landing on the first unread), its history
// pages, its header and menu, the unread bar and scrolling.

import { $, PAGE, api, socket, state, toast } from "./core.js";
import { dmPeer, fetchPresence, presenceOf, roomTitle, userName } from "./people.js";
import { renderSidebar } from "./sidebar.js";
import { renderMessages } from "./messages.js";
import { renderCounter, renderTyping, autoGrow } from "./composer.js";
import { flushRead, markAllRead, scheduleRead } from "./read.js";
import { modeOf } from "./notify.js";
import { ago } from "./text.js";
import { renderE2EE } from "./e2ee-view.js";

const MAX_PAGE = 200; // the server's history limit
const UNREAD_PAGES = 5; // pages fetched at most to reach the first unread

export async function openRoom(id, { push = true } = {}) {
  const r = state.rooms.get(id);
  if (!r) return;
  const switching = state.current !== id;
  state.current = id;
  if (push && location.pathname !== "/r/" + encodeURIComponent(id)) {
    history.pushState(null, "", "/r/" + encodeURIComponent(id));
  }
  document.body.classList.add("in-room");
  document.body.classList.remove("menu-open");
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
  if (!window.matchMedia("(pointer: coarse)").matches) $("composer").focus();
  if (!r.loaded && !r.loading) {
    await loadLatest(r);
  }
  if (!r.memberIds) loadMembers(r);
  if (r.id !== state.current) return;
  if (switching) await land(r);
  scheduleRead();
}

// land shows the first unread message with the divider near the top when
// the room opened with unread messages, else the newest.
async function land(r) {
  if (!state.unreadMark) {
    scrollToBottom();
    return;
  }
  for (let i = 0; i < UNREAD_PAGES && r.hasMore && r.oldest > state.unreadMark + 1 && r.id === state.current; i++) {
    await loadOlder(r);
  }
  scrollToUnread();
}

// scrollToUnread puts the "New messages" divider at the top of the view.
export function scrollToUnread() {
  const mark = $("messages").querySelector(".unread-mark");
  const sc = $("scroller");
  if (!mark) {
    scrollToBottom();
    return;
  }
  sc.scrollTop += mark.getBoundingClientRect().top - sc.getBoundingClientRect().top - 8;
  $("jump-btn").hidden = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 60;
  renderUnreadBar();
}

export async function jumpToUnread() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  if (!state.unreadMark) state.unreadMark = r.readSeq;
  await land(r);
}

async function loadLatest(r) {
  r.resetWindow();
  r.loading = true;
  setHistoryState("Loading messages…");
  // Enough to reach the first unread message when it is near the head.
  const limit = r.unread > 0 ? Math.min(MAX_PAGE, Math.max(PAGE, r.lastSeq - r.readSeq + 5)) : PAGE;
  try {
    let res;
    if (r.lastSeq > 0) res = await api.history(r.id, { before: r.lastSeq + 1, limit });
    else {
      res = await api.history(r.id, { after: 0, limit });
      const top = res.events.length ? res.events[res.events.length - 1].seq : 0;
      if (res.last_seq > top) res = await api.history(r.id, { before: res.last_seq + 1, limit });
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
    if (!state.unreadMark) scrollToBottom();
    fillViewport(r);
  }
}

export async function loadOlder(r) {
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

export async function loadMembers(r) {
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

export function showEmpty() {
  document.body.classList.remove("in-room");
  $("chat-empty").hidden = false;
  $("chat-room").hidden = true;
  renderSidebar();
}

export function setHistoryState(text) {
  $("history-state").textContent = text;
}

export function renderHistoryState(r) {
  if (!r.loaded) return;
  if (r.hasMore) setHistoryState("");
  else if (r.lastSeq === 0 && r.pending.size === 0) setHistoryState("No messages yet. Say hello!");
  else setHistoryState(r.kind === "dm" ? "This is the beginning of your conversation." : "This is the beginning of the room.");
}

export function renderHeader() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const title = $("chat-title");
  title.replaceChildren();
  title.title = roomTitle(r);
  if (r.kind === "dm") {
    const peer = dmPeer(r);
    const pres = presenceOf(peer);
    const dot = document.createElement("span");
    dot.className = "presence inline";
    dot.dataset.presence = pres;
    dot.setAttribute("aria-hidden", "true");
    title.append(dot, document.createTextNode(roomTitle(r)));
    const p = state.presence.get(peer);
    let sub = "Waiting for connection…";
    if (pres === "online") sub = "Online";
    else if (pres === "offline") sub = p && p.last_seen ? "Last seen " + ago(new Date(p.last_seen)) : "Offline";
    $("chat-sub").textContent = sub;
    $("chat-sub").dataset.presence = pres;
  } else {
    title.append(document.createTextNode((r.kind === "private" ? "🔒 " : "# ") + roomTitle(r)));
    const parts = [r.kind === "private" ? "Private room" : "Public room"];
    if (r.memberIds) {
      parts.push(`${r.memberIds.length} member${r.memberIds.length === 1 ? "" : "s"}`);
      if (socket.online) {
        const online = r.memberIds.filter((id) => id === state.me.id || presenceOf(id) === "online").length;
        parts.push(`${online} online`);
      }
    }
    $("chat-sub").textContent = parts.join(" · ");
    delete $("chat-sub").dataset.presence;
  }
  renderE2EE(r);
  $("add-member-btn").hidden = r.kind === "dm";
  $("leave-btn").hidden = r.kind === "dm";
  $("notify-mode").value = modeOf(r);
  $("composer").placeholder = r.kind === "dm" ? `Message ${roomTitle(r)}` : `Message #${roomTitle(r)}`;
  $("composer-label").textContent = `Message ${r.kind === "dm" ? roomTitle(r) : "#" + roomTitle(r)}`;
  renderUnreadBar();
}

// renderUnreadBar shows "N new messages · Jump · Mark all read" while the
// open room has unread messages the person has not had on screen.
export function renderUnreadBar() {
  const r = state.rooms.get(state.current);
  const bar = $("unread-bar");
  const show = !!r && r.loaded && r.unread > 0;
  bar.hidden = !show;
  if (show) $("unread-text").textContent = `${r.unread > 99 ? "99+" : r.unread} new message${r.unread === 1 ? "" : "s"}`;
}

export function scrollToBottom() {
  const sc = $("scroller");
  sc.scrollTop = sc.scrollHeight;
  $("jump-btn").hidden = true;
}

export function onScroll() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const sc = $("scroller");
  if (sc.scrollTop < 300) loadOlder(r);
  if (sc.scrollHeight - sc.scrollTop - sc.clientHeight < 60) $("jump-btn").hidden = true;
  scheduleRead();
}

export function wireChat() {
  $("scroller").addEventListener("scroll", onScroll, { passive: true });
  $("jump-btn").addEventListener("click", () => {
    scrollToBottom();
    flushRead();
    $("composer").focus();
  });
  $("unread-jump").addEventListener("click", jumpToUnread);
  $("unread-read").addEventListener("click", markAllRead);
  $("room-menu-btn").addEventListener("click", () => {
    const open = document.body.classList.toggle("menu-open");
    $("room-menu-btn").setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("click", (e) => {
    if (!document.body.classList.contains("menu-open")) return;
    if (e.target.closest("#chat-actions, #room-menu-btn")) return;
    document.body.classList.remove("menu-open");
    $("room-menu-btn").setAttribute("aria-expanded", "false");
  });
}
