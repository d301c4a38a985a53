import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readAtMost } from '../lib/read-at-most.js';

/** A body of `pieces` pieces of `size` bytes each (byte value: the piece's number); records pulls. */
function body(pieces, size) {
  const seen = { pulled: 0, cancelled: false };
  const stream = new ReadableStream({
    pull(controller) {
      if (seen.pulled === pieces) {
        controller.close();
        return;
      }
      seen.pulled += 1;
      controller.enqueue(new Uint8Array(size).fill(seen.pulled));
    },
    cancel() {
      seen.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, seen };
}

test('a body within the ceiling is read whole, in order', async () => {
  const { stream, seen } = body(3, 4);
  const bytes = await readAtMost(stream, 12);
  assert.deepEqual([...bytes], [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
  assert.equal(seen.cancelled, false);
});

test('a body past the ceiling stops there: the rest is never pulled, the download cancelled', async () => {
  const { stream, seen } = body(1_000_000, 1024);
  assert.equal(await readAtMost(stream, 10 * 1024), null);
  assert.equal(seen.pulled, 11, 'one piece past the ceiling, not the million');
  assert.equal(seen.cancelled, true);
});

test('no body is no bytes', async () => {
  assert.deepEqual(await readAtMost(null, 10), new Uint8Array(0));
});
