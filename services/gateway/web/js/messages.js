// The open room's message list: a keyed reconciliation of the room's
// timeline into DOM nodes, the message and editor builders, and the
// keyboard and touch paths to a message's actions.

import { $, GROUP_GAP, MAX_TEXT, chars, socket, state } from "./core.js";
import { appendRich, clock, dayKey, dayLabel, fullDate, hue } from "./text.js";
import { setAvatar, userName } from "./people.js";
import { renderHistoryState, renderUnreadBar, scrollToBottom } from "./chat.js";
import { editFailed, sendOp, transmit } from "./composer.js";

// renderMessages reconciles #messages with the room's view: elements are
// keyed and rebuilt only when what they show changed, so scrolling,
// focus and an edit in progress survive new events.
export function renderMessages() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const box = $("messages");
  const sc = $("scroller");
  const atBottom = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 60;
  const items = r.view();
  const wanted = [];
  let prev = null;
  let prevDay = "";
  let markShown = false;
  for (const it of items) {
    const day = dayKey(it.at);
    if (day !== prevDay) {
      wanted.push({ key: "d:" + day, sig: dayLabel(it.at), build: () => buildDay(it.at) });
      prevDay = day;
      prev = null;
    }
    if (!markShown && state.unreadMark && it.seq > state.unreadMark && it.kind === "msg" && !it.pending && it.sender !== state.me.id) {
      wanted.push({ key: "u", sig: "u", build: buildUnreadMark });
      markShown = true;
      prev = null;
    }
    if (it.kind === "sys") {
      const who = it.user === state.me.id ? "You" : userName(it.user);
      const text = `${who} ${it.type === "member_joined" ? "joined" : "left"}`;
      wanted.push({ key: "s:" + it.seq, sig: text, build: () => buildSys(it, text) });
      prev = null;
      continue;
    }
    const sender = it.pending ? state.me.id : it.sender;
    const grouped = !!prev && prev.sender === sender && it.at - prev.at < GROUP_GAP && !prev.deleted;
    const mine = sender === state.me.id;
    const name = mine ? "You" : userName(sender);
    const editing = !it.pending && r.editing === it.seq;
    const pstate = it.pending ? it.pending.state : "sent";
    const sig = [name, it.text, it.edited, it.deleted, grouped, editing, pstate, socket.online, it.pending?.error || ""].join("\u0001");
    const key = it.pending ? "p:" + it.clientID : "m:" + it.seq;
    wanted.push({ key, sig, build: () => buildMessage(r, it, { mine, name, grouped, editing, pstate, sender }) });
    prev = { sender, at: it.at, deleted: it.deleted };
  }

  const existing = new Map();
  for (const el of box.children) existing.set(el.dataset.key, el);
  const keep = new Set();
  let cursor = box.firstElementChild;
  for (const w of wanted) {
    let el = existing.get(w.key);
    if (!el || el.dataset.sig !== w.sig) {
      const fresh = w.build();
      fresh.dataset.key = w.key;
      fresh.dataset.sig = w.sig;
      if (el) {
        el.replaceWith(fresh);
        if (cursor === el) cursor = fresh;
      }
      el = fresh;
    }
    keep.add(w.key);
    if (el !== cursor) box.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const [k, el] of existing) {
    if (!keep.has(k)) el.remove();
  }
  renderHistoryState(r);
  renderUnreadBar();
  if (atBottom) scrollToBottom();
  else if (items.length && r.lastSeq > r.readSeq) $("jump-btn").hidden = false;
  const ed = box.querySelector("textarea.edit-box");
  if (ed && document.activeElement !== ed && ed.dataset.fresh === "1") {
    ed.dataset.fresh = "0";
    ed.focus();
    ed.setSelectionRange(ed.value.length, ed.value.length);
  }
}

function buildDay(at) {
  const el = document.createElement("div");
  el.className = "day";
  el.setAttribute("role", "separator");
  const s = document.createElement("span");
  s.textContent = dayLabel(at);
  el.append(s);
  return el;
}

function buildUnreadMark() {
  const el = document.createElement("div");
  el.className = "unread-mark";
  el.setAttribute("role", "separator");
  const s = document.createElement("span");
  s.textContent = "New messages";
  el.append(s);
  return el;
}

function buildSys(it, text) {
  const el = document.createElement("div");
  el.className = "sys";
  el.dataset.seq = String(it.seq);
  el.textContent = text;
  const t = document.createElement("time");
  t.dateTime = it.at.toISOString();
  t.textContent = " · " + clock(it.at);
  el.append(t);
  return el;
}

function buildMessage(r, it, o) {
  const el = document.createElement("article");
  el.className = "msg " + (o.mine ? "mine" : "theirs") + (o.grouped ? " grouped" : "");
  el.dataset.state = o.pstate === "sent" && it.pending ? "sent" : it.pending ? o.pstate : "confirmed";
  if (!socket.online && it.pending && o.pstate === "sending") el.dataset.state = "queued";
  if (it.seq) el.dataset.seq = String(it.seq);
  if (it.clientID) el.dataset.clientId = it.clientID;
  if (it.deleted) el.classList.add("deleted");
  el.setAttribute("aria-label", `${o.name}, ${clock(it.at)}`);
  el.tabIndex = -1; // reached with the arrow keys in the list, not with Tab

  if (!o.mine) {
    const av = document.createElement("span");
    av.className = "avatar";
    av.setAttribute("aria-hidden", "true");
    if (!o.grouped) setAvatar(av, o.sender, o.name);
    else av.classList.add("spacer");
    el.append(av);
  }
  const body = document.createElement("div");
  body.className = "msg-body";
  if (!o.grouped) {
    const meta = document.createElement("div");
    meta.className = "meta";
    if (!o.mine && r.kind !== "dm") {
      const a = document.createElement("span");
      a.className = "author hue-text-" + hue(o.sender);
      a.textContent = o.name;
      meta.append(a);
    }
    const t = document.createElement("time");
    t.dateTime = it.at.toISOString();
    t.title = fullDate(it.at);
    t.textContent = clock(it.at);
    meta.append(t);
    body.append(meta);
  } else {
    // A follow-on message shows its time on hover and focus.
    const t = document.createElement("time");
    t.className = "hover-time";
    t.dateTime = it.at.toISOString();
    t.title = fullDate(it.at);
    t.textContent = clock(it.at);
    body.append(t);
  }
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  if (it.deleted) {
    bubble.textContent = "This message was deleted.";
  } else if (o.editing) {
    bubble.append(buildEditor(r, it));
  } else {
    const p = document.createElement("p");
    p.className = "text";
    const words = document.createElement("span");
    words.className = "t";
    appendRich(words, it.text);
    p.append(words);
    if (it.edited) {
      const ed = document.createElement("span");
      ed.className = "edited";
      ed.textContent = "(edited)";
      p.append(ed);
    }
    bubble.append(p);
  }
  body.append(bubble);

  if (it.pending) {
    const st = document.createElement("div");
    st.className = "status";
    if (o.pstate === "failed") {
      st.classList.add("failed");
      st.setAttribute("role", "alert");
      st.append(document.createTextNode("Not sent: " + (it.pending.error || "no answer from the server.") + " "));
      const links = [];
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "link";
      edit.textContent = "Edit";
      edit.setAttribute("aria-label", "Edit the message that was not sent");
      edit.addEventListener("click", () => editFailed(r, it.pending));
      links.push(edit);
      if (!it.pending.final) {
        // A refusal for what the text is fails again as it is: no Retry.
        const retry = document.createElement("button");
        retry.type = "button";
        retry.className = "link";
        retry.textContent = "Retry";
        retry.addEventListener("click", () => {
          it.pending.state = "sending";
          it.pending.error = "";
          transmit(r, it.pending);
          renderMessages();
        });
        links.push(retry);
      }
      const discard = document.createElement("button");
      discard.type = "button";
      discard.className = "link";
      discard.textContent = "Discard";
      discard.addEventListener("click", () => {
        r.pending.delete(it.pending.client_id);
        renderMessages();
      });
      links.push(discard);
      links.forEach((l, i) => {
        if (i) st.append(document.createTextNode(" · "));
        st.append(l);
      });
    } else if (o.pstate === "sent") {
      st.textContent = "Sent";
    } else {
      st.textContent = socket.online ? "Sending…" : "Waiting for connection…";
    }
    body.append(st);
  }

  if (o.mine && !it.pending && !it.deleted && !o.editing) {
    const actions = document.createElement("div");
    actions.className = "actions";
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "act";
    edit.textContent = "Edit";
    edit.setAttribute("aria-label", "Edit message");
    edit.tabIndex = -1;
    edit.addEventListener("click", () => startEdit(r, it.seq));
    const del = document.createElement("button");
    del.type = "button";
    del.className = "act danger";
    del.textContent = "Delete";
    del.setAttribute("aria-label", "Delete message");
    del.tabIndex = -1;
    del.addEventListener("click", () => armDelete(r, it.seq, del));
    actions.append(edit, del);
    body.append(actions);
  }
  el.append(body);
  return el;
}

function buildEditor(r, it) {
  const wrap = document.createElement("div");
  wrap.className = "editor";
  const ta = document.createElement("textarea");
  ta.className = "edit-box";
  ta.value = it.text;
  ta.rows = 2;
  ta.dataset.fresh = "1";
  ta.setAttribute("aria-label", "Edit message");
  const count = document.createElement("span");
  count.className = "counter";
  const recount = () => renderCount(count, chars(ta.value));
  ta.addEventListener("input", recount);
  const save = () => {
    const text = ta.value;
    if (!text.trim()) return;
    if (chars(text) > MAX_TEXT) {
      recount();
      ta.focus();
      return;
    }
    if (text !== it.text) sendOp(r, "edit", it.seq, text);
    r.editing = 0;
    renderMessages();
    $("composer").focus();
  };
  const cancel = () => {
    r.editing = 0;
    renderMessages();
    $("composer").focus();
  };
  ta.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save();
    } else if (e.key === "Escape") {
      e.preventDefault();
      cancel();
    }
  });
  const row = document.createElement("div");
  row.className = "editor-row";
  const hint = document.createElement("span");
  hint.textContent = "Enter to save · Esc to cancel";
  const bCancel = document.createElement("button");
  bCancel.type = "button";
  bCancel.className = "ghost small";
  bCancel.textContent = "Cancel";
  bCancel.addEventListener("click", cancel);
  const bSave = document.createElement("button");
  bSave.type = "button";
  bSave.className = "primary small";
  bSave.textContent = "Save";
  bSave.addEventListener("click", save);
  row.append(hint, count, bCancel, bSave);
  wrap.append(ta, row);
  return wrap;
}

export function startEdit(r, seq) {
  r.editing = seq;
  renderMessages();
}


// armDelete deletes on the second press within 4 s.
function armDelete(r, seq, btn) {
  if (btn.dataset.armed === "1") {
    sendOp(r, "delete", seq, "");
    return;
  }
  btn.dataset.armed = "1";
  btn.textContent = "Really delete?";
  setTimeout(() => {
    btn.dataset.armed = "0";
    btn.textContent = "Delete";
  }, 4000);
}

// renderCount shows "n/4000" near the limit, red and explained over it.
export function renderCount(el, n) {
  el.textContent = n > MAX_TEXT ? `${n.toLocaleString("en")}/4,000: ${(n - MAX_TEXT).toLocaleString("en")} over the limit` : n > MAX_TEXT - 500 ? `${n}/4,000` : "";
  el.classList.toggle("over", n > MAX_TEXT);
}

// wireMessages: a tap (or click) on an own message shows its Edit and
// Delete, large enough for a finger; in the list, ↑/↓ move between
// messages, and on an own one E edits and Delete deletes (twice).
export function wireMessages() {
  const box = $("messages");
  box.addEventListener("click", (e) => {
    if (e.target.closest("button, a, textarea")) return;
    const msg = e.target.closest(".msg.mine");
    for (const m of box.querySelectorAll(".msg.open")) if (m !== msg) m.classList.remove("open");
    if (msg && msg.querySelector(".actions") && !String(window.getSelection() || "")) msg.classList.toggle("open");
  });
  $("scroller").addEventListener("keydown", (e) => {
    const r = state.rooms.get(state.current);
    if (!r) return;
    const msgs = [...box.querySelectorAll(".msg")];
    const at = msgs.indexOf(document.activeElement);
    if (e.key === "ArrowUp" || e.key === "ArrowDown") {
      if (!msgs.length) return;
      e.preventDefault();
      const next = at < 0 ? msgs.length - 1 : Math.max(0, Math.min(msgs.length - 1, at + (e.key === "ArrowUp" ? -1 : 1)));
      msgs[next].focus();
      return;
    }
    const el = msgs[at];
    if (!el || !el.classList.contains("mine") || !el.dataset.seq) return;
    if (e.key === "e" || e.key === "E") {
      e.preventDefault();
      startEdit(r, Number(el.dataset.seq));
    } else if (e.key === "Delete") {
      const del = el.querySelector(".act.danger");
      if (del) {
        e.preventDefault();
        armDelete(r, Number(el.dataset.seq), del);
      }
    }
  });
}
