// Audio tool time axis, pure: the visible time range, zoom targets, the peaks resolution a zoom needs, the
// ruler's ticks and the part of the spectrogram image on screen. Widths are CSS px unless named device px.
import { fmtTime, nextPow2 } from "./format.js";

// [start, end] seconds on screen for a scroll offset and view width within a total width spanning `duration`.
export function visibleSpan(scroll, width, total, duration) {
  const start = (scroll / total) * duration;
  const end = Math.min(duration, ((scroll + width) / total) * duration);
  return [start, end];
}

// The zoom to set (px per second; 0 = fit) when asked for `px`: at or under the fit width it is 0 (fit).
export function zoomTarget(px, fit, maxPxPerSec) {
  return px <= fit * 1.001 ? 0 : Math.min(maxPxPerSec, px);
}

// The time a zoom keeps in place: the selected region's middle, else the playhead if on screen, else the centre.
export function zoomFocus([a, b], region, currentTime) {
  if (region) return (region.start + region.end) / 2;
  if (currentTime >= a && currentTime <= b && currentTime > 0) return currentTime;
  return (a + b) / 2;
}

// Buckets (a power of two, at most maxBuckets) for about one bucket per device pixel at `pxPerSec`.
export function bucketsFor(duration, pxPerSec, dpr, maxBuckets) {
  return Math.min(maxBuckets, nextPow2(duration * pxPerSec * dpr));
}

export const RULER_STEPS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

// The ruler's ticks between start and end at pps px per second: a labelled major step at least 80 px wide
// and 4 or 5 minor ticks to a step. Each tick: {t, major, label (major ticks only)}.
export function rulerTicks(start, end, pps, duration) {
  const step = RULER_STEPS.find((x) => x * pps >= 80) || 3600;
  const minor = step / (String(step).startsWith("2") ? 4 : 5);
  const ticks = [];
  for (let t = Math.floor(start / minor) * minor; t <= end + 1e-9; t += minor) {
    const major = Math.abs(t / step - Math.round(t / step)) < 1e-6;
    let label = null;
    if (major) {
      const decimals = step < 0.1 ? 2 : step < 1 ? 1 : 0;
      label = step >= 60 || duration >= 60 ? fmtTime(t, false) : t.toFixed(decimals) + (decimals ? "" : " s");
    }
    ticks.push({ t, major, label });
  }
  return ticks;
}

// Source x and width in a spectrogram image `bitmapWidth` px wide spanning `span` seconds, for [start, end].
export function spectrogramSource(start, end, span, bitmapWidth) {
  return [(start / span) * bitmapWidth, Math.max(0.5, ((end - start) / span) * bitmapWidth)];
}
