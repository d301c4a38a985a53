/**
 * Reading a response body with a ceiling. `response.arrayBuffer()` keeps everything the site
 * sends until it stops, and an address a page names may answer without end (no or a false
 * Content-Length): the worker would hold it all in memory before its size check. This reads
 * piece by piece and stops, cancelling the download, as soon as the ceiling is passed.
 */

/**
 * The bytes of `stream` (a ReadableStream of Uint8Array, or null for an empty body), or null
 * as soon as they pass `maxBytes` (the download is cancelled then).
 * @param {ReadableStream<Uint8Array> | null} stream
 * @param {number} maxBytes
 * @returns {Promise<Uint8Array | null>}
 */
export async function readAtMost(stream, maxBytes) {
  if (!stream) return new Uint8Array(0);
  const reader = stream.getReader();
  const pieces = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      reader.cancel().catch(() => {});
      return null;
    }
    pieces.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const piece of pieces) {
    bytes.set(piece, offset);
    offset += piece.byteLength;
  }
  return bytes;
}
