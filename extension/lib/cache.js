/**
 * A small TTL cache over a chrome.storage area (chrome.storage.session in the
 * extension: it lives in memory and is gone when the browser closes). The
 * area and the clock are injected so tests can use a Map and a fake clock.
 */

export const DEFAULT_TTL_MS = 10 * 60 * 1000;

export class TtlCache {
  /**
   * @param {{get(keys: string|string[]): Promise<object>, set(items: object): Promise<void>,
   *          remove(keys: string|string[]): Promise<void>}} area
   * @param {{prefix?: string, ttlMs?: number, now?: () => number}} [options]
   */
  constructor(area, { prefix = 'cache:', ttlMs = DEFAULT_TTL_MS, now = () => Date.now() } = {}) {
    if (!(ttlMs > 0)) throw new RangeError('ttlMs must be positive');
    this.area = area;
    this.prefix = prefix;
    this.ttlMs = ttlMs;
    this.now = now;
  }

  #key(key) {
    return this.prefix + key;
  }

  /** The stored value, or undefined when absent or expired (expired entries are removed). */
  async get(key) {
    const storageKey = this.#key(key);
    const found = (await this.area.get(storageKey))[storageKey];
    if (!found) return undefined;
    if (found.expiresAt <= this.now()) {
      await this.area.remove(storageKey);
      return undefined;
    }
    return found.value;
  }

  async set(key, value, ttlMs = this.ttlMs) {
    await this.area.set({ [this.#key(key)]: { value, expiresAt: this.now() + ttlMs } });
  }

  async delete(key) {
    await this.area.remove(this.#key(key));
  }

  /**
   * Removes this cache's expired entries (they are otherwise removed only when read again),
   * and with `fraction` > 0 also that share of the live ones, soonest to expire first.
   * @returns {Promise<number>} how many entries were removed
   */
  async prune({ fraction = 0 } = {}) {
    const all = await this.area.get(null);
    const now = this.now();
    const expired = [];
    const live = [];
    for (const [storageKey, found] of Object.entries(all ?? {})) {
      if (!storageKey.startsWith(this.prefix)) continue;
      if (!found || !(found.expiresAt > now)) expired.push(storageKey);
      else live.push([storageKey, found.expiresAt]);
    }
    live.sort((a, b) => a[1] - b[1]);
    const evicted = live.slice(0, Math.ceil(live.length * fraction)).map(([k]) => k);
    const doomed = [...expired, ...evicted];
    if (doomed.length) await this.area.remove(doomed);
    return doomed.length;
  }

  /**
   * `set` that never throws: a cache is an optimisation, so a full storage area (the
   * session area holds 10 MB) must not fail the check it was caching. On failure it
   * drops expired entries and retries, then half of the live ones and retries once more.
   * @returns {Promise<boolean>} whether the value was stored
   */
  async trySet(key, value, ttlMs = this.ttlMs) {
    for (const fraction of [null, 0, 0.5]) {
      try {
        if (fraction !== null) await this.prune({ fraction });
        await this.set(key, value, ttlMs);
        return true;
      } catch {
        // Quota exceeded (or the area is unavailable): make room and try again.
      }
    }
    return false;
  }
}

/**
 * A storage-area lookalike backed by a Map (tests, and a fallback when no area exists).
 * `quotaBytes` makes `set` fail like chrome.storage does when the area is full (sizes are
 * counted as key length + JSON length, as Chrome does).
 */
export function memoryArea({ quotaBytes = Infinity } = {}) {
  const map = new Map();
  const keysOf = (keys) => (keys === null || keys === undefined ? [...map.keys()] : Array.isArray(keys) ? keys : [keys]);
  const sizeOf = (k, v) => k.length + JSON.stringify(v).length;
  const used = () => [...map].reduce((sum, [k, v]) => sum + sizeOf(k, v), 0);
  return {
    map,
    async get(keys) {
      const out = {};
      for (const k of keysOf(keys)) if (map.has(k)) out[k] = structuredClone(map.get(k));
      return out;
    },
    async set(items) {
      let after = used();
      for (const [k, v] of Object.entries(items)) after += sizeOf(k, v) - (map.has(k) ? sizeOf(k, map.get(k)) : 0);
      if (after > quotaBytes) throw new Error('Session storage quota bytes exceeded. Values were not stored.');
      for (const [k, v] of Object.entries(items)) map.set(k, structuredClone(v));
    },
    async remove(keys) {
      for (const k of keysOf(keys)) map.delete(k);
    },
  };
}
