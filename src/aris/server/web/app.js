// Aris web UI: open a study, view its original values beside what the model sees, run a task, follow the
// answer, reopen and compare earlier runs. Everything comes from this server; nothing from a CDN.
"use strict";

import { Viewer, valuesFrom, rgbaFrom } from "./viewer.js";
import { trendCharts, timeline } from "./charts.js";
import { fmt, escapeHtml, cell, wordDiff, flatten, outOfRange } from "./format.js";

const $ = (id) => document.getElementById(id);
const COLORS = ["#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#af52de", "#ff9500", "#5ac8fa"];
const SUGGESTED = { cxr: "cxr-report", ct: "ct", mri: "mri", wsi: "wsi", pdf: "lab-extract", fhir: "trends", image: "vqa" };

const state = {
  files: [], upload: null, kind: "auto",
  manifest: null, stack: null, result: null,
  tasks: [], selected: [], caps: { dictation: false, search: false },
  frames: new Map(), bitmaps: new Map(),
};
window.aris = state;  // for the curious in the console (and the tests)

// -- server ---------------------------------------------------------------------------------------------
function headers(extra = {}) {
  const key = $("apikey").value || sessionStorage.getItem("aris-key") || "";
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: headers(opts.headers || {}) });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    const err = new Error(msg); err.status = r.status; throw err;
  }
  return r;
}
const getJSON = async (path) => (await api(path)).json();
function setStatus(text, error = false) { $("status").textContent = text; $("status").className = error ? "status error" : "status"; }

async function bitmapOf(url) {
  if (!state.bitmaps.has(url)) {
    state.bitmaps.set(url, api(url).then((r) => r.blob()).then((b) => createImageBitmap(b)));
  }
  try { return await state.bitmaps.get(url); } catch (e) { state.bitmaps.delete(url); throw e; }
}
async function blobUrl(url) { const r = await api(url); return URL.createObjectURL(await r.blob()); }

// -- start -----------------------------------------------------------------------------------------------
$("apikey").value = sessionStorage.getItem("aris-key") || "";
let lastKey = $("apikey").value;
$("apikey").addEventListener("change", () => {
  if ($("apikey").value === lastKey) return;
  lastKey = $("apikey").value;
  sessionStorage.setItem("aris-key", lastKey);
  init();
});

function modelName(id) {
  // A local model is named by its folder or file, never by its path on the server.
  const looksLikePath = /^[/~.]/.test(id) || id.includes("\\");
  return looksLikePath ? id.split(/[\\/]/).filter(Boolean).pop().replace(/\.gguf$/i, "") : id;
}

async function init() {
  try {
    const models = await getJSON("/v1/models");
    $("model").textContent = models.data.map((m) => modelName(m.id)).join(", ");
    state.tasks = await getJSON("/v1/tasks");
    const chosen = $("task").value;
    $("task").innerHTML = state.tasks.map((t) => `<option value="${escapeHtml(t.name)}" title="${escapeHtml(t.description)}">${escapeHtml(t.name)}</option>`).join("");
    if (chosen && state.tasks.some((t) => t.name === chosen)) $("task").value = chosen;
    setStatus("");  // a correct key clears the error a missing one left
    await Promise.all([loadJobs(), capabilities()]);
  } catch (e) { setStatus(`cannot reach the server: ${e.message}`, true); }
}

// Panels for routes other parts of the server add (dictation, image search) show only when it has them.
async function capabilities() {
  try {
    const r = await fetch("/openapi.json", { headers: headers() });
    const paths = r.ok ? Object.keys((await r.json()).paths || {}) : [];
    state.caps.dictation = paths.includes("/v1/audio/transcriptions");
    state.caps.search = paths.includes("/v1/index/search");
  } catch (_) { state.caps = { dictation: false, search: false }; }
  $("dictate").hidden = !state.caps.dictation;
  $("search").hidden = !state.caps.search;
  document.body.dataset.capabilities = Object.keys(state.caps).filter((k) => state.caps[k]).join(" ") || "none";
}

// -- jobs --------------------------------------------------------------------------------------------------
async function loadJobs() {
  const jobs = await getJSON("/v1/viewer/history");
  const list = $("jobs");
  list.innerHTML = "";
  state.selected = state.selected.filter((id) => jobs.some((j) => j.id === id));
  for (const j of jobs) {
    const li = document.createElement("li");
    li.dataset.job = j.id;
    const when = new Date(j.created * 1000);
    const label = j.status_label;
    li.innerHTML = `<button type="button" class="job-open" aria-label="Open ${escapeHtml(j.task)} job of ${escapeHtml(when.toLocaleString())}, ${escapeHtml(label)}">` +
      `<span class="task">${escapeHtml(j.task)}</span><span class="when">${escapeHtml(when.toLocaleTimeString())}</span></button>` +
      `<span class="badge ${label.replace(/\s+/g, "-")}">${escapeHtml(label)}</span>` +
      `<input type="checkbox" class="job-pick" aria-label="Select the ${escapeHtml(j.task)} job of ${escapeHtml(when.toLocaleTimeString())} for comparison">`;
    li.querySelector(".job-open").onclick = () => openJob(j.id);
    const pick = li.querySelector(".job-pick");
    pick.checked = state.selected.includes(j.id);
    pick.onchange = () => {
      state.selected = state.selected.filter((x) => x !== j.id);
      if (pick.checked) state.selected.push(j.id);
      if (state.selected.length > 2) {
        const drop = state.selected.shift();
        const other = list.querySelector(`li[data-job="${drop}"] .job-pick`);
        if (other) other.checked = false;
      }
      $("compare-go").disabled = state.selected.length !== 2;
    };
    if (state.manifest && state.manifest.source.type === "job" && state.manifest.source.id === j.id) li.classList.add("current");
    list.appendChild(li);
  }
  $("compare-go").disabled = state.selected.length !== 2;
}

async function openJob(jobId) {
  try {
    const m = await getJSON(`/v1/viewer/jobs/${jobId}`);
    state.upload = null;
    $("run").hidden = true;
    await openManifest(m, { keep: false });
    showJobResult(m);
    for (const li of $("jobs").children) li.classList.toggle("current", li.dataset.job === jobId);
    setStatus(`job ${m.job.task} · ${m.status_label}${m.view ? "" : " · the study itself was not kept for viewing"}`);
  } catch (e) { setStatus(`cannot open the job: ${e.message}`, true); }
}

// -- opening a study -----------------------------------------------------------------------------------------
async function upload(files) {
  if (!files.length) return;
  state.files = files;
  setStatus(`uploading ${files.length} file(s)…`);
  try {
    state.upload = await sendFiles(files);
    await preview();
  } catch (e) { setStatus(`upload failed: ${e.message}`, true); }
}
async function sendFiles(files) {
  const form = new FormData();
  for (const f of files) form.append("files", f);
  return (await (await api("/v1/uploads", { method: "POST", body: form })).json()).id;
}

async function preview() {
  state.kind = $("kind").value;
  setStatus("reading the study…");
  const m = await getJSON(`/v1/viewer/uploads/${state.upload}?kind=${encodeURIComponent(state.kind)}`);
  state.result = null;
  $("output").hidden = true;
  await openManifest(m, { keep: false });
  $("run").hidden = false;
  const suggested = SUGGESTED[m.kind];
  if (suggested && [...$("task").options].some((o) => o.value === suggested)) $("task").value = suggested;
  setStatus(`ready: ${m.images.length} image(s), ${m.image_tokens} image tokens`);
}

function showDetails(m) {
  $("warnings").innerHTML = [...(m.warnings || []), ...((m.view && m.view.warnings) || [])].map((w) => `<li>${escapeHtml(w)}</li>`).join("");
  const rows = [];
  const add = (k, v) => { if (v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && !v.length)) rows.push([k, v]); };
  const dicom = (m.view && m.view.dicom) || {};
  add("Kind", m.kind);
  for (const [k, v] of Object.entries(dicom)) {
    if (k === "candidates" && Array.isArray(v)) {
      // Every series found, so the choice can be checked: number, description, modality, slices.
      add("series found", v.map((c) => `#${c.series_number ?? "?"} ${c.description || ""} (${c.modality}, ${c.usable_slices}/${c.files_or_frames} usable${c.unusable ? `: ${c.unusable}` : ""})`).join("; "));
    } else add(k.replace(/_/g, " "), v);
  }
  const d = m.details || {};
  for (const k of ["magnification", "magnification_basis", "candidates", "grid", "render", "pages_used", "text_layer", "token_budget", "original_size", "padding"]) {
    if (k in d && !(k in dicom)) add(k.replace(/_/g, " "), d[k]);
  }
  $("details").innerHTML = rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(cell(v))}</dd>`).join("");
  $("details-box").hidden = !rows.length;
}

// -- the stage: one of imaging, pdf (imaging + table), fhir ---------------------------------------------------
const viewer = new Viewer($("viewport"), {
  onChange: (what) => { if (what === "window") syncWindowInputs(); corners(); },
  onHover: (p) => hoverInfo(p),
  onClick: (p) => clickImage(p),
});

function stage(mode) {
  $("empty").hidden = mode !== "empty";
  $("imaging").hidden = !(mode === "imaging" || mode === "pdf");
  $("toolbar").hidden = !(mode === "imaging" || mode === "pdf");
  $("pdfpane").hidden = mode !== "pdf";
  $("fhirpane").hidden = mode !== "fhir";
  document.querySelector(".stage").classList.toggle("split", mode === "pdf");
  if (mode === "imaging" || mode === "pdf") requestAnimationFrame(() => viewer.resize());
}

async function openManifest(m, { keep }) {
  const same = keep && state.manifest && state.stack && m.view && state.manifest.view &&
    JSON.stringify(m.view.facts) === JSON.stringify(state.manifest.view.facts);
  const prev = same ? { index: state.stack.index, display: $("display").value, window: { ...viewer.window } } : null;
  state.manifest = m;
  delete viewer.canvas.dataset.shown;
  if (!same) { state.frames.clear(); }
  showDetails(m);
  const view = m.view || { type: "none" };
  viewer.boxes = []; viewer.rects = []; viewer.mask = null; viewer.padding = null; viewer.invert = false;
  viewer.imageWidth = null; viewer.imageHeight = null; viewer.sampleAspect = 1;
  viewer.valueSpan = view.value_range ? view.value_range[1] - view.value_range[0] : 256;
  $("padding-toggle").hidden = true; $("mask-toggle").hidden = true; $("tiles-toggle").hidden = true;
  $("back-to-slide").hidden = true; $("boxes").hidden = true; $("viewer-banner").hidden = true;
  if (view.type === "fhir") { stage("fhir"); renderFhir(view, null); return; }
  stage(view.type === "pdf" ? "pdf" : "imaging");
  const s = makeStack(m, view);
  state.stack = s;
  fillDisplay(s.displays);
  fillPresets(s.presets);
  if (prev) {
    s.index = Math.min(prev.index, s.n - 1);
    if ([...$("display").options].some((o) => o.value === prev.display)) $("display").value = prev.display;
    viewer.window = prev.window;
  } else if (s.presets.length) {
    const p = s.presets[s.defaultPreset || 0];
    viewer.window = { center: p.center, width: p.width };
    $("preset").value = String(s.defaultPreset || 0);
  }
  $("slicebar").hidden = s.n < 2;
  $("slice").max = String(s.n);
  thumbs(m.images, s);
  syncWindowInputs();
  if (view.type === "pdf") renderLabTable(null);
  await show(s.index, { fit: !prev });
}

// A stack is what the slider and the wheel move through: a series' slices, a PDF's pages, a slide's
// tiles (after one is opened), or the model's images alone when no view was kept.
function makeStack(m, view) {
  const images = m.images || [];
  const modelFrame = async (j) => rgbaFrom(await bitmapOf(images[j].url));
  if (view.type === "series") {
    const ct = m.kind === "ct";
    const displays = [["values", `Original values${view.unit ? ` (${view.unit})` : ""}`], ["model", ct ? "What the model sees (RGB)" : "What the model sees"]];
    if (ct) displays.push(["r", "Model R: wide [-1024, 1024]"], ["g", "Model G: soft tissue [-135, 215]"], ["b", "Model B: brain [0, 80]"]);
    const [lo, hi] = view.value_range;
    const presets = [...view.presets, { name: "Full range", center: (lo + hi) / 2, width: Math.max(hi - lo, 1) }];
    if (!ct && view.model_window && view.model_window.minmax) {
      const [a, b] = view.model_window.minmax;
      presets.push({ name: "Model's min-max (volume)", center: (a + b) / 2, width: Math.max(b - a, 1) });
    }
    const sampled = view.sampled || [];
    const mid = sampled.length ? sampled[Math.floor((sampled.length - 1) / 2)] : Math.floor(view.n / 2);
    if (view.pixel_spacing_mm) viewer.sampleAspect = view.pixel_spacing_mm[0] / view.pixel_spacing_mm[1];
    return {
      type: "series", n: view.n, index: mid, displays, presets,
      defaultPreset: ct ? view.presets.findIndex((p) => p.name.startsWith("Recipe G")) : presets.length - 1,
      modelIndex: (i) => sampled.indexOf(i),
      label: (i) => {
        const j = sampled.indexOf(i);
        const z = view.positions_mm[i];
        return `Slice ${i + 1} / ${view.n} · ${fmt(z, 2)} mm${j >= 0 ? ` · model ${images[j] ? images[j].label : `image ${j + 1}`}` : " · not shown to the model"}`;
      },
      frame: async (i, display) => {
        if (display === "values") {
          const key = `slice:${i}`;
          if (!state.frames.has(key)) {
            state.frames.set(key, api(`${view.base_url}/slice-${String(i + 1).padStart(5, "0")}.bin`)
              .then((r) => r.arrayBuffer()).then((b) => valuesFrom(b, view.dtypes[i], view.columns, view.rows)));
          }
          try { return { frame: await state.frames.get(key) }; } catch (e) { state.frames.delete(key); throw e; }
        }
        const j = sampled.indexOf(i);
        if (j < 0 || !images[j]) return { frame: null, banner: "This slice was not among those shown to the model." };
        return { frame: await modelFrame(j) };
      },
      prefetch: (i) => { for (const k of [i + 1, i - 1, i + 2]) if (k >= 0 && k < view.n && !state.frames.has(`slice:${k}`)) state.stack.frame(k, "values").catch(() => {}); },
    };
  }
  if (view.type === "image") {
    viewer.imageWidth = view.width; viewer.imageHeight = view.height;
    viewer.invert = !!view.inverted;
    viewer.padding = { ...view.padding, visible: $("show-padding").checked };
    $("padding-toggle").hidden = false;
    const displays = [["values", view.channels === 1 ? "Original values" : "Original pixels"], ["model", "What the model sees"]];
    if (m.overlay) displays.push(["overlay", "Overlay image (as saved)"]);
    return {
      type: "image", n: 1, index: 0, displays, presets: view.presets, defaultPreset: 0,
      label: () => `${view.width} × ${view.height} px`,
      frame: async (i, display) => {
        if (display === "values") {
          if (!state.frames.has("image")) {
            const p = view.channels === 1
              ? api(`${view.base_url}/image.bin`).then((r) => r.arrayBuffer()).then((b) => valuesFrom(b, view.dtype, view.width, view.height))
              : bitmapOf(`${view.base_url}/image.png`).then((bm) => ({ ...rgbaFrom(bm), windowed: true }));
            state.frames.set("image", p);
          }
          return { frame: await state.frames.get("image") };
        }
        const url = display === "overlay" ? m.overlay : images[0] && images[0].url;
        if (!url) return { frame: null, banner: "No model image." };
        const f = rgbaFrom(await bitmapOf(url));
        // A padded model image sits with the original's pixels where they were, inside its square.
        const placed = f.width !== view.width || f.height !== view.height;
        return { frame: f, placement: placed ? { x: -view.padding.left, y: -view.padding.top } : { x: 0, y: 0 } };
      },
    };
  }
  if (view.type === "slide") {
    const k = view.thumb.level0_per_pixel;
    viewer.rects = view.tiles.map((t, i) => ({ x: t.x / k, y: t.y / k, w: t.size / k, h: t.size / k, color: "#4fb3d9", lineWidth: 2, label: String(i + 1), tile: i }));
    $("tiles-toggle").hidden = false; $("mask-toggle").hidden = false;
    loadMask(view);
    const s = {
      type: "slide", n: 1, index: 0, tile: null,
      displays: [["slide", `Slide at low resolution · ${view.tiles.length} tiles at ${view.magnification}`]],
      presets: [],
      label: () => (s.tile === null ? `Slide · ${view.tiles.length} tiles sampled at ${view.magnification} · tissue ${fmt(100 * view.mask.tissue_fraction, 3)}%`
        : `Tile ${s.tile + 1} / ${view.tiles.length} at ${view.magnification} · level-0 (${view.tiles[s.tile].x}, ${view.tiles[s.tile].y})`),
      frame: async () => (s.tile === null ? { frame: rgbaFrom(await bitmapOf(`${view.base_url}/thumb.png`)) } : { frame: await modelFrame(s.tile) }),
    };
    return s;
  }
  // pdf pages and "no view": the model's own images
  const isPdf = view.type === "pdf";
  return {
    type: isPdf ? "pdf" : "images", n: Math.max(images.length, 1), index: 0,
    displays: [["model", isPdf ? "Page images (as the model sees them)" : "What the model sees"]], presets: [],
    label: (i) => (images[i] ? `${images[i].label} · ${i + 1} / ${images.length}` : "no images"),
    frame: async (i) => (images[i] ? { frame: await modelFrame(i) } : { frame: null, banner: "This job kept no images." }),
  };
}

function fillDisplay(displays) {
  $("display").innerHTML = displays.map(([v, t]) => `<option value="${v}">${escapeHtml(t)}</option>`).join("");
  $("display").disabled = displays.length < 2;
}
function fillPresets(presets) {
  $("preset").innerHTML = '<option value="">(custom)</option>' + presets.map((p, i) =>
    `<option value="${i}">${escapeHtml(p.name)} · C ${fmt(p.center)} W ${fmt(p.width)}</option>`).join("");
  $("wl-group").hidden = !presets.length;
}
function syncWindowInputs() {
  $("wl-center").value = fmt(viewer.window.center, 4);
  $("wl-width").value = fmt(viewer.window.width, 4);
  const presets = state.stack ? state.stack.presets : [];
  const i = presets.findIndex((p) => Math.abs(p.center - viewer.window.center) < 1e-6 && Math.abs(p.width - viewer.window.width) < 1e-6);
  $("preset").value = i >= 0 ? String(i) : "";
}

let showToken = 0;
async function show(index, { fit = false } = {}) {
  const s = state.stack;
  if (!s) return;
  s.index = Math.max(0, Math.min(s.n - 1, index));
  const token = ++showToken;
  const display = $("display").value;
  $("slice").value = String(s.index + 1);
  $("slice-info").textContent = s.label(s.index);
  $("slice").setAttribute("aria-valuetext", s.label(s.index));
  highlightThumb();
  try {
    const got = await s.frame(s.index, display);
    if (token !== showToken) return;  // a later slice was asked for meanwhile
    const channel = { r: 0, g: 1, b: 2 }[display];
    viewer.channel = channel === undefined ? null : channel;
    $("viewer-banner").hidden = !got.banner;
    $("viewer-banner").textContent = got.banner || "";
    $("wl-group").hidden = !(display === "values" && state.stack.presets.length > 0);
    viewer.setFrame(got.frame, { keepView: !fit, placement: got.placement || { x: 0, y: 0 } });
    if (fit) viewer.fit();
    if (s.prefetch) s.prefetch(s.index);
    corners();
    // What is on screen, for anyone scripting the page: "series:3:values", "slide:0:slide:tile2".
    viewer.canvas.dataset.shown = `${s.type}:${s.index}:${display}${s.tile !== null && s.tile !== undefined ? `:tile${s.tile}` : ""}`;
  } catch (e) { setStatus(`cannot show this image: ${e.message}`, true); }
}

function corners() {
  const s = state.stack;
  if (!s) return;
  $("corner-tl").textContent = s.label(s.index);
  const windowed = $("display").value === "values" && s.presets.length;
  $("corner-tr").textContent = windowed ? `C ${fmt(viewer.window.center, 4)} · W ${fmt(viewer.window.width, 4)}${viewer.invert ? " · inverted (MONOCHROME1)" : ""}` : "";
  $("corner-br").textContent = `zoom ${fmt(viewer.scale, 3)}×`;
}

function hoverInfo(p) {
  if (!p) { $("corner-bl").textContent = ""; return; }
  const m = state.manifest, view = m && m.view;
  let text = `x ${Math.round(p.x)} · y ${Math.round(p.y)} px`;
  if (p.value !== null && p.value !== undefined) text += ` · ${Array.isArray(p.value) ? `RGB ${p.value.join(", ")}` : `${fmt(p.value, 4)}${view && view.unit ? ` ${view.unit}` : ""}`}`;
  if (view && view.type === "image" && view.padding) {
    const pd = view.padding;
    text += ` · model frame x ${Math.round((p.x + pd.left) / pd.size * 1000)}, y ${Math.round((p.y + pd.top) / pd.size * 1000)} /1000`;
  }
  $("corner-bl").textContent = text;
}

function clickImage(p) {
  const s = state.stack;
  if (!s || s.type !== "slide" || s.tile !== null || !$("show-tiles").checked) return;
  const hit = viewer.rects.find((r) => p.x >= r.x && p.x < r.x + r.w && p.y >= r.y && p.y < r.y + r.h);
  if (hit) openTile(hit.tile);
}
function openTile(i) {
  const s = state.stack;
  s.tile = i;
  viewer.savedRects = viewer.rects; viewer.rects = [];
  viewer.mask && (viewer.mask.visible = false);
  $("back-to-slide").hidden = false;
  show(0, { fit: true });
}
$("back-to-slide").onclick = () => {
  const s = state.stack;
  s.tile = null;
  viewer.rects = $("show-tiles").checked ? viewer.savedRects || [] : [];
  if (viewer.mask) viewer.mask.visible = $("show-mask").checked;
  $("back-to-slide").hidden = true;
  show(0, { fit: true });
};
async function loadMask(view) {
  const bm = await bitmapOf(`${view.base_url}/mask.png`);
  const { width, height, rgba } = rgbaFrom(bm);
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  const ctx = c.getContext("2d");
  const out = ctx.createImageData(width, height);
  for (let i = 0; i < rgba.length; i += 4) {
    const on = rgba[i] > 127;
    out.data[i] = 0; out.data[i + 1] = 220; out.data[i + 2] = 90; out.data[i + 3] = on ? 255 : 0;
  }
  ctx.putImageData(out, 0, 0);
  viewer.mask = { image: c, visible: $("show-mask").checked };
  viewer.imageWidth = view.thumb.width; viewer.imageHeight = view.thumb.height;
  viewer.draw();
}

function thumbs(images, s) {
  const host = $("thumbs");
  host.innerHTML = "";
  host.hidden = !images.length;
  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      io.unobserve(e.target);
      const img = e.target.querySelector("img");
      img.onload = () => img.classList.toggle("px", img.naturalWidth < 76);
      blobUrl(e.target.dataset.url).then((u) => { img.src = u; }).catch(() => {});
    }
  }, { root: host });
  images.forEach((im, j) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "thumb";
    b.dataset.url = im.url;
    b.dataset.model = String(j);
    b.setAttribute("aria-label", `Show ${im.label}`);
    b.innerHTML = `<img alt=""><span>${escapeHtml(im.label)}</span>`;
    b.onclick = () => {
      if (s.type === "series") { show((state.manifest.view.sampled || [])[j] ?? j); }
      else if (s.type === "slide") openTile(j);
      else show(j);
    };
    host.appendChild(b);
    io.observe(b);
  });
}
function highlightThumb() {
  const s = state.stack;
  let current = -1, near = -1;
  if (s.type === "series") {
    current = s.modelIndex(s.index);
    const sampled = (state.manifest.view && state.manifest.view.sampled) || [];
    if (current < 0 && sampled.length) {  // the nearest slice the model saw, to keep one's bearings
      near = sampled.reduce((best, v, j) => (Math.abs(v - s.index) < Math.abs(sampled[best] - s.index) ? j : best), 0);
    }
  } else if (s.type === "slide") current = s.tile === null ? -1 : s.tile;
  else current = s.index;
  for (const b of $("thumbs").children) {
    const on = Number(b.dataset.model) === current;
    b.classList.toggle("near", Number(b.dataset.model) === near);
    if (Number(b.dataset.model) === near) b.scrollIntoView({ block: "nearest", inline: "nearest" });
    b.classList.toggle("current", on);
    if (on) { b.setAttribute("aria-current", "true"); b.scrollIntoView({ block: "nearest", inline: "nearest" }); } else b.removeAttribute("aria-current");
  }
}

viewer.onScroll = (d) => { if (state.stack && state.stack.n > 1) show(state.stack.index + d); };
$("slice").addEventListener("input", () => show(Number($("slice").value) - 1));
$("display").addEventListener("change", () => show(state.stack.index));
$("preset").addEventListener("change", () => {
  const p = state.stack.presets[Number($("preset").value)];
  if (p) viewer.setWindow(p.center, p.width);
});
for (const id of ["wl-center", "wl-width"]) {
  $(id).addEventListener("change", () => {
    const c = parseFloat($("wl-center").value), w = parseFloat($("wl-width").value);
    if (Number.isFinite(c) && Number.isFinite(w) && w > 0) viewer.setWindow(c, w);
  });
}
for (const r of document.querySelectorAll('input[name="tool"]')) r.addEventListener("change", () => { viewer.tool = r.value; });
$("zoom-in").onclick = () => viewer.zoomAt(1.25, viewer.canvas.clientWidth / 2, viewer.canvas.clientHeight / 2);
$("zoom-out").onclick = () => viewer.zoomAt(0.8, viewer.canvas.clientWidth / 2, viewer.canvas.clientHeight / 2);
$("zoom-fit").onclick = () => viewer.fit();
$("zoom-1").onclick = () => viewer.oneToOne();
$("show-padding").onchange = () => { if (viewer.padding) { viewer.padding.visible = $("show-padding").checked; viewer.fit(); } };
$("show-mask").onchange = () => { if (viewer.mask) { viewer.mask.visible = $("show-mask").checked; viewer.draw(); } };
$("show-tiles").onchange = () => {
  if (state.stack && state.stack.type === "slide" && state.stack.tile === null) {
    if ($("show-tiles").checked) viewer.rects = viewer.savedRects || viewer.rects; else { viewer.savedRects = viewer.rects; viewer.rects = []; }
    viewer.draw();
  }
};

// -- results ---------------------------------------------------------------------------------------------------
function statusLabel(result, status) {
  return status === "done" && result && result.parsed == null && (result.errors || []).length ? "failed validation" : status;
}

function showResult(result) {
  state.result = result;
  $("output").hidden = false;
  $("answer").textContent = result.text || $("answer").textContent;
  $("thought-box").hidden = !result.thought;
  $("thought-box").open = false;
  $("thought").textContent = result.thought || "";
  const parsed = result.parsed;
  const m = state.manifest;
  viewer.boxes = [];
  $("boxes").hidden = true;
  if (parsed && Array.isArray(parsed.boxes)) showBoxes(parsed);
  if (parsed && Array.isArray(parsed.tests) && m && m.view && m.view.type === "pdf") renderLabTable(parsed.tests);
  if (parsed && Array.isArray(parsed.series) && m && m.view && m.view.type === "fhir") renderFhir(m.view, parsed.series);
  $("structured").innerHTML = renderValue(parsed, result.errors) + (result.warnings && result.warnings.length
    ? `<ul class="warnings">${result.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join("")}</ul>` : "");
  viewer.draw();
}

function showJobResult(m) {
  $("output").hidden = false;
  $("job-state").textContent = m.status_label;
  $("job-state").className = `badge ${m.status_label.replace(/\s+/g, "-")}`;
  $("answer").textContent = m.result ? m.result.text : (m.job.error || "");
  $("structured").innerHTML = "";
  $("thought-box").hidden = true;
  if (m.result) showResult(m.result);
}

function showBoxes(parsed) {
  const pad = parsed.padding || {};
  viewer.boxes = parsed.boxes.map((b, i) => ({ ...b.box_px, label: b.label, color: COLORS[i % COLORS.length], visible: true }));
  const host = $("boxes");
  host.hidden = false;
  host.innerHTML = `<h4>Boxes <span class="muted">pixels of the original image · the model's [y0, x0, y1, x1] in 0–1000 of the ${escapeHtml(String(pad.size || "?"))} px square</span></h4>` +
    parsed.boxes.map((b, i) => {
      const p = b.box_px;
      return `<label class="boxrow"><input type="checkbox" checked data-box="${i}"> <span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span>` +
        `<strong>${escapeHtml(b.label)}</strong> <span class="coords">(${Math.round(p.x0)}, ${Math.round(p.y0)}) – (${Math.round(p.x1)}, ${Math.round(p.y1)}) px · model [${b.box_2d.map((v) => fmt(v, 4)).join(", ")}]</span></label>`;
    }).join("") + (parsed.missing && parsed.missing.length ? `<p class="muted">No box for: ${escapeHtml(parsed.missing.join(", "))}</p>` : "");
  for (const c of host.querySelectorAll("input[data-box]")) {
    c.onchange = () => { viewer.boxes[Number(c.dataset.box)].visible = c.checked; viewer.draw(); };
  }
}

function renderValue(parsed, errors) {
  if (parsed === null || parsed === undefined) {
    return errors && errors.length ? `<p class="status error">The reply did not validate: ${escapeHtml(errors.join("; "))}</p>` : "";
  }
  if (typeof parsed !== "object") return `<p>${escapeHtml(cell(parsed))}</p>`;
  const list = Array.isArray(parsed) ? parsed : firstList(parsed);
  let html = "";
  if (!Array.isArray(parsed)) {
    const scalars = Object.entries(parsed).filter(([k, v]) => v !== list && k !== "files");
    if (scalars.length) {
      html += `<table class="result kv"><tbody>${scalars.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(cell(v))}</td></tr>`).join("")}</tbody></table>`;
    }
  }
  if (list && list.length && typeof list[0] === "object") {
    const cols = [...new Set(list.flatMap((r) => Object.keys(r)))];
    html += `<table class="result"><thead><tr>${cols.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr></thead><tbody>` +
      list.map((r) => `<tr>${cols.map((c) => `<td>${escapeHtml(cell(r[c]))}</td>`).join("")}</tr>`).join("") + "</tbody></table>";
  }
  return html;
}
function firstList(obj) { for (const v of Object.values(obj)) if (Array.isArray(v) && v.length && typeof v[0] === "object") return v; return null; }

// -- PDF: the extracted table beside the pages ----------------------------------------------------------------
function renderLabTable(tests) {
  const table = $("lab-table");
  if (!tests) {
    table.innerHTML = '<tbody><tr><td class="muted">Run lab-extract to fill this table.</td></tr></tbody>';
    $("pdf-note").textContent = "";
    return;
  }
  const cols = ["name", "result", "unit", "range", "panel"];
  let flagged = 0;
  table.innerHTML = `<thead><tr><th>Flag</th>${cols.map((c) => `<th>${escapeHtml(c.replace(/_/g, " "))}</th>`).join("")}</tr></thead><tbody>` +
    tests.map((t, i) => {
      const flag = outOfRange(t.result, t.range);
      if (flag) flagged++;
      const mark = flag ? `<span class="flag ${flag}" title="${flag === "H" ? "above" : "below"} the printed range">${flag === "H" ? "▲ H" : "▼ L"}</span>` : "";
      const more = ["method", "specimen", "sample_collection_time"].filter((k) => t[k]).map((k) => `${k.replace(/_/g, " ")}: ${t[k]}`).join("; ");
      return `<tr data-row="${i}" class="${flag ? "out" : ""}" title="${escapeHtml(more)}"><td>${mark}</td>` + cols.map((c, k) => (k === 0
        ? `<td><button type="button" class="rowpick" data-row="${i}" aria-label="Show ${escapeHtml(t.name)} on its page">${escapeHtml(t.name)}</button></td>`
        : `<td>${escapeHtml(cell(t[c]))}</td>`)).join("") + "</tr>";
    }).join("") + "</tbody>";
  $("pdf-note").textContent = `· ${tests.length} test(s), ${flagged} outside the printed range (compared here, not by the model)`;
  for (const b of table.querySelectorAll("button.rowpick")) b.onclick = () => selectLabRow(tests, Number(b.dataset.row));
}

function selectLabRow(tests, i) {
  for (const tr of $("lab-table").querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr.dataset.row === String(i));
  const t = tests[i];
  const view = state.manifest.view;
  const norm = (s) => String(s).toLowerCase().replace(/\s+/g, " ").trim();
  const want = norm(t.name);
  viewer.rects = [];
  for (const page of view.pages || []) {
    const hits = page.lines.filter((l) => norm(l.text).includes(want));
    if (!hits.length) continue;
    viewer.rects = hits.map((l) => ({ x: l.box[0] - 3, y: l.box[1] - 3, w: l.box[2] - l.box[0] + 6, h: l.box[3] - l.box[1] + 6, color: "#ffcc00", fill: "rgba(255,204,0,0.18)", lineWidth: 2 }));
    const pageIndex = page.page - 1;
    show(pageIndex).then(() => viewer.draw());
    setStatus(`${t.name}: page ${page.page}`);
    return;
  }
  viewer.draw();
  setStatus(`${t.name}: not found in the page's text layer`);
}

// -- FHIR ----------------------------------------------------------------------------------------------------------
function renderFhir(view, series) {
  const use = series || view.series || [];
  $("charts-note").textContent = `· ${use.length} analyte(s)${series ? " · from this job's result" : " · computed as the trends task does"}`;
  trendCharts($("charts"), use);
  timeline($("timeline"), view.timeline || []);
}

// -- running a task -------------------------------------------------------------------------------------------------
async function run(ev) {
  ev.preventDefault();
  let options = {};
  if ($("options").value.trim()) {
    try { options = JSON.parse($("options").value); } catch (_) { setStatus("options must be JSON", true); return; }
  }
  $("go").disabled = true;
  $("output").hidden = false;
  $("answer").textContent = "";
  $("thought").textContent = "";
  $("thought-box").hidden = true;
  $("structured").innerHTML = "";
  viewer.boxes = []; $("boxes").hidden = true; viewer.draw();
  const body = () => JSON.stringify({ task: $("task").value, uploads: state.upload ? [state.upload] : [], question: $("question").value || null,
    options, kind: state.kind, think: $("think").checked });
  try {
    let r;
    try {
      r = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: body() });
    } catch (e) {
      // The server removes an upload after its job: send the same files again for the next run.
      if (!(e.status === 404 && state.files.length)) throw e;
      state.upload = await sendFiles(state.files);
      r = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: body() });
    }
    const job = await r.json();
    const shown = state.manifest;
    await follow(job.id);
    const m = await getJSON(`/v1/viewer/jobs/${job.id}`);
    if (state.manifest === shown) {  // unless another study was opened meanwhile, show the job's record
      await openManifest(m, { keep: true });
      showJobResult(m);
    }
  } catch (e) { setStatus(`run failed: ${e.message}`, true); }
  try { await loadJobs(); } catch (_) { /* the list refreshes on the next call */ }
  // Ready for the next run only once the history shows this one.
  $("go").disabled = false;
}

async function follow(jobId) {
  $("job-state").textContent = "queued";
  const r = await api(`/v1/jobs/${jobId}/events`);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split("\n").find((l) => l.startsWith("data: "));
      if (data) handle(JSON.parse(data.slice(6)));
    }
  }
}

function handle(ev) {
  const st = $("job-state");
  if (ev.type === "preparing") st.textContent = "preparing";
  else if (ev.type === "prepared") st.textContent = `running · ${ev.images.length} image(s)`;
  else if (ev.type === "token") {
    if (ev.kind === "thought") { $("thought-box").hidden = false; $("thought").textContent += ev.text; }
    else $("answer").textContent += ev.text;
  } else if (ev.type === "result") {
    showResult(ev.result);
    st.dataset.label = statusLabel(ev.result, "done");
  } else if (ev.type === "error") { st.textContent = "failed"; setStatus(ev.message, true); }
  else if (ev.type === "cancelled") st.textContent = "cancelled";
  else if (ev.type === "done") { st.textContent = st.dataset.label || "done"; setStatus(st.textContent); }
}

// -- two runs side by side ----------------------------------------------------------------------------------------
async function compare() {
  const [a, b] = await Promise.all(state.selected.map((id) => getJSON(`/v1/viewer/jobs/${id}`)));
  const ta = (a.result && a.result.text) || a.job.error || "", tb = (b.result && b.result.text) || b.job.error || "";
  const diff = wordDiff(ta, tb);
  const side = (m, which) => diff.filter((d) => d.op === "same" || d.op === which).map((d) =>
    d.op === "same" ? escapeHtml(d.text) : `<mark class="${which}" title="${which === "del" ? "only in this run" : "only in this run"}">${escapeHtml(d.text)}</mark>`).join("");
  const col = (m, which, name) => {
    const r = m.result || {};
    const params = r.params ? `max_new_tokens ${r.params.max_new_tokens ?? "?"} · think ${r.params.think ? "on" : "off"}` : "";
    return `<article class="run-col" aria-label="Run ${name}">` +
      `<h3>Run ${name}: ${escapeHtml(m.job.task)} <span class="badge ${m.status_label.replace(/\s+/g, "-")}">${escapeHtml(m.status_label)}</span></h3>` +
      `<p class="muted">${escapeHtml(modelName(r.model || "?"))} · ${escapeHtml(new Date(m.job.created * 1000).toLocaleString())}${params ? ` · ${escapeHtml(params)}` : ""}</p>` +
      `<div class="cmp-images" data-run="${name}"></div>` +
      `<div class="answer">${side(m, which)}</div></article>`;
  };
  $("compare-cols").innerHTML = col(a, "del", "A") + col(b, "ins", "B");
  for (const [m, name] of [[a, "A"], [b, "B"]]) {
    const host = $("compare-cols").querySelector(`.cmp-images[data-run="${name}"]`);
    const urls = [m.overlay, ...(m.images || []).map((x) => x.url)].filter(Boolean).slice(0, 4);
    for (const u of urls) {
      const img = document.createElement("img");
      img.alt = `${name}: ${u.endsWith("overlay.png") ? "overlay" : "model image"}`;
      host.appendChild(img);
      img.onload = () => img.classList.toggle("px", img.naturalWidth < 150);
      blobUrl(u).then((s) => { img.src = s; }).catch(() => {});
    }
  }
  const fa = flatten((a.result && a.result.parsed) ?? null), fb = flatten((b.result && b.result.parsed) ?? null);
  const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].filter((k) => !k.startsWith("files"));
  let differing = 0;
  const rows = keys.map((k) => {
    const va = cell(fa[k]), vb = cell(fb[k]);
    const differs = va !== vb;
    if (differs) differing++;
    return `<tr class="${differs ? "differs" : ""}"><th>${escapeHtml(k || "(value)")}</th><td>${escapeHtml(va)}</td><td>${escapeHtml(vb)}</td><td>${differs ? '<span aria-label="differs">≠</span>' : ""}</td></tr>`;
  });
  $("compare-table").innerHTML = keys.length
    ? `<p class="muted">${differing} of ${keys.length} field(s) differ</p><table class="result"><thead><tr><th>Field</th><th>Run A</th><th>Run B</th><th></th></tr></thead><tbody>${rows.join("")}</tbody></table>`
    : '<p class="muted">Neither run has a structured result.</p>';
  document.querySelector("main.layout").hidden = true;
  $("compare").hidden = false;
  $("compare-close").focus();
}
$("compare-go").onclick = () => compare().catch((e) => setStatus(`cannot compare: ${e.message}`, true));
$("compare-close").onclick = () => { $("compare").hidden = true; document.querySelector("main.layout").hidden = false; $("compare-go").focus(); };

// -- dictation (when the server transcribes) --------------------------------------------------------------------
let recording = null;
$("record").onclick = async () => {
  if (recording) { recording.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(stream);
    const node = ctx.createScriptProcessor(4096, 1, 1);
    const chunks = [];
    node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    src.connect(node); node.connect(ctx.destination);
    recording = {
      stop: async () => {
        node.disconnect(); src.disconnect(); stream.getTracks().forEach((t) => t.stop());
        const rate = ctx.sampleRate; await ctx.close();
        recording = null;
        $("record").setAttribute("aria-pressed", "false"); $("record").textContent = "Record dictation";
        await transcribe(wav(chunks, rate));
      },
    };
    $("record").setAttribute("aria-pressed", "true"); $("record").textContent = "Stop and transcribe";
    $("record-state").textContent = "recording…";
  } catch (e) { $("record-state").textContent = `cannot record: ${e.message}`; }
};
function wav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new ArrayBuffer(44 + n * 2), v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + n * 2, true); str(8, "WAVE"); str(12, "fmt "); v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, n * 2, true);
  let o = 44;
  for (const c of chunks) for (const s of c) { v.setInt16(o, Math.max(-1, Math.min(1, s)) * 0x7fff, true); o += 2; }
  return new Blob([buf], { type: "audio/wav" });
}
async function transcribe(blob) {
  state.lastDictation = blob;  // kept until the next recording (to send again, or to check)
  $("record-state").textContent = "transcribing…";
  const form = new FormData();
  form.append("file", blob, "dictation.wav");
  form.append("stream", "true");
  const q = $("question");
  const start = q.value ? `${q.value.trimEnd()} ` : "";
  let text = "";
  try {
    const r = await api("/v1/audio/transcriptions", { method: "POST", body: form });
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, i).split("\n").find((l) => l.startsWith("data: "));
        buf = buf.slice(i + 2);
        if (!line) continue;
        const ev = JSON.parse(line.slice(6));
        if (ev.error) throw new Error(ev.error.message);
        if (ev.type === "transcript.text.delta") { text += ev.delta; q.value = start + text; }
        if (ev.type === "transcript.text.done") { text = ev.text; q.value = start + text; }
      }
    }
    $("record-state").textContent = "transcribed: review before running";
  } catch (e) { $("record-state").textContent = `transcription failed: ${e.message}`; }
}

// -- image search (when the server has an index) ------------------------------------------------------------------
async function search(body) {
  $("search-results").innerHTML = '<li class="muted">searching…</li>';
  try {
    const r = await (await api("/v1/index/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ k: 10, ...body }) })).json();
    $("search-results").innerHTML = r.results.length
      ? r.results.map((h) => `<li><span class="score">${fmt(h.score, 3)}</span> ${escapeHtml(h.display)} <span class="muted">${escapeHtml(h.kind || "")}</span></li>`).join("")
      : `<li class="muted">No match among ${r.count} indexed item(s).</li>`;
  } catch (e) { $("search-results").innerHTML = `<li class="status error">${escapeHtml(e.message)}</li>`; }
}
$("search-form").onsubmit = (e) => { e.preventDefault(); if ($("search-text").value.trim()) search({ text: $("search-text").value.trim() }); };
$("search-upload").onclick = () => { if (state.upload) search({ upload_id: state.upload, kind: state.kind }); else $("search-results").innerHTML = '<li class="muted">Open a study first.</li>'; };

// -- opening files ----------------------------------------------------------------------------------------------------
const drop = $("drop");
$("pick").onclick = () => $("file").click();
$("pick-dir").onclick = () => $("dir").click();
$("file").onchange = () => upload([...$("file").files]);
$("dir").onchange = () => upload([...$("dir").files].filter((f) => !f.name.startsWith(".")));
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = async (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  // A dropped folder (a DICOM series, often) is walked for its files.
  const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  const files = entries.some((x) => x.isDirectory) ? (await Promise.all(entries.map(filesOf))).flat() : [...e.dataTransfer.files];
  upload(files.filter((f) => !f.name.startsWith(".")));
};
async function filesOf(entry) {
  if (entry.isFile) return [await new Promise((ok, bad) => entry.file(ok, bad))];
  const reader = entry.createReader(), out = [];
  for (;;) {
    const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));  // at most 100 a call
    if (!batch.length) break;
    for (const child of batch) out.push(...(await filesOf(child)));
  }
  return out;
}
$("compare").addEventListener("keydown", (e) => { if (e.key === "Escape") $("compare-close").click(); });
$("kind").onchange = async () => {
  if (!state.upload) return;
  try { await preview(); } catch (e) {
    if (e.status !== 404 || !state.files.length) { setStatus(e.message, true); return; }
    // The server removed the upload after its job: send the same files again.
    try { state.upload = await sendFiles(state.files); await preview(); } catch (e2) { setStatus(e2.message, true); }
  }
};
$("run").onsubmit = run;
stage("empty");
// A link can open an upload already on the server: /ui/#upload=<id>&kind=<kind> (aris demo --ui prints them).
function openFromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  const id = h.get("upload");
  if (!id) return;
  if (h.get("kind")) $("kind").value = h.get("kind");
  state.upload = id;
  state.files = [];
  preview().catch((e) => setStatus(`cannot open upload: ${e.message}`, true));
}
window.addEventListener("hashchange", openFromHash);
init().then(openFromHash);
