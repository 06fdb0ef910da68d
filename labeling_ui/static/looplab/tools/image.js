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
import { expose } from "../test_hooks.js";
import { createToolLoop, LABEL_KEY, readConfig } from "../tool_common.js";

const config = readConfig();
const PALETTE = ["#3b82f6", "#f97316", "#22c55e", "#e11d48", "#a855f7", "#eab308", "#06b6d4", "#ec4899",
  "#84cc16", "#f43f5e", "#14b8a6", "#8b5cf6"];
const HANDLE = 5;        // half size of a resize handle, screen px
const HIT = 7;           // pick radius for vertices and edges, screen px
const MIN_BOX = 4;       // smallest box a drag creates, screen px
const DRAG_START = 3;    // movement before a press becomes a drag, screen px
const TAGS_UP_TO = 400;  // label tags drawn on shapes while there are at most this many (and they fit)
const DASHES_UP_TO = 150; // predicted shapes on screen drawn dashed up to this many (see draw())

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

const colorOf = (label) => PALETTE[Math.max(0, config.labels.indexOf(label)) % PALETTE.length];

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
  collect(state) {
    if (state.draft) throw new Error("Finish the polygon first: Enter closes it, Esc cancels it.");
    const r = (v) => Math.round(v * 1e6) / 1e6;
    return {
      boxes: state.boxes.map((b) => ({ label: b.label, x: r(b.x), y: r(b.y), w: r(b.w), h: r(b.h) })),
      polygons: state.polygons.map((p) => ({ label: p.label, points: p.points.map(([x, y]) => [r(x), r(y)]) })),
    };
  },
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
  describePrediction(p) {
    const nb = (p.boxes || []).length;
    const np = (p.polygons || []).length;
    if (!nb && !np) return null;
    const parts = [nb ? `${nb} box${nb === 1 ? "" : "es"}` : null, np ? `${np} polygon${np === 1 ? "" : "s"}` : null];
    const look = nb + np <= DASHES_UP_TO ? "dashed" : "faint";
    return `The model pre-annotated ${parts.filter(Boolean).join(" and ")} (${look}): correct them, then press Enter.`;
  },
  render: renderPanel,
});
const state = loop.state;

function loadPrediction(p, s) {
  if (!p) return;
  const known = (label) => s.labels.includes(label);
  for (const b of p.boxes || []) {
    if (known(b.label)) s.boxes.push({ label: b.label, x: b.x, y: b.y, w: b.w, h: b.h, predicted: true });
  }
  for (const q of p.polygons || []) {
    if (known(q.label) && Array.isArray(q.points) && q.points.length >= 3) {
      s.polygons.push({ label: q.label, points: q.points.map(([x, y]) => [x, y]), predicted: true });
    }
  }
}

// -- geometry --------------------------------------------------------------------------------------

const clamp01 = (v) => Math.min(1, Math.max(0, v));
function toScreen(nx, ny) {
  const v = state.view;
  return [v.tx + nx * state.image.width * v.scale, v.ty + ny * state.image.height * v.scale];
}
function toNorm(sx, sy) {
  const v = state.view;
  return [(sx - v.tx) / (state.image.width * v.scale), (sy - v.ty) / (state.image.height * v.scale)];
}
function selectedShape() {
  const sel = state.selection;
  if (!sel) return null;
  return (sel.kind === "box" ? state.boxes : state.polygons)[sel.index] || null;
}
function boxHandles(b) {
  const [x0, y0] = toScreen(b.x, b.y);
  const [x1, y1] = toScreen(b.x + b.w, b.y + b.h);
  const xm = (x0 + x1) / 2;
  const ym = (y0 + y1) / 2;
  return { nw: [x0, y0], n: [xm, y0], ne: [x1, y0], e: [x1, ym], se: [x1, y1], s: [xm, y1], sw: [x0, y1], w: [x0, ym] };
}
function distToSegment(px, py, ax, ay, bx, by) {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  const t = len2 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0;
  return [Math.hypot(px - (ax + t * dx), py - (ay + t * dy)), t];
}
function insidePolygon(nx, ny, points) {
  let inside = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if ((yi > ny) !== (yj > ny) && nx < ((xj - xi) * (ny - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
function polygonVertexAt(poly, sx, sy) {
  for (let i = 0; i < poly.points.length; i++) {
    const [vx, vy] = toScreen(...poly.points[i]);
    if (Math.hypot(sx - vx, sy - vy) <= HIT) return i;
  }
  return -1;
}
function polygonEdgeAt(poly, sx, sy) {
  const pts = poly.points.map(([x, y]) => toScreen(x, y));
  for (let i = 0; i < pts.length; i++) {
    const a = pts[i];
    const b = pts[(i + 1) % pts.length];
    const [d] = distToSegment(sx, sy, a[0], a[1], b[0], b[1]);
    if (d <= HIT - 2) return i;  // insert after vertex i
  }
  return -1;
}

// What is under a screen point: handles and vertices of the selection first, then the smallest shape around it.
function hitTest(sx, sy, alt) {
  const sel = state.selection;
  const shape = selectedShape();
  if (shape && sel.kind === "box") {
    for (const [name, [hx, hy]] of Object.entries(boxHandles(shape))) {
      if (Math.abs(sx - hx) <= HANDLE + 2 && Math.abs(sy - hy) <= HANDLE + 2) return { type: "handle", handle: name, index: sel.index };
    }
  }
  const polys = shape && sel.kind === "polygon" ? [sel.index] : [];
  if (alt) for (let i = state.polygons.length - 1; i >= 0; i--) if (!polys.includes(i)) polys.push(i);
  for (const i of polys) {
    const v = polygonVertexAt(state.polygons[i], sx, sy);
    if (v >= 0) return { type: "vertex", index: i, vertex: v };
  }
  for (const i of polys) {
    const e = polygonEdgeAt(state.polygons[i], sx, sy);
    if (e >= 0) return { type: "edge", index: i, edge: e };
  }
  const [nx, ny] = toNorm(sx, sy);
  let best = null;
  let bestArea = Infinity;
  for (let i = state.polygons.length - 1; i >= 0; i--) {
    const p = state.polygons[i];
    if (insidePolygon(nx, ny, p.points)) {
      const area = polygonArea(p.points);
      if (area < bestArea) { bestArea = area; best = { type: "shape", kind: "polygon", index: i }; }
    }
  }
  const tol = HIT / (state.view.scale * Math.max(state.image.width, 1));
  for (let i = state.boxes.length - 1; i >= 0; i--) {
    const b = state.boxes[i];
    if (nx >= b.x - tol && nx <= b.x + b.w + tol && ny >= b.y - tol && ny <= b.y + b.h + tol) {
      const area = b.w * b.h;
      if (area < bestArea) { bestArea = area; best = { type: "shape", kind: "box", index: i }; }
    }
  }
  return best;
}
function polygonArea(points) {
  let a = 0;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) a += (points[j][0] + points[i][0]) * (points[j][1] - points[i][1]);
  return Math.abs(a / 2);
}

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
  const { width, height } = state.image;
  if (!width || !height || !cssW) { invalidate(); return; }
  const pad = 24;
  const scale = Math.min((cssW - 2 * pad) / width, (cssH - 2 * pad) / height);
  state.view = { scale, tx: (cssW - width * scale) / 2, ty: (cssH - height * scale) / 2 };
  fitted = true;
  invalidate();
  renderZoom();
}
function zoomAt(sx, sy, factor) {
  const v = state.view;
  const base = fitScale();
  const scale = Math.min(Math.max(v.scale * factor, base * 0.2), base * 40);
  const k = scale / v.scale;
  state.view = { scale, tx: sx - (sx - v.tx) * k, ty: sy - (sy - v.ty) * k };
  fitted = false;
  invalidate();
  renderZoom();
}
function fitScale() {
  const { width, height } = state.image;
  if (!width || !height) return 1;
  return Math.min((cssW - 48) / width, (cssH - 48) / height);
}
function renderZoom() {
  $("zoom-level").textContent = `${Math.round((state.view.scale / fitScale()) * 100)}%`;
}

// -- drawing: one pass, batched by colour ------------------------------------------------------------

// Boxes are drawn with fillRect/strokeRect (Skia's rect fast path) per colour group; polygons as one Path2D per
// group. boxesAsPath=true puts boxes in the group's path instead (kept for the benchmark's comparison).
let boxesAsPath = false;
let pending = false;
function invalidate() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; draw(); });
}

function draw() {
  const t0 = performance.now();
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#0f1320";
  ctx.fillRect(0, 0, cssW, cssH);
  if (!imgReady && !state.task) { state.drawMs = performance.now() - t0; return; }
  const v = state.view;
  const W = state.image.width * v.scale;
  const H = state.image.height * v.scale;
  if (imgReady) {
    ctx.imageSmoothingEnabled = v.scale < 3;
    ctx.drawImage(img, v.tx, v.ty, W, H);
  }
  ctx.strokeStyle = "rgba(255,255,255,.18)";
  ctx.lineWidth = 1;
  ctx.strokeRect(Math.round(v.tx) - 0.5, Math.round(v.ty) - 0.5, Math.round(W) + 1, Math.round(H) + 1);

  // group shapes by (colour, predicted) so each group is one path: fill once, stroke once
  const groups = new Map();
  const group = (label, predicted) => {
    const key = `${label}\u0000${predicted ? 1 : 0}`;
    let g = groups.get(key);
    if (!g) { g = { color: colorOf(label), predicted, path: new Path2D(), rects: [], paths: [] }; groups.set(key, g); }
    return g;
  };
  const sel = state.selection;
  const total = state.boxes.length + state.polygons.length;
  const tags = [];
  for (let i = 0; i < state.boxes.length; i++) {
    const b = state.boxes[i];
    const x0 = Math.round(v.tx + b.x * W) + 0.5;
    const y0 = Math.round(v.ty + b.y * H) + 0.5;
    const w = Math.round(b.w * W);
    const h = Math.round(b.h * H);
    if (x0 > cssW || y0 > cssH || x0 + w < 0 || y0 + h < 0) continue;  // off screen
    const g = group(b.label, b.predicted);
    if (boxesAsPath) g.path.rect(x0, y0, w, h); else g.rects.push(x0, y0, w, h);
    if (total <= TAGS_UP_TO && w >= 28 && h >= 16) tags.push([b.label, x0, y0]);
  }
  for (let i = 0; i < state.polygons.length; i++) {
    const p = state.polygons[i];
    // one small Path2D per polygon: a path's raster cost follows its bounds, so one path per colour
    // spanning the whole canvas costs far more than many small ones
    const path = new Path2D();
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (let k = 0; k < p.points.length; k++) {
      const x = v.tx + p.points[k][0] * W;
      const y = v.ty + p.points[k][1] * H;
      if (k === 0) path.moveTo(x, y); else path.lineTo(x, y);
      if (x < minX) minX = x; if (x > maxX) maxX = x; if (y < minY) minY = y; if (y > maxY) maxY = y;
    }
    path.closePath();
    if (minX > cssW || minY > cssH || maxX < 0 || maxY < 0) continue;  // off screen
    group(p.label, p.predicted).paths.push(path);
    if (total <= TAGS_UP_TO) {
      const top = p.points.reduce((a, q) => (q[1] < a[1] ? q : a), p.points[0]);
      tags.push([p.label, v.tx + top[0] * W, v.ty + top[1] * H]);
    }
  }
  // Dashes (the look of unreviewed model shapes) cost several times a plain stroke when rasterised; past
  // DASHES_UP_TO visible predicted shapes they are drawn solid and fainter instead.
  let visiblePredicted = 0;
  for (const g of groups.values()) if (g.predicted) visiblePredicted += g.rects.length / 4 + g.paths.length;
  const dashed = visiblePredicted <= DASHES_UP_TO;
  ctx.lineWidth = 1.5;
  for (const g of groups.values()) {
    ctx.globalAlpha = g.predicted ? 0.08 : 0.16;
    ctx.fillStyle = g.color;
    const r = g.rects;
    for (let k = 0; k < r.length; k += 4) ctx.fillRect(r[k], r[k + 1], r[k + 2], r[k + 3]);  // rects: raster fast path
    ctx.fill(g.path);
    for (const path of g.paths) ctx.fill(path, "evenodd");
    ctx.globalAlpha = g.predicted && !dashed ? 0.6 : 1;
    ctx.strokeStyle = g.color;
    ctx.setLineDash(g.predicted && dashed ? [6, 4] : []);
    for (let k = 0; k < r.length; k += 4) ctx.strokeRect(r[k], r[k + 1], r[k + 2], r[k + 3]);
    ctx.stroke(g.path);
    for (const path of g.paths) ctx.stroke(path);
  }
  ctx.globalAlpha = 1;
  ctx.setLineDash([]);

  if (tags.length) {
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (const [label, x, y] of tags) {
      const tw = ctx.measureText(label).width + 8;
      ctx.fillStyle = colorOf(label);
      ctx.fillRect(x - 0.5, y - 15, tw, 15);
      ctx.fillStyle = "#fff";
      ctx.fillText(label, x + 3.5, y - 7);
    }
  }

  // hover outline
  if (hover && hover.type === "shape" && !(sel && sel.kind === hover.kind && sel.index === hover.index) && !drag) {
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = "rgba(255,255,255,.55)";
    outline(hover.kind, hover.index);
  }
  // the selection: white halo, colour stroke, handles or vertices
  const shape = selectedShape();
  if (shape) {
    ctx.lineWidth = 4;
    ctx.strokeStyle = "rgba(255,255,255,.9)";
    outline(sel.kind, sel.index);
    ctx.lineWidth = 2;
    ctx.strokeStyle = colorOf(shape.label);
    outline(sel.kind, sel.index);
    if (sel.kind === "box") {
      for (const [hx, hy] of Object.values(boxHandles(shape))) square(hx, hy, "#fff", colorOf(shape.label));
    } else {
      shape.points.forEach(([x, y], k) => {
        const [sx, sy] = toScreen(x, y);
        dot(sx, sy, k === state.vertex ? 6 : 4.5, k === state.vertex ? colorOf(shape.label) : "#fff", k === state.vertex ? "#fff" : colorOf(shape.label));
      });
    }
  }
  // gestures in progress
  if (drag && drag.type === "draw" && drag.moved) {
    const [x0, y0] = toScreen(drag.rect.x, drag.rect.y);
    const [x1, y1] = toScreen(drag.rect.x + drag.rect.w, drag.rect.y + drag.rect.h);
    ctx.fillStyle = colorOf(state.selected);
    ctx.globalAlpha = 0.16;
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    ctx.globalAlpha = 1;
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#fff";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
  if (state.draft) {
    const color = colorOf(state.selected);
    const pts = state.draft.map(([x, y]) => toScreen(x, y));
    ctx.beginPath();
    pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (pointer && state.mode === "polygon") ctx.lineTo(pointer[0], pointer[1]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = color;
    ctx.stroke();
    const closing = pointer && pts.length >= 3 && Math.hypot(pointer[0] - pts[0][0], pointer[1] - pts[0][1]) <= HIT + 1;
    pts.forEach(([x, y], k) => dot(x, y, k === 0 ? (closing ? 8 : 6) : 4, k === 0 ? color : "#fff", k === 0 ? "#fff" : color));
  }
  // crosshair while drawing
  if (pointer && (state.mode === "box" || state.mode === "polygon") && !spaceDown && !(drag && drag.type === "pan")) {
    ctx.strokeStyle = "rgba(255,255,255,.35)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(pointer[0]) + 0.5, 0); ctx.lineTo(Math.round(pointer[0]) + 0.5, cssH);
    ctx.moveTo(0, Math.round(pointer[1]) + 0.5); ctx.lineTo(cssW, Math.round(pointer[1]) + 0.5);
    ctx.stroke();
  }
  state.frames += 1;
  state.drawMs = performance.now() - t0;
  if (imgReady && state.status === "ready" && state.timings.firstFrameMs === null) state.timings.firstFrameMs = performance.now();
}

function outline(kind, index) {
  if (!(kind === "box" ? state.boxes : state.polygons)[index]) return;
  ctx.beginPath();
  if (kind === "box") {
    const b = state.boxes[index];
    const [x0, y0] = toScreen(b.x, b.y);
    const [x1, y1] = toScreen(b.x + b.w, b.y + b.h);
    ctx.rect(x0, y0, x1 - x0, y1 - y0);
  } else {
    state.polygons[index].points.forEach(([x, y], k) => {
      const [sx, sy] = toScreen(x, y);
      if (k) ctx.lineTo(sx, sy); else ctx.moveTo(sx, sy);
    });
    ctx.closePath();
  }
  ctx.stroke();
}
function square(x, y, fill, stroke) {
  ctx.fillStyle = fill;
  ctx.strokeStyle = stroke;
  ctx.lineWidth = 1.5;
  ctx.fillRect(x - HANDLE, y - HANDLE, HANDLE * 2, HANDLE * 2);
  ctx.strokeRect(x - HANDLE, y - HANDLE, HANDLE * 2, HANDLE * 2);
}
function dot(x, y, r, fill, stroke) {
  ctx.beginPath();
  ctx.arc(x, y, r, 0, Math.PI * 2);
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = stroke;
  ctx.stroke();
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
  moveShape(shape, state.selection.kind, structuredClone(shape), nx, ny);
  loop.render();
  return true;
}
function moveShape(shape, kind, orig, dx, dy) {
  if (kind === "box") {
    shape.x = Math.min(Math.max(orig.x + dx, 0), 1 - orig.w);
    shape.y = Math.min(Math.max(orig.y + dy, 0), 1 - orig.h);
  } else {
    const xs = orig.points.map((p) => p[0]);
    const ys = orig.points.map((p) => p[1]);
    const cx = Math.min(Math.max(dx, -Math.min(...xs)), 1 - Math.max(...xs));
    const cy = Math.min(Math.max(dy, -Math.min(...ys)), 1 - Math.max(...ys));
    shape.points = orig.points.map(([x, y]) => [x + cx, y + cy]);
  }
  delete shape.predicted;
}
function resizeBox(shape, orig, handle, nx, ny) {
  let x0 = orig.x;
  let y0 = orig.y;
  let x1 = orig.x + orig.w;
  let y1 = orig.y + orig.h;
  if (handle.includes("w")) x0 = clamp01(nx);
  if (handle.includes("e")) x1 = clamp01(nx);
  if (handle.includes("n")) y0 = clamp01(ny);
  if (handle.includes("s")) y1 = clamp01(ny);
  const min = 1 / Math.max(state.image.width, state.image.height) / 4;
  shape.x = Math.min(x0, x1);
  shape.y = Math.min(y0, y1);
  shape.w = Math.max(Math.abs(x1 - x0), min);
  shape.h = Math.max(Math.abs(y1 - y0), min);
  delete shape.predicted;
}

// -- pointer -------------------------------------------------------------------------------------------

function local(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}
const CURSORS = { nw: "nwse-resize", se: "nwse-resize", ne: "nesw-resize", sw: "nesw-resize", n: "ns-resize", s: "ns-resize", e: "ew-resize", w: "ew-resize" };
function updateCursor() {
  let cursor = state.mode === "select" ? "default" : "crosshair";
  if (spaceDown || (drag && drag.type === "pan")) cursor = drag && drag.type === "pan" ? "grabbing" : "grab";
  else if (drag && drag.type === "move") cursor = "move";
  else if (hover && hover.type === "handle") cursor = CURSORS[hover.handle];
  else if (hover && hover.type === "vertex") cursor = "pointer";
  else if (hover && hover.type === "edge") cursor = "copy";
  else if (hover && hover.type === "shape" && state.mode === "select") cursor = "move";
  canvas.style.cursor = cursor;
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
    moveShape(shape, drag.kind, drag.orig, nx - ox, ny - oy);
  } else if (drag.type === "resize" && shape) {
    resizeBox(shape, drag.orig, drag.handle, nx, ny);
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
  const lower = key.length === 1 ? key.toLowerCase() : key;
  if (lower === "v") { setMode("select"); return true; }
  if (lower === "b") { setMode("box"); return true; }
  if (lower === "p") { setMode("polygon"); return true; }
  if (lower === "f") { fit(); return true; }
  if (key === "+" || key === "=") { zoomAt(cssW / 2, cssH / 2, 1.25); return true; }
  if (key === "-" || key === "_") { zoomAt(cssW / 2, cssH / 2, 0.8); return true; }
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
  const step = event.shiftKey ? 10 : 1;
  if (key === "ArrowLeft") return nudge(-step, 0);
  if (key === "ArrowRight") return nudge(step, 0);
  if (key === "ArrowUp") return nudge(0, -step);
  if (key === "ArrowDown") return nudge(0, step);
  return false;
}
document.addEventListener("keyup", (event) => {
  if (event.key === " " && spaceDown) { spaceDown = false; updateCursor(); }
});
window.addEventListener("blur", () => { spaceDown = false; updateCursor(); });

for (const b of modeButtons) b.addEventListener("click", () => { if (state.status === "ready") setMode(b.dataset.mode); });
$("zoom-in").addEventListener("click", () => zoomAt(cssW / 2, cssH / 2, 1.25));
$("zoom-out").addEventListener("click", () => zoomAt(cssW / 2, cssH / 2, 0.8));
$("zoom-fit").addEventListener("click", fit);
$("undo-button").addEventListener("click", loop.undo);
$("redo-button").addEventListener("click", loop.redo);

new ResizeObserver(resizeCanvas).observe(frame);
resizeCanvas();

// For tests and benchmarks: geometry helpers and a synchronous draw.
expose("image", { draw, invalidate, fit, zoomAt, toScreen, toNorm, loop,
  setBoxesAsPath(on) { boxesAsPath = Boolean(on); invalidate(); } });
loop.start();
