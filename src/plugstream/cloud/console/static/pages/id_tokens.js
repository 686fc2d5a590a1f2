// Id tokens: what the CSMS answers a station's Authorize with. Add or change one (status,
// expiry, group), block and unblock it, and see the groups (tokens sharing a parent
// id token, OCPP's groupIdToken). Everything goes through /api/v1/id-tokens.
import {
  api, announce, badge, csrfField, fill, guardWrite, h, session, showError, table, timeEl, field,
} from "../console.js";

const STATUSES = ["Accepted", "Blocked", "Expired", "Invalid"];
const TYPES = ["ISO14443", "ISO15693", "eMAID", "KeyCode", "Local", "MacAddress", "Central", "NoAuthorization"];
const ID_TOKEN_MAX = 36;

const root = document.getElementById("page");
let tokens = [];

// -- the form: add a token, or change one picked from the table ---------------------------

const tokenInput = h("input", { id: "tok-token", name: "token", required: true, maxlength: ID_TOKEN_MAX, autocomplete: "off" });
const typeSelect = h("select", { id: "tok-type", name: "token_type" }, TYPES.map((t) => h("option", { value: t, text: t })));
const statusSelect = h("select", { id: "tok-status", name: "status" }, STATUSES.map((s) => h("option", { value: s, text: s })));
const expiryInput = h("input", { id: "tok-expiry", name: "expiry", type: "datetime-local" });
const groupInput = h("input", { id: "tok-group", name: "parent_id_token", maxlength: ID_TOKEN_MAX, autocomplete: "off", list: "tok-groups" });
const groupList = h("datalist", { id: "tok-groups" });
const formError = h("p", { class: "error", role: "alert", hidden: true });
const formTitle = h("h2", { id: "tok-form-title", text: "Add an id token" });
const submit = h("button", { type: "submit", text: "Add id token" });
const cancel = h("button", { type: "button", class: "secondary", hidden: true, text: "Cancel change", onclick: () => editing(null) });


const form = h("form", { class: "card tok-form", "aria-labelledby": "tok-form-title", novalidate: false },
  formTitle,
  csrfField(),
  h("div", { class: "tok-fields" },
    field(tokenInput, "idToken", `1 to ${ID_TOKEN_MAX} characters, as the card or app presents it.`),
    field(typeSelect, "Type"),
    field(statusSelect, "Status"),
    field(expiryInput, "Expiry (your local time)", "Empty: never expires."),
    field(groupInput, "Group (parent idToken)", "Tokens with the same group id are one group."),
    groupList),
  formError,
  h("div", { class: "tok-buttons" }, submit, cancel));

/** ``datetime-local`` value (local time) from an ISO time, and back to UTC ISO. */
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : null;
}

function editing(token) {
  showError(formError, null);
  if (token === null) {
    form.reset();
    tokenInput.readOnly = false;
    formTitle.textContent = "Add an id token";
    submit.textContent = "Add id token";
    cancel.hidden = true;
    return;
  }
  tokenInput.value = token.id_token;
  tokenInput.readOnly = true; // the token is the record's key: a new one is an add
  typeSelect.value = token.token_type;
  statusSelect.value = token.status;
  expiryInput.value = toLocalInput(token.expiry);
  groupInput.value = token.parent_id_token || "";
  formTitle.textContent = `Change id token ${token.id_token}`;
  submit.textContent = "Save changes";
  cancel.hidden = false;
  form.scrollIntoView({ block: "nearest" });
  expiryInput.focus();
}

/** The record PUT sends: the whole token (PUT replaces it). */
function record(token, changes = {}) {
  return {
    status: token.status,
    expiry: token.expiry,
    parent_id_token: token.parent_id_token,
    token_type: token.token_type,
    ...changes,
  };
}

async function put(idToken, body) {
  return api(`id-tokens/${encodeURIComponent(idToken)}`, { method: "PUT", body });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(formError, null);
  const idToken = tokenInput.value.trim();
  if (!idToken) {
    showError(formError, new Error("Give the idToken."));
    tokenInput.focus();
    return;
  }
  const adding = !tokenInput.readOnly;
  if (adding && tokens.some((t) => t.id_token === idToken)) {
    showError(formError, new Error(`${idToken} exists already: use its Change button.`));
    return;
  }
  submit.disabled = true;
  try {
    const saved = await put(idToken, {
      status: statusSelect.value,
      expiry: fromLocalInput(expiryInput.value),
      parent_id_token: groupInput.value.trim() || null,
      token_type: typeSelect.value,
    });
    announce(`${adding ? "Added" : "Saved"} id token ${saved.id_token}: ${saved.status}.`);
    editing(null);
    await load();
  } catch (error) {
    showError(formError, error);
  } finally {
    submit.disabled = !session.canWrite;
  }
});

// -- the list ----------------------------------------------------------------------------

const search = h("input", { id: "tok-search", type: "search", autocomplete: "off" });
const statusFilter = h("select", { id: "tok-filter-status" },
  h("option", { value: "", text: "Any" }), STATUSES.map((s) => h("option", { value: s, text: s })));
const listError = h("p", { class: "error", role: "alert", hidden: true });
const listEl = h("div", { id: "tok-list" });
const groupsEl = h("div", { id: "tok-group-list" });
const countEl = h("p", { class: "note", id: "tok-count", "aria-live": "polite" });

function expired(token) {
  return token.expiry && new Date(token.expiry) <= new Date();
}

function statusCell(token) {
  const cell = [badge(token.status)];
  // Accepted but past its expiry: the CSMS answers Expired, say so
  if (token.status === "Accepted" && expired(token)) cell.push(badge("Expired", "past expiry"));
  return cell;
}

function actions(token) {
  const blocked = token.status === "Blocked";
  const rowError = h("span", { class: "error", role: "alert", hidden: true });
  const toggle = h("button", {
    type: "button",
    class: blocked ? "secondary" : "danger",
    text: blocked ? "Unblock" : "Block",
    "aria-label": `${blocked ? "Unblock" : "Block"} ${token.id_token}`,
    disabled: !session.canWrite,
    onclick: async () => {
      toggle.disabled = true;
      showError(rowError, null);
      try {
        const saved = await put(token.id_token, record(token, { status: blocked ? "Accepted" : "Blocked" }));
        announce(`Id token ${saved.id_token} is now ${saved.status}.`);
        await load();
      } catch (error) {
        showError(rowError, error);
        toggle.disabled = false;
      }
    },
  });
  const change = h("button", {
    type: "button", class: "secondary", text: "Change",
    "aria-label": `Change ${token.id_token}: expiry, group, status`,
    disabled: !session.canWrite,
    onclick: () => editing(token),
  });
  const remove = h("button", {
    type: "button", class: "secondary", text: "Delete",
    "aria-label": `Delete ${token.id_token}`,
    disabled: !session.canWrite,
    onclick: async () => {
      remove.disabled = true;
      showError(rowError, null);
      try {
        await api(`id-tokens/${encodeURIComponent(token.id_token)}`, { method: "DELETE" });
        announce(`Deleted id token ${token.id_token}.`);
        await load();
      } catch (error) {
        showError(rowError, error);
        remove.disabled = false;
      }
    },
  });
  return h("div", { class: "tok-actions" }, toggle, change, remove, rowError);
}

function render() {
  const text = search.value.trim().toLowerCase();
  const wanted = statusFilter.value;
  const shown = tokens.filter((t) =>
    (!wanted || t.status === wanted)
    && (!text || t.id_token.toLowerCase().includes(text) || (t.parent_id_token || "").toLowerCase().includes(text)));
  countEl.textContent = `${shown.length} of ${tokens.length} id tokens shown.`;
  fill(listEl, table({
    caption: "Id tokens",
    columns: [
      { label: "idToken", value: (t) => h("code", { text: t.id_token }) },
      { label: "Type", value: (t) => t.token_type },
      { label: "Status", value: statusCell },
      { label: "Expiry", value: (t) => timeEl(t.expiry) },
      { label: "Group", value: (t) => t.parent_id_token || "—" },
      { label: "Actions", value: actions },
    ],
    rows: shown,
    rowClass: (t) => `tok-row${t.status === "Blocked" ? " flagged" : ""}`,
    empty: tokens.length ? "No id token matches." : "No id tokens yet.",
  }));
  for (const row of listEl.querySelectorAll("tbody tr.tok-row")) {
    row.dataset.token = row.querySelector("code").textContent;
  }
  renderGroups();
}

function renderGroups() {
  const groups = new Map();
  for (const t of tokens) {
    if (!t.parent_id_token) continue;
    if (!groups.has(t.parent_id_token)) groups.set(t.parent_id_token, []);
    groups.get(t.parent_id_token).push(t);
  }
  fill(groupList, [...groups.keys()].map((g) => h("option", { value: g })));
  const rows = [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([group, members]) => ({ group, members }));
  fill(groupsEl, table({
    caption: "Groups: id tokens that share a group id",
    columns: [
      { label: "Group id", value: (g) => h("code", { text: g.group }) },
      { label: "Known as a token", value: (g) => (tokens.some((t) => t.id_token === g.group) ? "yes" : "no") },
      { label: "Members", num: true, value: (g) => String(g.members.length) },
      { label: "Tokens", value: (g) => h("ul", { class: "tok-members" }, g.members.map((m) => h("li", {}, h("code", { text: m.id_token }), " ", badge(m.status)))) },
    ],
    rows,
    rowClass: () => "tok-group",
    empty: "No groups: give tokens a group id to make one.",
  }));
}

async function load() {
  try {
    tokens = await api("id-tokens");
    tokens.sort((a, b) => a.id_token.localeCompare(b.id_token));
    showError(listError, null);
    render();
  } catch (error) {
    showError(listError, error);
  }
}

search.addEventListener("input", render);
statusFilter.addEventListener("change", render);

fill(root,
  form,
  h("section", { "aria-labelledby": "tok-list-title" },
    h("h2", { id: "tok-list-title", text: "Id tokens" }),
    h("div", { class: "toolbar", role: "search" },
      h("div", { class: "field" }, h("label", { for: "tok-search", text: "Search idToken or group" }), search),
      h("div", { class: "field" }, h("label", { for: "tok-filter-status", text: "Status" }), statusFilter)),
    countEl, listError, listEl),
  h("section", { "aria-labelledby": "tok-groups-title" },
    h("h2", { id: "tok-groups-title", text: "Groups" }),
    groupsEl));

guardWrite(form);
load();
