/**
 * What each result panel shows. Every panel (worker/check.js: a right-click check, **Try
 * again**, a hint's **Check this image**; worker/feed-lookup.js: a feed badge) is the extension
 * page panel/frame-panel.html, in an iframe that a content script puts in its page (the *host*
 * document) inside a closed shadow root; the page reads what it shows from here, a record in the
 * extension's session storage, never from anything the host page could read or forge (window
 * messages, the DOM).
 *
 * A record, under `framePanel:<id>`: `{tabId, pageUrl, host, frame, state, version}`, where `id`
 * is random (only the worker, the host's content script and the panel page know it), `host` is
 * `{frameId, documentId, origin, ancestorOrigins}` (the document the panel is in, and the origins
 * above it, which the panel page checks its own `location.ancestorOrigins` against), `frame` is
 * `{frameId, origin, note}` (the image's frame and what the panel says about it: null when the
 * image is the host's own; for another frame's image, also the `documentId` it showed), `state` the latest `fakescope:overlay` payload (loading, result, hint
 * or error) and `version` counts the states, so the page never trades a newer one for an older
 * read. One panel per frame of a tab: a new one there forgets the previous record, as does
 * closing the panel or the tab.
 *
 * The storage area is passed in (chrome.storage.session in the worker, which content scripts
 * cannot read; a stand-in in unit tests).
 *
 * Every change is a read, then writes, of the store, and those of two calls made at once would
 * interleave: two panels opened at once in a frame (a fast double click on a feed badge) would
 * each list itself as the frame's panel, one record left that nothing forgets; a state shown while
 * its panel is replaced or closed would write the record back. So the changes to one store run
 * one after another, in the order asked, whichever FramePanels asks (the worker has one,
 * worker/panels.js); reads (`of`) need not wait.
 */

/**
 * A panel about its host document's own image (the page has that image anyway) is as tall as
 * what it shows, in steps of PANEL_HEIGHT_STEP px, at most PANEL_MAX_HEIGHT (the host caps it
 * at 80% of its viewport too: content/overlay.js); a panel about another frame's image keeps one
 * size whatever it shows (its size would say something of a verdict the host cannot read).
 */
export const PANEL_HEIGHT_STEP = 80;
export const PANEL_MAX_HEIGHT = 640;
/** The iframe's own border (content/overlay-dom.js .panel), around the content measured inside. */
const PANEL_FRAME_BORDER = 2;

/** Whether panel `record` may follow its content: its image is its host document's own. */
export function followsContent(record) {
  const frameId = record?.host?.frameId;
  return Number.isInteger(frameId) && record.frame?.frameId === frameId;
}

/**
 * The height of a panel whose content (measured in the panel page) is `contentHeight` px tall:
 * rounded up to a step, at least one, at most PANEL_MAX_HEIGHT; null for anything but a size.
 */
export function panelHeight(contentHeight) {
  if (typeof contentHeight !== 'number' || !Number.isFinite(contentHeight) || contentHeight < 0) return null;
  const steps = Math.ceil((contentHeight + PANEL_FRAME_BORDER) / PANEL_HEIGHT_STEP);
  return Math.min(PANEL_MAX_HEIGHT, Math.max(1, steps) * PANEL_HEIGHT_STEP);
}

/** The record's key; panel/frame-panel.js, a classic script, spells it out again. */
export const FRAME_PANEL_KEY_PREFIX = 'framePanel:';
const TAB_KEY_PREFIX = 'framePanelOfTab:';

/** Per storage area, the end of the changes asked for so far; never rejected, so a failed change does not stop the next. */
const pendingChanges = new WeakMap();

/** Runs `change` on `area` once every change asked for there before has finished; resolves to its outcome. */
function serially(area, change) {
  const outcome = (pendingChanges.get(area) ?? Promise.resolve()).then(change);
  pendingChanges.set(area, outcome.catch(() => {}));
  return outcome;
}

const recordKey = (id) => `${FRAME_PANEL_KEY_PREFIX}${id}`;
const tabKey = (tabId) => `${TAB_KEY_PREFIX}${tabId}`;

export class FramePanels {
  /** @param {{get: Function, set: Function, remove: Function}} area a chrome.storage area */
  constructor(area, { newId = () => crypto.randomUUID() } = {}) {
    this.area = area;
    this.newId = newId;
  }

  /**
   * A new panel in tab `tabId` (whose top frame shows `pageUrl`), put in document `host`, for an
   * image of `frame`; resolves to its id. The previous panel of the host's frame is forgotten:
   * its content script replaces it.
   */
  open(tabId, pageUrl, host, frame) {
    return serially(this.area, () => this.#open(tabId, pageUrl, host, frame));
  }

  async #open(tabId, pageUrl, host, frame) {
    const id = this.newId();
    const panels = (await this.area.get(tabKey(tabId)))[tabKey(tabId)] ?? {};
    const previous = panels[host.frameId];
    if (previous) await this.area.remove(recordKey(previous));
    await this.area.set({
      [recordKey(id)]: { tabId, pageUrl, host, frame, state: null, version: 0 },
      [tabKey(tabId)]: { ...panels, [host.frameId]: id },
    });
    return id;
  }

  /**
   * Records `state` for the panel to show, with the `frame` it is about; false when there is no
   * such panel any more (closed, or replaced by another in its frame), or when `state` is the late
   * outcome of a check the panel no longer shows (another check's `checkId` is loading there).
   */
  show(id, frame, state) {
    return serially(this.area, () => this.#show(id, frame, state));
  }

  async #show(id, frame, state) {
    const record = (await this.area.get(recordKey(id)))[recordKey(id)];
    if (!record) return false;
    if (state.state !== 'loading' && record.state?.checkId !== state.checkId) return false;
    await this.area.set({ [recordKey(id)]: { ...record, frame, state, version: record.version + 1 } });
    return true;
  }

  /** The panel `id` of tab `tabId`; null for an unknown id, or one of another tab. */
  async of(id, tabId) {
    if (typeof id !== 'string' || !id) return null;
    const record = (await this.area.get(recordKey(id)))[recordKey(id)];
    return record && record.tabId === tabId ? record : null;
  }

  /** Forgets panel `id` (closed by the user). */
  forget(id) {
    return serially(this.area, () => this.#forget(id));
  }

  async #forget(id) {
    const record = (await this.area.get(recordKey(id)))[recordKey(id)];
    if (!record) return;
    const panels = (await this.area.get(tabKey(record.tabId)))[tabKey(record.tabId)] ?? {};
    const left = Object.fromEntries(Object.entries(panels).filter(([, other]) => other !== id));
    await this.area.remove(recordKey(id));
    if (Object.keys(left).length) await this.area.set({ [tabKey(record.tabId)]: left });
    else await this.area.remove(tabKey(record.tabId));
  }

  /** Forgets tab `tabId`'s panels (the tab was closed). */
  forgetTab(tabId) {
    return serially(this.area, () => this.#forgetTab(tabId));
  }

  async #forgetTab(tabId) {
    const panels = (await this.area.get(tabKey(tabId)))[tabKey(tabId)] ?? {};
    await this.area.remove([...Object.values(panels).map(recordKey), tabKey(tabId)]);
  }
}
