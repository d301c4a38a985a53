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
