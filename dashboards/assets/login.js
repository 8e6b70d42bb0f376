// tunnelwatch sign-in page: posts the name, password and (when the account has one) the
// authenticator code to /api/v1/auth/login, then goes to the console. With no account yet it
// offers the first admin's sign-up with the setup token. Messages are set as text only.
"use strict";

const form = document.getElementById("login-form");
const message = document.getElementById("login-message");
let setupMode = false;

function show(text) {
  message.textContent = text;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  let answer = null;
  try { answer = await response.json(); } catch (_) { /* empty body */ }
  return { response, answer };
}

async function start() {
  const response = await fetch("/api/v1/auth/me", { headers: { accept: "application/json" } });
  if (response.ok) {
    const me = await response.json();
    if (me.kind === "user") { window.location.replace("/"); return; }
    if (me.setup_needed) enterSetup();
  } else {
    let answer = null;
    try { answer = await response.json(); } catch (_) { /* not JSON */ }
    if (answer && answer.code === "setup_needed") enterSetup();
  }
}

function enterSetup() {
  setupMode = true;
  document.getElementById("login-title").textContent = "Create the first admin";
  document.getElementById("setup-note").hidden = false;
  document.getElementById("setup-token-row").hidden = false;
  document.getElementById("login-button").textContent = "Create and sign in";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  show("");
  const name = document.getElementById("name").value;
  const password = document.getElementById("password").value;
  if (setupMode) {
    const setup = await post("/api/v1/auth/setup", {
      setup_token: document.getElementById("setup-token").value.trim(),
      name,
      password,
    });
    if (!setup.response.ok) {
      show(setup.answer && setup.answer.message ? setup.answer.message : "HTTP " + setup.response.status);
      return;
    }
  }
  const body = { name, password };
  const totp = document.getElementById("totp").value.trim();
  if (totp) body.totp = totp;
  const { response, answer } = await post("/api/v1/auth/login", body);
  if (response.ok) {
    window.location.replace("/");
    return;
  }
  if (answer && answer.code === "totp_required") {
    document.getElementById("totp-row").hidden = false;
    document.getElementById("totp").focus();
  }
  show(answer && answer.message ? answer.message : "HTTP " + response.status);
});

start().catch((error) => show(String(error)));
