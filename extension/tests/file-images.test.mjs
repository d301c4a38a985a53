import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImageUnavailableError, describeFailure } from '../lib/problem.js';

test('a file: image that cannot be read names the file and points to "Check an image file…"', () => {
  const error = new ImageUnavailableError('file:///home/me/Pictures/holiday%20photo.png', ['the page could not read it (canvas: tainted)'], { canGrant: false });
  const text = describeFailure(error);
  assert.equal(text.title, 'This image file could not be read');
  assert.match(text.message, /the file holiday photo\.png on this computer/);
  assert.doesNotMatch(text.message, /Pictures|site/);
  assert.match(text.guidance, /Check an image file…/);
  assert.match(text.guidance, /Allow access to file URLs/);
  assert.equal(text.imageOrigin, undefined);
});

test('an http image that cannot be read still names its site', () => {
  const text = describeFailure(new ImageUnavailableError('https://img.example/a.png', ['HTTP 403'], { canGrant: true }));
  assert.equal(text.title, 'This image could not be read');
  assert.match(text.message, /The site img\.example refused/);
});

test('a local file is sent only when its first bytes name an image format the server takes', async () => {
  const { imageFormatOf } = await import('../lib/image-size.js');
  const bytes = (text, pad = 16) => new Uint8Array([...text].map((c) => c.charCodeAt(0)).concat(Array(pad).fill(0)));
  assert.equal(imageFormatOf(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, ...Array(12).fill(0)])), 'JPEG');
  assert.equal(imageFormatOf(new Uint8Array([0x89, ...bytes('PNG\r\n\x1a\n')])), 'PNG');
  assert.equal(imageFormatOf(bytes('GIF89a')), 'GIF');
  assert.equal(imageFormatOf(bytes('RIFF\0\0\0\0WEBP')), 'WEBP');
  assert.equal(imageFormatOf(bytes('II*\0')), 'TIFF');
  assert.equal(imageFormatOf(bytes('\0\0\0\x1cftypavif')), 'HEIF');
  for (const other of ['%PDF-1.7', '-----BEGIN OPENSSH', 'PK\x03\x04', '<html>', '']) {
    assert.equal(imageFormatOf(bytes(other)), null, other);
  }
  assert.equal(imageFormatOf(new Uint8Array([0xff, 0xd8])), null); // too short to say
});
