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
   * Removes every entry of this cache (its prefix), live or not.
   * @returns {Promise<number>} how many entries were removed
   */
  async clear() {
    const all = await this.area.get(null);
    const mine = Object.keys(all ?? {}).filter((storageKey) => storageKey.startsWith(this.prefix));
    if (mine.length) await this.area.remove(mine);
    return mine.length;
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

/**
 * How the worker read an image's bytes (worker/image-bytes.js), in the order a check tries:
 * `worker`, its own request (no cookies, no Referer: what feed mode does); `worker-referer`,
 * the request again as the page's <img> would make it (the page's Referer and the site's
 * cookies); `page`, read by the page's content script (its blob:, or its picture on a canvas).
 */
export const READ_WAYS = ['worker', 'worker-referer', 'page'];

/** The origin of an http(s) address; null for any other (file:, about:, opaque, unparsable). */
function webOrigin(url) {
  try {
    const { protocol, origin } = new URL(url);
    return protocol === 'http:' || protocol === 'https:' ? origin : null;
  } catch {
    return null;
  }
}

/**
 * The rules an image's bytes were read under, as a cache scope: how (`via`, one of READ_WAYS)
 * and for which document (its origin, which decides the Referer sent and the address space the
 * image may be in) in which top-level page (its origin: the tab the extension may have been
 * granted, activeTab). Two reads under one scope are asked the same way with the same access;
 * bytes read under one scope say nothing about what a read under another would get (a site's
 * cookies, its hotlink rules, a grant for another tab). null when a document is not an http(s)
 * page: nothing read for it is remembered.
 */
export function readScope(via, documentUrl, topUrl) {
  const documentOrigin = webOrigin(documentUrl);
  const topOrigin = webOrigin(topUrl);
  if (!READ_WAYS.includes(via) || !documentOrigin || !topOrigin) return null;
  return `${via} ${documentOrigin} ${topOrigin}`;
}

/**
 * The one scope a feed lookup in a page may be answered from: its own request, the worker's plain
 * one. Whatever was read as a page (with its cookies, its Referer) or for another page is not.
 */
export function feedScope(pageUrl, topUrl) {
  return readScope('worker', pageUrl, topUrl);
}

/** The scopes a check of an image in `documentUrl` may be answered from: what it would try itself. */
export function checkScopes(documentUrl, topUrl) {
  return READ_WAYS.map((via) => readScope(via, documentUrl, topUrl)).filter(Boolean);
}

/**
 * Whether a verdict on bytes read under `scope` may show in a feed badge of `pageUrl` (in
 * `topUrl`): only when that page's own feed lookup would have read them the same way.
 */
export function feedMayShow(scope, pageUrl, topUrl) {
  return scope !== null && scope !== undefined && scope === feedScope(pageUrl, topUrl);
}

/**
 * A TtlCache of what was read at image addresses, each entry under the scope it was read in
 * (readScope): `get` answers only for that scope, so a verdict learnt for one page (with its
 * cookies, its Referer, its grant) never answers a lookup made under other rules. A null scope
 * stores and answers nothing.
 */
export class ScopedCache {
  /** How many times it was cleared: a read started before a clear is not remembered after it. */
  #clears = 0;

  /** @param {TtlCache} cache */
  constructor(cache) {
    this.cache = cache;
  }

  /** Taken when a read starts, given to `trySet` when it ends (see `clear`). */
  mark() {
    return this.#clears;
  }

  static #key(scope, key) {
    return `${scope} ${key}`;
  }

  async get(scope, key) {
    return scope ? this.cache.get(ScopedCache.#key(scope, key)) : undefined;
  }

  /**
   * `TtlCache.trySet` under `scope`; false (nothing stored) for a null scope, or when the
   * cache was cleared since `startedAt` (its `mark()` when the read began).
   */
  async trySet(scope, key, value, { startedAt } = {}) {
    if (!scope || (startedAt !== undefined && startedAt !== this.#clears)) return false;
    return this.cache.trySet(ScopedCache.#key(scope, key), value);
  }

  /**
   * Forgets what was read under every scope (`TtlCache.clear`), and what reads still under way
   * would store: their `trySet` with an earlier mark stores nothing.
   */
  async clear() {
    this.#clears += 1;
    return this.cache.clear();
  }
}
