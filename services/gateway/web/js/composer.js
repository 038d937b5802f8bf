// The composer: typing signals, the character counter and its limit,
// sending (pending sends with their client_id, acks and their timeout),
// edits and deletes, and taking back a refused send to edit it.

import { $, ACK_TIMEOUT, MAX_TEXT, TYPING_SEND_EVERY, chars, socket, state, toast } from "./core.js";
import { newID } from "./text.js";
import { userName } from "./people.js";
import { renderMessages, renderCount, startEdit } from "./messages.js";
import { scrollToBottom } from "./chat.js";
import { humanError } from "./wording.js";
import { seal } from "./e2ee-view.js";

export function wireComposer() {
  const composer = $("composer");
  composer.addEventListener("keydown", onComposerKey);
  composer.addEventListener("input", () => {
    autoGrow(composer);
    renderCounter();
    if (composer.value.trim()) sendTyping();
  });
  $("composer-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendComposer();
  });
  // Tapping Send must not take the focus (and, on a phone, the keyboard)
  // away from the composer: the button never takes focus from a pointer.
  $("send-btn").addEventListener("pointerdown", (e) => {
    if (document.activeElement === composer) e.preventDefault();
  });
  $("send-btn").addEventListener("mousedown", (e) => {
    if (document.activeElement === composer) e.preventDefault();
  });
}

export function renderTyping() {
  const r = state.rooms.get(state.current);
  const el = $("typing");
  if (!r) return;
  const who = r.typingUsers().map(userName);
  let text = "";
  if (who.length === 1) text = `${who[0]} is typing…`;
  else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) text = "Several people are typing…";
  if (el.textContent !== text) el.textContent = text;
  el.classList.toggle("on", text !== "");
}

function sendTyping() {
  const now = Date.now();
  if (!state.current || now - state.lastTypingSent < TYPING_SEND_EVERY) return;
  if (socket.send({ type: "typing", room_id: state.current })) state.lastTypingSent = now;
}

function onComposerKey(e) {
  const ta = e.currentTarget;
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendComposer();
    return;
  }
  if (e.key === "ArrowUp" && ta.value === "") {
    const r = state.rooms.get(state.current);
    if (!r) return;
    const mine = r.view().filter((it) => it.kind === "msg" && !it.pending && !it.deleted && it.sender === state.me.id);
    if (mine.length) {
      e.preventDefault();
      startEdit(r, mine[mine.length - 1].seq);
    }
  }
}

export function sendComposer() {
  const ta = $("composer");
  const r = state.rooms.get(state.current);
  // Blank lines around the message are never meant.
  const text = ta.value.replace(/^(\s*\n)+/, "").replace(/\s+$/, "");
  ta.focus();
  if (!r || !text.trim()) return;
  if (chars(text) > MAX_TEXT) {
    // Nothing is cut: the text stays, and the counter says by how much.
    renderCounter();
    return;
  }
  const p = { client_id: newID(), text, state: "sending", seq: 0, error: "", at: Date.now() };
  r.pending.set(p.client_id, p);
  ta.value = "";
  r.draft = "";
  autoGrow(ta);
  renderCounter();
  transmit(r, p);
  renderMessages();
  scrollToBottom();
}

// transmit sends (or re-sends, same client_id) a pending message; if no
// socket is up it waits for the next hello.
export function transmit(r, p) {
  p.held = false;
  if (r.encrypted && !p.e2ee) {
    // Sealed once: a retry sends the same envelope with the same client_id.
    seal(r, p.text).then(
      (env) => transmit(r, Object.assign(p, { e2ee: env })),
      (err) => refuse(r, p, { code: err.code || "e2ee_failed", message: err.message }),
    );
    return;
  }
  const frame = { type: "send", room_id: r.id, client_id: p.client_id };
  if (p.e2ee) frame.e2ee = p.e2ee;
  else frame.text = p.text;
  const ok = socket.send(frame);
  clearTimeout(state.ackTimers.get(p.client_id));
  if (!ok) return;
  state.ackTimers.set(
    p.client_id,
    setTimeout(() => {
      state.ackTimers.delete(p.client_id);
      if (p.state === "sending") {
        p.state = "failed";
        p.error = "no answer from the server.";
        if (r.id === state.current) renderMessages();
      }
    }, ACK_TIMEOUT),
  );
}

// refuse marks a pending send refused by the server, in words.
export function refuse(r, p, frame) {
  p.state = "failed";
  p.error = humanError(frame);
  // Refused for what the text is: the same text fails again.
  p.final = ["invalid_text", "text_too_long", "not_a_member", "not_member", "room_not_found", "dm_closed"].includes(frame.code);
  if (r.id === state.current) renderMessages();
}

// editFailed takes a send that did not go back into the composer, to be
// changed and sent again (as a new message).
export function editFailed(r, p) {
  r.pending.delete(p.client_id);
  const ta = $("composer");
  const draft = ta.value.trim();
  ta.value = draft ? p.text + "\n" + draft : p.text;
  autoGrow(ta);
  renderCounter();
  renderMessages();
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
}

export async function sendOp(r, type, targetSeq, text) {
  const id = newID();
  const frame = { type, room_id: r.id, client_id: id, target_seq: targetSeq };
  if (type === "edit" && r.encrypted) {
    try {
      frame.e2ee = await seal(r, text);
    } catch (err) {
      toast(humanError(err));
      return;
    }
  } else if (type === "edit") frame.text = text;
  if (!socket.send(frame)) {
    toast("You are offline; try again when papo reconnects.");
    return;
  }
  state.ops.set(id, r.id);
}

export function autoGrow(ta) {
  ta.style.height = "auto";
  ta.style.height = Math.min(ta.scrollHeight, 200) + "px";
}

// renderCounter shows the count near and over the limit; over it, Send is
// disabled and the composer is marked invalid.
export function renderCounter() {
  const ta = $("composer");
  const n = chars(ta.value);
  renderCount($("counter"), n);
  const over = n > MAX_TEXT;
  $("send-btn").disabled = over;
  ta.setAttribute("aria-invalid", String(over));
  const r = state.rooms.get(state.current);
  if (r) r.draft = ta.value;
}
