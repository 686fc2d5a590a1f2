// Security events: what stations reported (SecurityEventNotification) and the connections
// the gateway refused (counted: one row per station id, address and reason), newest first.
// The API filters by station; type and time filter what it returned, here in the page.
import { api, fill, fmtNumber, h, live, showError, table, timeEl, field } from "../console.js";

const root = document.getElementById("page");
let events = [];

const stationInput = h("input", { id: "se-station", name: "station_id", maxlength: 255, autocomplete: "off" });
const typeSelect = h("select", { id: "se-type", name: "type" }, h("option", { value: "", text: "Any" }));
const sourceSelect = h("select", { id: "se-source", name: "source" },
  h("option", { value: "", text: "Any" }),
  h("option", { value: "station", text: "Reported by the station" }),
  h("option", { value: "gateway", text: "Refused by the gateway" }));
const sinceInput = h("input", { id: "se-since", name: "since", type: "datetime-local" });
const untilInput = h("input", { id: "se-until", name: "until", type: "datetime-local" });
const limitSelect = h("select", { id: "se-limit", name: "limit" }, [100, 500, 1000].map((n) => h("option", { value: n, text: String(n) })));
const error = h("p", { class: "error", role: "alert", hidden: true });
const countsEl = h("ul", { class: "counts", id: "se-counts", "aria-label": "Counts of the events shown" });
const listEl = h("div", { id: "se-list" });
const shownEl = h("p", { class: "note", id: "se-shown", "aria-live": "polite" });


// a filter form, not a write: it only reads, so a read-only operator uses it too
const filters = h("form", { class: "toolbar se-filters", role: "search", "aria-label": "Filter security events" },
  field(stationInput, "Station"),
  field(typeSelect, "Event type"),
  field(sourceSelect, "Source"),
  field(sinceInput, "Last seen from"),
  field(untilInput, "Last seen until"),
  field(limitSelect, "Newest"),
  h("button", { type: "submit", text: "Apply" }),
  h("button", { type: "button", class: "secondary", text: "Clear", onclick: () => { filters.reset(); load(); } }));

filters.addEventListener("submit", (event) => { event.preventDefault(); load(); });
for (const control of [typeSelect, sourceSelect, sinceInput, untilInput]) control.addEventListener("change", render);

function matches(e) {
  if (typeSelect.value && e.type !== typeSelect.value) return false;
  if (sourceSelect.value && e.source !== sourceSelect.value) return false;
  const last = new Date(e.last_seen);
  if (sinceInput.value && last < new Date(sinceInput.value)) return false;
  if (untilInput.value && last > new Date(untilInput.value)) return false;
  return true;
}

function count(label, n, id) {
  return h("li", { id }, h("span", { class: "n", text: fmtNumber(n, 0) }), label);
}

function render() {
  // the types offered are those in the events read, plus the one chosen
  const chosen = typeSelect.value;
  const types = [...new Set([...events.map((e) => e.type), chosen].filter(Boolean))].sort();
  const offered = [...typeSelect.options].slice(1).map((o) => o.value);
  if (offered.join("\n") !== types.join("\n")) {
    fill(typeSelect, h("option", { value: "", text: "Any" }), types.map((t) => h("option", { value: t, text: t })));
    typeSelect.value = chosen;
  }

  const shown = events.filter(matches);
  const refusals = shown.filter((e) => e.source === "gateway");
  fill(countsEl,
    count("rows shown", shown.length, "se-count-rows"),
    count("reported by stations", shown.length - refusals.length, "se-count-station"),
    count("refused connections", refusals.reduce((n, e) => n + e.count, 0), "se-count-refused"),
    count("stations involved", new Set(shown.map((e) => e.station_id)).size, "se-count-stations"));
  shownEl.textContent = `${shown.length} of ${events.length} events read, newest first.`;
  fill(listEl, table({
    caption: "Security events, newest first",
    columns: [
      { label: "Last seen", value: (e) => timeEl(e.last_seen) },
      { label: "Station", value: (e) => h("a", { href: `/stations/${encodeURIComponent(e.station_id)}`, text: e.station_id }) },
      { label: "Type", value: (e) => h("strong", { text: e.type }) },
      { label: "Source", value: (e) => (e.source === "gateway" ? h("span", { class: "badge bad", text: "Refused by gateway" }) : h("span", { class: "badge warn", text: "Station" })) },
      { label: "Count", num: true, value: (e) => fmtNumber(e.count, 0) },
      { label: "First seen", value: (e) => timeEl(e.first_seen) },
      { label: "Address", value: (e) => e.address || "—" },
      { label: "Technical info", value: (e) => (e.tech_info ? h("span", { class: "se-info", text: e.tech_info }) : "—") },
    ],
    rows: shown,
    rowClass: (e) => `se-event se-${e.source}`,
    empty: events.length ? "No event matches the filters." : "No security events.",
  }));
}

let loading = null;
let drawn = false;
async function load() {
  if (loading) return loading;
  loading = (async () => {
    try {
      const read = await api("security-events", {
        query: { station_id: stationInput.value.trim(), limit: limitSelect.value },
      });
      // newest first by when it was last seen (a refusal's row moves up when it repeats)
      read.sort((a, b) => new Date(b.last_seen) - new Date(a.last_seen));
      showError(error, null);
      // drawn again only when something changed: a busy fleet's live re-reads keep focus
      if (JSON.stringify(read) === JSON.stringify(events) && drawn) return;
      events = read;
      drawn = true;
      render();
    } catch (problem) {
      showError(error, problem);
    } finally {
      loading = null;
    }
  })();
  return loading;
}

fill(root,
  filters,
  h("p", { class: "note", text: "Refused connections are counted: one row per station id, address and reason, with when it was first and last seen." }),
  error, countsEl, shownEl, listEl,
  h("p", {}, h("button", { type: "button", class: "secondary", id: "se-refresh", text: "Refresh", onclick: load })));

// a station's message may be a SecurityEventNotification: read again when stations change
const RELOAD_MS = 3000; // at most one re-read this often, however busy the fleet
let pending = null;
live({
  stations: () => {
    if (pending !== null) return;
    pending = setTimeout(() => { pending = null; load(); }, RELOAD_MS);
  },
  resync: load,
});

load();
