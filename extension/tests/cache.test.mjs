import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TtlCache, memoryArea } from '../lib/cache.js';

function setup(ttlMs = 1000) {
  let now = 0;
  const area = memoryArea();
  const cache = new TtlCache(area, { prefix: 'a:', ttlMs, now: () => now });
  return { area, cache, advance: (ms) => { now += ms; } };
}

test('a stored value comes back until its time is up', async () => {
  const { cache, advance } = setup();
  await cache.set('k', { label: 'fake' });
  advance(999);
  assert.deepEqual(await cache.get('k'), { label: 'fake' });
  advance(1);
  assert.equal(await cache.get('k'), undefined);
});

test('expired entries are removed from the storage area', async () => {
  const { area, cache, advance } = setup();
  await cache.set('k', 1);
  advance(5000);
  await cache.get('k');
  assert.equal(area.map.size, 0);
});

test('keys are prefixed so caches can share one area', async () => {
  const { area, cache } = setup();
  await cache.set('k', 1);
  assert.deepEqual([...area.map.keys()], ['a:k']);
});

test('a per-entry ttl overrides the default', async () => {
  const { cache, advance } = setup(1000);
  await cache.set('short', 1, 10);
  advance(11);
  assert.equal(await cache.get('short'), undefined);
});

test('missing keys and deleted keys read as undefined', async () => {
  const { cache } = setup();
  assert.equal(await cache.get('none'), undefined);
  await cache.set('k', 1);
  await cache.delete('k');
  assert.equal(await cache.get('k'), undefined);
});

test('a non-positive ttl is refused', () => {
  assert.throws(() => new TtlCache(memoryArea(), { ttlMs: 0 }), RangeError);
});

test('trySet never throws on a full area: it drops expired entries, then the oldest live ones', async () => {
  let now = 0;
  const area = memoryArea({ quotaBytes: 2000 });
  const cache = new TtlCache(area, { prefix: 'a:', ttlMs: 1000, now: () => now });
  const other = new TtlCache(area, { prefix: 'b:', ttlMs: 1000, now: () => now });
  const value = 'x'.repeat(400);
  assert.equal(await other.trySet('keep', 'small'), true);
  for (let i = 0; i < 4; i += 1) assert.equal(await cache.trySet(`k${i}`, value), true);
  await assert.rejects(cache.set('k4', value), /quota/, 'the area is full');

  now = 1500; // all of a: and b: expired, none of them read again
  assert.equal(await cache.trySet('k4', value), true, 'room was made by dropping expired entries');
  assert.equal(await cache.get('k4'), value);
  assert.equal(area.map.has('a:k0'), false);

  for (let i = 5; i < 8; i += 1) assert.equal(await cache.trySet(`k${i}`, value), true);
  now = 1600;
  assert.equal(await cache.trySet('k8', value), true, 'live entries soonest to expire make room');
  assert.equal(await cache.get('k8'), value);
  assert.equal(await cache.get('k4'), undefined, 'the oldest entry went first');

  assert.equal(await cache.trySet('huge', 'x'.repeat(5000)), false, 'a value that can never fit is skipped');
});

test('prune removes only its own expired entries', async () => {
  let now = 0;
  const area = memoryArea();
  const a = new TtlCache(area, { prefix: 'a:', ttlMs: 10, now: () => now });
  const b = new TtlCache(area, { prefix: 'b:', ttlMs: 10, now: () => now });
  await a.set('1', 1);
  await b.set('1', 1);
  await a.set('2', 2, 100);
  now = 50;
  assert.equal(await a.prune(), 1);
  assert.deepEqual([...area.map.keys()].sort(), ['a:2', 'b:1']);
});

test('clear forgets every entry of its cache, live or expired, and leaves other caches alone', async () => {
  const { area, cache, advance } = setup();
  const other = new TtlCache(area, { prefix: 'b:', ttlMs: 1000 });
  await cache.set('old', 1);
  advance(2000);
  await cache.set('live', 2);
  await other.set('kept', 3);
  assert.equal(await cache.clear(), 2);
  assert.equal(await cache.get('live'), undefined);
  assert.deepEqual([...area.map.keys()], ['b:kept']);
  assert.equal(await other.get('kept'), 3);
  assert.equal(await cache.clear(), 0, 'nothing left to clear');
});
