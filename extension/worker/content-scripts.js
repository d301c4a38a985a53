/**
 * The content scripts the service worker puts into pages, in the order they must run:
 * classic scripts that share their isolated world, each later one using what the earlier
 * ones left on `globalThis` (see content/overlay.js); how they go in, and how a check reaches
 * them.
 */

import { prepareInjection } from '../lib/injection.js';

/**
 * The panel's host: its DOM helpers and styles, and its place in the page (the panel itself is
 * the extension page panel/frame-panel.html, which the host frames: no page script reaches it).
 */
export const OVERLAY_SCRIPTS = ['content/overlay-dom.js', 'content/overlay.js'];
/** The page reader (content/page-image.js): what the image's frame needs when the panel shows elsewhere. */
export const PAGE_READER_SCRIPTS = ['content/page-image.js'];
/** A right-click check: the page reader and the panel. */
export const CHECK_SCRIPTS = [...PAGE_READER_SCRIPTS, ...OVERLAY_SCRIPTS];
/** Feed mode: the panel, which the badges open, and the badges. */
export const FEED_SCRIPTS = [...OVERLAY_SCRIPTS, 'content/feed.js'];

const INSTANCE_KEY = 'extensionInstance';
let instanceId = null;

/**
 * This extension instance's id: made once and kept in `storage.session`, which outlives the
 * worker's restarts but not an update, a reload or a browser restart. Scripts marked with
 * another id were left in a page by an earlier instance (lib/injection.js).
 */
export function extensionInstance() {
  if (!instanceId) {
    instanceId = readOrMakeInstance();
    instanceId.catch(() => { instanceId = null; }); // a failed read is tried again next time
  }
  return instanceId;
}

async function readOrMakeInstance() {
  const stored = (await chrome.storage.session.get(INSTANCE_KEY))[INSTANCE_KEY];
  if (typeof stored === 'string' && stored) return stored;
  const made = crypto.randomUUID();
  await chrome.storage.session.set({ [INSTANCE_KEY]: made });
  return made;
}

/**
 * Injects `files` into `target` (a `chrome.scripting` injection target), after clearing out
 * what an earlier extension instance left in the frame's isolated world; this instance's
 * scripts already there stay and skip a second run.
 */
export async function injectContentScripts(target, files) {
  await chrome.scripting.executeScript({ target, func: prepareInjection, args: [await extensionInstance()] });
  await chrome.scripting.executeScript({ target, files });
}

/**
 * The `chrome.scripting` target of a check's frame (`{tabId, frameId, documentId}`): the document
 * the check is bound to, once it is (worker/check.js), not whatever the frame shows later.
 */
export function scriptTarget({ tabId, frameId, documentId }) {
  return documentId ? { tabId, documentIds: [documentId] } : { tabId, frameIds: [frameId] };
}

/** The `chrome.tabs.sendMessage` options that reach that document, and no later one of its frame. */
export function messageTarget({ frameId, documentId }) {
  return documentId ? { documentId } : { frameId };
}
