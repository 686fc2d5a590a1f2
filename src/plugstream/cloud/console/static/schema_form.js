// A form drawn from a JSON schema (the OCA's OCPP request schemas: draft 4 for 1.6,
// draft 6 for 2.0.1) and the payload read back from it. Only what those schemas use:
// an object is a fieldset; a string a text input (an enum a select, a date-time a text
// with its format as a hint); an integer or number a number input with its limits; a
// boolean a checkbox; "$ref" points into "definitions". Arrays and objects nested deeper
// than a form stays readable are edited as JSON in a textarea, pre-filled with a valid
// skeleton when the payload needs them. The server checks the payload against the same
// schema; the browser's own constraint checks (required, min, max, maxlength) catch the
// plain mistakes first.
//
//   const form = schemaForm(schema, { id: "cmd" });
//   container.append(form.element);
//   const payload = form.read();   // throws SchemaFormError naming the field at fault
import { h } from "./console.js";

/** Objects this deep (the payload is 0) still get fields; deeper ones are JSON. */
const MAX_DEPTH = 2;

export class SchemaFormError extends Error {}

/** ``node`` with its "$ref" (into ``root.definitions``) followed, its own words kept. */
export function resolve(node, root) {
  let seen = 0;
  let out = node || {};
  while (out.$ref && seen++ < 32) {
    const ref = String(out.$ref);
    if (!ref.startsWith("#/definitions/")) throw new SchemaFormError(`cannot follow ${ref}`);
    const target = (root.definitions || {})[ref.slice("#/definitions/".length)];
    if (!target) throw new SchemaFormError(`no definition for ${ref}`);
    const { $ref: _, ...own } = out;
    out = { ...target, ...own };
  }
  return out;
}

/** The schema's type, one word ("null" left out of a list). */
function typeOf(node) {
  if (Array.isArray(node.type)) return node.type.find((t) => t !== "null") || "string";
  if (node.type) return node.type;
  if (node.enum) return "string";
  if (node.properties) return "object";
  return "any";
}

/** A short hint from a spec description: the 2.0.1 files start theirs with the data
 * dictionary's names and an URN, which say nothing to an operator. */
function hintOf(node) {
  const text = String(node.description || "")
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("urn:") && !/^[A-Z]\w*_ /.test(line))
    .join(" ");
  return text.length > 180 ? `${text.slice(0, 177)}…` : text;
}

function nowIso() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A value that passes ``node``: what a JSON field starts from. */
export function skeleton(node, root, depth = 0) {
  const n = resolve(node, root);
  if (depth > 12) return null;
  if (n.enum) return n.enum[0];
  switch (typeOf(n)) {
    case "object": {
      const out = {};
      for (const name of n.required || []) out[name] = skeleton((n.properties || {})[name], root, depth + 1);
      return out;
    }
    case "array": {
      const count = Math.max(n.minItems || 0, 1);
      return Array.from({ length: count }, () => skeleton(n.items || {}, root, depth + 1));
    }
    case "integer":
    case "number":
      return n.minimum !== undefined ? n.minimum : 0;
    case "boolean":
      return false;
    case "string":
      if (n.format === "date-time") return nowIso();
      return "x".repeat(n.minLength || 0);
    default:
      return {};
  }
}

/**
 * A form's fields for ``schema`` (an object schema). ``id`` prefixes the controls' ids.
 * Returns {element, read}: ``read()`` is the payload, leaving out what was left empty.
 */
export function schemaForm(schema, { id = "sf" } = {}) {
  const root = schema;
  const readers = [];

  // One property: its control, and how to read it (undefined: left out).
  function property(name, node, path, required, depth) {
    const n = resolve(node, root);
    const type = typeOf(n);
    const key = [id, ...path].join("-").replace(/[^\w-]/g, "_");
    const hint = hintOf(n);
    const hints = [];
    // the * beside the label, not in it: the field's name stays its name (the input's
    // own ``required`` tells a screen reader)
    const mark = required ? h("span", { class: "req", "aria-hidden": "true", text: " *" }) : null;
    const label = h("label", { for: key, text: name });
    const where = path.join(".");
    // only a field the payload must have may insist; one in an optional object waits
    // until that object is given (something in it filled)
    const insist = required && allRequired(path);
    let fallback; // what a required field left alone holds once its object is given

    if (type === "object" && depth < MAX_DEPTH && n.properties && name !== "customData") {
      return objectFields(name, n, path, required, depth + 1);
    }
    let control;
    let read;
    if (n.enum) {
      control = h("select", { id: key, name: where, required: insist },
        insist ? null : h("option", { value: "", text: required ? "— (choose one)" : "— (leave out)" }),
        n.enum.map((v) => h("option", { value: String(v), text: String(v) })));
      read = () => (control.value === "" ? undefined : n.enum.find((v) => String(v) === control.value));
    } else if (type === "string") {
      control = h("input", {
        id: key, name: where, type: "text", autocomplete: "off", spellcheck: "false",
        maxlength: n.maxLength, minlength: n.minLength, required: insist,
      });
      if (n.format === "date-time") {
        control.placeholder = nowIso();
        hints.push("Date and time, ISO 8601 in UTC, e.g. " + nowIso() + ".");
      } else if (n.format === "uri") {
        hints.push("A URI.");
      }
      read = () => (control.value === "" ? undefined : control.value);
    } else if (type === "integer" || type === "number") {
      control = h("input", {
        id: key, name: where, type: "number", inputmode: type === "integer" ? "numeric" : "decimal",
        step: type === "integer" ? (n.multipleOf || 1) : (n.multipleOf || "any"),
        min: n.minimum, max: n.maximum, required: insist,
      });
      read = () => {
        if (control.value === "") return undefined;
        const value = Number(control.value);
        if (!Number.isFinite(value) || (type === "integer" && !Number.isInteger(value))) {
          throw new SchemaFormError(`${where}: not ${type === "integer" ? "an integer" : "a number"}`);
        }
        return value;
      };
    } else if (type === "boolean") {
      control = h("input", { id: key, name: where, type: "checkbox" });
      if (!required) hints.push("Unchecked: left out.");
      read = () => (control.checked ? true : insist ? false : undefined);
      fallback = false;
    } else {
      // arrays, deep objects, anything else: JSON, with a skeleton that passes the schema
      const start = JSON.stringify(skeleton(n, root), null, 2);
      control = h("textarea", {
        id: key, name: where, rows: Math.min(12, Math.max(3, start.split("\n").length)),
        spellcheck: "false", class: "json-input", required: insist,
      });
      if (insist) control.value = start;
      else control.placeholder = start;
      if (required) fallback = JSON.parse(start);
      hints.push(`JSON (${type === "array" ? "a list" : type})${insist ? "" : required ? "; empty: the skeleton shown" : "; empty: left out"}.`);
      read = () => {
        const text = control.value.trim();
        if (text === "") return undefined;
        try {
          return JSON.parse(text);
        } catch (error) {
          throw new SchemaFormError(`${where}: not JSON (${error.message})`);
        }
      };
    }
    if (hint) hints.unshift(hint);
    const hintId = `${key}-hint`;
    if (hints.length) control.setAttribute("aria-describedby", hintId);
    const field = h("div", { class: `field field-${type === "boolean" ? "check" : type}` });
    if (type === "boolean") field.append(h("span", { class: "check" }, control, label, mark));
    else field.append(h("span", { class: "label-row" }, label, mark), control);
    if (hints.length) field.append(h("span", { class: "hint", id: hintId, text: hints.join(" ") }));
    // 2.0.1 gives every object a customData (vendor extensions): there, but folded away
    const element = name === "customData" && !required
      ? h("details", { class: "custom-data" }, h("summary", { text: `${where} (vendor extension)` }), field)
      : field;
    return { element, read, where, required, fallback };
  }

  // Whether every object around ``path`` is required: only then may the browser insist
  // on a field (an optional object left empty is left out, fields and all).
  const optionalAt = new Set();
  function allRequired(path) {
    for (let i = 1; i < path.length; i++) if (optionalAt.has(path.slice(0, i).join("."))) return false;
    return true;
  }

  function objectFields(name, n, path, required, depth) {
    if (!required && path.length) optionalAt.add(path.join("."));
    const must = new Set(n.required || []);
    const children = Object.entries(n.properties || {}).map(([child, node]) =>
      property(child, node, [...path, child], must.has(child), depth));
    const where = path.join(".") || "payload";
    const read = () => {
      const out = {};
      for (const c of children) {
        const value = c.read();
        if (value !== undefined) out[c.where.split(".").pop()] = value;
      }
      // nothing filled in: left out, unless the payload must have it
      const given = Object.keys(out).length > 0;
      if (!given && path.length && !(required && allRequired(path))) return undefined;
      for (const c of children) {
        const name = c.where.split(".").pop();
        if (c.required && out[name] === undefined && c.fallback !== undefined) out[name] = c.fallback;
      }
      const missing = children.filter((c) => c.required && out[c.where.split(".").pop()] === undefined);
      if (missing.length) {
        throw new SchemaFormError(`${missing.map((c) => c.where).join(", ")}: required${required || !path.length ? "" : ` once ${where} is given`}`);
      }
      return out;
    };
    const elements = children.map((c) => c.element);
    if (!path.length) return { element: h("div", { class: "schema-fields" }, elements), read, where, required: true };
    const fallback = must.size ? undefined : {};
    const legend = h("legend", {}, name, required ? h("span", { class: "req", "aria-hidden": "true", text: " *" }) : h("span", { class: "note", text: " (optional)" }));
    const hint = hintOf(n);
    const fieldset = h("fieldset", { class: "schema-object", name: where }, legend, hint ? h("p", { class: "hint", text: hint }) : null, elements);
    // an optional object folded away: most commands are sent without theirs
    const element = required ? fieldset
      : h("details", { class: "schema-optional" }, h("summary", { text: `${where} (optional)` }), fieldset);
    return { element, read, where, required, fallback };
  }

  const top = objectFields("", resolve(schema, root), [], true, 0);
  const hasRequired = (schema.required || []).length > 0 || top.element.querySelector(".req");
  const element = h("div", { class: "schema-form" },
    hasRequired ? h("p", { class: "note", text: "Fields marked * are required." }) : null,
    Object.keys(resolve(schema, root).properties || {}).length ? top.element : h("p", { class: "note", text: "This command has no fields." }));
  return { element, read: () => top.read() || {} };
}
