// Point colours: a height or intensity ramp, and one colour per label, written into a Uint8 RGB array.

// Ten label colours (Tableau 10, bright enough on a dark stage).
export const LABEL_COLORS = [
  [78, 121, 167], [242, 142, 43], [225, 87, 89], [118, 183, 178], [89, 161, 79],
  [237, 201, 72], [176, 122, 161], [255, 157, 167], [156, 117, 95], [186, 176, 172],
].map(([r, g, b]) => [Math.min(255, r + 30), Math.min(255, g + 30), Math.min(255, b + 30)]);

export function labelColor(index) {
  if (index < LABEL_COLORS.length) return LABEL_COLORS[index];
  const h = (index * 0.618034) % 1;   // more than ten labels: golden-ratio hues
  return hsl(h, 0.65, 0.6);
}

export function labelCss(index) {
  const [r, g, b] = labelColor(index);
  return `rgb(${r}, ${g}, ${b})`;
}

function hsl(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    return Math.round(255 * (l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

// A perceptual ramp (a "turbo"-like polynomial), 256 entries of RGB.
const RAMP = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = 0.12 + 0.8 * i / 255;
    const r = 34.61 + t * (1172.33 + t * (-10793.56 + t * (33300.12 + t * (-38394.49 + t * 14825.05))));
    const g = 23.31 + t * (557.33 + t * (1225.33 + t * (-3574.96 + t * (1073.77 + t * 707.56))));
    const b = 27.2 + t * (3211.1 + t * (-15327.97 + t * (27814 + t * (-22569.18 + t * 6838.66))));
    lut[i * 3] = Math.max(0, Math.min(255, r));
    lut[i * 3 + 1] = Math.max(0, Math.min(255, g));
    lut[i * 3 + 2] = Math.max(0, Math.min(255, b));
  }
  return lut;
})();

// A quiet blue-grey ramp for unlabeled points while segmenting: shape stays readable, label colours stand out.
const MUTED = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const v = 62 + 88 * i / 255;
    lut[i * 3] = v * 0.92; lut[i * 3 + 1] = v * 0.96; lut[i * 3 + 2] = Math.min(255, v * 1.1);
  }
  return lut;
})();

// Base colours by a scalar channel (offset 2 = z for height, 3 = intensity), into out (Uint8 RGB).
export function rampColors(positions, n, stride, offset, lo, hi, out, muted = false) {
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const lut = muted ? MUTED : RAMP;
  for (let i = 0, o = offset, c = 0; i < n; i++, o += stride, c += 3) {
    let t = ((positions[o] - lo) * scale) | 0;
    t = t < 0 ? 0 : t > 255 ? 255 : t;
    t *= 3;
    out[c] = lut[t]; out[c + 1] = lut[t + 1]; out[c + 2] = lut[t + 2];
  }
  return out;
}

export function greyColors(n, out, v = 150) {
  out.fill(v, 0, n * 3);
  return out;
}

// colors[i] = label colour where labeled, else base[i]; for all points or only `indices`.
export function applyLabels(labels, base, colors, indices = null) {
  const palette = new Uint8Array(256 * 3);
  for (let k = 0; k < 256; k++) palette.set(labelColor(k), k * 3);
  if (indices === null) {
    for (let i = 0, c = 0; i < labels.length; i++, c += 3) {
      const l = labels[i];
      if (l < 0) { colors[c] = base[c]; colors[c + 1] = base[c + 1]; colors[c + 2] = base[c + 2]; }
      else { const p = (l & 255) * 3; colors[c] = palette[p]; colors[c + 1] = palette[p + 1]; colors[c + 2] = palette[p + 2]; }
    }
  } else {
    for (let j = 0; j < indices.length; j++) {
      const i = indices[j], c = i * 3, l = labels[i];
      if (l < 0) { colors[c] = base[c]; colors[c + 1] = base[c + 1]; colors[c + 2] = base[c + 2]; }
      else { const p = (l & 255) * 3; colors[c] = palette[p]; colors[c + 1] = palette[p + 1]; colors[c + 2] = palette[p + 2]; }
    }
  }
}
