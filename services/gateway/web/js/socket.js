// The WebSocket to /ws: connects with the access token as a subprotocol,
// reconnects with exponential backoff and jitter, and tells its owner when
// a hello arrives so it can send `resume` with the last seq of every room.

const BASE_DELAY = 500; // ms, first retry
const MAX_DELAY = 30000; // ms, ceiling of the backoff
const HELLO_TIMEOUT = 10000; // ms from dialing to hello before giving up

// Close codes of docs/protocol.md.
const CLOSE_TOKEN_EXPIRED = 4001;
const CLOSE_SESSION_REVOKED = 4002;
const CLOSE_TOO_MANY = 4003;

// backoff returns the wait before retry number attempt (0-based): an
// exponential ceiling with "equal jitter", so a crowd of clients that lost
// the same server does not come back in step.
export function backoff(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY, BASE_DELAY * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export class Socket {
  // handlers: onFrame(frame), onHello(hello), onState(state, info),
  // onAuthLost(), getToken() -> Promise<string>.
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = 0;
    this.stopped = true;
    this.state = "offline";
    this.retryAt = 0;
    this.onOnline = () => this.retryNow();
    this.onVisible = () => {
      if (document.visibilityState === "visible" && this.state === "waiting") this.retryNow();
    };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisible);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisible);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "bye");
    }
    this.setState("offline");
  }

  get online() {
    return this.state === "online";
  }

  setState(state, info = {}) {
    this.state = state;
    this.h.onState(state, info);
  }

  async connect() {
    clearTimeout(this.retryTimer);
    if (this.stopped || this.ws) return;
    this.setState("connecting", { attempt: this.attempt });
    let token;
    try {
      token = await this.h.getToken();
    } catch (err) {
      if (err && (err.status === 401 || err.status === 403)) {
        this.h.onAuthLost();
        return;
      }
      this.scheduleRetry();
      return;
    }
    if (this.stopped || this.ws) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}/ws`, ["papo.v1", "bearer." + token]);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    let helloSeen = false;
    // A socket that neither opens nor fails (a half-open network) is
    // given up after a while, so the backoff goes on.
    const giveUp = setTimeout(() => {
      if (helloSeen || this.ws !== ws) return;
      this.ws = null;
      ws.close();
      this.scheduleRetry();
    }, HELLO_TIMEOUT);
    ws.onmessage = (msg) => {
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (frame.type === "hello") {
        helloSeen = true;
        clearTimeout(giveUp);
        this.attempt = 0;
        this.setState("online");
        this.h.onHello(frame);
        return;
      }
      this.h.onFrame(frame);
    };
    ws.onclose = (ev) => {
      clearTimeout(giveUp);
      if (this.ws !== ws) return; // stopped on purpose
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === CLOSE_SESSION_REVOKED) {
        this.h.onAuthLost();
        return;
      }
      if (ev.code === CLOSE_TOKEN_EXPIRED) {
        // The next connect fetches a fresh token; no need to wait.
        this.h.tokenExpired();
        this.connect();
        return;
      }
      if (!helloSeen && this.attempt >= 1) {
        // Refused before hello (maybe an expired token at the edge): make
        // sure the next try carries a fresh one.
        this.h.tokenExpired();
      }
      this.scheduleRetry(ev.code === CLOSE_TOO_MANY ? 4 : 0);
    };
  }

  scheduleRetry(extra = 0) {
    if (this.stopped) return;
    const delay = backoff(this.attempt + extra);
    this.attempt = Math.min(this.attempt + 1, 16);
    this.retryAt = Date.now() + delay;
    this.setState("waiting", { retryAt: this.retryAt, attempt: this.attempt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // reconnect drops the current socket and dials again at once; the next
  // hello lists every room the user belongs to now.
  reconnect() {
    if (this.stopped) return;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "reconnect");
    }
    this.attempt = 0;
    this.connect();
  }

  retryNow() {
    if (this.stopped || this.ws) return;
    this.connect();
  }

  // send writes a frame if the socket is open; false if it is not.
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== "online") return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
