// papo's service worker: shows a Web Push as a notification, also when no
// papo tab is open, and opens the room when it is clicked. The push body
// is the notification service's JSON ({title, body, room_id, …},
// docs/notifications.md), decrypted by the browser.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));

self.addEventListener("push", (e) => {
  let d = {};
  try {
    d = e.data ? e.data.json() : {};
  } catch {
    d = { body: e.data ? e.data.text() : "" };
  }
  // Tagged by room, as the page's own notifications are: one per room.
  e.waitUntil(
    self.registration.showNotification(d.title || "papo", {
      body: d.body || "New messages",
      tag: d.room_id || "papo",
      renotify: true,
      icon: "/icon.svg",
      data: { room_id: d.room_id || "" },
    }),
  );
});

self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  const room = (e.notification.data && e.notification.data.room_id) || "";
  const path = room ? "/r/" + encodeURIComponent(room) : "/";
  e.waitUntil(
    (async () => {
      const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const w of wins) {
        if (new URL(w.url).origin !== self.location.origin) continue;
        await w.focus();
        w.postMessage({ type: "open-room", room_id: room });
        return;
      }
      await self.clients.openWindow(path);
    })(),
  );
});
