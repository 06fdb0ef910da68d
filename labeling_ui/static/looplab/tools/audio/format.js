// Audio tool formatting and decoding, pure: colours, times, rounding, and the int16 peaks the server sends.

export const PALETTE = ["#3b82f6", "#f97316", "#22c55e", "#e11d48", "#a855f7", "#eab308", "#06b6d4", "#ec4899",
  "#84cc16", "#f43f5e", "#14b8a6", "#8b5cf6"];
export const NO_LABEL_COLOR = "#9aa3b5";

// A label's colour by its position in `labels`; grey for no label.
export const colorFor = (labels, label) => (label ? PALETTE[Math.max(0, labels.indexOf(label)) % PALETTE.length] : NO_LABEL_COLOR);

export function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

// m:ss.ss (h:mm:ss.ss past an hour); precise=false drops the hundredths.
export function fmtTime(t, precise = true) {
  if (!Number.isFinite(t)) t = 0;
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  const ss = precise ? s.toFixed(2).padStart(5, "0") : String(Math.floor(s)).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export const round3 = (x) => Math.round(x * 1000) / 1000;
export const nextPow2 = (x) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

// The peaks endpoint's body (int16 pairs: min, max per bucket) as two Float32Arrays in -1..1.
export function decodePeaks(buffer) {
  const values = new Int16Array(buffer);
  const n = values.length >> 1;
  const max = new Float32Array(n);
  const min = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    min[i] = values[2 * i] / 32767;
    max[i] = values[2 * i + 1] / 32767;
  }
  return { max, min, buckets: n };
}
