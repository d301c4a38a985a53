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
