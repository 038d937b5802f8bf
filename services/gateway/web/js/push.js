// Web Push: the service worker (sw.js) is registered at log-in; once
// notifications are permitted, the browser's push subscription (with the
// VAPID key papo serves) is registered as a `webpush` device with the
// notification service, so messages reach this browser with no papo tab
// open. Log-out deletes the device and drops the subscription. Any step a
// browser cannot do (no push service, no VAPID key configured) leaves the
// in-page notifications alone.

import { api, state } from "./core.js";
import { openRoom } from "./chat.js";

const DEVICE_KEY = "papo.device"; // the id of this browser's webpush device

function b64url(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

export async function registerWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    const reg = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    navigator.serviceWorker.addEventListener("message", (e) => {
      if (e.data?.type === "open-room" && e.data.room_id && state.rooms.has(e.data.room_id)) openRoom(e.data.room_id);
    });
    return reg;
  } catch {
    return null;
  }
}

// enablePush subscribes and registers the device; it answers what came
// of it: "on", "unsupported", "denied", "unavailable" (no VAPID key on
// the server) or "failed" (the browser's push service refused).
export async function enablePush() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return "unsupported";
  if (Notification.permission !== "granted") return "denied";
  let key;
  try {
    key = (await api.webPushKey()).public_key;
  } catch {
    return "unavailable";
  }
  try {
    const reg = await navigator.serviceWorker.ready;
    let sub = await reg.pushManager.getSubscription();
    if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64url(key) });
    const j = sub.toJSON();
    const res = await api.addDevice({ platform: "webpush", subscription: { endpoint: j.endpoint, keys: j.keys } });
    localStorage.setItem(DEVICE_KEY, res.device.id);
    return "on";
  } catch {
    return "failed";
  }
}

// disablePush forgets this browser's device and subscription (log-out).
export async function disablePush() {
  try {
    const id = localStorage.getItem(DEVICE_KEY);
    localStorage.removeItem(DEVICE_KEY);
    if (id) await api.deleteDevice(id);
    const reg = await navigator.serviceWorker?.getRegistration("/");
    const sub = await reg?.pushManager.getSubscription();
    if (sub) await sub.unsubscribe();
  } catch {
    /* the session ends anyway; a stale device is removed on its first 404/410 */
  }
}
