/**
 * FakeScope service worker: the only part of the extension that talks to the
 * network. It owns the context menu, reads image bytes, calls the server, keeps
 * the short-lived cache, and relays answers to the content scripts.
 *
 * Follow one right-click: contextMenus.onClicked → handleMenuClick → readImage
 * (worker fetch; refused: again with the page's Referer; else the page's content
 * script, for blob: images and a canvas) → ApiClient.analyze → the overlay
 * content script (content/overlay.js) renders describeAnalysis(...).
 */

import { ApiClient } from './lib/api.js';
import { ASPECTS, InvalidQuestionError, askBody } from './lib/aspects.js';
import { base64ToBytes } from './lib/base64.js';
import { TtlCache } from './lib/cache.js';
import { sha256Hex, isSha256Hex } from './lib/hash.js';
import { LOOKUP_MAX_KEYS, lookupKey, lookupKeyWeight, runLookupBatch } from './lib/lookup.js';
import { pdqFromImageBytes } from './lib/pdq.js';
import { ApiError, ImageFetchError, ImageUnavailableError, MAX_IMAGE_BYTES, describeFailure } from './lib/problem.js';
import { BatchQueue, createLimiter } from './lib/queue.js';
import { recentChecks } from './lib/recent.js';
import { RefererRules, refererFor, requestUrlOf } from './lib/referer.js';
import { isFeedEnabled, loadSettings, originPattern, validateServerUrl, validateToken } from './lib/settings.js';
import { describeAnalysis, describeHint, shortVerdict } from './lib/verdict.js';

const MENU_ID = 'fakescope-check';
const FEED_SCRIPT_ID = 'fakescope-feed';
const OVERLAY_SCRIPT = 'content/overlay.js';
const CHECK_SCRIPTS = ['content/page-image.js', OVERLAY_SCRIPT];
const FEED_SCRIPTS = [OVERLAY_SCRIPT, 'content/feed.js'];
const ANALYSIS_TTL_MS = 10 * 60 * 1000;
const MAX_LOOKUP_URLS_PER_MESSAGE = 32;
// Image addresses longer than this are not remembered (a data: URL carries the whole image:
// as a storage key it would fill the 10 MB session area in a few checks).
const MAX_REMEMBERED_URL_LENGTH = 2048;

// Short-lived caches in chrome.storage.session: kept in memory, cleared when the
// browser closes, not readable by content scripts. Keys include the server URL
// so switching servers never shows another server's verdicts.
const analyses = new TtlCache(chrome.storage.session, { prefix: 'analysis:', ttlMs: ANALYSIS_TTL_MS });
const imageHashes = new TtlCache(chrome.storage.session, { prefix: 'url:', ttlMs: ANALYSIS_TTL_MS });
// The PDQ hash (and quality, and mirror hash `mirrored`) of the pixels at an image address,
// computed here for feed lookups; {hash: null} remembers an image that could not be decoded.
// Entries remembered without `mirrored` (older versions) still look up by their own hash.
const imagePdqs = new TtlCache(chrome.storage.session, { prefix: 'pdq:', ttlMs: ANALYSIS_TTL_MS });
const fetchLimit = createLimiter(4);
// Session rules that set the page's Referer on one refused image fetch (lib/referer.js).
// Ids start at random, so they cannot meet a rule a stopped worker failed to remove.
const refererRules = new RefererRules(chrome.declarativeNetRequest, chrome.runtime.id, {
  firstId: 1 + Math.floor(Math.random() * 2 ** 30),
});

// --- registration (top level, so the listeners exist every time the worker wakes) ---

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_ID, title: 'Check with FakeScope', contexts: ['image'] });
  });
  syncFeedScripts();
});
chrome.runtime.onStartup.addListener(() => syncFeedScripts());
chrome.contextMenus.onClicked.addListener((info, tab) => {
  handleMenuClick(info, tab).catch((error) => console.warn('FakeScope: the check failed', error));
});
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === 'local' && changes.settings) syncFeedScripts();
});
chrome.permissions.onAdded.addListener(() => syncFeedScripts());
chrome.permissions.onRemoved.addListener(() => syncFeedScripts());
chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (sender.id !== chrome.runtime.id) return false;
  const handler = MESSAGE_HANDLERS[message?.type];
  if (!handler) return false;
  // The options page and the popup may test servers and start feed mode; content scripts
  // (which run inside web pages) may not.
  if (EXTENSION_PAGE_ONLY.has(message.type) && !isExtensionPage(sender)) return false;
  handler(message, sender).then(sendResponse, (error) => sendResponse({ ok: false, failure: describeFailure(error) }));
  return true; // answer asynchronously
});
chrome.runtime.onConnect.addListener((port) => {
  if (port.name === 'fakescope-ask' && port.sender?.id === chrome.runtime.id) relayAnswer(port);
});

// --- settings and clients ---

async function currentSettings() {
  return loadSettings(chrome.storage.local);
}

function clientFor(settings) {
  return new ApiClient({ baseUrl: settings.serverUrl, token: settings.apiToken });
}

const cacheKey = (settings, sha256) => `${settings.serverUrl}|${sha256}`;

// --- right-click check ---

/**
 * Handles "Check with FakeScope" on an image. Exposed on `self` so browser
 * tests can call it (the native context menu cannot be clicked by automation).
 * Resolves to what happened, for tests and logs; the user sees the overlay.
 */
export async function handleMenuClick(info, tab) {
  if (info?.menuItemId !== MENU_ID || !info.srcUrl || tab?.id === undefined) {
    return { ok: false, reason: 'not an image check' };
  }
  // documentUrl: the frame the image is in, whose address the browser sent as Referer.
  const target = { tabId: tab.id, frameId: info.frameId ?? 0, documentUrl: info.frameUrl ?? info.pageUrl ?? tab.url };
  try {
    await injectOverlay(target);
  } catch (error) {
    // Browser pages, the web store and some viewers refuse scripts: say so on the toolbar icon.
    const failure = {
      title: 'FakeScope cannot show results on this page',
      message: String(error?.message ?? error),
      guidance: 'Open the image in its own tab and check it there.',
    };
    await flagOnToolbar(tab.id, failure);
    return { ok: false, failure };
  }
  return checkAndShow(info.srcUrl, target, tab.url ?? info.pageUrl ?? null);
}

async function flagOnToolbar(tabId, failure) {
  try {
    await chrome.action.setBadgeBackgroundColor({ tabId, color: '#a4001d' });
    await chrome.action.setBadgeText({ tabId, text: '!' });
    await chrome.action.setTitle({ tabId, title: `FakeScope: ${failure.title}. ${failure.guidance}` });
  } catch {
    // The tab was closed meanwhile: nobody to tell.
  }
}

async function checkAndShow(srcUrl, target, pageUrl) {
  await showInTab(target, { state: 'loading', srcUrl });
  let outcome;
  let shown;
  try {
    const { analysis, cached, via } = await checkImage(srcUrl, target, pageUrl);
    outcome = { ok: true, sha256: analysis.sha256, cached, via };
    shown = {
      state: 'result', srcUrl, view: describeAnalysis(analysis), short: shortVerdict(analysis), aspects: ASPECTS, cached,
    };
  } catch (error) {
    const failure = describeFailure(error);
    outcome = { ok: false, failure };
    shown = { state: 'error', srcUrl, failure };
  }
  try {
    await showInTab(target, shown);
  } catch (error) {
    // The tab navigated away or closed while the server worked: the result has no one to show it.
    return { ...outcome, shown: false, reason: String(error?.message ?? error) };
  }
  return outcome;
}

async function injectOverlay(target) {
  await chrome.scripting.executeScript({
    target: { tabId: target.tabId, frameIds: [target.frameId] },
    files: CHECK_SCRIPTS,
  });
}

async function showInTab(target, payload) {
  await chrome.tabs.sendMessage(target.tabId, { type: 'fakescope:overlay', ...payload }, { frameId: target.frameId });
}

/** The analysis for an image: from the session cache when this image was checked recently. */
/** Whether an image address is worth remembering (its sha256) for a later check or lookup. */
function rememberable(url) {
  return /^https?:/i.test(url) && url.length <= MAX_REMEMBERED_URL_LENGTH;
}

async function checkImage(srcUrl, target, pageUrl) {
  const settings = await currentSettings();
  const knownSha = rememberable(srcUrl) ? await imageHashes.get(srcUrl) : undefined;
  if (knownSha) {
    const cached = await analyses.get(cacheKey(settings, knownSha));
    if (cached) return { analysis: cached, cached: true, via: 'cache' };
  }
  const image = await readImage(srcUrl, target);
  const sha256 = await sha256Hex(image.bytes);
  let analysis = await analyses.get(cacheKey(settings, sha256));
  const cached = Boolean(analysis);
  if (!analysis) {
    analysis = await whileKeepingAlive(
      clientFor(settings).analyze(image.bytes, { filename: fileNameOf(srcUrl), contentType: image.contentType }),
    );
    if (!isSha256Hex(analysis?.sha256) || typeof analysis.label !== 'string') {
      throw new ApiError('protocol', 'The analysis has no sha256 or label.', { serverUrl: settings.serverUrl });
    }
    await analyses.trySet(cacheKey(settings, analysis.sha256), analysis);
  }
  if (rememberable(srcUrl)) await imageHashes.trySet(srcUrl, analysis.sha256);
  try {
    await rememberRecent(analysis, srcUrl, pageUrl);
  } catch (error) {
    console.warn('FakeScope: could not update the recent checks', error); // the verdict still shows
  }
  return { analysis, cached, via: image.via };
}

/**
 * Chrome stops a service worker idle for 30 s even while a fetch is pending; a
 * model explanation can take longer. A cheap extension call every 20 s counts
 * as activity until the promise settles.
 */
async function whileKeepingAlive(promise) {
  const timer = setInterval(() => chrome.runtime.getPlatformInfo(), 20_000);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}

function fileNameOf(url) {
  try {
    const name = new URL(url).pathname.split('/').pop();
    return name && name.length <= 100 ? name : 'image';
  } catch {
    return 'image';
  }
}

/**
 * The image's bytes, every network request made here, by the worker:
 * - `via: 'worker'`: the worker fetches it (host permissions, no cookies, no Referer);
 * - `via: 'worker-referer'`: the site refused that (an HTTP error: hotlink protection
 *   wants its own page as Referer), so the worker asks again as the page's <img> would,
 *   with the page's Referer (a declarativeNetRequest session rule for this one fetch,
 *   lib/referer.js) and the site's cookies;
 * - `via: 'page'`: the content script reads what needs no request: the page's own blob:
 *   URL, or an <img> already showing it, drawn to a canvas (PNG re-encode).
 */
async function readImage(srcUrl, target) {
  const reasons = [];
  const statuses = [];
  if (/^(https?|data):/i.test(srcUrl)) {
    let refusedStatus = 0;
    try {
      return { ...(await fetchImageBytes(srcUrl)), via: 'worker' };
    } catch (error) {
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
    const reply = await chrome.tabs.sendMessage(
      target.tabId,
      { type: 'fakescope:read-image', srcUrl },
      { frameId: target.frameId },
    );
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
    canGrant: await mayAskForImageSite(srcUrl),
  });
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
async function fetchImageBytes(url, { referer = null, credentials = 'omit', cache = 'force-cache' } = {}) {
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
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.length > MAX_IMAGE_BYTES) throw tooLarge(); // no (or a false) Content-Length
  if (bytes.length === 0) throw new ImageFetchError('empty response');
  return { bytes, contentType: response.headers.get('Content-Type') ?? 'application/octet-stream' };
}

const rememberCheck = recentChecks(chrome.storage.local);

async function rememberRecent(analysis, imageUrl, pageUrl) {
  await rememberCheck({
    sha256: analysis.sha256,
    imageUrl: imageUrl.startsWith('data:') ? 'data: image' : imageUrl.slice(0, 500),
    pageUrl: pageUrl ? pageUrl.slice(0, 500) : null,
    verdict: shortVerdict(analysis),
    label: analysis.label,
    at: Date.now(),
  });
}

// --- feed mode ---

let lookupQueue = null;

/**
 * One batching queue per server: images hashed here (SHA-256 and PDQ), looked up in batches
 * via /v1/lookup. A key carries one to three of the request's keys (sha256, pdq, mirrored
 * pdq): the queue counts each against the server's limit per request.
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
 * (its own hash and its mirror hash, see lib/pdq.js), each remembered per address. The
 * bytes are fetched (and decoded, here in the worker) only when one of them is not known
 * yet. An image that cannot be decoded just has no PDQ.
 */
async function fingerprints(url) {
  let sha256 = await imageHashes.get(url);
  let pdq = await imagePdqs.get(url);
  if (!sha256 || pdq === undefined) {
    ({ sha256, pdq } = await fetchLimit(async () => {
      const image = await fetchImageBytes(url);
      return { sha256: await sha256Hex(image.bytes), pdq: (await pdqFromImageBytes(image.bytes)) ?? { hash: null, quality: 0 } };
    }));
    if (rememberable(url)) {
      await imageHashes.trySet(url, sha256);
      await imagePdqs.trySet(url, pdq);
    }
  }
  return { sha256, pdq };
}

/**
 * Feed lookups for images visible on a page: fingerprint each image here, ask the server
 * for cached verdicts only. An image with no verdict of its own may get a *hint*: it looks
 * like (PDQ near match) an image that was checked, or like a mirrored copy of one (near
 * match of its mirror hash). No image bytes leave the browser.
 */
async function lookupImages(urls, sender) {
  const settings = await currentSettings();
  // Feed mode was switched off for this site (or never on) while the page stayed open: its
  // content script must not go on sending fingerprints. It is told to stop.
  if (!isFeedEnabled(settings, sender?.url ?? '')) return { ok: true, results: {}, aspects: ASPECTS, failure: null, stopped: true };
  const queue = lookupQueueFor(settings);
  const results = {};
  let failure = null;
  await Promise.all(
    urls.slice(0, MAX_LOOKUP_URLS_PER_MESSAGE).map(async (url) => {
      results[url] = null;
      if (typeof url !== 'string' || !/^https?:/i.test(url)) return;
      try {
        const known = await imageHashes.get(url);
        let analysis = known ? await analyses.get(cacheKey(settings, known)) : undefined;
        let hint = null;
        if (!analysis) {
          const { sha256, pdq } = await fingerprints(url);
          analysis = await analyses.get(cacheKey(settings, sha256));
          if (!analysis) {
            const found = await queue.add(lookupKey(sha256, pdq));
            analysis = found?.analysis ?? null;
            hint = found?.hint ?? null;
            if (analysis) await analyses.trySet(cacheKey(settings, sha256), analysis);
            if (hint) await analyses.trySet(cacheKey(settings, hint.sha256), hint.analysis);
          }
        }
        if (analysis) results[url] = { view: describeAnalysis(analysis), short: shortVerdict(analysis) };
        else if (hint) results[url] = { hint: describeHint(hint.analysis, hint.distance, { mirrored: hint.mirrored }) };
      } catch (error) {
        // An image the worker cannot read simply gets no badge; a server failure is reported once.
        if (error instanceof ApiError) failure ??= describeFailure(error);
      }
    }),
  );
  return { ok: failure === null, results, aspects: ASPECTS, failure };
}

let feedSync = Promise.resolve();

/** Registers the feed content scripts for exactly the sites switched on (and permitted). */
export function syncFeedScripts() {
  feedSync = feedSync.then(syncFeedScriptsNow, syncFeedScriptsNow);
  // Callers are event listeners that do not wait: log a failure here instead of leaving an
  // unhandled rejection (the next sync starts afresh either way).
  feedSync.catch((error) => console.warn('FakeScope: feed script registration failed', error));
  return feedSync;
}

async function syncFeedScriptsNow() {
  const settings = await currentSettings();
  const matches = [];
  for (const site of settings.feedSites) {
    if (await chrome.permissions.contains({ origins: [originPattern(site)] })) matches.push(`${site}/*`);
  }
  const existing = await chrome.scripting.getRegisteredContentScripts({ ids: [FEED_SCRIPT_ID] });
  if (existing.length) await chrome.scripting.unregisterContentScripts({ ids: [FEED_SCRIPT_ID] });
  if (matches.length) {
    await chrome.scripting.registerContentScripts([
      { id: FEED_SCRIPT_ID, matches, js: FEED_SCRIPTS, runAt: 'document_idle', persistAcrossSessions: true },
    ]);
  }
  return matches;
}

// --- questions, reports, status ---

/** Streams an answer from /v1/ask to the overlay through a Port, piece by piece. */
function relayAnswer(port) {
  const controller = new AbortController();
  port.onDisconnect.addListener(() => controller.abort());
  port.onMessage.addListener(async (request) => {
    try {
      const body = askBody(request?.sha256, request);
      const settings = await currentSettings();
      const answer = await whileKeepingAlive(
        clientFor(settings).ask(body, {
          signal: controller.signal,
          onText: (text) => port.postMessage({ type: 'text', text }),
        }),
      );
      port.postMessage({ type: 'done', answer });
    } catch (error) {
      if (controller.signal.aborted) return;
      const failure = error instanceof InvalidQuestionError
        ? { title: 'Cannot ask that', message: error.message, guidance: '' }
        : describeFailure(error);
      port.postMessage({ type: 'error', failure });
    }
  });
}

const REPORT_LABELS = new Set(['fake', 'real', 'uncertain']);

/** Messages only the extension's own pages (options, popup) may send. */
const EXTENSION_PAGE_ONLY = new Set(['fakescope:test-connection', 'fakescope:start-feed', 'fakescope:status']);

function isExtensionPage(sender) {
  return typeof sender.url === 'string' && sender.url.startsWith(chrome.runtime.getURL(''));
}

const MESSAGE_HANDLERS = {
  /** The overlay's "report a wrong verdict" form. */
  'fakescope:report': async (message) => {
    if (!isSha256Hex(message.sha256)) throw new TypeError('Unknown image.');
    const reason = String(message.reason ?? '').trim().slice(0, 2000);
    if (!reason) return { ok: false, failure: { title: 'Say what is wrong', message: 'Describe why the verdict is wrong.', guidance: '' } };
    const suggestedLabel = REPORT_LABELS.has(message.suggestedLabel) ? message.suggestedLabel : null;
    const settings = await currentSettings();
    await clientFor(settings).report({ sha256: message.sha256, reason, suggestedLabel });
    return { ok: true };
  },
  /** The overlay's retry button after an error. */
  'fakescope:recheck': async (message, sender) => {
    const target = { tabId: sender.tab.id, frameId: sender.frameId ?? 0, documentUrl: sender.url };
    return checkAndShow(String(message.srcUrl), target, sender.tab.url ?? null);
  },
  'fakescope:lookup': async (message, sender) => lookupImages(Array.isArray(message.urls) ? message.urls : [], sender),
  /**
   * "Check this image" in the panel of a feed hint: the user asks for the normal check (the
   * image is sent to the server), as with the context menu.
   */
  'fakescope:check': async (message, sender) => {
    const srcUrl = String(message.srcUrl ?? '');
    if (!/^(https?|data):/i.test(srcUrl) || sender.tab?.id === undefined) {
      return { ok: false, failure: { title: 'Not an image FakeScope can check', message: '', guidance: '' } };
    }
    const target = { tabId: sender.tab.id, frameId: sender.frameId ?? 0, documentUrl: sender.url };
    await injectOverlay(target); // adds the page reader (content/page-image.js) the feed scripts lack
    return checkAndShow(srcUrl, target, sender.tab.url ?? null);
  },
  /** The popup's status line. */
  'fakescope:status': async () => {
    const settings = await currentSettings();
    const ready = await clientFor(settings).ready();
    return { ok: true, serverUrl: settings.serverUrl, ready };
  },
  /** The options page's "Test connection" button, on the values typed (not yet saved). */
  'fakescope:test-connection': async (message) => {
    const server = validateServerUrl(message.serverUrl);
    if (!server.ok) return { ok: false, failure: { title: 'Invalid address', message: server.error, guidance: '' } };
    const token = validateToken(message.apiToken);
    if (!token.ok) return { ok: false, failure: { title: 'Invalid token', message: token.error, guidance: '' } };
    const client = new ApiClient({ baseUrl: server.value, token: token.value });
    const ready = await client.ready();
    // /readyz is public: an empty lookup checks that the server accepts this token (or none).
    try {
      await client.lookup([]);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        const f = describeFailure(error);
        return {
          ok: false,
          serverUrl: server.value,
          ready,
          failure: {
            ...f,
            title: token.value ? 'The server refused this API token' : 'The server requires an API token',
          },
        };
      }
      throw error;
    }
    return { ok: true, serverUrl: server.value, ready };
  },
  /** The overlay's "Allow this image site" button: the options page asks for the permission. */
  'fakescope:open-options': async (message) => {
    const query = typeof message.grant === 'string' ? `?grant=${encodeURIComponent(message.grant)}` : '';
    await chrome.tabs.create({ url: chrome.runtime.getURL(`options/options.html${query}`) });
    return { ok: true };
  },
  /** The popup's feed switch: start feed mode in the open tab right away. */
  'fakescope:start-feed': async (message) => {
    const settings = await currentSettings();
    const tab = await chrome.tabs.get(message.tabId);
    if (!isFeedEnabled(settings, tab.url ?? '')) return { ok: false, failure: { title: 'Feed mode is off on this site', message: '', guidance: '' } };
    await syncFeedScripts();
    await chrome.scripting.executeScript({ target: { tabId: message.tabId }, files: FEED_SCRIPTS });
    return { ok: true };
  },
};

// Test hooks: browser tests drive the worker through these (see tests/extension/).
self.fakescopeHandleMenuClick = handleMenuClick;
self.fakescopeSyncFeedScripts = syncFeedScripts;
