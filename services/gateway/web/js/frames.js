// The socket's frames: hello (resume), events, acks, typing, presence and
// errors; sends held until a new room is routed to this socket.

import { ROUTE_WAIT, TYPING_SHOWN_FOR, socket, state, toast } from "./core.js";
import { Room } from "./rooms.js";
import { dmPeer, fetchPresence } from "./people.js";
import { reloadRooms, renderSidebar } from "./sidebar.js";
import { showEmpty } from "./chat.js";
import { renderMessages } from "./messages.js";
import { refuse, renderTyping, transmit } from "./composer.js";
import { scheduleRead } from "./read.js";
import { notifyEvent } from "./notify.js";
import { scheduleRender } from "./app.js";
import { humanError } from "./wording.js";

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

export function onHello(hello) {
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

export function onFrame(f) {
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
      toast("That change was refused: " + humanError(f));
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
        refuse(r, p, f);
        return;
      }
    }
  }
  if (notMember(f.code)) {
    reloadRooms();
    return;
  }
  if (f.code !== "rate_limited") toast(humanError(f));
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
      notifyEvent(r, e);
    }
  }
  if (r.id === state.current) {
    renderMessages();
    renderTyping();
    scheduleRead();
  }
  renderSidebar();
}

