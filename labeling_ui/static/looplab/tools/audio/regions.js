// Audio tool regions, pure: ordering, the model's pre-annotation, the result sent to the API, the list's
// visible rows. Regions are {id, label, start, end, text, predicted} in seconds.
import { round3 } from "./format.js";

// Region ids ordered by start, then end (the list's and the numbering's order).
export function sortedRegionIds(regions) {
  return [...regions].sort((a, b) => a.start - b.start || a.end - b.end).map((r) => r.id);
}

// The prediction's regions (finite, non-empty, clipped to the clip), unknown labels as null, marked predicted.
// newId() gives each one its id.
export function predictedRegions(p, labels, duration, newId) {
  if (!p || !Array.isArray(p.regions)) return null;
  const known = (label) => (labels.includes(label) ? label : null);
  return p.regions
    .filter((r) => Number.isFinite(r.start) && Number.isFinite(r.end) && r.end > r.start)
    .map((r) => ({ id: newId(), label: known(r.label), start: round3(Math.max(0, r.start)),
      end: round3(Math.min(duration, r.end)), text: typeof r.text === "string" ? r.text : "", predicted: true }));
}

// Index (in `ordered`) of the first region without a label, or -1.
export const firstUnlabeled = (ordered) => ordered.findIndex((r) => !r.label);

// The audio_regions result for regions in list order: rounded, clipped to the duration, trimmed transcripts.
export function regionsResult(ordered, duration, clipLabel) {
  const regions = ordered.map((r) => {
    const out = { label: r.label, start: round3(Math.max(0, r.start)), end: round3(Math.min(duration || r.end, r.end)) };
    const text = (r.text || "").trim();
    if (text) out.text = text;
    return out;
  });
  const result = { regions };
  if (clipLabel) result.label = clipLabel;
  return result;
}

// The sentence shown for a prediction, or null when it suggests nothing.
export function describePrediction(p, withRegions) {
  if (!p) return null;
  const parts = [];
  if (withRegions && Array.isArray(p.regions) && p.regions.length) parts.push(`${p.regions.length} regions`);
  if (p.label) {
    const confidence = typeof p.confidence === "number" ? ` (${Math.round(p.confidence * 100)}%)` : "";
    parts.push(`${withRegions ? "clip label " : ""}“${p.label}”${confidence}`);
  }
  return parts.length ? `Model suggests ${parts.join(" and ")}: check, correct, then press Enter.` : null;
}

// [first, last) rows to render of n rows rowH px high scrolled to `top` in a box `height` px high (4 rows spare).
export function visibleRows(top, height, n, rowH) {
  return [Math.max(0, Math.floor(top / rowH) - 4), Math.min(n, Math.ceil((top + height) / rowH) + 4)];
}

// Position in a list of n after stepping `delta` from `at` (-1: none selected yet, start from an end).
export function stepIndex(at, delta, n) {
  return at < 0 ? (delta > 0 ? 0 : n - 1) : Math.max(0, Math.min(n - 1, at + delta));
}
