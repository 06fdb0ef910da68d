// The review page: a lead walks submitted annotations with the keyboard (J/K), accepts (A), rejects with a
// comment (R, Enter) or corrects (C), all through the public API; agreement is shown below.
import { api } from "./api.js";
import { labelHotkeys, labelIndexForKey } from "./hotkeys.js";
import { expose } from "./test_hooks.js";

const config = JSON.parse(document.getElementById("review-config").textContent);
const HOTKEYS = labelHotkeys(config.labels);  // the same keys as the annotation tools: "7" picks label "7"
const $ = (id) => document.getElementById(id);
const root = $("review");
const rowsEl = $("review-rows");
const statusBox = $("review-status");

const state = {
  project: config.project, taskType: config.taskType, filter: { review_status: "pending", annotator: "", task: "" },
  annotations: [], count: 0, selected: null, mode: "browse", reviewed: 0, lastAction: null, busy: false,
  status: "loading", error: null, agreement: null,
};
expose("state", state);

function say(message, kind = "info") {
  statusBox.hidden = false;
  statusBox.textContent = message;
  statusBox.className = "alert" + (kind === "error" ? " alert-error" : kind === "ok" ? " alert-ok" : "");
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function summarize(result) {
  if (!result) return "—";
  if ("label" in result && Object.keys(result).length === 1) return result.label;
  if (result.boxes || result.polygons) {
    const n = (result.boxes || []).length, p = (result.polygons || []).length;
    return `${n} box${n === 1 ? "" : "es"}${p ? `, ${p} polygon${p === 1 ? "" : "s"}` : ""}`;
  }
  if (result.regions) return `${result.regions.length} region${result.regions.length === 1 ? "" : "s"}${result.label ? ` · ${result.label}` : ""}`;
  if (result.cuboids) return `${result.cuboids.length} cuboid${result.cuboids.length === 1 ? "" : "s"}`;
  if (result.point_labels) {
    const labeled = result.point_labels.filter((v) => v >= 0).length;
    return `${labeled} of ${result.point_labels.length} points labeled`;
  }
  return JSON.stringify(result).slice(0, 60);
}

function badge(status) { return el("span", { class: `badge badge-${status}`, text: status }); }

async function loadList() {
  state.status = "loading";
  root.dataset.status = "loading";
  const params = new URLSearchParams({ page_size: "200" });
  for (const [k, v] of Object.entries(state.filter)) if (v) params.set(k, v);
  try {
    const { data } = await api(`/api/v1/projects/${state.project}/annotations/?${params}`);
    state.annotations = data.results;
    state.count = data.count;
    state.error = null;
  } catch (err) {
    state.error = err.message;
    say(err.message, "error");
  }
  renderList();
  const keep = state.annotations.find((a) => a.id === state.selected);
  select(keep ? keep.id : (state.annotations[0] || {}).id ?? null);
  state.status = "ready";
  root.dataset.status = "ready";
}

function renderList() {
  rowsEl.replaceChildren();
  for (const a of state.annotations) {
    const sample = el("td", {});
    if (config.modality === "image") sample.append(el("img", { class: "review-thumb", src: a.content_url, alt: "", loading: "lazy" }));
    sample.append(el("span", { class: "small", text: a.external_id || `sample ${a.sample}` }));
    const tr = el("tr", { "data-id": String(a.id), "data-status": a.review_status },
      el("td", { class: "num small", text: String(a.id) }), sample,
      el("td", { text: a.annotator || "—" }),
      el("td", { class: "result-summary", text: summarize(a.final_result) }),
      el("td", {}, badge(a.review_status)));
    tr.addEventListener("click", () => select(a.id));
    rowsEl.append(tr);
  }
  $("list-note").textContent = state.count === 0 ? "No annotations match these filters."
    : `${state.count} annotation${state.count === 1 ? "" : "s"}${state.count > state.annotations.length ? ` (first ${state.annotations.length} shown)` : ""}`;
}

function current() { return state.annotations.find((a) => a.id === state.selected) || null; }

function select(id) {
  state.selected = id;
  setMode("browse");
  for (const tr of rowsEl.children) tr.classList.toggle("is-selected", Number(tr.dataset.id) === id);
  const row = rowsEl.querySelector(`tr[data-id="${id}"]`);
  if (row) row.scrollIntoView({ block: "nearest" });
  renderDetail();
}

function move(step) {
  if (!state.annotations.length) return;
  const i = state.annotations.findIndex((a) => a.id === state.selected);
  const next = Math.max(0, Math.min(state.annotations.length - 1, (i < 0 ? 0 : i + step)));
  select(state.annotations[next].id);
}

function preview(a) {
  const box = $("preview");
  box.replaceChildren();
  const result = a.final_result || {};
  if (config.modality === "image") {
    const wrap = el("div", { class: "stage-wrap" });
    const img = el("img", { src: a.content_url, alt: `Sample ${a.external_id}` });
    wrap.append(img);
    const shapes = [...(result.boxes || []).map((b) => ({ ...b, kind: "box" })), ...(result.polygons || []).map((p) => ({ ...p, kind: "poly" }))];
    if (shapes.length) {
      img.addEventListener("load", () => {
        // Fit the SVG to the displayed image (object-fit: contain letterboxes it).
        const W = img.clientWidth, H = img.clientHeight, r = Math.min(W / img.naturalWidth, H / img.naturalHeight);
        const w = img.naturalWidth * r, h = img.naturalHeight * r, ox = (W - w) / 2, oy = (H - h) / 2;
        const NS = "http://www.w3.org/2000/svg";
        const svg = document.createElementNS(NS, "svg");
        svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
        shapes.forEach((s) => {
          const hue = (config.labels.indexOf(s.label) * 67) % 360;
          let node;
          if (s.kind === "box") {
            node = document.createElementNS(NS, "rect");
            node.setAttribute("x", ox + s.x * w); node.setAttribute("y", oy + s.y * h);
            node.setAttribute("width", s.w * w); node.setAttribute("height", s.h * h);
          } else {
            node = document.createElementNS(NS, "polygon");
            node.setAttribute("points", s.points.map(([x, y]) => `${ox + x * w},${oy + y * h}`).join(" "));
          }
          node.setAttribute("fill", `hsla(${hue}, 85%, 55%, .18)`);
          node.setAttribute("stroke", `hsl(${hue}, 85%, 60%)`);
          node.setAttribute("stroke-width", "2");
          svg.append(node);
        });
        wrap.append(svg);
      }, { once: true });
    }
    box.append(wrap);
  } else if (config.modality === "audio") {
    const text = el("div", { class: "preview-text" }, el("audio", { controls: "", preload: "none", src: a.content_url }));
    const list = el("ol", { class: "small" });
    for (const r of result.regions || []) list.append(el("li", { text: `${r.label} ${r.start.toFixed(2)}–${r.end.toFixed(2)} s${r.text ? ` “${r.text}”` : ""}` }));
    text.append(list);
    box.append(text);
  } else {
    const text = el("div", { class: "preview-text" });
    if (result.point_labels) {
      const counts = {};
      for (const v of result.point_labels) counts[v] = (counts[v] || 0) + 1;
      for (const [k, n] of Object.entries(counts)) text.append(el("div", { text: `${k < 0 ? "unlabeled" : config.labels[k]}: ${n} points` }));
    } else if (result.cuboids) {
      for (const c of result.cuboids) text.append(el("div", { text: `${c.label} at (${c.center.map((v) => v.toFixed(2)).join(", ")}) size ${c.size.map((v) => v.toFixed(2)).join("×")} yaw ${c.yaw.toFixed(2)}` }));
    } else {
      text.append(el("div", { text: summarize(result) }));
    }
    box.append(text);
  }
}

function renderDetail() {
  const a = current();
  $("actions").hidden = !a;
  if (!a) {
    $("detail-title").textContent = "Nothing selected";
    $("preview").replaceChildren();
    $("detail-meta").replaceChildren();
    return;
  }
  $("detail-title").textContent = `Annotation #${a.id} · task ${a.task}`;
  preview(a);
  const meta = $("detail-meta");
  meta.replaceChildren();
  const add = (k, v) => { meta.append(el("dt", { text: k }), el("dd", {}, v)); };
  add("Sample", `${a.external_id || a.sample} (${a.sample})`);
  add("Annotator", a.annotator || "—");
  add("Result", summarize(a.result));
  if (a.corrected_result) add("Corrected to", summarize(a.corrected_result));
  add("Active time", a.active_seconds != null ? `${a.active_seconds.toFixed(1)} s` : "—");
  add("Review", badge(a.review_status));
  if (a.reviewer) add("Reviewer", `${a.reviewer}${a.review_comment ? ` — “${a.review_comment}”` : ""}`);
  add("Task", a.task_state);
  $("comment").value = "";
}

function setMode(mode) {
  state.mode = mode;
  $("correct-box").hidden = mode !== "correct";
  if (mode === "correct") {
    const a = current();
    const labels = $("correct-labels");
    labels.replaceChildren();
    const isClass = state.taskType === "classification";
    $("correct-json-field").hidden = isClass;
    labels.hidden = !isClass;
    if (isClass) {
      config.labels.slice(0, 36).forEach((label, i) => {
        const key = HOTKEYS[i];
        const b = el("button", { type: "button", class: "label-btn", "data-label": label, ...(key ? { "aria-keyshortcuts": key } : {}) },
          el("kbd", { class: key ? "hotkey" : "hotkey hotkey-none", text: key || "" }), ` ${label}`);
        b.addEventListener("click", () => review("correct", { label }));
        labels.append(b);
      });
    } else {
      $("correct-json").value = JSON.stringify(a.final_result, null, 1);
      $("correct-json").focus();
    }
  }
  if (mode === "reject") $("comment").focus();
}

async function review(action, result) {
  const a = current();
  if (!a || state.busy) return;
  const comment = $("comment").value.trim();
  if (action === "reject" && !comment) { setMode("reject"); say("Type a comment for the annotator, then press Enter.", "info"); return; }
  const body = { action, comment };
  if (action === "correct") body.result = result;
  state.busy = true;
  try {
    const { data } = await api(`/api/v1/annotations/${a.id}/review/`, { method: "POST", body });
    state.reviewed += 1;
    state.lastAction = { id: a.id, action, status: data.review_status };
    say(`Annotation #${a.id} ${data.review_status}${action === "reject" ? " — the task is back in the queue" : ""}.`, "ok");
    const i = state.annotations.findIndex((x) => x.id === a.id);
    const stays = !state.filter.review_status || state.filter.review_status.split(",").includes(data.review_status);
    if (stays) { state.annotations[i] = data; } else { state.annotations.splice(i, 1); state.count -= 1; }
    renderList();
    const next = state.annotations[Math.min(stays ? i + 1 : i, state.annotations.length - 1)];
    select(next ? next.id : null);
    refreshCounts();
    loadAgreement();
  } catch (err) {
    say(err.message, "error");
  } finally {
    state.busy = false;
  }
}

async function refreshCounts() {
  const counts = {};
  await Promise.all(["pending", "accepted", "rejected", "corrected"].map(async (s) => {
    const { data } = await api(`/api/v1/projects/${state.project}/annotations/?review_status=${s}&page_size=1`);
    counts[s] = data.count;
  }));
  $("review-counts").textContent = `${counts.pending} pending · ${counts.accepted} accepted · ${counts.rejected} rejected · ${counts.corrected} corrected`;
}

function scoreCell(v) {
  if (v == null) return el("td", { class: "num", text: "—" });
  const bar = el("span", { class: "score-bar" }, el("span", { style: `width: ${Math.max(0, Math.min(1, v)) * 100}%` }));
  return el("td", { class: "num" }, bar, v.toFixed(3));
}

async function loadAgreement() {
  const body = $("agreement-body");
  try {
    const { data } = await api(`/api/v1/projects/${state.project}/agreement/`);
    state.agreement = data;
    const o = data.overall;
    body.replaceChildren();
    if (!o.tasks) {
      body.append(el("p", { class: "muted", text: `No task has two or more annotations yet${config.annotationsPerTask < 2 ? " (this project asks for one per task; raise annotations per task to measure agreement)" : ""}.` }));
      return;
    }
    const stats = el("dl", { class: "stats", id: "agreement-overall" },
      el("div", {}, el("dt", { text: "Mean score" }), el("dd", { text: o.score.toFixed(3) })),
      el("div", {}, el("dt", { text: "Tasks" }), el("dd", { text: String(o.tasks) })));
    if (o.kappa !== undefined) stats.append(el("div", {}, el("dt", { text: `${o.kappa_kind === "cohen" ? "Cohen's" : "Fleiss'"} κ` }), el("dd", { text: o.kappa == null ? "—" : o.kappa.toFixed(3) })));
    const people = el("table", { class: "table compact" }, el("thead", {}, el("tr", {},
      el("th", { scope: "col", text: "Annotator" }), el("th", { scope: "col", class: "num", text: "Pairs" }),
      el("th", { scope: "col", class: "num", text: "Agreement" }),
      ...(state.taskType === "classification" ? [el("th", { scope: "col", class: "num", text: "κ vs others" })] : []))));
    const pb = el("tbody");
    for (const r of data.per_annotator) pb.append(el("tr", {}, el("th", { scope: "row", text: r.annotator }),
      el("td", { class: "num", text: String(r.pairs) }), scoreCell(r.score),
      ...(r.kappa !== undefined ? [el("td", { class: "num", text: r.kappa == null ? "—" : r.kappa.toFixed(3) })] : [])));
    people.append(pb);
    const worst = [...data.per_task].sort((a, b) => a.score - b.score).slice(0, 10);
    const tasks = el("table", { class: "table compact" }, el("thead", {}, el("tr", {},
      el("th", { scope: "col", text: "Task (lowest first)" }), el("th", { scope: "col", text: "Annotators" }),
      el("th", { scope: "col", class: "num", text: "Score" }))));
    const tb = el("tbody");
    for (const r of worst) {
      const link = el("a", { href: "#", text: `task ${r.task}` });
      link.addEventListener("click", (e) => { e.preventDefault(); $("f-task").value = String(r.task); $("f-status").value = ""; applyFilters(); });
      tb.append(el("tr", {}, el("th", { scope: "row" }, link), el("td", { class: "small", text: r.annotators.join(", ") }), scoreCell(r.score)));
    }
    tasks.append(tb);
    body.append(el("p", { class: "muted small", text: `Metric: ${o.metric}. Tasks with two or more annotations not rejected in review.` }), stats, el("div", { class: "agreement-grid" }, el("div", {}, el("h3", { text: "Per annotator" }), people),
      el("div", {}, el("h3", { text: "Per task" }), tasks)));
  } catch (err) {
    body.replaceChildren(el("p", { class: "alert alert-error", text: err.message }));
  }
}

function applyFilters() {
  state.filter = { review_status: $("f-status").value, annotator: $("f-annotator").value.trim(), task: $("f-task").value.trim() };
  loadList();
}

$("f-status").addEventListener("change", applyFilters);
for (const id of ["f-annotator", "f-task"]) $(id).addEventListener("change", applyFilters);
$("accept-btn").addEventListener("click", () => review("accept"));
$("reject-btn").addEventListener("click", () => review("reject"));
$("correct-btn").addEventListener("click", () => setMode(state.mode === "correct" ? "browse" : "correct"));
$("correct-save").addEventListener("click", saveJsonCorrection);
$("help-btn").addEventListener("click", () => { $("help").hidden = false; });
$("help-close").addEventListener("click", () => { $("help").hidden = true; });

function saveJsonCorrection() {
  let result;
  try { result = JSON.parse($("correct-json").value); } catch (err) { say(`The correction is not valid JSON: ${err.message}`, "error"); return; }
  review("correct", result);
}

document.addEventListener("keydown", (event) => {
  const t = event.target;
  const typing = t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT");
  if (event.key === "Escape") {
    if (!$("help").hidden) { $("help").hidden = true; return; }
    if (state.mode !== "browse") { setMode("browse"); t.blur && t.blur(); }
    return;
  }
  if (t && t.id === "comment" && event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    review("reject");
    return;
  }
  if (t && t.id === "correct-json" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    saveJsonCorrection();
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  if (key === "?") { $("help").hidden = !$("help").hidden; event.preventDefault(); return; }
  if (key === "j" || event.key === "ArrowDown") { move(1); event.preventDefault(); }
  else if (key === "k" || event.key === "ArrowUp") { move(-1); event.preventDefault(); }
  else if (key === "a") { review("accept"); event.preventDefault(); }
  else if (key === "r") { setMode("reject"); event.preventDefault(); }
  else if (key === "c") { setMode(state.mode === "correct" ? "browse" : "correct"); event.preventDefault(); }
  else if (state.mode === "correct" && state.taskType === "classification" && /^[0-9]$/.test(event.key)) {
    const i = labelIndexForKey(HOTKEYS, event.key);
    if (i >= 0 && i < 36) review("correct", { label: config.labels[i] });
    event.preventDefault();
  }
});

loadList();
loadAgreement();
