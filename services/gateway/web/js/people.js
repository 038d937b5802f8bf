// Users and presence: names fetched once, presence dots and phrases, room
// titles (a DM is named after the other person).

import { api, socket, state } from "./core.js";
import { hue, initials } from "./text.js";
import { scheduleRender } from "./app.js";

// userName returns a user's display name, fetching it once if unknown.
export function userName(id) {
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

// presenceOf is "online", "offline", or "unknown" while this client is
// itself offline: what it last heard may be stale, so it claims nothing.
export function presenceOf(id) {
  if (!socket.online) return "unknown";
  const p = state.presence.get(id);
  return p && p.status === "online" ? "online" : "offline";
}

export async function fetchPresence(ids) {
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

export function setAvatar(el, id, name) {
  el.textContent = initials(name);
  el.className = el.className.replace(/\bhue-\d\b/g, "").trim() + " hue-" + hue(id);
}

export function dmPeer(room) {
  if (room.kind !== "dm" || !state.me) return "";
  return room.members.find((m) => m !== state.me.id) || "";
}

export function roomTitle(room) {
  if (room.kind === "dm") {
    const peer = dmPeer(room);
    return (room.encrypted ? "🔐 " : "") + (peer ? userName(peer) : "Direct message");
  }
  return room.name || "room";
}
