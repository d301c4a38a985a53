/**
 * How the service worker gets an image's bytes. Every network request for an image is
 * made here, by the worker; the page's content script only reads what needs no request.
 */

import { mayFetchForPage } from '../lib/address-space.js';
import { base64ToBytes } from '../lib/base64.js';
import { messageTarget } from './content-scripts.js';
import { imageFormatOf } from '../lib/image-size.js';
import { ImageFetchError, ImageUnavailableError, MAX_IMAGE_BYTES } from '../lib/problem.js';
import { readAtMost } from '../lib/read-at-most.js';
import { RefererRules, refererFor, requestUrlOf } from '../lib/referer.js';
import { originPattern } from '../lib/settings.js';

// Session rules that set the page's Referer on one refused image fetch (lib/referer.js).
// Ids start at random, so they cannot meet a rule a stopped worker failed to remove.
const refererRules = new RefererRules(chrome.declarativeNetRequest, chrome.runtime.id, {
  firstId: 1 + Math.floor(Math.random() * 2 ** 30),
});

/**
 * The image's bytes for a check in the tab `target` ({tabId, frameId, documentId, documentUrl}):
 * - `via: 'worker'`: the worker fetches it (host permissions, no cookies, no Referer);
 * - `via: 'worker-referer'`: the site refused that (an HTTP error: hotlink protection
 *   wants its own page as Referer), so the worker asks again as the page's <img> would,
 *   with the page's Referer (a declarativeNetRequest session rule for this one fetch,
 *   lib/referer.js) and the site's cookies;
 * - `via: 'page'`: the content script reads what needs no request: the page's own blob:
 *   URL, or an <img> already showing it, drawn to a canvas (PNG re-encode).
 * The worker does not fetch an image on this computer or the local network for a frame that is
 * not (lib/address-space.js): the page may not reach it itself, and would see its verdict.
 */
export async function readImage(srcUrl, target) {
  const reasons = [];
  const statuses = [];
  const inward = !mayFetchForPage(srcUrl, target.documentUrl);
  if (inward) {
    reasons.push('the image is on this computer or the local network, and the page is not');
  } else if (/^(https?|data):/i.test(srcUrl) || localFileOfLocalPage(srcUrl, target.documentUrl)) {
    let refusedStatus = 0;
    try {
      const image = await fetchImageBytes(srcUrl);
      if (/^file:/i.test(srcUrl) && !imageFormatOf(image.bytes)) {
        // A local page chose this address, and may have laid it over another picture: a file
        // that is not an image (a document, a key, a folder's listing) never leaves the computer.
        throw new ImageUnavailableError(srcUrl, ['its first bytes name no image format'], { canGrant: false, notImage: true });
      }
      return { ...image, via: 'worker' };
    } catch (error) {
      if (error instanceof ImageUnavailableError) throw error;
      // Too large is too large for the page as well: do not download it a second time.
      if (error.tooLarge) throw new ImageUnavailableError(srcUrl, [error.message], { tooLarge: true });
      statuses.push(error.status ?? 0);
      refusedStatus = error.status ?? 0;
      reasons.push(`the extension’s request failed (${error.message})`);
    }
    const requestUrl = requestUrlOf(srcUrl);
    const referer = refererFor(srcUrl, target.documentUrl);
    if (refusedStatus > 0 && requestUrl && referer) {
      try {
        const image = await fetchImageBytes(srcUrl, { referer, credentials: 'include', cache: 'no-store' });
        return { ...image, via: 'worker-referer' };
      } catch (error) {
        if (error.tooLarge) throw new ImageUnavailableError(srcUrl, [error.message], { tooLarge: true });
        statuses.push(error.status ?? 0);
        reasons.push(`the extension’s request as the page failed (${error.message})`);
      }
    }
  }
  let pageTooLarge = false;
  try {
    const reply = await chrome.tabs.sendMessage(target.tabId, { type: 'fakescope:read-image', srcUrl }, messageTarget(target));
    if (reply?.ok) return { bytes: base64ToBytes(reply.base64), contentType: reply.contentType, via: 'page' };
    pageTooLarge = Boolean(reply?.tooLarge);
    // The page reads without requests: a status only comes from reading a blob: that is gone.
    if (reply?.status) statuses.push(Number(reply.status));
    reasons.push(`the page could not read it (${reply?.error ?? 'no answer'})`);
  } catch (error) {
    statuses.push(0);
    reasons.push(`the page could not read it (${error.message})`);
  }
  const notFound = statuses.length > 0 && statuses.every((status) => status === 404 || status === 410);
  throw new ImageUnavailableError(srcUrl, reasons, {
    notFound,
    tooLarge: pageTooLarge,
    inward,
    canGrant: !inward && (await mayAskForImageSite(srcUrl)),
  });
}

/**
 * Whether the worker reads `srcUrl` as a local file: a `file:///` address (this computer's, not a
 * network share's `file://host/`) of an image in a `file:` page (the user allowed file access;
 * the menu click grants it to the tab). Only image files are then sent (readImage).
 */
function localFileOfLocalPage(srcUrl, documentUrl) {
  return /^file:\/\/\//i.test(srcUrl) && /^file:/i.test(documentUrl ?? '');
}

/** Whether allowing the image's site (Options → Image sites) could help: not yet allowed. */
async function mayAskForImageSite(srcUrl) {
  if (!/^https?:/i.test(srcUrl)) return false;
  try {
    return !(await chrome.permissions.contains({ origins: [originPattern(srcUrl)] }));
  } catch {
    return true;
  }
}

/**
 * One image's bytes, fetched by the worker: with no cookies and no Referer, or (`referer`)
 * as the page's <img> would ask. Every request goes through refererRules, so it never
 * carries a Referer rule meant for another request of the same address.
 */
export async function fetchImageBytes(url, { referer = null, credentials = 'omit', cache = 'force-cache' } = {}) {
  let response;
  try {
    const request = () => fetch(url, { credentials, cache });
    const requestUrl = requestUrlOf(url);
    if (referer && !requestUrl) throw new Error('this address cannot carry a Referer rule');
    response = await (requestUrl ? refererRules.send(requestUrl, referer, request) : request());
  } catch (error) {
    throw new ImageFetchError(String(error?.message ?? error));
  }
  if (!response.ok) throw new ImageFetchError(`HTTP ${response.status}`, { status: response.status });
  const declared = Number(response.headers.get('Content-Length') ?? 0);
  const tooLarge = () => new ImageFetchError(`larger than ${MAX_IMAGE_BYTES / (1024 * 1024)} MiB`, { tooLarge: true });
  if (declared > MAX_IMAGE_BYTES) {
    response.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  // No (or a false) Content-Length: the download stops once it passes the limit.
  const bytes = await readAtMost(response.body, MAX_IMAGE_BYTES);
  if (bytes === null) throw tooLarge();
  if (bytes.length === 0) throw new ImageFetchError('empty response');
  return { bytes, contentType: response.headers.get('Content-Type') ?? 'application/octet-stream' };
}
