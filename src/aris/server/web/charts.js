// SVG charts: one small chart per analyte (values over time, reference range as a band, points out of
// range marked) and a timeline of encounters, conditions and medications. Plain SVG: readable by
// screen readers (each chart has a title and a summary), printable, and inspectable by tests.
"use strict";

import { fmt, escapeHtml } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const W = 300, H = 150, M = { l: 46, r: 10, t: 10, b: 24 };

function el(name, attrs = {}, text = null) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}

function time(s) { const t = Date.parse(s.length <= 10 ? `${s}T00:00:00Z` : s); return Number.isNaN(t) ? null : t; }
function day(t) { return new Date(t).toISOString().slice(0, 10); }

// series: the trends task's Series objects ({code, name, unit, values: [{date, value, flag}], reference_low, ...})
export function trendCharts(host, series) {
  host.innerHTML = "";
  for (const s of series) {
    const pts = s.values.map((p) => ({ t: time(p.date), v: p.value, flag: p.flag, date: p.date })).filter((p) => p.t !== null);
    if (!pts.length) continue;
    const fig = document.createElement("figure");
    fig.className = "chart";
    fig.dataset.analyte = s.code;
    fig.dataset.unit = s.unit;
    const latest = pts[pts.length - 1];
    const lo = s.reference_low, hi = s.reference_high;
    const ref = lo === null && hi === null ? "no reference range"
      : `reference ${lo === null ? `≤ ${fmt(hi)}` : hi === null ? `≥ ${fmt(lo)}` : `${fmt(lo)}–${fmt(hi)}`} ${s.unit}` +
        (s.reference_source && s.reference_source !== "record" ? " (typical adult, not the lab's)" : "");
    const summary = `${s.name}: ${pts.length} value(s) ${day(pts[0].t)} to ${day(latest.t)}, latest ${fmt(latest.v)} ${s.unit}` +
      `${latest.flag ? ` (${latest.flag === "H" ? "above" : "below"} range)` : ""}; ${ref}`;
    const ys = pts.map((p) => p.v);
    if (s.reference_low !== null) ys.push(s.reference_low);
    if (s.reference_high !== null) ys.push(s.reference_high);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
    let t0 = pts[0].t, t1 = latest.t;
    if (t1 === t0) { t0 -= 86400000; t1 += 86400000; }
    const X = (t) => M.l + (t - t0) / (t1 - t0) * (W - M.l - M.r);
    const Y = (v) => H - M.b - (v - y0) / (y1 - y0) * (H - M.t - M.b);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "trend" });
    svg.appendChild(el("title", {}, summary));
    if (s.reference_low !== null || s.reference_high !== null) {
      const hi = s.reference_high === null ? y1 : s.reference_high, lo = s.reference_low === null ? y0 : s.reference_low;
      svg.appendChild(el("rect", { class: "refband", x: M.l, width: W - M.l - M.r, y: Y(hi), height: Math.max(0, Y(lo) - Y(hi)) }));
    }
    svg.appendChild(el("line", { class: "axis", x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }));
    svg.appendChild(el("line", { class: "axis", x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }));
    for (const v of [y0 + pad, (y0 + y1) / 2, y1 - pad]) {
      svg.appendChild(el("text", { class: "tick", x: M.l - 4, y: Y(v) + 3, "text-anchor": "end" }, fmt(v, 3)));
    }
    svg.appendChild(el("text", { class: "tick", x: M.l, y: H - 8 }, day(pts[0].t)));
    svg.appendChild(el("text", { class: "tick", x: W - M.r, y: H - 8, "text-anchor": "end" }, day(latest.t)));
    const d = pts.map((p, i) => `${i ? "L" : "M"}${X(p.t).toFixed(1)},${Y(p.v).toFixed(1)}`).join("");
    svg.appendChild(el("path", { class: "series", d, "data-analyte": s.code, "data-unit": s.unit }));
    for (const p of pts) {
      const c = el("circle", { cx: X(p.t), cy: Y(p.v), r: 3, class: p.flag ? "pt out" : "pt" });
      c.appendChild(el("title", {}, `${p.date.slice(0, 10)}: ${fmt(p.v)} ${s.unit}${p.flag ? ` (${p.flag})` : ""}`));
      svg.appendChild(c);
    }
    const cap = document.createElement("figcaption");
    const flags = (s.flags || []).length ? ` · ${s.flags.join(", ")}` : "";
    const slope = s.slope_per_year === null || s.slope_per_year === undefined ? "" : ` · slope ${fmt(s.slope_per_year, 3)}/yr`;
    cap.innerHTML = `<strong>${escapeHtml(s.name)}</strong> <span class="muted">${escapeHtml(s.unit)} · ${escapeHtml(ref)}${escapeHtml(slope)}${escapeHtml(flags)}</span>`;
    fig.append(svg, cap);
    host.appendChild(fig);
  }
  if (!host.children.length) host.innerHTML = '<p class="muted">No numeric observations.</p>';
}

const LANES = [["encounter", "Encounters"], ["condition", "Conditions"], ["medication", "Medications"]];

export function timeline(host, events) {
  host.innerHTML = "";
  const items = events.map((e) => ({ ...e, t0: time(e.start), t1: e.end ? time(e.end) : null })).filter((e) => e.t0 !== null);
  if (!items.length) { host.innerHTML = '<p class="muted">No dated encounters, conditions or medications.</p>'; return; }
  const lo = Math.min(...items.map((e) => e.t0)), hi = Math.max(...items.map((e) => e.t1 ?? e.t0));
  const span = Math.max(hi - lo, 86400000);
  const TW = 900, lane = 26, left = 110, top = 8;
  const X = (t) => left + (t - lo) / span * (TW - left - 12);
  const svg = el("svg", { viewBox: `0 0 ${TW} ${top + LANES.length * lane + 24}`, role: "img",
    "aria-label": `Timeline of ${items.length} events from ${day(lo)} to ${day(hi)}`, class: "timeline-svg" });
  LANES.forEach(([kind, name], i) => {
    const y = top + i * lane;
    svg.appendChild(el("text", { class: "lane", x: 4, y: y + 16 }, name));
    svg.appendChild(el("line", { class: "grid", x1: left, x2: TW - 12, y1: y + lane - 2, y2: y + lane - 2 }));
    for (const e of items.filter((x) => x.kind === kind)) {
      const x0 = X(e.t0), x1 = e.t1 ? Math.max(X(e.t1), x0 + 3) : x0 + 3;
      const r = el("rect", { class: `ev ${kind}`, x: x0, y: y + 5, width: x1 - x0, height: 14, rx: 2 });
      r.appendChild(el("title", {}, `${e.start.slice(0, 10)}${e.end ? ` – ${e.end.slice(0, 10)}` : ""}: ${e.label}${e.status ? ` (${e.status})` : ""}`));
      svg.appendChild(r);
    }
  });
  const axisY = top + LANES.length * lane + 16;
  svg.appendChild(el("text", { class: "tick", x: left, y: axisY }, day(lo)));
  svg.appendChild(el("text", { class: "tick", x: TW - 12, y: axisY, "text-anchor": "end" }, day(hi)));
  host.appendChild(svg);
  const list = document.createElement("details");
  list.innerHTML = `<summary>As a list (${items.length})</summary><table class="result"><thead><tr><th>When</th><th>What</th><th>Kind</th><th>Status</th></tr></thead><tbody>` +
    items.map((e) => `<tr><td>${escapeHtml(e.start.slice(0, 10))}${e.end ? ` – ${escapeHtml(e.end.slice(0, 10))}` : ""}</td><td>${escapeHtml(e.label)}</td><td>${escapeHtml(e.kind)}</td><td>${escapeHtml(e.status || "")}</td></tr>`).join("") +
    "</tbody></table>";
  host.appendChild(list);
}
