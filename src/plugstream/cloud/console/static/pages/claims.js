// Setup claims: which station serial numbers an owner has claimed, and where the setup
// service sends each one (PlugStream Cloud, or a third-party CSMS over wss://). Claim or
// change with PUT /api/v1/claims/{serial}, release with DELETE.
import {
  api, announce, csrfField, fill, guardWrite, h, session, showError, table, timeEl, field,
} from "../console.js";

const root = document.getElementById("page");
let claims = [];

const serialInput = h("input", { id: "cl-serial", name: "serial_number", required: true, maxlength: 48, autocomplete: "off" });
const ownerInput = h("input", { id: "cl-owner", name: "owner", required: true, maxlength: 255, autocomplete: "organization" });
const versionSelect = h("select", { id: "cl-version", name: "ocpp_version" },
  h("option", { value: "1.6", text: "OCPP 1.6" }), h("option", { value: "2.0.1", text: "OCPP 2.0.1" }));
const profileSelect = h("select", { id: "cl-profile", name: "security_profile" },
  h("option", { value: "2", text: "2: TLS and a password" }), h("option", { value: "3", text: "3: TLS and a client certificate" }));
const ownCsms = h("input", { type: "radio", id: "cl-csms-own", name: "csms", value: "own", checked: true });
const otherCsms = h("input", { type: "radio", id: "cl-csms-other", name: "csms", value: "other" });
const urlInput = h("input", { id: "cl-url", name: "csms_url", type: "url", placeholder: "wss://csms.example.com/ocpp", autocomplete: "off" });
const passwordInput = h("input", { id: "cl-password", name: "password", type: "password", minlength: 16, maxlength: 40, autocomplete: "new-password" });
const thirdParty = h("div", { class: "cl-third-party", hidden: true },
  field(urlInput, "CSMS URL", "wss:// only: the station's password must not travel in clear."),
  field(passwordInput, "Station's password at that CSMS", "16 to 40 printable characters, no spaces; never shown again."));
const formError = h("p", { class: "error", role: "alert", hidden: true });
const formTitle = h("h2", { id: "cl-form-title", text: "Claim a station" });
const submit = h("button", { type: "submit", text: "Claim" });
const cancel = h("button", { type: "button", class: "secondary", hidden: true, text: "Cancel change", onclick: () => editing(null) });

const form = h("form", { class: "card", "aria-labelledby": "cl-form-title" },
  formTitle,
  h("p", { class: "note", text: "A claimed station's next call to the setup service tells it where to connect, with which OCPP version and security profile." }),
  csrfField(),
  h("div", { class: "cl-fields" },
    field(serialInput, "Serial number", "As on the station's label: 1 to 48 letters, digits or *-_=+|@."),
    field(ownerInput, "Owner"),
    field(versionSelect, "OCPP version"),
    field(profileSelect, "Security profile")),
  h("fieldset", {},
    h("legend", { text: "CSMS" }),
    h("div", { class: "cl-radio" }, ownCsms, h("label", { for: "cl-csms-own", text: "PlugStream Cloud (this cloud makes the station's password)" })),
    h("div", { class: "cl-radio" }, otherCsms, h("label", { for: "cl-csms-other", text: "Another CSMS" })),
    thirdParty),
  formError,
  h("div", { class: "cl-buttons" }, submit, cancel));

function showThirdParty() {
  thirdParty.hidden = !otherCsms.checked;
  urlInput.required = otherCsms.checked;
}
ownCsms.addEventListener("change", showThirdParty);
otherCsms.addEventListener("change", showThirdParty);

function editing(claim) {
  showError(formError, null);
  if (claim === null) {
    form.reset();
    serialInput.readOnly = false;
    formTitle.textContent = "Claim a station";
    submit.textContent = "Claim";
    cancel.hidden = true;
    showThirdParty();
    return;
  }
  serialInput.value = claim.serial_number;
  serialInput.readOnly = true;
  ownerInput.value = claim.owner;
  versionSelect.value = claim.ocpp_version;
  profileSelect.value = String(claim.security_profile);
  otherCsms.checked = Boolean(claim.csms_url);
  ownCsms.checked = !claim.csms_url;
  urlInput.value = claim.csms_url || "";
  passwordInput.value = "";
  showThirdParty();
  formTitle.textContent = `Change the claim of ${claim.serial_number}`;
  submit.textContent = "Save claim";
  cancel.hidden = false;
  form.scrollIntoView({ block: "nearest" });
  ownerInput.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(formError, null);
  const serial = serialInput.value.trim();
  const owner = ownerInput.value.trim();
  if (!serial || !owner) {
    showError(formError, new Error("Give the serial number and the owner."));
    return;
  }
  const body = {
    owner,
    ocpp_version: versionSelect.value,
    security_profile: Number(profileSelect.value),
  };
  if (otherCsms.checked) {
    body.csms_url = urlInput.value.trim();
    if (passwordInput.value) body.password = passwordInput.value;
  }
  submit.disabled = true;
  try {
    const saved = await api(`claims/${encodeURIComponent(serial)}`, { method: "PUT", body });
    announce(`Station ${saved.serial_number} claimed for ${saved.owner}.`);
    editing(null);
    await load();
  } catch (error) {
    showError(formError, error);
  } finally {
    submit.disabled = !session.canWrite;
  }
});

// -- the list ----------------------------------------------------------------------------

const listEl = h("div", { id: "cl-list" });
const listError = h("p", { class: "error", role: "alert", hidden: true });

function actions(claim) {
  const rowError = h("span", { class: "error", role: "alert", hidden: true });
  const release = h("button", {
    type: "button", class: "secondary", text: "Release",
    "aria-label": `Release the claim of ${claim.serial_number}`,
    disabled: !session.canWrite,
    onclick: async () => {
      release.disabled = true;
      showError(rowError, null);
      try {
        await api(`claims/${encodeURIComponent(claim.serial_number)}`, { method: "DELETE" });
        announce(`Released the claim of ${claim.serial_number}.`);
        await load();
      } catch (error) {
        showError(rowError, error);
        release.disabled = false;
      }
    },
  });
  const change = h("button", {
    type: "button", class: "secondary", text: "Change",
    "aria-label": `Change the claim of ${claim.serial_number}`,
    disabled: !session.canWrite,
    onclick: () => editing(claim),
  });
  return h("div", { class: "cl-actions" }, change, release, rowError);
}

function render() {
  fill(listEl, table({
    caption: "Claimed stations",
    columns: [
      { label: "Serial number", value: (c) => h("code", { text: c.serial_number }) },
      { label: "Owner", value: (c) => c.owner },
      { label: "CSMS", value: (c) => (c.csms_url ? h("code", { class: "cl-url", text: c.csms_url }) : "PlugStream Cloud") },
      { label: "OCPP", value: (c) => c.ocpp_version },
      { label: "Profile", num: true, value: (c) => String(c.security_profile) },
      { label: "Password", value: (c) => (c.csms_url ? (c.password_set ? "kept" : "none") : "made by the cloud") },
      { label: "Claimed", value: (c) => timeEl(c.claimed_at) },
      { label: "Provisioned", value: (c) => (c.provisioned_at ? timeEl(c.provisioned_at) : h("span", { class: "badge warn", text: "Not yet" })) },
      { label: "Actions", value: actions },
    ],
    rows: claims,
    rowClass: () => "cl-claim",
    empty: "No station is claimed yet.",
  }));
}

async function load() {
  try {
    claims = await api("claims");
    claims.sort((a, b) => a.serial_number.localeCompare(b.serial_number));
    showError(listError, null);
    render();
  } catch (error) {
    showError(listError, error);
  }
}

fill(root,
  form,
  h("section", { "aria-labelledby": "cl-list-title" },
    h("h2", { id: "cl-list-title", text: "Claims" }), listError, listEl));

guardWrite(form);
load();
