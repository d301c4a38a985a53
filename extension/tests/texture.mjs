// Synthetic pictures for the PDQ tests and benchmarks/bench_pdq_js.mjs.

/** A photo-like RGBA picture: a few overlapping waves per channel, plus an offset. */
export function texture(width, height, { seed = 1, brightness = 0 } = {}) {
  let state = seed;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
  const waves = Array.from({ length: 3 }, () =>
    Array.from({ length: 5 }, () => [1 + random() * 8, 1 + random() * 8, random() * 6.3]));
  const rgba = new Uint8ClampedArray(width * height * 4);
  const side = Math.max(width, height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      for (let c = 0; c < 3; c += 1) {
        let v = 0;
        for (const [fx, fy, phase] of waves[c]) v += Math.sin(2 * Math.PI * ((fx * x) / side + (fy * y) / side) + phase);
        rgba[(y * width + x) * 4 + c] = 128 + v * 22 + brightness;
      }
      rgba[(y * width + x) * 4 + 3] = 255;
    }
  }
  return rgba;
}

/**
 * An RGBA picture of blocky random noise, smoothed a little: structure at every scale, so that
 * a hash computed from the wrong samples anywhere (at an edge too) comes out bits apart.
 */
export function noise(width, height, { seed = 1, cell = 6 } = {}) {
  let state = seed;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
  const cols = Math.ceil(width / cell) + 1;
  const rows = Math.ceil(height / cell) + 1;
  const grid = Array.from({ length: rows * cols * 3 }, () => random() * 255);
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const gy = y / cell;
      const gx = x / cell;
      const [r0, c0] = [Math.floor(gy), Math.floor(gx)];
      const [fy, fx] = [gy - r0, gx - c0];
      for (let c = 0; c < 3; c += 1) {
        const at = (r, k) => grid[(r * cols + k) * 3 + c];
        const top = at(r0, c0) * (1 - fx) + at(r0, c0 + 1) * fx;
        const bottom = at(r0 + 1, c0) * (1 - fx) + at(r0 + 1, c0 + 1) * fx;
        rgba[(y * width + x) * 4 + c] = top * (1 - fy) + bottom * fy;
      }
      rgba[(y * width + x) * 4 + 3] = 255;
    }
  }
  return rgba;
}
