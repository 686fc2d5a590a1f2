// The reservations page (2.0.1 H01, H02): every reservation with its status, a form that
// reserves an EVSE (ReserveNow) and a Cancel button (CancelReservation) per active one.
// A ReserveNow the station refused (Occupied, Rejected...) is kept by the API with that
// answer as its status; the page says so in its alert, not as a success.
import {
  announce, api, badge, csrfField, fill, guardWrite, h, live, session, showError, table,
  timeEl, field as labelled,
} from "../console.js";

const TOKEN_TYPES = ["ISO14443", "ISO15693", "Central", "eMAID", "KeyCode", "Local", "MacAddress", "NoAuthorization"];
// a reservation the station may still hold: the only ones worth a Cancel button
const ACTIVE = new Set(["Pending", "Accepted"]);

const root = document.getElementById("page");


/** A datetime-local value (the operator's time) as UTC ISO. */
function utc(local) {
  return new Date(local).toISOString();
}

/** A datetime-local value for ``minutes`` from now, in the operator's time. */
function localIn(minutes) {
  const d = new Date(Date.now() + minutes * 60000);
  d.setSeconds(0, 0);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A field whose control gets its id here. */
const field = (id, label, control, hint) => labelled(Object.assign(control, { id }), label, hint);

// -- the form ----------------------------------------------------------------------------

const stationSelect = h("select", { name: "station_id", required: true });
const filterSelect = h("select", { name: "station_id" }, h("option", { value: "", text: "All stations" }));
const formError = h("p", { class: "error", role: "alert", hidden: true });
const formResult = h("p", { class: "ok", hidden: true });
const form = h("form", { class: "card reserve-form", "aria-labelledby": "reserve-heading" },
  csrfField(),
  h("h2", { id: "reserve-heading", text: "Reserve an EVSE" }),
  h("div", { class: "reserve-fields" },
    field("r-station", "Station", stationSelect, "A connected OCPP 2.0.1 station."),
    field("r-evse", "EVSE id", h("input", { name: "evse_id", type: "number", min: "1", inputmode: "numeric" }),
      "Empty: any EVSE of the station."),
    field("r-token", "Id token", h("input", { name: "id_token", required: true, maxlength: "36", autocomplete: "off" })),
    field("r-type", "Id token type", h("select", { name: "id_token_type" }, TOKEN_TYPES.map((t) => h("option", { value: t, text: t })))),
    field("r-group", "Group id token", h("input", { name: "group_id_token", maxlength: "36", autocomplete: "off" }),
      "Optional: any id token of this group may use it too."),
    field("r-expiry", "Expires", h("input", { name: "expiry", type: "datetime-local", required: true, value: localIn(30) }),
      "Your local time.")),
  h("div", { class: "toolbar" }, h("button", { type: "submit", text: "Reserve" })),
  formError, formResult);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(formError, null);
  formResult.hidden = true;
  const data = new FormData(form);
  const body = {
    station_id: data.get("station_id"),
    id_token: String(data.get("id_token") || "").trim(),
    id_token_type: data.get("id_token_type"),
    expiry_date_time: utc(data.get("expiry")),
  };
  if (data.get("evse_id")) body.evse_id = Number(data.get("evse_id"));
  if (data.get("group_id_token")) body.group_id_token = String(data.get("group_id_token")).trim();
  const submit = form.querySelector("[type=submit]");
  submit.disabled = true;
  try {
    const made = await api("reservations", { method: "POST", body });
    if (made.status === "Accepted") {
      formResult.textContent = `Reservation ${made.reservation_id} accepted by ${made.station_id}.`;
      formResult.hidden = false;
      announce(formResult.textContent);
    } else {
      showError(formError, `${made.station_id} answered ${made.status}: reservation ${made.reservation_id} is not held.`);
    }
  } catch (error) {
    showError(formError, error);
  } finally {
    submit.disabled = false;
    await load();
  }
});

// -- the list ----------------------------------------------------------------------------

const listError = h("p", { class: "error", role: "alert", hidden: true });
const listEl = h("div", { class: "reservations-list" });
const filterForm = h("form", { class: "toolbar", role: "search", "aria-label": "Filter reservations" },
  h("div", { class: "field" }, h("label", { for: "r-filter", text: "Station" }), Object.assign(filterSelect, { id: "r-filter" })),
  h("button", { type: "submit", class: "secondary", text: "Refresh" }));
filterForm.addEventListener("submit", (event) => { event.preventDefault(); load(); });
filterSelect.addEventListener("change", () => load());

async function cancel(reservation, button) {
  showError(listError, null);
  button.disabled = true;
  try {
    const done = await api(`reservations/${reservation.reservation_id}`, { method: "DELETE" });
    announce(`Reservation ${done.reservation_id} ${done.status}.`);
  } catch (error) {
    showError(listError, error);
    button.disabled = false;
  }
  await load();
}

function actions(r) {
  if (!ACTIVE.has(r.status)) return "";
  const button = h("button", {
    type: "button", class: "danger", text: "Cancel",
    "aria-label": `Cancel reservation ${r.reservation_id}`,
    disabled: !session.canWrite,
    title: session.canWrite ? null : "Read-only: you cannot do this.",
  });
  button.addEventListener("click", () => cancel(r, button));
  return button;
}

let latest = 0; // the newest load wins: an older answer (another filter) is dropped
async function load() {
  const mine = ++latest;
  try {
    const rows = await api("reservations", { query: { station_id: filterSelect.value, limit: 200 } });
    if (mine !== latest) return;
    showError(listError, null);
    fill(listEl, table({
      caption: "Reservations, newest first",
      empty: "No reservations.",
      columns: [
        { label: "Id", num: true, value: (r) => String(r.reservation_id) },
        { label: "Station", value: (r) => h("a", { href: `/stations/${encodeURIComponent(r.station_id)}`, text: r.station_id }) },
        { label: "EVSE", value: (r) => (r.evse_id === null ? "any" : String(r.evse_id)) },
        { label: "Id token", value: (r) => h("span", {}, r.id_token, h("span", { class: "note", text: ` (${r.id_token_type})` }), r.group_id_token ? h("span", { class: "note", text: ` group ${r.group_id_token}` }) : null) },
        { label: "Expires", value: (r) => timeEl(r.expiry_date_time) },
        { label: "Status", value: (r) => badge(r.status) },
        { label: "Transaction", value: (r) => r.transaction_id || "—" },
        { label: "Action", value: actions },
      ],
      rows,
    }));
    listEl.dataset.loaded = "true";
  } catch (error) {
    if (mine === latest) showError(listError, error);
  }
}

async function loadStations() {
  try {
    const stations = await api("stations");
    // connected 2.0.1 stations first: those are the ones ReserveNow can reach
    const reachable = (s) => Number(s.connected && s.ocpp_version !== "1.6");
    const options = [...stations].sort((a, b) => reachable(b) - reachable(a)).map((s) => h("option", {
      value: s.station_id,
      text: `${s.station_id} (${s.ocpp_version || "?"}${s.connected ? "" : ", offline"})`,
    }));
    const chosen = stationSelect.value;
    fill(stationSelect, options.length ? options : h("option", { value: "", text: "No stations registered" }));
    if (chosen) stationSelect.value = chosen;
    const filterChosen = filterSelect.value;
    fill(filterSelect, h("option", { value: "", text: "All stations" }),
      stations.map((s) => h("option", { value: s.station_id, text: s.station_id })));
    filterSelect.value = filterChosen;
  } catch (error) {
    showError(formError, error);
  }
}

root.append(form, h("h2", { text: "Reservations" }), filterForm, listError, listEl);
guardWrite(form);
await loadStations();
stationSelect.dataset.loaded = "true";
await load();
// a station's change (a connector Reserved, a transaction that used one) reloads the list
let pending = null;
live({
  stations: () => {
    clearTimeout(pending);
    pending = setTimeout(() => { loadStations(); load(); }, 300);
  },
});
