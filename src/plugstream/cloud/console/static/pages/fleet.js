// The fleet: every station with its model, versions, connection and connectors, kept up
// to date from the live stream without a reload; counts, search and filters; the
// overview's last hour as two small charts.
//
// Built for 10,000 stations: each station is kept in a Map by id with its search text and
// (once listed) its row; a live change replaces only that station's row and moves the
// counts by its difference; the page lists a page of the matching stations at a time.
import { api, h, fill, announce, showError, timeEl, badge, live, fmtNumber } from "../console.js";
import { lineChart } from "../chart.js";

// Connector statuses of OCPP 1.6 (ChargePointStatus) and 2.0.1 (ConnectorStatusEnumType).
const STATUSES = [
  "Available", "Occupied", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV",
  "Finishing", "Reserved", "Unavailable", "Faulted",
];
const COUNTS = [
  ["connected", "Connected"], ["charging", "Charging"], ["faulted", "Faulted"], ["offline", "Offline"],
];
const HOUR_MS = 3600e3;
const PAGE = 200; // rows listed at a time

const root = document.getElementById("page");
const params = new URLSearchParams(location.search);

// -- the page's parts ---------------------------------------------------------------------

const errorEl = h("p", { class: "error", role: "alert", hidden: true });
const liveNote = h("p", { class: "note live-note", hidden: true, text: "Live updates paused: reconnecting…" });
const countEls = {};
const countsEl = h("ul", { class: "counts", "aria-label": "Stations by state" },
  COUNTS.map(([key, label]) => h("li", { dataset: { count: key } },
    countEls[key] = h("span", { class: "n", text: "0" }), label)));

const search = h("input", { id: "fleet-search", type: "search", value: params.get("q") || "", autocomplete: "off",
  placeholder: "id, model, vendor, firmware" });
const connection = h("select", { id: "fleet-connection" },
  [["", "All"], ["connected", "Connected"], ["offline", "Offline"]].map(([value, text]) => h("option", { value, text })));
const status = h("select", { id: "fleet-status" },
  h("option", { value: "", text: "Any" }), STATUSES.map((s) => h("option", { value: s, text: s })));
connection.value = params.get("connection") || "";
status.value = params.get("status") || "";
const filters = h("div", { class: "toolbar fleet-filters", role: "search", "aria-label": "Filter stations" },
  h("div", { class: "field" }, h("label", { for: "fleet-search", text: "Search" }), search),
  h("div", { class: "field" }, h("label", { for: "fleet-connection", text: "Connection" }), connection),
  h("div", { class: "field" }, h("label", { for: "fleet-status", text: "Connector status" }), status));
const shownEl = h("p", { class: "note fleet-shown", id: "fleet-shown", text: "Loading stations…" });

const COLUMNS = ["Station", "Model", "OCPP", "Firmware", "Connection", "Connectors", "Last seen"];
const tbody = h("tbody");
const tableEl = h("table", { class: "fleet-table", "aria-labelledby": "stations-heading", "aria-describedby": "fleet-shown" },
  h("thead", {}, h("tr", {}, COLUMNS.map((label) => h("th", { scope: "col", text: label })))),
  tbody);
const emptyEl = h("p", { class: "note fleet-empty", hidden: true });
const moreButton = h("button", { type: "button", class: "secondary fleet-more", hidden: true });

const connectedChart = h("div", { class: "fleet-chart", id: "chart-connected" });
const rateChart = h("div", { class: "fleet-chart", id: "chart-rate" });

fill(root,
  errorEl, liveNote, countsEl,
  h("section", { class: "fleet-overview", "aria-labelledby": "overview-heading" },
    h("h2", { id: "overview-heading", text: "The last hour" }),
    h("div", { class: "fleet-charts" }, connectedChart, rateChart)),
  h("section", { "aria-labelledby": "stations-heading" },
    h("h2", { id: "stations-heading", text: "Stations" }),
    filters, shownEl,
    h("div", { class: "table-wrap" }, tableEl),
    emptyEl, moreButton));

// -- stations -----------------------------------------------------------------------------

/** id -> {station, row, text (lower-case search text), flags} */
const fleet = new Map();
let order = []; // station ids, sorted: a new station's row goes in its place
const totals = { connected: 0, charging: 0, faulted: 0, offline: 0 };

/** A connector's states: its status and, in a 2.0.1 transaction, its chargingState (its
 * status then says only Occupied, whether the car charges or waits). */
function statesOf(c) {
  return c.charging_state ? [c.status, c.charging_state] : [c.status];
}

function flagsOf(station) {
  const statuses = station.connectors.flatMap(statesOf);
  return {
    connected: station.connected ? 1 : 0,
    charging: statuses.includes("Charging") ? 1 : 0,
    faulted: statuses.includes("Faulted") ? 1 : 0,
    offline: station.connected ? 0 : 1,
  };
}

function addFlags(flags, sign) {
  for (const key of Object.keys(totals)) totals[key] += sign * flags[key];
}

function showCounts() {
  for (const key of Object.keys(totals)) countEls[key].textContent = fmtNumber(totals[key], 0);
}

/** "1: Charging"; 1.6's connector 0 is the station itself; a 2.0.1 EVSE with more than one
 * connector names each as evse/connector. */
function connectorLabel(c, station) {
  if (station.ocpp_version !== "2.0.1") return c.connector_id === 0 ? "Station" : String(c.connector_id);
  const shared = station.connectors.some((o) => o !== c && o.evse_id === c.evse_id);
  return shared ? `${c.evse_id}/${c.connector_id}` : String(c.evse_id);
}

function modelOf(station) {
  return [station.vendor, station.model].filter(Boolean).join(" ") || "—";
}

function rowOf(station) {
  const connectors = station.connectors.length
    ? h("ul", { class: "connectors" }, station.connectors.map((c) => h("li", {},
      badge(c.charging_state === "Charging" ? "Charging" : c.status,
        `${connectorLabel(c, station)}: ${c.status}${c.charging_state ? ` · ${c.charging_state}` : ""}${c.error_code && c.error_code !== "NoError" ? ` (${c.error_code})` : ""}`))))
    : "—";
  return h("tr", { dataset: { station: station.station_id } },
    h("th", { scope: "row" }, h("a", { href: `/stations/${encodeURIComponent(station.station_id)}`, text: station.station_id })),
    h("td", { text: modelOf(station) }),
    h("td", { text: station.ocpp_version || "—" }),
    h("td", { text: station.firmware_version || "—" }),
    h("td", {}, station.connected ? badge("Connected") : badge("Offline")),
    h("td", {}, connectors),
    h("td", {}, timeEl(station.last_seen)));
}

function entryOf(station) {
  const text = [station.station_id, station.vendor, station.model, station.firmware_version]
    .filter(Boolean).join(" ").toLowerCase();
  return { station, row: null, text, flags: flagsOf(station) }; // row: made when listed
}

function rowFor(entry) {
  if (!entry.row) entry.row = rowOf(entry.station);
  return entry.row;
}

// -- filtering and listing ------------------------------------------------------------------
// The rows in the page are the first ``limit`` stations that match, never all 10,000:
// a browser lays out a table of ten thousand rows for seconds, at every change of it.

function matcher() {
  const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const want = connection.value;
  const state = status.value;
  return (entry) => {
    if (want === "connected" && !entry.station.connected) return false;
    if (want === "offline" && entry.station.connected) return false;
    if (state && !entry.station.connectors.some((c) => statesOf(c).includes(state))) return false;
    return words.every((w) => entry.text.includes(w));
  };
}

let matches = matcher();
let matching = []; // ids of the stations that match, in order
let limit = PAGE;
let loadedOnce = false;
let pending = null; // while the list is read: the live changes that came meanwhile

function showShown() {
  const total = fleet.size, n = matching.length;
  const [all, some, first] = [total, n, limit].map((v) => fmtNumber(v, 0));
  let text = n === total ? `Showing all ${all} stations.` : `Showing ${some} of ${all} stations.`;
  if (n > limit) text = `${n === total ? `${all} stations` : `${some} of ${all} stations match`}: the first ${first} are listed.`;
  shownEl.textContent = text;
  moreButton.hidden = n <= limit;
  if (n > limit) moreButton.textContent = `List ${fmtNumber(Math.min(PAGE, n - limit), 0)} more`;
  emptyEl.hidden = n > 0 || (total === 0 && !loadedOnce);
  emptyEl.textContent = total === 0 ? "No stations yet: they appear here when they connect." : "No station matches the search and filters.";
}

/** The matching stations' rows, the first ``limit`` of them, and the words above them. */
function list() {
  matching = order.filter((id) => matches(fleet.get(id)));
  const rows = document.createDocumentFragment();
  for (const id of matching.slice(0, limit)) rows.append(rowFor(fleet.get(id)));
  tbody.replaceChildren(rows);
  showShown();
}

moreButton.addEventListener("click", () => {
  limit += PAGE;
  list();
});

let filterTimer = 0;
function filtersChanged() {
  matches = matcher();
  limit = PAGE;
  list();
  const query = new URLSearchParams();
  if (search.value.trim()) query.set("q", search.value.trim());
  if (connection.value) query.set("connection", connection.value);
  if (status.value) query.set("status", status.value);
  const text = query.toString();
  history.replaceState(null, "", text ? `?${text}` : location.pathname);
  // Said once typing pauses, not at every key.
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => announce(shownEl.textContent), 400);
}
search.addEventListener("input", filtersChanged);
connection.addEventListener("change", filtersChanged);
status.addEventListener("change", filtersChanged);

// -- the whole list, and live changes --------------------------------------------------------

/** Every station afresh (first load, a reconnect, a resync). */
function setAll(stations) {
  fleet.clear();
  for (const key of Object.keys(totals)) totals[key] = 0;
  order = [];
  for (const station of stations) {
    const entry = entryOf(station);
    fleet.set(station.station_id, entry);
    order.push(station.station_id);
    addFlags(entry.flags, 1);
  }
  order.sort();  // the API's order already; sorted here so that insertIndex holds
  loadedOnce = true;
  list();
  showCounts();
}

function insertIndex(id) {
  let lo = 0, hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (order[mid] < id) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** Stations that changed, as GET /stations writes them: a listed one's row is replaced
 * in place; the list is made again only when a station comes into or leaves it. */
function update(stations) {
  const before = { ...totals };
  let relist = false;
  for (const station of stations) {
    const old = fleet.get(station.station_id);
    const entry = entryOf(station);
    const show = matches(entry);
    if (old) {
      addFlags(old.flags, -1);
      if (show !== matches(old)) relist = true;
      else if (old.row && old.row.isConnected) old.row.replaceWith(rowFor(entry));
    } else {
      order.splice(insertIndex(station.station_id), 0, station.station_id);
      relist = relist || show;
    }
    addFlags(entry.flags, 1);
    fleet.set(station.station_id, entry);
  }
  if (relist) list();
  else showShown();
  showCounts();
  if (COUNTS.some(([key]) => totals[key] !== before[key])) countsChanged();
}

// A burst of changes is said once, when it settles.
let countsTimer = 0;
function countsChanged() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(() => announce(COUNTS.map(([key, label]) => `${totals[key]} ${label.toLowerCase()}`).join(", ")), 1500);
}

// -- the overview ------------------------------------------------------------------------------

let samples = [];

function drawOverview() {
  const since = Date.now() - HOUR_MS;
  samples = samples.filter((s) => new Date(s.at).getTime() >= since);
  chart(connectedChart, "Connected stations", "stations", samples.map((s) => [s.at, s.connected]));
  chart(rateChart, "OCPP messages per second", "msg/s", samples.map((s) => [s.at, s.messages_per_s]));
}

/** A one-series line chart whose newest point is marked: one sample alone still shows. */
function chart(container, title, unit, points) {
  const figure = lineChart(container, { title, series: [{ label: title, unit, points }] });
  const path = figure.querySelector("path.series");
  const end = path && /(-?[\d.]+),(-?[\d.]+)$/.exec(path.getAttribute("d"));
  if (end) {
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("class", "last-point");
    dot.setAttribute("cx", end[1]);
    dot.setAttribute("cy", end[2]);
    dot.setAttribute("r", "4");
    path.after(dot);
  }
}

// -- loading --------------------------------------------------------------------------------

let loading = null; // the read in progress
let again = false; // another read was asked for while one ran

async function load() {
  if (loading) { again = true; return loading; }
  loading = (async () => {
    do {
      again = false;
      pending = [];
      try {
        const [stations, overview] = await Promise.all([api("stations"), api("overview")]);
        setAll(stations);
        // the fleet now closes the line; the next sample of the hub takes its place
        samples = [...overview.samples, { ...overview.now, current: true }];
        drawOverview();
        showError(errorEl, null);
      } catch (error) {
        showError(errorEl, error);
      }
      // Changes sent while the list was read may be older or newer than it; a change
      // after the read is always sent again, so applying them in order ends right.
      const late = pending;
      pending = null;
      if (late.length && loadedOnce) update(late.flat());
    } while (again);
    loading = null;
  })();
  return loading;
}

const RECONNECT_MS = 10e3;
let hello = false;

function listen() {
  const source = live({
    hello() {
      // The stream is open (again): read everything, as changes may have been missed.
      hello = true;
      liveNote.hidden = true;
      load();
    },
    stations(stations) {
      if (pending) pending.push(stations);
      else if (loadedOnce) update(stations);
    },
    overview(sample) {
      samples = samples.filter((s) => !s.current);
      samples.push(sample);
      drawOverview();
    },
    resync() {
      load();
    },
  });
  source.addEventListener("error", () => {
    liveNote.hidden = false;
    // Refused (503: too many pages open) or not reachable: the page still shows the
    // fleet as it is now, and asks again later (the browser retries only the latter).
    if (!hello && !loadedOnce && !loading) load();
    if (source.readyState === EventSource.CLOSED) setTimeout(listen, RECONNECT_MS);
  });
}

listen();
