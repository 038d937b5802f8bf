// The web client's end-to-end encrypted DMs (docs/e2ee.md): this
// browser's keys, kept in IndexedDB as non-extractable CryptoKeys; the
// peers' verified key directories; the identity keys pinned on first
// sight (a change is a notice); sealing sends and revealing events. The
// cryptography is e2ee.js; no DOM here.

import * as e2ee from "./e2ee.js";

const DB = "papo-e2ee";
const LOCKED = "🔒 Encrypted message";

const s = {
  api: null,
  me: null,
  identity: null, // {privateKey, public}
  device: null, // {id, privateKey, public}
  status: "off", // "ready" | "other-identity" (another device holds the user's identity) | "unsupported" | "off"
  known: new Map(), // user -> Map(device id -> public key), every device ever verified
  current: new Map(), // user -> [{user, device, public_key}] as last fetched
  pinned: new Map(), // user -> identity key
  inflight: new Map(), // user -> promise of a refresh under way, shared by concurrent callers
};

const listeners = { notice: [], revealed: [] };
export const on = (what, fn) => listeners[what].push(fn);
const emit = (what, ...args) => listeners[what].forEach((fn) => fn(...args));

export const status = () => s.status;

function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore("keys");
      req.result.createObjectStore("pins");
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function idb(store, mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(store, mode);
    const req = fn(tx.objectStore(store));
    tx.oncomplete = () => resolve(req && req.result);
    tx.onerror = () => reject(tx.error);
  });
}

async function publish(replace) {
  const sig = await e2ee.signDevice(s.identity, s.me.id, s.device.id, s.device.public);
  await s.api.call("PUT", `/api/v1/users/${encodeURIComponent(s.me.id)}/keys/devices/${s.device.id}`, {
    identity_key: s.identity.public,
    public_key: s.device.public,
    signature: sig,
    replace_identity: replace || undefined,
  });
}

// start loads (or makes) this browser's keys for user and publishes the
// device key; with another identity in the directory it waits for
// resetKeys (this browser cannot sign for that identity).
export async function start(api, user) {
  s.api = api;
  s.me = user;
  if (!globalThis.indexedDB || !globalThis.crypto || !crypto.subtle) {
    s.status = "unsupported";
    return s.status;
  }
  try {
    let keys = await idb("keys", "readonly", (st) => st.get(user.id));
    if (!keys) {
      const id = new Uint8Array(4);
      crypto.getRandomValues(id);
      keys = {
        identity: await e2ee.newIdentity(),
        device: await e2ee.newDevice("web-" + Array.from(id, (b) => b.toString(16).padStart(2, "0")).join("")),
      };
      await idb("keys", "readwrite", (st) => st.put(keys, user.id));
    }
    s.identity = keys.identity;
    s.device = keys.device;
    for (const [k, v] of await allPins()) s.pinned.set(k, v);
    const dir = await directory(user.id);
    if (dir.identity_key && dir.identity_key !== s.identity.public) {
      s.status = "other-identity";
      return s.status;
    }
    if (!(dir.devices || []).some((d) => d.device_id === s.device.id && d.public_key === s.device.public)) await publish(false);
    s.status = "ready";
  } catch (err) {
    console.warn("e2ee: start", err);
    s.status = "off";
  }
  return s.status;
}

async function allPins() {
  const d = await db();
  return new Promise((resolve, reject) => {
    const out = [];
    const req = d.transaction("pins").objectStore("pins").openCursor();
    req.onsuccess = () => {
      const c = req.result;
      if (!c) return resolve(out.filter(([k]) => k.startsWith(s.me.id + "/")).map(([k, v]) => [k.slice(s.me.id.length + 1), v]));
      out.push([c.key, c.value]);
      c.continue();
    };
    req.onerror = () => reject(req.error);
  });
}

// resetKeys gives the user a new identity held by this browser: the
// devices the old one signed leave the directory, and peers see the
// safety number change.
export async function resetKeys() {
  s.identity = await e2ee.newIdentity();
  await idb("keys", "readwrite", (st) => st.put({ identity: s.identity, device: s.device }, s.me.id));
  await publish(true);
  s.status = "ready";
}

const directory = (userID) => s.api.call("GET", `/api/v1/users/${encodeURIComponent(userID)}/keys`);

// refresh fetches and verifies userID's directory and notices what
// changed: a new identity key (pinned, and the safety number changes), a
// device added or removed.
export function refresh(userID) {
  if (s.inflight.has(userID)) return s.inflight.get(userID);
  const p = (async () => {
    const dir = await directory(userID);
    const good = await e2ee.verifiedDevices(dir);
    const pinned = s.pinned.get(userID);
    if (dir.identity_key && pinned !== dir.identity_key) {
      if (pinned && userID !== s.me.id) emit("notice", { user: userID, kind: "identity_changed" });
      s.pinned.set(userID, dir.identity_key);
      await idb("pins", "readwrite", (st) => st.put(dir.identity_key, s.me.id + "/" + userID));
    }
    const before = s.current.get(userID);
    const now = good.map((d) => ({ user: userID, device: d.device_id, public_key: d.public_key }));
    if (before && userID !== s.me.id) {
      for (const d of now) if (!before.some((b) => b.device === d.device)) emit("notice", { user: userID, kind: "device_added", device: d.device });
      for (const b of before) if (!now.some((d) => d.device === b.device)) emit("notice", { user: userID, kind: "device_removed", device: b.device });
    }
    s.current.set(userID, now);
    const known = s.known.get(userID) || new Map();
    for (const d of now) known.set(d.device, d.public_key);
    s.known.set(userID, known);
    return now;
  })().finally(() => s.inflight.delete(userID));
  s.inflight.set(userID, p);
  return p;
}

const peerOf = (room) => (room.members || []).find((m) => m !== s.me.id) || "";

// seal encrypts text for an encrypted DM, for every current device of
// both users. An Error with code "peer_has_no_keys" says the peer has not
// set up encryption yet.
export async function seal(room, text) {
  if (s.status !== "ready") throw Object.assign(new Error("this browser has no keys for encrypted DMs"), { code: "e2ee_not_ready" });
  const peer = peerOf(room);
  const [mine, theirs] = await Promise.all([refresh(s.me.id), refresh(peer)]);
  if (!theirs.length) throw Object.assign(new Error("the other person has not set up encrypted DMs yet"), { code: "peer_has_no_keys" });
  return e2ee.seal(s.device, s.me.id, room.id, text, mine.concat(theirs));
}

// reveal gives an encrypted event a stand-in text at once, and its text
// when decrypted (then "revealed" listeners run).
export function reveal(ev) {
  if (!ev || !ev.e2ee || ev.revealing) return;
  ev.revealing = true;
  ev.text = LOCKED + "…";
  ev.locked = true;
  (async () => {
    try {
      ev.text = await open(ev);
      ev.locked = false;
    } catch {
      ev.text = LOCKED + " — not for this device (sent before it was set up, or after it was removed)";
    }
    emit("revealed", ev);
  })();
}

async function open(ev) {
  if (!s.device) throw new Error("no device key");
  const known = () => s.known.get(ev.sender_id)?.get(ev.e2ee.device);
  if (!known()) await refresh(ev.sender_id);
  const key = known();
  if (!key) throw new Error("unknown sender device");
  return e2ee.open(s.device, s.me.id, ev.room_id, ev.sender_id, key, ev.e2ee);
}

// safetyNumber is the DM's safety number, from the pinned identity keys.
export async function safetyNumber(room) {
  const peer = peerOf(room);
  await refresh(peer);
  const theirs = s.pinned.get(peer);
  if (!theirs || !s.identity) return "";
  return e2ee.safetyNumber(s.me.id, s.identity.public, peer, theirs);
}
