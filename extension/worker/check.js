/**
 * The check of one image, as the user asks for it (the context menu, the panel's
 * **Try again**, a feed hint's **Check this image**): inject the overlay, show it loading,
 * read the image (worker/image-bytes.js), POST /v1/analyze unless the session cache has the
 * verdict, show describeAnalysis(...) in the overlay, remember it in the recent checks.
 *
 * The panel shows in the frame the image is in, except for an image in an embedded frame too
 * small for it (lib/panel-placement.js): then in the top frame, with a note naming the frame's
 * site. That panel is the extension page panel/frame-panel.html, hosted by the top frame's
 * content script, which reads what it shows from a record here (lib/frame-panels.js), so the
 * embedding page learns nothing of another origin's image. A check's target is
 * `{tabId, frameId, documentId, documentUrl}` (the image's frame, where it is read) and, for a
 * panel in the top frame, `panel: {id, frame, host}` (the panel page's record, what it says about
 * the frame, and the top frame's document that hosts it).
 *
 * A check is bound to the documents it started in (`documentId`, `host`): its image is read, and
 * its states are sent, only there. A frame that navigates meanwhile shows another document, which
 * never asked: the check's messages do not reach it, and its result is dropped (the recent checks
 * still list it).
 */

import { mayFetchForPage } from '../lib/address-space.js';
import { ASPECTS } from '../lib/aspects.js';
import {
  CHECK_SCRIPTS, OVERLAY_SCRIPTS, PAGE_READER_SCRIPTS, injectContentScripts, messageTarget, scriptTarget,
} from './content-scripts.js';
import { sha256Hex, isSha256Hex } from '../lib/hash.js';
import { readImage } from './image-bytes.js';
import { whileKeepingAlive } from './keep-alive.js';
import { FramePanels } from '../lib/frame-panels.js';
import { embeddedFrameNote, panelPlacement } from '../lib/panel-placement.js';
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
 * Resolves to what happened, for tests and logs; the user sees the overlay.
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
 * The overlay watches a check it shows as loading through a Port of this name: when Chrome
 * stops the service worker mid-check (idle, memory, an update), the port closes and the
 * overlay says so, instead of spinning for ever.
 */
export const CHECK_WATCH_PORT_NAME = 'fakescope-check-watch';

const watchPorts = new Set();

/** Holds an overlay's watch port open while this worker lives (content/overlay.js closes it). */
export function acceptCheckWatch(port) {
  watchPorts.add(port);
  port.onDisconnect.addListener(() => watchPorts.delete(port));
}

/**
 * Checks the image and shows each state in the overlay already in the tab; resolves to the
 * outcome. Every message of one check carries its `checkId`, so the overlay can drop the
 * late result of a check the user already replaced with another.
 */
export async function checkAndShow(srcUrl, target, pageUrl) {
  const checkId = crypto.randomUUID();
  await showInTab(target, { state: 'loading', srcUrl, checkId });
  let outcome;
  let shown;
  try {
    const { analysis, cached, via } = await checkImage(srcUrl, target, pageUrl);
    outcome = { ok: true, sha256: analysis.sha256, cached, via };
    shown = {
      state: 'result', srcUrl, checkId, view: describeAnalysis(analysis), short: shortVerdict(analysis), aspects: ASPECTS, cached,
    };
  } catch (error) {
    const failure = describeFailure(error);
    outcome = { ok: false, failure };
    shown = { state: 'error', srcUrl, checkId, failure };
  }
  try {
    await showInTab(target, shown);
  } catch (error) {
    // The tab navigated away or closed while the server worked: the result has no one to show it.
    return { ...outcome, shown: false, reason: String(error?.message ?? error) };
  }
  return outcome;
}

/**
 * Injects the page reader and the overlay into the target frame: each skips a second run,
 * unless what is there was left by an earlier extension instance (lib/injection.js).
 */
export async function injectOverlay(target) {
  await injectContentScripts(scriptTarget(target), CHECK_SCRIPTS);
}

const TOP_FRAME = 0;

/** The panels the top frame shows for images of other frames: what each shows (lib/frame-panels.js). */
export const framePanels = new FramePanels(chrome.storage.session);

/**
 * Injects what a right-click check needs and decides where its panel shows: in the image's
 * frame, as before, unless that is an embedded frame too small for the panel; then in the top
 * frame (the image's frame gets only the page reader; `pageUrl` is the top frame's address),
 * or, where the top frame refuses scripts (a browser page, the web store), in the image's frame
 * after all. Resolves to the target, bound to the frame's document (`documentId`), with `panel`
 * (a new panel page's record, bound to the top frame's document) when the panel shows in the top
 * frame. Throws when the image's frame refuses, or (FrameNavigatedError) when it no longer shows
 * the page right-clicked (`target.documentUrl`).
 */
export async function injectForCheck(target, pageUrl) {
  const viewport = await measureFrame(target.tabId, target.frameId);
  if (viewport && withoutFragment(viewport.url) !== withoutFragment(target.documentUrl)) {
    throw new FrameNavigatedError('The frame shows another page now.');
  }
  const bound = viewport ? { ...target, documentId: viewport.documentId } : target;
  if (!viewport || panelPlacement(bound.frameId, viewport) !== 'top') {
    await injectOverlay(bound);
    return bound;
  }
  await injectContentScripts(scriptTarget(bound), PAGE_READER_SCRIPTS);
  const top = await measureFrame(bound.tabId, TOP_FRAME);
  try {
    if (!top) throw new Error('the top frame refuses scripts');
    await injectContentScripts(scriptTarget({ tabId: bound.tabId, documentId: top.documentId }), OVERLAY_SCRIPTS);
  } catch {
    await injectOverlay(bound);
    return bound;
  }
  const frame = frameOf(bound.frameId, viewport.origin);
  return { ...bound, panel: { id: await framePanels.open(bound.tabId, pageUrl, frame), frame, host: top.documentId } };
}

function withoutFragment(url) {
  return String(url ?? '').split('#', 1)[0];
}

/**
 * **Try again** in the panel page `record` (panel `id`): the image is read in its frame again,
 * while the tab still has it, with that frame's address as Referer, and the result shows in the
 * same panel. Where the frame is gone or no longer scriptable, it is read in the top frame,
 * whose own panel then shows it.
 */
export async function recheckFramePanel(id, record) {
  // The panel page that asks lives in the top frame's document: the check is bound to that one.
  const top = await measureFrame(record.tabId, TOP_FRAME);
  if (!top) return { ok: false, reason: 'The page that showed the panel is gone.' };
  const shownIn = { tabId: record.tabId, frameId: TOP_FRAME, documentId: top.documentId, documentUrl: top.url };
  const srcUrl = String(record.state?.srcUrl ?? '');
  const imageFrameId = record.frame.frameId;
  const viewport = await measureFrame(record.tabId, imageFrameId);
  let target = shownIn;
  if (viewport) {
    try {
      const image = { tabId: record.tabId, frameId: imageFrameId, documentId: viewport.documentId, documentUrl: viewport.url };
      await injectContentScripts(scriptTarget(image), PAGE_READER_SCRIPTS);
      target = { ...image, panel: { id, frame: frameOf(imageFrameId, viewport.origin), host: top.documentId } };
    } catch {
      // No longer scriptable: read in the top frame.
    }
  }
  if (!target.panel) await injectOverlay(shownIn);
  return checkAndShow(srcUrl, target, record.pageUrl);
}

/** Closes the panel page `id` (its close button, Escape): its host in the top frame goes too. */
export async function closeFramePanel(id, tabId) {
  await framePanels.forget(id);
  await chrome.tabs.sendMessage(tabId, { type: 'fakescope:overlay-close', framePanel: id }, { frameId: TOP_FRAME });
}

function frameOf(imageFrameId, origin) {
  return { frameId: imageFrameId, origin, note: embeddedFrameNote(origin) };
}

/**
 * The frame's viewport and address, measured in the frame itself (its isolated world, which
 * the page cannot fool), and the id of the document it shows; null when the frame cannot be
 * scripted or is gone.
 */
async function measureFrame(tabId, frameId) {
  try {
    const [injection] = await chrome.scripting.executeScript({
      target: { tabId, frameIds: [frameId] },
      func: () => ({ width: innerWidth, height: innerHeight, origin: location.origin, url: location.href }),
    });
    return injection?.result ? { ...injection.result, documentId: injection.documentId } : null;
  } catch {
    return null;
  }
}

/**
 * Shows a state of the check in the panel in the tab. A panel page (an image of another frame)
 * reads it from its record; the top frame's content script, which hosts that page, is told
 * only which panel, which image and which check, to open, focus or keep it closed.
 */
async function showInTab(target, payload) {
  if (!target.panel) {
    await chrome.tabs.sendMessage(target.tabId, { type: 'fakescope:overlay', ...payload }, messageTarget(target));
    return;
  }
  if (!(await framePanels.show(target.panel.id, target.panel.frame, payload))) return; // closed or replaced
  const { state, srcUrl, checkId } = payload;
  const message = { type: 'fakescope:overlay', state, srcUrl, checkId, framePanel: target.panel.id };
  await chrome.tabs.sendMessage(target.tabId, message, messageTarget({ frameId: TOP_FRAME, documentId: target.panel.host }));
}

/** The analysis for an image: from the session cache when this image was checked recently. */
async function checkImage(srcUrl, target, pageUrl) {
  const settings = await currentSettings();
  // An image its page may not have fetched has no remembered verdict for it either (readImage).
  const remembered = rememberable(srcUrl) && mayFetchForPage(srcUrl, target.documentUrl);
  const knownSha = remembered ? await imageHashes.get(srcUrl) : undefined;
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
