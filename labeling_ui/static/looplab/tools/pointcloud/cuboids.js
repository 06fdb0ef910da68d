// Cuboids: {label, center: [x, y, z], size: [l, w, h], yaw} (z up; yaw about z, 0 = heading +x).
import * as THREE from "three";
import { labelColor } from "./colors.js";

const EDGES = new THREE.EdgesGeometry(new THREE.BoxGeometry(1, 1, 1));
const BOX = new THREE.BoxGeometry(1, 1, 1);

export function round(v, digits = 4) {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function normalizeYaw(yaw) {
  let y = yaw % (2 * Math.PI);
  if (y > Math.PI) y -= 2 * Math.PI;
  if (y <= -Math.PI) y += 2 * Math.PI;
  return y;
}

export function cleanCuboid(c) {
  return {
    label: c.label,
    center: c.center.map((v) => round(v)),
    size: c.size.map((v) => round(Math.max(v, 1e-3))),
    yaw: round(normalizeYaw(c.yaw), 5),
  };
}

// A group per cuboid: wire edges, a heading tick (center → front face), and a faint fill when active.
export function cuboidObject(c, labelIndex, active) {
  const color = new THREE.Color(...labelColor(Math.max(labelIndex, 0)).map((v) => v / 255));
  if (labelIndex < 0) color.setRGB(0.85, 0.85, 0.85);
  const group = new THREE.Group();
  const box = new THREE.Group();
  box.scale.set(c.size[0], c.size[1], c.size[2]);
  const wire = new THREE.LineSegments(EDGES, new THREE.LineBasicMaterial({ color: active ? 0xffffff : color, depthTest: false,
    transparent: true, opacity: active ? 1 : 0.9 }));
  wire.renderOrder = 2;
  box.add(wire);
  if (active) {
    const fill = new THREE.Mesh(BOX, new THREE.MeshBasicMaterial({ color, transparent: true, opacity: 0.18, depthWrite: false }));
    fill.renderOrder = 1;
    box.add(fill);
  }
  group.add(box);
  const heading = new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(0, 0, 0), new THREE.Vector3(c.size[0] / 2, 0, 0)]);
  const tick = new THREE.Line(heading, new THREE.LineBasicMaterial({ color: active ? 0xffd23f : color, depthTest: false }));
  tick.renderOrder = 2;
  group.add(tick);
  group.position.set(c.center[0], c.center[1], c.center[2]);
  group.rotation.set(0, 0, c.yaw);
  return group;
}

// Three orthographic cameras around a cuboid: top (heading up the view), side (length across) and
// front (width across), each clipped in depth to the cuboid's neighbourhood.
export function orthoViews(c, aspect) {
  const [cx, cy, cz] = c.center;
  const [l, w, h] = c.size;
  const f = new THREE.Vector3(Math.cos(c.yaw), Math.sin(c.yaw), 0);
  const s = new THREE.Vector3(-Math.sin(c.yaw), Math.cos(c.yaw), 0);
  const z = new THREE.Vector3(0, 0, 1);
  const C = new THREE.Vector3(cx, cy, cz);
  const margin = 0.35 * Math.max(l, w, h);
  const D = 4 * Math.max(l, w, h) + 1;
  const make = (dir, up, across, tall, depth) => {
    let halfW = 0.5 * across + margin, halfH = 0.5 * tall + margin;
    if (halfW / halfH < aspect) halfW = halfH * aspect; else halfH = halfW / aspect;
    const cam = new THREE.OrthographicCamera(-halfW, halfW, halfH, -halfH, D - depth / 2 - margin, D + depth / 2 + margin);
    cam.position.copy(C).addScaledVector(dir, D);
    cam.up.copy(up);
    cam.lookAt(C);
    cam.updateMatrixWorld();
    return cam;
  };
  return {
    top: make(z, f, w, l, h),
    side: make(s.clone().negate(), z, l, h, w),
    front: make(f, z, w, h, l),
  };
}
