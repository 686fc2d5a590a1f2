// The tariffs page (2.0.1 functional block I): the tariffs with their prices, a form that
// creates one or edits the one picked, and which station or id-token group pays which
// (a station's own tariff beats its driver's group's, which beats the default).
// Prices go to the API as decimal strings, so what the operator typed is kept exactly.
import {
  announce, api, csrfField, fill, guardWrite, h, session, showError, table, timeEl, field as labelled,
} from "../console.js";

const PRICES = [
  ["start_fee", "Start fee", "Once per transaction."],
  ["per_kwh", "Price per kWh", null],
  ["per_charging_minute", "Price per charging minute", "While the EV charges, pro rata by the second."],
  ["per_idle_minute", "Price per idle minute", "Plugged in without charging, once the EV has charged."],
];

const root = document.getElementById("page");


/** A field whose control gets its id here. */
const field = (id, label, control, hint) => labelled(Object.assign(control, { id }), label, hint);

function money(name) {
  // text, not number: a number input would round "0.123456" by the browser's rules
  return h("input", { name, inputmode: "decimal", pattern: "\\d+(\\.\\d{1,6})?", value: "0", autocomplete: "off" });
}

let tariffs = [];
let stations = [];

// -- the tariff form: create, or edit the one picked ------------------------------------

const formError = h("p", { class: "error", role: "alert", hidden: true });
const formResult = h("p", { class: "ok", hidden: true });
const formHeading = h("h2", { id: "tariff-heading", text: "New tariff" });
const submitButton = h("button", { type: "submit", text: "Create tariff" });
const newButton = h("button", { type: "button", class: "secondary", text: "New tariff instead", hidden: true });
const tariffForm = h("form", { class: "card tariff-form", "aria-labelledby": "tariff-heading" },
  csrfField(),
  formHeading,
  h("input", { type: "hidden", name: "tariff_id", value: "" }),
  h("div", { class: "tariff-fields" },
    field("t-name", "Name", h("input", { name: "name", required: true, maxlength: "255" })),
    field("t-currency", "Currency", h("input", { name: "currency", required: true, value: "EUR", pattern: "[A-Z]{3}", maxlength: "3", size: "4" }),
      "ISO 4217, e.g. EUR."),
    PRICES.map(([name, label, hint]) => field(`t-${name}`, label, money(name), hint)),
    field("t-vat", "VAT %", h("input", { name: "vat_percent", inputmode: "decimal", value: "0", autocomplete: "off" }),
      "Prices above exclude VAT."),
    field("t-interval", "CostUpdated every (s)", h("input", { name: "cost_updated_interval_s", type: "number", min: "0", value: "0" }),
      "0: on every change of the threshold below."),
    field("t-threshold", "CostUpdated threshold", money("cost_updated_threshold"), "Send when the cost grew by this much."),
    field("t-language", "Language", h("input", { name: "language", maxlength: "8", placeholder: "en" }))),
  field("t-message", "Message to the driver", h("textarea", { name: "personal_message", rows: "2", maxlength: "512" }),
    "The tariff as the driver is shown it (personalMessage)."),
  h("div", { class: "field checkbox" },
    h("label", { for: "t-default" }, h("input", { id: "t-default", type: "checkbox", name: "is_default" }),
      " Default tariff: prices every transaction no assignment covers")),
  h("div", { class: "toolbar" }, submitButton, newButton),
  formError, formResult);

function editing(tariff) {
  const el = tariffForm.elements;
  el.tariff_id.value = tariff ? String(tariff.tariff_id) : "";
  el.name.value = tariff ? tariff.name : "";
  el.currency.value = tariff ? tariff.currency : "EUR";
  for (const [name] of PRICES) el[name].value = tariff ? tariff[name] : "0";
  el.vat_percent.value = tariff ? tariff.vat_percent : "0";
  el.cost_updated_interval_s.value = tariff ? String(tariff.cost_updated_interval_s) : "0";
  el.cost_updated_threshold.value = tariff ? tariff.cost_updated_threshold : "0";
  el.language.value = (tariff && tariff.language) || "";
  el.personal_message.value = (tariff && tariff.personal_message) || "";
  el.is_default.checked = Boolean(tariff && tariff.is_default);
  formHeading.textContent = tariff ? `Edit tariff ${tariff.tariff_id}: ${tariff.name}` : "New tariff";
  submitButton.textContent = tariff ? "Save tariff" : "Create tariff";
  newButton.hidden = !tariff;
  showError(formError, null);
  formResult.hidden = true;
}

newButton.addEventListener("click", () => { editing(null); tariffForm.elements.name.focus(); });

tariffForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(formError, null);
  formResult.hidden = true;
  const el = tariffForm.elements;
  const body = {
    name: el.name.value.trim(),
    currency: el.currency.value.trim().toUpperCase(),
    vat_percent: el.vat_percent.value.trim() || "0",
    cost_updated_interval_s: Number(el.cost_updated_interval_s.value || 0),
    cost_updated_threshold: el.cost_updated_threshold.value.trim() || "0",
    is_default: el.is_default.checked,
  };
  for (const [name] of PRICES) body[name] = el[name].value.trim() || "0";
  if (el.language.value.trim()) body.language = el.language.value.trim();
  if (el.personal_message.value.trim()) body.personal_message = el.personal_message.value.trim();
  const id = el.tariff_id.value;
  submitButton.disabled = true;
  try {
    const saved = await api(id ? `tariffs/${id}` : "tariffs", { method: id ? "PUT" : "POST", body });
    await load();
    editing(null);
    formResult.textContent = `Tariff ${saved.tariff_id} (${saved.name}) ${id ? "saved" : "created"}.`;
    formResult.hidden = false;
    announce(formResult.textContent);
  } catch (error) {
    showError(formError, error);
  } finally {
    submitButton.disabled = false;
  }
});

// -- the assignment form ------------------------------------------------------------------

const assignError = h("p", { class: "error", role: "alert", hidden: true });
const assignResult = h("p", { class: "ok", hidden: true });
const scopeSelect = h("select", { name: "scope" },
  h("option", { value: "station", text: "A station" }), h("option", { value: "group", text: "An id-token group" }));
const stationSelect = h("select", { name: "station_id" });
const groupInput = h("input", { name: "group_id", maxlength: "36", autocomplete: "off" });
const tariffSelect = h("select", { name: "tariff_id", required: true });
const stationField = field("a-station", "Station", stationSelect);
const groupField = field("a-group", "Group id token", groupInput, "The drivers' parent id token.");
groupField.hidden = true;
const assignForm = h("form", { class: "card assign-form", "aria-labelledby": "assign-heading" },
  csrfField(),
  h("h2", { id: "assign-heading", text: "Assign a tariff" }),
  h("div", { class: "inline-form" },
    field("a-scope", "Who pays it", scopeSelect),
    stationField, groupField,
    field("a-tariff", "Tariff", tariffSelect),
    h("button", { type: "submit", text: "Assign" })),
  assignError, assignResult);

scopeSelect.addEventListener("change", () => {
  const group = scopeSelect.value === "group";
  stationField.hidden = group;
  groupField.hidden = !group;
  groupInput.required = group;
});

function assignmentPath(scope, key) {
  return `tariff-assignments/${scope === "station" ? "stations" : "groups"}/${encodeURIComponent(key)}`;
}

assignForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(assignError, null);
  assignResult.hidden = true;
  const scope = scopeSelect.value;
  const key = scope === "station" ? stationSelect.value : groupInput.value.trim();
  if (!key) { showError(assignError, scope === "station" ? "Pick a station." : "Give the group's id token."); return; }
  try {
    const done = await api(assignmentPath(scope, key), { method: "PUT", body: { tariff_id: Number(tariffSelect.value) } });
    assignResult.textContent = `${scope === "station" ? "Station" : "Group"} ${done.key} now pays tariff ${tariffName(done.tariff_id)}.`;
    assignResult.hidden = false;
    announce(assignResult.textContent);
    await load();
  } catch (error) {
    showError(assignError, error);
  }
});

function tariffName(id) {
  const found = tariffs.find((t) => t.tariff_id === id);
  return found ? `${found.tariff_id} (${found.name})` : String(id);
}

// -- the lists ---------------------------------------------------------------------------

const listError = h("p", { class: "error", role: "alert", hidden: true });
const tariffList = h("div", { class: "tariff-list" });
const assignmentList = h("div", { class: "assignment-list" });

function rowButton(text, label, cls, onclick) {
  const button = h("button", {
    type: "button", class: cls, text, "aria-label": label,
    disabled: !session.canWrite, title: session.canWrite ? null : "Read-only: you cannot do this.",
  });
  button.addEventListener("click", () => onclick(button));
  return button;
}

async function remove(path, what, button) {
  showError(listError, null);
  button.disabled = true;
  try {
    await api(path, { method: "DELETE" });
    announce(`${what} removed.`);
  } catch (error) {
    showError(listError, error);
    button.disabled = false;
  }
  await load();
}

function price(t, name) {
  return `${t[name]} ${t.currency}`;
}

function drawTariffs() {
  fill(tariffList, table({
    caption: "Tariffs (prices excluding VAT)",
    empty: "No tariffs yet.",
    columns: [
      { label: "Id", num: true, value: (t) => String(t.tariff_id) },
      { label: "Name", value: (t) => h("span", {}, t.name, t.is_default ? h("span", { class: "badge ok", text: "default" }) : null) },
      { label: "Start fee", num: true, value: (t) => price(t, "start_fee") },
      { label: "Per kWh", num: true, value: (t) => price(t, "per_kwh") },
      { label: "Per charging min", num: true, value: (t) => price(t, "per_charging_minute") },
      { label: "Per idle min", num: true, value: (t) => price(t, "per_idle_minute") },
      { label: "VAT", num: true, value: (t) => `${t.vat_percent} %` },
      { label: "Driver's message", value: (t) => t.personal_message || "—" },
      { label: "Updated", value: (t) => timeEl(t.updated_at) },
      {
        label: "Actions",
        value: (t) => h("span", { class: "row-actions" },
          rowButton("Edit", `Edit tariff ${t.name}`, "secondary", () => {
            editing(t);
            tariffForm.scrollIntoView({ block: "start" });
            tariffForm.elements.name.focus();
          }),
          rowButton("Delete", `Delete tariff ${t.name}`, "danger", (b) => remove(`tariffs/${t.tariff_id}`, `Tariff ${t.name}`, b))),
      },
    ],
    rows: tariffs,
  }));
}

function drawAssignments(assignments) {
  fill(assignmentList, table({
    caption: "Assignments: a station's own tariff beats its driver's group's, which beats the default",
    empty: "No assignments: the default tariff prices every transaction.",
    columns: [
      { label: "Who", value: (a) => (a.scope === "station" ? "Station" : "Id-token group") },
      {
        label: "Station or group",
        value: (a) => (a.scope === "station" ? h("a", { href: `/stations/${encodeURIComponent(a.key)}`, text: a.key }) : a.key),
      },
      { label: "Tariff", value: (a) => tariffName(a.tariff_id) },
      { label: "Assigned", value: (a) => timeEl(a.assigned_at) },
      {
        label: "Action",
        value: (a) => rowButton("Remove", `Remove the tariff of ${a.scope} ${a.key}`, "danger",
          (b) => remove(assignmentPath(a.scope, a.key), `The tariff of ${a.scope} ${a.key}`, b)),
      },
    ],
    rows: assignments,
  }));
}

function fillSelects() {
  const chosenTariff = tariffSelect.value;
  fill(tariffSelect, tariffs.length
    ? tariffs.map((t) => h("option", { value: String(t.tariff_id), text: `${t.tariff_id}: ${t.name}` }))
    : h("option", { value: "", text: "No tariffs yet" }));
  if (chosenTariff) tariffSelect.value = chosenTariff;
  const chosenStation = stationSelect.value;
  fill(stationSelect, stations.length
    ? stations.map((s) => h("option", { value: s.station_id, text: s.station_id }))
    : h("option", { value: "", text: "No stations registered" }));
  if (chosenStation) stationSelect.value = chosenStation;
}

async function load() {
  try {
    const [found, assignments, known] = await Promise.all([api("tariffs"), api("tariff-assignments"), api("stations")]);
    tariffs = found;
    stations = known;
    showError(listError, null);
    drawTariffs();
    drawAssignments(assignments);
    fillSelects();
    tariffList.dataset.loaded = "true";
  } catch (error) {
    showError(listError, error);
  }
}

root.append(
  listError, tariffList,
  tariffForm,
  h("h2", { text: "Who pays which tariff" }), assignmentList,
  assignForm,
);
guardWrite(tariffForm);
guardWrite(assignForm);
await load();
