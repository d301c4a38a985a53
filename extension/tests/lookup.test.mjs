import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  LOOKUP_MAX_KEYS,
  closestNearMatch,
  lookupKey,
  lookupKeyWeight,
  parseLookupKey,
  runLookupBatch,
} from '../lib/lookup.js';
import { describeHint } from '../lib/verdict.js';

const sha = (c) => c.repeat(64);
const pdq = (c) => c.repeat(64);

/** A fake API client that answers from tables and records its calls. */
function fakeClient({ results = {}, near = [] } = {}) {
  const calls = [];
  return {
    calls,
    async lookup(sha256s, { pdqs = [] } = {}) {
      calls.push({ sha256s, pdqs });
      const found = Object.fromEntries(sha256s.filter((s) => results[s]).map((s) => [s, results[s]]));
      return { results: found, near: near.filter((m) => pdqs.includes(m.pdq)) };
    },
  };
}

test('a PDQ hash joins the key only when its quality is worth matching', () => {
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 80 }), `${sha('a')}|${pdq('b')}`);
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 49 }), sha('a'));
  assert.equal(lookupKey(sha('a'), { hash: null, quality: 0 }), sha('a'));
  assert.equal(lookupKey(sha('a'), undefined), sha('a'));
  assert.deepEqual(parseLookupKey(`${sha('a')}|${pdq('b')}`), { sha256: sha('a'), pdq: pdq('b') });
  assert.equal(lookupKeyWeight(`${sha('a')}|${pdq('b')}`), 2, 'sha256 and pdq both count');
  assert.equal(lookupKeyWeight(sha('a')), 1);
  assert.equal(LOOKUP_MAX_KEYS, 500);
});

test('exact hits are results; sha256s and pdqs go out together in one request', async () => {
  const client = fakeClient({ results: { [sha('a')]: { sha256: sha('a'), label: 'fake' } } });
  const out = await runLookupBatch(client, [`${sha('a')}|${pdq('1')}`, sha('c')]);
  assert.deepEqual(client.calls, [{ sha256s: [sha('a'), sha('c')], pdqs: [pdq('1')] }]);
  assert.equal(out.get(`${sha('a')}|${pdq('1')}`).analysis.label, 'fake');
  assert.deepEqual(out.get(sha('c')), { analysis: null, hint: null });
});

test('a near match becomes a hint with the similar image’s analysis, looked up by its sha256', async () => {
  const original = { sha256: sha('e'), label: 'fake', p_fake: 0.9 };
  const client = fakeClient({
    results: { [sha('e')]: original },
    near: [
      { pdq: pdq('1'), sha256: sha('f'), distance: 12 },
      { pdq: pdq('1'), sha256: sha('e'), distance: 4 },
    ],
  });
  const key = `${sha('a')}|${pdq('1')}`;
  const out = await runLookupBatch(client, [key]);
  assert.equal(out.get(key).analysis, null, 'never the image’s own verdict');
  assert.deepEqual(out.get(key).hint, { sha256: sha('e'), distance: 4, analysis: original });
  assert.equal(client.calls.length, 2);
  assert.deepEqual(client.calls[1], { sha256s: [sha('e')], pdqs: [] });
});

test('the browser cache spares the second request; an exact hit wins over a near match', async () => {
  const original = { sha256: sha('e'), label: 'real' };
  const client = fakeClient({
    results: { [sha('b')]: { sha256: sha('b'), label: 'uncertain' } },
    near: [{ pdq: pdq('1'), sha256: sha('e'), distance: 3 }, { pdq: pdq('2'), sha256: sha('e'), distance: 9 }],
  });
  const hinted = `${sha('a')}|${pdq('1')}`;
  const exact = `${sha('b')}|${pdq('2')}`;
  const out = await runLookupBatch(client, [hinted, exact], { cached: async (s) => (s === sha('e') ? original : undefined) });
  assert.equal(client.calls.length, 1);
  assert.equal(out.get(hinted).hint.analysis, original);
  assert.equal(out.get(exact).analysis.label, 'uncertain');
  assert.equal(out.get(exact).hint, null);
});

test('a near match whose analysis the server does not serve gives no hint', async () => {
  const client = fakeClient({ near: [{ pdq: pdq('1'), sha256: sha('e'), distance: 2 }] });
  const key = `${sha('a')}|${pdq('1')}`;
  const out = await runLookupBatch(client, [key]);
  assert.deepEqual(out.get(key), { analysis: null, hint: null });
});

test('closestNearMatch ignores other queries, the image itself and malformed entries', () => {
  const near = [
    { pdq: pdq('2'), sha256: sha('c'), distance: 0 },
    { pdq: pdq('1'), sha256: sha('a'), distance: 0 },
    { pdq: pdq('1'), sha256: 'nope', distance: 1 },
    { pdq: pdq('1'), sha256: sha('d'), distance: 'x' },
    { pdq: pdq('1'), sha256: sha('e'), distance: 20 },
  ];
  assert.deepEqual(closestNearMatch(near, pdq('1'), sha('a')), { sha256: sha('e'), distance: 20 });
  assert.equal(closestNearMatch(undefined, pdq('1'), sha('a')), null);
});

test('a hint is worded as a hint: not checked, the similar verdict, the distance', () => {
  const hint = describeHint({ sha256: sha('e'), label: 'fake', p_fake: 0.93 }, 7);
  assert.equal(hint.kind, 'hint');
  assert.equal(hint.label, 'fake');
  assert.equal(hint.distance, 7);
  assert.match(hint.short, /^Not checked: similar to an image judged likely AI-generated \(7 of 256 bits differ\)$/);
  assert.match(hint.text, /has not checked this image itself/);
  assert.match(hint.text, /Likely AI-generated \(93%\)/);
  assert.match(hint.caution, /not a verdict on this image/);
  assert.equal(describeHint({ label: 'weird' }, -1).label, 'uncertain');
});
