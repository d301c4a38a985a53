/**
 * A bounded, debounced batching queue: callers add keys one at a time and get a
 * promise of that key's result; keys are sent to `run` in batches of at most
 * `maxBatch`, `delayMs` after the first key of a batch arrives. Used by feed
 * mode so a page full of images becomes a few /v1/lookup calls, not hundreds.
 *
 * A key may stand for several items of the request (a feed lookup key carries a SHA-256
 * and, for most images, up to eight PDQ hashes too): `weightOf(key)` says how many, and no batch's
 * total weight exceeds `maxWeight` (the server's limit of keys per request).
 */

export class QueueFullError extends Error {
  constructor(limit) {
    super(`Too many images waiting for a lookup (limit ${limit}); the rest are skipped.`);
    this.name = 'QueueFullError';
  }
}

export class BatchQueue {
  /**
   * @param {(keys: string[]) => Promise<Map<string, unknown> | Record<string, unknown>>} run
   * @param {{maxBatch?: number, delayMs?: number, maxPending?: number,
   *          weightOf?: (key: string) => number, maxWeight?: number,
   *          setTimer?: Function, clearTimer?: Function}} [options]
   */
  constructor(run, {
    maxBatch = 32,
    delayMs = 250,
    maxPending = 256,
    weightOf = () => 1,
    maxWeight = Infinity,
    setTimer = (fn, ms) => setTimeout(fn, ms),
    clearTimer = (id) => clearTimeout(id),
  } = {}) {
    if (!(maxBatch >= 1) || !(maxPending >= maxBatch)) {
      throw new RangeError('need 1 <= maxBatch <= maxPending');
    }
    if (!(maxWeight >= 1)) throw new RangeError('maxWeight must be >= 1');
    this.run = run;
    this.maxBatch = maxBatch;
    this.delayMs = delayMs;
    this.maxPending = maxPending;
    this.weightOf = weightOf;
    this.maxWeight = maxWeight;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    /** @type {Map<string, {resolve: Function, reject: Function, promise: Promise<unknown>}>} */
    this.waiting = new Map();
    this.waitingWeight = 0;
    this.timer = null;
    this.inFlight = 0;
  }

  /** Keys waiting for their batch plus keys whose batch is running: what maxPending bounds. */
  get pending() {
    return this.waiting.size + this.inFlight;
  }

  /** The result for `key` once its batch ran; the same promise for a key already waiting. */
  add(key) {
    const existing = this.waiting.get(key);
    if (existing) return existing.promise;
    if (this.pending >= this.maxPending) return Promise.reject(new QueueFullError(this.maxPending));
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const weight = this.#weight(key);
    this.waiting.set(key, { resolve, reject, promise, weight });
    this.waitingWeight += weight;
    if (this.waiting.size >= this.maxBatch || this.waitingWeight >= this.maxWeight) this.flush();
    else if (this.timer === null) this.timer = this.setTimer(() => this.flush(), this.delayMs);
    return promise;
  }

  /** Sends everything waiting now, in batches of maxBatch. */
  flush() {
    if (this.timer !== null) {
      this.clearTimer(this.timer);
      this.timer = null;
    }
    const batches = [];
    let batch = [];
    let weight = 0;
    for (const [key, entry] of this.waiting) {
      if (batch.length && weight + entry.weight > this.maxWeight) {
        batches.push(batch);
        batch = [];
        weight = 0;
      }
      batch.push([key, entry]);
      weight += entry.weight;
      if (batch.length === this.maxBatch) {
        batches.push(batch);
        batch = [];
        weight = 0;
      }
    }
    if (batch.length) batches.push(batch);
    this.waiting.clear();
    this.waitingWeight = 0;
    return Promise.all(batches.map((b) => this.#send(b)));
  }

  /** A key's share of the request's limit: at least 1, at most the whole limit. */
  #weight(key) {
    const weight = Number(this.weightOf(key));
    return Number.isFinite(weight) ? Math.min(Math.max(Math.ceil(weight), 1), this.maxWeight) : 1;
  }

  async #send(batch) {
    this.inFlight += batch.length;
    try {
      const results = await this.run(batch.map(([key]) => key));
      const get = results instanceof Map ? (k) => results.get(k) : (k) => results?.[k];
      for (const [key, entry] of batch) entry.resolve(get(key) ?? null);
    } catch (error) {
      for (const [, entry] of batch) entry.reject(error);
    } finally {
      this.inFlight -= batch.length;
    }
  }
}

/**
 * A concurrency limiter: `limit(fn)` runs fn when fewer than `max` are running.
 * Feed mode uses it so a long page never fetches more than a few images at once.
 */
export function createLimiter(max) {
  if (!(max >= 1)) throw new RangeError('max must be >= 1');
  let running = 0;
  const waiting = [];
  const next = () => {
    if (running >= max || waiting.length === 0) return;
    running += 1;
    const { fn, resolve, reject } = waiting.shift();
    Promise.resolve()
      .then(fn)
      .then(resolve, reject)
      .finally(() => {
        running -= 1;
        next();
      });
  };
  return (fn) =>
    new Promise((resolve, reject) => {
      waiting.push({ fn, resolve, reject });
      next();
    });
}
