/**
 * The result panels, on the worker's side. Every panel is the extension page
 * panel/frame-panel.html, which a content script (content/overlay.js) hosts in its document in a
 * closed shadow root: the page it is in can neither read nor change it. The worker opens a panel
 * (a record in lib/frame-panels.js under a random id, bound to its host document), records each
 * state the panel page shows, and tells the host only which panel to open, for which image and
 * check, and whether that image is the host's own (the panel is then anchored over it). A panel
 * about the host's own image is as tall as what it shows, rounded up to 80 px steps (its page
 * measures it and the worker passes the rounded height on); any other panel keeps one size.
 */

import { FramePanels, followsContent, panelHeight } from '../lib/frame-panels.js';
import { messageTarget } from './content-scripts.js';

/**
 * What each panel shows (lib/frame-panels.js), in storage.session, which no page can read. Its
 * changes run one after another, so a double click on a badge cannot leave a record behind.
 */
export const framePanels = new FramePanels(chrome.storage.session);

/**
 * The frame's viewport, address, origin and ancestors' origins, measured in the frame itself (its
 * isolated world, which the page cannot fool), and the id of the document it shows; null when
 * the frame cannot be scripted or is gone.
 */
export async function measureFrame(tabId, frameId) {
  try {
    const [injection] = await chrome.scripting.executeScript({
      target: { tabId, frameIds: [frameId] },
      func: () => ({
        width: innerWidth,
        height: innerHeight,
        origin: location.origin,
        url: location.href,
        // The document's own origin ("null" in a sandboxed frame, whose address still names a
        // site), as the documents below it see it in their location.ancestorOrigins.
        documentOrigin: self.origin,
        ancestorOrigins: [...(location.ancestorOrigins ?? [])],
      }),
    });
    return injection?.result ? { ...injection.result, documentId: injection.documentId } : null;
  } catch {
    return null;
  }
}

/** A panel's host: frame `frameId`'s document as measureFrame found it. */
export function hostOf(frameId, measured) {
  return { frameId, documentId: measured.documentId, origin: measured.documentOrigin, ancestorOrigins: measured.ancestorOrigins };
}

/**
 * Opens a panel in tab `tabId` (top frame at `pageUrl`), hosted by `host` (hostOf), about an
 * image of `frame` (`{frameId, origin, note}`); resolves to `{id, frame, host}`, a check
 * target's `panel`.
 */
export async function openPanel(tabId, pageUrl, host, frame) {
  return { id: await framePanels.open(tabId, pageUrl, host, frame), frame, host };
}

/**
 * Records a state for panel `panel` of tab `tabId` and tells its host document to show it; false
 * when the panel is closed or replaced, or the state is the late outcome of a check it no longer
 * shows (nothing is sent then). A result also carries its badge's words (`label`, `short`), for
 * feed badges of the same image (content/feed.js); the verdict itself is only in the record.
 */
export async function showInPanel(tabId, panel, payload) {
  if (!(await framePanels.show(panel.id, panel.frame, payload))) return false;
  const { state, srcUrl, checkId } = payload;
  // Only where the check says its page's badge may show it (`short`: worker/check.js); else the
  // host, another site's page perhaps, gets neither word of the verdict.
  const badge = state === 'result' && payload.view && payload.short ? { label: payload.view.label, short: payload.short } : {};
  const message = {
    type: 'fakescope:overlay', state, srcUrl, checkId, framePanel: panel.id,
    imageHere: panel.frame.frameId === panel.host.frameId, ...badge,
  };
  await chrome.tabs.sendMessage(tabId, message, messageTarget(panel.host));
  return true;
}

/** Closes panel `id` of `record` (its close button, Escape): its host removes the iframe. */
export async function closePanel(id, record) {
  await framePanels.forget(id);
  await chrome.tabs.sendMessage(record.tabId, { type: 'fakescope:overlay-close', framePanel: id }, messageTarget(record.host));
}

/**
 * Panel `id` of `record` measured its content as `contentHeight` px (panel/frame-panel.js): its
 * host sets the iframe to that height rounded up to a step (lib/frame-panels.js panelHeight).
 * Only for a panel about its host's own image: a panel about another frame's image keeps its one
 * size, whatever its page says. Resolves to the height sent, or null when none was.
 */
export async function resizePanel(id, record, contentHeight) {
  const height = panelHeight(contentHeight);
  if (!followsContent(record) || height === null) return null;
  await chrome.tabs.sendMessage(record.tabId, { type: 'fakescope:overlay-size', framePanel: id, height }, messageTarget(record.host));
  return height;
}
