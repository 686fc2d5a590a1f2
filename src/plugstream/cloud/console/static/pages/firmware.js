// Firmware: the cloud's signed images (upload, delete) and their rollouts to stations,
// with each station's progress through the OCPP firmware statuses, live while it runs.
// Reads and writes /api/v1/firmware, /api/v1/firmware/{id}/rollouts and /api/v1/rollouts.
import {
  api, announce, csrfField, fill, fmtNumber, guardWrite, h, live, session, showError, table, timeEl, field,
} from "../console.js";

const POLL_MS = 3000; // a running rollout is read again this often, besides its stations' live events
const FILENAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/; // what the API takes as a file name

// FirmwareStatusNotification's statuses (and the answer to the update) in the order an
// update goes through them: where a station is on its way to Installed.
const STEPS = {
  Pending: 0, Sending: 0, Accepted: 1, AcceptedCanceled: 1, DownloadScheduled: 1, DownloadPaused: 2,
  Downloading: 2, Downloaded: 3, SignatureVerified: 4, InstallScheduled: 4, Installing: 5,
  InstallRebooting: 6, Installed: 7,
};
const LAST_STEP = 7;
const FAILED = new Set([
  "Rejected", "InvalidCertificate", "RevokedCertificate", "NoAnswer", "CallError", "DownloadFailed",
  "InvalidSignature", "InstallationFailed", "InstallVerificationFailed",
]);
// a target in one of these will not move again by itself
const FINAL = new Set([...FAILED, "Installed", "Superseded"]);

function statusClass(status) {
  if (status === "Installed") return "ok";
  if (FAILED.has(status)) return "bad";
  if (status === "Superseded") return "off";
  if (["Pending", "DownloadScheduled", "InstallScheduled", "DownloadPaused"].includes(status)) return "warn";
  return "busy";
}

function statusBadge(status) {
  return h("span", { class: `badge ${statusClass(status)}`, text: status });
}

function fmtBytes(n) {
  if (n >= 1 << 30) return `${fmtNumber(n / (1 << 30), 2)} GiB`;
  if (n >= 1 << 20) return `${fmtNumber(n / (1 << 20), 2)} MiB`;
  if (n >= 1 << 10) return `${fmtNumber(n / (1 << 10), 1)} KiB`;
  return `${n} bytes`;
}

const root = document.getElementById("page");
let images = [];
let stations = [];
let rollouts = [];
// statuses this page saw each target go through: "rolloutId/stationId" -> [status, ...]
const seen = new Map();


// -- upload ------------------------------------------------------------------------------

const fileInput = h("input", { id: "fw-file", name: "file", type: "file", required: true });
const versionInput = h("input", { id: "fw-version", name: "version", required: true, maxlength: 255, autocomplete: "off" });
const nameInput = h("input", { id: "fw-filename", name: "filename", required: true, maxlength: 128, autocomplete: "off" });
const uploadError = h("p", { class: "error", role: "alert", hidden: true });
const uploadStatus = h("p", { class: "note", id: "fw-upload-status" });
const uploadButton = h("button", { type: "submit", text: "Upload and sign" });

const uploadForm = h("form", { class: "card", "aria-labelledby": "fw-upload-title" },
  h("h2", { id: "fw-upload-title", text: "Upload a firmware image" }),
  csrfField(),
  h("div", { class: "fw-fields" },
    field(fileInput, "Image file", "The cloud stores it, hashes it (SHA-256) and signs it with its Firmware Signing key."),
    field(versionInput, "Version", "The firmware version the image installs, e.g. 2.1.0."),
    field(nameInput, "File name stations see", "Letters, digits and . _ + - (from the file's own name by default).")),
  uploadError, uploadStatus,
  uploadButton);

fileInput.addEventListener("change", () => {
  const file = fileInput.files[0];
  if (!file) return;
  // the file's own name, made into one the API takes
  const clean = file.name.replace(/[^A-Za-z0-9._+-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 128);
  if (clean) nameInput.value = clean;
  uploadStatus.textContent = `${file.name}: ${fmtBytes(file.size)}.`;
});

uploadForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(uploadError, null);
  const file = fileInput.files[0];
  const version = versionInput.value.trim();
  const filename = nameInput.value.trim();
  if (!file) return showError(uploadError, new Error("Choose the image file."));
  if (!version) return showError(uploadError, new Error("Give the image's version."));
  if (!FILENAME.test(filename)) {
    return showError(uploadError, new Error("File name: letters, digits and . _ + - only, starting with a letter or digit."));
  }
  uploadButton.disabled = true;
  uploadStatus.textContent = `Uploading ${file.name} (${fmtBytes(file.size)})…`;
  try {
    const image = await api("firmware", { method: "POST", query: { version, filename }, body: file });
    uploadStatus.textContent = `Uploaded ${image.filename}, version ${image.version}: signed.`;
    announce(`Firmware ${image.version} uploaded and signed.`);
    uploadForm.reset();
    await loadImages();
    imageSelect.value = image.image_id;
  } catch (error) {
    uploadStatus.textContent = "";
    showError(uploadError, error);
  } finally {
    uploadButton.disabled = !session.canWrite;
  }
});

// -- images ------------------------------------------------------------------------------

const imagesEl = h("div", { id: "fw-images" });
const imagesError = h("p", { class: "error", role: "alert", hidden: true });

function hashCell(sha) {
  return h("details", { class: "fw-hash" }, h("summary", {}, h("code", { text: `${sha.slice(0, 12)}…` })), h("code", { text: sha }));
}

function deleteButton(image) {
  const button = h("button", {
    type: "button", class: "secondary", text: "Delete",
    "aria-label": `Delete firmware ${image.version} (${image.filename})`,
    disabled: !session.canWrite,
    onclick: async () => {
      button.disabled = true;
      showError(imagesError, null);
      try {
        await api(`firmware/${image.image_id}`, { method: "DELETE" });
        announce(`Deleted firmware ${image.version}.`);
        await Promise.all([loadImages(), loadRollouts()]);
      } catch (error) {
        showError(imagesError, error);
        button.disabled = false;
      }
    },
  });
  return button;
}

function renderImages() {
  fill(imagesEl, table({
    caption: "Images, newest first",
    columns: [
      { label: "Version", value: (i) => h("strong", { text: i.version }) },
      { label: "File name", value: (i) => h("code", { text: i.filename }) },
      { label: "Size", num: true, value: (i) => fmtBytes(i.size) },
      { label: "SHA-256", value: (i) => hashCell(i.sha256) },
      { label: "Signature", value: (i) => (i.signature ? h("span", { class: "badge ok", text: "Signed" }) : h("span", { class: "badge bad", text: "None" })) },
      { label: "Uploaded", value: (i) => timeEl(i.uploaded_at) },
      { label: "Actions", value: deleteButton },
    ],
    rows: images,
    rowClass: () => "fw-image",
    empty: "No firmware images yet: upload one.",
  }));
  const chosen = imageSelect.value;
  fill(imageSelect, images.map((i) => h("option", { value: i.image_id, text: `${i.version} — ${i.filename}` })));
  if (images.some((i) => i.image_id === chosen)) imageSelect.value = chosen;
  rolloutButton.disabled = !session.canWrite || !images.length;
}

async function loadImages() {
  try {
    images = await api("firmware");
    showError(imagesError, null);
    renderImages();
  } catch (error) {
    showError(imagesError, error);
  }
}

// -- a new rollout -----------------------------------------------------------------------

const imageSelect = h("select", { id: "fw-image", name: "image_id", required: true });
const stationsBox = h("div", { class: "fw-stations", id: "fw-stations" });
const retriesInput = h("input", { id: "fw-retries", name: "retries", type: "number", min: 0, max: 1000, inputmode: "numeric" });
const intervalInput = h("input", { id: "fw-retry-interval", name: "retry_interval", type: "number", min: 0, inputmode: "numeric" });
const rolloutError = h("p", { class: "error", role: "alert", hidden: true });
const rolloutButton = h("button", { type: "submit", text: "Roll out" });

const rolloutForm = h("form", { class: "card", "aria-labelledby": "fw-rollout-title" },
  h("h2", { id: "fw-rollout-title", text: "Roll out an image" }),
  csrfField(),
  field(imageSelect, "Image"),
  h("fieldset", {},
    h("legend", { text: "Stations" }),
    h("p", { class: "hint note", text: "Connected stations are sent the update now; the others when they next boot." }),
    stationsBox),
  h("div", { class: "fw-fields" },
    field(retriesInput, "Download retries (optional)"),
    field(intervalInput, "Retry interval, seconds (optional)")),
  rolloutError,
  rolloutButton);

// one list item per station, kept and updated in place: a live change never takes the
// keyboard's focus or a tick away from the operator choosing stations
const stationItems = new Map(); // station id -> {li, state, firmware}
const stationList = h("ul", { class: "fw-station-list" });
let stationCount = 0;

function stationText(s) {
  return s.firmware_version ? `firmware ${s.firmware_version}` : "firmware unknown";
}

function renderStations() {
  if (!stations.length) {
    fill(stationsBox, h("p", { class: "note", text: "No stations registered yet." }));
    return;
  }
  if (stationList.parentNode !== stationsBox) fill(stationsBox, stationList);
  let before = null;
  for (const s of [...stations].reverse()) { // from the end, so each goes before the next
    let item = stationItems.get(s.station_id);
    if (!item) {
      const id = `fw-st-${stationCount++}`;
      const state = h("span", { class: "badge" });
      const firmware = h("span", { class: "note" });
      const li = h("li", {},
        h("input", { type: "checkbox", id, name: "station_ids", value: s.station_id, disabled: !session.canWrite }),
        h("label", { for: id }, h("span", { class: "fw-station-id", text: s.station_id }), " ", state, " ", firmware));
      item = { li, state, firmware };
      stationItems.set(s.station_id, item);
    }
    item.state.className = `badge ${s.connected ? "ok" : "off"}`;
    item.state.textContent = s.connected ? "Connected" : "Offline";
    item.firmware.textContent = stationText(s);
    if (item.li.nextSibling !== before || item.li.parentNode !== stationList) stationList.insertBefore(item.li, before);
    before = item.li;
  }
}

async function loadStations() {
  try {
    stations = await api("stations");
    stations.sort((a, b) => a.station_id.localeCompare(b.station_id));
    renderStations();
  } catch (error) {
    showError(rolloutError, error);
  }
}

rolloutForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(rolloutError, null);
  const imageId = imageSelect.value;
  const stationIds = [...stationsBox.querySelectorAll("input:checked")].map((c) => c.value);
  if (!imageId) return showError(rolloutError, new Error("Upload an image first."));
  if (!stationIds.length) return showError(rolloutError, new Error("Choose at least one station."));
  const body = { station_ids: stationIds };
  if (retriesInput.value !== "") body.retries = Number(retriesInput.value);
  if (intervalInput.value !== "") body.retry_interval = Number(intervalInput.value);
  rolloutButton.disabled = true;
  try {
    const rollout = await api(`firmware/${imageId}/rollouts`, { method: "POST", body });
    note(rollout);
    rollouts = [rollout, ...rollouts.filter((r) => r.rollout_id !== rollout.rollout_id)];
    renderRollouts();
    announce(`Rollout ${rollout.rollout_id} started to ${stationIds.length} station${stationIds.length === 1 ? "" : "s"}.`);
    for (const box of stationsBox.querySelectorAll("input:checked")) box.checked = false;
    schedule();
  } catch (error) {
    showError(rolloutError, error);
  } finally {
    rolloutButton.disabled = !session.canWrite || !images.length;
  }
});

// -- rollouts and their progress ---------------------------------------------------------

const rolloutsEl = h("div", { id: "fw-rollouts", "aria-live": "off" });
const rolloutsError = h("p", { class: "error", role: "alert", hidden: true });

function running(rollout) {
  return rollout.targets.some((t) => !FINAL.has(t.status));
}

/** Keep what each target went through, as this page saw it; announce where each is now. */
function note(rollout) {
  for (const t of rollout.targets) {
    const key = `${rollout.rollout_id}/${t.station_id}`;
    const list = seen.get(key) || [];
    if (list[list.length - 1] !== t.status) {
      if (list.length) announce(`${t.station_id}: firmware ${t.status}.`);
      list.push(t.status);
      seen.set(key, list);
    }
  }
}

function progressCell(rollout, target) {
  const step = STEPS[target.status];
  const failed = FAILED.has(target.status);
  const value = step === undefined ? (failed ? 0 : LAST_STEP) : step;
  return h("div", { class: "fw-progress" },
    h("progress", {
      max: LAST_STEP, value,
      class: failed ? "failed" : "",
      "aria-label": `${target.station_id}: step ${value} of ${LAST_STEP}, ${target.status}`,
    }),
    h("ol", { class: "fw-seen", "aria-label": "Statuses seen" },
      (seen.get(`${rollout.rollout_id}/${target.station_id}`) || [target.status]).map((s) => h("li", {}, statusBadge(s)))));
}

function rolloutCard(rollout) {
  const image = images.find((i) => i.image_id === rollout.image_id);
  const what = image ? `firmware ${image.version} (${image.filename})` : `image ${rollout.image_id.slice(0, 8)}…`;
  const counts = Object.entries(rollout.counts).map(([status, n]) => h("li", {}, statusBadge(status), ` ${n}`));
  const state = running(rollout) ? h("span", { class: "badge busy", text: "Running" }) : h("span", { class: "badge ok", text: "Finished" });
  const titleId = `fw-rollout-${rollout.rollout_id}`;
  return h("section", { class: "card fw-rollout", "aria-labelledby": titleId, dataset: { rollout: rollout.rollout_id } },
    h("h3", { id: titleId }, `Rollout ${rollout.rollout_id}: ${what} `, state),
    h("p", { class: "note" }, "Created ", timeEl(rollout.created_at), ", download from ", timeEl(rollout.retrieve_at),
      rollout.install_at ? [", install at ", timeEl(rollout.install_at)] : null, "."),
    h("ul", { class: "fw-counts", "aria-label": "Stations by status" }, counts),
    table({
      caption: `Rollout ${rollout.rollout_id}: each station's progress`,
      columns: [
        { label: "Station", value: (t) => h("a", { href: `/stations/${encodeURIComponent(t.station_id)}`, text: t.station_id }) },
        { label: "requestId", num: true, value: (t) => String(t.request_id) },
        { label: "Status", value: (t) => h("span", { class: "fw-status", dataset: { status: t.status } }, statusBadge(t.status)) },
        { label: "Progress", value: (t) => progressCell(rollout, t) },
        { label: "Updated", value: (t) => timeEl(t.updated_at) },
      ],
      rows: rollout.targets,
      rowClass: () => "fw-target",
    }));
}

function renderRollouts() {
  fill(rolloutsEl, rollouts.length ? rollouts.map(rolloutCard) : h("p", { class: "note", text: "No rollouts yet." }));
  for (const [index, row] of rolloutsEl.querySelectorAll("tr.fw-target").entries()) {
    row.dataset.station = row.querySelector("a").textContent;
    row.dataset.index = String(index);
  }
}

async function loadRollouts() {
  try {
    rollouts = await api("rollouts", { query: { limit: 20 } });
    rollouts.forEach(note);
    showError(rolloutsError, null);
    renderRollouts();
    schedule();
  } catch (error) {
    showError(rolloutsError, error);
  }
}

/** Read the running rollouts again (those with any of ``stationIds``, when given). */
async function refresh(stationIds) {
  const due = rollouts.filter((r) => running(r) && (!stationIds || r.targets.some((t) => stationIds.has(t.station_id))));
  if (!due.length) return;
  try {
    const fresh = await Promise.all(due.map((r) => api(`rollouts/${r.rollout_id}`)));
    const byId = new Map(fresh.map((r) => [r.rollout_id, r]));
    fresh.forEach(note);
    const before = JSON.stringify(rollouts);
    rollouts = rollouts.map((r) => byId.get(r.rollout_id) || r);
    showError(rolloutsError, null);
    if (JSON.stringify(rollouts) !== before) renderRollouts(); // unchanged: focus stays put
  } catch (error) {
    showError(rolloutsError, error);
  }
}

// Poll while a rollout runs: the live events come on every station message, but a poll
// also catches what happened while the event stream was reconnecting.
let timer = null;
function schedule() {
  if (timer !== null || !rollouts.some(running)) return;
  timer = setTimeout(async () => {
    timer = null;
    await refresh(null);
    schedule();
  }, POLL_MS);
}

live({
  stations: (changed) => {
    // the station list takes each changed station (a new one too: it registered itself)
    const byId = new Map(stations.map((s) => [s.station_id, s]));
    for (const s of changed) byId.set(s.station_id, s);
    stations = [...byId.values()].sort((a, b) => a.station_id.localeCompare(b.station_id));
    renderStations();
    refresh(new Set(changed.map((s) => s.station_id)));
  },
  resync: () => { loadStations(); loadRollouts(); },
});

fill(root,
  h("div", { class: "grid" }, uploadForm, rolloutForm),
  h("section", { "aria-labelledby": "fw-images-title" },
    h("h2", { id: "fw-images-title", text: "Images" }), imagesError, imagesEl),
  h("section", { "aria-labelledby": "fw-rollouts-title" },
    h("h2", { id: "fw-rollouts-title", text: "Rollouts" }), rolloutsError, rolloutsEl));

guardWrite(uploadForm);
guardWrite(rolloutForm);
await Promise.all([loadImages(), loadStations()]);
await loadRollouts();
