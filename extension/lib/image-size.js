/**
 * An image's size in pixels, read from its header, without decoding it. The worker decodes feed
 * images for their PDQ hash (lib/pdq.js), and a page chooses those images: a PNG of 16384 ×
 * 16384 flat pixels is under 1 MB on the wire and a gigabyte once decoded, four at a time. So
 * the size is read first, from the header the decoder itself sizes its buffer by.
 *
 * PNG, JPEG, GIF, WebP, BMP and AVIF (HEIF `ispe`), the formats Chromium decodes in a worker;
 * anything else, or a header cut short, has no known size (null).
 */

const ascii = (bytes, at, text) => [...text].every((c, i) => bytes[at + i] === c.charCodeAt(0));
const u16be = (b, at) => (b[at] << 8) | b[at + 1];
const u16le = (b, at) => b[at] | (b[at + 1] << 8);
const u24le = (b, at) => b[at] | (b[at + 1] << 8) | (b[at + 2] << 16);
const u32be = (b, at) => ((b[at] << 24) >>> 0) + ((b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]);
const i32le = (b, at) => b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24);

function pngSize(b) {
  if (b.length < 24 || !ascii(b, 12, 'IHDR')) return null;
  return { width: u32be(b, 16), height: u32be(b, 20) };
}

function gifSize(b) {
  return b.length < 10 ? null : { width: u16le(b, 6), height: u16le(b, 8) };
}

function bmpSize(b) {
  return b.length < 26 ? null : { width: Math.abs(i32le(b, 18)), height: Math.abs(i32le(b, 22)) };
}

function webpSize(b) {
  if (b.length < 30) return null;
  if (ascii(b, 12, 'VP8 ')) return { width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
  if (ascii(b, 12, 'VP8L')) {
    const bits = (b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24)) >>> 0;
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (ascii(b, 12, 'VP8X')) return { width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
  return null;
}

// Start of frame markers: SOF0–SOF15, except DHT (C4), JPG (C8) and DAC (CC).
const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

function jpegSize(b) {
  let at = 2;
  while (at + 9 < b.length) {
    if (b[at] !== 0xff) return null;
    const marker = b[at + 1];
    if (marker === 0xff) {
      at += 1; // fill byte
      continue;
    }
    if (JPEG_SOF.has(marker)) return { width: u16be(b, at + 7), height: u16be(b, at + 5) };
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      at += 2; // markers without a length
      continue;
    }
    at += 2 + u16be(b, at + 2);
  }
  return null;
}

/** The largest `ispe` (image spatial extents) property of an AVIF/HEIF file's first 64 KiB. */
function heifSize(b) {
  let best = null;
  const end = Math.min(b.length, 64 * 1024) - 16;
  for (let at = 4; at <= end; at += 1) {
    if (!ascii(b, at, 'ispe')) continue;
    const width = u32be(b, at + 8);
    const height = u32be(b, at + 12);
    if (!best || width * height > best.width * best.height) best = { width, height };
  }
  return best;
}

/**
 * The width and height in the image's header, or null when the format is not one listed above
 * or the header is incomplete.
 * @param {Uint8Array} bytes
 * @returns {{width: number, height: number} | null}
 */
export function imageSizeOf(bytes) {
  const b = bytes;
  if (!(b instanceof Uint8Array) || b.length < 12) return null;
  if (b[0] === 0x89 && ascii(b, 1, 'PNG\r\n\x1a\n')) return pngSize(b);
  if (b[0] === 0xff && b[1] === 0xd8) return jpegSize(b);
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return gifSize(b);
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return webpSize(b);
  if (ascii(b, 0, 'BM')) return bmpSize(b);
  if (ascii(b, 4, 'ftyp')) return heifSize(b);
  return null;
}

/**
 * The image format its first bytes name, among those the server takes (JPEG, PNG, GIF, WebP,
 * BMP, TIFF, HEIF/AVIF), or null. For bytes the user did not see go out as an image (a local
 * file): anything else is not sent to the server at all.
 * @param {Uint8Array} bytes
 * @returns {string | null}
 */
export function imageFormatOf(bytes) {
  const b = bytes;
  if (!(b instanceof Uint8Array) || b.length < 12) return null;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'JPEG';
  if (b[0] === 0x89 && ascii(b, 1, 'PNG\r\n\x1a\n')) return 'PNG';
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return 'GIF';
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return 'WEBP';
  if (ascii(b, 0, 'BM')) return 'BMP';
  if (ascii(b, 0, 'II*\0') || ascii(b, 0, 'MM\0*')) return 'TIFF';
  if (ascii(b, 4, 'ftyp')) return 'HEIF';
  return null;
}
