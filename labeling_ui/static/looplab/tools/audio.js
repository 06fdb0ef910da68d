// Audio tool: waveform from server peaks, regions with labels and transcripts, clip label, spectrogram.
//
// The browser never decodes the file to draw it: the waveform comes from GET /api/v1/samples/{id}/peaks/
// (int16 min/max per bucket; a coarse overview first, finer power-of-two levels fetched when zooming in) and
// the spectrogram from GET /api/v1/samples/{id}/spectrogram.png, drawn on a canvas under the waveform in step
// with its scroll and zoom. The <audio> element streams the content URL for playback only.
//
// State (window.__looplab.state, see tool_common.js for the common fields), plus:
//   taskType, duration, sampleRate, channels, regions [{id, label, start, end, text, predicted}] (seconds),
//   selectedRegion (id | null), clipLabel (audio_regions' optional clip "label" | null), playing, currentTime,
//   zoom (px per second; 0 = fit), pxPerSec (effective), spectrogram (shown?), spectrogramReady,
//   peaks {buckets, samplesPerBucket, cached}, timings {peaksMs, drawnMs (performance.now() at first draw
//   of the task: ms since navigation for the first task), lastZoomMs, lastRegionMs}, redraws.
//
// This module is the entry: DOM, wavesurfer, fetches and the task loop. Formatting and peaks decoding are in
// audio/format.js, the time axis (visible range, zoom, ruler, spectrogram source) in audio/timeline.js,
// region ordering, predictions and the result in audio/regions.js.
import WaveSurfer from "wavesurfer";
import RegionsPlugin from "wavesurfer/regions";
import { labelIndexForKey } from "../hotkeys.js";
import { expose } from "../test_hooks.js";
import { createToolLoop, LABEL_KEY, readConfig } from "../tool_common.js";
import { colorFor, decodePeaks, fmtTime, NO_LABEL_COLOR, rgba, round3 } from "./audio/format.js";
import * as regionsLib from "./audio/regions.js";
import { bucketsFor, rulerTicks, spectrogramSource, visibleSpan, zoomFocus, zoomTarget } from "./audio/timeline.js";

const config = readConfig();
const REGIONS = config.taskType === "audio_regions";
const ROW_H = 36;                 // region list row height (px); rows are virtualised
const MAX_PX_PER_SEC = 1000;
const ZOOM_STEP = 1.6;
const MAX_BUCKETS = 1 << 19;      // the server's limit
const SPECTROGRAM_WIDTH = 2048;

const $ = (id) => document.getElementById(id);
const root = $("annotator");
const waveBox = $("waveform");
const audio = $("item-audio");
const specBox = $("spectrogram-box");
const specCanvas = $("spectrogram");
const specCtx = specCanvas.getContext("2d");
const rulerCanvas = $("ruler");
const rulerCtx = rulerCanvas.getContext("2d");
const rowsBox = $("region-rows");
const spacer = $("region-spacer");
const textBox = $("region-text");
const clipSelect = $("clip-label");

const colorOf = (label) => colorFor(config.labels, label);

let loop = null;
let ws = null;
let regionsPlugin = null;
let syncing = false;          // true while the tool itself adds/moves regions (not the user)
let taskSerial = 0;           // guards async work against a newer task
let peaksLevel = null;        // the loaded level: {max, min, buckets, spb, duration}
let peaksWanted = 0;
let specBitmap = null;
let specSpan = 0;
let textBefore = null;        // transcript when the field got focus (one undo entry per edit)
let zoomStarted = 0;
let sortedIds = [];           // region ids ordered by start (the list's and the numbering's order)
let regionSerial = 0;

// -- wavesurfer ---------------------------------------------------------------------------------------

function ensureWave() {
  if (ws) return ws;
  regionsPlugin = RegionsPlugin.create();
  ws = WaveSurfer.create({
    container: waveBox, media: audio, height: 128, normalize: true, minPxPerSec: 0, fillParent: true,
    waveColor: "#7aa2ff", progressColor: "#c7d6ff", cursorColor: "#f5a524", cursorWidth: 2,
    autoScroll: true, autoCenter: false, dragToSeek: false, interact: true,
    plugins: [regionsPlugin],
  });
  if (REGIONS) regionsPlugin.enableDragSelection({ color: rgba(NO_LABEL_COLOR, 0.25) }, 4);
  ws.on("play", () => { state().playing = true; renderPlay(); });
  ws.on("pause", () => { state().playing = false; renderPlay(); });
  ws.on("finish", () => { state().playing = false; renderPlay(); });
  ws.on("timeupdate", (t) => { state().currentTime = t; scheduleClock(); });
  ws.on("redrawcomplete", () => {
    const s = state();
    s.redraws += 1;
    if (s.timings.drawnMs === null && s.duration) s.timings.drawnMs = performance.now();
    if (zoomStarted) { s.timings.lastZoomMs = performance.now() - zoomStarted; zoomStarted = 0; }
    drawSpectrogram();
  });
  ws.on("scroll", () => drawSpectrogram());
  ws.on("zoom", (px) => { renderZoom(); ensureResolution(px); drawSpectrogram(); });
  ws.on("resize", () => drawSpectrogram());
  regionsPlugin.on("region-created", onRegionCreated);
  regionsPlugin.on("region-updated", onRegionUpdated);
  regionsPlugin.on("region-clicked", (region, event) => {
    event.stopPropagation();
    selectRegion(region.id);
  });
  return ws;
}

const state = () => loop.state;

async function fetchPeaks(sampleId, buckets) {
  const response = await fetch(`/api/v1/samples/${sampleId}/peaks/?buckets=${buckets}&encoding=int16`,
    { credentials: "same-origin" });
  if (!response.ok) {
    let message = `the server answered ${response.status}`;
    try { message = (await response.json()).error.message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  const { max, min, buckets: n } = decodePeaks(await response.arrayBuffer());
  const h = (name) => response.headers.get(name);
  return {
    max, min, buckets: n, spb: Number(h("X-Peaks-Samples-Per-Bucket")), duration: Number(h("X-Peaks-Duration")),
    sampleRate: Number(h("X-Peaks-Sample-Rate")), channels: Number(h("X-Peaks-Channels")), cached: h("X-Peaks-Cached") === "true",
  };
}

function overviewBuckets() {
  return bucketsFor(1, (waveBox.clientWidth || 1000) * 4, window.devicePixelRatio || 1, MAX_BUCKETS);
}

// Finer peaks when zoomed past the loaded level (about one bucket per device pixel).
async function ensureResolution(pxPerSec) {
  const s = state();
  if (!peaksLevel || !s.task || !s.duration) return;
  const px = (pxPerSec || 0) > 0 ? pxPerSec : (waveBox.clientWidth || 1000) / s.duration;
  const needed = bucketsFor(s.duration, px, window.devicePixelRatio || 1, MAX_BUCKETS);
  if (needed <= peaksLevel.buckets * 1.01 || peaksLevel.spb <= 1 || needed <= peaksWanted) return;
  peaksWanted = needed;
  const serial = taskSerial;
  try {
    const level = await fetchPeaks(s.task.sample.id, needed);
    if (serial !== taskSerial || level.buckets <= peaksLevel.buckets) return;
    peaksLevel = level;
    s.peaks = { buckets: level.buckets, samplesPerBucket: level.spb, cached: level.cached };
    const scroll = ws.getScroll();
    ws.setOptions({ peaks: [level.max, level.min], duration: s.duration, minPxPerSec: s.zoom });
    ws.setScroll(scroll);
  } catch (err) {
    console.warn("finer peaks failed", err);
  } finally {
    if (serial === taskSerial) peaksWanted = 0;
  }
}

// -- spectrogram -----------------------------------------------------------------------------------

async function loadSpectrogram(sampleId, serial) {
  const s = state();
  try {
    const response = await fetch(`/api/v1/samples/${sampleId}/spectrogram.png?width=${SPECTROGRAM_WIDTH}`,
      { credentials: "same-origin" });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const span = Number(response.headers.get("X-Spectrogram-Span"));
    const bitmap = await createImageBitmap(await response.blob());
    if (serial !== taskSerial) return;
    specBitmap = bitmap;
    specSpan = span || s.duration;
    s.spectrogramReady = true;
    drawSpectrogram();
  } catch (err) {
    console.warn("spectrogram failed", err);
  }
}

function visibleRange() {
  const s = state();
  if (!ws || !s.duration) return [0, 0];
  const total = ws.getWrapper().clientWidth || ws.getWidth();
  return visibleSpan(ws.getScroll(), ws.getWidth(), total, s.duration);
}

let specFrame = 0;
function drawSpectrogram() {
  if (specFrame) return;
  specFrame = requestAnimationFrame(() => {
    specFrame = 0;
    const s = state();
    if (!s) return;
    if (!s.spectrogram) { drawRuler(); return; }
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(specBox.clientWidth * dpr));
    const h = Math.max(1, Math.round(specBox.clientHeight * dpr));
    if (specCanvas.width !== w || specCanvas.height !== h) { specCanvas.width = w; specCanvas.height = h; }
    drawRuler();
    specCtx.fillStyle = "#0f1320";
    specCtx.fillRect(0, 0, w, h);
    if (!specBitmap || !s.duration || !ws) return;
    const [start, end] = visibleRange();
    const total = ws.getWrapper().clientWidth || ws.getWidth();
    const drawnW = Math.min(w, ((end - start) / s.duration) * total * dpr);
    const [sx, sw] = spectrogramSource(start, end, specSpan, specBitmap.width);
    specCtx.imageSmoothingEnabled = true;
    specCtx.imageSmoothingQuality = "high";
    specCtx.drawImage(specBitmap, sx, 0, sw, specBitmap.height, 0, 0, drawnW, h);
  });
}

// A time ruler under the waveform, in step with its scroll and zoom (nice steps for any zoom: timeline.js).
function drawRuler() {
  const s = state();
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(rulerCanvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(rulerCanvas.clientHeight * dpr));
  if (rulerCanvas.width !== w || rulerCanvas.height !== h) { rulerCanvas.width = w; rulerCanvas.height = h; }
  rulerCtx.clearRect(0, 0, w, h);
  if (!ws || !s.duration) return;
  const [start, end] = visibleRange();
  const total = ws.getWrapper().clientWidth || ws.getWidth();
  const pps = total / s.duration;
  rulerCtx.fillStyle = "#aab3c5";
  rulerCtx.strokeStyle = "rgba(170, 179, 197, .55)";
  rulerCtx.font = `${10 * dpr}px ui-monospace, monospace`;
  rulerCtx.textBaseline = "top";
  rulerCtx.beginPath();
  for (const { t, major, label } of rulerTicks(start, end, pps, s.duration)) {
    const x = Math.round((t - start) * pps * dpr) + 0.5;
    rulerCtx.moveTo(x, 0);
    rulerCtx.lineTo(x, major ? 7 * dpr : 3 * dpr);
    if (major) rulerCtx.fillText(label, x + 3 * dpr, 6 * dpr);
  }
  rulerCtx.stroke();
}

function setSpectrogram(on) {
  const s = state();
  s.spectrogram = on;
  root.dataset.spectrogram = on ? "on" : "off";
  $("spectrogram-button").setAttribute("aria-pressed", on ? "true" : "false");
  if (on) drawSpectrogram();
}

// -- regions ---------------------------------------------------------------------------------------

const findRegion = (id) => state().regions.find((r) => r.id === id) || null;
function wsRegions() {
  const map = new Map();
  if (regionsPlugin) for (const r of regionsPlugin.getRegions()) map.set(r.id, r);
  return map;
}

function tagFor(region) {
  const tag = document.createElement("span");
  tag.className = "at-tag";
  Object.assign(tag.style, {
    display: "inline-block", margin: "3px 0 0 4px", padding: "0 5px", borderRadius: "3px",
    font: "600 11px/1.6 system-ui, sans-serif", color: "#fff", whiteSpace: "nowrap", pointerEvents: "none",
    maxWidth: "14rem", overflow: "hidden", textOverflow: "ellipsis",
    background: region.label ? colorOf(region.label) : "#b42318", boxShadow: "0 1px 2px rgba(0,0,0,.35)",
  });
  tag.textContent = (region.label || "no label") + (region.predicted ? " · model" : "");
  return tag;
}

function styleRegion(wsRegion, region) {
  const selected = state().selectedRegion === region.id;
  wsRegion.setOptions({ color: rgba(colorOf(region.label), selected ? 0.42 : 0.22), content: tagFor(region) });
  const el = wsRegion.element;
  if (el) {
    el.style.boxShadow = selected ? `inset 0 0 0 2px ${colorOf(region.label)}` : "none";
    el.style.outline = region.predicted ? "1px dashed rgba(245, 165, 36, .9)" : "none";
    el.style.outlineOffset = "-1px";
    el.dataset.regionId = region.id;
  }
}

function syncRegions() {
  if (!regionsPlugin) return;
  syncing = true;
  try {
    const existing = wsRegions();
    const wanted = new Set(state().regions.map((r) => r.id));
    for (const [id, r] of existing) if (!wanted.has(id)) r.remove();
    for (const region of state().regions) {
      let r = existing.get(region.id);
      if (!r) {
        r = regionsPlugin.addRegion({ id: region.id, start: region.start, end: region.end, drag: true, resize: true,
          minLength: 0.02, color: rgba(colorOf(region.label), 0.22) });
      } else if (Math.abs(r.start - region.start) > 1e-9 || Math.abs(r.end - region.end) > 1e-9) {
        r.setOptions({ start: region.start, end: region.end });
      }
      styleRegion(r, region);
    }
  } finally {
    syncing = false;
  }
  sortRegions();
}

function sortRegions() {
  sortedIds = regionsLib.sortedRegionIds(state().regions);
}

function onRegionCreated(wsRegion) {
  if (syncing || !REGIONS) return;
  const s = state();
  if (findRegion(wsRegion.id) || s.status !== "ready") { if (!findRegion(wsRegion.id)) wsRegion.remove(); return; }
  const started = performance.now();
  loop.checkpoint();
  const region = { id: `r${++regionSerial}`, label: s.selected, start: round3(wsRegion.start), end: round3(wsRegion.end),
    text: "", predicted: false };
  wsRegion.setOptions({ id: region.id });
  s.regions.push(region);
  s.selectedRegion = region.id;
  syncRegions();
  restyleAll();
  loop.render();
  scrollRowIntoView(region.id);
  s.timings.lastRegionMs = performance.now() - started;
}

function onRegionUpdated(wsRegion) {
  if (syncing) return;
  const region = findRegion(wsRegion.id);
  if (!region) return;
  const start = round3(wsRegion.start);
  const end = round3(wsRegion.end);
  if (start === region.start && end === region.end) return;
  loop.checkpoint();
  Object.assign(region, { start, end, predicted: false });
  state().selectedRegion = region.id;
  sortRegions();
  restyleAll();
  loop.render();
}

function restyleAll() {
  const existing = wsRegions();
  for (const region of state().regions) {
    const r = existing.get(region.id);
    if (r) styleRegion(r, region);
  }
}

function selectRegion(id, { seek = false, reveal = false } = {}) {
  const s = state();
  const region = id ? findRegion(id) : null;
  s.selectedRegion = region ? region.id : null;
  if (region && region.label) s.selected = region.label;
  if (region && seek && ws) ws.setTime(region.start);
  if (region && reveal && ws) {
    const [a, b] = visibleRange();
    if (region.start < a || region.end > b) ws.setScrollTime(Math.max(0, region.start - (b - a) * 0.2));
  }
  restyleAll();
  loop.render();
  if (region) scrollRowIntoView(region.id);
}

function deleteSelected() {
  const s = state();
  const region = findRegion(s.selectedRegion);
  if (!region) return false;
  loop.checkpoint();
  const order = sortedIds.indexOf(region.id);
  s.regions = s.regions.filter((r) => r.id !== region.id);
  syncRegions();
  selectRegion(sortedIds[Math.min(order, sortedIds.length - 1)] || null);
  return true;
}

function stepRegion(delta) {
  if (!sortedIds.length) return;
  const at = sortedIds.indexOf(state().selectedRegion);
  const next = regionsLib.stepIndex(at, delta, sortedIds.length);
  selectRegion(sortedIds[next], { seek: true, reveal: true });
}

function setRegionText(id, text) {
  const region = findRegion(id);
  if (region) region.text = text;
}

function commitText() {
  const id = textBox.dataset.regionId;
  if (textBefore === null || !id) return;
  const before = textBefore;
  const after = textBox.value;
  textBefore = null;
  if (before === after || !findRegion(id)) return;
  setRegionText(id, after);
  loop.pushCommand({ undo: () => setRegionText(id, before), redo: () => setRegionText(id, after) });
  loop.render();
}

// -- zoom and playback -------------------------------------------------------------------------------

function fitPx() {
  const s = state();
  return s.duration ? (waveBox.clientWidth || 1000) / s.duration : 1;
}

function setZoom(px) {
  const s = state();
  if (!ws || !s.duration) return;
  const fit = fitPx();
  const z = zoomTarget(px, fit, MAX_PX_PER_SEC);
  if (z === s.zoom) return;
  // keep the selected region, the playhead, or the view's centre in place
  const focus = zoomFocus(visibleRange(), findRegion(s.selectedRegion), s.currentTime);
  zoomStarted = performance.now();
  s.zoom = z;
  ws.zoom(z);
  const span = (ws.getWidth() / (z || fit));
  ws.setScrollTime(Math.max(0, focus - span / 2));
  renderZoom();
}

function zoomBy(factor) {
  const s = state();
  const current = s.zoom || fitPx();
  setZoom(current * factor);
}

function renderZoom() {
  const s = state();
  s.pxPerSec = s.zoom || (s.duration ? fitPx() : 0);
  const label = $("zoom-level");
  if (!s.zoom) label.textContent = "fit";
  else label.textContent = s.zoom >= 10 ? `${Math.round(s.zoom)} px/s` : `${s.zoom.toFixed(1)} px/s`;
}

function renderPlay() {
  const s = state();
  $("play-icon").textContent = s.playing ? "❚❚" : "▶";
  $("play-text").textContent = s.playing ? "Pause" : "Play";
  $("play-button").setAttribute("aria-pressed", s.playing ? "true" : "false");
}

let clockFrame = 0;
function scheduleClock() {
  if (clockFrame) return;
  clockFrame = requestAnimationFrame(() => {
    clockFrame = 0;
    $("time-now").textContent = fmtTime(state().currentTime);
  });
}

function playPause() {
  if (!ws || !state().duration) return;
  ws.playPause().catch((err) => {
    state().playing = false;
    state().note = `Playback failed: ${err.message}`;
    loop.render();
  });
}

// -- region list (virtualised) ---------------------------------------------------------------------

const rowPool = [];
function rowElement(i) {
  if (!rowPool[i]) {
    const row = document.createElement("div");
    row.className = "at-row";
    row.setAttribute("role", "option");
    row.innerHTML = '<span class="at-n"></span><span class="at-chip"></span><span class="at-span"></span><span class="at-said"></span>';
    row.addEventListener("click", () => selectRegion(row.dataset.regionId, { seek: true, reveal: true }));
    rowsBox.appendChild(row);
    rowPool[i] = row;
  }
  return rowPool[i];
}

function renderRows() {
  if (!rowsBox) return;
  const s = state();
  const n = sortedIds.length;
  spacer.style.height = `${n * ROW_H}px`;
  $("region-empty").hidden = n > 0;
  rowsBox.hidden = n === 0;
  const top = rowsBox.scrollTop;
  const height = rowsBox.clientHeight || 216;
  const [first, last] = regionsLib.visibleRows(top, height, n, ROW_H);
  let used = 0;
  for (let k = first; k < last; k++) {
    const region = findRegion(sortedIds[k]);
    if (!region) continue;
    const row = rowElement(used++);
    row.hidden = false;
    row.style.top = `${k * ROW_H}px`;
    row.dataset.regionId = region.id;
    row.classList.toggle("is-selected", region.id === s.selectedRegion);
    row.setAttribute("aria-selected", region.id === s.selectedRegion ? "true" : "false");
    const [num, chip, span, said] = row.children;
    num.textContent = String(k + 1);
    chip.textContent = region.label || "no label";
    chip.classList.toggle("is-unlabeled", !region.label);
    chip.style.setProperty("--chip", colorOf(region.label));
    if (region.predicted) {
      const pred = document.createElement("span");
      pred.className = "at-pred";
      pred.textContent = "MODEL";
      chip.appendChild(pred);
    }
    span.textContent = `${fmtTime(region.start)}–${fmtTime(region.end)}`;
    said.textContent = region.text || "no transcript";
    said.classList.toggle("has-text", Boolean(region.text));
  }
  for (let i = used; i < rowPool.length; i++) rowPool[i].hidden = true;
  $("count-regions").textContent = `${n} ${n === 1 ? "region" : "regions"}`;
  const predicted = s.regions.filter((r) => r.predicted).length;
  $("count-predicted").textContent = predicted ? `· ${predicted} from the model` : "";
}

function scrollRowIntoView(id) {
  if (!rowsBox) return;
  const k = sortedIds.indexOf(id);
  if (k < 0) return;
  const top = k * ROW_H;
  if (top < rowsBox.scrollTop) rowsBox.scrollTop = top;
  else if (top + ROW_H > rowsBox.scrollTop + rowsBox.clientHeight) rowsBox.scrollTop = top + ROW_H - rowsBox.clientHeight;
  renderRows();
}

// -- the panel -------------------------------------------------------------------------------------

function renderTool(s) {
  $("undo-button").disabled = !s.undoDepth || s.status !== "ready";
  $("redo-button").disabled = !s.redoDepth || s.status !== "ready";
  $("time-total").textContent = fmtTime(s.duration || 0);
  renderPlay();
  renderZoom();
  if (!REGIONS) return;
  renderRows();
  const region = findRegion(s.selectedRegion);
  const k = region ? sortedIds.indexOf(region.id) + 1 : 0;
  $("region-title").textContent = region
    ? `Region ${k} · ${region.label || "no label"} · ${fmtTime(region.start)}–${fmtTime(region.end)}`
    : (s.regions.length ? "No region selected" : "No regions yet");
  $("region-delete").disabled = !region || s.status !== "ready";
  textBox.disabled = !region || s.status !== "ready";
  if (document.activeElement !== textBox) {
    textBox.value = region ? region.text || "" : "";
    textBox.dataset.regionId = region ? region.id : "";
  }
  clipSelect.value = s.clipLabel || "";
  clipSelect.disabled = s.status !== "ready";
}

// -- task lifecycle ----------------------------------------------------------------------------------

async function onTask(task, s) {
  const serial = ++taskSerial;
  if (ws && ws.isPlaying()) ws.pause();
  Object.assign(s, {
    duration: 0, sampleRate: null, channels: null, regions: [], selectedRegion: null, clipLabel: null, playing: false,
    currentTime: 0, zoom: 0, spectrogramReady: false, redraws: 0,
    timings: { peaksMs: null, drawnMs: null, lastZoomMs: null, lastRegionMs: null },
  });
  peaksLevel = null;
  peaksWanted = 0;
  specBitmap = null;
  textBefore = null;
  sortedIds = [];
  if (regionsPlugin) { syncing = true; regionsPlugin.clearRegions(); syncing = false; }
  drawSpectrogram();

  const sampleId = task.sample.id;
  const started = performance.now();
  const level = await fetchPeaks(sampleId, overviewBuckets());
  if (serial !== taskSerial) return;
  s.timings.peaksMs = performance.now() - started;
  peaksLevel = level;
  Object.assign(s, { duration: level.duration, sampleRate: level.sampleRate, channels: level.channels,
    peaks: { buckets: level.buckets, samplesPerBucket: level.spb, cached: level.cached } });
  $("spec-top").textContent = `${(level.sampleRate / 2000).toFixed(level.sampleRate % 2000 ? 1 : 0)} kHz`;
  loadSpectrogram(sampleId, serial);
  ensureWave();
  await ws.load(task.sample.content_url, [level.max, level.min], level.duration);
  if (serial !== taskSerial) return;
  ws.zoom(0);

  // The model's pre-annotations, editable like the annotator's own.
  const p = task.prediction || null;
  const known = (label) => (config.labels.includes(label) ? label : null);
  if (REGIONS) {
    const predicted = regionsLib.predictedRegions(p, config.labels, level.duration, () => `r${++regionSerial}`);
    if (predicted) s.regions = predicted;
    s.clipLabel = p && known(p.label) ? p.label : null;
    syncRegions();
  } else {
    s.selected = p && known(p.label) ? p.label : null;
  }
  requestAnimationFrame(() => { if (s.timings.drawnMs === null && serial === taskSerial) s.timings.drawnMs = performance.now(); });
}

function onEmpty(s) {
  taskSerial++;
  if (ws) { ws.pause(); syncing = true; regionsPlugin.clearRegions(); syncing = false; ws.empty(); }
  Object.assign(s, { regions: [], selectedRegion: null, duration: 0, playing: false });
  specBitmap = null;
  sortedIds = [];
}

function collect(s) {
  if (!REGIONS) {
    if (!s.selected) throw new Error("Choose the clip's label first: press its key (shown on its button) or click it.");
    return { label: s.selected };
  }
  const ordered = sortedIds.map(findRegion).filter(Boolean);
  const missing = regionsLib.firstUnlabeled(ordered);
  if (missing >= 0) {
    selectRegion(ordered[missing].id, { reveal: true });
    throw new Error(`Region ${missing + 1} has no label: it is selected now, press a label key to label it.`);
  }
  return regionsLib.regionsResult(ordered, s.duration, s.clipLabel);
}

function onLabel(label, index, s) {
  if (!REGIONS) return;
  const region = findRegion(s.selectedRegion);
  if (!region || region.label === label) return;
  loop.checkpoint();
  region.label = label;
  region.predicted = false;
  restyleAll();
}

function setClipLabel(label) {
  const s = state();
  if (s.clipLabel === label) return;
  loop.checkpoint();
  s.clipLabel = label;
  loop.render();
}

function onKey(event, s) {
  const key = event.key;
  if (event.ctrlKey || event.metaKey || event.altKey) return false;
  if (key === " " || key === "Spacebar") { playPause(); return true; }
  if (key === "+" || key === "=") { zoomBy(ZOOM_STEP); return true; }
  if (key === "-" || key === "_") { zoomBy(1 / ZOOM_STEP); return true; }
  if (key === "f" || key === "F") { setZoom(0); return true; }
  if (key === "g" || key === "G") { setSpectrogram(!s.spectrogram); return true; }
  if (key === "ArrowLeft" || key === "ArrowRight") {
    if (ws && s.duration) ws.setTime(Math.max(0, Math.min(s.duration, ws.getCurrentTime() + (key === "ArrowLeft" ? -1 : 1) * (event.shiftKey ? 5 : 1))));
    return true;
  }
  if (!REGIONS) return false;
  if (event.shiftKey && /^Digit[0-9]$/.test(event.code)) {
    const label = config.labels[labelIndexForKey(s.hotkeys, event.code.slice(5))];  // Shift+7: the label keyed 7
    if (label) setClipLabel(s.clipLabel === label ? null : label);
    return true;
  }
  if (key === "Delete" || key === "Backspace") { deleteSelected(); return true; }
  if ((key === "t" || key === "T") && s.selectedRegion) { textBox.focus(); textBox.select(); return true; }
  if (key === "[") { stepRegion(-1); return true; }
  if (key === "]") { stepRegion(1); return true; }
  if (key === "Escape" && s.selectedRegion) { selectRegion(null); return true; }
  return false;
}

loop = createToolLoop({
  projectId: config.project,
  labels: config.labels,
  state: {
    modality: config.modality, taskType: config.taskType, duration: 0, sampleRate: null, channels: null,
    regions: [], selectedRegion: null, clipLabel: null, playing: false, currentTime: 0, zoom: 0, pxPerSec: 0,
    spectrogram: true, spectrogramReady: false, peaks: null, redraws: 0,
    timings: { peaksMs: null, drawnMs: null, lastZoomMs: null, lastRegionMs: null },
  },
  hotkeys: [
    ["Space", "play / pause"],
    ...(REGIONS ? [
      ["drag", "on the waveform: create a region (drag its edges to resize, its body to move)"],
      [LABEL_KEY, "label the selected region (and new regions)"],
      [`Shift+${LABEL_KEY}`, "set or clear the clip label"],
      ["T", "edit the selected region's transcript (Enter saves, Shift+Enter new line, Esc leaves)"],
      ["Delete / Backspace", "delete the selected region"],
      ["[ / ]", "previous / next region"],
      ["Esc", "deselect the region"],
    ] : [[LABEL_KEY, "choose the clip's label"]]),
    ["+ / −", "zoom in / out"],
    ["F", "fit the whole clip"],
    ["← / →", "seek 1 s (Shift: 5 s)"],
    ["G", "show or hide the spectrogram"],
  ],
  onTask, onEmpty, collect, onKey, onLabel,
  canSubmit: (s) => (REGIONS ? true : s.selected !== null),
  snapshot: (s) => ({ regions: s.regions.map((r) => ({ ...r })), selectedRegion: s.selectedRegion, clipLabel: s.clipLabel }),
  restore: (snap, s) => {
    s.regions = snap.regions.map((r) => ({ ...r }));
    s.selectedRegion = snap.regions.some((r) => r.id === snap.selectedRegion) ? snap.selectedRegion : null;
    s.clipLabel = snap.clipLabel;
  },
  onHistory: (s) => {
    syncRegions();
    restyleAll();
    const region = findRegion(s.selectedRegion);
    if (region && region.label) s.selected = region.label;
  },
  describePrediction: (p) => regionsLib.describePrediction(p, REGIONS),
  render: renderTool,
});
expose("audio", { get wavesurfer() { return ws; }, setZoom, zoomBy, selectRegion });

// -- DOM wiring --------------------------------------------------------------------------------------

$("play-button").addEventListener("click", playPause);
$("zoom-in").addEventListener("click", () => zoomBy(ZOOM_STEP));
$("zoom-out").addEventListener("click", () => zoomBy(1 / ZOOM_STEP));
$("zoom-fit").addEventListener("click", () => setZoom(0));
$("spectrogram-button").addEventListener("click", () => setSpectrogram(!state().spectrogram));
$("undo-button").addEventListener("click", () => loop.undo());
$("redo-button").addEventListener("click", () => loop.redo());
window.addEventListener("resize", () => drawSpectrogram());
if (REGIONS) {
  rowsBox.addEventListener("scroll", () => renderRows(), { passive: true });
  $("region-delete").addEventListener("click", deleteSelected);
  textBox.addEventListener("focus", () => { textBefore = textBox.value; textBox.dataset.regionId = state().selectedRegion || ""; });
  textBox.addEventListener("input", () => { setRegionText(textBox.dataset.regionId, textBox.value); renderRows(); });
  textBox.addEventListener("blur", commitText);
  textBox.addEventListener("keydown", (event) => {
    // Enter saves the transcript and gives the keys back to the tool (a second Enter submits);
    // Shift+Enter is a new line; Esc leaves the field. No other key reaches the tool while typing.
    if ((event.key === "Enter" && !event.shiftKey) || event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      textBox.blur();
      waveBox.focus({ preventScroll: true });
    }
  });
  clipSelect.addEventListener("change", () => { setClipLabel(clipSelect.value || null); clipSelect.blur(); });
}
root.dataset.spectrogram = "on";
loop.start();
