// REST client for the papo gateway, and the session it authenticates with.
//
// Token storage (see docs/web.md, "Tokens"): the access token lives in
// memory only; the refresh token lives in an HttpOnly, Secure,
// SameSite=Strict cookie scoped to /api/v1/auth/refresh, which the
// gateway sets when login and refresh carry `X-Papo-Session: cookie`. No
// script can read it; every tab of the origin shares it, and it outlives
// a browser restart. localStorage holds only a hint ("papo.session" =
// "1": a session may exist) so a page with no session does not ask for a
// refresh it cannot get. Refreshes of all tabs are serialized with the
// Web Locks API: the token rotates on every use and presenting a used one
// revokes the session, so two tabs must never send the same one.

const HINT_KEY = "papo.session";
// Where the gateway cannot set a cookie the browser keeps (plain http on a
// host that is not loopback), the refresh token comes back in the body
// and is kept in this tab's sessionStorage instead: a reload stays signed
// in, other tabs and restarts do not.
const TAB_KEY = "papo.refresh";
const LOCK = "papo.refresh";
const COOKIE_MODE = { "X-Papo-Session": "cookie" };

// remember records how the session's refresh token is kept: token "" is
// the cookie (a hint in localStorage), a token is this tab's copy; null
// forgets both.
function remember(token) {
  try {
    if (token === null) localStorage.removeItem(HINT_KEY);
    else if (!token) localStorage.setItem(HINT_KEY, "1");
    if (token) sessionStorage.setItem(TAB_KEY, token);
    else sessionStorage.removeItem(TAB_KEY);
  } catch {
    /* storage disabled: the session ends with the page */
  }
}

function tabToken() {
  try {
    return sessionStorage.getItem(TAB_KEY) || "";
  } catch {
    return "";
  }
}

function hint() {
  try {
    return localStorage.getItem(HINT_KEY) === "1" || !!sessionStorage.getItem(TAB_KEY);
  } catch {
    return true;
  }
}

// exclusive runs fn under a lock shared by every tab of the origin.
function exclusive(fn) {
  if (navigator.locks) return navigator.locks.request(LOCK, fn);
  return fn();
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "http_" + status;
  }
}

export class Session {
  constructor() {
    this.accessToken = "";
    this.user = null;
    this.expiresAt = 0;
    this.refreshing = null; // the one refresh in flight, shared by callers
    this.timer = 0;
    this.listeners = new Set();
  }

  // onChange(fn) calls fn("tokens" | "ended") when the tokens change.
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(what) {
    for (const fn of this.listeners) fn(what);
  }

  get loggedIn() {
    return this.accessToken !== "";
  }

  // hasRefreshToken: a session cookie may exist (the cookie itself is
  // out of the page's reach).
  hasRefreshToken() {
    return hint();
  }

  // accept takes a login or refresh answer.
  accept(tok) {
    this.accessToken = tok.access_token;
    this.user = tok.user;
    this.expiresAt = Date.now() + tok.expires_in * 1000;
    remember(tok.refresh_token || "");
    clearTimeout(this.timer);
    // Refresh at 80% of the lifetime, so the WebSocket never sees an
    // expired token.
    const inMs = Math.max(5000, tok.expires_in * 800);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), inMs);
    this.emit("tokens");
  }

  clear() {
    clearTimeout(this.timer);
    this.accessToken = "";
    this.user = null;
    this.expiresAt = 0;
    remember(null);
    this.emit("ended");
  }

  // refresh trades the cookie's refresh token for new tokens. Concurrent
  // callers share one request, and tabs take turns: a refresh token works
  // once.
  refresh() {
    if (this.refreshing) return this.refreshing;
    this.refreshing = exclusive(() => {
      const token = tabToken();
      return token
        ? rawRequest("POST", "/api/v1/auth/refresh", { refresh_token: token }, "")
        : rawRequest("POST", "/api/v1/auth/refresh", {}, "", COOKIE_MODE);
    })
      .then((tok) => {
        this.accept(tok);
        return tok;
      })
      .catch((err) => {
        if (err.status === 401 || err.status === 403) this.clear();
        throw err;
      })
      .finally(() => {
        this.refreshing = null;
      });
    return this.refreshing;
  }
}

async function rawRequest(method, path, body, token, extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection.");
  }
  if (res.status === 204) return null;
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    let msg = e.message;
    if (res.status === 429) {
      const after = res.headers.get("Retry-After");
      msg = "Slow down a little" + (after ? ` — try again in ${after}s.` : ".");
    }
    throw new ApiError(res.status, e.code, msg);
  }
  return data;
}

// Api calls the gateway with the session's access token, refreshing it
// once on a 401 and retrying.
export class Api {
  constructor(session) {
    this.session = session;
  }

  async call(method, path, body) {
    if (!this.session.loggedIn && this.session.hasRefreshToken()) await this.session.refresh();
    try {
      return await rawRequest(method, path, body, this.session.accessToken);
    } catch (err) {
      if (err.status !== 401 || !this.session.hasRefreshToken()) throw err;
      await this.session.refresh();
      return rawRequest(method, path, body, this.session.accessToken);
    }
  }

  register(username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return rawRequest("POST", "/api/v1/auth/register", body, "");
  }

  async login(username, password) {
    const tok = await rawRequest("POST", "/api/v1/auth/login", { username, password }, "", COOKIE_MODE);
    this.session.accept(tok);
    return tok;
  }

  async logout() {
    try {
      if (this.session.loggedIn) await rawRequest("POST", "/api/v1/auth/logout", undefined, this.session.accessToken);
    } finally {
      this.session.clear();
    }
  }

  me() {
    return this.call("GET", "/api/v1/me");
  }
  user(id) {
    return this.call("GET", "/api/v1/users/" + encodeURIComponent(id));
  }
  findUser(username) {
    return this.call("GET", "/api/v1/users?username=" + encodeURIComponent(username));
  }
  rooms() {
    return this.call("GET", "/api/v1/rooms");
  }
  publicRooms(cursor) {
    const q = new URLSearchParams({ limit: "100" });
    if (cursor) q.set("cursor", cursor);
    return this.call("GET", `/api/v1/rooms/public?${q}`);
  }
  invitations() {
    return this.call("GET", "/api/v1/rooms/invitations");
  }
  declineInvitation(id) {
    return this.call("POST", `/api/v1/rooms/${encodeURIComponent(id)}/decline`, {});
  }
  createRoom(name, kind, clientID) {
    return this.call("POST", "/api/v1/rooms", { name, kind, client_id: clientID });
  }
  joinRoom(id) {
    return this.call("POST", `/api/v1/rooms/${encodeURIComponent(id)}/join`, {});
  }
  leaveRoom(id) {
    return this.call("POST", `/api/v1/rooms/${encodeURIComponent(id)}/leave`, {});
  }
  addMember(id, userID) {
    return this.call("POST", `/api/v1/rooms/${encodeURIComponent(id)}/members`, { user_id: userID });
  }
  members(id) {
    return this.call("GET", `/api/v1/rooms/${encodeURIComponent(id)}/members`);
  }
  openDM(userID, encrypted = false) {
    return this.call("POST", "/api/v1/dms", { user_id: userID, encrypted: encrypted || undefined });
  }
  history(id, { before, after, limit }) {
    const q = new URLSearchParams();
    if (before !== undefined) q.set("before", String(before));
    if (after !== undefined) q.set("after", String(after));
    if (limit !== undefined) q.set("limit", String(limit));
    return this.call("GET", `/api/v1/rooms/${encodeURIComponent(id)}/events?${q}`);
  }
  markRead(id, seq) {
    return this.call("POST", `/api/v1/rooms/${encodeURIComponent(id)}/read`, { seq });
  }
  webPushKey() {
    return this.call("GET", "/api/v1/devices/webpush-key");
  }
  addDevice(device) {
    return this.call("POST", "/api/v1/devices", device);
  }
  deleteDevice(id) {
    return this.call("DELETE", "/api/v1/devices/" + encodeURIComponent(id));
  }
  setNotifications(id, mode) {
    return this.call("PUT", `/api/v1/rooms/${encodeURIComponent(id)}/notifications`, { mode });
  }
  presence(ids) {
    return this.call("GET", "/api/v1/presence?user_ids=" + ids.map(encodeURIComponent).join(","));
  }
}
