// The display messages page (2.0.1 O01-O06): pick a station, see the messages the cloud
// knows it shows (set and answered, or reported by the station), show a new one
// (SetDisplayMessage), clear one (ClearDisplayMessage) or ask the station for all of its
// own (GetDisplayMessages, whose NotifyDisplayMessages parts arrive after the answer).
import {
  announce, api, badge, csrfField, fill, guardWrite, h, session, showError, table, timeEl, field as labelled,
} from "../console.js";

const PRIORITIES = ["NormalCycle", "InFront", "AlwaysFront"];
const STATES = ["", "Idle", "Charging", "Faulted", "Unavailable"];
const FORMATS = ["UTF8", "ASCII", "HTML", "URI"];

const root = document.getElementById("page");
const params = new URLSearchParams(location.search);


/** A field whose control gets its id here. */
const field = (id, label, control, hint) => labelled(Object.assign(control, { id }), label, hint);

const options = (values, none) => values.map((v) => h("option", { value: v, text: v || none }));
const stationId = () => stationSelect.value;
const path = (rest = "") => `stations/${encodeURIComponent(stationId())}/display-messages${rest}`;

// -- the station picker ------------------------------------------------------------------

const stationSelect = h("select", { name: "station" });
const picker = h("form", { class: "toolbar picker", role: "search", "aria-label": "Pick a station" },
  field("d-station", "Station", stationSelect, "Display messages need OCPP 2.0.1."),
  h("button", { type: "submit", class: "secondary", text: "Refresh" }));
picker.addEventListener("submit", (event) => { event.preventDefault(); load(); });
stationSelect.addEventListener("change", () => {
  // the chosen station in the address, so a reload or a shared link shows it again
  history.replaceState(null, "", `?station=${encodeURIComponent(stationId())}`);
  showError(setError, null);
  setResult.hidden = true;
  load();
});

// -- the list ----------------------------------------------------------------------------

const listError = h("p", { class: "error", role: "alert", hidden: true });
const listEl = h("div", { class: "messages" });

function messageText(m) {
  const content = m.message && m.message.message;
  if (!content) return "—";
  return h("span", {}, content.content,
    h("span", { class: "note", text: ` (${content.format}${content.language ? `, ${content.language}` : ""})` }));
}

function period(m) {
  const start = m.message && m.message.startDateTime;
  const end = m.message && m.message.endDateTime;
  if (!start && !end) return "always";
  return h("span", {}, start ? timeEl(start) : "now", " – ", end ? timeEl(end) : "until cleared");
}

async function clear(m, button) {
  showError(listError, null);
  button.disabled = true;
  const sid = stationId();
  try {
    await api(path(`/${m.message_id}`), { method: "DELETE" });
    announce(`Display message ${m.message_id} cleared from ${sid}.`);
  } catch (error) {
    showError(listError, error);
    button.disabled = false;
  }
  await load();
}

function clearButton(m) {
  const button = h("button", {
    type: "button", class: "danger", text: "Clear", "aria-label": `Clear display message ${m.message_id}`,
    disabled: !session.canWrite, title: session.canWrite ? null : "Read-only: you cannot do this.",
  });
  button.addEventListener("click", () => clear(m, button));
  return button;
}

let latest = 0; // the newest load wins: an older answer (another station) is dropped
async function load() {
  const sid = stationId();
  if (!sid) { fill(listEl, h("p", { class: "note", text: "No stations registered." })); return; }
  const mine = ++latest;
  try {
    const messages = await api(path());
    if (mine !== latest) return;
    showError(listError, null);
    fill(listEl, table({
      caption: `Display messages of ${sid}`,
      empty: "No display messages known for this station.",
      columns: [
        { label: "Id", num: true, value: (m) => String(m.message_id) },
        { label: "Message", value: messageText },
        { label: "Priority", value: (m) => m.priority },
        { label: "State", value: (m) => m.state || "any" },
        { label: "Shown", value: period },
        { label: "Transaction", value: (m) => (m.message && m.message.transactionId) || "—" },
        { label: "Status", value: (m) => badge(m.status === "Reported" ? "Accepted" : m.status, m.status) },
        { label: "Updated", value: (m) => timeEl(m.updated_at) },
        { label: "Action", value: clearButton },
      ],
      rows: messages,
    }));
    listEl.dataset.loaded = sid;
  } catch (error) {
    if (mine !== latest) return;
    fill(listEl);
    delete listEl.dataset.loaded;
    showError(listError, error);
  }
}

// -- set one -----------------------------------------------------------------------------

const setError = h("p", { class: "error", role: "alert", hidden: true });
const setResult = h("p", { class: "ok", hidden: true });
const setForm = h("form", { class: "card set-message", "aria-labelledby": "set-heading" },
  csrfField(),
  h("h2", { id: "set-heading", text: "Show a message" }),
  field("m-content", "Message text", h("textarea", { name: "content", rows: "3", maxlength: "512", required: true })),
  h("div", { class: "message-fields" },
    field("m-priority", "Priority", h("select", { name: "priority" }, options(PRIORITIES))),
    field("m-state", "Only in state", h("select", { name: "state" }, options(STATES, "any state"))),
    field("m-format", "Format", h("select", { name: "format" }, options(FORMATS))),
    field("m-language", "Language", h("input", { name: "language", maxlength: "8", placeholder: "en" })),
    field("m-start", "Start", h("input", { name: "start", type: "datetime-local" }), "Empty: now. Your local time."),
    field("m-end", "End", h("input", { name: "end", type: "datetime-local" }), "Empty: until cleared."),
    field("m-id", "Message id", h("input", { name: "id", type: "number", min: "0" }), "Empty: the next free one."),
    field("m-tx", "Transaction id", h("input", { name: "transaction_id", maxlength: "36" }), "Optional: shown during this transaction only.")),
  h("div", { class: "toolbar" }, h("button", { type: "submit", text: "Set display message" })),
  setError, setResult);

setForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(setError, null);
  setResult.hidden = true;
  const el = setForm.elements;
  const sid = stationId();
  const body = { content: el.content.value, priority: el.priority.value, format: el.format.value };
  if (el.state.value) body.state = el.state.value;
  if (el.language.value.trim()) body.language = el.language.value.trim();
  if (el.start.value) body.start_date_time = new Date(el.start.value).toISOString();
  if (el.end.value) body.end_date_time = new Date(el.end.value).toISOString();
  if (el.id.value !== "") body.id = Number(el.id.value);
  if (el.transaction_id.value.trim()) body.transaction_id = el.transaction_id.value.trim();
  const submit = setForm.querySelector("[type=submit]");
  submit.disabled = true;
  try {
    const made = await api(path(), { method: "POST", body });
    if (made.status === "Accepted") {
      setResult.textContent = `${sid} shows display message ${made.message_id}.`;
      setResult.hidden = false;
      announce(setResult.textContent);
      el.content.value = "";
    } else {
      showError(setError, `${sid} answered ${made.status}: display message ${made.message_id} is not shown.`);
    }
  } catch (error) {
    showError(setError, error);
  } finally {
    submit.disabled = false;
  }
  await load();
});

// -- ask the station ---------------------------------------------------------------------

const askError = h("p", { class: "error", role: "alert", hidden: true });
const askResult = h("p", { class: "ok", hidden: true });
const askForm = h("form", { class: "card ask", "aria-labelledby": "ask-heading" },
  csrfField(),
  h("h2", { id: "ask-heading", text: "Ask the station" }),
  h("p", { class: "note", text: "GetDisplayMessages: the station lists what it shows; its reports join the list above." }),
  h("div", { class: "toolbar" }, h("button", { type: "submit", class: "secondary", text: "Ask for its display messages" })),
  askError, askResult);

askForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(askError, null);
  askResult.hidden = true;
  const sid = stationId();
  try {
    let report = await api(path("/reports"), { method: "POST", body: {} });
    if (report.status === "Unknown") {
      askResult.textContent = `${sid} answered Unknown: it shows no display messages.`;
    } else if (report.status !== "Accepted" && report.status !== "Complete") {
      showError(askError, `${sid} answered ${report.status}.`);
      return;
    } else {
      // the reports come in after the answer: look again until the last has come or a
      // few seconds have passed (a station may send its parts slowly)
      for (let i = 0; i < 20 && report.status !== "Complete"; i += 1) {
        await new Promise((resolve) => { setTimeout(resolve, 250); });
        report = await api(path(`/reports/${report.request_id}`));
      }
      askResult.textContent = report.status === "Complete"
        ? `${sid} reported ${report.messages.length} display message(s).`
        : `${sid} accepted; ${report.parts} report(s) so far.`;
    }
    askResult.hidden = false;
    announce(askResult.textContent);
  } catch (error) {
    showError(askError, error);
  }
  await load();
});

// -- the page ----------------------------------------------------------------------------

async function loadStations() {
  const stations = await api("stations");
  // 2.0.1 stations only: a 1.6 station has no display messages
  const usable = stations.filter((s) => s.ocpp_version !== "1.6");
  fill(stationSelect, usable.length
    ? usable.map((s) => h("option", { value: s.station_id, text: `${s.station_id}${s.connected ? "" : " (offline)"}` }))
    : h("option", { value: "", text: "No 2.0.1 stations" }));
  const wanted = params.get("station");
  if (wanted && usable.some((s) => s.station_id === wanted)) stationSelect.value = wanted;
  else {
    const first = usable.find((s) => s.connected);
    if (first) stationSelect.value = first.station_id;
  }
  stationSelect.dataset.loaded = "true";
}

root.append(picker, listError, listEl, h("div", { class: "message-forms" }, setForm, askForm));
guardWrite(setForm);
guardWrite(askForm);
try {
  await loadStations();
  await load();
} catch (error) {
  showError(listError, error);
}
