/**
 * The service worker's short-lived caches in chrome.storage.session: kept in memory,
 * cleared when the browser closes, not readable by content scripts. Analysis keys
 * include the server URL (cacheKey) so switching servers never shows another server's
 * verdicts. The caches keyed by content (analyses, hints: by sha256) answer only whoever holds
 * those bytes; those keyed by image address answer only reads under the same rules (scopes).
 */

import { ScopedCache, TtlCache } from '../lib/cache.js';

const ANALYSIS_TTL_MS = 10 * 60 * 1000;
// Image addresses longer than this are not remembered (a data: URL carries the whole image:
// as a storage key it would fill the 10 MB session area in a few checks).
const MAX_REMEMBERED_URL_LENGTH = 2048;

/** Analyses by server and sha256 (see cacheKey). */
export const analyses = new TtlCache(chrome.storage.session, { prefix: 'analysis:', ttlMs: ANALYSIS_TTL_MS });
/**
 * The sha256 of the bytes at an image address, under the scope they were read in (lib/cache.js
 * readScope: how, for which page): an address's bytes depend on who asks (a site's cookies, its
 * hotlink rules, the extension's access), so what a check read in one page, or with the page's
 * cookies, never answers a feed lookup in another (feedScope).
 */
export const imageHashes = new ScopedCache(new TtlCache(chrome.storage.session, { prefix: 'url:', ttlMs: ANALYSIS_TTL_MS }));
/**
 * The PDQ hash (and quality, mirror hash `mirrored`, rotation hashes `rotations` and flip hashes `flips`) of the
 * pixels at an image address, computed for feed lookups, under their scope as imageHashes;
 * {hash: null} remembers an image that could not be decoded. Entries remembered without
 * `mirrored`, `rotations` or `flips` (older versions) still look up by the hashes they have.
 */
export const imagePdqs = new ScopedCache(new TtlCache(chrome.storage.session, { prefix: 'pdq:', ttlMs: ANALYSIS_TTL_MS }));

/**
 * The near match a feed lookup found for an image's bytes (by server and sha256, see cacheKey):
 * `{sha256, distance, mirrored, rotated, flipped, analysis}` of the checked image it looks like, so that its hint
 * badge's panel (worker/feed-lookup.js openFeedPanel) needs no second lookup.
 */
export const feedHints = new TtlCache(chrome.storage.session, { prefix: 'hint:', ttlMs: ANALYSIS_TTL_MS });

/**
 * Forgets every address read (imageHashes, imagePdqs): when the user takes back access to a
 * site, what the worker read there with that access must not keep answering lookups and checks
 * (the analyses and hints stay: they are keyed by the bytes, which only their holder can ask for).
 * Reads under way (a check waiting for the server, a feed image being decoded) store nothing.
 */
export async function forgetAddressReads() {
  await Promise.all([imageHashes.clear(), imagePdqs.clear()]);
}

export const cacheKey = (settings, sha256) => `${settings.serverUrl}|${sha256}`;

/** Whether an image address is worth remembering (its sha256) for a later check or lookup. */
export function rememberable(url) {
  return /^https?:/i.test(url) && url.length <= MAX_REMEMBERED_URL_LENGTH;
}
