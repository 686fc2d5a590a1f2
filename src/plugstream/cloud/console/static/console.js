// PlugStream Cloud console: what every page shares. An ES module, no dependencies.
// Pages read and write through the REST API (/api/v1) with the session cookie; every
// unsafe request carries the session's CSRF token in X-CSRF-Token.

const body = document.body;

/** The logged-in operator, from the page's data- attributes. */
export const session = {
  user: body.dataset.user || null,
  role: body.dataset.role || null,
  csrf: body.dataset.csrf || "",
  get canWrite() { return this.role === "admin" || this.role === "operator"; },
  get isAdmin() { return this.role === "admin"; },
};

export const API = "/api/v1";

/** An answer of the API that was not 2xx: its status and its reason (``detail``). */
export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

/**
 * Call the REST API: ``path`` "stations" is /api/v1/stations; one starting with "/" is taken as it is.
 * ``body``: an object is sent as JSON; a Blob/File/ArrayBuffer as application/octet-stream.
 * Returns the parsed JSON (or text, or null for 204); throws ApiError on 4xx/5xx.
 */
export async function api(path, { method = "GET", body: payload, query, headers = {}, raw = false } = {}) {
  let url = path.startsWith("/") ? path : `${API}/${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") params.append(k, v);
    }
    const text = params.toString();
    if (text) url += (url.includes("?") ? "&" : "?") + text;
  }
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (!["GET", "HEAD"].includes(method)) init.headers["X-CSRF-Token"] = session.csrf;
  if (payload !== undefined) {
    if (payload instanceof Blob || payload instanceof ArrayBuffer) {
      init.body = payload;
      init.headers["Content-Type"] = "application/octet-stream";
    } else {
      init.body = JSON.stringify(payload);
      init.headers["Content-Type"] = "application/json";
    }
  }
  const response = await fetch(url, init);
  if (response.status === 401 && session.user) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  if (raw) return response;
  const type = response.headers.get("content-type") || "";
  let data = null;
  if (response.status !== 204) data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    throw new ApiError(response.status, reason(data), data);
  }
  return data;
}

/** A refusal's reason in words: the API's ``detail``, or FastAPI's list of problems. */
function reason(data) {
  const detail = data && typeof data === "object" ? data.detail : data;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}

/**
 * Make an element: h("a", {href: "/", class: "x", onclick: fn, "aria-label": "y"}, "text", child).
 * ``text`` sets textContent; ``hidden``/``disabled``/... booleans set or leave the attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Say something to screen readers (the page's polite live region). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 50);
}

/** An error in words: an API refusal as "409: <the API's reason>". */
export function describeError(error) {
  return error instanceof ApiError ? `${error.status}: ${error.detail}` : String(error.message || error);
}

/** Show an error (or clear it with null) in ``el``, a role=alert element. */
export function showError(el, error) {
  if (!el) return;
  if (!error) { el.hidden = true; el.textContent = ""; return; }
  el.hidden = false;
  el.textContent = describeError(error);
}

/** A time as the operator's locale writes it (UTC ISO in, local out); "—" for none. */
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A <time> element for an ISO time. */
export function timeEl(iso) {
  return iso ? h("time", { datetime: iso, text: fmtTime(iso) }) : "—";
}

export function fmtNumber(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "—";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function fmtWh(wh) {
  if (wh === null || wh === undefined) return "—";
  return Math.abs(wh) >= 1000 ? `${fmtNumber(wh / 1000, 2)} kWh` : `${fmtNumber(wh, 0)} Wh`;
}

export function fmtW(w) {
  if (w === null || w === undefined) return "—";
  return Math.abs(w) >= 1000 ? `${fmtNumber(w / 1000, 2)} kW` : `${fmtNumber(w, 0)} W`;
}

const STATUS_CLASS = {
  Available: "ok", Charging: "busy", Occupied: "busy", Preparing: "warn", SuspendedEV: "warn",
  SuspendedEVSE: "warn", Finishing: "warn", Reserved: "warn", Unavailable: "off", Faulted: "bad",
  Accepted: "ok", Pending: "warn", Rejected: "bad", Blocked: "bad", Expired: "off", Invalid: "bad",
  Connected: "ok", Offline: "off", Scheduled: "warn", InProgress: "busy", Succeeded: "ok", Failed: "bad",
};

/** A status as a badge: the spec's value in words, coloured as a second cue. */
export function badge(status, label) {
  const text = label || status || "Unknown";
  return h("span", { class: `badge ${STATUS_CLASS[status] || "off"}`, text });
}

/**
 * A table: columns [{label, value: row => text|Node, num: bool}], rows, an optional caption
 * and ``empty`` text. Wrapped so a narrow screen scrolls it, not the page.
 */
export function table({ caption, columns, rows, empty = "Nothing yet.", rowClass }) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null, text: c.label }))));
  const bodyEl = h("tbody");
  if (!rows.length) {
    bodyEl.append(h("tr", {}, h("td", { colspan: columns.length, class: "note", text: empty })));
  }
  for (const row of rows) {
    const tr = h("tr", { class: rowClass ? rowClass(row) : null });
    for (const c of columns) {
      const value = c.value(row);
      tr.append(h("td", { class: c.num ? "num" : null }, value === null || value === undefined ? "—" : value));
    }
    bodyEl.append(tr);
  }
  return h("div", { class: "table-wrap" }, h("table", {}, caption ? h("caption", { text: caption }) : null, head, bodyEl));
}

/** JSON as readable, indented text. */
export function jsonBlock(value) {
  let text = value;
  if (typeof value === "string") {
    try { text = JSON.stringify(JSON.parse(value), null, 2); } catch { text = value; }
  } else {
    text = JSON.stringify(value, null, 2);
  }
  return h("pre", { class: "json", tabindex: "0" }, text);
}

/**
 * Live updates: server-sent events from /api/v1/live. ``handlers`` maps event names
 * (stations, overview, resync) to functions of the parsed data. Reconnects by itself.
 */
export function live(handlers) {
  const source = new EventSource(`${API}/live`);
  for (const [name, fn] of Object.entries(handlers)) {
    if (name === "error") continue; // the connection's own event: it carries no data
    source.addEventListener(name, (event) => fn(JSON.parse(event.data)));
  }
  source.addEventListener("error", () => { if (handlers.error) handlers.error(); });
  window.addEventListener("pagehide", () => source.close());
  return source;
}

/**
 * Keep a form for writers: for a read-only operator every control of ``form`` is disabled,
 * with the reason beside its submit button. Returns whether the operator may write.
 */
export function guardWrite(form) {
  if (session.canWrite) return true;
  for (const control of form.querySelectorAll("input, select, textarea, button")) control.disabled = true;
  const submit = form.querySelector("[type=submit]");
  if (submit && !form.querySelector(".read-only-why")) {
    submit.after(h("span", { class: "note read-only-why", text: " Read-only: you cannot do this." }));
  }
  return false;
}

/** The form's fields as an object (empty strings left out). */
export function formData(form) {
  const out = {};
  for (const [key, value] of new FormData(form).entries()) {
    if (key === "csrf_token" || value === "") continue;
    out[key] = value;
  }
  return out;
}

/**
 * A labelled form field: ``control`` (with its id) under its <label>, and a hint the
 * control is described by (aria-describedby) when one is given.
 */
export function field(control, label, hint) {
  const hintId = hint ? `${control.id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: control.id, text: label }), control,
    hint ? h("span", { class: "hint", id: hintId, text: hint }) : null);
}

/** A hidden CSRF field for forms made in the page (every form carries it). */
export function csrfField() {
  return h("input", { type: "hidden", name: "csrf_token", value: session.csrf });
}

// -- on every page -----------------------------------------------------------------------

for (const form of document.querySelectorAll("form[data-logout]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/logout", { method: "POST" });
    } finally {
      location.assign("/login");
    }
  });
}
