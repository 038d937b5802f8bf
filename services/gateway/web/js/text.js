// Safe rendering of user text: everything goes through text nodes; links
// are real <a> elements built here, http(s) only, opened with no opener.

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

// appendRich appends text to parent as text nodes and links; newlines stay
// newlines (the CSS keeps white-space).
export function appendRich(parent, text) {
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let raw = m[0];
    // "see https://x.org/a." : the dot ends the sentence, not the URL.
    const trail = raw.match(TRAILING);
    if (trail) {
      // Keep a closing paren that has its opening one inside the URL.
      let cut = trail[0];
      if (cut.startsWith(")") && raw.slice(0, -cut.length).includes("(")) cut = cut.slice(1);
      raw = raw.slice(0, raw.length - cut.length);
    }
    const url = safeURL(raw);
    if (!url) continue;
    const start = m.index;
    if (start > last) parent.append(document.createTextNode(text.slice(last, start)));
    const a = document.createElement("a");
    a.href = url;
    a.textContent = raw;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    parent.append(a);
    last = start + raw.length;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

// safeURL returns the normalized URL if it is http or https, else "".
export function safeURL(raw) {
  try {
    const u = new URL(raw);
    if (u.protocol !== "http:" && u.protocol !== "https:") return "";
    return u.href;
  } catch {
    return "";
  }
}

// initials of a name, for avatars: "Ana Lima" -> "AL".
export function initials(name) {
  const parts = String(name || "?").trim().split(/[\s._-]+/).filter(Boolean);
  if (parts.length === 0) return "?";
  const first = [...parts[0]][0] || "?";
  const second = parts.length > 1 ? [...parts[parts.length - 1]][0] || "" : "";
  return (first + second).toUpperCase();
}

// hue picks one of eight avatar colours from an id, stable across reloads.
export function hue(id) {
  let h = 0;
  for (const ch of String(id)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 8;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

export function clock(date) {
  return timeFmt.format(date);
}

export function fullDate(date) {
  return fullFmt.format(date);
}

export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}

export function dayLabel(date, now = new Date()) {
  const k = dayKey(date);
  if (k === dayKey(now)) return "Today";
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (k === dayKey(y)) return "Yesterday";
  return dayFmt.format(date);
}

// ago is a short "last seen" phrase.
export function ago(date, now = Date.now()) {
  const s = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (s < 60) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  return dayFmt.format(date);
}

// newID is a client_id: random, ≤ 64 characters.
export function newID() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
