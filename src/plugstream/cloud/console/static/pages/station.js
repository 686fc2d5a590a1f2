// The station page: what one station is and does now. Its facts and connectors, the power
// and energy of its running sessions (with a chart), every command the CSMS may send it as
// a form drawn from the command's official schema with the station's answer beside it, its
// message log, configuration (1.6) or device model (2.0.1), security events and firmware.
// Everything comes from the REST API; a change of this station on /api/v1/live re-reads
// what may have changed, one read at a time (changes that come during a read make one
// more read, not one each).
import {
  ApiError, announce, api, badge, csrfField, fill, fmtNumber, fmtW, fmtWh, guardWrite, h, jsonBlock,
  live, describeError, showError, table, timeEl,
} from "../console.js";
import { lineChart } from "../chart.js";
import { SchemaFormError, schemaForm } from "../schema_form.js";

const root = document.getElementById("page");
const stationId = root.dataset.stationId;
const here = `stations/${encodeURIComponent(stationId)}`;

const POWER = "Power.Active.Import";
const ENERGY = "Energy.Active.Import.Register";
const MESSAGES = 30; // frames shown in the log

// -- the page's sections ------------------------------------------------------------------

/** A titled card with its own error line, so one failed read does not blank the others. */
function section(id, title, ...intro) {
  const body = h("div", { class: "section-body" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const el = h("section", { class: `card station-section section-${id}`, "aria-labelledby": `${id}-h` },
    h("h2", { id: `${id}-h`, text: title }), intro, error, body);
  return { el, body, error };
}

const facts = section("facts", "Station");
const connectors = section("connectors", "Connectors and sessions");
const chart = section("chart", "Session power and energy");
const commands = section("commands", "Commands");
const messages = section("messages", "Recent messages",
  h("p", { class: "note", text: `The last ${MESSAGES} OCPP frames, newest first. ← came from the station, → went to it.` }));
const config = section("config", "Configuration");
const security = section("security", "Security events");
const firmware = section("firmware", "Firmware");

root.append(
  h("div", { class: "station-top" }, facts.el, connectors.el),
  chart.el,
  commands.el,
  h("div", { class: "station-columns" }, messages.el, h("div", {}, config.el, security.el, firmware.el)),
);

// -- small helpers ------------------------------------------------------------------------

const scale = (unit) => (unit === "kW" || unit === "kWh" ? 1000 : 1);

/** Times and values of ``measurand`` in W or Wh: per timestamp, the value without a
 * phase if the station sent one, else the phases added up. */
function samples(detail, measurand) {
  const at = new Map();
  for (const s of detail.meter_values || []) {
    if (s.measurand !== measurand || (s.location && s.location !== "Outlet")) continue;
    const value = Number(s.value) * scale(s.unit);
    const slot = at.get(s.timestamp) || { whole: null, phases: 0, phased: false };
    if (!s.phase) slot.whole = value;
    else if (/^L\d$/.test(s.phase)) { slot.phases += value; slot.phased = true; }
    at.set(s.timestamp, slot);
  }
  return [...at.entries()]
    .map(([t, s]) => [t, s.whole !== null ? s.whole : s.phased ? s.phases : null])
    .filter(([, v]) => v !== null)
    .sort((a, b) => new Date(a[0]) - new Date(b[0]));
}

/** The energy delivered in a session over time: the register less its start. */
function energyPoints(detail) {
  const register = samples(detail, ENERGY);
  if (!register.length) return [];
  const start = detail.meter_start_wh !== null && detail.meter_start_wh !== undefined ? Number(detail.meter_start_wh) : register[0][1];
  return register.map(([t, v]) => [t, Math.max(v - start, 0)]);
}

function lastPower(detail) {
  const points = detail ? samples(detail, POWER) : [];
  return points.length ? points[points.length - 1][1] : null;
}

function connectorName(c, version) {
  if (version && version.startsWith("1.")) return c.connector_id === 0 || c.evse_id === 0 ? "0 (whole station)" : String(c.evse_id);
  return `EVSE ${c.evse_id} · connector ${c.connector_id}`;
}

function txLink(tx) {
  return h("a", { href: `/transactions/${tx.id}`, text: `#${tx.id}` });
}


// -- state --------------------------------------------------------------------------------

const state = {
  station: null,
  transactions: [],
  details: new Map(), // tx id -> detail (active ones and the charted one)
  statuses: new Map(), // connector -> status, to announce a change
  catalogueVersion: undefined,
  modelUntil: 0, // re-read the device model on changes until then (a report is coming)
  folds: new Map(), // message id -> open, as the operator left it (else the newest is open)
};

// -- facts ----------------------------------------------------------------------------------

function drawFacts(s) {
  const item = (term, value) => h("div", { class: "fact" }, h("dt", { text: term }), h("dd", {}, value ?? "—"));
  const offset = s.clock_offset_s === null || s.clock_offset_s === undefined ? "—" : `${fmtNumber(s.clock_offset_s, 1)} s`;
  fill(facts.body, h("dl", { class: "facts" },
    item("Connection", badge(s.connected ? "Connected" : "Offline")),
    item("OCPP version", s.ocpp_version),
    item("Vendor", s.vendor),
    item("Model", s.model),
    item("Serial number", s.serial_number),
    item("Firmware", s.firmware_version),
    item("Security profile", String(s.security_profile)),
    item("Boot status", badge(s.boot_status)),
    item("Last seen", timeEl(s.last_seen)),
    item("Last boot", timeEl(s.last_boot)),
    item("Clock offset", offset),
    item("Protocol violations", String(s.protocol_violations))));
}

// -- connectors and sessions ---------------------------------------------------------------

function drawConnectors(s) {
  const active = state.transactions.filter((t) => t.active);
  const sessionOf = (c) => active.find((t) => t.evse_id === c.evse_id && (s.ocpp_version?.startsWith("1.") || t.connector_id === c.connector_id))
    || active.find((t) => t.evse_id === c.evse_id);
  const rows = s.connectors.map((c) => ({ c, tx: sessionOf(c) }));
  const said = [];
  for (const { c } of rows) {
    const key = `${c.evse_id}/${c.connector_id}`;
    const before = state.statuses.get(key);
    if (before && before !== c.status) said.push(`Connector ${connectorName(c, s.ocpp_version)}: ${c.status}`);
    state.statuses.set(key, c.status);
  }
  if (said.length) announce(said.join(". "));
  fill(connectors.body, table({
    caption: "Connectors, each with its running session",
    columns: [
      { label: "Connector", value: (r) => connectorName(r.c, s.ocpp_version) },
      { label: "Status", value: (r) => h("span", {}, badge(r.c.status), r.c.error_code && r.c.error_code !== "NoError" ? ` ${r.c.error_code}` : null) },
      { label: "Since", value: (r) => timeEl(r.c.updated_at) },
      { label: "Session", value: (r) => (r.tx ? h("span", {}, txLink(r.tx), r.tx.id_token ? ` ${r.tx.id_token}` : "") : "—") },
      { label: "Power", num: true, value: (r) => (r.tx ? fmtW(lastPower(state.details.get(r.tx.id))) : "—") },
      { label: "Energy", num: true, value: (r) => (r.tx ? fmtWh(r.tx.energy_wh) : "—") },
    ],
    rows,
    empty: "The station has reported no connectors yet.",
    rowClass: (r) => (r.tx ? "running" : null),
  }));
}

function drawChart() {
  const tx = state.transactions.find((t) => t.active) || state.transactions[0];
  if (!tx) {
    fill(chart.body, h("p", { class: "note", text: "No session on this station yet." }));
    return;
  }
  const detail = state.details.get(tx.id);
  const powerBox = h("div", { class: "chart-box" });
  const energyBox = h("div", { class: "chart-box" });
  fill(chart.body,
    h("p", {}, tx.active ? "Running session " : "Latest session ", txLink(tx),
      ` on ${state.station?.ocpp_version?.startsWith("1.") ? "connector" : "EVSE"} ${tx.evse_id}`, tx.id_token ? `, id token ${tx.id_token}` : "",
      ", started ", timeEl(tx.started_at), tx.active ? "" : h("span", {}, ", stopped ", timeEl(tx.stopped_at)),
      `. Energy: ${fmtWh(tx.energy_wh)}.`),
    h("div", { class: "chart-pair" }, powerBox, energyBox));
  const power = detail ? samples(detail, POWER) : [];
  lineChart(powerBox, { title: `Power of session #${tx.id}`, series: [{ label: "Power", unit: "W", points: power }], yLabel: "W" });
  lineChart(energyBox, { title: `Energy of session #${tx.id}`, series: [{ label: "Energy delivered", unit: "Wh", points: detail ? energyPoints(detail) : [] }], yLabel: "Wh" });
}

async function readSessions() {
  state.transactions = await api("transactions", { query: { station: stationId, limit: 20 } });
  const wanted = state.transactions.filter((t) => t.active);
  const charted = state.transactions.find((t) => t.active) || state.transactions[0];
  if (charted && !wanted.includes(charted)) wanted.push(charted);
  const found = await Promise.all(wanted.map((t) => api(`transactions/${t.id}`)));
  state.details = new Map(found.map((d) => [d.id, d]));
}

// -- message log ---------------------------------------------------------------------------

function parseFrame(text) {
  try {
    const frame = JSON.parse(text);
    return Array.isArray(frame) ? frame : null;
  } catch {
    return null;
  }
}

async function readMessages() {
  const page = await api(`${here}/messages`, { query: { limit: MESSAGES } });
  const actions = new Map(); // CALL id -> action, to name its result
  const frames = page.messages.map((m) => ({ m, frame: parseFrame(m.text) }));
  for (const { frame } of frames) if (frame && frame[0] === 2) actions.set(frame[1], frame[2]);
  const list = h("ol", { class: "message-log" });
  for (const [index, { m, frame }] of frames.entries()) {
    const kind = frame ? { 2: "CALL", 3: "CALLRESULT", 4: "CALLERROR" }[frame[0]] || "frame" : "frame";
    const action = frame ? (frame[0] === 2 ? frame[2] : actions.get(frame[1]) || "") : "";
    const open = state.folds.has(m.id) ? state.folds.get(m.id) : index === 0;
    const details = h("details", { class: `message ${m.direction}`, open },
      h("summary", {},
        h("span", { class: "dir", text: m.direction === "in" ? "← from station" : "→ to station" }), " ",
        timeEl(m.at), " ", h("strong", { text: action || kind }), action ? h("span", { class: "note", text: ` ${kind}` }) : null),
      jsonBlock(m.text));
    // kept only when the operator moved it (the toggle of the first draw is not theirs)
    details.addEventListener("toggle", () => {
      if (details.open !== open || state.folds.has(m.id)) state.folds.set(m.id, details.open);
    });
    list.append(h("li", {}, details));
  }
  if (!frames.length) list.append(h("li", { class: "note", text: "No messages yet." }));
  fill(messages.body, list);
}

// -- configuration (1.6) or device model (2.0.1) ---------------------------------------------

function drawConfiguration16() {
  const result = h("div", { class: "config-result" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "toolbar" }, csrfField(),
    h("button", { type: "submit", text: "Read configuration (GetConfiguration)" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const answer = await api(`${here}/commands/GetConfiguration`, { method: "POST", body: {} });
      const keys = answer.configurationKey || [];
      fill(result,
        table({
          caption: `${keys.length} configuration keys`,
          columns: [
            { label: "Key", value: (k) => h("code", { text: k.key }) },
            { label: "Value", value: (k) => k.value ?? "—" },
            { label: "Access", value: (k) => (k.readonly ? "read-only" : "read-write") },
          ],
          rows: keys,
        }),
        (answer.unknownKey || []).length ? h("p", { class: "note", text: `Unknown keys: ${answer.unknownKey.join(", ")}` }) : null);
      announce(`${keys.length} configuration keys read`);
    } catch (e) {
      showError(error, e);
    } finally {
      button.disabled = false;
      guardWrite(form);
    }
  });
  guardWrite(form);
  fill(config.body, h("p", { class: "note", text: "OCPP 1.6 keeps its configuration in the station: read it with GetConfiguration." }), form, error, result);
}

function drawDeviceModel() {
  const result = h("div", { class: "config-result" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const filter = h("input", { type: "search", id: "dm-filter", autocomplete: "off" });
  const form = h("form", { class: "toolbar" }, csrfField(),
    h("button", { type: "submit", class: "secondary", text: "Ask for a full report (GetBaseReport)" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    try {
      const report = await api(`${here}/device-model/refresh`, { method: "POST", body: { report_base: "FullInventory" } });
      state.modelUntil = Date.now() + 60_000;
      announce(`Report ${report.request_id}: ${report.status}`);
    } catch (e) {
      showError(error, e);
    }
  });
  guardWrite(form);
  let rows = [];
  const draw = () => {
    const words = filter.value.trim().toLowerCase();
    const shown = words ? rows.filter((v) => `${v.component} ${v.variable}`.toLowerCase().includes(words)) : rows;
    fill(result, table({
      caption: `${shown.length} of ${rows.length} variables`,
      columns: [
        { label: "Component", value: (v) => [v.component, v.component_instance ? ` (${v.component_instance})` : "", v.evse_id ? ` EVSE ${v.evse_id}` : "", v.connector_id ? `/${v.connector_id}` : ""].join("") },
        { label: "Variable", value: (v) => v.variable + (v.variable_instance ? ` (${v.variable_instance})` : "") },
        { label: "Actual", value: (v) => (v.attributes.find((a) => a.type === "Actual") || {}).value ?? "—" },
        { label: "Mutability", value: (v) => (v.attributes.find((a) => a.type === "Actual") || v.attributes[0] || {}).mutability ?? "—" },
      ],
      rows: shown,
      empty: "Nothing stored yet: ask the station for a report.",
    }));
  };
  filter.addEventListener("input", draw);
  state.readModel = async () => {
    const model = await api(`${here}/device-model`);
    rows = model.variables;
    draw();
  };
  fill(config.body,
    h("p", { class: "note", text: "OCPP 2.0.1: the device model as the station last reported it." }),
    form, error,
    h("div", { class: "field" }, h("label", { for: "dm-filter", text: "Filter by component or variable" }), filter),
    h("div", { class: "device-model" }, result));
  return state.readModel();
}

async function drawConfig(version) {
  if (state.configVersion === version) return;
  state.configVersion = version;
  state.readModel = null;
  if (!version) fill(config.body, h("p", { class: "note", text: "The station has not connected yet." }));
  else if (version.startsWith("1.")) drawConfiguration16();
  else {
    config.el.querySelector("h2").textContent = "Device model";
    await drawDeviceModel();
  }
}

// -- security events and firmware -------------------------------------------------------------

async function readSecurity() {
  const events = await api("security-events", { query: { station_id: stationId, limit: 20 } });
  fill(security.body, table({
    caption: "The latest 20, newest first",
    columns: [
      { label: "Time", value: (e) => timeEl(e.timestamp) },
      { label: "Event", value: (e) => e.type },
      { label: "Source", value: (e) => e.source },
      { label: "Count", num: true, value: (e) => String(e.count) },
      { label: "What happened", value: (e) => e.tech_info || "—" },
    ],
    rows: events,
    empty: "No security events.",
  }));
}

async function readFirmware(s) {
  const rollouts = await api("rollouts", { query: { limit: 100 } });
  const mine = rollouts.flatMap((r) => r.targets.filter((t) => t.station_id === stationId).map((t) => ({ r, t })));
  fill(firmware.body,
    h("p", {}, "Installed: ", h("strong", { text: s.firmware_version || "not reported" }), ". ",
      h("a", { href: "/firmware", text: "Firmware images and rollouts" })),
    table({
      caption: "Rollouts to this station, newest first",
      columns: [
        { label: "Rollout", num: true, value: (x) => String(x.r.rollout_id) },
        { label: "Image", value: (x) => h("code", { text: x.r.image_id.slice(0, 12) }) },
        { label: "Status", value: (x) => badge(x.t.status) },
        { label: "requestId", num: true, value: (x) => String(x.t.request_id) },
        { label: "Updated", value: (x) => timeEl(x.t.updated_at) },
      ],
      rows: mine,
      empty: "No rollout has included this station.",
    }));
}

// -- commands -----------------------------------------------------------------------------------

const commandSelect = h("select", { id: "command-action" }, h("option", { value: "", text: "Choose a command…" }));
const commandNote = h("p", { class: "note" });
const commandForm = h("div", { class: "command-form-box" });
const answerBox = h("div", { class: "answer", role: "status", "aria-live": "polite" });
const refusalBox = h("div", { class: "refusal", role: "alert", hidden: true });
let catalogue = new Map();

fill(commands.body,
  h("div", { class: "field command-pick" }, h("label", { for: "command-action", text: "Command" }), commandSelect,
    h("span", { class: "hint", text: "Every action the CSMS may send this station in its OCPP version; the form is drawn from the action's official JSON schema." })),
  commandNote,
  h("div", { class: "command-layout" }, commandForm,
    h("div", { class: "command-answer" }, h("h3", { text: "Answer" }), answerBox, refusalBox)));
fill(answerBox, h("p", { class: "note", text: "The station's answer shows here." }));

async function readCatalogue() {
  const found = await api(`${here}/commands`);
  state.catalogueVersion = found.ocpp_version;
  catalogue = new Map(found.actions.map((a) => [a.action, a.request_schema]));
  const chosen = commandSelect.value;
  fill(commandSelect, h("option", { value: "", text: "Choose a command…" }),
    found.actions.map((a) => h("option", { value: a.action, text: a.action })));
  if (catalogue.has(chosen)) commandSelect.value = chosen;
  else drawCommand("");
  if (!found.ocpp_version) commandNote.textContent = "The station has not connected yet: it has no commands.";
}

function drawCommand(action) {
  showError(refusalBox, null);
  if (!action) {
    fill(commandForm, h("p", { class: "note", text: "Choose a command to fill in its request." }));
    return;
  }
  const drawn = schemaForm(catalogue.get(action), { id: `cmd-${action}` });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", text: `Send ${action}` });
  const form = h("form", { class: "command-form", "aria-label": `${action} request` },
    csrfField(),
    h("fieldset", {}, h("legend", { text: action }), drawn.element),
    h("div", { class: "toolbar" }, submit),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    let payload;
    try {
      payload = drawn.read();
    } catch (e) {
      if (e instanceof SchemaFormError) { showError(error, e); return; }
      throw e;
    }
    submit.disabled = true;
    submit.textContent = "Sending…";
    try {
      const answer = await api(`${here}/commands/${encodeURIComponent(action)}`, { method: "POST", body: payload });
      showError(refusalBox, null);
      fill(answerBox, h("p", {}, h("strong", { text: action }), " answered at ", timeEl(new Date().toISOString())), jsonBlock(answer));
      announce(`${action}: ${answer && answer.status ? answer.status : "answered"}`);
      schedule();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      fill(answerBox, h("p", { class: "note", text: `${action} was not answered.` }));
      refusalBox.hidden = false;
      fill(refusalBox, h("p", { class: "error", text: `${action} refused: ${describeError(e)}` }), jsonBlock(e.body ?? e.detail));
    } finally {
      submit.disabled = false;
      submit.textContent = `Send ${action}`;
      guardWrite(form);
    }
  });
  fill(commandForm, form);
  guardWrite(form);
}

commandSelect.addEventListener("change", () => drawCommand(commandSelect.value));

// -- reading it all, and again on each change -----------------------------------------------------

async function guarded(part, read) {
  try {
    await read();
    showError(part.error, null);
  } catch (e) {
    showError(part.error, e);
  }
}

async function refresh() {
  let s;
  try {
    s = await api(here);
  } catch (e) {
    showError(facts.error, e);
    if (e instanceof ApiError && e.status === 404) throw e;
    return;
  }
  showError(facts.error, null);
  state.station = s;
  drawFacts(s);
  commandNote.textContent = s.connected ? "" : "The station is offline: a command now is refused (409).";
  await Promise.all([
    guarded(connectors, async () => {
      await readSessions();
      drawConnectors(s);
      drawChart();
    }),
    guarded(messages, readMessages),
    guarded(security, readSecurity),
    guarded(firmware, () => readFirmware(s)),
    guarded(config, async () => {
      await drawConfig(s.ocpp_version);
      if (state.readModel && Date.now() < state.modelUntil) await state.readModel();
    }),
    s.ocpp_version !== state.catalogueVersion ? guarded(commands, readCatalogue) : null,
  ]);
}

let reading = null;
let again = false;

/** Read the page again: at once if idle, else once more when the current read ends. */
function schedule() {
  if (reading) { again = true; return; }
  reading = refresh()
    .catch(() => { /* shown in the page */ })
    .finally(() => {
      reading = null;
      if (again) { again = false; schedule(); }
    });
}

try {
  await refresh();
  live({
    stations: (changed) => { if (changed.some((c) => c.station_id === stationId)) schedule(); },
    resync: () => schedule(),
  });
} catch {
  fill(root, facts.el);
}
