// Shared ground of the web client's modules: the session, the REST API,
// the WebSocket, the app state and the toasts. It imports no screen
// module; the screens register their socket handlers in `hooks` (app.js
// does it at boot), so any module may import this one without a cycle.

import { Api, Session } from "./api.js";
import { Socket } from "./socket.js";

export const $ = (id) => document.getElementById(id);
export const PAGE = 50;
export const MAX_TEXT = 4000; // characters (code points), the server's rule
export const TYPING_SEND_EVERY = 3000; // ms between our typing frames
export const TYPING_SHOWN_FOR = 6000; // ms a typing signal stays visible
export const ACK_TIMEOUT = 10000; // ms before an unacked send is shown as failed
export const GROUP_GAP = 5 * 60 * 1000; // messages closer than this group together
export const ROOMS_POLL = 15000; // ms between room-list refreshes while visible
export const ROUTE_WAIT = 5000; // ms a held send waits for its new room's first event

export const session = new Session();
export const api = new Api(session);

export const state = {
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
  unreadMark: 0, // "new messages" divider of the open room: the read seq it opened at
  roomsReload: 0,
  routed: new Set(), // rooms the socket delivers: in its hello, or seen an event of
  routeWaits: new Map(), // room id -> timer: sends held until the room's first event
};

// hooks are the socket's handlers, filled in by app.js.
export const hooks = {
  onHello: () => {},
  onFrame: () => {},
  onState: () => {},
  onAuthLost: () => {},
};

export const socket = new Socket({
  getToken: async () => {
    if (!session.loggedIn || session.expiresAt - Date.now() < 15000) await session.refresh();
    return session.accessToken;
  },
  tokenExpired: () => {
    session.expiresAt = 0;
  },
  onAuthLost: () => hooks.onAuthLost(),
  onHello: (hello) => hooks.onHello(hello),
  onFrame: (f) => hooks.onFrame(f),
  onState: (s, info) => hooks.onState(s, info),
});

export function toast(text) {
  const el = document.createElement("div");
  el.className = "toast";
  el.textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), 5000);
}

// chars counts characters as the server does (code points, not UTF-16
// units: an emoji is one).
export function chars(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}
