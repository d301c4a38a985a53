/**
 * PDQ, Meta's perceptual photo hash, in plain JavaScript.
 *
 * Algorithm: "The TMK+PDQF Video-Hashing Algorithm and the PDQ Image Similarity Algorithm"
 * (Meta / Facebook, 2017; the pdqhash-2017-10-09 document) and its reference
 * implementations in facebook/ThreatExchange (pdq/cpp/hashing/pdqhashing.cpp,
 * pdq/cpp/downscaling/downscaling.cpp, pdq/python/pdqhashing/). This is an independent
 * port of that algorithm, written for the extension; no code was copied.
 *
 * Steps, as the reference does them:
 *   1. RGB → luminance Y = 0.299 R + 0.587 G + 0.114 B (single-precision floats).
 *   2. Blur with a Jarosz tent filter: two rounds of a 1-D box filter along rows then along
 *      columns, window ceil(side / 128) per pass (so two passes cover 1/64 of the side).
 *   3. Decimate to 64×64 by sampling the blurred image at the centres of a 64×64 grid.
 *   4. Quality (0–100): the sum of the quantised gradients of the 64×64 image / 90.
 *   5. 2-D DCT of the 64×64 image, keeping coefficients 1..16 along each axis (the DC row
 *      and column are skipped): B = D A Dᵀ with D the 16×64 DCT-II matrix.
 *   6. Threshold at the median (Torben's selection: the ((n+1)/2)-th smallest of the 256).
 *      Bit k = i·16 + j is set when B[i][j] > median.
 *   7. The hashes of these pixels turned and flipped, all eight ways, for reposts that were
 *      turned or flipped: each is named by the copy it undoes, so for such a copy it is what
 *      its original hashes to (near the original's hash), while the copy's own hash is ~128
 *      bits away. `mirrored`: the left-right mirror of these pixels. `rotations.clockwise`:
 *      these pixels turned a quarter turn counterclockwise (PIL's ROTATE_90), undoing a copy
 *      turned clockwise; `rotations.halfTurn`: turned a half turn; `rotations.counterclockwise`:
 *      turned a quarter turn clockwise (ROTATE_270). `flips.upsideDown`: flipped top to bottom;
 *      `flips.transposed`: flipped across the top-left–bottom-right diagonal (PIL's TRANSPOSE:
 *      the mirror then a quarter turn counterclockwise); `flips.transversed`: across the other
 *      diagonal (TRANSVERSE: the mirror then a quarter turn clockwise). Each flip undoes itself.
 *   8. How they are computed: not from the DCT block, as the reference's `compute_dihedral`
 *      derives them (dct16OriginalToRotate90 etc.: sign changes and a transpose of B), but
 *      from the blurred image, read at the points the turned image's own grid would sample
 *      (`dihedralGrid`), then DCT and threshold as in steps 5–6. The reference's shortcut
 *      assumes the sampling is symmetric, and it is not: the grid's points sit at
 *      trunc((g + 0.5)·side / 64), and a box of even width is centred half a pixel off, so
 *      along a reversed side the turned image samples the blur 1–3 pixels from where the
 *      shortcut reads it. On ../shared/data that cost a mirrored or upside-down copy a median
 *      20 bits, a half turn or transverse (both sides reversed) 28, and about 4% and 38% of
 *      them fell beyond the server's near-match distance (31). Read at the right points, the
 *      grid is the turned image's own, except near its edges: where the turned image's boxes
 *      are cut short by its edge (or these pixels' would be), no blurred pixel here has its
 *      blur, so those few samples are computed from the pixels before the blur with the
 *      turned image's weights (`sideSamples`, `tentWeights`). So a turned or flipped copy's
 *      hash for its turn is what the reference gives for the copy turned back
 *      (`pdqhash.compute` of those pixels; the parity test checks it), and the original's
 *      hash: 0 bits apart (2 at most, the reference's rounding) on ../shared/data. The
 *      transpose too gets its own DCT (of the same samples, swapped), not the block's
 *      transpose: on a picture whose coefficients crowd the median (a fine checkerboard) the
 *      two orders of summation fall on different sides of it, and the reference's own
 *      shortcut is then 92 bits from its hash of the transposed pixels. Seven more
 *      16×64×64 DCTs per image, about 2.5 ms (benchmarks/bench_pdq_js.mjs).
 *
 * Arithmetic follows the C++ reference in single precision (Math.fround after every
 * operation), which is what the server's hash (pdqhash-python, built on that C++) uses, so
 * the same pixels give the same hash here, bit for bit in practice.
 *
 * Hex form: the reference's Hash256 prints its sixteen 16-bit words from the last to the
 * first, four hex digits each; that is bit 255 first, and equals the server's form
 * (fakescope/images.py: pdqhash's bit vector → numpy.packbits → hex).
 */

import { imageSizeOf } from './image-size.js';

const f32 = Math.fround;

/** Images are first shrunk to at most this many pixels on the long side (as the server does). */
export const PDQ_MAX_SIDE = 512;
/** Below this quality the server does not index a hash (flat images all hash alike). */
export const PDQ_MIN_QUALITY = 50;
/** The reference refuses (zero hash, quality 0) images smaller than this on either side. */
export const PDQ_MIN_SIDE = 5;
/**
 * The most pixels decoded for a hash (by the header, lib/image-size.js): the server analyses no
 * larger image (its default `max_pixels`), so no checked image could match one, and a page could
 * otherwise have the worker decode a few kilobytes into gigabytes.
 */
export const PDQ_MAX_DECODE_PIXELS = 64_000_000;

const LUMA_R = 0.299;
const LUMA_G = 0.587;
const LUMA_B = 0.114;
const JAROSZ_PASSES = 2;
const GRID = 64;
const DCT_SIZE = 16;

/** The 16×64 DCT-II rows 1..16 (row 0, the DC term, is not needed), scaled by sqrt(2/64). */
const DCT_MATRIX = (() => {
  const scale = f32(Math.sqrt(2 / GRID));
  const m = new Float32Array(DCT_SIZE * GRID);
  for (let i = 0; i < DCT_SIZE; i += 1) {
    for (let j = 0; j < GRID; j += 1) {
      m[i * GRID + j] = scale * Math.cos((Math.PI / 2 / GRID) * (i + 1) * (2 * j + 1));
    }
  }
  return m;
})();

/**
 * The size PIL's `Image.thumbnail((max, max))` gives an image: aspect kept, long side at
 * most `max`, each side rounded to whichever integer keeps the aspect closest. Images
 * already small enough keep their size.
 * @returns {{width: number, height: number}}
 */
export function thumbnailSize(width, height, max = PDQ_MAX_SIDE) {
  if (width <= max && height <= max) return { width, height };
  const aspect = width / height;
  const closest = (value, error) => {
    const lo = Math.floor(value);
    const hi = Math.ceil(value);
    return Math.max(error(lo) <= error(hi) ? lo : hi, 1);
  };
  if (max / max >= aspect) {
    // Taller than wide (or square): the height is the limit.
    return { width: closest(max * aspect, (n) => Math.abs(aspect - n / max)), height: max };
  }
  return { width: max, height: closest(max / aspect, (n) => (n === 0 ? 0 : Math.abs(aspect - max / n))) };
}

/**
 * Luminance of RGBA pixels (canvas ImageData order), alpha ignored, as single floats.
 * @param {Uint8ClampedArray | Uint8Array} rgba
 */
export function lumaFromRgba(rgba, width, height) {
  const n = width * height;
  if (rgba.length < n * 4) throw new RangeError('not enough pixel data for the size given');
  const luma = new Float32Array(n);
  for (let p = 0, q = 0; p < n; p += 1, q += 4) {
    luma[p] = LUMA_R * rgba[q] + LUMA_G * rgba[q + 1] + LUMA_B * rgba[q + 2];
  }
  return luma;
}

/** Box-filter window for one pass along a side: ceil(side / 128), the reference's rounding. */
export function jaroszWindow(side) {
  return Math.floor((side + 2 * GRID - 1) / (2 * GRID));
}

/**
 * One 1-D moving average over `length` values starting at `offset`, `stride` apart, with a
 * window of `window` centred as the reference centres it (the first output averages the first
 * floor(window/2)+1 inputs; the window shrinks again at the far end).
 */
function boxFilter1d(input, output, offset, length, stride, window) {
  const half = Math.floor((window + 2) / 2);
  const lead = half - 1; // inputs summed before the first output
  const grow = window - half + 1; // outputs while the window is still growing
  const full = length - window; // outputs with the whole window
  const tail = half - 1; // outputs while the window shrinks
  let sum = 0;
  let count = 0;
  let left = offset;
  let right = offset;
  let out = offset;
  for (let i = 0; i < lead; i += 1) {
    sum = f32(sum + input[right]);
    count += 1;
    right += stride;
  }
  for (let i = 0; i < grow; i += 1) {
    sum = f32(sum + input[right]);
    count += 1;
    output[out] = sum / count;
    right += stride;
    out += stride;
  }
  for (let i = 0; i < full; i += 1) {
    sum = f32(sum + input[right]);
    sum = f32(sum - input[left]);
    output[out] = sum / count;
    left += stride;
    right += stride;
    out += stride;
  }
  for (let i = 0; i < tail; i += 1) {
    sum = f32(sum - input[left]);
    count -= 1;
    output[out] = sum / count;
    left += stride;
    out += stride;
  }
}

/** The tent blur in place on `a` (row-major `rows`×`cols`), `b` a scratch buffer of the same size. */
function jaroszBlur(a, b, rows, cols) {
  const alongRows = jaroszWindow(cols);
  const alongCols = jaroszWindow(rows);
  for (let pass = 0; pass < JAROSZ_PASSES; pass += 1) {
    for (let r = 0; r < rows; r += 1) boxFilter1d(a, b, r * cols, cols, 1, alongRows);
    for (let c = 0; c < cols; c += 1) boxFilter1d(b, a, c, rows, cols, alongCols);
  }
}

/** Where the 64×64 grid samples a side of `length` pixels: the centres of 64 equal cells. */
function gridPositions(length) {
  const positions = new Int32Array(GRID);
  for (let g = 0; g < GRID; g += 1) positions[g] = Math.trunc(((g + 0.5) * length) / GRID);
  return positions;
}

/** 64×64 samples of the blurred image, at the centres of a 64×64 grid laid over it. */
function decimate(blurred, rows, cols) {
  const grid = new Float32Array(GRID * GRID);
  const ys = gridPositions(rows);
  const xs = gridPositions(cols);
  for (let gi = 0; gi < GRID; gi += 1) {
    for (let gj = 0; gj < GRID; gj += 1) grid[gi * GRID + gj] = blurred[ys[gi] * cols + xs[gj]];
  }
  return grid;
}

/**
 * The weights of the tent blur (two box passes along a side of `side` pixels) that make its
 * value at pixel `p`, as the reference's boxes make them: full windows inside, shrunk ones
 * at the ends. A Map from pixel to weight.
 */
function tentWeights(side, p) {
  const window = jaroszWindow(side);
  const half = Math.floor((window + 2) / 2);
  const box = (j) => [Math.max(0, j - (window - half)), Math.min(side - 1, j + half - 1)];
  const [first, last] = box(p);
  const weights = new Map();
  for (let j = first; j <= last; j += 1) {
    const [lo, hi] = box(j);
    const share = 1 / ((last - first + 1) * (hi - lo + 1));
    for (let i = lo; i <= hi; i += 1) weights.set(i, (weights.get(i) ?? 0) + share);
  }
  return weights;
}

function sameWeights(a, b) {
  if (a.size !== b.size) return false;
  for (const [i, w] of a) if (!(Math.abs((b.get(i) ?? -1) - w) < 1e-9)) return false;
  return true;
}

/**
 * Where the turned image's grid samples this side, in these pixels (step 8). `index[g]`: the
 * blurred pixel with the same blur as the turned image's sample g. Along a reversed side that
 * is the mirror of the sample's blur centre, `lead` back (an even box leans half a pixel each
 * pass); but where the turned image's boxes are cut short by its edge, or these pixels' would
 * be, no blurred pixel has that blur: `exact[g]` then holds the weights the turned image's
 * blur gives these pixels there (null elsewhere).
 */
function sideSamples(positions, side, flipped, blurred) {
  const index = Int32Array.from(positions);
  const exact = new Array(GRID).fill(null);
  if (!flipped) return { index, exact };
  const window = jaroszWindow(side);
  const lead = blurred && window % 2 === 0 ? JAROSZ_PASSES / 2 : 0;
  // Two boxes reach at most this far from the pixel they are written to.
  const reach = JAROSZ_PASSES * window;
  const inside = (i) => i - reach >= 0 && i + reach <= side - 1;
  for (let g = 0; g < GRID; g += 1) {
    const p = positions[g];
    const mirrored = side - 1 - p - 2 * lead;
    index[g] = Math.min(Math.max(mirrored, 0), side - 1);
    if (!blurred || (inside(p) && inside(mirrored))) continue;
    const wanted = new Map([...tentWeights(side, p)].map(([i, w]) => [side - 1 - i, w]));
    if (mirrored !== index[g] || !sameWeights(wanted, tentWeights(side, index[g]))) {
      exact[g] = wanted;
    }
  }
  return { index, exact };
}

/**
 * The 64×64 grid the reference would sample from these pixels turned or flipped (step 8):
 * read from the blur of the pixels as they are (`blurredPixels`), at the points that the
 * turned image's grid points and blur centres come from; near the edges, where no blurred
 * pixel has the turned image's blur, computed from the pixels before the blur (`pixels`) with
 * the turned image's weights. `swap`: the turned image's rows are these pixels' columns (a
 * quarter turn or a diagonal flip); `flipRows` / `flipCols`: these pixels' rows / columns run
 * backwards in it.
 */
function dihedralGrid(pixels, blurredPixels, rows, cols, blurred, { swap, flipRows, flipCols }) {
  const turnedRows = swap ? cols : rows;
  const turnedCols = swap ? rows : cols;
  // Along each of these pixels' sides: the turned image's grid positions on that side.
  const alongRows = swap ? gridPositions(turnedCols) : gridPositions(turnedRows);
  const alongCols = swap ? gridPositions(turnedRows) : gridPositions(turnedCols);
  const ys = sideSamples(alongRows, rows, flipRows, blurred);
  const xs = sideSamples(alongCols, cols, flipCols, blurred);
  // These pixels' own blur weights along the side not reversed there, by pixel, once each.
  const rowWeights = new Map();
  const colWeights = new Map();
  const ownWeights = (known, side, i) => {
    if (!known.has(i)) known.set(i, tentWeights(side, i));
    return known.get(i);
  };
  const grid = new Float32Array(GRID * GRID);
  for (let gi = 0; gi < GRID; gi += 1) {
    for (let gj = 0; gj < GRID; gj += 1) {
      const gy = swap ? gj : gi;
      const gx = swap ? gi : gj;
      const y = ys.index[gy];
      const x = xs.index[gx];
      if (ys.exact[gy] === null && xs.exact[gx] === null) {
        grid[gi * GRID + gj] = blurredPixels[y * cols + x];
        continue;
      }
      const alongY = ys.exact[gy] ?? ownWeights(rowWeights, rows, y);
      const alongX = xs.exact[gx] ?? ownWeights(colWeights, cols, x);
      let sum = 0;
      for (const [r, wy] of alongY) {
        for (const [c, wx] of alongX) sum += wy * wx * pixels[r * cols + c];
      }
      grid[gi * GRID + gj] = sum;
    }
  }
  return grid;
}

/** PDQ's quality heuristic on the 64×64 image: significant gradients, summed, scaled to 0–100. */
function quality(grid) {
  let gradients = 0;
  const step = (u, v) => Math.abs(Math.trunc(f32(f32(f32(u - v) * 100) / 255)));
  for (let i = 0; i < GRID - 1; i += 1) {
    for (let j = 0; j < GRID; j += 1) gradients += step(grid[i * GRID + j], grid[(i + 1) * GRID + j]);
  }
  for (let i = 0; i < GRID; i += 1) {
    for (let j = 0; j < GRID - 1; j += 1) gradients += step(grid[i * GRID + j], grid[i * GRID + j + 1]);
  }
  return Math.min(Math.trunc(gradients / 90), 100);
}

/** The 16×16 low-frequency block (DC skipped) of the 64×64 image's DCT: D·A·Dᵀ. */
function dct16(grid) {
  const d = DCT_MATRIX;
  const da = new Float32Array(DCT_SIZE * GRID); // D·A, 16×64
  for (let i = 0; i < DCT_SIZE; i += 1) {
    for (let j = 0; j < GRID; j += 1) {
      let sum = 0;
      for (let k = 0; k < GRID; k += 1) sum = f32(sum + f32(d[i * GRID + k] * grid[k * GRID + j]));
      da[i * GRID + j] = sum;
    }
  }
  const out = new Float32Array(DCT_SIZE * DCT_SIZE);
  for (let i = 0; i < DCT_SIZE; i += 1) {
    for (let j = 0; j < DCT_SIZE; j += 1) {
      let sum = 0;
      for (let k = 0; k < GRID; k += 1) sum = f32(sum + f32(da[i * GRID + k] * d[j * GRID + k]));
      out[i * DCT_SIZE + j] = sum;
    }
  }
  return out;
}

/**
 * Torben's median selection (no sorting, no copy): the ((n+1)/2)-th smallest value, found by
 * bisecting between the minimum and the maximum and counting values on either side.
 */
export function torbenMedian(values) {
  const n = values.length;
  const middle = Math.floor((n + 1) / 2);
  let min = values[0];
  let max = values[0];
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  for (;;) {
    const guess = f32(f32(min + max) / 2);
    let less = 0;
    let greater = 0;
    let equal = 0;
    let maxBelow = min;
    let minAbove = max;
    for (const v of values) {
      if (v < guess) {
        less += 1;
        if (v > maxBelow) maxBelow = v;
      } else if (v > guess) {
        greater += 1;
        if (v < minAbove) minAbove = v;
      } else {
        equal += 1;
      }
    }
    if (less <= middle && greater <= middle) {
      if (less >= middle) return maxBelow;
      if (less + equal >= middle) return guess;
      return minAbove;
    }
    if (less > greater) max = maxBelow;
    else min = minAbove;
  }
}

/** 256 threshold bits as 64 hex digits, bit 255 first (the reference's and the server's form). */
function bitsToHex(block, median) {
  let hex = '';
  for (let word = DCT_SIZE - 1; word >= 0; word -= 1) {
    let bits = 0;
    for (let j = 0; j < DCT_SIZE; j += 1) {
      if (block[word * DCT_SIZE + j] > median) bits |= 1 << j;
    }
    hex += bits.toString(16).padStart(4, '0');
  }
  return hex;
}

const thresholded = (block) => bitsToHex(block, torbenMedian(block));

const ZERO_HASH = '0'.repeat(64);
const refused = () => ({
  hash: ZERO_HASH,
  quality: 0,
  mirrored: ZERO_HASH,
  rotations: { clockwise: ZERO_HASH, halfTurn: ZERO_HASH, counterclockwise: ZERO_HASH },
  flips: { upsideDown: ZERO_HASH, transposed: ZERO_HASH, transversed: ZERO_HASH },
});

/**
 * @typedef {{clockwise: string, halfTurn: string, counterclockwise: string}} PdqRotations
 * @typedef {{upsideDown: string, transposed: string, transversed: string}} PdqFlips
 * @typedef {{hash: string, quality: number, mirrored: string, rotations: PdqRotations, flips: PdqFlips}} PdqResult
 */

/**
 * PDQ of a luminance image. `luma` is consumed (blurred in place).
 * `mirrored` is the hash of the same image flipped left to right; `rotations` the hashes
 * that undo a quarter turn clockwise, a half turn and a quarter turn counterclockwise;
 * `flips` the hashes that undo an upside-down flip and the two diagonal flips (steps 7–8
 * above).
 * @param {Float32Array} luma row-major, `height` rows of `width` values
 * @returns {PdqResult}
 */
export function pdqFromLuma(luma, width, height) {
  if (!(width >= PDQ_MIN_SIDE && height >= PDQ_MIN_SIDE)) return refused();
  const blurred = !(width === GRID && height === GRID);
  // The pixels before the blur, for the turned grids' samples near the edges.
  const pixels = blurred ? luma.slice() : luma;
  if (blurred) jaroszBlur(luma, new Float32Array(width * height), height, width);
  const grid = decimate(luma, height, width);
  const q = quality(grid);
  const block = dct16(grid);
  // The hash of these pixels turned or flipped so (step 8).
  const turned = (swap, flipRows, flipCols) =>
    thresholded(dct16(dihedralGrid(pixels, luma, height, width, blurred, { swap, flipRows, flipCols })));
  return {
    hash: thresholded(block),
    quality: q,
    mirrored: turned(false, false, true),
    // Each undoes the turn it is named after: a copy turned clockwise, turned back.
    rotations: {
      clockwise: turned(true, false, true),
      halfTurn: turned(false, true, true),
      counterclockwise: turned(true, true, false),
    },
    // Each flip is its own inverse: the hash of these pixels flipped so is the original's.
    flips: {
      upsideDown: turned(false, true, false),
      transposed: turned(true, false, false),
      transversed: turned(true, true, true),
    },
  };
}

/**
 * PDQ of RGBA pixels (e.g. canvas ImageData). Hash exactly the pixels given: callers shrink
 * images to at most PDQ_MAX_SIDE on the long side first, as the server does.
 * @param {Uint8ClampedArray | Uint8Array} rgba
 * @returns {PdqResult}
 */
export function pdqFromRgba(rgba, width, height) {
  if (!(width >= PDQ_MIN_SIDE && height >= PDQ_MIN_SIDE)) return refused();
  return pdqFromLuma(lumaFromRgba(rgba, width, height), width, height);
}

/** Whether `value` looks like a PDQ hash: 64 hex digits. */
export function isPdqHex(value) {
  return typeof value === 'string' && /^[0-9a-f]{64}$/i.test(value);
}

/** Number of differing bits between two PDQ hashes (64 hex digits each). */
export function pdqDistance(a, b) {
  if (!isPdqHex(a) || !isPdqHex(b)) throw new TypeError('PDQ hashes are 64 hex digits');
  let distance = 0;
  for (let i = 0; i < 64; i += 8) {
    let x = (Number.parseInt(a.slice(i, i + 8), 16) ^ Number.parseInt(b.slice(i, i + 8), 16)) >>> 0;
    while (x) {
      x &= x - 1;
      distance += 1;
    }
  }
  return distance;
}

/**
 * PDQ of encoded image bytes, in a browser or an MV3 service worker: decoded with
 * createImageBitmap (EXIF orientation applied), shrunk to at most PDQ_MAX_SIDE on the long
 * side on an OffscreenCanvas, hashed. Resolves to null when the bytes cannot be decoded or
 * the image is too small: a missing hint is better than a failure; also, without decoding,
 * when its header gives no size or more than PDQ_MAX_DECODE_PIXELS. Besides the hash, the
 * hash of the left-right mirror (`mirrored`, what an un-mirrored original would hash to) and
 * the rotation hashes (`rotations`, what an unrotated original would hash to) and the flip
 * hashes (`flips`, what an original flipped upside down or across a diagonal would hash to).
 * @param {Uint8Array | Blob} bytes
 * @param {{type?: string}} [options]
 * @returns {Promise<PdqResult | null>}
 */
export async function pdqFromImageBytes(bytes, { type = '' } = {}) {
  let bitmap;
  try {
    const blob = bytes instanceof Blob ? bytes : new Blob([bytes], type ? { type } : {});
    const head = bytes instanceof Blob ? new Uint8Array(await bytes.slice(0, 64 * 1024).arrayBuffer()) : bytes;
    const size = imageSizeOf(head);
    if (!size || size.width * size.height > PDQ_MAX_DECODE_PIXELS) return null;
    bitmap = await createImageBitmap(blob);
    const { width, height } = thumbnailSize(bitmap.width, bitmap.height);
    if (width < PDQ_MIN_SIDE || height < PDQ_MIN_SIDE) return null;
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext('2d', { willReadFrequently: true });
    if (!context) return null;
    // Transparent pixels: on white, as the server flattens them (fakescope/images.py).
    context.fillStyle = '#fff';
    context.fillRect(0, 0, width, height);
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = 'medium';
    context.drawImage(bitmap, 0, 0, width, height);
    const { data } = context.getImageData(0, 0, width, height);
    return pdqFromRgba(data, width, height);
  } catch {
    return null;
  } finally {
    bitmap?.close?.();
  }
}
