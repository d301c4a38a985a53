import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { sha256Hex, isSha256Hex } from '../lib/hash.js';
import { bytesToBase64, base64ToBytes } from '../lib/base64.js';

test('sha256Hex matches the standard digest of the bytes', async () => {
  const bytes = new Uint8Array(100_000).map((_, i) => (i * 7) % 256);
  assert.equal(await sha256Hex(bytes), createHash('sha256').update(bytes).digest('hex'));
  assert.equal(await sha256Hex(new Uint8Array()), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('only 64 lower-case hex characters count as a sha256', () => {
  assert.ok(isSha256Hex('0'.repeat(64)));
  assert.ok(!isSha256Hex('A'.repeat(64)));
  assert.ok(!isSha256Hex('0'.repeat(63)));
  assert.ok(!isSha256Hex(null));
});

test('bytes survive the base64 round trip used between content script and worker', () => {
  const bytes = new Uint8Array(70_000).map((_, i) => (i * 31) % 256);
  const text = bytesToBase64(bytes);
  assert.equal(text, Buffer.from(bytes).toString('base64'));
  assert.deepEqual(base64ToBytes(text), bytes);
});
