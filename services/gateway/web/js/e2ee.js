// End-to-end encryption of DMs in the browser (docs/e2ee.md), the same
// bytes as the Go package api/e2ee: ECDH P-256 device keys signed by an
// ECDSA P-256 identity key, a per-message AES-256-GCM content key wrapped
// for every device of both users with HKDF-SHA256. No DOM here; it needs
// only `crypto.subtle`, so node can run it too. Private keys are
// non-extractable CryptoKeys kept in IndexedDB (keyStore below): script
// can use them, but no one can read them out of the browser.

const subtle = globalThis.crypto.subtle;
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export const VERSION = 1;
export const ALG = "p256-hkdf-sha256-a256gcm";
export const MAX_DEVICES = 8;
export const MAX_TEXT = 4000;

export function b64(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function unb64(s) {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]*$/.test(s)) throw new Error("not base64url");
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

const str = (s) => enc.encode(s);
const NUL = new Uint8Array([0]);
const ECDH = { name: "ECDH", namedCurve: "P-256" };
const ECDSA = { name: "ECDSA", namedCurve: "P-256" };

// Keys -------------------------------------------------------------------

export async function newIdentity() {
  const kp = await subtle.generateKey(ECDSA, false, ["sign", "verify"]);
  return { privateKey: kp.privateKey, public: b64(await subtle.exportKey("raw", kp.publicKey)) };
}

export async function newDevice(id) {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new Error("a device id is 1-64 of A-Z a-z 0-9 _ -");
  const kp = await subtle.generateKey(ECDH, false, ["deriveBits"]);
  return { id, privateKey: kp.privateKey, public: b64(await subtle.exportKey("raw", kp.publicKey)) };
}

const importECDH = (raw) => subtle.importKey("raw", raw, ECDH, false, []);

function deviceMessage(userID, deviceID, pub) {
  return concat(str("papo-e2ee-v1 device"), NUL, str(userID), NUL, str(deviceID), NUL, pub);
}

// signDevice returns identity's signature of a device key (r‖s, as Go's).
export async function signDevice(identity, userID, deviceID, pub) {
  const sig = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, identity.privateKey, deviceMessage(userID, deviceID, unb64(pub)));
  return b64(sig);
}

export async function verifyDevice(userID, identityKey, d) {
  try {
    const ik = await subtle.importKey("raw", unb64(identityKey), ECDSA, false, ["verify"]);
    const pub = unb64(d.public_key);
    if (pub.length !== 65 || !/^[A-Za-z0-9_-]{1,64}$/.test(d.device_id)) return false;
    await importECDH(pub); // a point of the curve
    return await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, ik, unb64(d.signature), deviceMessage(userID, d.device_id, pub));
  } catch {
    return false;
  }
}

// verifiedDevices returns the devices of a directory that its identity
// key signed.
export async function verifiedDevices(dir) {
  if (!dir.identity_key) return [];
  const out = [];
  for (const d of dir.devices || []) if (await verifyDevice(dir.user_id, dir.identity_key, d)) out.push(d);
  return out;
}

export async function safetyNumber(userA, identityA, userB, identityB) {
  if (userB < userA) [userA, identityA, userB, identityB] = [userB, identityB, userA, identityA];
  const h = new Uint8Array(await subtle.digest("SHA-256",
    concat(str("papo-e2ee-v1 safety"), NUL, str(userA), NUL, unb64(identityA), NUL, str(userB), NUL, unb64(identityB))));
  const groups = [];
  for (let i = 0; i < 6; i++) {
    let n = 0n;
    for (const b of h.slice(5 * i, 5 * i + 5)) n = (n << 8n) | BigInt(b);
    groups.push(String(n % 100000n).padStart(5, "0"));
  }
  return groups.join(" ");
}

// Sealing ----------------------------------------------------------------

async function ecdh(priv, pubRaw) {
  return new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: await importECDH(pubRaw) }, priv, 256));
}

async function kek(secret, epk, roomID, senderDevice, user, device) {
  const ikm = await subtle.importKey("raw", secret, "HKDF", false, ["deriveKey"]);
  const info = concat(str("papo-e2ee-v1 wrap"), NUL, str(roomID), NUL, str(senderDevice), NUL, str(user), NUL, str(device));
  return subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: epk, info }, ikm, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
}

const contentAAD = (roomID, senderUser, senderDevice, epk) =>
  concat(str("papo-e2ee-v1 msg"), NUL, str(roomID), NUL, str(senderUser), NUL, str(senderDevice), NUL, epk);

// seal encrypts text from device (of senderUser) in roomID for every
// recipient {user, device, public_key}. Random inputs may be given (known
// answers in tests).
export async function seal(device, senderUser, roomID, text, recipients, fixed = {}) {
  if (!text || [...text].length > MAX_TEXT) throw new Error(`text must be 1-${MAX_TEXT} characters`);
  if (recipients.length < 1 || recipients.length > 2 * MAX_DEVICES) throw new Error("wrong number of recipient devices");
  const ek = fixed.ephemeral || (await subtle.generateKey(ECDH, false, ["deriveBits"]));
  const epk = new Uint8Array(await subtle.exportKey("raw", ek.publicKey));
  const ck = fixed.contentKey || crypto.getRandomValues(new Uint8Array(32));
  const iv = fixed.iv || crypto.getRandomValues(new Uint8Array(12));
  const cKey = await subtle.importKey("raw", ck, "AES-GCM", false, ["encrypt"]);
  const ct = await subtle.encrypt({ name: "AES-GCM", iv, additionalData: contentAAD(roomID, senderUser, device.id, epk) }, cKey, str(text));
  const keys = [];
  for (const r of recipients) {
    const pub = unb64(r.public_key);
    const secret = concat(await ecdh(ek.privateKey, pub), await ecdh(device.privateKey, pub));
    const k = await kek(secret, epk, roomID, device.id, r.user, r.device);
    keys.push({ user: r.user, device: r.device, wk: b64(await subtle.encrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, k, ck)) });
  }
  return { v: VERSION, alg: ALG, device: device.id, epk: b64(epk), iv: b64(iv), ct: b64(ct), keys };
}

// open decrypts env as device of myUser; senderKey is the verified public
// key (base64url) of the sender's device. It throws on anything wrong.
export async function open(device, myUser, roomID, senderUser, senderKey, env) {
  if (!env || env.v !== VERSION || env.alg !== ALG) throw new Error("cannot decrypt");
  const mine = (env.keys || []).find((k) => k.user === myUser && k.device === device.id);
  if (!mine) throw new Error("not encrypted for this device");
  const epk = unb64(env.epk);
  const secret = concat(await ecdh(device.privateKey, epk), await ecdh(device.privateKey, unb64(senderKey)));
  const k = await kek(secret, epk, roomID, env.device, myUser, device.id);
  const ck = await subtle.decrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, k, unb64(mine.wk));
  const cKey = await subtle.importKey("raw", ck, "AES-GCM", false, ["decrypt"]);
  const pt = await subtle.decrypt({ name: "AES-GCM", iv: unb64(env.iv), additionalData: contentAAD(roomID, senderUser, env.device, epk) }, cKey, unb64(env.ct));
  return dec.decode(pt);
}
