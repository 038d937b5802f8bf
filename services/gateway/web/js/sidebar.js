// The sidebar: rooms and DMs, most recent activity first, each with a
// one-line preview of its last message and its unread badge.

import { $, api, state } from "./core.js";
import { Room } from "./rooms.js";
import { dmPeer, fetchPresence, presenceOf, roomTitle, setAvatar, userName } from "./people.js";
import { openRoom } from "./chat.js";
import { scheduleRender } from "./app.js";

const PREVIEWS_PER_PASS = 30; // rooms whose last message one loadRooms fetches

export async function loadRooms() {
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
  fetchPreviews();
}

// fetchPreviews fetches the tail of the rooms whose newest event is not
// known (never opened, and no live event since the list said so), a few
// at a time, for the order and the preview.
let previewing = false;
async function fetchPreviews() {
  if (previewing) return;
  previewing = true;
  try {
    const want = [...state.rooms.values()]
      .filter((r) => !r.loaded && r.lastSeq > 0 && r.previewFor < r.lastSeq && (r.preview?.seq || 0) < r.lastSeq)
      .slice(0, PREVIEWS_PER_PASS);
    for (const r of want) {
      r.previewFor = r.lastSeq;
      try {
        const res = await api.history(r.id, { before: r.lastSeq + 1, limit: 10 });
        for (const e of res.events || []) r.note(e);
      } catch {
        /* a preview is a nicety */
      }
    }
  } finally {
    previewing = false;
  }
  if (state.me) scheduleRender();
}

// reloadRooms refreshes the room list soon, once for a burst of callers.
export function reloadRooms() {
  clearTimeout(state.roomsReload);
  state.roomsReload = setTimeout(() => loadRooms().catch(() => {}), 200);
}

// byActivity: newest activity first; rooms with none known after, by name.
function byActivity(a, b) {
  if (a.lastAt !== b.lastAt) return b.lastAt - a.lastAt;
  return roomTitle(a).localeCompare(roomTitle(b), undefined, { numeric: true });
}

export function renderSidebar() {
  const rooms = [];
  const dms = [];
  for (const r of state.rooms.values()) (r.kind === "dm" ? dms : rooms).push(r);
  rooms.sort(byActivity);
  dms.sort(byActivity);
  fillList($("room-list"), rooms);
  fillList($("dm-list"), dms);
  $("rooms-empty").hidden = rooms.length > 0;
  $("dms-empty").hidden = dms.length > 0;
  const total = [...state.rooms.values()].reduce((n, r) => n + (r.unread > 0 ? 1 : 0), 0);
  document.title = total > 0 ? `(${total}) papo` : "papo";
}

// previewText is the sidebar's line for a room's last message.
export function previewText(r) {
  const p = r.preview;
  if (!p) return "";
  const text = p.deleted ? "Message deleted" : p.text.replace(/\s+/g, " ").trim();
  if (p.sender === state.me?.id) return "You: " + text;
  if (r.kind === "dm") return text;
  return userName(p.sender) + ": " + text;
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
      setAvatar(av, peer || r.id, peer ? userName(peer) : title);
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
    const text = document.createElement("span");
    text.className = "room-text";
    const name = document.createElement("span");
    name.className = "room-name";
    name.textContent = title;
    text.append(name);
    const pv = previewText(r);
    if (pv) {
      const line = document.createElement("span");
      line.className = "room-preview";
      line.textContent = pv;
      text.append(line);
    }
    b.append(text);
    let label = (r.kind === "dm" ? "Direct message with " : "Room ") + title;
    if (r.kind === "dm" && presenceOf(dmPeer(r)) !== "unknown") label += ", " + presenceOf(dmPeer(r));
    if (r.unread > 0) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = r.unread > 99 ? "99+" : String(r.unread);
      b.append(badge);
      b.classList.add("has-unread");
      label += `, ${r.unread} unread`;
    }
    if (pv) label += ". " + pv;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", () => openRoom(r.id));
    li.append(b);
    return li;
  });
  ul.replaceChildren(...items);
}
