// The screens' side of end-to-end encrypted DMs (docs/e2ee.md): starting
// this browser's keys after log-in, the banner and the safety number of
// an encrypted DM, key-change notices, sealing what the composer sends.
// The keys and the cryptography are secure.js and e2ee.js.

import { $, api, state, toast } from "./core.js";
import * as secure from "./secure.js";
import { userName } from "./people.js";
import { scheduleRender } from "./app.js";

const WORDS = {
  identity_changed: (n) => `${n}'s safety number changed: they reset their keys, or someone is in between. Compare safety numbers again.`,
  device_added: (n) => `${n} added a device; it can read what you send from now on.`,
  device_removed: (n) => `${n} removed a device.`,
};

export function wireE2EE() {
  secure.on("notice", (n) => {
    const text = WORDS[n.kind](userName(n.user));
    const r = state.rooms.get(state.current);
    if (r && r.encrypted && (r.members || []).includes(n.user)) {
      r.e2eeNotice = text;
      renderE2EE(r);
    }
    toast(text);
  });
  secure.on("revealed", (ev) => {
    const r = state.rooms.get(ev.room_id);
    if (r && r.preview && r.preview.seq === ev.seq) r.preview.text = ev.text;
    scheduleRender();
  });
  $("safety-btn").addEventListener("click", async () => {
    const r = state.rooms.get(state.current);
    if (!r || !r.encrypted) return;
    try {
      const n = await secure.safetyNumber(r);
      r.e2eeNotice = n ? `Safety number: ${n}. The same number on their screen means no one is in between.` : "They have not set up encrypted DMs yet.";
      renderE2EE(r);
    } catch {
      toast("Could not fetch their keys; try again.");
    }
  });
}

// startE2EE loads or makes this browser's keys for the signed-in user.
export function startE2EE() {
  return secure.start(api, state.me);
}

// ready makes sure this browser can take part in encrypted DMs: when
// another device holds the user's identity, only a reset (with consent)
// gives this browser keys.
export async function ready() {
  if (secure.status() === "ready") return true;
  if (secure.status() !== "other-identity") {
    toast("This browser cannot do end-to-end encryption.");
    return false;
  }
  const ok = confirm(
    "Your encryption keys are on another device. Make new keys here? " +
      "Your other devices stop receiving encrypted DMs, and the people you talk to see your safety number change.",
  );
  if (!ok) return false;
  await secure.resetKeys();
  return true;
}

// renderE2EE shows an encrypted DM's banner and safety-number button.
export function renderE2EE(r) {
  $("safety-btn").hidden = !r.encrypted;
  const banner = $("e2ee-banner");
  banner.hidden = !r.encrypted;
  if (!r.encrypted) return;
  banner.textContent =
    r.e2eeNotice ||
    (secure.status() === "ready"
      ? "🔐 End-to-end encrypted: only your and their devices can read these messages."
      : "🔐 End-to-end encrypted, but this browser has no keys: open Safety number or send a message to set it up.");
}

// seal encrypts text for an encrypted DM (see secure.seal for its errors).
export async function seal(r, text) {
  if (!(await ready())) throw Object.assign(new Error("this browser has no keys for encrypted DMs"), { code: "e2ee_not_ready" });
  return secure.seal(r, text);
}
