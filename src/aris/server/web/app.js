// Aris web UI: upload -> preview (exactly what the model sees) -> run a task -> streamed answer -> structured result.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { uploads: [], kind: "auto" };

function headers(extra = {}) {
  const key = $("apikey").value || sessionStorage.getItem("aris-key") || "";
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}
$("apikey").value = sessionStorage.getItem("aris-key") || "";
// Re-read the server only when the key really changed (a blur fires "change" again).
let lastKey = $("apikey").value;
$("apikey").addEventListener("change", () => {
  if ($("apikey").value === lastKey) return;
  lastKey = $("apikey").value;
  sessionStorage.setItem("aris-key", lastKey);
  init();
});

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: headers(opts.headers || {}) });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error.message; } catch (_) {}
    throw new Error(msg);
  }
  return r;
}
function setStatus(text, error = false) { $("status").textContent = text; $("status").className = error ? "status error" : "status"; }
// Images are fetched with the key (an <img src> cannot send headers), then shown from blob URLs.
async function imgSrc(url) { const r = await api(url); return URL.createObjectURL(await r.blob()); }

async function init() {
  try {
    const models = await (await api("/v1/models")).json();
    $("model").textContent = models.data.map((m) => m.id).join(", ");
    const tasks = await (await api("/v1/tasks")).json();
    const chosen = $("task").value;  // keep the user's choice when the list is rebuilt
    $("task").innerHTML = tasks.map((t) => `<option value="${t.name}" title="${t.description}">${t.name}</option>`).join("");
    if (chosen && tasks.some((t) => t.name === chosen)) $("task").value = chosen;
    await loadJobs();
  } catch (e) { setStatus(`cannot reach the server: ${e.message}`, true); }
}

async function loadJobs() {
  const jobs = await (await api("/v1/jobs")).json();
  $("jobs").innerHTML = "";
  for (const j of jobs) {
    const li = document.createElement("li");
    li.innerHTML = `<span>${j.task}</span><span class="badge">${j.status}</span>`;
    li.title = new Date(j.created * 1000).toLocaleString();
    li.onclick = () => showJob(j.id);
    $("jobs").appendChild(li);
  }
}

async function upload(files) {
  if (!files.length) return;
  setStatus(`uploading ${files.length} file(s)…`);
  const form = new FormData();
  for (const f of files) form.append("files", f);
  try {
    const up = await (await api("/v1/uploads", { method: "POST", body: form })).json();
    state.uploads = [up.id];
    await preview(up.id);
  } catch (e) { setStatus(`upload failed: ${e.message}`, true); }
}

async function preview(uploadId) {
  state.kind = $("kind").value;
  setStatus("preparing what the model will see…");
  const p = await (await api(`/v1/uploads/${uploadId}/prepare`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ kind: state.kind }),
  })).json();
  $("preview").hidden = false;
  $("preview-count").textContent = `· ${p.kind} · ${p.images.length} image(s) · ${p.image_tokens} image tokens`;
  $("warnings").innerHTML = p.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join("");
  $("grid").innerHTML = "";
  for (const im of p.images) {
    const fig = document.createElement("figure");
    fig.innerHTML = `<img alt="${escapeHtml(im.label)}"><figcaption>${escapeHtml(im.label)}</figcaption>`;
    $("grid").appendChild(fig);
    imgSrc(im.url).then((src) => { fig.querySelector("img").src = src; });
  }
  $("context").hidden = !p.text;
  $("context").textContent = p.text || "";
  $("run").hidden = false;
  const suggested = { cxr: "cxr-report", ct: "ct", mri: "mri", wsi: "wsi", pdf: "lab-extract", fhir: "ehr-summary", image: "vqa" }[p.kind];
  if (suggested && [...$("task").options].some((o) => o.value === suggested)) $("task").value = suggested;
  setStatus(`ready: ${p.images.length} image(s) prepared`);
}

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
  $("overlay").hidden = true;
  try {
    const job = await (await api("/v1/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task: $("task").value, uploads: state.uploads, question: $("question").value || null,
                             options, kind: state.kind, think: $("think").checked }),
    })).json();
    await follow(job.id);
  } catch (e) { setStatus(`run failed: ${e.message}`, true); }
  $("go").disabled = false;
  loadJobs();
}

// Server-sent events over fetch, so the API key header can be sent.
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
  if (ev.type === "preparing") $("job-state").textContent = "preparing";
  else if (ev.type === "prepared") $("job-state").textContent = `running · ${ev.images.length} image(s)`;
  else if (ev.type === "token") {
    if (ev.kind === "thought") { $("thought-box").hidden = false; $("thought").textContent += ev.text; }
    else $("answer").textContent += ev.text;
  } else if (ev.type === "result") showResult(ev.result, ev.overlay);
  else if (ev.type === "error") { $("job-state").textContent = "failed"; setStatus(ev.message, true); }
  else if (ev.type === "done") { $("job-state").textContent = "done"; setStatus("done"); }
}

function showResult(result, overlay) {
  $("answer").textContent = result.text || $("answer").textContent;
  if (result.thought) { $("thought-box").hidden = false; $("thought").textContent = result.thought; }
  $("structured").innerHTML = renderValue(result.parsed, result.errors);
  if (overlay) imgSrc(overlay).then((src) => { $("overlay").src = src; $("overlay").hidden = false; });
}

function renderValue(parsed, errors) {
  if (parsed === null || parsed === undefined) {
    return errors && errors.length ? `<p class="status error">The reply did not validate: ${escapeHtml(errors.join("; "))}</p>` : "";
  }
  const rows = Array.isArray(parsed) ? parsed : (firstList(parsed) || [parsed]);
  if (!rows.length || typeof rows[0] !== "object") return `<table class="result"><tr><td>${escapeHtml(JSON.stringify(parsed))}</td></tr></table>`;
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v) => escapeHtml(typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? ""));
  return `<table class="result"><thead><tr>${cols.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${cols.map((c) => `<td>${cell(r[c])}</td>`).join("")}</tr>`).join("") + "</tbody></table>";
}
function firstList(obj) { for (const v of Object.values(obj)) if (Array.isArray(v) && v.length && typeof v[0] === "object") return v; return null; }
function escapeHtml(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }

async function showJob(jobId) {
  const j = await (await api(`/v1/jobs/${jobId}`)).json();
  $("output").hidden = false;
  $("job-state").textContent = j.status;
  $("answer").textContent = j.result ? j.result.text : (j.error || "");
  $("structured").innerHTML = "";
  $("overlay").hidden = true;
  if (j.result) showResult(j.result, null);
}

const drop = $("drop");
drop.onclick = () => $("file").click();
$("file").onchange = () => upload([...$("file").files]);
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); upload([...e.dataTransfer.files]); };
$("kind").onchange = () => { if (state.uploads.length) preview(state.uploads[0]); };
$("run").onsubmit = run;
// A link can open an upload already on the server: /ui/#upload=<id>&kind=<kind> (aris demo --ui prints them).
function openFromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  const id = h.get("upload");
  if (!id) return;
  if (h.get("kind")) $("kind").value = h.get("kind");
  state.uploads = [id];
  preview(id).catch((e) => setStatus(`cannot open upload: ${e.message}`, true));
}
window.addEventListener("hashchange", openFromHash);
init().then(openFromHash);
