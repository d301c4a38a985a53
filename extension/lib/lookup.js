/**
 * Feed lookups: which fingerprints go to POST /v1/lookup, and how its answer becomes, per
 * image, either the image's own verdict (its SHA-256 is known) or a *hint* (its PDQ hash is
 * near the hash of an image that was checked). Pure: the API client is passed in.
 *
 * Each image sends two PDQ hashes: its own, and its mirror hash (`mirrored`, from pdq.js:
 * what the image flipped left to right hashes to). A mirrored repost of a checked picture
 * is ~128 bits from it by its own hash, but its mirror hash is near the original's: a near
 * match on that hash makes a hint that says the image looks like a *mirrored* copy.
 *
 * A near match is never the image's verdict: it is returned apart, as `hint`, with the
 * similar image's analysis, the distance and whether it matched mirrored, and the
 * extension shows it as a hint.
 */

import { PDQ_MIN_QUALITY, isPdqHex } from './pdq.js';
import { isSha256Hex } from './hash.js';

/** The server's limit of keys (sha256 plus pdq) per /v1/lookup request. */
export const LOOKUP_MAX_KEYS = 500;

/**
 * One queue key per image: its SHA-256, then, when the PDQ hash is worth matching (quality
 * at least PDQ_MIN_QUALITY; the server does not index flatter images), the PDQ hash, then
 * the mirror hash when there is one that differs from it: `sha256`, `sha256|pdq` or
 * `sha256|pdq|mirrored`. (Fingerprints remembered before mirror hashes existed have no
 * `mirrored`: their keys are the two-part form, as before.)
 * @param {string} sha256
 * @param {{hash: string | null, quality: number, mirrored?: string | null} | null | undefined} pdq
 */
export function lookupKey(sha256, pdq) {
  const usable = pdq && isPdqHex(pdq.hash) && pdq.quality >= PDQ_MIN_QUALITY;
  if (!usable) return sha256;
  const hash = pdq.hash.toLowerCase();
  const mirrored = isPdqHex(pdq.mirrored) ? pdq.mirrored.toLowerCase() : null;
  return mirrored && mirrored !== hash ? `${sha256}|${hash}|${mirrored}` : `${sha256}|${hash}`;
}

/** @returns {{sha256: string, pdq: string | null, mirrored: string | null}} */
export function parseLookupKey(key) {
  const [sha256, pdq = null, mirrored = null] = String(key).split('|');
  return { sha256, pdq: pdq || null, mirrored: (pdq && mirrored) || null };
}

/** How many of the request's keys one queue key uses: 1 (sha256), plus 1 per PDQ hash. */
export function lookupKeyWeight(key) {
  const { pdq, mirrored } = parseLookupKey(key);
  return 1 + (pdq ? 1 : 0) + (mirrored ? 1 : 0);
}

/** Splits a list into pieces of at most `size`. */
function chunks(list, size) {
  const out = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** The closest near match for `pdq` that is another image, from a lookup's `near` list. */
export function closestNearMatch(near, pdq, ownSha256) {
  let best = null;
  for (const match of Array.isArray(near) ? near : []) {
    if (String(match?.pdq ?? '').toLowerCase() !== pdq) continue;
    if (!isSha256Hex(match.sha256) || match.sha256 === ownSha256) continue;
    const distance = Number(match.distance);
    if (!Number.isInteger(distance) || distance < 0) continue;
    if (!best || distance < best.distance) best = { sha256: match.sha256, distance };
  }
  return best;
}

/**
 * The closest near match for an image, by its own PDQ hash or by its mirror hash: the
 * smaller distance wins (its own hash on a tie), and `mirrored` says which hash matched.
 * @returns {{sha256: string, distance: number, mirrored: boolean} | null}
 */
export function closestHintMatch(near, { pdq, mirrored = null }, ownSha256) {
  const plain = pdq ? closestNearMatch(near, pdq, ownSha256) : null;
  const flipped = mirrored ? closestNearMatch(near, mirrored, ownSha256) : null;
  if (flipped && (!plain || flipped.distance < plain.distance)) return { ...flipped, mirrored: true };
  return plain ? { ...plain, mirrored: false } : null;
}

/**
 * Runs one batch of queue keys: one /v1/lookup with every sha256 and PDQ hash (own and
 * mirrored); then, for images with no result of their own but a near match, the matched
 * images' analyses (from `cached(sha256)` when this browser has them, else one more
 * /v1/lookup by sha256).
 * @param {{lookup(sha256s: string[], options?: {pdqs?: string[]}): Promise<{results: object, near?: object[]}>}} client
 * @param {string[]} keys queue keys (see lookupKey); at most LOOKUP_MAX_KEYS in weight
 * @param {{cached?: (sha256: string) => Promise<object | undefined>}} [options]
 * @returns {Promise<Map<string, {analysis: object | null, hint: {sha256: string, distance: number, mirrored: boolean, analysis: object} | null}>>}
 */
export async function runLookupBatch(client, keys, { cached = async () => undefined } = {}) {
  const parsed = keys.map((key) => [key, parseLookupKey(key)]);
  const shas = [...new Set(parsed.map(([, p]) => p.sha256))];
  const pdqs = [...new Set(parsed.flatMap(([, p]) => [p.pdq, p.mirrored]).filter(Boolean))];
  const answer = await client.lookup(shas, { pdqs });
  const results = answer?.results && typeof answer.results === 'object' ? answer.results : {};
  const own = (sha256) => (Object.hasOwn(results, sha256) ? results[sha256] : null);

  const matches = new Map();
  for (const [key, { sha256, pdq, mirrored }] of parsed) {
    if (own(sha256) || !pdq) continue;
    const match = closestHintMatch(answer?.near, { pdq, mirrored }, sha256);
    if (match) matches.set(key, match);
  }

  // The matched images' analyses: what this answer or the browser's cache holds, then the rest.
  const similar = new Map();
  const missing = [];
  for (const { sha256 } of matches.values()) {
    if (similar.has(sha256) || missing.includes(sha256)) continue;
    const known = own(sha256) ?? (await cached(sha256));
    if (known) similar.set(sha256, known);
    else missing.push(sha256);
  }
  for (const piece of chunks(missing, LOOKUP_MAX_KEYS)) {
    const more = await client.lookup(piece, { pdqs: [] });
    for (const sha256 of piece) {
      if (more?.results && Object.hasOwn(more.results, sha256) && more.results[sha256]) {
        similar.set(sha256, more.results[sha256]);
      }
    }
  }

  const out = new Map();
  for (const [key, { sha256 }] of parsed) {
    const analysis = own(sha256);
    const match = matches.get(key);
    const hint = !analysis && match && similar.has(match.sha256)
      ? { sha256: match.sha256, distance: match.distance, mirrored: match.mirrored, analysis: similar.get(match.sha256) }
      : null;
    out.set(key, { analysis: analysis ?? null, hint });
  }
  return out;
}
