import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  LOOKUP_MAX_KEYS,
  closestHintMatch,
  closestNearMatch,
  lookupKey,
  lookupKeyWeight,
  parseLookupKey,
  runLookupBatch,
} from '../lib/lookup.js';
import { describeHint } from '../lib/verdict.js';

const sha = (c) => c.repeat(64);
const pdq = (c) => c.repeat(64);
const NO_ROTATIONS = { clockwise: null, halfTurn: null, counterclockwise: null };
const NO_FLIPS = { upsideDown: null, transposed: null, transversed: null };

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
  assert.deepEqual(parseLookupKey(`${sha('a')}|${pdq('b')}`), { sha256: sha('a'), pdq: pdq('b'), mirrored: null, rotations: NO_ROTATIONS, flips: NO_FLIPS });
  assert.equal(lookupKeyWeight(`${sha('a')}|${pdq('b')}`), 2, 'sha256 and pdq both count');
  assert.equal(lookupKeyWeight(sha('a')), 1);
  assert.equal(LOOKUP_MAX_KEYS, 500);
});

test('the mirror hash joins the key as a third part, and counts as a third request key', () => {
  const key = lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('C') });
  assert.equal(key, `${sha('a')}|${pdq('b')}|${pdq('c')}`, 'lower-cased like the hash');
  assert.deepEqual(parseLookupKey(key), { sha256: sha('a'), pdq: pdq('b'), mirrored: pdq('c'), rotations: NO_ROTATIONS, flips: NO_FLIPS });
  assert.equal(lookupKeyWeight(key), 3, 'sha256, pdq and the mirror hash all count');
  // A picture symmetric enough that both hashes agree sends one.
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('b') }), `${sha('a')}|${pdq('b')}`);
  // Not worth matching: neither hash goes.
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 10, mirrored: pdq('c') }), sha('a'));
  // Fingerprints remembered before mirror hashes existed, or a malformed one: the old key.
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 80 }), `${sha('a')}|${pdq('b')}`);
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: 'nope' }), `${sha('a')}|${pdq('b')}`);
  assert.deepEqual(parseLookupKey(sha('a')), { sha256: sha('a'), pdq: null, mirrored: null, rotations: NO_ROTATIONS, flips: NO_FLIPS });
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
  assert.deepEqual(out.get(key).hint, { sha256: sha('e'), distance: 4, mirrored: false, rotated: null, flipped: null, analysis: original });
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

test('both PDQ hashes of a key go out; a near match on the mirror hash is a mirrored hint', async () => {
  const original = { sha256: sha('e'), label: 'fake', p_fake: 0.8 };
  const client = fakeClient({
    results: { [sha('e')]: original },
    near: [{ pdq: pdq('2'), sha256: sha('e'), distance: 14 }],
  });
  const key = `${sha('a')}|${pdq('1')}|${pdq('2')}`;
  const out = await runLookupBatch(client, [key, `${sha('b')}|${pdq('3')}`]);
  assert.deepEqual(client.calls[0], { sha256s: [sha('a'), sha('b')], pdqs: [pdq('1'), pdq('2'), pdq('3')] });
  assert.equal(out.get(key).analysis, null, 'never the image’s own verdict');
  assert.deepEqual(out.get(key).hint, { sha256: sha('e'), distance: 14, mirrored: true, rotated: null, flipped: null, analysis: original });
});

test('between its own hash and its mirror hash, the closest near match wins', async () => {
  const e = { sha256: sha('e'), label: 'fake' };
  const f = { sha256: sha('f'), label: 'real' };
  const near = [
    { pdq: pdq('1'), sha256: sha('e'), distance: 20 },
    { pdq: pdq('2'), sha256: sha('f'), distance: 6 },
    { pdq: pdq('3'), sha256: sha('e'), distance: 5 },
    { pdq: pdq('4'), sha256: sha('f'), distance: 9 },
    { pdq: pdq('5'), sha256: sha('e'), distance: 7 },
    { pdq: pdq('6'), sha256: sha('f'), distance: 7 },
  ];
  const client = fakeClient({ results: { [sha('e')]: e, [sha('f')]: f }, near });
  const mirroredWins = `${sha('a')}|${pdq('1')}|${pdq('2')}`;
  const plainWins = `${sha('b')}|${pdq('3')}|${pdq('4')}`;
  const tie = `${sha('c')}|${pdq('5')}|${pdq('6')}`;
  const out = await runLookupBatch(client, [mirroredWins, plainWins, tie]);
  assert.deepEqual(out.get(mirroredWins).hint, { sha256: sha('f'), distance: 6, mirrored: true, rotated: null, flipped: null, analysis: f });
  assert.deepEqual(out.get(plainWins).hint, { sha256: sha('e'), distance: 5, mirrored: false, rotated: null, flipped: null, analysis: e });
  assert.deepEqual(out.get(tie).hint, { sha256: sha('e'), distance: 7, mirrored: false, rotated: null, flipped: null, analysis: e }, 'a tie: its own hash');
});

test('closestHintMatch: either hash alone, neither, and the image itself never', () => {
  const near = [
    { pdq: pdq('1'), sha256: sha('a'), distance: 0 },
    { pdq: pdq('2'), sha256: sha('a'), distance: 0 },
    { pdq: pdq('2'), sha256: sha('d'), distance: 11 },
  ];
  assert.deepEqual(closestHintMatch(near, { pdq: pdq('1'), mirrored: pdq('2') }, sha('a')), { sha256: sha('d'), distance: 11, mirrored: true, rotated: null, flipped: null });
  assert.equal(closestHintMatch(near, { pdq: pdq('1'), mirrored: null }, sha('a')), null);
  assert.equal(closestHintMatch(near, { pdq: pdq('9') }, sha('a')), null);
  assert.equal(closestHintMatch([], { pdq: pdq('1'), mirrored: pdq('2') }, sha('a')), null);
});

test('a copy of a symmetric picture, matched by its own hash too, gets a plain hint', () => {
  // A mandala's half-turn hash is as close to the checked one as its own hash, or closer.
  const near = [
    { pdq: pdq('1'), sha256: sha('e'), distance: 22 },
    { pdq: pdq('3'), sha256: sha('e'), distance: 19 },
    { pdq: pdq('2'), sha256: sha('e'), distance: 25 },
  ];
  const hashes = { pdq: pdq('1'), mirrored: pdq('2'), rotations: { halfTurn: pdq('3') } };
  assert.deepEqual(closestHintMatch(near, hashes, sha('a')), { sha256: sha('e'), distance: 22, mirrored: false, rotated: null, flipped: null });
  // Its own hash matches another image only: the turned match stands.
  const other = [{ pdq: pdq('1'), sha256: sha('f'), distance: 30 }, { pdq: pdq('3'), sha256: sha('e'), distance: 19 }];
  assert.deepEqual(closestHintMatch(other, hashes, sha('a')), { sha256: sha('e'), distance: 19, mirrored: false, rotated: 'halfTurn', flipped: null });
});

test('an old two-part key still looks up and hints by its own hash', async () => {
  const original = { sha256: sha('e'), label: 'real' };
  const client = fakeClient({ results: { [sha('e')]: original }, near: [{ pdq: pdq('1'), sha256: sha('e'), distance: 3 }] });
  const key = `${sha('a')}|${pdq('1')}`;
  const out = await runLookupBatch(client, [key]);
  assert.deepEqual(client.calls[0].pdqs, [pdq('1')]);
  assert.deepEqual(out.get(key).hint, { sha256: sha('e'), distance: 3, mirrored: false, rotated: null, flipped: null, analysis: original });
});

test('a mirrored hint says so, still as a hint and not a verdict', () => {
  const hint = describeHint({ sha256: sha('e'), label: 'fake', p_fake: 0.93 }, 12, { mirrored: true });
  assert.equal(hint.kind, 'hint');
  assert.equal(hint.mirrored, true);
  assert.equal(hint.distance, 12);
  assert.match(hint.short, /^Not checked: looks like a mirrored copy of an image judged likely AI-generated \(12 of 256 bits differ\)$/);
  assert.match(hint.title, /^Not checked · mirrored copy of an image judged likely AI-generated$/);
  assert.match(hint.text, /has not checked this image itself/);
  assert.match(hint.text, /mirrored \(flipped left to right\) copy/);
  assert.match(hint.text, /Likely AI-generated \(93%\)/);
  assert.match(hint.caution, /not a verdict on this image/);
  assert.match(hint.distanceText, /12 of 256 bits .*flipped left to right/);
  const plain = describeHint({ sha256: sha('e'), label: 'fake' }, 12);
  assert.equal(plain.mirrored, false);
  assert.doesNotMatch(`${plain.short} ${plain.title} ${plain.text} ${plain.caution}`, /mirror/);
  assert.equal(plain.distanceText, 'Fingerprint distance: 12 of 256 bits (PDQ perceptual hash).');
  assert.equal(describeHint({ label: 'real' }, 3, { mirrored: 'yes' }).mirrored, false, 'only true means mirrored');
});

test('through the feed queue, three-part keys never put more than LOOKUP_MAX_KEYS in a request', async () => {
  const { BatchQueue } = await import('../lib/queue.js');
  const hex = (n, width = 64) => n.toString(16).padStart(width, '0');
  const client = fakeClient();
  const queue = new BatchQueue((keys) => runLookupBatch(client, keys), {
    maxBatch: 400, maxPending: 400, delayMs: 1, weightOf: lookupKeyWeight, maxWeight: LOOKUP_MAX_KEYS,
  });
  const keys = Array.from({ length: 300 }, (_, i) =>
    lookupKey(hex(i), { hash: hex(1000 + i), quality: 90, mirrored: hex(2000 + i) }));
  await Promise.all(keys.map((key) => queue.add(key)));
  assert.ok(client.calls.length >= 2, 'split into several requests');
  for (const { sha256s, pdqs } of client.calls) {
    assert.ok(sha256s.length + pdqs.length <= LOOKUP_MAX_KEYS, `${sha256s.length} + ${pdqs.length} keys`);
  }
  assert.equal(client.calls.reduce((sum, c) => sum + c.pdqs.length, 0), 600, 'every hash sent once');
});

const ROTATED = { clockwise: pdq('d'), halfTurn: pdq('E'), counterclockwise: pdq('f') };

test('the rotation hashes join the key after the mirror hash, and each counts as a request key', () => {
  const key = lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('c'), rotations: ROTATED });
  assert.equal(key, `${sha('a')}|${pdq('b')}|${pdq('c')}|${pdq('d')}|${pdq('e')}|${pdq('f')}`, 'lower-cased');
  assert.deepEqual(parseLookupKey(key), {
    sha256: sha('a'),
    pdq: pdq('b'),
    mirrored: pdq('c'),
    rotations: { clockwise: pdq('d'), halfTurn: pdq('e'), counterclockwise: pdq('f') },
    flips: NO_FLIPS,
  });
  assert.equal(lookupKeyWeight(key), 6, 'sha256 and five PDQ hashes');
  // No mirror hash (or one equal to the hash): its part stays empty, the rotations keep their places.
  const noMirror = lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('b'), rotations: ROTATED });
  assert.equal(noMirror, `${sha('a')}|${pdq('b')}||${pdq('d')}|${pdq('e')}|${pdq('f')}`);
  assert.equal(parseLookupKey(noMirror).mirrored, null);
  assert.equal(parseLookupKey(noMirror).rotations.halfTurn, pdq('e'));
  assert.equal(lookupKeyWeight(noMirror), 5);
  // A rotation hash equal to one before it (a symmetric picture), or malformed, is left out.
  const symmetric = lookupKey(sha('a'), {
    hash: pdq('b'), quality: 80, mirrored: pdq('c'), rotations: { clockwise: pdq('c'), halfTurn: pdq('b'), counterclockwise: 'nope' },
  });
  assert.equal(symmetric, `${sha('a')}|${pdq('b')}|${pdq('c')}`);
  const halfOnly = lookupKey(sha('a'), {
    hash: pdq('b'), quality: 80, mirrored: pdq('c'), rotations: { clockwise: pdq('b'), halfTurn: pdq('e'), counterclockwise: pdq('e') },
  });
  assert.equal(halfOnly, `${sha('a')}|${pdq('b')}|${pdq('c')}||${pdq('e')}`);
  assert.equal(lookupKeyWeight(halfOnly), 4);
  assert.deepEqual(parseLookupKey(halfOnly).rotations, { clockwise: null, halfTurn: pdq('e'), counterclockwise: null });
  // Not worth matching: no hash goes.
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 10, mirrored: pdq('c'), rotations: ROTATED }), sha('a'));
});

test('keys remembered by older versions still parse, weigh and look up as before', async () => {
  const none = { clockwise: null, halfTurn: null, counterclockwise: null };
  for (const [key, weight, mirrored] of [
    [sha('a'), 1, null],
    [`${sha('a')}|${pdq('b')}`, 2, null],
    [`${sha('a')}|${pdq('b')}|${pdq('c')}`, 3, pdq('c')],
  ]) {
    const parsed = parseLookupKey(key);
    assert.equal(parsed.sha256, sha('a'));
    assert.equal(parsed.mirrored, mirrored);
    assert.deepEqual(parsed.rotations, none);
    assert.equal(lookupKeyWeight(key), weight);
  }
  // Fingerprints remembered before rotation hashes existed give the old three-part key.
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('c') }), `${sha('a')}|${pdq('b')}|${pdq('c')}`);
  const original = { sha256: sha('e'), label: 'fake' };
  const client = fakeClient({ results: { [sha('e')]: original }, near: [{ pdq: pdq('c'), sha256: sha('e'), distance: 9 }] });
  const old = `${sha('a')}|${pdq('b')}|${pdq('c')}`;
  const out = await runLookupBatch(client, [old]);
  assert.deepEqual(client.calls[0].pdqs, [pdq('b'), pdq('c')]);
  assert.deepEqual(out.get(old).hint, { sha256: sha('e'), distance: 9, mirrored: true, rotated: null, flipped: null, analysis: original });
});

test('every rotation hash goes out; a near match on one is a rotated hint naming its turn', async () => {
  const original = { sha256: sha('e'), label: 'real' };
  const client = fakeClient({ results: { [sha('e')]: original }, near: [{ pdq: pdq('5'), sha256: sha('e'), distance: 17 }] });
  const key = `${sha('a')}|${pdq('1')}|${pdq('2')}|${pdq('3')}|${pdq('4')}|${pdq('5')}`;
  const out = await runLookupBatch(client, [key]);
  assert.deepEqual(client.calls[0], { sha256s: [sha('a')], pdqs: [pdq('1'), pdq('2'), pdq('3'), pdq('4'), pdq('5')] });
  assert.equal(out.get(key).analysis, null, 'never the image’s own verdict');
  assert.deepEqual(out.get(key).hint, { sha256: sha('e'), distance: 17, mirrored: false, rotated: 'counterclockwise', flipped: null, analysis: original });
});

test('closestHintMatch over own, mirror and rotation hashes: closest wins; ties go own, mirror, rotations', () => {
  const hashes = { pdq: pdq('1'), mirrored: pdq('2'), rotations: { clockwise: pdq('3'), halfTurn: pdq('4'), counterclockwise: pdq('5') } };
  const match = (distances) =>
    closestHintMatch(
      Object.entries(distances).map(([c, distance]) => ({ pdq: pdq(c), sha256: sha('e'), distance })),
      hashes,
      sha('a'),
    );
  const of = (distance, mirrored, rotated) => ({ sha256: sha('e'), distance, mirrored, rotated, flipped: null });
  assert.deepEqual(match({ 2: 15, 3: 9, 4: 12, 5: 30 }), of(9, false, 'clockwise'));
  assert.deepEqual(match({ 3: 14, 4: 8, 5: 11 }), of(8, false, 'halfTurn'));
  assert.deepEqual(match({ 5: 3 }), of(3, false, 'counterclockwise'));
  // Its own hash matches that image too (a symmetric picture): a plain copy, at that distance.
  assert.deepEqual(match({ 1: 20, 2: 15, 3: 9 }), of(20, false, null), 'own hash matches too');
  assert.deepEqual(match({ 1: 7, 2: 7, 3: 7, 4: 7, 5: 7 }), of(7, false, null), 'a tie: its own hash');
  assert.deepEqual(match({ 2: 7, 3: 7, 4: 7 }), of(7, true, null), 'then the mirror hash');
  assert.deepEqual(match({ 4: 7, 5: 7, 3: 7 }), of(7, false, 'clockwise'), 'then the rotations, in order');
  assert.deepEqual(match({ 5: 7, 4: 7 }), of(7, false, 'halfTurn'));
  assert.equal(match({}), null);
});

test('a rotated hint says so, still as a hint and not a verdict', () => {
  const hint = describeHint({ sha256: sha('e'), label: 'real', p_fake: 0.1 }, 15, { rotated: 'clockwise', flipped: null });
  assert.equal(hint.kind, 'hint');
  assert.equal(hint.rotated, 'clockwise');
  assert.equal(hint.mirrored, false);
  assert.equal(hint.distance, 15);
  assert.match(hint.short, /^Not checked: looks like a rotated copy of an image judged likely authentic \(15 of 256 bits differ\)$/);
  assert.match(hint.title, /^Not checked · rotated copy of an image judged likely authentic$/);
  assert.match(hint.text, /has not checked this image itself/);
  assert.match(hint.text, /rotated copy \(turned a quarter turn clockwise\)/);
  assert.match(hint.text, /Likely authentic \(10%\)/);
  assert.match(hint.caution, /rotated/);
  assert.match(hint.caution, /not a verdict on this image/);
  assert.equal(hint.distanceText, 'Fingerprint distance: 15 of 256 bits (PDQ perceptual hash, this image turned a quarter turn counterclockwise).');
  assert.match(describeHint({ label: 'fake' }, 4, { rotated: 'halfTurn', flipped: null }).text, /turned a half turn/);
  assert.match(describeHint({ label: 'fake' }, 4, { rotated: 'counterclockwise', flipped: null }).text, /turned a quarter turn counterclockwise/);
  for (const plain of [describeHint({ label: 'fake' }, 4), describeHint({ label: 'fake' }, 4, { rotated: 'sideways', flipped: null })]) {
    assert.equal(plain.rotated, null);
    assert.doesNotMatch(`${plain.short} ${plain.title} ${plain.text} ${plain.caution}`, /rotat|turn/);
  }
  // A hint remembered before rotations (no `rotated`) reads as before.
  assert.equal(describeHint({ label: 'fake' }, 4, { mirrored: true, rotated: undefined }).mirrored, true);
});

test('through the feed queue, six-part keys never put more than LOOKUP_MAX_KEYS in a request', async () => {
  const { BatchQueue } = await import('../lib/queue.js');
  const hex = (n, width = 64) => n.toString(16).padStart(width, '0');
  const client = fakeClient();
  const queue = new BatchQueue((keys) => runLookupBatch(client, keys), {
    maxBatch: 400, maxPending: 400, delayMs: 1, weightOf: lookupKeyWeight, maxWeight: LOOKUP_MAX_KEYS,
  });
  const keys = Array.from({ length: 200 }, (_, i) =>
    lookupKey(hex(i), {
      hash: hex(1000 + i),
      quality: 90,
      mirrored: hex(2000 + i),
      rotations: { clockwise: hex(3000 + i), halfTurn: hex(4000 + i), counterclockwise: hex(5000 + i) },
    }));
  await Promise.all(keys.map((key) => queue.add(key)));
  assert.ok(client.calls.length >= 3, 'split into several requests');
  for (const { sha256s, pdqs } of client.calls) {
    assert.ok(sha256s.length + pdqs.length <= LOOKUP_MAX_KEYS, `${sha256s.length} + ${pdqs.length} keys`);
  }
  assert.equal(client.calls.reduce((sum, c) => sum + c.pdqs.length, 0), 1000, 'every hash sent once');
});

const FLIPPED = { upsideDown: pdq('7'), transposed: pdq('8'), transversed: pdq('9') };

test('the flip hashes join the key after the rotation hashes, and each counts as a request key', () => {
  const key = lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('c'), rotations: ROTATED, flips: FLIPPED });
  const rotated = `${pdq('d')}|${pdq('e')}|${pdq('f')}`;
  assert.equal(key, `${sha('a')}|${pdq('b')}|${pdq('c')}|${rotated}|${pdq('7')}|${pdq('8')}|${pdq('9')}`);
  assert.deepEqual(parseLookupKey(key).flips, FLIPPED);
  assert.equal(parseLookupKey(key).rotations.counterclockwise, pdq('f'));
  assert.equal(lookupKeyWeight(key), 9, 'sha256 and eight PDQ hashes');
  // No rotation hashes (or ones equal to earlier hashes): their parts stay empty, the flips keep their places.
  const noTurns = lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('c'), flips: { upsideDown: pdq('7') } });
  assert.equal(noTurns, `${sha('a')}|${pdq('b')}|${pdq('c')}||||${pdq('7')}`);
  assert.deepEqual(parseLookupKey(noTurns).rotations, NO_ROTATIONS);
  assert.deepEqual(parseLookupKey(noTurns).flips, { upsideDown: pdq('7'), transposed: null, transversed: null });
  assert.equal(lookupKeyWeight(noTurns), 4);
  // A flip hash equal to one before it (a symmetric picture), or malformed, is left out.
  const symmetric = lookupKey(sha('a'), {
    hash: pdq('b'), quality: 80, mirrored: pdq('c'), rotations: ROTATED, flips: { upsideDown: pdq('b'), transposed: pdq('D'), transversed: 'nope' },
  });
  assert.equal(symmetric, `${sha('a')}|${pdq('b')}|${pdq('c')}|${rotated}`);
  const lastOnly = lookupKey(sha('a'), {
    hash: pdq('b'), quality: 80, mirrored: pdq('c'), rotations: ROTATED, flips: { upsideDown: pdq('c'), transversed: pdq('9') },
  });
  assert.equal(lastOnly, `${sha('a')}|${pdq('b')}|${pdq('c')}|${rotated}|||${pdq('9')}`);
  assert.equal(lookupKeyWeight(lastOnly), 7);
  // Not worth matching: no hash goes.
  assert.equal(lookupKey(sha('a'), { hash: pdq('b'), quality: 10, flips: FLIPPED }), sha('a'));
});

test('keys from before flip hashes (one to six parts) still parse, weigh and look up as before', async () => {
  const rotated = `${pdq('d')}|${pdq('e')}|${pdq('f')}`;
  for (const [key, weight] of [
    [sha('a'), 1],
    [`${sha('a')}|${pdq('b')}`, 2],
    [`${sha('a')}|${pdq('b')}|${pdq('c')}`, 3],
    [`${sha('a')}|${pdq('b')}||${pdq('d')}`, 3],
    [`${sha('a')}|${pdq('b')}|${pdq('c')}||${pdq('e')}`, 4],
    [`${sha('a')}|${pdq('b')}|${pdq('c')}|${rotated}`, 6],
  ]) {
    const parsed = parseLookupKey(key);
    assert.equal(parsed.sha256, sha('a'));
    assert.deepEqual(parsed.flips, NO_FLIPS, key);
    assert.equal(lookupKeyWeight(key), weight, key);
  }
  assert.deepEqual(parseLookupKey(`${sha('a')}|${pdq('b')}|${pdq('c')}|${rotated}`).rotations, {
    clockwise: pdq('d'), halfTurn: pdq('e'), counterclockwise: pdq('f'),
  });
  // Fingerprints remembered before flip hashes existed give the old six-part key.
  assert.equal(
    lookupKey(sha('a'), { hash: pdq('b'), quality: 80, mirrored: pdq('c'), rotations: ROTATED }),
    `${sha('a')}|${pdq('b')}|${pdq('c')}|${rotated}`,
  );
  const original = { sha256: sha('1'), label: 'fake' };
  const client = fakeClient({ results: { [sha('1')]: original }, near: [{ pdq: pdq('e'), sha256: sha('1'), distance: 12 }] });
  const old = `${sha('a')}|${pdq('b')}|${pdq('c')}|${rotated}`;
  const out = await runLookupBatch(client, [old]);
  assert.deepEqual(client.calls[0].pdqs, [pdq('b'), pdq('c'), pdq('d'), pdq('e'), pdq('f')]);
  assert.deepEqual(out.get(old).hint, { sha256: sha('1'), distance: 12, mirrored: false, rotated: 'halfTurn', flipped: null, analysis: original });
});

test('every flip hash goes out; a near match on one is a flipped hint naming its flip', async () => {
  const original = { sha256: sha('e'), label: 'real' };
  const client = fakeClient({ results: { [sha('e')]: original }, near: [{ pdq: pdq('8'), sha256: sha('e'), distance: 21 }] });
  const key = `${sha('a')}|${pdq('1')}|${pdq('2')}|${pdq('3')}|${pdq('4')}|${pdq('5')}|${pdq('7')}|${pdq('8')}|${pdq('9')}`;
  const out = await runLookupBatch(client, [key]);
  assert.deepEqual(client.calls[0].pdqs, ['1', '2', '3', '4', '5', '7', '8', '9'].map(pdq));
  assert.equal(out.get(key).analysis, null, 'never the image’s own verdict');
  assert.deepEqual(out.get(key).hint, { sha256: sha('e'), distance: 21, mirrored: false, rotated: null, flipped: 'transposed', analysis: original });
});

test('closestHintMatch with flip hashes: closest wins; ties go own, mirror, rotations, flips; symmetric → plain', () => {
  const hashes = {
    pdq: pdq('1'),
    mirrored: pdq('2'),
    rotations: { clockwise: pdq('3'), halfTurn: pdq('4'), counterclockwise: pdq('5') },
    flips: { upsideDown: pdq('7'), transposed: pdq('8'), transversed: pdq('9') },
  };
  const match = (distances) =>
    closestHintMatch(
      Object.entries(distances).map(([c, distance]) => ({ pdq: pdq(c), sha256: sha('e'), distance })),
      hashes,
      sha('a'),
    );
  const of = (distance, { mirrored = false, rotated = null, flipped = null } = {}) =>
    ({ sha256: sha('e'), distance, mirrored, rotated, flipped });
  assert.deepEqual(match({ 7: 14 }), of(14, { flipped: 'upsideDown' }));
  assert.deepEqual(match({ 2: 20, 4: 18, 8: 9, 9: 30 }), of(9, { flipped: 'transposed' }), 'the closest wins');
  assert.deepEqual(match({ 3: 19, 9: 6 }), of(6, { flipped: 'transversed' }));
  assert.deepEqual(match({ 5: 10, 9: 11 }), of(10, { rotated: 'counterclockwise' }));
  // Ties: own, then the mirror, then the rotations, then the flips in order.
  assert.deepEqual(match({ 2: 7, 7: 7 }), of(7, { mirrored: true }), 'the mirror before the flips');
  assert.deepEqual(match({ 4: 7, 7: 7, 8: 7 }), of(7, { rotated: 'halfTurn' }), 'the rotations before the flips');
  assert.deepEqual(match({ 9: 7, 8: 7, 7: 7 }), of(7, { flipped: 'upsideDown' }), 'then the flips, in order');
  assert.deepEqual(match({ 9: 7, 8: 7 }), of(7, { flipped: 'transposed' }));
  // Its own hash matches that image too (a symmetric picture): a plain copy, at that distance.
  assert.deepEqual(match({ 1: 25, 7: 4 }), of(25), 'own hash matches too');
  assert.deepEqual(match({ 1: 12, 8: 12 }), of(12), 'a tie: its own hash');
  // A parsed key without flips (an older one) matches as before.
  const old = { pdq: pdq('1'), mirrored: pdq('2'), rotations: hashes.rotations, flips: NO_FLIPS };
  const near = [{ pdq: pdq('7'), sha256: sha('e'), distance: 3 }];
  assert.equal(closestHintMatch(near, old, sha('a')), null);
  assert.equal(closestHintMatch(near, { pdq: pdq('1') }, sha('a')), null);
});

test('a flipped hint says how, still as a hint and not a verdict', () => {
  const upsideDown = describeHint({ sha256: sha('e'), label: 'fake', p_fake: 0.9 }, 18, { flipped: 'upsideDown' });
  assert.equal(upsideDown.kind, 'hint');
  assert.equal(upsideDown.flipped, 'upsideDown');
  assert.equal(upsideDown.mirrored, false);
  assert.equal(upsideDown.rotated, null);
  assert.equal(upsideDown.short, 'Not checked: looks like a copy flipped upside down of an image judged likely AI-generated (18 of 256 bits differ)');
  assert.equal(upsideDown.title, 'Not checked · copy flipped upside down of an image judged likely AI-generated');
  assert.match(upsideDown.text, /has not checked this image itself/);
  assert.match(upsideDown.text, /looks like a copy flipped upside down \(top to bottom\) of an image that was checked/);
  assert.match(upsideDown.caution, /not a verdict on this image/);
  assert.equal(upsideDown.distanceText, 'Fingerprint distance: 18 of 256 bits (PDQ perceptual hash, this image flipped upside down).');

  const transposed = describeHint({ label: 'real', p_fake: 0.1 }, 9, { flipped: 'transposed' });
  assert.equal(transposed.flipped, 'transposed');
  assert.match(transposed.short, /^Not checked: looks like a mirrored and turned copy of an image judged likely authentic \(9 of 256 bits differ\)$/);
  assert.match(transposed.title, /^Not checked · mirrored and turned copy of an image judged likely authentic$/);
  assert.match(transposed.text, /a mirrored copy that was also turned a quarter turn \(flipped left to right, then turned a quarter turn counterclockwise\)/);
  assert.match(transposed.distanceText, /this image turned a quarter turn clockwise, then flipped left to right\)\.$/);
  const transversed = describeHint({ label: 'real' }, 9, { flipped: 'transversed' });
  assert.match(transversed.text, /flipped left to right, then turned a quarter turn clockwise\)/);
  assert.match(transversed.distanceText, /this image turned a quarter turn counterclockwise, then flipped left to right\)\.$/);

  // An unknown flip, or none (hints remembered before flips): read as before.
  for (const plain of [describeHint({ label: 'fake' }, 4), describeHint({ label: 'fake' }, 4, { flipped: 'sideways' })]) {
    assert.equal(plain.flipped, null);
    assert.doesNotMatch(`${plain.short} ${plain.title} ${plain.text} ${plain.caution}`, /flip|upside|turn/);
  }
  const oldRotated = describeHint({ label: 'fake' }, 4, { rotated: 'halfTurn', flipped: undefined });
  assert.equal(oldRotated.rotated, 'halfTurn');
  assert.equal(oldRotated.flipped, null);
});

test('through the feed queue, nine-part keys never put more than LOOKUP_MAX_KEYS in a request', async () => {
  const { BatchQueue } = await import('../lib/queue.js');
  const hex = (n, width = 64) => n.toString(16).padStart(width, '0');
  const client = fakeClient();
  const queue = new BatchQueue((keys) => runLookupBatch(client, keys), {
    maxBatch: 400, maxPending: 400, delayMs: 1, weightOf: lookupKeyWeight, maxWeight: LOOKUP_MAX_KEYS,
  });
  const keys = Array.from({ length: 100 }, (_, i) =>
    lookupKey(hex(i), {
      hash: hex(1000 + i),
      quality: 90,
      mirrored: hex(2000 + i),
      rotations: { clockwise: hex(3000 + i), halfTurn: hex(4000 + i), counterclockwise: hex(5000 + i) },
      flips: { upsideDown: hex(6000 + i), transposed: hex(7000 + i), transversed: hex(8000 + i) },
    }));
  await Promise.all(keys.map((key) => queue.add(key)));
  assert.ok(client.calls.length >= 2, 'split into several requests');
  for (const { sha256s, pdqs } of client.calls) {
    assert.ok(sha256s.length + pdqs.length <= LOOKUP_MAX_KEYS, `${sha256s.length} + ${pdqs.length} keys`);
  }
  assert.equal(client.calls.reduce((sum, c) => sum + c.pdqs.length, 0), 800, 'every hash sent once');
});
