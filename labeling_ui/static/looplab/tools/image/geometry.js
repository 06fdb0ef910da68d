// Image tool geometry, pure: no DOM, no module state. Shapes are normalised to 0..1 of the image; a view
// {scale, tx, ty} maps image pixels to screen (CSS) pixels; `image` is {width, height} in pixels.
// `s` below is the tool's state (or any object with view, image, boxes, polygons and selection).

export const HANDLE = 5;  // half size of a resize handle, screen px
export const HIT = 7;     // pick radius for vertices and edges, screen px

export const clamp01 = (v) => Math.min(1, Math.max(0, v));

export function toScreen(view, image, nx, ny) {
  return [view.tx + nx * image.width * view.scale, view.ty + ny * image.height * view.scale];
}
export function toNorm(view, image, sx, sy) {
  return [(sx - view.tx) / (image.width * view.scale), (sy - view.ty) / (image.height * view.scale)];
}

export function selectedShape(s) {
  const sel = s.selection;
  if (!sel) return null;
  return (sel.kind === "box" ? s.boxes : s.polygons)[sel.index] || null;
}

// The eight resize handles of a box, in screen px.
export function boxHandles(view, image, b) {
  const [x0, y0] = toScreen(view, image, b.x, b.y);
  const [x1, y1] = toScreen(view, image, b.x + b.w, b.y + b.h);
  const xm = (x0 + x1) / 2;
  const ym = (y0 + y1) / 2;
  return { nw: [x0, y0], n: [xm, y0], ne: [x1, y0], e: [x1, ym], se: [x1, y1], s: [xm, y1], sw: [x0, y1], w: [x0, ym] };
}

// Distance from p to the segment a-b, and the position t (0..1) of the nearest point along it.
export function distToSegment(px, py, ax, ay, bx, by) {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  const t = len2 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0;
  return [Math.hypot(px - (ax + t * dx), py - (ay + t * dy)), t];
}

export function insidePolygon(nx, ny, points) {
  let inside = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if ((yi > ny) !== (yj > ny) && nx < ((xj - xi) * (ny - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

export function polygonArea(points) {
  let a = 0;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) a += (points[j][0] + points[i][0]) * (points[j][1] - points[i][1]);
  return Math.abs(a / 2);
}

// Index of the polygon vertex within HIT of the screen point, or -1.
export function polygonVertexAt(view, image, poly, sx, sy) {
  for (let i = 0; i < poly.points.length; i++) {
    const [vx, vy] = toScreen(view, image, ...poly.points[i]);
    if (Math.hypot(sx - vx, sy - vy) <= HIT) return i;
  }
  return -1;
}

// Index i of the polygon edge (vertex i to i+1) near the screen point, or -1.
export function polygonEdgeAt(view, image, poly, sx, sy) {
  const pts = poly.points.map(([x, y]) => toScreen(view, image, x, y));
  for (let i = 0; i < pts.length; i++) {
    const a = pts[i];
    const b = pts[(i + 1) % pts.length];
    const [d] = distToSegment(sx, sy, a[0], a[1], b[0], b[1]);
    if (d <= HIT - 2) return i;  // insert after vertex i
  }
  return -1;
}

// What is under a screen point: handles and vertices of the selection first, then the smallest shape around it.
// alt: every polygon's vertices and edges count, not only the selected one's.
export function hitTest(s, sx, sy, alt) {
  const { view, image } = s;
  const sel = s.selection;
  const shape = selectedShape(s);
  if (shape && sel.kind === "box") {
    for (const [name, [hx, hy]] of Object.entries(boxHandles(view, image, shape))) {
      if (Math.abs(sx - hx) <= HANDLE + 2 && Math.abs(sy - hy) <= HANDLE + 2) return { type: "handle", handle: name, index: sel.index };
    }
  }
  const polys = shape && sel.kind === "polygon" ? [sel.index] : [];
  if (alt) for (let i = s.polygons.length - 1; i >= 0; i--) if (!polys.includes(i)) polys.push(i);
  for (const i of polys) {
    const v = polygonVertexAt(view, image, s.polygons[i], sx, sy);
    if (v >= 0) return { type: "vertex", index: i, vertex: v };
  }
  for (const i of polys) {
    const e = polygonEdgeAt(view, image, s.polygons[i], sx, sy);
    if (e >= 0) return { type: "edge", index: i, edge: e };
  }
  const [nx, ny] = toNorm(view, image, sx, sy);
  let best = null;
  let bestArea = Infinity;
  for (let i = s.polygons.length - 1; i >= 0; i--) {
    const p = s.polygons[i];
    if (insidePolygon(nx, ny, p.points)) {
      const area = polygonArea(p.points);
      if (area < bestArea) { bestArea = area; best = { type: "shape", kind: "polygon", index: i }; }
    }
  }
  const tol = HIT / (view.scale * Math.max(image.width, 1));
  for (let i = s.boxes.length - 1; i >= 0; i--) {
    const b = s.boxes[i];
    if (nx >= b.x - tol && nx <= b.x + b.w + tol && ny >= b.y - tol && ny <= b.y + b.h + tol) {
      const area = b.w * b.h;
      if (area < bestArea) { bestArea = area; best = { type: "shape", kind: "box", index: i }; }
    }
  }
  return best;
}

// Move `shape` to `orig` shifted by (dx, dy) (normalised), kept inside the image. Clears `predicted`.
export function moveShape(shape, kind, orig, dx, dy) {
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

// Resize box `shape` from `orig` by dragging `handle` ("n", "se", ...) to (nx, ny). Clears `predicted`.
export function resizeBox(shape, orig, handle, nx, ny, image) {
  let x0 = orig.x;
  let y0 = orig.y;
  let x1 = orig.x + orig.w;
  let y1 = orig.y + orig.h;
  if (handle.includes("w")) x0 = clamp01(nx);
  if (handle.includes("e")) x1 = clamp01(nx);
  if (handle.includes("n")) y0 = clamp01(ny);
  if (handle.includes("s")) y1 = clamp01(ny);
  const min = 1 / Math.max(image.width, image.height) / 4;
  shape.x = Math.min(x0, x1);
  shape.y = Math.min(y0, y1);
  shape.w = Math.max(Math.abs(x1 - x0), min);
  shape.h = Math.max(Math.abs(y1 - y0), min);
  delete shape.predicted;
}

// -- view ----------------------------------------------------------------------------------------------

const FIT_PAD = 24;

// The view that shows the whole image centred in a cssW x cssH frame, or null while either is unknown.
export function fitView(image, cssW, cssH) {
  const { width, height } = image;
  if (!width || !height || !cssW) return null;
  const scale = Math.min((cssW - 2 * FIT_PAD) / width, (cssH - 2 * FIT_PAD) / height);
  return { scale, tx: (cssW - width * scale) / 2, ty: (cssH - height * scale) / 2 };
}

// The scale fitView would choose (1 while the image size is unknown).
export function fitScale(image, cssW, cssH) {
  const { width, height } = image;
  if (!width || !height) return 1;
  return Math.min((cssW - 2 * FIT_PAD) / width, (cssH - 2 * FIT_PAD) / height);
}

// `view` zoomed by `factor` around the screen point (sx, sy), the scale kept within 0.2x..40x of `base`.
export function zoomView(view, base, sx, sy, factor) {
  const scale = Math.min(Math.max(view.scale * factor, base * 0.2), base * 40);
  const k = scale / view.scale;
  return { scale, tx: sx - (sx - view.tx) * k, ty: sy - (sy - view.ty) * k };
}
