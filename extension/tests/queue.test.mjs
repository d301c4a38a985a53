import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchQueue, QueueFullError } from '../lib/queue.js';

function manualTimers() {
  const timers = new Map();
  let next = 1;
  return {
    setTimer: (fn) => { const id = next++; timers.set(id, fn); return id; },
    clearTimer: (id) => timers.delete(id),
    fire: () => { const fns = [...timers.values()]; timers.clear(); fns.forEach((fn) => fn()); },
    get count() { return timers.size; },
  };
}

test('keys added close together go out in one batch after the delay', async () => {
  const timers = manualTimers();
  const calls = [];
  const queue = new BatchQueue(async (keys) => { calls.push(keys); return Object.fromEntries(keys.map((k) => [k, k.toUpperCase()])); }, { ...timers });
  const a = queue.add('a');
  const b = queue.add('b');
  assert.equal(calls.length, 0, 'nothing is sent before the debounce fires');
  assert.equal(timers.count, 1, 'one timer for the whole batch');
  timers.fire();
  assert.deepEqual(await Promise.all([a, b]), ['A', 'B']);
  assert.deepEqual(calls, [['a', 'b']]);
});

test('a full batch is sent at once without waiting', async () => {
  const timers = manualTimers();
  const calls = [];
  const queue = new BatchQueue(async (keys) => { calls.push(keys); return {}; }, { maxBatch: 2, ...timers });
  const both = [queue.add('a'), queue.add('b')];
  await Promise.all(both);
  assert.deepEqual(calls, [['a', 'b']]);
});

test('the same key waiting twice is asked once', async () => {
  const timers = manualTimers();
  const calls = [];
  const queue = new BatchQueue(async (keys) => { calls.push(keys); return new Map([['a', 1]]); }, { ...timers });
  const first = queue.add('a');
  const second = queue.add('a');
  assert.equal(first, second);
  timers.fire();
  assert.equal(await second, 1);
  assert.deepEqual(calls, [['a']]);
});

test('keys without a result resolve to null', async () => {
  const timers = manualTimers();
  const queue = new BatchQueue(async () => ({}), { ...timers });
  const p = queue.add('missing');
  timers.fire();
  assert.equal(await p, null);
});

test('the queue is bounded: keys waiting or in flight beyond maxPending are refused', async () => {
  const timers = manualTimers();
  let release;
  const slow = new Promise((resolve) => { release = resolve; });
  const queue = new BatchQueue(() => slow, { maxBatch: 2, maxPending: 3, ...timers });
  const inFlight = [queue.add('a'), queue.add('b')];
  queue.add('c');
  assert.equal(queue.pending, 3);
  await assert.rejects(queue.add('d'), QueueFullError);
  release({});
  await Promise.all(inFlight);
  assert.equal(queue.pending, 1, 'room again once the batch finished');
});

test('a failed batch rejects every key in it', async () => {
  const timers = manualTimers();
  const queue = new BatchQueue(async () => { throw new Error('server down'); }, { ...timers });
  const a = queue.add('a');
  const b = queue.add('b');
  timers.fire();
  await assert.rejects(a, /server down/);
  await assert.rejects(b, /server down/);
});

test('flush splits what is waiting into batches of maxBatch', async () => {
  const timers = manualTimers();
  const calls = [];
  const queue = new BatchQueue(async (keys) => { calls.push(keys); return {}; }, { maxBatch: 3, maxPending: 10, ...timers });
  for (const k of ['a', 'b']) queue.add(k);
  await queue.flush();
  for (const k of ['c', 'd', 'e', 'f', 'g']) queue.add(k);
  await queue.flush();
  assert.deepEqual(calls, [['a', 'b'], ['c', 'd', 'e'], ['f', 'g']]);
});

test('invalid sizes are refused', () => {
  assert.throws(() => new BatchQueue(async () => ({}), { maxBatch: 0 }), RangeError);
  assert.throws(() => new BatchQueue(async () => ({}), { maxBatch: 8, maxPending: 4 }), RangeError);
});

test('the limiter never runs more than max tasks at once and runs them all', async () => {
  const { createLimiter } = await import('../lib/queue.js');
  const limit = createLimiter(2);
  let running = 0;
  let peak = 0;
  const task = (value) => async () => {
    running += 1;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, 5));
    running -= 1;
    return value;
  };
  const results = await Promise.all([1, 2, 3, 4, 5].map((v) => limit(task(v))));
  assert.deepEqual(results, [1, 2, 3, 4, 5]);
  assert.equal(peak, 2);
});

test('a failing task does not block the limiter', async () => {
  const { createLimiter } = await import('../lib/queue.js');
  const limit = createLimiter(1);
  await assert.rejects(limit(async () => { throw new Error('bad'); }), /bad/);
  assert.equal(await limit(async () => 'next'), 'next');
});

test('weighted keys: no batch goes over maxWeight, and a full weight is sent at once', async () => {
  const timers = manualTimers();
  const calls = [];
  const queue = new BatchQueue(async (keys) => { calls.push(keys); return {}; }, {
    maxBatch: 10, maxWeight: 5, weightOf: (key) => key.length, ...timers,
  });
  const first = [queue.add('aa'), queue.add('bb')];
  assert.equal(calls.length, 0, 'weight 4 of 5: still waiting');
  first.push(queue.add('c'));
  await Promise.all(first);
  assert.deepEqual(calls, [['aa', 'bb', 'c']], 'weight 5 reached: sent without the delay');
  const second = [queue.add('ddd'), queue.add('ee'), queue.add('f')];
  timers.fire();
  await Promise.all(second);
  assert.deepEqual(calls.slice(1), [['ddd', 'ee'], ['f']], 'split where the next key would go over');
  for (const batch of calls) assert.ok(batch.reduce((sum, k) => sum + k.length, 0) <= 5);
});
