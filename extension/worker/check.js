/**
 * The check of one image, as the user asks for it (the context menu, the panel's
 * **Try again**, a feed hint's **Check this image**): inject the panel's host, show it loading,
 * read the image (worker/image-bytes.js), POST /v1/analyze unless the session cache has the
 * verdict, show describeAnalysis(...) in the panel, remember it in the recent checks.
 *
 * The panel shows in the frame the image is in, over the image, except for an image in an
 * embedded frame too small for it (lib/panel-placement.js): then in the top frame, with a note
 * naming the frame's site. Either way the panel is the extension page panel/frame-panel.html,
 * hosted by that frame's content script in a closed shadow root, which reads what it shows from a
 * record the worker keeps (worker/panels.js, lib/frame-panels.js): the page it is in learns
 * nothing of the verdict, and cannot change it. A check's target is
 * `{tabId, frameId, documentId, documentUrl}` (the image's frame, where it is read) and
 * `panel: {id, frame, host}` (the panel page's record, what it says about the image's frame, and
 * the document that hosts it).
 *
 * A check is bound to the documents it started in (`documentId`, `host`): its image is read, and
 * its states are sent, only there. A frame that navigates meanwhile shows another document, which
 * never asked: the check's messages do not reach it, and its result is dropped (the recent checks
 * still list it).
 */

import { mayFetchForPage } from '../lib/address-space.js';
import { ASPECTS } from '../lib/aspects.js';
import { checkScopes, feedMayShow, readScope } from '../lib/cache.js';
import {
  CHECK_SCRIPTS, OVERLAY_SCRIPTS, PAGE_READER_SCRIPTS, injectContentScripts, scriptTarget,
} from './content-scripts.js';
import { sha256Hex, isSha256Hex } from '../lib/hash.js';
import { readImage } from './image-bytes.js';
import { whileKeepingAlive } from './keep-alive.js';
import { embeddedFrameNote, panelPlacement } from '../lib/panel-placement.js';
import { hostOf, measureFrame, openPanel, showInPanel } from './panels.js';
import { ApiError, describeFailure } from '../lib/problem.js';
import { recentChecks } from '../lib/recent.js';
import { clientFor, currentSettings } from './server-client.js';
import { analyses, cacheKey, imageHashes, rememberable } from './session-caches.js';
import { describeAnalysis, shortVerdict } from '../lib/verdict.js';

/** The context menu item's id ("Check with FakeScope", on images). */
export const MENU_ID = 'fakescope-check';

/**
 * Handles "Check with FakeScope" on an image. Exposed on `self` so browser
 * tests can call it (the native context menu cannot be clicked by automation).
 * Resolves to what happened, for tests and logs; the user sees the panel.
 */
export async function handleMenuClick(info, tab) {
  if (info?.menuItemId !== MENU_ID || !info.srcUrl || tab?.id === undefined) {
    return { ok: false, reason: 'not an image check' };
  }
  // documentUrl: the frame the image is in, whose address the browser sent as Referer.
  const target = { tabId: tab.id, frameId: info.frameId ?? 0, documentUrl: info.frameUrl ?? info.pageUrl ?? tab.url };
  let placed;
  try {
    placed = await injectForCheck(target, info.pageUrl ?? tab.url ?? null);
  } catch (error) {
    if (error instanceof FrameNavigatedError) return { ok: false, reason: error.message };
    // Browser pages, the web store and some viewers refuse scripts: say so on the toolbar icon.
    const failure = {
      title: 'FakeScope cannot show results on this page',
      message: String(error?.message ?? error),
      guidance: 'Open the image in its own tab and check it there.',
    };
    await flagOnToolbar(tab.id, failure);
    return { ok: false, failure };
  }
  return checkAndShow(info.srcUrl, placed, tab.url ?? info.pageUrl ?? null);
}

/**
 * The frame shows another page than the one right-clicked (it navigated while the menu was
 * open): the check has no document to show in; the page there now never asked for it.
 */
class FrameNavigatedError extends Error {}

async function flagOnToolbar(tabId, failure) {
  try {
    await chrome.action.setBadgeBackgroundColor({ tabId, color: '#a4001d' });
    await chrome.action.setBadgeText({ tabId, text: '!' });
    await chrome.action.setTitle({ tabId, title: `FakeScope: ${failure.title}. ${failure.guidance}` });
  } catch {
    // The tab was closed meanwhile: nobody to tell.
  }
}

/**
 * The panel page watches a check it shows as loading through a Port of this name: when Chrome
 * stops the service worker mid-check (idle, memory, an update), the port closes and the
 * panel says so, instead of spinning for ever.
 */
export const CHECK_WATCH_PORT_NAME = 'fakescope-check-watch';

const watchPorts = new Set();

/** Holds a panel page's watch port open while this worker lives (panel/panel.js closes it). */
export function acceptCheckWatch(port) {
  watchPorts.add(port);
  port.onDisconnect.addListener(() => watchPorts.delete(port));
}

/**
 * Checks the image and shows each state in the check's panel; resolves to the outcome. Every
 * state of one check carries its `checkId`, so the panel drops the late result of a check the
 * user already replaced with another (Try again).
 */
export async function checkAndShow(srcUrl, target, pageUrl) {
  const checkId = crypto.randomUUID();
  await showInPanel(target.tabId, target.panel, { state: 'loading', srcUrl, checkId });
  let outcome;
  let shown;
  try {
    const { analysis, cached, via, scope } = await checkImage(srcUrl, target, pageUrl);
    outcome = { ok: true, sha256: analysis.sha256, cached, via };
    // The badge's words (`short`, which worker/panels.js passes to the host's feed badges of the
    // image) only where that page's own feed lookup would have read these bytes the same way: its
    // own image, read by the worker's plain request. Not an image of another frame, nor one read
    // with the page's cookies and Referer or from the page: the page reads its badges.
    const imageHere = target.panel.frame.frameId === target.panel.host.frameId;
    const badge = imageHere && feedMayShow(scope, target.documentUrl, pageUrl) ? { short: shortVerdict(analysis) } : {};
    shown = {
      state: 'result', srcUrl, checkId, view: describeAnalysis(analysis), ...badge, aspects: ASPECTS, cached,
    };
  } catch (error) {
    const failure = describeFailure(error);
    outcome = { ok: false, failure };
    shown = { state: 'error', srcUrl, checkId, failure };
  }
  try {
    await showInPanel(target.tabId, target.panel, shown);
  } catch (error) {
    // The tab navigated away or closed while the server worked: the result has no one to show it.
    return { ...outcome, shown: false, reason: String(error?.message ?? error) };
  }
  return outcome;
}

/**
 * Injects the page reader and the panel's host into the target frame: each skips a second run,
 * unless what is there was left by an earlier extension instance (lib/injection.js).
 */
async function injectOverlay(target) {
  await injectContentScripts(scriptTarget(target), CHECK_SCRIPTS);
}

const TOP_FRAME = 0;

/**
 * Injects what a right-click check needs and decides where its panel shows: in the image's
 * frame, over the image, unless that is an embedded frame too small for the panel; then in the
 * top frame (the image's frame gets only the page reader), or, where the top frame refuses
 * scripts (a browser page, the web store), in the image's frame after all. Resolves to the
 * target, bound to the frame's document (`documentId`), with its new `panel` (worker/panels.js),
 * bound to the document that hosts it. Throws when the image's frame refuses, or
 * (FrameNavigatedError) when it no longer shows the page right-clicked (`target.documentUrl`).
 */
export async function injectForCheck(target, pageUrl) {
  const viewport = await measureFrame(target.tabId, target.frameId);
  if (!viewport) {
    await injectOverlay(target); // throws the browser's reason (a page that refuses scripts)
    throw new Error('FakeScope could not read this frame.');
  }
  if (withoutFragment(viewport.url) !== withoutFragment(target.documentUrl)) {
    throw new FrameNavigatedError('The frame shows another page now.');
  }
  const bound = { ...target, documentId: viewport.documentId };
  const ownPanel = async () => {
    await injectOverlay(bound);
    const frame = { frameId: bound.frameId, origin: viewport.origin, note: null };
    return { ...bound, panel: await openPanel(bound.tabId, pageUrl, hostOf(bound.frameId, viewport), frame) };
  };
  if (panelPlacement(bound.frameId, viewport) !== 'top') return ownPanel();
  await injectContentScripts(scriptTarget(bound), PAGE_READER_SCRIPTS);
  const top = await measureFrame(bound.tabId, TOP_FRAME);
  try {
    if (!top) throw new Error('the top frame refuses scripts');
    await injectContentScripts(scriptTarget({ tabId: bound.tabId, documentId: top.documentId }), OVERLAY_SCRIPTS);
  } catch {
    return ownPanel();
  }
  const frame = frameOf(bound.frameId, viewport.origin, viewport.documentId);
  return { ...bound, panel: await openPanel(bound.tabId, pageUrl, hostOf(TOP_FRAME, top), frame) };
}

function withoutFragment(url) {
  return String(url ?? '').split('#', 1)[0];
}

/**
 * **Try again**, or a hint's **Check this image**, in panel `id` (its `record`): the image is
 * read again where it is (its frame, while the frame still shows the document right-clicked,
 * with that frame's address as Referer), and the result shows in the same panel. An image of
 * another frame that is gone, shows another document now (it never asked: no page reader goes
 * there) or is no longer scriptable is read in the panel's own document.
 */
export async function recheckPanel(id, record) {
  const { tabId, host } = record;
  const hostNow = await measureFrame(tabId, host.frameId);
  if (hostNow?.documentId !== host.documentId) return { ok: false, reason: 'The page that showed the panel is gone.' };
  const srcUrl = String(record.state?.srcUrl ?? '');
  const shownIn = { tabId, frameId: host.frameId, documentId: host.documentId, documentUrl: hostNow.url };
  const imageFrameId = record.frame.frameId;
  if (imageFrameId !== host.frameId) {
    const viewport = await measureFrame(tabId, imageFrameId);
    if (viewport && viewport.documentId === record.frame.documentId) {
      try {
        const image = { tabId, frameId: imageFrameId, documentId: viewport.documentId, documentUrl: viewport.url };
        await injectContentScripts(scriptTarget(image), PAGE_READER_SCRIPTS);
        const frame = frameOf(imageFrameId, viewport.origin, viewport.documentId);
        return checkAndShow(srcUrl, { ...image, panel: { id, frame, host } }, record.pageUrl);
      } catch {
        // No longer scriptable: read in the panel's own document.
      }
    }
  }
  await injectOverlay(shownIn); // the page reader: feed pages have only the badges and the host
  const frame = { frameId: host.frameId, origin: host.origin, note: null };
  return checkAndShow(srcUrl, { ...shownIn, panel: { id, frame, host } }, record.pageUrl);
}

/** What a panel in the top frame says of its image's frame, and which document that frame showed. */
function frameOf(imageFrameId, origin, documentId) {
  return { frameId: imageFrameId, origin, documentId, note: embeddedFrameNote(origin) };
}

/**
 * The analysis for an image: from the session cache when this image was checked recently, and
 * `scope`, the rules its bytes were read under (lib/cache.js readScope). The address's remembered
 * sha256 is used only when read for this document (in this top page), in a way this check would
 * try itself: an address's bytes depend on who asks.
 */
async function checkImage(srcUrl, target, pageUrl) {
  const settings = await currentSettings();
  // An image its page may not have fetched has no remembered verdict for it either (readImage).
  const remembered = rememberable(srcUrl) && mayFetchForPage(srcUrl, target.documentUrl);
  for (const scope of remembered ? checkScopes(target.documentUrl, pageUrl) : []) {
    const knownSha = await imageHashes.get(scope, srcUrl);
    const cached = knownSha ? await analyses.get(cacheKey(settings, knownSha)) : undefined;
    if (cached) return { analysis: cached, cached: true, via: 'cache', scope };
  }
  const readStarted = imageHashes.mark();
  const image = await readImage(srcUrl, target);
  const scope = readScope(image.via, target.documentUrl, pageUrl);
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
  // Not when access was taken back meanwhile (session-caches.js forgetAddressReads).
  if (rememberable(srcUrl)) await imageHashes.trySet(scope, srcUrl, analysis.sha256, { startedAt: readStarted });
  try {
    await rememberRecent(analysis, srcUrl, pageUrl);
  } catch (error) {
    console.warn('FakeScope: could not update the recent checks', error); // the verdict still shows
  }
  return { analysis, cached, via: image.via, scope };
}

function fileNameOf(url) {
  try {
    const name = new URL(url).pathname.split('/').pop();
    return name && name.length <= 100 ? name : 'image';
  } catch {
    return 'image';
  }
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
