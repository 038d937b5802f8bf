// papo web client: boots the session, switches between the log-in screen
// and the chat, and wires the screens together. Plain ES modules, no
// build step; all text goes in as text nodes. The screens:
//
//   core.js       session, api, socket, state, toasts (imports no screen)
//   auth-view.js  log in / create account
//   sidebar.js    rooms and DMs by activity, previews, badges
//   chat.js       the open room: landing, history, header, unread bar
//   messages.js   the message list and its builders
//   composer.js   typing, counter, sends, edits, refused sends
//   read.js       the read marker
//   frames.js     the socket's frames
//   notify.js     notifications and sound
//   push.js       the service worker and the Web Push device
//   dialogs.js    create, browse, invitations, people, leave
//   wording.js    human wording of error codes
//   e2ee-view.js  encrypted DMs: banner, safety number, notices
//                 (secure.js keys and directories, e2ee.js the cryptography)

import { $, ROOMS_POLL, api, hooks, session, socket, state, toast } from "./core.js";
import { ApiError } from "./api.js";
import { showAuth, wireAuth } from "./auth-view.js";
import { loadRooms, renderSidebar } from "./sidebar.js";
import { openRoom, renderHeader, showEmpty, wireChat } from "./chat.js";
import { renderMessages, wireMessages } from "./messages.js";
import { renderTyping, wireComposer } from "./composer.js";
import { scheduleRead } from "./read.js";
import { onFrame, onHello } from "./frames.js";
import { wireNotify } from "./notify.js";
import { disablePush, enablePush, registerWorker } from "./push.js";
import { wireDialogs } from "./dialogs.js";
import { setAvatar } from "./people.js";
import { startE2EE, wireE2EE } from "./e2ee-view.js";

// Tabs of this origin tell each other about logins and logouts: the
// session (its cookie) is shared, so it starts and ends for all of them.
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("papo.session") : null;

document.addEventListener("DOMContentLoaded", boot);

async function boot() {
  hooks.onHello = onHello;
  hooks.onFrame = onFrame;
  hooks.onState = renderConn;
  hooks.onAuthLost = () => endSession("Your session ended. Please log in again.");
  wireAuth();
  wireApp();
  session.onChange((what) => {
    if (what === "tokens" && socket.online) socket.send({ type: "auth", token: session.accessToken });
  });
  if (tabs) tabs.onmessage = (e) => onTabMessage(e.data);
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

async function onTabMessage(m) {
  if (m?.type === "logout" && state.me) {
    endSession("You logged out in another tab.");
  } else if (m?.type === "login" && !state.me) {
    try {
      await session.refresh();
      await enterApp();
    } catch {
      /* stay on the log-in screen */
    }
  }
}

export function setView(v) {
  document.body.dataset.view = v;
  $("boot").hidden = v !== "boot";
  $("auth").hidden = v !== "auth";
  $("app").hidden = v !== "app";
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

// enterApp shows the chat; announce (a log-in in this tab) tells the
// other tabs, which then join the session.
export async function enterApp({ announce = false } = {}) {
  state.me = session.user;
  state.users.set(state.me.id, state.me);
  renderMe();
  await startE2EE(); // before any event: encrypted ones are decrypted as they come
  await loadRooms();
  setView("app");
  socket.start();
  if (announce && tabs) tabs.postMessage({ type: "login" });
  registerWorker().then((reg) => {
    if (reg && "Notification" in window && Notification.permission === "granted") enablePush();
  });
  const m = location.pathname.match(/^\/r\/([^/]+)$/);
  const id = m ? decodeURIComponent(m[1]) : "";
  if (id && state.rooms.has(id)) openRoom(id, { push: false });
  else {
    showEmpty();
    // Focus lands on the first conversation, or on the way to find one.
    const first = document.querySelector(".room-item");
    (first || $("empty-browse")).focus();
  }
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
    await disablePush();
    try {
      await api.logout();
    } catch {
      /* the session ends locally either way */
    }
    if (tabs) tabs.postMessage({ type: "logout" });
    endSession("You are logged out.");
  });
  $("conn-retry").addEventListener("click", () => socket.retryNow());
  $("back-btn").addEventListener("click", () => {
    state.current = null;
    history.pushState(null, "", "/");
    showEmpty();
  });
  wireChat();
  wireMessages();
  wireComposer();
  wireNotify();
  wireDialogs();
  wireE2EE();
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

let renderQueued = false;
export function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (!state.me) return;
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
  // Presence is unknown while offline: the dots and the header say so.
  if (state.me) scheduleRender();
}

export { ApiError };
