// Shared helpers: numbers as a reader wants them, HTML escaping, word and field differences.
"use strict";

// 0.10000000000000142 -> "0.1"; 1234.5678 -> "1234.57"; whole numbers stay whole.
export function fmt(v, digits = 4) {
  if (typeof v !== "number" || !Number.isFinite(v)) return v === null || v === undefined ? "" : String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a < 1) return String(Number(v.toPrecision(digits)));  // significant digits, however small
  return String(Number(v.toFixed(a >= 100 ? 2 : digits - 1)));
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function cell(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return fmt(v);
  if (Array.isArray(v) && v.every((x) => typeof x === "number")) return `[${v.map((x) => fmt(x)).join(", ")}]`;
  if (Array.isArray(v) && v.length && v.every((x) => x && typeof x === "object")) return `${v.length} item(s)`;
  if (typeof v === "object" && !Array.isArray(v) && Object.values(v).every((x) => x === null || typeof x !== "object")) {
    return Object.entries(v).map(([k, x]) => `${k} ${cell(x)}`).join(" · ");
  }
  if (typeof v === "object") return JSON.stringify(v, (k, x) => (typeof x === "number" ? Number(fmt(x)) : x));
  return String(v);
}

// Word-level difference of two texts: [{op: "same"|"del"|"ins", text}], by longest common subsequence.
export function wordDiff(a, b) {
  const x = a.split(/(\s+)/).filter(Boolean), y = b.split(/(\s+)/).filter(Boolean);
  if (x.length * y.length > 4_000_000) return [{ op: "del", text: a }, { op: "ins", text: b }];
  const n = x.length, m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  }
  const out = [];
  const push = (op, text) => { const last = out[out.length - 1]; if (last && last.op === op) last.text += text; else out.push({ op, text }); };
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { push("same", x[i]); i++; j++; } else if (L[i + 1][j] >= L[i][j + 1]) push("del", x[i++]); else push("ins", y[j++]);
  }
  while (i < n) push("del", x[i++]);
  while (j < m) push("ins", y[j++]);
  return out;
}

// {"a": {"b": [1, 2]}} -> {"a.b[0]": 1, "a.b[1]": 2}
export function flatten(value, prefix = "", out = {}) {
  if (Array.isArray(value)) {
    if (!value.length) out[prefix] = "[]";
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  } else if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) out[prefix] = "{}";
    for (const k of keys) flatten(value[k], prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix] = value;
  return out;
}

// A lab range as printed ("70-99", "< 200", ">=40", "4.0 - 5.6") and a result -> "H", "L" or null.
export function outOfRange(result, range) {
  const v = parseFloat(String(result).replace(",", "."));
  if (!Number.isFinite(v) || !range) return null;
  const r = String(range).replace(/,/g, ".").trim();
  let m = r.match(/^(-?\d+(?:\.\d+)?)\s*[-–—]\s*(-?\d+(?:\.\d+)?)$/);
  if (m) return v < parseFloat(m[1]) ? "L" : v > parseFloat(m[2]) ? "H" : null;
  m = r.match(/^(<=?|≤|up to)\s*(-?\d+(?:\.\d+)?)$/i);
  if (m) return v > parseFloat(m[2]) || (m[1] === "<" && v === parseFloat(m[2])) ? "H" : null;
  m = r.match(/^(>=?|≥)\s*(-?\d+(?:\.\d+)?)$/);
  if (m) return v < parseFloat(m[2]) || (m[1] === ">" && v === parseFloat(m[2])) ? "L" : null;
  return null;
}
