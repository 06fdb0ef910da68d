// 3D point-cloud tool: per-point segmentation (lasso, box, brush in screen space), cuboids (place, move,
// resize, rotate yaw, with top/side/front views) and cloud-level classification.
//
// The whole cloud is ONE BufferGeometry (THREE.Points) over the float32 array from
// /api/v1/samples/{id}/points.bin; colours are one Uint8 RGB attribute updated in place. Selection
// projects every point once with the camera's view-projection matrix (selection.js), never a raycast
// per point. Undo entries for point labels store only the changed indices and their previous labels.
// All state lives in window.__looplab.state (the task loop's state object, see tool_common.js).
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { expose } from "../test_hooks.js";
import { createToolLoop, oncePerFrame, readConfig } from "../tool_common.js";
import { applyLabels, greyColors, labelCss, rampColors } from "./pointcloud/colors.js";
import { cleanCuboid, cuboidObject, normalizeYaw, orthoViews, round } from "./pointcloud/cuboids.js";
import { pickPoint, selectBox, selectCircle, selectLasso } from "./pointcloud/selection.js";

const config = readConfig();
const TASK = config.taskType;            // classification | point_segmentation | cuboids
const SEG = TASK === "point_segmentation";
const CUB = TASK === "cuboids";
const $ = (id) => document.getElementById(id);

const stage = $("pc-stage");
const canvas = $("pc-canvas");
const overlay = $("pc-overlay");
const octx = overlay.getContext("2d");

// -- three.js ----------------------------------------------------------------------------------------
const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, powerPreference: "high-performance" });
renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
renderer.setClearColor(0x0f1320, 1);
renderer.autoClear = false;
const gl = renderer.getContext();
const scene = new THREE.Scene();
const camera = new THREE.PerspectiveCamera(50, 1, 0.01, 1000);
camera.up.set(0, 0, 1);
const controls = new OrbitControls(camera, canvas);
controls.enableDamping = false;
controls.zoomToCursor = true;
controls.screenSpacePanning = true;
const material = new THREE.PointsMaterial({ size: 2, sizeAttenuation: false, vertexColors: true });
let points = null;                       // THREE.Points: every point
let pointsLod = null;                    // the same attributes through a strided index (big clouds only)
const LOD_MAX = 250_000;                 // clouds above this show ≤ LOD_MAX points in the very first frame and while orbiting
let interacting = false;
let colorAttr = null;                    // Uint8 RGB, normalised
let baseColors = null;                   // what unlabeled points show (ramp or grey), Uint8 RGB
let positions = null;                    // Float32Array, stride floats a point
const cuboidGroup = new THREE.Group();
scene.add(cuboidGroup);
const grid = new THREE.GridHelper(1, 10, 0x3a4460, 0x262d40);
grid.rotation.x = Math.PI / 2;           // the XY plane (z up)
scene.add(grid);

const INSETS = ["top", "side", "front"];
const INSET_W = 230, INSET_H = 150, INSET_GAP = 8;

// -- state ---------------------------------------------------------------------------------------------
const loop = createToolLoop({
  projectId: config.project,
  labels: config.labels,
  state: {
    taskType: TASK,
    nPoints: 0,
    stride: 3,
    channels: "xyz",
    pointLabels: null,        // Int16Array, one entry per stored point, -1 = unlabeled
    labeledCount: 0,
    labelCounts: [],          // points per label index
    tool: SEG ? "lasso" : "orbit",  // lasso | box | brush | orbit
    eraser: false,
    brushRadius: 24,
    colorMode: "height",      // height | intensity | flat (labels always show in their colour)
    pointSize: 2,
    bounds: null,             // {min: [x,y,z], max: [x,y,z]}
    lastSelection: null,      // {tool, count, changed, ms, polygon, matrix, width, height}
    timings: null,            // {fetchMs, buildMs, firstFrameMs}
    frames: 0,
    cuboids: [],
    activeCuboid: -1,
    cloudReady: false,
  },
  onTask,
  onEmpty,
  collect,
  canSubmit: (s) => (TASK === "classification" ? s.selected !== null : s.cloudReady),
  onKey,
  onLabel,
  snapshot: (s) => ({ cuboids: s.cuboids.map((c) => ({ ...c, center: [...c.center], size: [...c.size] })), active: s.activeCuboid }),
  restore: (snap, s) => { s.cuboids = snap.cuboids; s.activeCuboid = snap.active; },
  onHistory: () => { if (CUB) rebuildCuboids(); requestRender(); },
  render: renderPanel,
  describePrediction,
  hotkeys: hotkeys(),
});
const state = loop.state;
const requestRender = oncePerFrame(() => renderNow());
expose("pointcloud", { THREE, camera, controls, renderer, material, scene, requestRender, renderNow, selectPolygon, viewProjection, get points() { return points; } });

function hotkeys() {
  const nav = [["Right drag", "orbit (Shift+right drag or middle drag: pan)"], ["Wheel", "zoom at the cursor"],
    ["F", "fit the cloud in view"], ["C", "colour unlabeled points by height / intensity / flat"], ["+ / -", "point size"]];
  if (SEG) {
    return [["L", "lasso: drag around points to label them"], ["B", "box: drag a rectangle"],
      ["P", "brush: paint points under the cursor"], ["[ / ]", "brush size"], ["V", "orbit with the left button"],
      ["E", "eraser on/off (selected points become unlabeled)"], ...nav];
  }
  if (CUB) {
    return [["Click", "place a cuboid on the clicked point or the ground (or select one)"], ["N", "place a cuboid at the cursor"],
      ["Drag", "move the selected cuboid (grab it at its centre); elsewhere: orbit"],
      ["↑ ↓ ← →", "move the selected cuboid (relative to the view)"], ["PageUp / PageDown", "move it up / down"],
      ["Shift+← →", "shorter / longer"], ["Shift+↑ ↓", "wider / narrower"], ["Shift+PageUp / Shift+PageDown", "taller / lower"],
      ["Q / E", "rotate left / right by 5° (Alt: 1°)"], ["Tab", "select the next cuboid"], ["Delete", "delete the selected cuboid"],
      ["Esc", "deselect"], ...nav];
  }
  return nav;
}

function describePrediction(p) {
  if (!p) return null;
  if (SEG && Array.isArray(p.point_labels)) return "The model's point labels are filled in: correct them, then press Enter.";
  if (CUB && Array.isArray(p.cuboids)) return `The model proposes ${p.cuboids.length} cuboid(s): correct them, then press Enter.`;
  if (p.label) {
    const confidence = typeof p.confidence === "number" ? ` (${Math.round(p.confidence * 100)}%)` : "";
    return `Model suggests “${p.label}”${confidence}${TASK === "classification" ? ": check it, then press Enter." : "."}`;
  }
  return null;
}

// -- loading a cloud -------------------------------------------------------------------------------------
async function fetchPoints(sampleId) {
  const response = await fetch(`/api/v1/samples/${sampleId}/points.bin`, { credentials: "same-origin" });
  if (!response.ok) {
    let message = `the server answered ${response.status}`;
    try { message = (await response.json()).error.message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  const n = Number(response.headers.get("X-Point-Count"));
  const stride = Number(response.headers.get("X-Point-Stride")) || 3;
  const channels = response.headers.get("X-Point-Channels") || "xyz";
  const data = new Float32Array(await response.arrayBuffer());
  if (!Number.isFinite(n) || data.length !== n * stride) throw new Error("the point data is incomplete");
  return { n, stride, channels, data };
}

function computeBounds(data, n, stride) {
  let x0 = Infinity, y0 = Infinity, z0 = Infinity, x1 = -Infinity, y1 = -Infinity, z1 = -Infinity;
  let i0 = Infinity, i1 = -Infinity;
  for (let i = 0, o = 0; i < n; i++, o += stride) {
    const x = data[o], y = data[o + 1], z = data[o + 2];
    if (x < x0) x0 = x; if (x > x1) x1 = x;
    if (y < y0) y0 = y; if (y > y1) y1 = y;
    if (z < z0) z0 = z; if (z > z1) z1 = z;
    if (stride > 3) { const v = data[o + 3]; if (v < i0) i0 = v; if (v > i1) i1 = v; }
  }
  return { min: [x0, y0, z0], max: [x1, y1, z1], intensity: [i0, i1] };
}

function disposeCloud() {
  if (points) { scene.remove(points); points.geometry.dispose(); points = null; }
  if (pointsLod) { scene.remove(pointsLod); pointsLod.geometry.dispose(); pointsLod = null; }
  colorAttr = null; baseColors = null; positions = null;
}

async function onTask(task, s) {
  const t0 = performance.now();
  disposeCloud();
  Object.assign(s, { cloudReady: false, cuboids: [], activeCuboid: -1, lastSelection: null, eraser: false, pointLabels: null });
  drag = null;  // a gesture begun on the last cloud must not land on this one
  controls.enabled = true;
  rebuildCuboids();
  // The loop cleared the last cloud's choice (classification: none until a key, a click or the model's label).
  if (SEG) s.selected = s.labels[0] ?? null;  // the brush label starts at the first label
  const cloud = await fetchPoints(task.sample.id);
  const tFetch = performance.now();
  positions = cloud.data;
  Object.assign(s, { nPoints: cloud.n, stride: cloud.stride, channels: cloud.channels });
  if (s.colorMode === "intensity" && cloud.stride < 4) s.colorMode = "height";
  s.bounds = computeBounds(cloud.data, cloud.n, cloud.stride);

  const geometry = new THREE.BufferGeometry();
  const buffer = new THREE.InterleavedBuffer(cloud.data, cloud.stride);
  geometry.setAttribute("position", new THREE.InterleavedBufferAttribute(buffer, 3, 0));
  colorAttr = new THREE.BufferAttribute(new Uint8Array(cloud.n * 3), 3, true);
  geometry.setAttribute("color", colorAttr);
  const { min, max } = s.bounds;
  geometry.boundingBox = new THREE.Box3(new THREE.Vector3(...min), new THREE.Vector3(...max));
  geometry.boundingSphere = geometry.boundingBox.getBoundingSphere(new THREE.Sphere());
  points = new THREE.Points(geometry, material);
  points.frustumCulled = false;
  scene.add(points);
  if (cloud.n > LOD_MAX) {
    const step = Math.ceil(cloud.n / LOD_MAX);
    const index = new Uint32Array(Math.ceil(cloud.n / step));
    for (let i = 0, k = 0; i < cloud.n; i += step) index[k++] = i;
    const lod = new THREE.BufferGeometry();
    lod.setAttribute("position", geometry.getAttribute("position"));
    lod.setAttribute("color", colorAttr);
    lod.setIndex(new THREE.BufferAttribute(index, 1));
    pointsLod = new THREE.Points(lod, material);
    pointsLod.frustumCulled = false;
    pointsLod.visible = false;
    scene.add(pointsLod);
  }

  s.pointLabels = new Int16Array(cloud.n).fill(-1);
  const p = task.prediction;
  if (SEG && p && Array.isArray(p.point_labels) && p.point_labels.length === cloud.n) {
    const top = s.labels.length - 1;
    for (let i = 0; i < cloud.n; i++) {
      const v = p.point_labels[i];
      s.pointLabels[i] = Number.isInteger(v) && v >= 0 && v <= top ? v : -1;
    }
  }
  recount();
  if (CUB && p && Array.isArray(p.cuboids)) {
    s.cuboids = p.cuboids.filter((c) => c && Array.isArray(c.center) && Array.isArray(c.size))
      .map((c) => cleanCuboid({ label: s.labels.includes(c.label) ? c.label : s.labels[0], center: c.center, size: c.size, yaw: +c.yaw || 0 }));
    s.activeCuboid = s.cuboids.length ? 0 : -1;
  }
  if (TASK === "classification" && p && p.label && s.labels.includes(p.label)) s.selected = p.label;
  if (CUB) s.selected = s.labels[0] ?? null;  // new cuboids get the first label until a key picks another

  recolor();
  placeGrid();
  fitView();
  rebuildCuboids();
  s.cloudReady = true;
  const tBuild = performance.now();
  const pixel = new Uint8Array(4);
  renderNow({ lod: Boolean(pointsLod) });   // a big cloud: every k-th point first, full detail on the next frame
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);  // waits until the frame is drawn
  const tFrame = performance.now();
  s.timings = { fetchMs: tFetch - t0, buildMs: tBuild - tFetch, firstFrameMs: tFrame - t0,
    firstFramePoints: pointsLod ? pointsLod.geometry.index.count : cloud.n, fullFrameMs: pointsLod ? null : tFrame - t0 };
  if (pointsLod) {
    const timings = s.timings;
    requestAnimationFrame(() => {
      if (!points) return;
      renderNow();
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
      timings.fullFrameMs = performance.now() - t0;
    });
  }
}

function onEmpty(s) {
  disposeCloud();
  Object.assign(s, { cloudReady: false, nPoints: 0, pointLabels: null, cuboids: [], activeCuboid: -1 });
  rebuildCuboids();
  requestRender();
}

function collect(s) {
  if (TASK === "classification") {
    if (s.selected === null) throw new Error("Choose a label first: press its key (shown on its button) or click it.");
    return { label: s.selected };
  }
  if (!s.cloudReady) throw new Error("The cloud is not loaded; skip this item (S).");
  if (SEG) return { point_labels: Array.from(s.pointLabels) };
  return { cuboids: s.cuboids.map(cleanCuboid) };
}

// -- colours ----------------------------------------------------------------------------------------------
function recount() {
  const counts = new Array(state.labels.length).fill(0);
  let labeled = 0;
  const labels = state.pointLabels;
  for (let i = 0; i < labels.length; i++) { const l = labels[i]; if (l >= 0) { counts[l]++; labeled++; } }
  state.labelCounts = counts;
  state.labeledCount = labeled;
}

function recolor() {
  if (!colorAttr) return;
  const n = state.nPoints, b = state.bounds;
  baseColors = baseColors || new Uint8Array(n * 3);
  const muted = SEG;   // segmentation: unlabeled points in a quiet ramp so the label colours stand out
  if (state.colorMode === "intensity" && state.stride > 3) rampColors(positions, n, state.stride, 3, b.intensity[0], b.intensity[1], baseColors, muted);
  else if (state.colorMode === "flat") greyColors(n, baseColors, SEG ? 110 : 170);
  else rampColors(positions, n, state.stride, 2, b.min[2], b.max[2], baseColors, muted);
  applyLabels(state.pointLabels, baseColors, colorAttr.array);
  colorAttr.needsUpdate = true;
  requestRender();
}

function cycleColorMode() {
  const modes = state.stride > 3 ? ["height", "intensity", "flat"] : ["height", "flat"];
  state.colorMode = modes[(modes.indexOf(state.colorMode) + 1) % modes.length];
  recolor();
}

// -- rendering (requestRender: renderNow in the next animation frame, defined above the test hook) ------

function stageSize() {
  return { width: canvas.clientWidth || 1, height: canvas.clientHeight || 1 };
}

function renderNow({ lod = interacting } = {}) {
  const { width, height } = stageSize();
  if (points) {
    const useLod = Boolean(lod && pointsLod);
    points.visible = !useLod;
    if (pointsLod) pointsLod.visible = useLod;
  }
  renderer.setScissorTest(false);
  renderer.setViewport(0, 0, width, height);
  renderer.clear();
  renderer.render(scene, camera);
  const insets = CUB && state.activeCuboid >= 0 && state.cuboids[state.activeCuboid];
  $("pc-insets").hidden = !insets;
  if (insets) {
    const views = orthoViews(state.cuboids[state.activeCuboid], INSET_W / INSET_H);
    const size = material.size;
    material.size = Math.max(size, 2.5);
    grid.visible = false;
    renderer.setScissorTest(true);
    INSETS.forEach((name, k) => {
      const x = width - INSET_W - INSET_GAP;
      const yTop = INSET_GAP + k * (INSET_H + INSET_GAP + 18) + 18;
      const y = height - yTop - INSET_H;       // WebGL's origin is bottom-left
      renderer.setViewport(x, y, INSET_W, INSET_H);
      renderer.setScissor(x, y, INSET_W, INSET_H);
      renderer.setClearColor(0x070a12, 1);
      renderer.clear();
      renderer.render(scene, views[name]);
    });
    renderer.setClearColor(0x0f1320, 1);
    renderer.setScissorTest(false);
    grid.visible = true;
    material.size = size;
  }
  state.frames += 1;
}

function resize() {
  const rect = stage.getBoundingClientRect();
  const width = Math.max(1, Math.floor(rect.width)), height = Math.max(1, Math.floor(rect.height));
  renderer.setSize(width, height, false);
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  const ratio = window.devicePixelRatio || 1;
  overlay.width = width * ratio; overlay.height = height * ratio;
  overlay.style.width = width + "px"; overlay.style.height = height + "px";
  octx.setTransform(ratio, 0, 0, ratio, 0, 0);
  camera.aspect = width / height;
  camera.updateProjectionMatrix();
  renderNow();
}
new ResizeObserver(resize).observe(stage);

function placeGrid() {
  const { min, max } = state.bounds;
  const span = Math.max(max[0] - min[0], max[1] - min[1], 1e-6) * 1.4;
  grid.scale.set(span, 1, span);
  grid.position.set((min[0] + max[0]) / 2, (min[1] + max[1]) / 2, min[2]);
}

function fitView() {
  if (!state.bounds) return;
  const { min, max } = state.bounds;
  const center = new THREE.Vector3((min[0] + max[0]) / 2, (min[1] + max[1]) / 2, (min[2] + max[2]) / 2);
  const radius = Math.max(1e-6, 0.5 * Math.hypot(max[0] - min[0], max[1] - min[1], max[2] - min[2]));
  const fov = THREE.MathUtils.degToRad(camera.fov);
  const dist = radius / Math.sin(Math.min(fov, fov * camera.aspect) / 2) * 1.02;
  const dir = new THREE.Vector3(-0.55, -0.75, 0.42).normalize();   // from the front left, a little above
  camera.position.copy(center).addScaledVector(dir, dist);
  camera.near = Math.max(dist / 1000, 1e-4);
  camera.far = dist * 20;
  camera.updateProjectionMatrix();
  controls.target.copy(center);
  controls.update();
  requestRender();
}

// -- point labels: apply a selection, undo/redo by diffs ------------------------------------------------
function viewProjection() {
  camera.updateMatrixWorld();
  return new THREE.Matrix4().multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse).elements;
}

function assignLabel(indices, label) {
  const labels = state.pointLabels;
  const idx = new Uint32Array(indices.length);
  const prev = new Int16Array(indices.length);
  let k = 0;
  for (let j = 0; j < indices.length; j++) {
    const i = indices[j];
    const old = labels[i];
    if (old === label) continue;
    idx[k] = i; prev[k] = old; k++;
    labels[i] = label;
    if (old >= 0) state.labelCounts[old]--; else state.labeledCount++;
    if (label >= 0) state.labelCounts[label]++; else state.labeledCount--;
  }
  const changed = { idx: idx.subarray(0, k), prev: prev.subarray(0, k), label };
  if (k) {
    applyLabels(labels, baseColors, colorAttr.array, changed.idx);
    colorAttr.needsUpdate = true;
  }
  return changed;
}

function setLabels(idx, values, constant) {
  const labels = state.pointLabels;
  for (let j = 0; j < idx.length; j++) {
    const i = idx[j], old = labels[i], v = constant === undefined ? values[j] : constant;
    labels[i] = v;
    if (old >= 0) state.labelCounts[old]--; else state.labeledCount++;
    if (v >= 0) state.labelCounts[v]++; else state.labeledCount--;
  }
  applyLabels(labels, baseColors, colorAttr.array, idx);
  colorAttr.needsUpdate = true;
}

function pushLabelEdit(parts) {
  const total = parts.reduce((a, p) => a + p.idx.length, 0);
  if (!total) return;
  const cmd = {
    undo: () => { for (let k = parts.length - 1; k >= 0; k--) setLabels(parts[k].idx, parts[k].prev); },
    redo: () => { for (const p of parts) setLabels(p.idx, null, p.label); },
  };
  loop.pushCommand(cmd);
}

function currentLabelIndex() {
  if (state.eraser) return -1;
  const index = state.labels.indexOf(state.selected);
  return index;
}

// poly: flat [x, y, ...] in CSS pixels of the canvas. Labels the points inside; returns the selection record.
function selectPolygon(poly, { tool = "lasso", record = true } = {}) {
  const t0 = performance.now();
  const label = currentLabelIndex();
  if (!positions || (label < 0 && !state.eraser)) return null;
  const m = viewProjection();
  const { width, height } = stageSize();
  const inside = tool === "box"
    ? selectBox(positions, state.nPoints, state.stride, m, width, height, poly[0], poly[1], poly[2], poly[3])
    : selectLasso(positions, state.nPoints, state.stride, m, width, height, poly);
  const tSelect = performance.now();
  const changed = assignLabel(inside, label);
  if (record) pushLabelEdit([changed]);
  const tColour = performance.now();
  renderNow();
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));  // the new colours are on screen
  const t1 = performance.now();
  state.lastSelection = { tool, label, count: inside.length, changed: changed.idx.length, ms: t1 - t0,
    selectMs: tSelect - t0, selectColourMs: tColour - t0, frameMs: t1 - tColour, polygon: Array.from(poly), matrix: Array.from(m), width, height };
  loop.render();
  return state.lastSelection;
}

// -- pointer input on the stage ---------------------------------------------------------------------------
let drag = null;   // {kind: "lasso"|"box"|"brush"|"cuboid"|"click", ...}
let lastPointer = null;

function localXY(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function setTool(tool) {
  state.tool = tool;
  const selecting = SEG && tool !== "orbit";
  controls.mouseButtons.LEFT = selecting ? -1 : THREE.MOUSE.ROTATE;
  controls.mouseButtons.RIGHT = selecting ? THREE.MOUSE.ROTATE : THREE.MOUSE.PAN;
  stage.dataset.tool = tool;
  drawOverlay();
  loop.render();
}

function drawOverlay() {
  const { width, height } = stageSize();
  octx.clearRect(0, 0, width, height);
  const color = state.eraser ? "#ffffff" : labelCss(Math.max(0, currentLabelIndex()));
  octx.lineWidth = 1.5;
  octx.strokeStyle = color;
  octx.fillStyle = state.eraser ? "rgba(255,255,255,0.08)" : color.replace("rgb(", "rgba(").replace(")", ", 0.12)");
  if (drag && drag.kind === "lasso" && drag.poly.length >= 4) {
    octx.beginPath();
    octx.moveTo(drag.poly[0], drag.poly[1]);
    for (let i = 2; i < drag.poly.length; i += 2) octx.lineTo(drag.poly[i], drag.poly[i + 1]);
    octx.closePath();
    octx.fill();
    octx.setLineDash([5, 4]);
    octx.stroke();
    octx.setLineDash([]);
  } else if (drag && drag.kind === "box") {
    const [x0, y0] = drag.start, [x1, y1] = drag.end;
    octx.fillRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    octx.setLineDash([5, 4]);
    octx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    octx.setLineDash([]);
  }
  if (SEG && state.tool === "brush" && lastPointer) {
    octx.beginPath();
    octx.arc(lastPointer[0], lastPointer[1], state.brushRadius, 0, Math.PI * 2);
    octx.stroke();
  }
}

function brushDab(x, y) {
  const m = viewProjection();
  const { width, height } = stageSize();
  const inside = selectCircle(positions, state.nPoints, state.stride, m, width, height, x, y, state.brushRadius);
  drag.parts.push(assignLabel(inside, currentLabelIndex()));
  drag.count += inside.length;
  requestRender();
}

canvas.addEventListener("pointerdown", (event) => {
  if (state.status !== "ready" || !state.cloudReady || event.button !== 0) return;
  const xy = localXY(event);
  if (SEG && state.tool !== "orbit") {
    if (currentLabelIndex() < 0 && !state.eraser) { state.error = "Choose a label first: press its key (shown on its button) or click it."; loop.render(); return; }
    canvas.setPointerCapture(event.pointerId);
    if (state.tool === "lasso") drag = { kind: "lasso", poly: [...xy] };
    else if (state.tool === "box") drag = { kind: "box", start: xy, end: xy };
    else { drag = { kind: "brush", parts: [], count: 0, t0: performance.now() }; brushDab(...xy); }
    drawOverlay();
    event.preventDefault();
  } else if (CUB) {
    const hit = cuboidAt(xy, 22);
    if (hit >= 0 && hit === state.activeCuboid) {
      controls.enabled = false;
      canvas.setPointerCapture(event.pointerId);
      const c = state.cuboids[hit];
      drag = { kind: "cuboid", moved: false, plane: new THREE.Plane(new THREE.Vector3(0, 0, 1), -c.center[2]),
        grab: groundAt(xy, c.center[2]), start: [...c.center], at: xy };
    } else {
      drag = { kind: "click", at: xy, t: performance.now(), hit };
    }
  }
});

canvas.addEventListener("pointermove", (event) => {
  const xy = localXY(event);
  lastPointer = xy;
  if (!drag) { if (SEG && state.tool === "brush") drawOverlay(); return; }
  if (drag.kind === "lasso") {
    const n = drag.poly.length;
    if (Math.hypot(xy[0] - drag.poly[n - 2], xy[1] - drag.poly[n - 1]) >= 2) drag.poly.push(xy[0], xy[1]);
  } else if (drag.kind === "box") drag.end = xy;
  else if (drag.kind === "brush") brushDab(...xy);
  else if (drag.kind === "cuboid" && drag.grab) {
    const p = groundAt(xy, drag.start[2]);
    if (p) {
      if (!drag.moved) { loop.checkpoint(); drag.moved = true; }
      const c = state.cuboids[state.activeCuboid];
      c.center = [drag.start[0] + p.x - drag.grab.x, drag.start[1] + p.y - drag.grab.y, drag.start[2]];
      rebuildCuboids();
    }
  }
  drawOverlay();
});

function endDrag(event) {
  if (!drag) return;
  const d = drag;
  drag = null;
  const xy = localXY(event);
  if (d.kind === "lasso") {
    if (d.poly.length >= 6) selectPolygon(d.poly, { tool: "lasso" });
  } else if (d.kind === "box") {
    if (Math.abs(d.end[0] - d.start[0]) > 2 && Math.abs(d.end[1] - d.start[1]) > 2) {
      selectPolygon([d.start[0], d.start[1], d.end[0], d.end[1]], { tool: "box" });
    }
  } else if (d.kind === "brush") {
    pushLabelEdit(d.parts);
    state.lastSelection = { tool: "brush", label: currentLabelIndex(), count: d.count,
      changed: d.parts.reduce((a, p) => a + p.idx.length, 0), ms: performance.now() - d.t0 };
  } else if (d.kind === "cuboid") {
    controls.enabled = true;
    if (d.moved) loop.render();
  } else if (d.kind === "click" && event.type === "pointerup") {
    const moved = Math.hypot(xy[0] - d.at[0], xy[1] - d.at[1]);
    if (moved <= 4) {
      if (d.hit >= 0) { state.activeCuboid = d.hit; rebuildCuboids(); }
      else placeCuboid(xy);
    }
  }
  drawOverlay();
  loop.render();
  requestRender();
}
canvas.addEventListener("pointerup", endDrag);
canvas.addEventListener("pointercancel", endDrag);
canvas.addEventListener("pointerleave", () => { lastPointer = null; if (!drag) drawOverlay(); });
controls.addEventListener("change", requestRender);
// While orbiting a big cloud, frames draw the strided subset; full detail as soon as the pointer lets go.
controls.addEventListener("start", () => { interacting = true; });
controls.addEventListener("end", () => { interacting = false; requestRender(); });

// Compile the points shader (and let the rasteriser build its routines) while the first task loads.
function warmUp() {
  const data = new Float32Array([0, 0, 0, 1, 1, 1, 0.5, 0.2, 0.1]);
  const g = new THREE.BufferGeometry();
  g.setAttribute("position", new THREE.InterleavedBufferAttribute(new THREE.InterleavedBuffer(data, 3), 3, 0));
  g.setAttribute("color", new THREE.BufferAttribute(new Uint8Array(9), 3, true));
  const dummy = new THREE.Points(g, material);
  const warm = new THREE.Scene();
  warm.add(dummy);
  renderer.render(warm, camera);
  g.dispose();
}

// -- cuboids -------------------------------------------------------------------------------------------------
function rebuildCuboids() {
  for (const child of [...cuboidGroup.children]) {
    cuboidGroup.remove(child);
    child.traverse((o) => { if (o.material) o.material.dispose(); if (o.geometry && o.type === "Line") o.geometry.dispose(); });
  }
  state.cuboids.forEach((c, k) => cuboidGroup.add(cuboidObject(c, state.labels.indexOf(c.label), k === state.activeCuboid)));
  requestRender();
  loop.render();
}

function project(v) {
  const { width, height } = stageSize();
  const p = new THREE.Vector3(...v).project(camera);
  return p.z > 1 ? null : [(p.x + 1) / 2 * width, (1 - p.y) / 2 * height];
}

function cuboidAt(xy, radius) {
  let best = -1, bestD = radius;
  state.cuboids.forEach((c, k) => {
    const s = project(c.center);
    if (!s) return;
    const d = Math.hypot(s[0] - xy[0], s[1] - xy[1]);
    if (d <= bestD) { bestD = d; best = k; }
  });
  return best;
}

function groundAt(xy, z) {
  const { width, height } = stageSize();
  const ray = new THREE.Raycaster();
  ray.setFromCamera(new THREE.Vector2(xy[0] / width * 2 - 1, 1 - xy[1] / height * 2), camera);
  return ray.ray.intersectPlane(new THREE.Plane(new THREE.Vector3(0, 0, 1), -z), new THREE.Vector3());
}

function defaultSize() {
  const { min, max } = state.bounds;
  const diag = Math.hypot(max[0] - min[0], max[1] - min[1], max[2] - min[2]);
  const s = Math.max(diag * 0.12, 1e-3);
  return [s, s * 0.8, s * 0.7];
}

function placeCuboid(xy) {
  if (!state.cloudReady) return;
  const size = defaultSize();
  const m = viewProjection();
  const { width, height } = stageSize();
  const hit = pickPoint(positions, state.nPoints, state.stride, m, width, height, xy[0], xy[1], 8);
  let center;
  if (hit >= 0) {
    const o = hit * state.stride;
    center = [positions[o], positions[o + 1], positions[o + 2]];
  } else {
    const ground = state.bounds.min[2];
    const p = groundAt(xy, ground);
    if (!p) return;
    center = [p.x, p.y, ground + size[2] / 2];
  }
  // the yaw faces away from the camera, so "forward" in the view is the cuboid's heading
  const yaw = Math.atan2(center[1] - camera.position.y, center[0] - camera.position.x);
  loop.checkpoint();
  state.cuboids.push({ label: state.selected ?? state.labels[0], center, size, yaw: round(normalizeYaw(yaw), 5) });
  state.activeCuboid = state.cuboids.length - 1;
  rebuildCuboids();
}

function editActive(fn) {
  const c = state.cuboids[state.activeCuboid];
  if (!c) return false;
  loop.checkpoint();
  fn(c);
  c.size = c.size.map((v) => Math.max(v, 1e-3));
  c.yaw = normalizeYaw(c.yaw);
  rebuildCuboids();
  return true;
}

function cuboidKey(event) {
  const key = event.key;
  const c = state.cuboids[state.activeCuboid];
  if (key === "n" || key === "N") { if (lastPointer) placeCuboid(lastPointer); return true; }
  if (key === "Tab") {
    if (state.cuboids.length) { state.activeCuboid = (state.activeCuboid + (event.shiftKey ? -1 : 1) + state.cuboids.length) % state.cuboids.length; rebuildCuboids(); }
    return true;
  }
  if (key === "Escape") { state.activeCuboid = -1; rebuildCuboids(); return true; }
  if (!c) return false;
  if (key === "Delete" || key === "Backspace") {
    loop.checkpoint();
    state.cuboids.splice(state.activeCuboid, 1);
    state.activeCuboid = Math.min(state.activeCuboid, state.cuboids.length - 1);
    rebuildCuboids();
    return true;
  }
  if (key === "q" || key === "Q" || key === "e" || key === "E") {
    const step = THREE.MathUtils.degToRad(event.altKey ? 1 : 5) * (key.toLowerCase() === "q" ? 1 : -1);
    return editActive((k) => { k.yaw += step; });
  }
  const resize = 1.1;
  const move = 0.1 * Math.max(...c.size) * (event.altKey ? 0.2 : 1);
  if (event.shiftKey) {
    const axis = { ArrowLeft: [0, 1 / resize], ArrowRight: [0, resize], ArrowUp: [1, resize], ArrowDown: [1, 1 / resize],
      PageUp: [2, resize], PageDown: [2, 1 / resize] }[key];
    if (!axis) return false;
    return editActive((k) => { k.size[axis[0]] *= axis[1]; });
  }
  if (key === "PageUp" || key === "PageDown") return editActive((k) => { k.center[2] += key === "PageUp" ? move : -move; });
  const dirs = { ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowLeft: [0, 1], ArrowRight: [0, -1] }[key];
  if (!dirs) return false;
  const forward = new THREE.Vector3();
  camera.getWorldDirection(forward);
  forward.z = 0;
  if (forward.lengthSq() < 1e-9) forward.set(0, 1, 0);   // looking straight down: screen up is +y
  forward.normalize();
  const left = new THREE.Vector3(-forward.y, forward.x, 0);
  return editActive((k) => {
    k.center[0] += (forward.x * dirs[0] + left.x * dirs[1]) * move;
    k.center[1] += (forward.y * dirs[0] + left.y * dirs[1]) * move;
  });
}

// -- keys and labels ---------------------------------------------------------------------------------------
function onKey(event) {
  const key = event.key;
  if (event.ctrlKey || event.metaKey) return false;
  if (CUB && cuboidKey(event)) return true;
  if (event.altKey) return false;
  if (key === "f" || key === "F") { fitView(); return true; }
  if (key === "c" || key === "C") { cycleColorMode(); loop.render(); return true; }
  if (key === "+" || key === "=") { material.size = state.pointSize = Math.min(8, state.pointSize + 0.5); requestRender(); loop.render(); return true; }
  if (key === "-" || key === "_") { material.size = state.pointSize = Math.max(1, state.pointSize - 0.5); requestRender(); loop.render(); return true; }
  if (!SEG) return false;
  const tools = { l: "lasso", b: "box", p: "brush", v: "orbit" };
  if (tools[key.toLowerCase()]) { setTool(tools[key.toLowerCase()]); return true; }
  if (key === "e" || key === "E") { state.eraser = !state.eraser; drawOverlay(); loop.render(); return true; }
  if (key === "[" || key === "]") {
    state.brushRadius = Math.max(4, Math.min(200, state.brushRadius * (key === "]" ? 1.25 : 0.8)));
    drawOverlay(); loop.render(); return true;
  }
  return false;
}

function onLabel(label) {
  if (SEG) { state.eraser = false; drawOverlay(); }
  if (CUB && state.cuboids[state.activeCuboid] && state.cuboids[state.activeCuboid].label !== label) {
    editActive((c) => { c.label = label; });
  }
}

// -- panel -----------------------------------------------------------------------------------------------
const toolButtons = [...document.querySelectorAll("[data-pc-tool]")];
toolButtons.forEach((b) => b.addEventListener("click", () => setTool(b.dataset.pcTool)));
const eraserButton = $("pc-eraser");
if (eraserButton) eraserButton.addEventListener("click", () => { state.eraser = !state.eraser; loop.render(); });
const colorButton = $("pc-color");
if (colorButton) colorButton.addEventListener("click", () => { cycleColorMode(); loop.render(); });
$("pc-fit").addEventListener("click", fitView);
const cuboidList = $("pc-cuboids");
if (cuboidList) cuboidList.addEventListener("click", (event) => {
  const row = event.target.closest("[data-index]");
  if (row) { state.activeCuboid = Number(row.dataset.index); rebuildCuboids(); }
});

function renderPanel(s) {
  const fmt = (v) => v.toLocaleString("en-US");
  $("pc-points").textContent = s.nPoints ? `${fmt(s.nPoints)} points` : "";
  $("pc-colormode").textContent = { height: "height", intensity: "intensity", flat: "flat" }[s.colorMode];
  if (SEG) {
    toolButtons.forEach((b) => { const on = b.dataset.pcTool === s.tool; b.classList.toggle("is-on", on); b.setAttribute("aria-pressed", String(on)); });
    eraserButton.classList.toggle("is-on", s.eraser);
    eraserButton.setAttribute("aria-pressed", String(s.eraser));
    $("pc-labeled").textContent = s.nPoints ? `${fmt(s.labeledCount)} / ${fmt(s.nPoints)}` : "–";
    const pct = s.nPoints ? (100 * s.labeledCount / s.nPoints) : 0;
    $("pc-progress").style.width = `${pct.toFixed(1)}%`;
    document.querySelectorAll(".label-btn").forEach((b) => {
      const count = b.querySelector(".pc-count");
      if (count) count.textContent = s.labelCounts.length ? fmt(s.labelCounts[Number(b.dataset.index)] || 0) : "";
    });
    $("pc-toolhint").textContent = s.eraser ? "Eraser: selected points become unlabeled"
      : s.tool === "orbit" ? "Orbit: left drag rotates" : `${s.tool[0].toUpperCase() + s.tool.slice(1)} → “${s.selected ?? "choose a label"}”`;
    stage.classList.toggle("is-erasing", s.eraser);
  }
  if (CUB) {
    cuboidList.innerHTML = s.cuboids.length ? s.cuboids.map((c, k) => {
      const li = s.labels.indexOf(c.label);
      const dims = c.size.map((v) => v.toFixed(2)).join(" × ");
      const deg = Math.round(THREE.MathUtils.radToDeg(c.yaw));
      return `<li class="${k === s.activeCuboid ? "is-active" : ""}" data-index="${k}"><span class="pc-swatch" style="background:${labelCss(Math.max(li, 0))}"></span>`
        + `<span class="pc-cub-label">${escapeHtml(c.label)}</span><span class="pc-cub-dims">${dims} · ${deg}°</span></li>`;
    }).join("") : `<li class="muted small pc-empty">Click on the cloud to place a cuboid.</li>`;
  }
  if (!drag) drawOverlay();
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

document.querySelectorAll("[data-swatch]").forEach((el) => { el.style.background = labelCss(Number(el.dataset.swatch)); });
setTool(state.tool);
loop.start();
warmUp();
