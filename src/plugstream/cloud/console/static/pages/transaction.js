// One transaction: its facts, its flags each explained in words, its power and energy
// over time as charts (from its meter values), the meter values themselves, and what a
// tariff priced it at. Everything from GET /api/v1/transactions/{id} (and /cost when the
// transaction has a cost: asking otherwise would be a 404 in the browser's console).
import {
  api, h, fill, announce, showError, timeEl, fmtNumber, fmtWh, fmtW, table,
} from "../console.js";
import { lineChart } from "../chart.js";

/**
 * What each flag means, for an operator deciding whether to trust or bill a session.
 * The codes are the cloud's (storage/transaction_row.py, storage/lifecycle.py, meter.py,
 * the handlers); the flag's own detail says what exactly was seen.
 */
export const FLAG_EXPLANATIONS = {
  SecondStartOnBusyConnector: "A transaction started on a connector that still had another one running. One of the two was probably never stopped by the station; check which one the customer really used.",
  StartAfterStop: "The station sent a start for this transaction after it had already ended (a late retry or a replayed message). It was kept as a note; the billed data did not change.",
  Overlap: "This transaction's time overlaps another transaction on the same connector. A connector charges one car at a time, so at least one of the times is wrong (often a station clock that jumped).",
  TimeBackwards: "The station's timestamps go backwards: a later message carries an earlier time than one before it (a stop before the start, or a higher sequence number with an older time). The station's clock is suspect.",
  TimeInFuture: "A timestamp lies more than five minutes ahead of the cloud's clock. The station's clock is probably wrong; times of this session may be off.",
  RegisterDecreased: "The energy meter's register went down. A register only counts up, so a reading is wrong, or the meter was replaced or reset during the session. The energy is taken from the highest reading in order.",
  BaselineFromFirstReading: "The meter start value was missing or implausible, so the first register reading of the session was taken as its start. The energy is counted from that reading.",
  MissingStarted: "The cloud first heard of this transaction from an update or end event: its Started event never arrived. Its start time and start reading may be later than the real ones.",
  LateMeterValue: "Meter values arrived after the transaction had ended. They are kept, shown below, and not billed: the billed energy is the one at the stop.",
  ConflictingStop: "A second stop arrived with other data (another time, reading or reason) than the first. The first stop stays billed; the second is kept in this flag.",
  DuplicateStart: "The transaction was started twice. The first start counts; a different id token sent with the second start is recorded here, not written over the first.",
  DuplicateTimestamp: "Two samples of the same measurand carry the same timestamp with different values. The first is stored; the other value is kept in this flag.",
  ValueOutOfRange: "The station sent a number too large or too precise to be stored exactly (e.g. 1e308). It was not read as a value; what was sent is kept in this flag.",
  UnreadableValue: "The station sent a value that is not a number in the JSON number grammar (NaN, Infinity, text...). It was not read; what was sent is kept in this flag.",
  UnreadableIdToken: "The id token sent contained control characters. It was refused (Invalid), never looked up nor stored; the flag keeps its first characters.",
  UnknownTransaction: "The station referred to a transaction the cloud does not know.",
};

const POWER = "Power.Active.Import";
const ENERGY = "Energy.Active.Import.Register";

const root = document.getElementById("page");
const txId = root.dataset.txId;
const error = h("p", { class: "error", role: "alert", hidden: true });
const facts = h("section", { class: "card facts", "aria-labelledby": "facts-h" });
const cost = h("section", { class: "card cost", "aria-labelledby": "cost-h", hidden: true });
const flags = h("section", { class: "flags", "aria-labelledby": "flags-h" });
const powerChart = h("div", { class: "chart-slot", id: "power-chart" });
const energyChart = h("div", { class: "chart-slot", id: "energy-chart" });
const values = h("section", { class: "meter-values", "aria-labelledby": "values-h" });
const refresh = h("button", { type: "button", class: "secondary", text: "Refresh", onclick: () => load(true) });

root.append(
  h("p", { class: "toolbar" }, h("a", { href: "/transactions", text: "All transactions" }), refresh),
  error, facts, cost, flags,
  h("section", { class: "charts-wrap" }, h("h2", { id: "charts-h", text: "Power and energy" }), h("div", { class: "grid" }, powerChart, energyChart)),
  values,
);

function duration(tx) {
  if (!tx.started_at || !tx.stopped_at) return tx.active && tx.started_at ? "running" : "—";
  const seconds = Math.round((new Date(tx.stopped_at) - new Date(tx.started_at)) / 1000);
  const hours = Math.floor(seconds / 3600), minutes = Math.floor((seconds % 3600) / 60);
  return `${hours ? `${hours} h ` : ""}${minutes} min ${seconds % 60} s`;
}

/** Exact Wh as sent, with the rounded kWh beside it when that reads easier. */
function exactWh(wh) {
  if (wh === null || wh === undefined) return "—";
  return Math.abs(wh) >= 1000 ? `${wh} Wh (${fmtWh(wh)})` : `${wh} Wh`;
}

function drawFacts(tx) {
  const rows = [
    ["Station", h("a", { href: `/stations/${encodeURIComponent(tx.station_id)}`, text: tx.station_id })],
    ["Station's transaction id", h("code", { text: tx.transaction_id })],
    ["EVSE / connector", `${tx.evse_id} / ${tx.connector_id}`],
    ["Id token", tx.id_token ? h("code", { text: tx.id_token }) : "—"],
    ["Status", tx.active ? h("span", { class: "badge busy", text: "Active" }) : h("span", { class: "badge ok", text: "Ended" })],
    ["Started", timeEl(tx.started_at)],
    ["Stopped", timeEl(tx.stopped_at)],
    ["Duration", duration(tx)],
    ["Meter start", exactWh(tx.meter_start_wh)],
    ["Meter stop", exactWh(tx.meter_stop_wh)],
    ["Energy delivered", exactWh(tx.energy_wh)],
    ["Stop reason", tx.stop_reason || "—"],
    ["Offline", tx.offline ? "Yes: started or stopped while the station was offline" : "No"],
  ];
  if (tx.total_cost !== null && tx.total_cost !== undefined) {
    rows.push(["Cost", `${tx.total_cost} ${tx.currency || ""} (${tx.cost_final ? "final" : "running"}, VAT included)`]);
  }
  fill(facts, h("h2", { id: "facts-h", text: "Facts" }),
    h("dl", { class: "facts-list" }, rows.map(([term, value]) => [h("dt", { text: term }), h("dd", {}, value)])));
}

function explain(code) {
  return FLAG_EXPLANATIONS[code] || "A flag of the cloud's data checks; its detail says what was seen.";
}

function drawFlags(tx) {
  const heading = h("h2", { id: "flags-h", text: `Flags (${tx.flags.length})` });
  if (!tx.flags.length) {
    fill(flags, heading, h("p", { class: "note", text: "No flags: nothing suspect was seen in this transaction's data." }));
    return;
  }
  fill(flags, heading, h("ul", { class: "flag-list" }, tx.flags.map((f) => h("li", { class: "card flag", dataset: { code: f.code } },
    h("p", { class: "flag-head" }, h("span", { class: "badge warn", text: f.code }), " ", timeEl(f.at)),
    h("p", { class: "flag-why", text: explain(f.code) }),
    h("p", { class: "flag-detail" }, h("span", { class: "note", text: "Seen: " }), h("code", { text: f.detail }))))));
}

/**
 * One value per time for a measurand: the total (no phase) when the station sent one,
 * else the phases added up. Values are in the stored unit (W, Wh: the cloud turns kW
 * and kWh into W and Wh).
 */
function perTime(samples, measurand) {
  const mine = samples.filter((s) => s.measurand === measurand && (!s.location || s.location === "Outlet"));
  const totals = mine.filter((s) => !s.phase);
  // without a total, the phases' own values add up to it (L1, L1-N...; not N, not L1-L2)
  const parts = totals.length ? totals : mine.filter((s) => /^L\d(-N)?$/.test(s.phase));
  const byTime = new Map();
  for (const s of parts) {
    if (totals.length && byTime.has(s.timestamp)) continue;  // one total per time: the stored one
    byTime.set(s.timestamp, (byTime.get(s.timestamp) || 0) + Number(s.value));
  }
  return [...byTime.entries()].sort((a, b) => new Date(a[0]) - new Date(b[0]));
}

function drawCharts(tx) {
  const samples = tx.meter_values;
  const power = perTime(samples, POWER);
  lineChart(powerChart, { title: "Power (W)", series: [{ label: "Active power", unit: "W", points: power }], yLabel: "W" });
  // energy delivered: each register reading less the session's baseline (the meter
  // start, else the first reading)
  const registers = perTime(samples, ENERGY);
  const base = tx.meter_start_wh ?? (registers.length ? registers[0][1] : 0);
  const energy = registers.map(([at, wh]) => [at, wh - base]);
  lineChart(energyChart, { title: "Energy delivered (Wh)", series: [{ label: "Energy delivered", unit: "Wh", points: energy }], yLabel: "Wh" });
}

function drawValues(tx) {
  fill(values, h("h2", { id: "values-h", text: `Meter values (${tx.meter_values.length})` }), table({
    caption: "Every sample, oldest first",
    columns: [
      { label: "Time", value: (s) => timeEl(s.timestamp) },
      { label: "Measurand", value: (s) => s.measurand },
      { label: "Phase", value: (s) => s.phase || "—" },
      { label: "Value", num: true, value: (s) => String(s.value) },
      { label: "Unit", value: (s) => s.unit || "—" },
      { label: "Reads", num: true, value: (s) => (s.unit === "W" ? fmtW(s.value) : s.unit === "Wh" ? fmtWh(s.value) : fmtNumber(s.value, 2)) },
      { label: "Context", value: (s) => s.context || "—" },
      { label: "Location", value: (s) => s.location || "—" },
    ],
    rows: tx.meter_values,
    empty: "No meter values.",
  }));
}

const COST_PARTS = [
  ["start_fee", "Start fee"], ["energy", "Energy"], ["charging_time", "Charging time"],
  ["idle_time", "Idle time"], ["net", "Net"], ["vat", "VAT"], ["total_cost", "Total (VAT included)"],
];

async function drawCost(tx) {
  if (tx.total_cost === null || tx.total_cost === undefined) {
    cost.hidden = true;
    return;
  }
  try {
    const c = await api(`transactions/${encodeURIComponent(txId)}/cost`);
    fill(cost, h("h2", { id: "cost-h", text: `Cost: ${c.total_cost} ${c.currency}${c.final ? "" : " so far"}` }),
      h("p", { class: "note", text: `Tariff ${c.tariff_name}; ${c.final ? "final" : "running"}; ${exactWh(c.energy_wh)} and ${fmtNumber(c.charging_s, 0)} s charging priced.` }),
      h("dl", { class: "facts-list" }, COST_PARTS.map(([key, label]) => [h("dt", { text: label }), h("dd", { text: `${c[key]} ${c.currency}` })])));
    cost.hidden = false;
  } catch (err) {
    if (err.status !== 404) showError(error, err);
  }
}

async function load(again = false) {
  root.setAttribute("aria-busy", "true");
  try {
    const tx = await api(`transactions/${encodeURIComponent(txId)}`);
    showError(error, null);
    drawFacts(tx);
    drawFlags(tx);
    drawCharts(tx);
    drawValues(tx);
    await drawCost(tx);
    if (again) announce(`Transaction ${txId} reloaded: ${tx.meter_values.length} meter values, ${tx.flags.length} flags.`);
  } catch (err) {
    showError(error, err);
  } finally {
    root.removeAttribute("aria-busy");
  }
}

load();
