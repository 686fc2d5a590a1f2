// Line charts drawn as SVG with our own code: no library, no inline style (CSP).
// lineChart(figure-container, {title, series: [{label, unit, points: [[x, y], ...]}],
//   xTime: true}) draws the series over a shared x axis (times as Date or ISO, or numbers),
// each series on the shared y axis; a series' unit goes in its legend. The figure gets
// role="img" and a summary in words for screen readers.
import { h, fmtNumber } from "./console.js";

const NS = "http://www.w3.org/2000/svg";
const W = 640, H = 240, PAD = { left: 56, right: 12, top: 10, bottom: 28 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function toX(value) {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "string") return new Date(value).getTime();
  return Number(value);
}

function ticks(min, max, count) {
  if (max === min) return [min];
  const step = (max - min) / (count - 1);
  return Array.from({ length: count }, (_, i) => min + i * step);
}

function fmtTick(value, xTime, span) {
  if (!xTime) return fmtNumber(value, 1);
  const d = new Date(value);
  return span > 36 * 3600e3 ? d.toLocaleDateString() : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** Draw (or redraw) a chart into ``container`` (an element that becomes its figure). */
export function lineChart(container, { title, series, xTime = true, yLabel = "" }) {
  const all = series.flatMap((s) => s.points.map(([x, y]) => [toX(x), Number(y)])).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const figure = h("figure", { class: "chart", role: "group", "aria-label": title });
  figure.append(h("figcaption", { text: title }));
  if (!all.length) {
    figure.append(h("p", { class: "note", text: "No data yet." }));
    container.replaceChildren(figure);
    return figure;
  }
  let [xMin, xMax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [yMin, yMax] = [Math.min(0, ...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (xMax === xMin) xMax = xMin + 1;
  if (yMax === yMin) yMax = yMin + 1;
  const sx = (x) => PAD.left + ((x - xMin) / (xMax - xMin)) * (W - PAD.left - PAD.right);
  const sy = (y) => H - PAD.bottom - ((y - yMin) / (yMax - yMin)) * (H - PAD.top - PAD.bottom);
  const summary = series.map((s) => {
    const ys = s.points.map((p) => Number(p[1])).filter(Number.isFinite);
    return ys.length ? `${s.label}: ${ys.length} points, last ${fmtNumber(ys[ys.length - 1], 2)} ${s.unit || ""}, highest ${fmtNumber(Math.max(...ys), 2)}` : `${s.label}: no points`;
  }).join("; ");
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}. ${summary}` });
  const axis = svg("g", { class: "axis" });
  for (const y of ticks(yMin, yMax, 5)) {
    root.append(svg("line", { class: "grid-line", x1: PAD.left, x2: W - PAD.right, y1: sy(y), y2: sy(y) }));
    axis.append(svg("text", { x: PAD.left - 6, y: sy(y) + 4, "text-anchor": "end" }, fmtNumber(y, 1)));
  }
  for (const x of ticks(xMin, xMax, 5)) {
    axis.append(svg("text", { x: sx(x), y: H - 8, "text-anchor": "middle" }, fmtTick(x, xTime, xMax - xMin)));
  }
  axis.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(yMin), y2: sy(yMin) }));
  axis.append(svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
  if (yLabel) axis.append(svg("text", { x: 4, y: PAD.top + 4 }, yLabel));
  root.append(axis);
  series.forEach((s, i) => {
    const pts = s.points.map(([x, y]) => [toX(x), Number(y)]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (!pts.length) return;
    const d = pts.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    root.append(svg("path", { class: `series series-${i % 4}`, d, "data-series": s.label }));
  });
  figure.append(root);
  figure.append(h("ul", { class: "legend" }, series.map((s, i) => h("li", {}, h("span", { class: `swatch swatch-${i % 4}`, "aria-hidden": "true" }), `${s.label}${s.unit ? ` (${s.unit})` : ""}`))));
  container.replaceChildren(figure);
  return figure;
}
