// Image detection tool: bounding boxes and polygons on one plain 2D canvas.
//
// Why plain canvas: every frame is one clear + one drawImage + one path per label colour (all boxes of a label
// go into a single path, filled and stroked once), so 500 shapes cost a handful of draw calls and no DOM or
// scene-graph objects per shape; redraws are coalesced to one per animation frame.
//
// Coordinates: shapes are stored normalised to 0..1 of the image (the API's result shape); the view maps image
// pixels to screen pixels with {scale, tx, ty}. All state is in window.__looplab.state (see tool_common.js), plus:
//   mode ("select"|"box"|"polygon"), boxes [{label,x,y,w,h,predicted?}], polygons [{label,points,predicted?}],
//   selection ({kind:"box"|"polygon", index} | null), vertex (selected polygon vertex index | null),
//   draft (polygon being drawn: [[x,y],...] | null), view {scale, tx, ty}, image {width, height},
//   drawMs (last frame's draw time), frames (frames drawn).
//
// This module is the entry: DOM, events and the task loop. Geometry and hit testing are in image/geometry.js,
// drawing in image/render.js, cursors and key commands in image/input.js, label colours, predictions and the result in image/shapes.js.
import { expose } from "../test_hooks.js";
import { createToolLoop, LABEL_KEY, oncePerFrame, readConfig } from "../tool_common.js";
import * as geo from "./image/geometry.js";
import { clamp01, HIT } from "./image/geometry.js";
import { cursorFor, keyCommand, ZOOM_IN, ZOOM_OUT } from "./image/input.js";
import { drawScene } from "./image/render.js";
import { collectShapes, colorFor, describePrediction, loadPrediction } from "./image/shapes.js";

const config = readConfig();
const MIN_BOX = 4;       // smallest box a drag creates, screen px
const DRAG_START = 3;    // movement before a press becomes a drag, screen px

const $ = (id) => document.getElementById(id);
const frame = $("stage");
const canvas = $("it-canvas");
const ctx = canvas.getContext("2d", { alpha: false });
const hint = $("it-hint");
const root = $("annotator");
const modeButtons = [...document.querySelectorAll(".it-btn[data-mode]")];
const img = new Image();
let imgReady = false;
let dpr = window.devicePixelRatio || 1;
let cssW = 0;
let cssH = 0;
let fitted = true;         // the view follows the frame's size until the user zooms or pans
let spaceDown = false;
let drag = null;           // the pointer gesture in progress
let pointer = null;        // last pointer position over the canvas, screen px
let hover = null;          // what is under the pointer (for the cursor and hover outline)

const colorOf = (label) => colorFor(config.labels, label);

const loop = createToolLoop({
  projectId: config.project,
  labels: config.labels,
  state: {
    modality: config.modality, taskType: config.taskType,
    mode: "select", boxes: [], polygons: [], selection: null, vertex: null, draft: null,
    view: { scale: 1, tx: 0, ty: 0 }, image: { width: 0, height: 0 }, drawMs: 0, frames: 0,
    timings: { taskMs: null, firstFrameMs: null },  // ms since navigation start: task leased; first frame of it drawn
  },
  hotkeys: [
    ["V", "select and edit shapes"],
    ["B", "draw boxes (or drag on an empty spot in select mode)"],
    ["P", "draw a polygon: click vertices; click the first one, Enter or double-click closes it"],
    [LABEL_KEY, "with a shape selected: change its label (and the label for new shapes)"],
    ["Delete / Backspace", "delete the selected vertex or shape (while drawing: the last vertex)"],
    ["Alt+click", "on a polygon edge: insert a vertex; on a vertex: delete it"],
    ["Arrows", "move the selected shape by 1 px (Shift: 10 px)"],
    ["Esc", "cancel the polygon being drawn, or deselect"],
    ["+ / −", "zoom in / out (or the mouse wheel)"],
    ["F", "fit the image to the window"],
    ["Space+drag", "pan (or drag with the middle button)"],
  ],
  async onTask(task, state) {
    state.timings = { taskMs: performance.now(), firstFrameMs: null };
    state.boxes = [];
    state.polygons = [];
    state.selection = null;
    state.vertex = null;
    state.draft = null;
    drag = null;  // a gesture begun on the last item must not edit this one
    hover = null;
    state.selected = state.labels[0] ?? null;  // the loop cleared the last item's choice: new shapes get the first label
    loadPrediction(task.prediction, state);
    imgReady = false;
    img.src = task.sample.content_url;
    try {
      await img.decode();
      imgReady = true;
      state.image = { width: img.naturalWidth, height: img.naturalHeight };
    } catch {
      state.image = { width: 1, height: 1 };
      state.note = "This item's image could not be shown. Skip it (S).";
    }
    fitted = true;
    fit();
  },
  onEmpty(state) {
    imgReady = false;
    Object.assign(state, { boxes: [], polygons: [], selection: null, vertex: null, draft: null });
    invalidate();
  },
  collect: collectShapes,
  onLabel(label) {
    const shape = selectedShape();
    if (shape && shape.label !== label) {
      loop.checkpoint();
      shape.label = label;
      delete shape.predicted;
      invalidate();
    }
  },
  snapshot: (state) => JSON.parse(JSON.stringify({
    boxes: state.boxes, polygons: state.polygons, selection: state.selection, vertex: state.vertex,
  })),
  restore(snap, state) { Object.assign(state, snap); state.draft = null; },
  onHistory: () => invalidate(),
  onKey: handleKey,
  describePrediction,
  render: renderPanel,
});
const state = loop.state;

// -- geometry (image/geometry.js) over the current view -----------------------------------------------

function toScreen(nx, ny) { return geo.toScreen(state.view, state.image, nx, ny); }
function toNorm(sx, sy) { return geo.toNorm(state.view, state.image, sx, sy); }
function selectedShape() { return geo.selectedShape(state); }
function hitTest(sx, sy, alt) { return geo.hitTest(state, sx, sy, alt); }

// -- view --------------------------------------------------------------------------------------------

function resizeCanvas() {
  const rect = frame.getBoundingClientRect();
  dpr = window.devicePixelRatio || 1;
  cssW = Math.max(1, Math.round(rect.width));
  cssH = Math.max(1, Math.round(rect.height));
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  if (fitted) fit(); else invalidate();
}
function fit() {
  const view = geo.fitView(state.image, cssW, cssH);
  if (!view) { invalidate(); return; }
  state.view = view;
  fitted = true;
  invalidate();
  renderZoom();
}
function zoomAt(sx, sy, factor) {
  state.view = geo.zoomView(state.view, fitScale(), sx, sy, factor);
  fitted = false;
  invalidate();
  renderZoom();
}
function fitScale() { return geo.fitScale(state.image, cssW, cssH); }
function renderZoom() {
  $("zoom-level").textContent = `${Math.round((state.view.scale / fitScale()) * 100)}%`;
}

// -- drawing (image/render.js), at most once per animation frame ----------------------------------------

let boxesAsPath = false;  // see render.js: boxes in the colour group's path (the benchmark's comparison)
const invalidate = oncePerFrame(() => draw());

function draw() {
  const t0 = performance.now();
  const frameArgs = { img, imgReady, cssW, cssH, dpr, hover, drag, pointer, spaceDown, boxesAsPath, colorOf };
  if (!drawScene(ctx, state, frameArgs)) { state.drawMs = performance.now() - t0; return; }
  state.frames += 1;
  state.drawMs = performance.now() - t0;
  if (imgReady && state.status === "ready" && state.timings.firstFrameMs === null) state.timings.firstFrameMs = performance.now();
}

// -- panel ---------------------------------------------------------------------------------------------

const HINTS = {
  select: "Click a shape to select it · drag to move · drag a handle to resize · drag on an empty spot to draw a box",
  box: "Drag to draw a box · Esc: back to select",
  polygon: "Click to add vertices · click the first vertex, Enter or double-click to close · Esc cancels",
};

function renderPanel(s) {
  hover = null;  // shapes may have changed under the pointer; the next pointermove finds it again
  root.dataset.mode = s.mode;
  for (const b of modeButtons) b.setAttribute("aria-pressed", b.dataset.mode === s.mode ? "true" : "false");
  $("count-boxes").textContent = `${s.boxes.length} box${s.boxes.length === 1 ? "" : "es"}`;
  $("count-polygons").textContent = `${s.polygons.length} polygon${s.polygons.length === 1 ? "" : "s"}`;
  const predicted = s.boxes.filter((b) => b.predicted).length + s.polygons.filter((p) => p.predicted).length;
  $("count-predicted").textContent = predicted ? `${predicted} unreviewed from the model` : "";
  $("undo-button").disabled = !s.undoDepth || s.status !== "ready";
  $("redo-button").disabled = !s.redoDepth || s.status !== "ready";
  hint.textContent = s.status === "ready" ? (s.draft ? `${s.draft.length} vertices · ${HINTS.polygon}` : HINTS[s.mode]) : "";
  const box = $("it-selection");
  const shape = selectedShape();
  if (!shape) {
    box.innerHTML = '<span class="muted">Nothing selected. Click a shape, or draw one.</span>';
  } else {
    const sel = s.selection;
    const W = s.image.width;
    const H = s.image.height;
    const geometry = sel.kind === "box"
      ? `${Math.round(shape.x * W)}, ${Math.round(shape.y * H)} · ${Math.round(shape.w * W)}×${Math.round(shape.h * H)} px`
      : `${shape.points.length} vertices${s.vertex !== null ? ` · vertex ${s.vertex + 1} selected` : ""}`;
    box.innerHTML = "";
    const sw = document.createElement("span");
    sw.className = "it-swatch";
    sw.style.background = colorOf(shape.label);
    const text = document.createElement("span");
    text.innerHTML = `<b></b> ${sel.kind} ${sel.index + 1}${shape.predicted ? " · from the model" : ""}<br><span class="small muted"></span>`;
    text.querySelector("b").textContent = shape.label;
    text.querySelector(".small").textContent = `${geometry} · label keys relabel · Delete removes`;
    box.append(sw, text);
  }
  renderZoom();
  invalidate();
}

for (const button of document.querySelectorAll(".label-btn")) {  // colour swatches on the label picker
  const sw = document.createElement("span");
  sw.className = "it-swatch";
  sw.style.background = colorOf(button.dataset.label);
  button.querySelector(".label-name").before(sw);
}

// -- edits ---------------------------------------------------------------------------------------------

function setMode(mode) {
  if (state.draft && mode !== "polygon") state.draft = null;
  state.mode = mode;
  loop.render();
}
function select(kind, index, vertex = null) {
  state.selection = kind ? { kind, index } : null;
  state.vertex = vertex;
  const shape = selectedShape();
  if (shape) state.selected = shape.label;  // the picker shows the selected shape's label
}
function closeDraft() {
  if (!state.draft || state.draft.length < 3) return false;
  loop.checkpoint();
  state.polygons.push({ label: state.selected ?? state.labels[0], points: state.draft });
  state.draft = null;
  select("polygon", state.polygons.length - 1);
  loop.render();
  return true;
}
function deleteSelection() {
  const sel = state.selection;
  if (!sel) return false;
  loop.checkpoint();
  if (sel.kind === "polygon" && state.vertex !== null && state.polygons[sel.index].points.length > 3) {
    state.polygons[sel.index].points.splice(state.vertex, 1);
    delete state.polygons[sel.index].predicted;
    state.vertex = null;
  } else {
    (sel.kind === "box" ? state.boxes : state.polygons).splice(sel.index, 1);
    select(null);
  }
  loop.render();
  return true;
}
function nudge(dx, dy) {
  const shape = selectedShape();
  if (!shape) return false;
  loop.checkpoint();
  const nx = dx / (state.view.scale * state.image.width);
  const ny = dy / (state.view.scale * state.image.height);
  geo.moveShape(shape, state.selection.kind, structuredClone(shape), nx, ny);
  loop.render();
  return true;
}
// -- pointer -------------------------------------------------------------------------------------------

function local(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}
function updateCursor() {
  canvas.style.cursor = cursorFor(state.mode, spaceDown, drag, hover);
}

canvas.addEventListener("pointerdown", (event) => {
  if (state.status !== "ready") return;
  canvas.focus({ preventScroll: true });
  const [sx, sy] = local(event);
  pointer = [sx, sy];
  if (event.button === 1 || (event.button === 0 && spaceDown)) {
    event.preventDefault();
    drag = { type: "pan", start: [sx, sy], view: { ...state.view }, moved: false };
    canvas.setPointerCapture(event.pointerId);
    updateCursor();
    return;
  }
  if (event.button !== 0) return;
  canvas.setPointerCapture(event.pointerId);
  const [nx, ny] = toNorm(sx, sy);

  if (state.mode === "polygon" && state.draft) {
    const first = toScreen(...state.draft[0]);
    if (state.draft.length >= 3 && Math.hypot(sx - first[0], sy - first[1]) <= HIT + 1) closeDraft();
    else { state.draft.push([clamp01(nx), clamp01(ny)]); loop.render(); }
    return;
  }
  const hit = state.mode === "box" ? null : hitTest(sx, sy, event.altKey);
  if (hit && hit.type === "handle") {
    const shape = state.boxes[hit.index];
    drag = { type: "resize", handle: hit.handle, orig: { ...shape }, start: [sx, sy], moved: false };
  } else if (hit && hit.type === "vertex") {
    if (event.altKey) {
      loop.checkpoint();
      const poly = state.polygons[hit.index];
      if (poly.points.length > 3) { poly.points.splice(hit.vertex, 1); delete poly.predicted; select("polygon", hit.index); }
      else { state.polygons.splice(hit.index, 1); select(null); }
      loop.render();
      return;
    }
    select("polygon", hit.index, hit.vertex);
    drag = { type: "vertex", index: hit.index, vertex: hit.vertex, start: [sx, sy], moved: false };
  } else if (hit && hit.type === "edge") {
    loop.checkpoint();
    const poly = state.polygons[hit.index];
    poly.points.splice(hit.edge + 1, 0, [clamp01(nx), clamp01(ny)]);
    delete poly.predicted;
    select("polygon", hit.index, hit.edge + 1);
    drag = { type: "vertex", index: hit.index, vertex: hit.edge + 1, start: [sx, sy], moved: true, checkpointed: true };
  } else if (hit && hit.type === "shape" && state.mode === "select") {
    select(hit.kind, hit.index);
    const shape = selectedShape();
    drag = { type: "move", kind: hit.kind, orig: structuredClone(shape), start: [sx, sy], moved: false };
  } else if (state.mode === "polygon") {
    select(null);
    state.draft = [[clamp01(nx), clamp01(ny)]];
  } else {
    drag = { type: "draw", start: [clamp01(nx), clamp01(ny)], rect: null, moved: false, hadSelection: Boolean(state.selection) };
  }
  loop.render();
});

canvas.addEventListener("pointermove", (event) => {
  const [sx, sy] = local(event);
  pointer = [sx, sy];
  if (!drag) {
    if (state.status === "ready") hover = hitTest(sx, sy, event.altKey);
    updateCursor();
    if (state.mode !== "select" || hover || state.draft) invalidate();
    return;
  }
  const dist = Math.hypot(sx - drag.start[0], sy - drag.start[1]);
  if (!drag.moved && dist < DRAG_START) return;
  if (!drag.moved && drag.type !== "pan" && drag.type !== "draw" && !drag.checkpointed) loop.checkpoint();
  drag.moved = true;
  const [nx, ny] = toNorm(sx, sy);
  const shape = selectedShape();
  if (drag.type === "pan") {
    state.view = { ...drag.view, tx: drag.view.tx + sx - drag.start[0], ty: drag.view.ty + sy - drag.start[1] };
    fitted = false;
  } else if (drag.type === "move" && shape) {
    const [ox, oy] = toNorm(...drag.start);
    geo.moveShape(shape, drag.kind, drag.orig, nx - ox, ny - oy);
  } else if (drag.type === "resize" && shape) {
    geo.resizeBox(shape, drag.orig, drag.handle, nx, ny, state.image);
  } else if (drag.type === "vertex") {
    const poly = state.polygons[drag.index];
    poly.points[drag.vertex] = [clamp01(nx), clamp01(ny)];
    delete poly.predicted;
  } else if (drag.type === "draw") {
    const [x0, y0] = drag.start;
    const x1 = clamp01(nx);
    const y1 = clamp01(ny);
    drag.rect = { x: Math.min(x0, x1), y: Math.min(y0, y1), w: Math.abs(x1 - x0), h: Math.abs(y1 - y0) };
  }
  updateCursor();
  invalidate();
});

function endDrag(event) {
  if (!drag) return;
  const d = drag;
  drag = null;
  if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
  if (d.type === "draw") {
    const r = d.rect;
    const big = r && r.w * state.image.width * state.view.scale >= MIN_BOX && r.h * state.image.height * state.view.scale >= MIN_BOX;
    if (d.moved && big) {
      loop.checkpoint();
      state.boxes.push({ label: state.selected ?? state.labels[0], x: r.x, y: r.y, w: r.w, h: r.h });
      select("box", state.boxes.length - 1);
    } else {
      select(null);
    }
  }
  updateCursor();
  loop.render();
}
canvas.addEventListener("pointerup", endDrag);
canvas.addEventListener("pointercancel", endDrag);
canvas.addEventListener("pointerleave", () => { pointer = null; hover = null; invalidate(); });
canvas.addEventListener("dblclick", (event) => {
  if (state.mode !== "polygon" || !state.draft) return;
  event.preventDefault();
  // the double-click's two presses each added a vertex at the same spot: keep one
  const d = state.draft;
  if (d.length >= 2) {
    const a = toScreen(...d[d.length - 1]);
    const b = toScreen(...d[d.length - 2]);
    if (Math.hypot(a[0] - b[0], a[1] - b[1]) <= HIT) d.pop();
  }
  closeDraft();
});
canvas.addEventListener("wheel", (event) => {
  if (state.status !== "ready") return;
  event.preventDefault();
  const [sx, sy] = local(event);
  const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
  zoomAt(sx, sy, Math.exp(-delta * 0.0015));
}, { passive: false });
canvas.addEventListener("contextmenu", (event) => event.preventDefault());
canvas.addEventListener("auxclick", (event) => { if (event.button === 1) event.preventDefault(); });

// -- keys ----------------------------------------------------------------------------------------------

function handleKey(event, s) {
  const key = event.key;
  if (event.ctrlKey || event.metaKey) return false;
  if (key === " ") {
    if (!spaceDown) { spaceDown = true; updateCursor(); }
    return true;
  }
  if (event.altKey) return false;
  const command = keyCommand(key, event.shiftKey);
  if (command && command.mode) { setMode(command.mode); return true; }
  if (command && command.fit) { fit(); return true; }
  if (command && command.zoom) { zoomAt(cssW / 2, cssH / 2, command.zoom); return true; }
  if (key === "Enter" && s.draft) {
    if (!closeDraft()) { s.error = "A polygon needs at least 3 vertices."; loop.render(); }
    return true;
  }
  if (key === "Escape") {
    if (s.draft) { s.draft = null; loop.render(); return true; }
    if (s.vertex !== null) { s.vertex = null; loop.render(); return true; }
    if (s.selection) { select(null); loop.render(); return true; }
    if (s.mode !== "select") { setMode("select"); return true; }
    return false;
  }
  if (key === "Delete" || key === "Backspace") {
    if (s.draft) {
      s.draft.pop();
      if (!s.draft.length) s.draft = null;
      loop.render();
      return true;
    }
    deleteSelection();
    return true;
  }
  if (command && command.nudge) return nudge(...command.nudge);
  return false;
}
document.addEventListener("keyup", (event) => {
  if (event.key === " " && spaceDown) { spaceDown = false; updateCursor(); }
});
window.addEventListener("blur", () => { spaceDown = false; updateCursor(); });

for (const b of modeButtons) b.addEventListener("click", () => { if (state.status === "ready") setMode(b.dataset.mode); });
$("zoom-in").addEventListener("click", () => zoomAt(cssW / 2, cssH / 2, ZOOM_IN));
$("zoom-out").addEventListener("click", () => zoomAt(cssW / 2, cssH / 2, ZOOM_OUT));
$("zoom-fit").addEventListener("click", fit);
$("undo-button").addEventListener("click", loop.undo);
$("redo-button").addEventListener("click", loop.redo);

new ResizeObserver(resizeCanvas).observe(frame);
resizeCanvas();

// For tests and benchmarks: geometry helpers and a synchronous draw.
expose("image", { draw, invalidate, fit, zoomAt, toScreen, toNorm, loop,
  setBoxesAsPath(on) { boxesAsPath = Boolean(on); invalidate(); } });
loop.start();
