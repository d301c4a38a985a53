import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, ImageUnavailableError, describeFailure, parseRetryAfter } from '../lib/problem.js';

const http = (status, problem, retryAfterSeconds = null) => new ApiError('http', 'x', { status, problem, retryAfterSeconds, serverUrl: 'http://127.0.0.1:8000' });

test('server down names the server and says what to check', () => {
  const text = describeFailure(new ApiError('network', 'Failed to fetch', { serverUrl: 'http://127.0.0.1:8000' }));
  assert.equal(text.title, 'FakeScope server unreachable');
  assert.match(text.message, /127\.0\.0\.1:8000/);
  assert.match(text.guidance, /running/);
});

test("a 4xx shows the server's problem+json detail", () => {
  const text = describeFailure(http(415, { title: 'Unsupported Media Type', detail: 'SVG is not an allowed format', status: 415 }));
  assert.equal(text.title, 'Unsupported image format');
  assert.equal(text.message, 'SVG is not an allowed format');
});

test('413 says the image is too large', () => {
  const text = describeFailure(http(413, null));
  assert.equal(text.title, 'This image is too large');
  assert.match(text.guidance, /smaller/);
});

test('429 and 503 tell the user when to retry from Retry-After', () => {
  assert.equal(describeFailure(http(429, { detail: 'Rate limit exceeded' }, 30)).guidance, 'Try again in 30 seconds.');
  const busy = describeFailure(http(503, { detail: 'Queue full' }, 5));
  assert.equal(busy.title, 'The server is busy');
  assert.equal(busy.message, 'Queue full');
  assert.equal(busy.guidance, 'Try again in 5 seconds.');
  assert.equal(busy.retryAfterSeconds, 5);
  assert.equal(describeFailure(http(503, null)).guidance, 'Try again in a little while.');
});

test('an unreadable image names its site and how to allow it', () => {
  const text = describeFailure(new ImageUnavailableError('https://cdn.example.org/a.jpg', ['HTTP 403', 'page refused']));
  assert.equal(text.title, 'This image could not be read');
  assert.match(text.message, /cdn\.example\.org/);
  assert.match(text.message, /HTTP 403/);
  assert.equal(text.imageOrigin, 'https://cdn.example.org');
});

test('auth failures point at the token setting', () => {
  assert.match(describeFailure(http(401, { detail: 'Missing token' })).guidance, /API token/);
});

test('unknown errors are still described, not swallowed', () => {
  const text = describeFailure(new Error('boom'));
  assert.equal(text.message, 'boom');
});

test('Retry-After accepts seconds and HTTP dates', () => {
  assert.equal(parseRetryAfter('12'), 12);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter('soon'), null);
  const now = Date.parse('2026-11-27T03:00:00Z');
  assert.equal(parseRetryAfter('Fri, 27 Nov 2026 03:01:00 GMT', now), 60);
});

test('an image the site no longer has is "not there", with no offer to allow the site', () => {
  const text = describeFailure(new ImageUnavailableError('http://localhost:8000/gone.png', ['HTTP 404', 'fetch: HTTP 404'], { notFound: true, canGrant: false }));
  assert.equal(text.title, 'The image is not there any more');
  assert.match(text.message, /not found/);
  assert.doesNotMatch(`${text.message} ${text.guidance}`, /refused|Allow FakeScope/);
  assert.equal(text.imageOrigin, undefined);
});

test('an image over the size limit is "too large", not "refused"', () => {
  const text = describeFailure(new ImageUnavailableError('https://cdn.example.org/huge.png', ['larger than 25 MiB'], { tooLarge: true }));
  assert.equal(text.title, 'This image is too large');
  assert.match(text.message, /25 MiB/);
  assert.match(text.guidance, /smaller/);
  assert.equal(text.imageOrigin, undefined);
});

test('allowing the image site is offered only when the extension lacks access to it', () => {
  const refused = (canGrant) => describeFailure(new ImageUnavailableError('http://localhost:8000/hotlink.png', ['HTTP 403'], { canGrant }));
  assert.equal(refused(true).imageOrigin, 'http://localhost:8000');
  assert.equal(refused(false).imageOrigin, undefined);
  assert.doesNotMatch(refused(false).guidance, /Allow FakeScope/);
  const blob = describeFailure(new ImageUnavailableError('blob:http://localhost:8000/1d2c', ['revoked']));
  assert.equal(blob.imageOrigin, undefined, 'a blob: URL has no site to allow');
});

test('a local image the extension would not fetch for its page says so, not "refused"', () => {
  const text = describeFailure(new ImageUnavailableError('http://127.0.0.1:8000/cam.jpg', ['local image, internet page'], { inward: true, canGrant: false }));
  assert.equal(text.title, 'FakeScope does not read this image for this page');
  assert.match(text.message, /127\.0\.0\.1.*this computer or your local network/);
  assert.match(text.guidance, /its own tab/);
  assert.doesNotMatch(`${text.message} ${text.guidance}`, /refused|Allow FakeScope/);
  assert.equal(text.imageOrigin, undefined, 'allowing the site would not help');
});
