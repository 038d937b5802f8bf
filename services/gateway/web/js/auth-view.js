// The log-in / create-account screen.

import { $, api } from "./core.js";
import { enterApp, setView } from "./app.js";
import { humanError } from "./wording.js";

let authMode = "login";

export function wireAuth() {
  $("tab-login").addEventListener("click", () => setAuthMode("login"));
  $("tab-register").addEventListener("click", () => setAuthMode("register"));
  for (const id of ["tab-login", "tab-register"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        const next = authMode === "login" ? "register" : "login";
        setAuthMode(next);
        $(next === "login" ? "tab-login" : "tab-register").focus();
      }
    });
  }
  $("auth-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("auth-username").value.trim().toLowerCase();
    const password = $("auth-password").value;
    const display = $("auth-display").value.trim();
    const err = $("auth-error");
    err.textContent = "";
    if (!/^[a-z0-9_.-]{3,32}$/.test(username)) {
      err.textContent = "Usernames are 3–32 characters: lowercase letters, digits, _ . -";
      $("auth-username").focus();
      return;
    }
    if (password.length < 8) {
      err.textContent = "Passwords have at least 8 characters.";
      $("auth-password").focus();
      return;
    }
    const btn = $("auth-submit");
    btn.disabled = true;
    btn.setAttribute("aria-busy", "true");
    try {
      if (authMode === "register") await api.register(username, password, display);
      await api.login(username, password);
      $("auth-password").value = "";
      await enterApp({ announce: true });
    } catch (ex) {
      err.textContent = humanError(ex);
    } finally {
      btn.disabled = false;
      btn.removeAttribute("aria-busy");
    }
  });
}

function setAuthMode(mode) {
  authMode = mode;
  const reg = mode === "register";
  $("tab-login").setAttribute("aria-selected", String(!reg));
  $("tab-register").setAttribute("aria-selected", String(reg));
  $("tab-login").tabIndex = reg ? -1 : 0;
  $("tab-register").tabIndex = reg ? 0 : -1;
  $("display-row").hidden = !reg;
  $("username-hint").hidden = !reg;
  $("auth-password").autocomplete = reg ? "new-password" : "current-password";
  $("auth-submit").textContent = reg ? "Create account" : "Log in";
  $("auth-error").textContent = "";
}

export function showAuth(message) {
  setView("auth");
  setAuthMode(authMode);
  $("auth-error").textContent = message || "";
  $("auth-username").focus();
}
