import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  validateServerUrl, validateToken, normalizeSettings, siteOf, originPattern, withFeedSite,
  isFeedEnabled, loadSettings, saveSettings, DEFAULT_SERVER_URL,
} from '../lib/settings.js';
import { memoryArea } from '../lib/cache.js';

test('a local http server address is accepted and normalised', () => {
  assert.deepEqual(validateServerUrl(' http://127.0.0.1:8000/ '), { ok: true, value: 'http://127.0.0.1:8000' });
  assert.deepEqual(validateServerUrl('http://localhost:9/api//'), { ok: true, value: 'http://localhost:9/api' });
});

test('a remote server must use https', () => {
  assert.equal(validateServerUrl('http://fakescope.example.org').ok, false);
  assert.deepEqual(validateServerUrl('https://fakescope.example.org'), { ok: true, value: 'https://fakescope.example.org' });
});

test('garbage, other schemes, credentials and queries are refused with a reason', () => {
  for (const bad of ['', 'not a url', 'ftp://127.0.0.1', 'https://u:p@x.org', 'https://x.org/?a=1', 'javascript:alert(1)']) {
    const result = validateServerUrl(bad);
    assert.equal(result.ok, false, bad);
    assert.ok(result.error.length > 10, bad);
  }
});

test('tokens are trimmed, bounded and printable', () => {
  assert.deepEqual(validateToken('  fs_abc123 '), { ok: true, value: 'fs_abc123' });
  assert.deepEqual(validateToken(''), { ok: true, value: '' });
  assert.equal(validateToken('a b').ok, false);
  assert.equal(validateToken('x'.repeat(513)).ok, false);
});

test('feed mode is keyed by the page origin and off by default', () => {
  const settings = normalizeSettings({});
  assert.deepEqual(settings.feedSites, []);
  assert.equal(isFeedEnabled(settings, 'https://news.example/a'), false);
  const on = withFeedSite(settings, 'https://news.example/a?b', true);
  assert.deepEqual(on.feedSites, ['https://news.example']);
  assert.equal(isFeedEnabled(on, 'https://news.example/other'), true);
  assert.equal(isFeedEnabled(on, 'https://other.example/'), false);
  assert.deepEqual(withFeedSite(on, 'https://news.example/', false).feedSites, []);
  assert.throws(() => withFeedSite(settings, 'chrome://settings', true), TypeError);
});

test('stored settings are repaired, never trusted', () => {
  const fixed = normalizeSettings({ serverUrl: 'gopher://x', apiToken: 'has space', feedSites: ['https://a.example/x', 'nope', 'https://a.example'], extra: 1 });
  assert.deepEqual(fixed, { serverUrl: DEFAULT_SERVER_URL, apiToken: '', feedSites: ['https://a.example'] });
});

test('site and permission pattern helpers', () => {
  assert.equal(siteOf('http://localhost:8123/page.html'), 'http://localhost:8123');
  assert.equal(siteOf('file:///etc/passwd'), null);
  assert.equal(originPattern('http://localhost:8123'), 'http://localhost/*');
  assert.equal(originPattern('https://cdn.example.org/a.jpg'), 'https://cdn.example.org/*');
});

test('settings round-trip through a storage area', async () => {
  const area = memoryArea();
  assert.equal((await loadSettings(area)).serverUrl, DEFAULT_SERVER_URL);
  await saveSettings(area, { serverUrl: 'http://127.0.0.1:9999/', apiToken: 't', feedSites: ['http://localhost:1'] });
  assert.deepEqual(await loadSettings(area), { serverUrl: 'http://127.0.0.1:9999', apiToken: 't', feedSites: ['http://localhost:1'] });
});
