// The sites and limits page (2.0.1 functional block K): each site (a grid connection's
// maximum current per phase and its stations) with how the cloud divides that current
// among the transactions running there; and per station its charging profiles, the
// composite schedule on demand, and forms to set (SetChargingProfile) or clear
// (ClearChargingProfile) one. The smart-charging API speaks camelCase, as OCPP does.
import {
  announce, api, badge, csrfField, fill, fmtNumber, guardWrite, h, jsonBlock, live, session,
  describeError, showError, table, timeEl, field as labelled,
} from "../console.js";

const DEFAULT_STATION_MAX_A = 32; // the API's, for a station given no maximum of its own

const root = document.getElementById("page");


/** A field whose control gets its id here. */
const field = (id, label, control, hint) => labelled(Object.assign(control, { id }), label, hint);

function writeButton(text, label, cls, onclick) {
  const button = h("button", {
    type: "button", class: cls, text, "aria-label": label,
    disabled: !session.canWrite, title: session.canWrite ? null : "Read-only: you cannot do this.",
  });
  button.addEventListener("click", () => onclick(button));
  return button;
}

const amps = (a) => `${fmtNumber(a, 1)} A`;
let stations = [];

// -- sites -------------------------------------------------------------------------------

const sitesError = h("p", { class: "error", role: "alert", hidden: true });
const sitesEl = h("div", { class: "sites" });

async function drawSite(site) {
  const allocationEl = h("div", { class: "allocation" });
  const card = h("section", { class: "card site", "aria-labelledby": `site-${site.siteId}` },
    h("h3", { id: `site-${site.siteId}`, text: site.name }),
    h("p", {}, `Limit ${amps(site.maxCurrentA)} per phase, ${site.phases} phase${site.phases === 1 ? "" : "s"}. `,
      site.stationIds.length ? "" : h("span", { class: "note", text: "No stations yet." })),
    site.stationIds.length ? h("ul", { class: "site-stations" }, site.stationIds.map((sid) => h("li", {},
      h("a", { href: `/stations/${encodeURIComponent(sid)}`, text: sid }),
      h("span", { class: "note", text: ` up to ${amps(site.stationMaxCurrentA[sid])}` })))) : null,
    allocationEl,
    h("div", { class: "toolbar" },
      writeButton("Edit", `Edit site ${site.name}`, "secondary", () => {
        editing(site);
        siteForm.scrollIntoView({ block: "start" });
        siteForm.elements.name.focus();
      }),
      writeButton("Delete", `Delete site ${site.name}`, "danger", (b) => deleteSite(site, b))));
  await drawAllocation(site, allocationEl);
  return card;
}

/** The site's division now: one row per running transaction and the share it was given. */
async function drawAllocation(site, el) {
  try {
    const a = await api(`sites/${site.siteId}/allocation`);
    fill(el,
      h("p", {}, `Allocated ${amps(a.totalA)} of ${amps(a.maxCurrentA)}. `,
        a.oversubscribed ? badge("Faulted", "Oversubscribed: some transactions wait at 0 A") : null),
      table({
        caption: `Allocation of ${site.name}`,
        empty: "No transaction is running at this site.",
        columns: [
          { label: "Station", value: (s) => s.stationId },
          { label: "EVSE", num: true, value: (s) => String(s.evseId) },
          { label: "Transaction", value: (s) => s.transactionId },
          { label: "Share", num: true, value: (s) => (Number(s.limitA) === 0 ? "0 A (waits: under 6 A)" : amps(s.limitA)) },
        ],
        rows: a.shares,
      }));
    el.dataset.loaded = "true";
  } catch (error) {
    fill(el, h("p", { class: "error", role: "alert", text: `Allocation: ${describeError(error)}` }));
  }
}

async function deleteSite(site, button) {
  showError(sitesError, null);
  button.disabled = true;
  try {
    await api(`sites/${site.siteId}`, { method: "DELETE" });
    announce(`Site ${site.name} deleted.`);
    if (siteForm.elements.site_id.value === String(site.siteId)) editing(null);
  } catch (error) {
    showError(sitesError, error);
    button.disabled = false;
  }
  await loadSites();
}

let latest = 0; // the newest load wins: one begun before a change must not draw last
async function loadSites() {
  const mine = ++latest;
  try {
    const found = await api("sites");
    const cards = await Promise.all(found.map(drawSite));
    if (mine !== latest) return;
    fill(sitesEl, cards.length ? cards : h("p", { class: "note", text: "No sites yet." }));
    showError(sitesError, null);
    sitesEl.dataset.loaded = "true";
  } catch (error) {
    if (mine === latest) showError(sitesError, error);
  }
}

// -- the site form: create, or edit the one picked ---------------------------------------

const siteError = h("p", { class: "error", role: "alert", hidden: true });
const siteResult = h("p", { class: "ok", hidden: true });
const siteHeading = h("h2", { id: "site-heading", text: "New site" });
const siteSubmit = h("button", { type: "submit", text: "Create site" });
const siteNew = h("button", { type: "button", class: "secondary", text: "New site instead", hidden: true });
const memberList = h("div", { class: "members" });
const siteForm = h("form", { class: "card site-form", "aria-labelledby": "site-heading" },
  csrfField(),
  siteHeading,
  h("input", { type: "hidden", name: "site_id", value: "" }),
  h("div", { class: "site-fields" },
    field("s-name", "Name", h("input", { name: "name", required: true, maxlength: "255" })),
    field("s-max", "Limit (A per phase)", h("input", { name: "max_current_a", type: "number", required: true, min: "0.1", step: "0.1", value: "32" }),
      "The grid connection's maximum current."),
    field("s-phases", "Phases", h("select", { name: "phases" }, h("option", { value: "3", text: "3" }), h("option", { value: "1", text: "1" })))),
  h("fieldset", {}, h("legend", { text: "Stations" }),
    h("p", { class: "hint note", text: `Tick the stations on this connection; a station's own maximum is ${DEFAULT_STATION_MAX_A} A unless given.` }),
    memberList),
  h("div", { class: "toolbar" }, siteSubmit, siteNew),
  siteError, siteResult);

/** The ticked stations and their maxima as the form holds them now. */
function ticked() {
  const out = {};
  for (const box of siteForm.querySelectorAll("input[name=member]:checked")) {
    const max = siteForm.querySelector(`input[name="max-${CSS.escape(box.value)}"]`);
    out[box.value] = max && max.value ? Number(max.value) : null;
  }
  return out;
}

/** A row per registered station: ticked for the site's members (or ``chosen``). */
function drawMembers(site, chosen = site ? site.stationMaxCurrentA : {}) {
  const rows = stations.map((s, i) => {
    const box = h("input", { type: "checkbox", id: `m-${i}`, name: "member", value: s.station_id, checked: s.station_id in chosen });
    const max = h("input", {
      type: "number", id: `m-${i}-max`, name: `max-${s.station_id}`, min: "6", max: "1000", step: "0.1",
      placeholder: String(DEFAULT_STATION_MAX_A), value: chosen[s.station_id] == null ? null : String(chosen[s.station_id]),
      class: "member-max",
    });
    return h("div", { class: "member" },
      h("label", { for: `m-${i}`, class: "member-name" }, box, ` ${s.station_id}`),
      h("label", { for: `m-${i}-max`, class: "visually-hidden", text: `${s.station_id} maximum (A)` }), max,
      h("span", { class: "note", "aria-hidden": "true", text: "A max" }));
  });
  fill(memberList, rows.length ? rows : h("p", { class: "note", text: "No stations registered." }));
  if (!session.canWrite) guardWrite(siteForm);
}

function editing(site) {
  const el = siteForm.elements;
  el.site_id.value = site ? String(site.siteId) : "";
  el.name.value = site ? site.name : "";
  el.max_current_a.value = site ? String(site.maxCurrentA) : "32";
  el.phases.value = site ? String(site.phases) : "3";
  drawMembers(site);
  siteHeading.textContent = site ? `Edit site ${site.name}` : "New site";
  siteSubmit.textContent = site ? "Save site" : "Create site";
  siteNew.hidden = !site;
  showError(siteError, null);
  siteResult.hidden = true;
}

siteNew.addEventListener("click", () => { editing(null); siteForm.elements.name.focus(); });

siteForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(siteError, null);
  siteResult.hidden = true;
  const el = siteForm.elements;
  const members = ticked();
  const stationIds = Object.keys(members);
  const stationMaxCurrentA = Object.fromEntries(Object.entries(members).filter(([, max]) => max !== null));
  const body = {
    name: el.name.value.trim(),
    maxCurrentA: Number(el.max_current_a.value),
    phases: Number(el.phases.value),
    stationIds,
    stationMaxCurrentA,
  };
  const id = el.site_id.value;
  siteSubmit.disabled = true;
  try {
    const saved = await api(id ? `sites/${id}` : "sites", { method: id ? "PUT" : "POST", body });
    editing(null);
    siteResult.textContent = `Site ${saved.name} ${id ? "saved" : "created"}: ${amps(saved.maxCurrentA)} for ${saved.stationIds.length} station(s).`;
    siteResult.hidden = false;
    announce(siteResult.textContent);
    await loadSites();
  } catch (error) {
    showError(siteError, error);
  } finally {
    siteSubmit.disabled = false;
  }
});

// -- a station's charging profiles -------------------------------------------------------

const stationSelect = h("select", { name: "station" });
const profilesError = h("p", { class: "error", role: "alert", hidden: true });
const profilesEl = h("div", { class: "profiles" });

function exampleProfile() {
  const start = new Date();
  start.setSeconds(0, 0);
  return {
    id: 100,
    stackLevel: 1,
    chargingProfilePurpose: "TxDefaultProfile",
    chargingProfileKind: "Absolute",
    chargingSchedule: [{
      id: 1,
      startSchedule: start.toISOString(),
      chargingRateUnit: "A",
      chargingSchedulePeriod: [{ startPeriod: 0, limit: 16 }],
    }],
  };
}

const setError = h("p", { class: "error", role: "alert", hidden: true });
const setResult = h("p", { class: "ok", hidden: true });
const setForm = h("form", { class: "card set-profile", "aria-labelledby": "set-heading" },
  csrfField(),
  h("h3", { id: "set-heading", text: "Set a charging profile" }),
  field("p-evse", "EVSE id", h("input", { name: "evse_id", type: "number", min: "0", value: "0", required: true }), "0: the whole station."),
  field("p-profile", "Charging profile (JSON)", h("textarea", { name: "profile", rows: "14", spellcheck: "false", required: true }),
    "A ChargingProfileType as OCPP 2.0.1 words it; checked by the API and the station."),
  h("div", { class: "toolbar" }, h("button", { type: "submit", text: "Set charging profile" })),
  setError, setResult);
setForm.elements.profile.value = JSON.stringify(exampleProfile(), null, 2);

setForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(setError, null);
  setResult.hidden = true;
  const sid = stationSelect.value;
  let profile;
  try {
    profile = JSON.parse(setForm.elements.profile.value);
  } catch (error) {
    showError(setError, `The profile is not JSON: ${error.message}`);
    return;
  }
  try {
    const answer = await api(`stations/${encodeURIComponent(sid)}/charging-profiles`, {
      method: "POST", body: { evseId: Number(setForm.elements.evse_id.value), chargingProfile: profile },
    });
    if (answer.status === "Accepted") {
      setResult.textContent = `${sid} accepted charging profile ${profile.id}.`;
      setResult.hidden = false;
      announce(setResult.textContent);
    } else {
      showError(setError, `${sid} answered ${answer.status}${answer.statusInfo ? ` (${answer.statusInfo.reasonCode})` : ""}.`);
    }
  } catch (error) {
    showError(setError, error);
  }
  await loadProfiles();
});

const clearError = h("p", { class: "error", role: "alert", hidden: true });
const clearForm = h("form", { class: "card clear-profile", "aria-labelledby": "clear-heading" },
  csrfField(),
  h("h3", { id: "clear-heading", text: "Clear charging profiles" }),
  h("p", { class: "note", text: "By its id, or by every criterion given (at least one)." }),
  h("div", { class: "inline-form" },
    field("c-id", "Charging profile id", h("input", { name: "chargingProfileId", type: "number", min: "0" })),
    field("c-evse", "EVSE id", h("input", { name: "evseId", type: "number", min: "0" })),
    field("c-purpose", "Purpose", h("select", { name: "chargingProfilePurpose" },
      ["", "ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile"].map((p) => h("option", { value: p, text: p || "any" })))),
    field("c-stack", "Stack level", h("input", { name: "stackLevel", type: "number", min: "0" })),
    h("button", { type: "submit", class: "danger", text: "Clear charging profiles" })),
  clearError);

async function clearProfiles(query, errorEl) {
  const sid = stationSelect.value;
  showError(errorEl, null);
  try {
    const answer = await api(`stations/${encodeURIComponent(sid)}/charging-profiles`, { method: "DELETE", query });
    if (answer.status === "Accepted") announce(`${sid} cleared the charging profiles.`);
    else showError(errorEl, `${sid} answered ${answer.status}: nothing was cleared.`);
  } catch (error) {
    showError(errorEl, error);
  }
  await loadProfiles();
}

clearForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const query = {};
  for (const name of ["chargingProfileId", "evseId", "chargingProfilePurpose", "stackLevel"]) {
    if (clearForm.elements[name].value !== "") query[name] = clearForm.elements[name].value;
  }
  clearProfiles(query, clearError);
});

const compositeError = h("p", { class: "error", role: "alert", hidden: true });
const compositeOut = h("div", { class: "composite-out", "aria-live": "polite" });
const compositeForm = h("form", { class: "card composite", "aria-labelledby": "composite-heading" },
  csrfField(),
  h("h3", { id: "composite-heading", text: "Composite schedule" }),
  h("div", { class: "inline-form" },
    field("k-evse", "EVSE id", h("input", { name: "evseId", type: "number", min: "0", value: "1", required: true })),
    field("k-duration", "Duration (s)", h("input", { name: "duration", type: "number", min: "1", max: "604800", value: "3600", required: true })),
    field("k-unit", "Rate unit", h("select", { name: "chargingRateUnit" }, ["", "A", "W"].map((u) => h("option", { value: u, text: u || "station's choice" })))),
    h("button", { type: "submit", class: "secondary", text: "Get composite schedule" })),
  compositeError, compositeOut);

compositeForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(compositeError, null);
  fill(compositeOut);
  const sid = stationSelect.value;
  const el = compositeForm.elements;
  try {
    const answer = await api(`stations/${encodeURIComponent(sid)}/composite-schedule`, {
      query: { evseId: el.evseId.value, duration: el.duration.value, chargingRateUnit: el.chargingRateUnit.value },
    });
    const schedule = answer.schedule;
    fill(compositeOut,
      h("p", {}, `${sid} answered `, badge(answer.status), "."),
      schedule ? table({
        caption: `Composite schedule of EVSE ${schedule.evseId} from ${new Date(schedule.scheduleStart).toLocaleString()}`,
        columns: [
          { label: "From (s)", num: true, value: (p) => String(p.startPeriod) },
          { label: `Limit (${schedule.chargingRateUnit})`, num: true, value: (p) => fmtNumber(p.limit, 1) },
          { label: "Phases", num: true, value: (p) => (p.numberPhases ?? "—") },
        ],
        rows: schedule.chargingSchedulePeriod || [],
      }) : null,
      h("details", {}, h("summary", { text: "The station's answer" }), jsonBlock(answer)));
    announce(`Composite schedule: ${answer.status}.`);
  } catch (error) {
    showError(compositeError, error);
  }
});

let latestProfiles = 0; // the newest load wins: an older answer (another station) is dropped
async function loadProfiles() {
  const sid = stationSelect.value;
  if (!sid) { fill(profilesEl, h("p", { class: "note", text: "No stations registered." })); return; }
  const mine = ++latestProfiles;
  try {
    const [profiles, limits] = await Promise.all([
      api(`stations/${encodeURIComponent(sid)}/charging-profiles`),
      api(`stations/${encodeURIComponent(sid)}/charging-limits`),
    ]);
    if (mine !== latestProfiles) return;
    showError(profilesError, null);
    const clearButton = (p) => writeButton("Clear", `Clear charging profile ${p.chargingProfileId}`, "danger",
      () => clearProfiles({ chargingProfileId: p.chargingProfileId }, profilesError));
    fill(profilesEl,
      table({
        caption: `Charging profiles the cloud set on ${sid}`,
        empty: "None set.",
        columns: [
          { label: "Id", num: true, value: (p) => String(p.chargingProfileId) },
          { label: "EVSE", num: true, value: (p) => String(p.evseId) },
          { label: "Purpose", value: (p) => p.purpose },
          { label: "Stack level", num: true, value: (p) => String(p.stackLevel) },
          { label: "Transaction", value: (p) => p.transactionId || "—" },
          { label: "Source", value: (p) => p.source },
          { label: "Answer", value: (p) => badge(p.status) },
          { label: "Set", value: (p) => timeEl(p.setAt) },
          { label: "Profile", value: (p) => h("details", {}, h("summary", { text: "JSON" }), jsonBlock(p.profile)) },
          { label: "Action", value: clearButton },
        ],
        rows: profiles.set,
      }),
      profiles.reported.length ? table({
        caption: `Charging profiles ${sid} reported last (GetChargingProfiles)`,
        columns: [
          { label: "Id", num: true, value: (p) => String(p.profile.id) },
          { label: "EVSE", num: true, value: (p) => String(p.evseId) },
          { label: "Source", value: (p) => p.chargingLimitSource },
          { label: "Received", value: (p) => timeEl(p.receivedAt) },
          { label: "Profile", value: (p) => h("details", {}, h("summary", { text: "JSON" }), jsonBlock(p.profile)) },
        ],
        rows: profiles.reported,
      }) : null,
      limits.length ? table({
        caption: `External charging limits ${sid} reported (NotifyChargingLimit)`,
        columns: [
          { label: "EVSE", value: (x) => (x.evseId === null ? "station" : String(x.evseId)) },
          { label: "Source", value: (x) => x.chargingLimitSource },
          { label: "Grid critical", value: (x) => (x.isGridCritical ? "yes" : "no") },
          { label: "Received", value: (x) => timeEl(x.receivedAt) },
          { label: "Released", value: (x) => timeEl(x.clearedAt) },
          { label: "Schedule", value: (x) => h("details", {}, h("summary", { text: "JSON" }), jsonBlock(x.chargingSchedule)) },
        ],
        rows: limits,
      }) : null);
    profilesEl.dataset.loaded = sid;
  } catch (error) {
    if (mine === latestProfiles) showError(profilesError, error);
  }
}

stationSelect.addEventListener("change", () => {
  fill(compositeOut);
  showError(compositeError, null);
  loadProfiles();
});

// -- the page ----------------------------------------------------------------------------

async function loadStations() {
  stations = await api("stations");
  const chosen = stationSelect.value;
  fill(stationSelect, stations.map((s) => h("option", {
    value: s.station_id,
    text: `${s.station_id} (${s.ocpp_version || "?"}${s.connected ? "" : ", offline"})`,
  })));
  if (chosen && stations.some((s) => s.station_id === chosen)) stationSelect.value = chosen;
  else {
    // the first connected 2.0.1 station: the one whose profiles this page can set
    const first = stations.find((s) => s.connected && s.ocpp_version !== "1.6");
    if (first) stationSelect.value = first.station_id;
  }
}

root.append(
  h("h2", { text: "Sites" }), sitesError, sitesEl,
  siteForm,
  h("section", { class: "station-profiles", "aria-labelledby": "profiles-heading" },
    h("h2", { id: "profiles-heading", text: "A station's charging profiles" }),
    h("div", { class: "toolbar" }, field("p-station", "Station", stationSelect, "Profiles go to OCPP 2.0.1 stations; a 1.6 station's through its page.")),
    profilesError, profilesEl,
    h("div", { class: "profile-forms" }, setForm, h("div", {}, clearForm, compositeForm))),
);
guardWrite(siteForm);
guardWrite(setForm);
guardWrite(clearForm);
// GetCompositeSchedule only reads, but it is a command to the station: the API's rules
// for GET let a read-only operator ask, so the form stays open for them.
try {
  await loadStations();
  editing(null);
  await Promise.all([loadSites(), loadProfiles()]);
} catch (error) {
  showError(sitesError, error);
}

// a transaction starting or ending changes a site's division: draw it again
let pending = null;
live({
  stations: (changed) => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      if (changed.some((s) => !stations.some((known) => known.station_id === s.station_id))) {
        const keep = ticked();  // what the operator ticked so far stays ticked
        await loadStations();
        drawMembers(null, keep);
      }
      await loadSites();
    }, 300);
  },
});
