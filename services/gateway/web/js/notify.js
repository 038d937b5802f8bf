// Hearing about messages when away: a system notification (Notification
// API) and an optional sound for a message from someone else in a room
// not in view, per the room's notification mode (all, mentions, none —
// the same setting the notification service uses for pushes, so changing
// it here changes both). Permission is asked from a banner the first
// time a message arrives that would have notified, never on load.

import { $, api, state, toast } from "./core.js";
import { roomTitle, userName } from "./people.js";
import { openRoom } from "./chat.js";
import { humanError } from "./wording.js";
import { enablePush } from "./push.js";

const MODE_KEY = "papo.notify."; // + room id: the mode last set here
const SOUND_KEY = "papo.sound"; // "off" silences the sound
const ASKED_KEY = "papo.notify.asked"; // the banner was answered

function store(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* storage disabled: defaults apply */
  }
}

function load(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

// modeOf is the room's notification mode as last set from this browser
// (the server has no read of it): "all" unless changed.
export function modeOf(r) {
  const m = load(MODE_KEY + r.id);
  return m === "mentions" || m === "none" ? m : "all";
}

async function setMode(r, mode) {
  const was = modeOf(r);
  store(MODE_KEY + r.id, mode === "all" ? null : mode);
  try {
    await api.setNotifications(r.id, mode);
  } catch (ex) {
    store(MODE_KEY + r.id, was === "all" ? null : was);
    $("notify-mode").value = was;
    toast("Could not change notifications: " + humanError(ex));
  }
}

export function soundOn() {
  return load(SOUND_KEY) !== "off";
}

// mentions reports whether text names the user as @username (a word).
export function mentions(text, username) {
  if (!username) return false;
  const esc = username.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&");
  return new RegExp(`(^|[^\\w@.])@${esc}(?![\\w-]|\\.\\w)`, "i").test(text || "");
}

// inView: the person is looking at this room now.
function inView(r) {
  return r.id === state.current && document.visibilityState === "visible" && document.hasFocus() && !$("chat-room").hidden;
}

// notifyEvent is called for every new message from someone else.
export function notifyEvent(r, e) {
  if (inView(r)) return;
  const mode = modeOf(r);
  if (mode === "none") return;
  if (mode === "mentions" && !mentions(e.text, state.me?.username)) return;
  if (soundOn()) ping();
  const title = r.kind === "dm" ? userName(e.sender_id) : `${userName(e.sender_id)} in #${roomTitle(r)}`;
  const body = (e.text || "").length > 140 ? [...e.text].slice(0, 140).join("") + "…" : e.text || "";
  if (!("Notification" in window)) return;
  if (Notification.permission === "granted") {
    const n = new Notification(title, { body, tag: r.id, renotify: true, icon: "/icon.svg" });
    n.onclick = () => {
      window.focus();
      openRoom(r.id);
      n.close();
    };
  } else if (Notification.permission === "default" && !load(ASKED_KEY)) {
    $("notify-prompt").hidden = false;
  }
}

let audio = null;

// ping plays a short two-tone chime (Web Audio; no file to fetch).
function ping() {
  try {
    audio ||= new AudioContext();
    if (audio.state === "suspended") audio.resume().catch(() => {});
    const t = audio.currentTime;
    for (const [f, at] of [
      [880, 0],
      [1320, 0.09],
    ]) {
      const o = audio.createOscillator();
      const g = audio.createGain();
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, t + at);
      g.gain.exponentialRampToValueAtTime(0.12, t + at + 0.01);
      g.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.18);
      o.connect(g).connect(audio.destination);
      o.start(t + at);
      o.stop(t + at + 0.2);
    }
  } catch {
    /* no audio: the notification still shows */
  }
}

export function wireNotify() {
  $("notify-mode").addEventListener("change", (e) => {
    const r = state.rooms.get(state.current);
    if (r) setMode(r, e.target.value);
  });
  $("notify-on").addEventListener("click", async () => {
    store(ASKED_KEY, "1");
    $("notify-prompt").hidden = true;
    try {
      const p = await Notification.requestPermission();
      if (p !== "granted") {
        toast("Notifications stay off; your browser settings can change that.");
        return;
      }
      const push = await enablePush();
      toast(push === "on" ? "Notifications are on, also when papo is closed." : "Notifications are on while papo is open.");
    } catch {
      /* an old browser */
    }
  });
  $("notify-later").addEventListener("click", () => {
    store(ASKED_KEY, "1");
    $("notify-prompt").hidden = true;
  });
  const sound = $("sound-toggle");
  sound.checked = soundOn();
  sound.addEventListener("change", () => store(SOUND_KEY, sound.checked ? null : "off"));
}
