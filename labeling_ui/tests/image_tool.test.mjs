// node --test labeling_ui/tests/   The image tool's pure modules: geometry and hit testing, shapes.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  boxHandles, clamp01, distToSegment, fitScale, fitView, hitTest, insidePolygon, moveShape, polygonArea,
  polygonEdgeAt, polygonVertexAt, resizeBox, selectedShape, toNorm, toScreen, zoomView,
} from "../static/looplab/tools/image/geometry.js";
import { cursorFor, keyCommand } from "../static/looplab/tools/image/input.js";
import { collectShapes, colorFor, describePrediction, loadPrediction, PALETTE } from "../static/looplab/tools/image/shapes.js";

const image = { width: 200, height: 100 };
const view = { scale: 2, tx: 10, ty: 20 };
const close = (a, b) => a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-9, `${a} != ${b}`));

function state(extra = {}) {
  return { view, image, boxes: [], polygons: [], selection: null, labels: ["cat", "dog"], ...extra };
}

test("screen and normalised coordinates are inverse", () => {
  assert.deepEqual(toScreen(view, image, 0, 0), [10, 20]);
  assert.deepEqual(toScreen(view, image, 1, 1), [410, 220]);
  close(toNorm(view, image, ...toScreen(view, image, 0.3, 0.7)), [0.3, 0.7]);
  assert.equal(clamp01(-1), 0);
  assert.equal(clamp01(2), 1);
  assert.equal(clamp01(0.25), 0.25);
});

test("box handles sit on corners and edge midpoints", () => {
  const h = boxHandles(view, image, { x: 0, y: 0, w: 0.5, h: 1 });
  assert.deepEqual(h.nw, [10, 20]);
  assert.deepEqual(h.se, [210, 220]);
  assert.deepEqual(h.n, [110, 20]);
  assert.deepEqual(h.w, [10, 120]);
});

test("segments, polygons and areas", () => {
  assert.deepEqual(distToSegment(5, 5, 0, 0, 10, 0), [5, 0.5]);
  assert.deepEqual(distToSegment(-3, 4, 0, 0, 10, 0), [5, 0]);
  assert.deepEqual(distToSegment(3, 4, 0, 0, 0, 0), [5, 0]);
  const square = [[0, 0], [1, 0], [1, 1], [0, 1]];
  assert.ok(insidePolygon(0.5, 0.5, square));
  assert.ok(!insidePolygon(1.5, 0.5, square));
  assert.equal(polygonArea(square), 1);
  assert.equal(polygonArea([[0, 0], [2, 0], [0, 2]]), 2);
});

test("polygon vertices and edges are picked within the hit radius", () => {
  const poly = { points: [[0, 0], [0.5, 0], [0.5, 0.5]] };  // screen: (10,20) (210,20) (210,120)
  assert.equal(polygonVertexAt(view, image, poly, 214, 24), 1);
  assert.equal(polygonVertexAt(view, image, poly, 100, 100), -1);
  assert.equal(polygonEdgeAt(view, image, poly, 110, 23), 0);
  assert.equal(polygonEdgeAt(view, image, poly, 212, 70), 1);
  assert.equal(polygonEdgeAt(view, image, poly, 110, 60), -1);
});

test("hit testing: the selection's handles first, then the smallest shape under the point", () => {
  const s = state({
    boxes: [{ label: "cat", x: 0, y: 0, w: 1, h: 1 }, { label: "dog", x: 0.1, y: 0.1, w: 0.2, h: 0.2 }],
  });
  const [sx, sy] = toScreen(view, image, 0.15, 0.15);
  assert.deepEqual(hitTest(s, sx, sy, false), { type: "shape", kind: "box", index: 1 });
  const [ox, oy] = toScreen(view, image, 0.8, 0.8);
  assert.deepEqual(hitTest(s, ox, oy, false), { type: "shape", kind: "box", index: 0 });
  s.selection = { kind: "box", index: 1 };
  assert.equal(selectedShape(s), s.boxes[1]);
  const [hx, hy] = toScreen(view, image, 0.3, 0.3);
  assert.deepEqual(hitTest(s, hx + 2, hy - 1, false), { type: "handle", handle: "se", index: 1 });
  assert.equal(hitTest(state(), 5000, 5000, false), null);
});

test("hit testing: vertices and edges of the selected polygon, of every polygon with alt", () => {
  const s = state({ polygons: [{ label: "cat", points: [[0, 0], [0.5, 0], [0.5, 0.5]] }] });
  assert.deepEqual(hitTest(s, 210, 20, false), null);  // not selected: a vertex on the outline is not inside
  assert.deepEqual(hitTest(s, 210, 20, true), { type: "vertex", index: 0, vertex: 1 });
  s.selection = { kind: "polygon", index: 0 };
  assert.deepEqual(hitTest(s, 110, 21, false), { type: "edge", index: 0, edge: 0 });
  assert.deepEqual(hitTest(s, 190, 60, false), { type: "shape", kind: "polygon", index: 0 });
});

test("moving keeps shapes inside the image and clears predicted", () => {
  const box = { label: "cat", x: 0.5, y: 0.5, w: 0.4, h: 0.4, predicted: true };
  moveShape(box, "box", { ...box }, 0.5, -1);
  assert.deepEqual(box, { label: "cat", x: 0.6, y: 0, w: 0.4, h: 0.4 });
  const poly = { points: [[0.1, 0.1], [0.3, 0.1], [0.2, 0.4]], predicted: true };
  moveShape(poly, "polygon", structuredClone(poly), -0.5, 0.1);
  close(poly.points.flat(), [0, 0.2, 0.2, 0.2, 0.1, 0.5]);
  assert.equal(poly.predicted, undefined);
});

test("resizing by a handle, flipping past the opposite edge, never below a quarter pixel", () => {
  const orig = { x: 0.2, y: 0.2, w: 0.4, h: 0.4 };
  const b = { ...orig, predicted: true };
  resizeBox(b, orig, "se", 0.8, 0.9, image);
  close([b.x, b.y, b.w, b.h], [0.2, 0.2, 0.6, 0.7]);
  assert.equal(b.predicted, undefined);
  resizeBox(b, orig, "w", 0.9, 0.5, image);
  close([b.x, b.y, b.w, b.h], [0.6, 0.2, 0.3, 0.4]);
  resizeBox(b, orig, "n", 0.5, 0.6, image);
  close([b.x, b.y, b.w, b.h], [0.2, 0.6, 0.4, 1 / 200 / 4]);
});

test("fit centres the image with a margin; zoom keeps the point under the cursor", () => {
  assert.equal(fitView({ width: 0, height: 0 }, 800, 600), null);
  assert.equal(fitScale({ width: 0, height: 0 }, 800, 600), 1);
  const v = fitView(image, 448, 248);
  assert.deepEqual(v, { scale: 2, tx: 24, ty: 24 });
  assert.equal(fitScale(image, 448, 248), 2);
  const z = zoomView(v, 2, 100, 50, 2);
  assert.equal(z.scale, 4);
  close(toNorm(z, image, 100, 50), toNorm(v, image, 100, 50));
  assert.equal(zoomView(v, 2, 0, 0, 1000).scale, 80);   // at most 40x the fit
  assert.equal(zoomView(v, 2, 0, 0, 0.001).scale, 0.4);  // at least 0.2x
});

test("label colours cycle through the palette; unknown labels take the first", () => {
  assert.equal(colorFor(["a", "b"], "b"), PALETTE[1]);
  assert.equal(colorFor(["a", "b"], "zzz"), PALETTE[0]);
  const many = Array.from({ length: PALETTE.length + 1 }, (_, i) => `l${i}`);
  assert.equal(colorFor(many, `l${PALETTE.length}`), PALETTE[0]);
});

test("predictions load known labels only, polygons of 3+ points, marked predicted", () => {
  const s = state();
  loadPrediction(null, s);
  assert.deepEqual(s.boxes, []);
  loadPrediction({
    boxes: [{ label: "cat", x: 0.1, y: 0.2, w: 0.3, h: 0.4, score: 0.9 }, { label: "owl", x: 0, y: 0, w: 1, h: 1 }],
    polygons: [{ label: "dog", points: [[0, 0], [1, 0], [1, 1]] }, { label: "dog", points: [[0, 0], [1, 1]] }],
  }, s);
  assert.deepEqual(s.boxes, [{ label: "cat", x: 0.1, y: 0.2, w: 0.3, h: 0.4, predicted: true }]);
  assert.deepEqual(s.polygons, [{ label: "dog", points: [[0, 0], [1, 0], [1, 1]], predicted: true }]);
});

test("the result rounds to 6 decimals, drops predicted, and refuses an open polygon", () => {
  const s = state({
    boxes: [{ label: "cat", x: 0.12345678, y: 0, w: 0.5, h: 0.5, predicted: true }],
    polygons: [{ label: "dog", points: [[1 / 3, 0], [1, 0], [1, 1]] }],
  });
  assert.deepEqual(collectShapes(s), {
    boxes: [{ label: "cat", x: 0.123457, y: 0, w: 0.5, h: 0.5 }],
    polygons: [{ label: "dog", points: [[0.333333, 0], [1, 0], [1, 1]] }],
  });
  assert.throws(() => collectShapes({ ...s, draft: [[0, 0]] }), /Finish the polygon first/);
});

test("the prediction's sentence counts shapes and says how they look", () => {
  assert.equal(describePrediction({}), null);
  assert.equal(describePrediction({ boxes: [{}] }),
    "The model pre-annotated 1 box (dashed): correct them, then press Enter.");
  assert.equal(describePrediction({ boxes: [{}, {}], polygons: new Array(149).fill({}) }),
    "The model pre-annotated 2 boxes and 149 polygons (faint): correct them, then press Enter.");
});

test("cursors: panning, moving, resize handles, vertices, edges, shapes, then the mode's", () => {
  assert.equal(cursorFor("select", false, null, null), "default");
  assert.equal(cursorFor("box", false, null, null), "crosshair");
  assert.equal(cursorFor("box", true, null, { type: "vertex" }), "grab");
  assert.equal(cursorFor("select", false, { type: "pan" }, null), "grabbing");
  assert.equal(cursorFor("select", false, { type: "move" }, { type: "edge" }), "move");
  assert.equal(cursorFor("select", false, null, { type: "handle", handle: "ne" }), "nesw-resize");
  assert.equal(cursorFor("polygon", false, null, { type: "vertex" }), "pointer");
  assert.equal(cursorFor("polygon", false, null, { type: "edge" }), "copy");
  assert.equal(cursorFor("select", false, null, { type: "shape" }), "move");
  assert.equal(cursorFor("box", false, null, { type: "shape" }), "crosshair");
});

test("state-free keys: modes, fit, zoom, nudges", () => {
  assert.deepEqual(keyCommand("V", false), { mode: "select" });
  assert.deepEqual(keyCommand("b", false), { mode: "box" });
  assert.deepEqual(keyCommand("p", true), { mode: "polygon" });
  assert.deepEqual(keyCommand("f", false), { fit: true });
  assert.deepEqual(keyCommand("=", false), { zoom: 1.25 });
  assert.deepEqual(keyCommand("_", true), { zoom: 0.8 });
  assert.deepEqual(keyCommand("ArrowLeft", false), { nudge: [-1, 0] });
  assert.deepEqual(keyCommand("ArrowDown", true), { nudge: [0, 10] });
  assert.equal(keyCommand("Enter", false), null);
  assert.equal(keyCommand("x", false), null);
});
