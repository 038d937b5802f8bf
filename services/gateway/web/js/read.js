// The read marker: messages count as read only once they have been on
// screen (at least half visible, the tab visible); "Mark all read" is the
// explicit way past that.

import { $, api, socket, state } from "./core.js";
import { renderSidebar } from "./sidebar.js";
import { renderUnreadBar } from "./chat.js";

export function scheduleRead() {
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
export function flushRead() {
  const r = state.rooms.get(state.current);
  if (!r || !r.loaded || document.visibilityState !== "visible" || $("chat-room").hidden) return;
  advance(r, newestOnScreen(r));
}

// markAllRead marks everything up to the room's head read.
export function markAllRead() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  advance(r, r.lastSeq);
  state.unreadMark = 0;
  r.unread = 0;
  renderSidebar();
  renderUnreadBar();
}

function advance(r, top) {
  if (top <= r.readSeq) {
    if (r.unread > 0 && r.unreadFrom(state.me.id) === 0) {
      r.unread = 0;
      renderSidebar();
      renderUnreadBar();
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
  renderUnreadBar();
}
