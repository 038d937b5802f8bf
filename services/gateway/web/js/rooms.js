// The client's model of the rooms it belongs to: their log window (events
// by seq), pending sends, typing users and read state. No DOM here.

import { reveal } from "./secure.js";

export class Room {
  constructor(r) {
    this.id = r.id;
    this.name = r.name || "";
    this.kind = r.kind || "public";
    this.encrypted = !!r.encrypted; // an end-to-end encrypted DM, for good
    this.members = r.members || [];
    this.lastSeq = r.last_seq || 0; // the head as last heard from anyone
    this.readSeq = r.read_seq || 0;
    this.unread = r.unread || 0;
    this.events = new Map(); // seq -> event
    this.loaded = false; // the latest page has been fetched
    this.loading = false; // ... or is being fetched
    this.oldest = Infinity; // lowest seq held once loaded
    this.hasMore = false; // older events exist on the server
    this.loadingOlder = false;
    this.pending = new Map(); // client_id -> {client_id, text, state, seq, error, at}
    this.typing = new Map(); // user_id -> expiry (ms)
    this.memberIds = null; // fetched when opened
    this.editing = 0; // seq of the own message being edited
    this.lastAt = 0; // ms of the newest event known: the sidebar's order
    this.preview = null; // {seq, sender, text} of the newest message known
    this.previewFor = 0; // lastSeq whose preview was fetched
    this.draft = "";
  }

  // note records an event's activity and, for a message (or an edit or
  // delete of the previewed one), the sidebar's one-line preview.
  note(e) {
    reveal(e); // an encrypted event: a stand-in text now, its text once decrypted
    const at = Date.parse(e.created_at) || 0;
    if (at > this.lastAt) this.lastAt = at;
    const p = this.preview;
    if (e.type === "message" && (!p || e.seq > p.seq)) {
      this.preview = { seq: e.seq, sender: e.sender_id, text: e.text || "" };
    } else if (p && e.target_seq === p.seq && e.sender_id === p.sender) {
      if (e.type === "edit") p.text = e.text || "";
      if (e.type === "delete") p.text = "";
      if (e.type === "delete") p.deleted = true;
    }
  }

  merge(r) {
    if (r.name) this.name = r.name;
    if (r.kind) this.kind = r.kind;
    if (r.encrypted) this.encrypted = true;
    if (r.members && r.members.length) this.members = r.members;
    if (!this.loaded) {
      this.lastSeq = Math.max(this.lastSeq, r.last_seq || 0);
      if (typeof r.unread === "number") this.unread = r.unread;
    }
    this.readSeq = Math.max(this.readSeq, r.read_seq || 0);
  }

  // seen is the highest seq this client holds without a hole: what a
  // resume must start after. For a room whose log is not loaded, the
  // head is enough (opening it fetches the latest page anyway).
  seen() {
    if (!this.loaded) return this.lastSeq;
    let max = 0;
    for (const s of this.events.keys()) if (s > max) max = s;
    return Math.max(max, this.oldest === Infinity ? 0 : this.oldest - 1);
  }

  // addPage stores a history page (ascending events).
  addPage(events, lastSeq) {
    for (const e of events) {
      this.events.set(e.seq, e);
      this.note(e);
    }
    if (events.length) this.oldest = Math.min(this.oldest, events[0].seq);
    else if (this.oldest === Infinity) this.oldest = (lastSeq || 0) + 1;
    this.hasMore = this.oldest > 1;
    this.lastSeq = Math.max(this.lastSeq, lastSeq || 0);
  }

  // ingest stores a live event; false if it was already held.
  ingest(e, meID) {
    if (e.sender_id === meID && e.client_id && this.pending.has(e.client_id)) {
      this.pending.delete(e.client_id);
    }
    if (this.events.has(e.seq)) return false;
    const held = this.loaded || this.loading;
    if (!held && e.seq <= this.lastSeq) return false; // counted in the room list already
    // Held only while the window is loaded or loading: a closed room
    // fetches its latest page when opened.
    if (held) this.events.set(e.seq, e);
    this.note(e);
    this.lastSeq = Math.max(this.lastSeq, e.seq);
    if (e.type === "message") this.typing.delete(e.sender_id);
    return true;
  }

  // resetWindow forgets events held while the room was closed: islands
  // below the page that opening it fetches.
  resetWindow() {
    this.events.clear();
    this.oldest = Infinity;
    this.hasMore = false;
    this.loaded = false;
  }

  // unreadFrom counts others' messages above readSeq among held events,
  // or null when the held window does not reach down to readSeq.
  unreadFrom(meID) {
    if (!this.loaded || this.oldest > this.readSeq + 1) return null;
    let n = 0;
    const deleted = new Set();
    for (const e of this.events.values()) if (e.type === "delete") deleted.add(e.target_seq);
    for (const e of this.events.values()) {
      if (e.seq > this.readSeq && e.type === "message" && e.sender_id !== meID && !deleted.has(e.seq)) n++;
    }
    return n;
  }

  // view is the room's timeline: messages with edits and deletes applied,
  // membership lines, then pending sends not yet in the log.
  view() {
    const seqs = [...this.events.keys()].sort((a, b) => a - b);
    const items = [];
    const bySeq = new Map();
    for (const s of seqs) {
      const e = this.events.get(s);
      switch (e.type) {
        case "message": {
          const m = {
            kind: "msg",
            seq: e.seq,
            sender: e.sender_id,
            text: e.text || "",
            at: new Date(e.created_at),
            clientID: e.client_id || "",
            edited: false,
            deleted: false,
          };
          bySeq.set(e.seq, m);
          items.push(m);
          break;
        }
        case "edit": {
          const t = bySeq.get(e.target_seq);
          if (t && !t.deleted && t.sender === e.sender_id) {
            t.text = e.text || "";
            t.edited = true;
          }
          break;
        }
        case "delete": {
          const t = bySeq.get(e.target_seq);
          if (t && t.sender === e.sender_id) {
            t.deleted = true;
            t.text = "";
          }
          break;
        }
        case "member_joined":
        case "member_left":
          items.push({ kind: "sys", seq: e.seq, type: e.type, user: e.user_id || e.sender_id, at: new Date(e.created_at) });
          break;
        default:
          break; // reactions and later types: not shown yet
      }
    }
    for (const p of this.pending.values()) {
      if (p.seq && this.events.has(p.seq)) continue;
      items.push({ kind: "msg", pending: p, seq: 0, sender: "", text: p.text, at: new Date(p.at), clientID: p.client_id });
    }
    return items;
  }

  // typingUsers lists who is typing now (not expired).
  typingUsers(now = Date.now()) {
    const out = [];
    for (const [uid, exp] of this.typing) {
      if (exp > now) out.push(uid);
      else this.typing.delete(uid);
    }
    return out;
  }
}
