import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withRecentCheck } from '../lib/recent.js';

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
