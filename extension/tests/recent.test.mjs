import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RECENT_KEY, recentChecks, withRecentCheck } from '../lib/recent.js';

const entry = (sha, at) => ({ sha256: sha, imageUrl: `https://x/${sha}`, pageUrl: null, verdict: 'Uncertain', label: 'uncertain', at });

test('the newest check comes first and the list is bounded', () => {
  let list = [];
  for (let i = 0; i < 12; i += 1) list = withRecentCheck(list, entry(String(i), i), 10);
  assert.equal(list.length, 10);
  assert.equal(list[0].sha256, '11');
  assert.equal(list.at(-1).sha256, '2');
});

test('checking the same image again moves it to the top instead of duplicating it', () => {
  const list = withRecentCheck([entry('a', 1), entry('b', 2)], entry('b', 3));
  assert.deepEqual(list.map((e) => [e.sha256, e.at]), [['b', 3], ['a', 1]]);
});

test('a corrupt stored list is replaced', () => {
  assert.equal(withRecentCheck('junk', entry('a', 1)).length, 1);
});

/** A storage area whose reads and writes take turns with other work, as chrome.storage does. */
function slowArea() {
  const data = {};
  const later = () => new Promise((resolve) => setTimeout(resolve, 5));
  return {
    data,
    async get(key) { await later(); return { [key]: data[key] }; },
    async set(items) { await later(); Object.assign(data, items); },
  };
}

test('checks that finish at the same moment are all remembered', async () => {
  const area = slowArea();
  const remember = recentChecks(area);
  await Promise.all(['a', 'b', 'c'].map((sha, i) => remember(entry(sha, i))));
  assert.deepEqual(area.data[RECENT_KEY].map((e) => e.sha256), ['c', 'b', 'a']);
});

test('two rememberers of one area (a right-click check, a file check) lose no entry', async () => {
  const area = slowArea();
  const fromMenu = recentChecks(area);
  const fromFile = recentChecks(area);
  await Promise.all([fromMenu(entry('a', 0)), fromFile(entry('b', 1)), fromMenu(entry('c', 2))]);
  assert.deepEqual(area.data[RECENT_KEY].map((e) => e.sha256), ['c', 'b', 'a']);
});

test('a failed update does not stop the later ones', async () => {
  const area = slowArea();
  const write = area.set;
  let failures = 1;
  area.set = async (items) => {
    if (failures-- > 0) throw new Error('quota exceeded');
    return write(items);
  };
  const remember = recentChecks(area);
  const first = remember(entry('x', 0));
  const second = remember(entry('y', 1));
  await assert.rejects(first, /quota/);
  await second;
  assert.deepEqual(area.data[RECENT_KEY].map((e) => e.sha256), ['y']);
});
