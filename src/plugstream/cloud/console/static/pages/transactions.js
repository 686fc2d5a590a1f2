// The transactions page: the list of GET /api/v1/transactions, filtered by station, id
// token and start date without a reload. The filters live in the page's URL (so a view
// can be bookmarked or sent, and Back returns to the previous filters), and the "Export
// CSV" link carries them to GET /api/v1/transactions.csv, which streams every match.
import {
  API, api, h, fill, announce, showError, timeEl, fmtWh, fmtNumber, table,
} from "../console.js";

const PAGE_SIZE = 50;
// the URL's query parameters of the filters, in the form's order
const FILTERS = ["station", "id_token", "from", "to"];

const root = document.getElementById("page");
const error = h("p", { class: "error", role: "alert", hidden: true });
const stationList = h("datalist", { id: "station-ids" });

function field(name, label, attrs = {}) {
  const id = `filter-${name}`;
  return h("div", { class: "field" },
    h("label", { for: id, text: label }),
    h("input", { id, name, ...attrs }));
}

const form = h("form", { class: "toolbar filters", role: "search", "aria-label": "Filter transactions" },
  field("station", "Station", { type: "text", list: "station-ids", autocomplete: "off", spellcheck: "false" }),
  field("id_token", "Id token", { type: "text", autocomplete: "off", spellcheck: "false" }),
  field("from", "Started from (date)", { type: "date" }),
  field("to", "Started until (date, inclusive)", { type: "date" }),
  h("div", { class: "actions" },
    h("button", { type: "submit", text: "Apply filters" }),
    h("button", { type: "button", class: "secondary", text: "Clear", onclick: () => { form.reset(); apply(0); } })),
  stationList,
);
const exportLink = h("a", { class: "button secondary export", download: "transactions.csv", text: "Export CSV" });
const summary = h("p", { class: "note summary", id: "tx-summary" });
const results = h("div", { class: "results" });
const prev = h("button", { type: "button", class: "secondary", text: "Newer", onclick: () => apply(state.offset - PAGE_SIZE) });
const next = h("button", { type: "button", class: "secondary", text: "Older", onclick: () => apply(state.offset + PAGE_SIZE) });
const pager = h("nav", { class: "pager", "aria-label": "Pages of transactions" }, prev, next);
const refresh = h("button", { type: "button", class: "secondary", text: "Refresh", onclick: () => load() });

root.append(form, h("div", { class: "toolbar" }, exportLink, refresh), error, summary, results, pager);

/** What the page shows: the filters as the URL has them, and the page's offset. */
const state = { filters: {}, offset: 0 };

function readUrl() {
  const params = new URLSearchParams(location.search);
  state.filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  state.offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
  for (const k of FILTERS) form.elements[k].value = state.filters[k];
}

function pageQuery() {
  const params = new URLSearchParams();
  for (const k of FILTERS) if (state.filters[k]) params.set(k, state.filters[k]);
  if (state.offset) params.set("offset", String(state.offset));
  return params.toString();
}

/** The API's filters: dates are the operator's local days, sent as UTC instants. */
function apiQuery() {
  const { station, id_token: idToken, from, to } = state.filters;
  const query = { station: station || undefined, id_token: idToken || undefined };
  if (from) query.from = new Date(`${from}T00:00:00`).toISOString();
  if (to) {
    const end = new Date(`${to}T00:00:00`);
    end.setDate(end.getDate() + 1);  // "until" a day includes that day
    query.to = end.toISOString();
  }
  return query;
}

function csvHref(query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) params.set(k, v);
  const text = params.toString();
  return `${API}/transactions.csv${text ? `?${text}` : ""}`;
}

function duration(tx) {
  if (!tx.started_at) return "—";
  const end = tx.stopped_at ? new Date(tx.stopped_at) : new Date();
  let seconds = Math.max(0, Math.round((end - new Date(tx.started_at)) / 1000));
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  const text = hours ? `${hours} h ${String(minutes).padStart(2, "0")} min`
    : minutes ? `${minutes} min ${String(seconds).padStart(2, "0")} s` : `${seconds} s`;
  return tx.stopped_at ? text : `${text} so far`;
}

function flagsCell(tx) {
  const count = tx.flags.length;
  if (!count) return h("span", { class: "note", text: "0" });
  const codes = [...new Set(tx.flags.map((f) => f.code))].join(", ");
  return h("span", { class: "badge warn flag-count", title: codes },
    `${count} flag${count === 1 ? "" : "s"}`, h("span", { class: "visually-hidden", text: `: ${codes}` }));
}

const COLUMNS = [
  { label: "Id", value: (t) => h("a", { href: `/transactions/${t.id}`, text: String(t.id), "aria-label": `Transaction ${t.id}` }) },
  { label: "Station", value: (t) => h("a", { href: `/stations/${encodeURIComponent(t.station_id)}`, text: t.station_id }) },
  { label: "EVSE / connector", value: (t) => `${t.evse_id} / ${t.connector_id}` },
  { label: "Id token", value: (t) => (t.id_token ? h("code", { text: t.id_token }) : "—") },
  { label: "Start", value: (t) => timeEl(t.started_at) },
  { label: "Stop", value: (t) => timeEl(t.stopped_at) },
  { label: "Energy", num: true, value: (t) => (t.energy_wh === null ? "—" : h("data", { value: String(t.energy_wh), title: `${t.energy_wh} Wh`, text: fmtWh(t.energy_wh) })) },
  { label: "Duration", num: true, value: duration },
  { label: "Status", value: (t) => (t.active ? h("span", { class: "badge busy", text: "Active" }) : h("span", { class: "badge ok", text: "Ended" })) },
  { label: "Flags", value: flagsCell },
];

let loading = 0;

/** Fetch and draw the page the state says; a newer load wins over a slower older one. */
async function load() {
  const mine = ++loading;
  const query = apiQuery();
  exportLink.href = csvHref(query);
  root.setAttribute("aria-busy", "true");
  try {
    const found = await api("transactions", { query: { ...query, limit: PAGE_SIZE + 1, offset: state.offset } });
    if (mine !== loading) return;
    showError(error, null);
    const rows = found.slice(0, PAGE_SIZE);
    fill(results, table({
      caption: "Transactions, newest first",
      columns: COLUMNS,
      rows,
      empty: Object.values(state.filters).some(Boolean) ? "No transaction matches these filters." : "No transactions yet.",
      rowClass: (t) => (t.flags.length ? "flagged" : null),
    }));
    const first = rows.length ? state.offset + 1 : 0;
    const text = rows.length ? `Transactions ${fmtNumber(first, 0)} to ${fmtNumber(state.offset + rows.length, 0)}` : "No transactions";
    summary.textContent = `${text}${found.length > PAGE_SIZE ? ", more on the next page" : ""}.`;
    prev.disabled = state.offset === 0;
    next.disabled = found.length <= PAGE_SIZE;
    pager.hidden = prev.disabled && next.disabled;
    announce(summary.textContent);
  } catch (err) {
    if (mine === loading) showError(error, err);
  } finally {
    if (mine === loading) root.removeAttribute("aria-busy");
  }
}

/** Take the form's filters (at ``offset``) into the URL and show them. */
function apply(offset) {
  for (const k of FILTERS) state.filters[k] = form.elements[k].value.trim();
  state.offset = Math.max(0, offset);
  const text = pageQuery();
  const url = `${location.pathname}${text ? `?${text}` : ""}`;
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  return load();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  apply(0);
});
window.addEventListener("popstate", () => {
  readUrl();
  load();
});

async function loadStations() {
  try {
    const stations = await api("stations");
    fill(stationList, stations.map((s) => h("option", { value: s.station_id })));
  } catch {
    // only the suggestions are missing: the field still takes any station id
  }
}

readUrl();
load();
loadStations();
