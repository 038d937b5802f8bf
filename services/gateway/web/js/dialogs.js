// The dialogs: create a room, browse public rooms and invitations, start
// a DM or add someone, and leaving a room.

import { $, api, state, toast } from "./core.js";
import { Room } from "./rooms.js";
import { fetchPresence, roomTitle, userName } from "./people.js";
import { renderSidebar } from "./sidebar.js";
import { loadMembers, openRoom, showEmpty } from "./chat.js";
import { newID } from "./text.js";
import { humanError } from "./wording.js";
import { ready as e2eeReady } from "./e2ee-view.js";

export function wireDialogs() {
  $("new-room-btn").addEventListener("click", () => openDialog("dlg-room"));
  $("browse-btn").addEventListener("click", openBrowse);
  $("browse-link").addEventListener("click", openBrowse);
  $("empty-browse").addEventListener("click", openBrowse);
  $("new-dm-btn").addEventListener("click", () => openUserDialog("dm"));
  $("empty-dm").addEventListener("click", () => openUserDialog("dm"));
  $("add-member-btn").addEventListener("click", () => openUserDialog("member"));
  $("leave-btn").addEventListener("click", leaveCurrent);
  for (const b of document.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  $("room-form").addEventListener("submit", createRoom);
  $("user-form").addEventListener("submit", submitUserDialog);
  $("browse-filter").addEventListener("input", renderBrowse);
  $("browse-more").addEventListener("click", morePublic);
}

function openDialog(id) {
  const d = $(id);
  for (const e of d.querySelectorAll(".form-error")) e.textContent = "";
  d.showModal();
  const first = d.querySelector("input:not([type=radio])");
  if (first) {
    first.value = "";
    first.focus();
  }
}

// The last room creation asked for: submitting the same name and kind
// again (after an error whose answer may have been lost) reuses its
// client_id, so the server answers the room it made instead of a second.
let roomIntent = { name: "", kind: "", id: "" };

async function createRoom(e) {
  e.preventDefault();
  const d = $("dlg-room");
  const name = $("room-name").value.trim();
  const kind = d.querySelector("input[name=kind]:checked").value;
  const err = d.querySelector(".form-error");
  if (!name) {
    err.textContent = "Give the room a name.";
    return;
  }
  if (roomIntent.name !== name || roomIntent.kind !== kind) {
    roomIntent = { name, kind, id: newID() };
  }
  try {
    const res = await api.createRoom(name, kind, roomIntent.id);
    roomIntent = { name: "", kind: "", id: "" };
    addRoom(res.room);
    d.close();
    openRoom(res.room.id);
  } catch (ex) {
    err.textContent = humanError(ex);
  }
}

export function addRoom(room) {
  const have = state.rooms.get(room.id);
  if (have) have.merge(room);
  else state.rooms.set(room.id, new Room(room));
  renderSidebar();
}

let publicRooms = [];
// nextPublic is the cursor of the next page of public rooms ("" at the end).
let nextPublic = "";

async function openBrowse() {
  openDialog("dlg-browse");
  const list = $("browse-list");
  const li = document.createElement("li");
  li.className = "muted";
  li.textContent = "Loading…";
  list.replaceChildren(li);
  publicRooms = [];
  nextPublic = "";
  loadInvitations();
  await morePublic();
}

// morePublic fetches the next page of public rooms (the server pages them,
// newest first) and adds it to the list.
async function morePublic() {
  try {
    const res = await api.publicRooms(nextPublic);
    publicRooms = publicRooms.concat(res.rooms || []);
    nextPublic = res.next_cursor || "";
    $("browse-more").hidden = !nextPublic;
    renderBrowse();
  } catch (ex) {
    $("dlg-browse").querySelector(".form-error").textContent = humanError(ex);
    if (!publicRooms.length) $("browse-list").replaceChildren();
  }
}

// loadInvitations shows the invitations to private rooms waiting for an
// answer, each with Accept (join the room) and Decline.
async function loadInvitations() {
  let invs = [];
  try {
    invs = (await api.invitations()).invitations || [];
  } catch (ex) {
    $("dlg-browse").querySelector(".form-error").textContent = humanError(ex);
  }
  // Name who invited: fetch the users not known yet before drawing.
  await Promise.all(
    invs
      .filter((inv) => !state.users.has(inv.invited_by))
      .map((inv) =>
        api
          .user(inv.invited_by)
          .then((res) => state.users.set(res.user.id, res.user))
          .catch(() => {}),
      ),
  );
  $("invite-section").hidden = invs.length === 0;
  $("invite-list").replaceChildren(
    ...invs.map((inv) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "browse-name";
      name.textContent = inv.room.name;
      const from = document.createElement("span");
      from.className = "muted";
      from.textContent = "from " + userName(inv.invited_by);
      const accept = document.createElement("button");
      accept.type = "button";
      accept.className = "primary small";
      accept.textContent = "Accept";
      accept.setAttribute("aria-label", "Accept " + inv.room.name);
      accept.addEventListener("click", async () => {
        try {
          const res = await api.joinRoom(inv.room.id);
          addRoom(res.room);
          $("dlg-browse").close();
          openRoom(inv.room.id);
        } catch (ex) {
          $("dlg-browse").querySelector(".form-error").textContent = humanError(ex);
        }
      });
      const decline = document.createElement("button");
      decline.type = "button";
      decline.className = "ghost small";
      decline.textContent = "Decline";
      decline.setAttribute("aria-label", "Decline " + inv.room.name);
      decline.addEventListener("click", async () => {
        try {
          await api.declineInvitation(inv.room.id);
          loadInvitations();
        } catch (ex) {
          $("dlg-browse").querySelector(".form-error").textContent = humanError(ex);
        }
      });
      li.append(name, from, accept, decline);
      return li;
    }),
  );
  return invs.length;
}

function renderBrowse() {
  const f = $("browse-filter").value.trim().toLowerCase();
  const list = $("browse-list");
  const rooms = publicRooms.filter((r) => !f || r.name.toLowerCase().includes(f)).sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  if (rooms.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = publicRooms.length ? "No room matches." : "No public rooms yet. Create the first one!";
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(
    ...rooms.map((room) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "browse-name";
      name.textContent = "# " + room.name;
      const count = document.createElement("span");
      count.className = "browse-count muted";
      if (room.member_count) count.textContent = `${room.member_count.toLocaleString()} member${room.member_count === 1 ? "" : "s"}`;
      const b = document.createElement("button");
      b.type = "button";
      const joined = state.rooms.has(room.id);
      b.className = joined ? "ghost small" : "primary small";
      b.textContent = joined ? "Open" : "Join";
      b.setAttribute("aria-label", (joined ? "Open " : "Join ") + room.name);
      b.addEventListener("click", async () => {
        try {
          if (!joined) {
            const res = await api.joinRoom(room.id);
            addRoom(res.room);
          }
          $("dlg-browse").close();
          openRoom(room.id);
        } catch (ex) {
          $("dlg-browse").querySelector(".form-error").textContent = humanError(ex);
        }
      });
      li.append(name, count, b);
      return li;
    }),
  );
}

let userMode = "dm";

function openUserDialog(mode) {
  userMode = mode;
  const r = state.rooms.get(state.current);
  const invite = mode !== "dm" && r && r.kind === "private";
  $("dlg-user-title").textContent =
    mode === "dm" ? "New direct message" : `${invite ? "Invite" : "Add"} someone to #${r ? roomTitle(r) : ""}`;
  $("user-submit").textContent = mode === "dm" ? "Start chat" : invite ? "Invite" : "Add to room";
  $("user-encrypted-row").hidden = mode !== "dm";
  openDialog("dlg-user");
}

async function submitUserDialog(e) {
  e.preventDefault();
  const d = $("dlg-user");
  const err = d.querySelector(".form-error");
  const username = $("user-name").value.trim().toLowerCase().replace(/^@/, "");
  if (!username) {
    err.textContent = "Type a username.";
    return;
  }
  try {
    const res = await api.findUser(username);
    const u = (res.users || [])[0];
    if (!u) {
      err.textContent = `Nobody is called “${username}”.`;
      return;
    }
    state.users.set(u.id, u);
    if (userMode === "dm") {
      if (u.id === state.me.id) {
        err.textContent = "That is you! Pick someone else.";
        return;
      }
      const encrypted = $("user-encrypted").checked;
      if (encrypted && !(await e2eeReady())) return;
      const dm = await api.openDM(u.id, encrypted);
      addRoom(dm.room);
      d.close();
      fetchPresence([u.id]);
      openRoom(dm.room.id);
    } else {
      const r = state.rooms.get(state.current);
      if (!r) return;
      const res = await api.addMember(r.id, u.id);
      d.close();
      // Into a private room an add is an invitation the person accepts.
      toast(`${u.display_name || u.username} was ${res.invitation ? "invited" : "added"}.`);
      loadMembers(r);
    }
  } catch (ex) {
    err.textContent = humanError(ex);
  }
}

async function leaveCurrent() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const btn = $("leave-btn");
  if (btn.dataset.armed !== "1") {
    btn.dataset.armed = "1";
    btn.textContent = "Leave for real?";
    setTimeout(() => {
      btn.dataset.armed = "0";
      btn.textContent = "Leave";
    }, 4000);
    return;
  }
  btn.dataset.armed = "0";
  btn.textContent = "Leave";
  document.body.classList.remove("menu-open");
  try {
    await api.leaveRoom(r.id);
    state.rooms.delete(r.id);
    state.current = null;
    history.pushState(null, "", "/");
    showEmpty();
  } catch (ex) {
    toast(humanError(ex));
  }
}

