// Image tool drawing: one pass over a 2D canvas context, batched by colour. No module state: everything it
// draws comes in as arguments (the tool's state `s` and the frame `f`: image, canvas size, pointer and gesture).
import { boxHandles, HANDLE, HIT, selectedShape, toScreen as toScreenIn } from "./geometry.js";
import { DASHES_UP_TO } from "./shapes.js";

export const TAGS_UP_TO = 400;  // label tags drawn on shapes while there are at most this many (and they fit)

// Boxes are drawn with fillRect/strokeRect (Skia's rect fast path) per colour group; polygons as one Path2D per
// group. f.boxesAsPath=true puts boxes in the group's path instead (kept for the benchmark's comparison).
// Returns false when there was nothing to draw but the background (no image and no task), true otherwise.
export function drawScene(ctx, s, f) {
  const { img, imgReady, cssW, cssH, dpr, hover, drag, pointer, spaceDown, boxesAsPath, colorOf } = f;
  const toScreen = (x, y) => toScreenIn(s.view, s.image, x, y);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#0f1320";
  ctx.fillRect(0, 0, cssW, cssH);
  if (!imgReady && !s.task) return false;
  const v = s.view;
  const W = s.image.width * v.scale;
  const H = s.image.height * v.scale;
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
  const sel = s.selection;
  const total = s.boxes.length + s.polygons.length;
  const tags = [];
  for (let i = 0; i < s.boxes.length; i++) {
    const b = s.boxes[i];
    const x0 = Math.round(v.tx + b.x * W) + 0.5;
    const y0 = Math.round(v.ty + b.y * H) + 0.5;
    const w = Math.round(b.w * W);
    const h = Math.round(b.h * H);
    if (x0 > cssW || y0 > cssH || x0 + w < 0 || y0 + h < 0) continue;  // off screen
    const g = group(b.label, b.predicted);
    if (boxesAsPath) g.path.rect(x0, y0, w, h); else g.rects.push(x0, y0, w, h);
    if (total <= TAGS_UP_TO && w >= 28 && h >= 16) tags.push([b.label, x0, y0]);
  }
  for (let i = 0; i < s.polygons.length; i++) {
    const p = s.polygons[i];
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
    outline(ctx, s, hover.kind, hover.index);
  }
  // the selection: white halo, colour stroke, handles or vertices
  const shape = selectedShape(s);
  if (shape) {
    ctx.lineWidth = 4;
    ctx.strokeStyle = "rgba(255,255,255,.9)";
    outline(ctx, s, sel.kind, sel.index);
    ctx.lineWidth = 2;
    ctx.strokeStyle = colorOf(shape.label);
    outline(ctx, s, sel.kind, sel.index);
    if (sel.kind === "box") {
      for (const [hx, hy] of Object.values(boxHandles(s.view, s.image, shape))) square(ctx, hx, hy, "#fff", colorOf(shape.label));
    } else {
      shape.points.forEach(([x, y], k) => {
        const [sx, sy] = toScreen(x, y);
        dot(ctx, sx, sy, k === s.vertex ? 6 : 4.5, k === s.vertex ? colorOf(shape.label) : "#fff", k === s.vertex ? "#fff" : colorOf(shape.label));
      });
    }
  }
  // gestures in progress
  if (drag && drag.type === "draw" && drag.moved) {
    const [x0, y0] = toScreen(drag.rect.x, drag.rect.y);
    const [x1, y1] = toScreen(drag.rect.x + drag.rect.w, drag.rect.y + drag.rect.h);
    ctx.fillStyle = colorOf(s.selected);
    ctx.globalAlpha = 0.16;
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    ctx.globalAlpha = 1;
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#fff";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
  if (s.draft) {
    const color = colorOf(s.selected);
    const pts = s.draft.map(([x, y]) => toScreen(x, y));
    ctx.beginPath();
    pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (pointer && s.mode === "polygon") ctx.lineTo(pointer[0], pointer[1]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = color;
    ctx.stroke();
    const closing = pointer && pts.length >= 3 && Math.hypot(pointer[0] - pts[0][0], pointer[1] - pts[0][1]) <= HIT + 1;
    pts.forEach(([x, y], k) => dot(ctx, x, y, k === 0 ? (closing ? 8 : 6) : 4, k === 0 ? color : "#fff", k === 0 ? "#fff" : color));
  }
  // crosshair while drawing
  if (pointer && (s.mode === "box" || s.mode === "polygon") && !spaceDown && !(drag && drag.type === "pan")) {
    ctx.strokeStyle = "rgba(255,255,255,.35)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(pointer[0]) + 0.5, 0); ctx.lineTo(Math.round(pointer[0]) + 0.5, cssH);
    ctx.moveTo(0, Math.round(pointer[1]) + 0.5); ctx.lineTo(cssW, Math.round(pointer[1]) + 0.5);
    ctx.stroke();
  }
  return true;
}

function outline(ctx, s, kind, index) {
  const toScreen = (x, y) => toScreenIn(s.view, s.image, x, y);
  if (!(kind === "box" ? s.boxes : s.polygons)[index]) return;
  ctx.beginPath();
  if (kind === "box") {
    const b = s.boxes[index];
    const [x0, y0] = toScreen(b.x, b.y);
    const [x1, y1] = toScreen(b.x + b.w, b.y + b.h);
    ctx.rect(x0, y0, x1 - x0, y1 - y0);
  } else {
    s.polygons[index].points.forEach(([x, y], k) => {
      const [sx, sy] = toScreen(x, y);
      if (k) ctx.lineTo(sx, sy); else ctx.moveTo(sx, sy);
    });
    ctx.closePath();
  }
  ctx.stroke();
}
function square(ctx, x, y, fill, stroke) {
  ctx.fillStyle = fill;
  ctx.strokeStyle = stroke;
  ctx.lineWidth = 1.5;
  ctx.fillRect(x - HANDLE, y - HANDLE, HANDLE * 2, HANDLE * 2);
  ctx.strokeRect(x - HANDLE, y - HANDLE, HANDLE * 2, HANDLE * 2);
}
function dot(ctx, x, y, r, fill, stroke) {
  ctx.beginPath();
  ctx.arc(x, y, r, 0, Math.PI * 2);
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = stroke;
  ctx.stroke();
}
