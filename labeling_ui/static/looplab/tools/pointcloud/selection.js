// Screen-space selection of points: every point is projected once per selection with the camera's
// view-projection matrix in one tight loop over the typed array (no raycast per point), then tested
// against a lasso polygon, a rectangle or a brush circle, in CSS pixels of the canvas.

// m: column-major 4x4 view-projection (Matrix4.elements). positions: Float32Array, `stride` floats a point.
// test(sx, sy) → bool. Returns the indices inside as a Uint32Array (fresh, exact length).
function scan(positions, n, stride, m, width, height, bbox, test) {
  const m0 = m[0], m1 = m[1], m3 = m[3], m4 = m[4], m5 = m[5], m7 = m[7];
  const m8 = m[8], m9 = m[9], m11 = m[11], m12 = m[12], m13 = m[13], m15 = m[15];
  const hw = width / 2, hh = height / 2;
  const [x0, y0, x1, y1] = bbox;
  let out = new Uint32Array(1024);
  let k = 0;
  for (let i = 0, o = 0; i < n; i++, o += stride) {
    const x = positions[o], y = positions[o + 1], z = positions[o + 2];
    const w = m3 * x + m7 * y + m11 * z + m15;
    if (w <= 0) continue;                                // behind the camera
    const sx = (m0 * x + m4 * y + m8 * z + m12) / w * hw + hw;
    if (sx < x0 || sx > x1) continue;
    const sy = hh - (m1 * x + m5 * y + m9 * z + m13) / w * hh;
    if (sy < y0 || sy > y1) continue;
    if (test !== null && !test(sx, sy)) continue;
    if (k === out.length) { const grown = new Uint32Array(out.length * 2); grown.set(out); out = grown; }
    out[k++] = i;
  }
  return out.slice(0, k);
}

export function polygonBounds(poly) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < poly.length; i += 2) {
    const x = poly[i], y = poly[i + 1];
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  return [x0, y0, x1, y1];
}

// poly: flat [x0, y0, x1, y1, ...] in CSS pixels. Even-odd rule (crossing number).
export function pointInPolygon(poly, x, y) {
  let inside = false;
  const n = poly.length;
  for (let i = 0, j = n - 2; i < n; j = i, i += 2) {
    const yi = poly[i + 1], yj = poly[j + 1];
    if ((yi > y) !== (yj > y)) {
      const xi = poly[i], xj = poly[j];
      if (x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
    }
  }
  return inside;
}

// The polygon's edges bucketed by horizontal bands: a point tests only the edges whose y-range overlaps
// its band (exact even-odd result, a few edges a point instead of all of them).
export function bandedPolygon(poly, nBands = 256) {
  const p = Float64Array.from(poly);
  const [, y0, , y1] = polygonBounds(p);
  const bandH = Math.max((y1 - y0) / nBands, 1e-9);
  const lists = Array.from({ length: nBands }, () => []);
  const n = p.length;
  for (let i = 0, j = n - 2; i < n; j = i, i += 2) {
    const lo = Math.min(p[i + 1], p[j + 1]), hi = Math.max(p[i + 1], p[j + 1]);
    if (hi === lo) continue;                                   // horizontal edges never cross
    const b0 = Math.max(0, Math.floor((lo - y0) / bandH)), b1 = Math.min(nBands - 1, Math.floor((hi - y0) / bandH));
    for (let b = b0; b <= b1; b++) lists[b].push(i, j);
  }
  const offsets = new Int32Array(nBands + 1);
  for (let b = 0; b < nBands; b++) offsets[b + 1] = offsets[b] + lists[b].length;
  const edges = new Int32Array(offsets[nBands]);
  lists.forEach((l, b) => edges.set(l, offsets[b]));
  return (x, y) => {
    let b = ((y - y0) / bandH) | 0;
    if (b >= nBands) b = nBands - 1;
    let inside = false;
    for (let k = offsets[b], end = offsets[b + 1]; k < end; k += 2) {
      const i = edges[k], j = edges[k + 1];
      const yi = p[i + 1], yj = p[j + 1];
      if ((yi > y) !== (yj > y) && x < (p[j] - p[i]) * (y - yi) / (yj - yi) + p[i]) inside = !inside;
    }
    return inside;
  };
}

export function selectLasso(positions, n, stride, m, width, height, poly) {
  if (poly.length < 6) return new Uint32Array(0);
  return scan(positions, n, stride, m, width, height, polygonBounds(poly), bandedPolygon(poly));
}

export function selectBox(positions, n, stride, m, width, height, x0, y0, x1, y1) {
  return scan(positions, n, stride, m, width, height,
    [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)], null);
}

export function selectCircle(positions, n, stride, m, width, height, cx, cy, r) {
  const r2 = r * r;
  return scan(positions, n, stride, m, width, height, [cx - r, cy - r, cx + r, cy + r],
    (x, y) => (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r2);
}

// The point nearest to the camera among those projected within `r` px of (cx, cy); -1 when none.
export function pickPoint(positions, n, stride, m, width, height, cx, cy, r) {
  const hits = selectCircle(positions, n, stride, m, width, height, cx, cy, r);
  let best = -1, bestW = Infinity;
  const m3 = m[3], m7 = m[7], m11 = m[11], m15 = m[15];
  for (const i of hits) {
    const o = i * stride;
    const w = m3 * positions[o] + m7 * positions[o + 1] + m11 * positions[o + 2] + m15;
    if (w < bestW) { bestW = w; best = i; }
  }
  return best;
}
