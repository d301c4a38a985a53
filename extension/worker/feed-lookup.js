/**
 * Feed mode in the service worker: the badges' verdicts and hints for the images a page
 * shows. Each image is fingerprinted here (SHA-256 of its bytes, PDQ of its pixels) and
 * only the fingerprints go to /v1/lookup, in batches (lib/lookup.js): the server answers
 * for images someone already checked. No image bytes leave the browser.
 */

import { mayFetchForPage } from '../lib/address-space.js';
import { ASPECTS } from '../lib/aspects.js';
import { feedScope } from '../lib/cache.js';
import { sha256Hex } from '../lib/hash.js';
import { feedRunsOn } from './feed-scripts.js';
import { fetchImageBytes } from './image-bytes.js';
import { LOOKUP_MAX_KEYS, lookupKey, lookupKeyWeight, runLookupBatch } from '../lib/lookup.js';
import { pdqFromImageBytes } from '../lib/pdq.js';
import { ApiError, describeFailure } from '../lib/problem.js';
import { BatchQueue, QueueFullError, createLimiter } from '../lib/queue.js';
import { clientFor, currentSettings } from './server-client.js';
import { framePanels, hostOf, measureFrame, openPanel } from './panels.js';
import { analyses, cacheKey, feedHints, imageHashes, imagePdqs, rememberable } from './session-caches.js';
import { describeAnalysis, describeHint, shortVerdict } from '../lib/verdict.js';

const MAX_LOOKUP_URLS_PER_MESSAGE = 32;
const fetchLimit = createLimiter(4);

let lookupQueue = null;

/**
 * One batching queue per server: images hashed here (SHA-256 and PDQ), looked up in batches
 * via /v1/lookup. A key carries one to nine of the request's keys (sha256; pdq, mirrored pdq,
 * three rotation pdqs and three flip pdqs): the queue counts each against the server's limit
 * per request.
 */
function lookupQueueFor(settings) {
  const id = `${settings.serverUrl}|${settings.apiToken}`;
  if (lookupQueue?.id !== id) {
    const client = clientFor(settings);
    const cached = (sha256) => analyses.get(cacheKey(settings, sha256));
    lookupQueue = {
      id,
      queue: new BatchQueue((keys) => runLookupBatch(client, keys, { cached }), {
        maxBatch: 32,
        delayMs: 200,
        maxPending: 256,
        weightOf: lookupKeyWeight,
        maxWeight: LOOKUP_MAX_KEYS,
      }),
    };
  }
  return lookupQueue.queue;
}

/**
 * The image's fingerprints for a feed lookup: SHA-256 of its bytes and PDQ of its pixels
 * (its own hash, its mirror hash, its rotation and flip hashes, see lib/pdq.js), each remembered per address under the
 * page's feed scope (lib/cache.js feedScope). The bytes are fetched (and decoded, here in the
 * worker) only when one of them is not known yet in that scope: what was read for another page,
 * or with a page's cookies, is not asked. An image that cannot be decoded just has no PDQ.
 */
async function fingerprints(url, scope) {
  let sha256 = await imageHashes.get(scope, url);
  let pdq = await imagePdqs.get(scope, url);
  if (!sha256 || pdq === undefined) {
    const started = { hashes: imageHashes.mark(), pdqs: imagePdqs.mark() };
    ({ sha256, pdq } = await fetchLimit(async () => {
      const image = await fetchImageBytes(url);
      return { sha256: await sha256Hex(image.bytes), pdq: (await pdqFromImageBytes(image.bytes)) ?? { hash: null, quality: 0 } };
    }));
    // Not when access was taken back meanwhile (session-caches.js forgetAddressReads).
    if (rememberable(url)) {
      await imageHashes.trySet(scope, url, sha256, { startedAt: started.hashes });
      await imagePdqs.trySet(scope, url, pdq, { startedAt: started.pdqs });
    }
  }
  return { sha256, pdq };
}

/** A server failure that may well pass: a timeout, no connection, or 429/502/503/504. */
function isPassing(error) {
  if (!(error instanceof ApiError)) return false;
  return error.kind === 'timeout' || error.kind === 'network' || [429, 502, 503, 504].includes(error.status);
}

/**
 * Feed lookups for images visible on a page: fingerprint each image here, ask the server
 * for cached verdicts only. An image with no verdict of its own may get a *hint*: it looks
 * like (PDQ near match) an image that was checked, or like a mirrored, rotated or flipped copy
 * of one (near match of its mirror hash, a rotation hash or a flip hash). No image bytes leave
 * the browser.
 *
 * An image is answered only as this page's own feed request (the worker's, without cookies or
 * Referer) reads it: the caches by address answer only what was read that way for this page
 * (feedScope); a verdict learnt elsewhere (a check in another site's frame, with its cookies) is
 * not shown here, and an image this page's request cannot read gets no badge.
 */
export async function lookupImages(urls, sender) {
  const settings = await currentSettings();
  // Feed mode was switched off for this site (or never on), or its permission was taken
  // back, while the page stayed open: its content script must not go on sending
  // fingerprints. It is told to stop.
  if (!(await feedRunsOn(settings, sender?.url ?? ''))) return { ok: true, results: {}, aspects: ASPECTS, failure: null, stopped: true };
  const queue = lookupQueueFor(settings);
  // Feed mode runs in top frames; a frame's page sits in its tab's page.
  const scope = feedScope(sender?.url ?? '', sender?.frameId === 0 ? sender?.url : sender?.tab?.url);
  const results = {};
  // Addresses whose lookup did not happen for a passing reason (the lookup queue had no room:
  // the feeds of many tabs at once; the server timed out, was unreachable or busy): the page
  // asks again later, rather than leaving those images without a badge for good.
  const retry = [];
  let failure = null;
  await Promise.all(
    urls.slice(0, MAX_LOOKUP_URLS_PER_MESSAGE).map(async (url) => {
      results[url] = null;
      if (typeof url !== 'string' || !/^https?:/i.test(url)) return;
      // The page names these addresses: none on this computer or the local network for a page
      // that is not (lib/address-space.js), neither fetched nor answered from the cache.
      if (!mayFetchForPage(url, sender?.url ?? '')) return;
      try {
        const known = await imageHashes.get(scope, url);
        let analysis = known ? await analyses.get(cacheKey(settings, known)) : undefined;
        let hint = null;
        if (!analysis) {
          const { sha256, pdq } = await fingerprints(url, scope);
          analysis = await analyses.get(cacheKey(settings, sha256));
          // A hint already found for these bytes (its badge's panel asks again: worker/panels.js).
          hint = analysis ? null : (await feedHints.get(cacheKey(settings, sha256))) ?? null;
          if (!analysis && !hint) {
            const found = await queue.add(lookupKey(sha256, pdq));
            analysis = found?.analysis ?? null;
            hint = found?.hint ?? null;
            if (analysis) await analyses.trySet(cacheKey(settings, sha256), analysis);
            if (hint) {
              await analyses.trySet(cacheKey(settings, hint.sha256), hint.analysis);
              await feedHints.trySet(cacheKey(settings, sha256), hint);
            }
          }
        }
        if (analysis) results[url] = { view: describeAnalysis(analysis), short: shortVerdict(analysis) };
        else if (hint) {
          const { mirrored, rotated, flipped } = hint;
          results[url] = { hint: describeHint(hint.analysis, hint.distance, { mirrored, rotated, flipped }) };
        }
      } catch (error) {
        // An image the worker cannot read simply gets no badge; a server failure is reported once.
        if (error instanceof ApiError) failure ??= describeFailure(error);
        if (error instanceof QueueFullError || isPassing(error)) retry.push(url);
      }
    }),
  );
  return { ok: failure === null, results, aspects: ASPECTS, failure, retry };
}

/**
 * A feed badge the user clicked (content/feed.js, a real click): a panel in the badge's document
 * (the sender's), over its image, showing the image's verdict or hint as a lookup finds it now
 * (from the session caches, as a rule: the badge was placed from the same lookup). Resolves to
 * the panel's id and state, which the badge's content script opens over the image; the verdict
 * itself goes only into the panel's record.
 */
export async function openFeedPanel(srcUrl, sender) {
  const tabId = sender?.tab?.id;
  const frameId = sender?.frameId ?? 0;
  const { results, aspects, failure } = await lookupImages([srcUrl], sender);
  const found = results[srcUrl];
  if (!found || tabId === undefined) return { ok: false, failure };
  // The badge's document, as it is now: a document that replaced it gets no panel.
  const host = await measureFrame(tabId, frameId);
  if (!host || host.documentId !== sender.documentId) return { ok: false };
  const state = found.hint
    ? { state: 'hint', srcUrl, hint: found.hint }
    : { state: 'result', srcUrl, view: found.view, short: found.short, aspects, cached: true };
  const panel = await openPanel(tabId, sender.tab.url ?? null, hostOf(frameId, host), { frameId, origin: host.origin, note: null });
  await framePanels.show(panel.id, panel.frame, state);
  return { ok: true, framePanel: panel.id, state: state.state };
}
