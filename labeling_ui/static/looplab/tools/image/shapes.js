// Image tool shapes, pure: label colours, the model's pre-annotation, and the result sent to the API.

export const PALETTE = ["#3b82f6", "#f97316", "#22c55e", "#e11d48", "#a855f7", "#eab308", "#06b6d4", "#ec4899",
  "#84cc16", "#f43f5e", "#14b8a6", "#8b5cf6"];
export const DASHES_UP_TO = 150;  // predicted shapes on screen drawn dashed up to this many (see render.js)

export const colorFor = (labels, label) => PALETTE[Math.max(0, labels.indexOf(label)) % PALETTE.length];

// Append the prediction's boxes and polygons (known labels only, polygons of 3+ points) to s, marked predicted.
export function loadPrediction(p, s) {
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

// The annotation result: boxes and polygons with coordinates rounded to 6 decimals.
export function collectShapes(s) {
  if (s.draft) throw new Error("Finish the polygon first: Enter closes it, Esc cancels it.");
  const r = (v) => Math.round(v * 1e6) / 1e6;
  return {
    boxes: s.boxes.map((b) => ({ label: b.label, x: r(b.x), y: r(b.y), w: r(b.w), h: r(b.h) })),
    polygons: s.polygons.map((p) => ({ label: p.label, points: p.points.map(([x, y]) => [r(x), r(y)]) })),
  };
}

// The sentence shown for a prediction with shapes, or null when it has none.
export function describePrediction(p) {
  const nb = (p.boxes || []).length;
  const np = (p.polygons || []).length;
  if (!nb && !np) return null;
  const parts = [nb ? `${nb} box${nb === 1 ? "" : "es"}` : null, np ? `${np} polygon${np === 1 ? "" : "s"}` : null];
  const look = nb + np <= DASHES_UP_TO ? "dashed" : "faint";
  return `The model pre-annotated ${parts.filter(Boolean).join(" and ")} (${look}): correct them, then press Enter.`;
}
