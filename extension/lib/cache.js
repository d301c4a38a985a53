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
}

/** A storage-area lookalike backed by a Map (tests, and a fallback when no area exists). */
export function memoryArea() {
  const map = new Map();
  const keysOf = (keys) => (Array.isArray(keys) ? keys : [keys]);
  return {
    map,
    async get(keys) {
      const out = {};
      for (const k of keysOf(keys)) if (map.has(k)) out[k] = structuredClone(map.get(k));
      return out;
    },
    async set(items) {
      for (const [k, v] of Object.entries(items)) map.set(k, structuredClone(v));
    },
    async remove(keys) {
      for (const k of keysOf(keys)) map.delete(k);
    },
  };
}
