// The login form: posts the credentials, then goes on to the page asked for.
import { showError } from "../console.js";

const form = document.querySelector("form[data-login]");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(error, null);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const response = await fetch("/login", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
    });
    if (response.ok) {
      location.assign(form.dataset.next || "/");
      return;
    }
    const data = await response.json().catch(() => ({}));
    const wait = response.headers.get("Retry-After");
    showError(error, (data.detail || `HTTP ${response.status}`) + (wait ? ` (wait ${wait} s)` : ""));
    form.querySelector("#password").select();
  } catch (problem) {
    showError(error, problem);
  } finally {
    button.disabled = false;
  }
});
