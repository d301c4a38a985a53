/**
 * Feed lookups: which fingerprints go to POST /v1/lookup, and how its answer becomes, per
 * image, either the image's own verdict (its SHA-256 is known) or a *hint* (its PDQ hash is
 * near the hash of an image that was checked). Pure: the API client is passed in.
 *
 * Each image sends up to eight PDQ hashes: its own, its mirror hash (`mirrored`, from pdq.js:
 * what the image flipped left to right hashes to), its rotation hashes (`rotations`: what
 * it hashes to turned back from a quarter turn clockwise, a half turn, a quarter turn
 * counterclockwise) and its flip hashes (`flips`: what it hashes to flipped back from upside
 * down, or across either diagonal, i.e. mirrored and turned a quarter turn). A mirrored,
 * rotated or flipped repost of a checked picture is ~128 bits from it by its own hash, but the
 * hash that undoes its flip or turn is near the original's: a near match on that hash makes a
 * hint that says the image looks like a *mirrored*, *rotated* or *flipped* copy.
 *
 * A near match is never the image's verdict: it is returned apart, as `hint`, with the
 * similar image's analysis, the distance and whether it matched mirrored, and the
 * extension shows it as a hint.
 */

import { PDQ_MIN_QUALITY, isPdqHex } from './pdq.js';
import { isSha256Hex } from './hash.js';

/** The server's limit of keys (sha256 plus pdq) per /v1/lookup request. */
export const LOOKUP_MAX_KEYS = 500;

/** The rotations a copy may have been turned by, in the key's (and the tie-break's) order. */
export const ROTATIONS = Object.freeze(['clockwise', 'halfTurn', 'counterclockwise']);
/**
 * The flips a copy may have been given, in the key's (and the tie-break's) order: upside down,
 * across the top-left–bottom-right diagonal (mirrored, then a quarter turn counterclockwise),
 * across the other diagonal (mirrored, then a quarter turn clockwise). pdq.js `flips`.
 */
export const FLIPS = Object.freeze(['upsideDown', 'transposed', 'transversed']);

/**
 * One queue key per image: its SHA-256, then, when the PDQ hash is worth matching (quality
 * at least PDQ_MIN_QUALITY; the server does not index flatter images), the PDQ hash, then
 * the mirror hash, then the three rotation hashes (pdq.js `rotations`, in ROTATIONS order),
 * then the three flip hashes (pdq.js `flips`, in FLIPS order), `|`-separated: `sha256`,
 * `sha256|pdq`, `sha256|pdq|mirrored`, `sha256|pdq|mirrored|clockwise|halfTurn|counterclockwise`
 * or `…|counterclockwise|upsideDown|transposed|transversed`. A hash equal to one before it
 * (it could only match where that one does, and that one wins the tie) or missing is left
 * empty (`sha256|pdq||…`), and trailing empty parts are dropped. Keys remembered by older
 * versions (before mirror hashes, before rotation hashes, before flip hashes) are these same
 * shorter forms.
 * @param {string} sha256
 * @param {{hash: string | null, quality: number, mirrored?: string | null,
 *   rotations?: {clockwise?: string, halfTurn?: string, counterclockwise?: string} | null,
 *   flips?: {upsideDown?: string, transposed?: string, transversed?: string} | null} | null | undefined} pdq
 */
export function lookupKey(sha256, pdq) {
  const usable = pdq && isPdqHex(pdq.hash) && pdq.quality >= PDQ_MIN_QUALITY;
  if (!usable) return sha256;
  const hex = (value) => (isPdqHex(value) ? value.toLowerCase() : '');
  const parts = [
    hex(pdq.hash),
    hex(pdq.mirrored),
    ...ROTATIONS.map((name) => hex(pdq.rotations?.[name])),
    ...FLIPS.map((name) => hex(pdq.flips?.[name])),
  ];
  const kept = parts.map((hash, index) => (hash && !parts.slice(0, index).includes(hash) ? hash : ''));
  while (kept.length > 1 && !kept.at(-1)) kept.pop();
  return [sha256, ...kept].join('|');
}

/**
 * The parts of a queue key (any version's form; an empty part is null).
 * @returns {{sha256: string, pdq: string | null, mirrored: string | null,
 *   rotations: {clockwise: string | null, halfTurn: string | null, counterclockwise: string | null},
 *   flips: {upsideDown: string | null, transposed: string | null, transversed: string | null}}}
 */
export function parseLookupKey(key) {
  const [sha256, pdq, mirrored, ...rest] = String(key).split('|');
  const turned = rest.slice(0, ROTATIONS.length);
  const flipped = rest.slice(ROTATIONS.length);
  const part = (value) => (pdq && value) || null;
  return {
    sha256,
    pdq: pdq || null,
    mirrored: part(mirrored),
    rotations: Object.fromEntries(ROTATIONS.map((name, index) => [name, part(turned[index])])),
    flips: Object.fromEntries(FLIPS.map((name, index) => [name, part(flipped[index])])),
  };
}

/** The PDQ hashes a queue key sends: its own, the mirror hash, the rotation and flip hashes. */
function keyHashes({ pdq, mirrored, rotations, flips }) {
  return [pdq, mirrored, ...ROTATIONS.map((name) => rotations[name]), ...FLIPS.map((name) => flips[name])].filter(
    Boolean,
  );
}

/** How many of the request's keys one queue key uses: 1 (sha256), plus 1 per PDQ hash. */
export function lookupKeyWeight(key) {
  return 1 + keyHashes(parseLookupKey(key)).length;
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
 * The closest near match for an image, by its own PDQ hash, its mirror hash, a rotation hash
 * or a flip hash: the smaller distance wins; on a tie its own hash, then the mirror hash, then
 * the rotations in ROTATIONS order, then the flips in FLIPS order. `mirrored` says the mirror
 * hash matched; `rotated` names the turn a rotation hash undid (the copy looks turned that way
 * from the original), or is null; `flipped` names the flip a flip hash undid (FLIPS), or is
 * null. Where the image's own hash matches the chosen image too, the hint is plain (a
 * symmetric picture's copy matches by its flipped or turned hashes as well).
 * @returns {{sha256: string, distance: number, mirrored: boolean,
 *   rotated: 'clockwise' | 'halfTurn' | 'counterclockwise' | null,
 *   flipped: 'upsideDown' | 'transposed' | 'transversed' | null} | null}
 */
export function closestHintMatch(near, { pdq, mirrored = null, rotations = {}, flips = {} }, ownSha256) {
  const candidates = [
    [pdq, { mirrored: false, rotated: null, flipped: null }],
    [mirrored, { mirrored: true, rotated: null, flipped: null }],
    ...ROTATIONS.map((name) => [rotations?.[name], { mirrored: false, rotated: name, flipped: null }]),
    ...FLIPS.map((name) => [flips?.[name], { mirrored: false, rotated: null, flipped: name }]),
  ];
  let best = null;
  for (const [hash, how] of candidates) {
    const match = hash ? closestNearMatch(near, hash, ownSha256) : null;
    if (match && (!best || match.distance < best.distance)) best = { ...match, ...how };
  }
  // A symmetric picture (a logo, a mandala) matches a plain copy by its mirror or rotation
  // hashes too, maybe closer: when its own hash also matches that image, it is a plain copy.
  const transformed = best && (best.mirrored || best.rotated || best.flipped);
  const plain = transformed && pdq ? distanceTo(near, pdq, best.sha256) : null;
  return plain === null
    ? best
    : { sha256: best.sha256, distance: plain, mirrored: false, rotated: null, flipped: null };
}

/** The distance `near` gives between hash `pdq` and image `sha256`, or null when none. */
function distanceTo(near, pdq, sha256) {
  const found = (Array.isArray(near) ? near : []).filter((match) => String(match?.pdq ?? '').toLowerCase() === pdq
    && match.sha256 === sha256 && Number.isInteger(Number(match.distance)) && Number(match.distance) >= 0);
  return found.length ? Math.min(...found.map((match) => Number(match.distance))) : null;
}

/**
 * Runs one batch of queue keys: one /v1/lookup with every sha256 and PDQ hash (own,
 * mirrored, rotated, flipped); then, for images with no result of their own but a near match, the matched
 * images' analyses (from `cached(sha256)` when this browser has them, else one more
 * /v1/lookup by sha256).
 * @param {{lookup(sha256s: string[], options?: {pdqs?: string[]}): Promise<{results: object, near?: object[]}>}} client
 * @param {string[]} keys queue keys (see lookupKey); at most LOOKUP_MAX_KEYS in weight
 * @param {{cached?: (sha256: string) => Promise<object | undefined>}} [options]
 * @returns {Promise<Map<string, {analysis: object | null, hint: {sha256: string, distance: number, mirrored: boolean, rotated: string | null, flipped: string | null, analysis: object} | null}>>}
 */
export async function runLookupBatch(client, keys, { cached = async () => undefined } = {}) {
  const parsed = keys.map((key) => [key, parseLookupKey(key)]);
  const shas = [...new Set(parsed.map(([, p]) => p.sha256))];
  const pdqs = [...new Set(parsed.flatMap(([, p]) => keyHashes(p)))];
  const answer = await client.lookup(shas, { pdqs });
  const results = answer?.results && typeof answer.results === 'object' ? answer.results : {};
  const own = (sha256) => (Object.hasOwn(results, sha256) ? results[sha256] : null);

  const matches = new Map();
  for (const [key, { sha256, pdq, mirrored, rotations, flips }] of parsed) {
    if (own(sha256) || !pdq) continue;
    const match = closestHintMatch(answer?.near, { pdq, mirrored, rotations, flips }, sha256);
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
      ? {
          sha256: match.sha256,
          distance: match.distance,
          mirrored: match.mirrored,
          rotated: match.rotated,
          flipped: match.flipped,
          analysis: similar.get(match.sha256),
        }
      : null;
    out.set(key, { analysis: analysis ?? null, hint });
  }
  return out;
}
