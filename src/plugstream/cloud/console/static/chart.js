// Line charts drawn as SVG with our own code: no library, no inline style (CSP).
// lineChart(figure-container, {title, series: [{label, unit, points: [[x, y], ...]}],
//   xTime: true, yLabel}) draws the series over a shared x axis (times as Date or ISO, or
// numbers) and one shared y axis (from 0, at round steps); a series' unit goes in its
// legend. Points are drawn in x order; a series of few points (one alone, say) also gets
// a ring at each point, so a lone sample is seen, not lost as a zero-length line. The
// figure's SVG has role="img" and a summary in words for screen readers.
// Colours come from console.css (.chart .series-N, .swatch-N): classes only, no style.
import { h, fmtNumber } from "./console.js";

const NS = "http://www.w3.org/2000/svg";
// The drawing's width follows its box (a phone's column, a desktop card) between these,
// so its labels keep their size instead of shrinking with a scaled-down picture.
const MIN_W = 300, MAX_W = 640;
const H = 240, PAD = { left: 56, right: 14, top: 24, bottom: 28 };
// a time label is about this wide: one nearer an edge is anchored to that edge, not cut
const HALF_LABEL = 28;
// a series with this many points or fewer shows a ring at each one
const MARKED = 24;
const COLOURS = 4;

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

/** A series' finite points as numbers, in x order (samples may arrive out of order). */
function cleanPoints(points) {
  return (points || [])
    .map(([x, y]) => [toX(x), Number(y)])
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
    .sort((a, b) => a[0] - b[0]);
}

/** A round step (1, 2 or 5 times a power of ten) that cuts ``span`` into about ``count``. */
function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

/** The y range widened to round numbers, and its ticks. */
function yScale(min, max) {
  if (max === min) max = min < 0 ? 0 : min + 1;  // min is at most 0: all zeros, or one value below
  const step = niceStep(max - min, 4);
  const lo = Math.floor(min / step) * step, hi = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo, hi, ticks, step };
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
  21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);

/** Ticks on the x axis: round times (a minute, five, an hour...) or round numbers. */
function xTicks(lo, hi, xTime, count) {
  const span = hi - lo;
  const step = xTime ? (TIME_STEPS.find((s) => span / s <= count) || niceStep(span, count)) : niceStep(span, count);
  const offset = xTime ? new Date(lo).getTimezoneOffset() * -60e3 : 0;  // local round times
  const ticks = [];
  for (let v = Math.ceil((lo + offset) / step) * step - offset; v <= hi; v += step) ticks.push(v);
  return { ticks, step };
}

function fmtTick(value, xTime, step) {
  if (!xTime) return fmtNumber(value, 2);
  const d = new Date(value);
  if (step >= 86400e3) return d.toLocaleDateString([], { month: "short", day: "numeric" });
  if (step < 60e3) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function summarise(title, series, cleaned) {
  const parts = series.map((s, i) => {
    const ys = cleaned[i].map((p) => p[1]);
    const unit = s.unit ? ` ${s.unit}` : "";
    if (!ys.length) return `${s.label}: no points`;
    return `${s.label}: ${ys.length} point${ys.length === 1 ? "" : "s"}, last ${fmtNumber(ys[ys.length - 1], 2)}${unit}, `
      + `lowest ${fmtNumber(Math.min(...ys), 2)}${unit}, highest ${fmtNumber(Math.max(...ys), 2)}${unit}`;
  });
  return `${title}. ${parts.join("; ")}`;
}

/** Draw (or redraw) a chart into ``container`` (an element that becomes its figure). */
export function lineChart(container, { title, series, xTime = true, yLabel = "" }) {
  const cleaned = series.map((s) => cleanPoints(s.points));
  const all = cleaned.flat();
  const figure = h("figure", { class: "chart", role: "group", "aria-label": title });
  figure.append(h("figcaption", { text: title }));
  if (!all.length) {
    figure.append(h("p", { class: "note", text: "No data yet." }));
    container.replaceChildren(figure);
    return figure;
  }
  let xMin = Math.min(...all.map((p) => p[0])), xMax = Math.max(...all.map((p) => p[0]));
  if (xMax === xMin) {  // one instant: put it in the middle of a small span
    const half = xTime ? 60e3 : 1;
    [xMin, xMax] = [xMin - half, xMax + half];
  }
  const y = yScale(Math.min(0, ...all.map((p) => p[1])), Math.max(...all.map((p) => p[1])));
  const W = Math.round(Math.min(MAX_W, Math.max(MIN_W, container.clientWidth || MAX_W)));
  const sx = (v) => PAD.left + ((v - xMin) / (xMax - xMin)) * (W - PAD.left - PAD.right);
  const sy = (v) => H - PAD.bottom - ((v - y.lo) / (y.hi - y.lo)) * (H - PAD.top - PAD.bottom);
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summarise(title, series, cleaned),
    preserveAspectRatio: "xMidYMid meet",
  });
  const grid = svg("g", { class: "grid", "aria-hidden": "true" });
  const axis = svg("g", { class: "axis", "aria-hidden": "true" });
  for (const v of y.ticks) {
    grid.append(svg("line", { class: "grid-line", x1: PAD.left, x2: W - PAD.right, y1: sy(v), y2: sy(v) }));
    axis.append(svg("text", { x: PAD.left - 6, y: sy(v) + 4, "text-anchor": "end" }, fmtNumber(v, 2)));
  }
  const xs = xTicks(xMin, xMax, xTime, W < 480 ? 3 : 5);  // a label is ~60 units wide
  for (const v of xs.ticks) {
    axis.append(svg("line", { x1: sx(v), x2: sx(v), y1: H - PAD.bottom, y2: H - PAD.bottom + 4 }));
    const at = sx(v);
    const anchor = at > W - HALF_LABEL ? "end" : at < PAD.left + HALF_LABEL / 2 ? "start" : "middle";
    axis.append(svg("text", { x: Math.min(at, W - 2), y: H - 8, "text-anchor": anchor }, fmtTick(v, xTime, xs.step)));
  }
  axis.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  axis.append(svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
  if (yLabel) axis.append(svg("text", { class: "y-label", x: 4, y: PAD.top - 10 }, yLabel));  // above the top tick
  root.append(grid, axis);
  cleaned.forEach((pts, i) => {
    if (!pts.length) return;
    const colour = `series-${i % COLOURS}`;
    const d = pts.map(([px, py], j) => `${j ? "L" : "M"}${sx(px).toFixed(1)},${sy(py).toFixed(1)}`).join(" ");
    root.append(svg("path", { class: `series ${colour}`, d, "data-series": series[i].label }));
    if (pts.length <= MARKED) {
      const marks = svg("g", { class: "points", "data-series": series[i].label });
      for (const [px, py] of pts) {
        marks.append(svg("circle", { class: `series point ${colour}`, cx: sx(px).toFixed(1), cy: sy(py).toFixed(1), r: pts.length === 1 ? 4 : 2.5 }));
      }
      root.append(marks);
    }
  });
  figure.append(root);
  figure.append(h("ul", { class: "legend" }, series.map((s, i) => h("li", {},
    h("span", { class: `swatch swatch-${i % COLOURS}`, "aria-hidden": "true" }),
    `${s.label}${s.unit ? ` (${s.unit})` : ""}`))));
  container.replaceChildren(figure);
  return figure;
}
