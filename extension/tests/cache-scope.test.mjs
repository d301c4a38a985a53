import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  READ_WAYS, ScopedCache, TtlCache, checkScopes, feedMayShow, feedScope, memoryArea, readScope,
} from '../lib/cache.js';

const IMAGE = 'https://mail.example/attachments/42.png';
const MAIL = 'https://mail.example/inbox';
const HOSTILE = 'https://hostile.example/feed';

function setup() {
  let now = 0;
  const area = memoryArea();
  const cache = new ScopedCache(new TtlCache(area, { prefix: 'url:', ttlMs: 1000, now: () => now }));
  return { area, cache, advance: (ms) => { now += ms; } };
}

test('a scope is how the bytes were read, for which document, in which top page', () => {
  assert.equal(readScope('worker', 'https://a.example/x?y', 'https://top.example/'), 'worker https://a.example https://top.example');
  assert.equal(readScope('worker', 'https://a.example/one', 'https://a.example/'), readScope('worker', 'https://a.example/two', 'https://a.example/b'));
  const scopes = new Set([
    readScope('worker', MAIL, MAIL),
    readScope('worker-referer', MAIL, MAIL),
    readScope('page', MAIL, MAIL),
    readScope('worker', MAIL, HOSTILE),
    readScope('worker', HOSTILE, HOSTILE),
    readScope('worker', 'http://mail.example/inbox', MAIL),
    readScope('worker', 'https://mail.example:8443/inbox', MAIL),
  ]);
  assert.equal(scopes.size, 7, 'each way of reading, document and top page is a scope of its own');
});

test('nothing read for a page that is not on the web, or in an unknown way, has a scope', () => {
  for (const [via, documentUrl, topUrl] of [
    ['worker', 'file:///home/me/page.html', 'file:///home/me/page.html'],
    ['worker', 'about:srcdoc', MAIL],
    ['worker', MAIL, ''],
    ['worker', 'not a url', MAIL],
    ['worker', MAIL, undefined],
    ['cache', MAIL, MAIL],
    [undefined, MAIL, MAIL],
  ]) {
    assert.equal(readScope(via, documentUrl, topUrl), null, `${via} ${documentUrl} ${topUrl}`);
  }
});

test('a feed lookup reads as the worker does for its page; a check may use each way it would try', () => {
  assert.equal(feedScope(HOSTILE, HOSTILE), readScope('worker', HOSTILE, HOSTILE));
  assert.deepEqual(checkScopes(MAIL, HOSTILE), READ_WAYS.map((via) => readScope(via, MAIL, HOSTILE)));
  assert.deepEqual(READ_WAYS, ['worker', 'worker-referer', 'page'], 'in the order readImage tries them');
  assert.deepEqual(checkScopes('about:blank', MAIL), []);
});

test('a badge shows a verdict only on bytes read as that page’s feed lookup would read them', () => {
  assert.equal(feedMayShow(readScope('worker', HOSTILE, HOSTILE), HOSTILE, HOSTILE), true);
  assert.equal(feedMayShow(readScope('worker', 'https://hostile.example/other', HOSTILE), HOSTILE, HOSTILE), true, 'same site, another page');
  assert.equal(feedMayShow(readScope('worker-referer', HOSTILE, HOSTILE), HOSTILE, HOSTILE), false, 'read with the cookies');
  assert.equal(feedMayShow(readScope('page', HOSTILE, HOSTILE), HOSTILE, HOSTILE), false, 'read from the page');
  assert.equal(feedMayShow(readScope('worker', MAIL, HOSTILE), HOSTILE, HOSTILE), false, 'read for a frame of another site');
  assert.equal(feedMayShow(readScope('worker', MAIL, MAIL), HOSTILE, HOSTILE), false, 'read for another site');
  assert.equal(feedMayShow(null, HOSTILE, HOSTILE), false);
  assert.equal(feedMayShow(undefined, 'file:///x', 'file:///x'), false);
});

test('a scoped entry answers only its own scope', async () => {
  const { cache } = setup();
  const mailFrame = readScope('worker-referer', MAIL, HOSTILE);
  assert.equal(await cache.trySet(mailFrame, IMAGE, 'sha-private'), true);

  assert.equal(await cache.get(mailFrame, IMAGE), 'sha-private');
  for (const other of [
    feedScope(HOSTILE, HOSTILE),
    feedScope(MAIL, MAIL),
    readScope('worker', MAIL, HOSTILE),
    readScope('worker-referer', MAIL, MAIL),
  ]) {
    assert.equal(await cache.get(other, IMAGE), undefined, other);
  }
});

test('one address may hold what each scope read, side by side', async () => {
  const { cache } = setup();
  await cache.trySet(feedScope(HOSTILE, HOSTILE), IMAGE, 'sha-refusal-page');
  await cache.trySet(readScope('worker-referer', MAIL, MAIL), IMAGE, 'sha-private');
  assert.equal(await cache.get(feedScope(HOSTILE, HOSTILE), IMAGE), 'sha-refusal-page');
  assert.equal(await cache.get(readScope('worker-referer', MAIL, MAIL), IMAGE), 'sha-private');
});

test('a null scope stores and answers nothing', async () => {
  const { area, cache } = setup();
  assert.equal(await cache.trySet(null, IMAGE, 'sha'), false);
  assert.equal(area.map.size, 0);
  assert.equal(await cache.get(null, IMAGE), undefined);
});

test('a check of a cookie-only image in another site’s frame answers no feed lookup', async () => {
  const { cache } = setup();
  // The check read it with the mail site's cookies, for the mail frame in the hostile page.
  const check = readScope('worker-referer', MAIL, HOSTILE);
  await cache.trySet(check, IMAGE, 'sha-private');

  // The hostile page's feed lookup, and the mail site's own feed lookup, both read it afresh.
  assert.equal(await cache.get(feedScope(HOSTILE, HOSTILE), IMAGE), undefined);
  assert.equal(await cache.get(feedScope(MAIL, MAIL), IMAGE), undefined);
  // The same check in the same frame again is answered.
  const again = [];
  for (const scope of checkScopes(MAIL, HOSTILE)) again.push(await cache.get(scope, IMAGE));
  assert.deepEqual(again, [undefined, 'sha-private', undefined]);
});

test('a site’s feed reads answer its next lookups and checks (scrolling, a re-visit)', async () => {
  const { cache, advance } = setup();
  const site = 'https://news.example/today';
  await cache.trySet(feedScope(site, site), IMAGE, 'sha-public');

  const revisit = 'https://news.example/tomorrow#top';
  assert.equal(await cache.get(feedScope(revisit, revisit), IMAGE), 'sha-public');
  assert.equal(await cache.get(checkScopes(revisit, revisit)[0], IMAGE), 'sha-public', 'a right-click check there');
  advance(1000);
  assert.equal(await cache.get(feedScope(revisit, revisit), IMAGE), undefined, 'for 10 minutes only');
});

test('clearing a scoped cache forgets what was read under every scope', async () => {
  const { area, cache } = setup();
  await cache.trySet(readScope('worker', MAIL, MAIL), 'https://img.example/a.png', 'sha-a');
  await cache.trySet(readScope('page', HOSTILE, HOSTILE), 'https://img.example/a.png', 'sha-b');
  assert.equal(await cache.clear(), 2);
  assert.equal(await cache.get(readScope('worker', MAIL, MAIL), 'https://img.example/a.png'), undefined);
  assert.equal(area.map.size, 0);
});

test('a read that started before a clear stores nothing after it; one started after does', async () => {
  const { area, cache } = setup();
  const scope = readScope('worker', MAIL, MAIL);
  const before = cache.mark();
  await cache.clear();
  assert.equal(await cache.trySet(scope, 'https://img.example/a.png', 'sha-a', { startedAt: before }), false);
  assert.equal(area.map.size, 0, 'nothing stored by the read under way');
  const after = cache.mark();
  assert.equal(await cache.trySet(scope, 'https://img.example/a.png', 'sha-b', { startedAt: after }), true);
  assert.equal(await cache.get(scope, 'https://img.example/a.png'), 'sha-b');
  assert.equal(await cache.trySet(scope, 'https://img.example/b.png', 'sha-c'), true, 'no mark: stored');
});
