import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PDQ_MIN_QUALITY,
  isPdqHex,
  pdqDistance,
  pdqFromImageBytes,
  pdqFromRgba,
  thumbnailSize,
  torbenMedian,
} from '../lib/pdq.js';
import { noise, texture } from './texture.mjs';

function flat(width, height, [r, g, b]) {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < rgba.length; i += 4) rgba.set([r, g, b, 255], i);
  return rgba;
}

test('a PDQ hash is 64 lower-case hex digits with a quality from 0 to 100', () => {
  const { hash, quality } = pdqFromRgba(texture(300, 200), 300, 200);
  assert.match(hash, /^[0-9a-f]{64}$/);
  assert.ok(Number.isInteger(quality) && quality >= 0 && quality <= 100);
  assert.ok(quality >= PDQ_MIN_QUALITY, `a textured picture is worth matching (quality ${quality})`);
});

test('the same pixels always give the same hash; half the bits are set (median threshold)', () => {
  const a = pdqFromRgba(texture(257, 131, { seed: 3 }), 257, 131);
  const b = pdqFromRgba(texture(257, 131, { seed: 3 }), 257, 131);
  assert.equal(a.hash, b.hash);
  const ones = [...a.hash].reduce((sum, digit) => sum + Number.parseInt(digit, 16).toString(2).replaceAll('0', '').length, 0);
  assert.ok(ones >= 120 && ones <= 128, `${ones} bits set`);
});

test('a flat image has quality below the matching threshold', () => {
  const { quality } = pdqFromRgba(flat(200, 150, [90, 120, 200]), 200, 150);
  assert.ok(quality < PDQ_MIN_QUALITY, `quality ${quality}`);
  assert.equal(quality, 0);
});

test('a brighter copy is near the original; an unrelated picture is far', () => {
  const original = pdqFromRgba(texture(320, 240, { seed: 5 }), 320, 240);
  const brighter = pdqFromRgba(texture(320, 240, { seed: 5, brightness: 30 }), 320, 240);
  const other = pdqFromRgba(texture(320, 240, { seed: 99 }), 320, 240);
  assert.ok(pdqDistance(original.hash, brighter.hash) <= 10, `distance ${pdqDistance(original.hash, brighter.hash)}`);
  assert.ok(pdqDistance(original.hash, other.hash) > 31, `distance ${pdqDistance(original.hash, other.hash)}`);
});

test('images too small to hash get the zero hash and quality 0, as in the reference', () => {
  const zero = '0'.repeat(64);
  assert.deepEqual(pdqFromRgba(texture(4, 40), 4, 40), {
    hash: zero,
    quality: 0,
    mirrored: zero,
    rotations: { clockwise: zero, halfTurn: zero, counterclockwise: zero },
    flips: { upsideDown: zero, transposed: zero, transversed: zero },
  });
});

/** The RGBA picture flipped left to right (`img[:, ::-1]`) or, with `vertical`, upside down. */
function flip(rgba, width, height, { vertical = false } = {}) {
  const out = new Uint8ClampedArray(rgba.length);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const [sx, sy] = vertical ? [x, height - 1 - y] : [width - 1 - x, y];
      out.set(rgba.subarray((sy * width + sx) * 4, (sy * width + sx) * 4 + 4), (y * width + x) * 4);
    }
  }
  return out;
}

test('the mirror hash of a left-right flipped copy is near the original’s hash', () => {
  for (const [width, height, seed] of [[320, 240, 5], [300, 200, 8], [64, 64, 2], [257, 131, 3]]) {
    const pixels = texture(width, height, { seed });
    const original = pdqFromRgba(pixels, width, height);
    const mirrored = pdqFromRgba(flip(pixels, width, height), width, height);
    assert.match(mirrored.mirrored, /^[0-9a-f]{64}$/);
    assert.equal(mirrored.quality, original.quality);
    const near = pdqDistance(mirrored.mirrored, original.hash);
    const far = pdqDistance(mirrored.hash, original.hash);
    assert.ok(near <= 31, `${width}×${height}: mirror hash ${near} bits from the original`);
    assert.ok(far > 64, `${width}×${height}: the plain hash of a mirror is far (${far} bits)`);
    // And the other way: the original's mirror hash is near the flipped copy's hash.
    assert.ok(pdqDistance(original.mirrored, mirrored.hash) <= 31);
  }
});

test('the mirror hash undoes a left-right flip only, not an upside-down one', () => {
  const pixels = texture(320, 240, { seed: 5 });
  const original = pdqFromRgba(pixels, 320, 240);
  const upsideDown = pdqFromRgba(flip(pixels, 320, 240, { vertical: true }), 320, 240);
  assert.ok(pdqDistance(upsideDown.mirrored, original.hash) > 64);
  assert.ok(pdqDistance(upsideDown.hash, original.hash) > 64);
});

/**
 * The RGBA picture turned by `turn` (as PIL's transpose: ROTATE_270 is a quarter turn
 * clockwise, ROTATE_180 a half turn, ROTATE_90 a quarter turn counterclockwise).
 */
function rotate(rgba, width, height, turn) {
  const [w, h] = turn === 'halfTurn' ? [width, height] : [height, width];
  const out = new Uint8ClampedArray(rgba.length);
  for (let y = 0; y < h; y += 1) {
    for (let x = 0; x < w; x += 1) {
      const [sx, sy] = {
        clockwise: [y, height - 1 - x],
        halfTurn: [width - 1 - x, height - 1 - y],
        counterclockwise: [width - 1 - y, x],
      }[turn];
      out.set(rgba.subarray((sy * width + sx) * 4, (sy * width + sx) * 4 + 4), (y * w + x) * 4);
    }
  }
  return { pixels: out, width: w, height: h };
}

test('a rotated copy’s rotation hash for its turn is near the original’s hash; the others are far', () => {
  const turns = ['clockwise', 'halfTurn', 'counterclockwise'];
  for (const [width, height, seed] of [[320, 240, 5], [300, 200, 8], [64, 64, 2], [257, 131, 3]]) {
    const pixels = texture(width, height, { seed });
    const original = pdqFromRgba(pixels, width, height);
    for (const turn of turns) {
      const copy = rotate(pixels, width, height, turn);
      const got = pdqFromRgba(copy.pixels, copy.width, copy.height);
      const near = pdqDistance(got.rotations[turn], original.hash);
      assert.ok(near <= 31, `${width}×${height} turned ${turn}: ${near} bits from the original`);
      assert.ok(pdqDistance(got.hash, original.hash) > 64, `${width}×${height} turned ${turn}: plain hash far`);
      for (const other of turns.filter((t) => t !== turn)) {
        assert.ok(pdqDistance(got.rotations[other], original.hash) > 64, `${turn}: ${other} far`);
      }
    }
  }
});

test('the rotation hashes are thresholded at their own medians: half the bits set', () => {
  const { rotations } = pdqFromRgba(texture(257, 131, { seed: 3 }), 257, 131);
  for (const hash of Object.values(rotations)) {
    const ones = [...hash].reduce((sum, digit) => sum + Number.parseInt(digit, 16).toString(2).replaceAll('0', '').length, 0);
    assert.ok(ones >= 120 && ones <= 128, `${ones} bits set`);
  }
});

/**
 * The RGBA picture flipped by `name` (as PIL's transpose): FLIP_TOP_BOTTOM upside down,
 * TRANSPOSE across the top-left–bottom-right diagonal (the mirror, then a quarter turn
 * counterclockwise), TRANSVERSE across the other diagonal (the mirror, then clockwise).
 */
function flipped(rgba, width, height, name) {
  const [w, h] = name === 'upsideDown' ? [width, height] : [height, width];
  const out = new Uint8ClampedArray(rgba.length);
  for (let y = 0; y < h; y += 1) {
    for (let x = 0; x < w; x += 1) {
      const [sx, sy] = {
        upsideDown: [x, height - 1 - y],
        transposed: [y, x],
        transversed: [width - 1 - y, height - 1 - x],
      }[name];
      out.set(rgba.subarray((sy * width + sx) * 4, (sy * width + sx) * 4 + 4), (y * w + x) * 4);
    }
  }
  return { pixels: out, width: w, height: h };
}

test('the transpose and transverse are the mirror turned counterclockwise and clockwise', () => {
  const [width, height] = [7, 5];
  const pixels = texture(width, height, { seed: 4 });
  const mirror = flip(pixels, width, height);
  const same = (a, b) => a.width === b.width && a.height === b.height && a.pixels.every((v, i) => v === b.pixels[i]);
  assert.ok(same(flipped(pixels, width, height, 'transposed'), rotate(mirror, width, height, 'counterclockwise')));
  assert.ok(same(flipped(pixels, width, height, 'transversed'), rotate(mirror, width, height, 'clockwise')));
});

test('a flipped copy’s flip hash for its flip is near the original’s hash; the others are far', () => {
  const flips = ['upsideDown', 'transposed', 'transversed'];
  for (const [width, height, seed] of [[320, 240, 5], [300, 200, 8], [64, 64, 2], [257, 131, 3]]) {
    const pixels = texture(width, height, { seed });
    const original = pdqFromRgba(pixels, width, height);
    for (const name of flips) {
      const copy = flipped(pixels, width, height, name);
      const got = pdqFromRgba(copy.pixels, copy.width, copy.height);
      const near = pdqDistance(got.flips[name], original.hash);
      assert.ok(near <= 31, `${width}×${height} flipped ${name}: ${near} bits from the original`);
      assert.ok(pdqDistance(got.hash, original.hash) > 64, `${width}×${height} flipped ${name}: plain hash far`);
      const others = [got.mirrored, ...Object.values(got.rotations), ...flips.filter((f) => f !== name).map((f) => got.flips[f])];
      for (const other of others) assert.ok(pdqDistance(other, original.hash) > 64, `${name}: another hash far`);
    }
  }
});

test('the flip hashes are thresholded at their own medians: half the bits set', () => {
  const { flips } = pdqFromRgba(texture(257, 131, { seed: 3 }), 257, 131);
  assert.deepEqual(Object.keys(flips), ['upsideDown', 'transposed', 'transversed']);
  for (const hash of Object.values(flips)) {
    const ones = [...hash].reduce((sum, digit) => sum + Number.parseInt(digit, 16).toString(2).replaceAll('0', '').length, 0);
    assert.ok(ones >= 120 && ones <= 128, `${ones} bits set`);
  }
});

test('the mirror hash is thresholded at its own median: half the bits set', () => {
  const { mirrored } = pdqFromRgba(texture(257, 131, { seed: 3 }), 257, 131);
  const ones = [...mirrored].reduce((sum, digit) => sum + Number.parseInt(digit, 16).toString(2).replaceAll('0', '').length, 0);
  assert.ok(ones >= 120 && ones <= 128, `${ones} bits set`);
});

test('too little pixel data for the size is an error, not garbage', () => {
  assert.throws(() => pdqFromRgba(new Uint8Array(10), 100, 100), RangeError);
});

test('thumbnailSize keeps the aspect like PIL thumbnail and leaves small images alone', () => {
  assert.deepEqual(thumbnailSize(300, 200), { width: 300, height: 200 });
  assert.deepEqual(thumbnailSize(1500, 900), { width: 512, height: 307 });
  assert.deepEqual(thumbnailSize(700, 1300), { width: 276, height: 512 });
  assert.deepEqual(thumbnailSize(1024, 1024), { width: 512, height: 512 });
  assert.deepEqual(thumbnailSize(20000, 10), { width: 512, height: 1 });
});

test('Torben median is the lower median (the ((n+1)/2)-th smallest)', () => {
  assert.equal(torbenMedian(Float32Array.from([5, 1, 4, 2, 3])), 3);
  assert.equal(torbenMedian(Float32Array.from([4, 1, 3, 2])), 2);
  assert.equal(torbenMedian(Float32Array.from([7, 7, 7, 7])), 7);
  const values = Float32Array.from({ length: 256 }, (_, i) => Math.fround(Math.sin(i) * 1000));
  assert.equal(torbenMedian(values), [...values].sort((a, b) => a - b)[127]);
});

test('pdqDistance counts differing bits and refuses what is not a hash', () => {
  assert.equal(pdqDistance('0'.repeat(64), '0'.repeat(64)), 0);
  assert.equal(pdqDistance('0'.repeat(64), 'f'.repeat(64)), 256);
  assert.equal(pdqDistance(`8${'0'.repeat(63)}`, `${'0'.repeat(63)}1`), 2);
  assert.ok(isPdqHex('A'.repeat(64)));
  assert.ok(!isPdqHex('g'.repeat(64)));
  assert.throws(() => pdqDistance('0', '0'), TypeError);
});

test('an image too large for a hash, or of no known size, is never decoded', async () => {
  /** The first bytes of a PNG of `width` × `height` (what lib/image-size.js reads). */
  const pngHeader = (width, height) => {
    const bytes = new Uint8Array(33);
    bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
    new DataView(bytes.buffer).setUint32(16, width);
    new DataView(bytes.buffer).setUint32(20, height);
    return bytes;
  };
  const decoded = [];
  const original = globalThis.createImageBitmap;
  globalThis.createImageBitmap = async (blob) => {
    decoded.push(blob.size);
    throw new Error('not decoded in this test');
  };
  try {
    assert.equal(await pdqFromImageBytes(pngHeader(16384, 16384)), null);
    assert.equal(await pdqFromImageBytes(pngHeader(8001, 8000)), null, 'just over 64 million pixels');
    assert.equal(await pdqFromImageBytes(new Uint8Array(64).fill(7)), null, 'no known format');
    assert.deepEqual(decoded, [], 'none of them reached the decoder');
    await pdqFromImageBytes(pngHeader(8000, 8000));
    assert.deepEqual(decoded, [33], 'an image within the limit is decoded');
  } finally {
    globalThis.createImageBitmap = original;
  }
});

test('each turned or flipped hash is what the pixels turned or flipped so hash to', () => {
  // lib/pdq.js step 8: read from the blur at the points the turned image's grid samples (near
  // the edges, computed with its weights), not derived from the DCT block (the reference's
  // shortcut, 20–28 bits off on real pictures).
  const undone = {
    mirrored: (p, w, h) => ({ pixels: flip(p, w, h), width: w, height: h }),
    'rotations.clockwise': (p, w, h) => rotate(p, w, h, 'counterclockwise'),
    'rotations.halfTurn': (p, w, h) => rotate(p, w, h, 'halfTurn'),
    'rotations.counterclockwise': (p, w, h) => rotate(p, w, h, 'clockwise'),
    'flips.upsideDown': (p, w, h) => flipped(p, w, h, 'upsideDown'),
    'flips.transposed': (p, w, h) => flipped(p, w, h, 'transposed'),
    'flips.transversed': (p, w, h) => flipped(p, w, h, 'transversed'),
  };
  // Box widths odd and even along each side (ceil(side / 128)), and 64×64 (no blur); smooth
  // waves, and noise with structure up to the edges (where the turned image's boxes are cut
  // short by its edge, its samples there are computed with its own weights).
  const pictures = [
    ...[[320, 240, 5], [300, 200, 8], [64, 64, 2], [257, 131, 3], [512, 384, 6], [130, 385, 7]]
      .map(([width, height, seed]) => [width, height, texture(width, height, { seed })]),
    ...[[256, 256, 1], [130, 129, 2], [300, 200, 3], [511, 129, 4], [37, 200, 5]]
      .map(([width, height, seed]) => [width, height, noise(width, height, { seed })]),
  ];
  for (const [width, height, pixels] of pictures) {
    const got = pdqFromRgba(pixels, width, height);
    for (const [name, turn] of Object.entries(undone)) {
      const [part, key] = name.split('.');
      const derived = key ? got[part][key] : got[part];
      const copy = turn(pixels, width, height);
      const distance = pdqDistance(derived, pdqFromRgba(copy.pixels, copy.width, copy.height).hash);
      // The same hash, bit for bit (the edge samples are summed in another order than the
      // blur's running sums, which could only ever flip a bit sitting on the median).
      assert.equal(distance, 0, `${width}×${height} ${name}: ${distance} bits from the turned pixels' hash`);
    }
  }
});
