/**
 * What the panels for images of other frames show. Such a panel (worker/check.js: an image in
 * an embedded frame too small for it, shown in the top frame) is the extension page
 * panel/frame-panel.html, in an iframe the top frame's content script puts in the page; the
 * page reads what it shows from here, a record in the extension's session storage, never from
 * anything the embedding page could read or forge (window messages, the DOM).
 *
 * A record, under `framePanel:<id>`: `{tabId, pageUrl, frame, state, version}`, where `id` is
 * random (only the worker, the top frame's content script and the panel page know it), `frame`
 * is `{frameId, origin, note}` (the image's frame and what the panel says about it), `state` the
 * latest `fakescope:overlay` payload (loading, result or error) and `version` counts the states,
 * so the page never trades a newer one for an older read. One panel per tab: a new one forgets
 * the tab's previous record, as does closing the panel or the tab.
 *
 * The storage area is passed in (chrome.storage.session in the worker, which content scripts
 * cannot read; a stand-in in unit tests).
 */

/** The record's key; panel/frame-panel.js, a classic script, spells it out again. */
export const FRAME_PANEL_KEY_PREFIX = 'framePanel:';
const TAB_KEY_PREFIX = 'framePanelOfTab:';

const recordKey = (id) => `${FRAME_PANEL_KEY_PREFIX}${id}`;
const tabKey = (tabId) => `${TAB_KEY_PREFIX}${tabId}`;

export class FramePanels {
  /** @param {{get: Function, set: Function, remove: Function}} area a chrome.storage area */
  constructor(area, { newId = () => crypto.randomUUID() } = {}) {
    this.area = area;
    this.newId = newId;
  }

  /**
   * A new panel in tab `tabId` (whose top frame shows `pageUrl`) for an image of `frame`;
   * resolves to its id. The tab's previous panel is forgotten: the content script replaces it.
   */
  async open(tabId, pageUrl, frame) {
    const id = this.newId();
    const previous = (await this.area.get(tabKey(tabId)))[tabKey(tabId)];
    if (previous) await this.area.remove(recordKey(previous));
    await this.area.set({ [recordKey(id)]: { tabId, pageUrl, frame, state: null, version: 0 }, [tabKey(tabId)]: id });
    return id;
  }

  /**
   * Records `state` for the panel to show, with the `frame` it is about; false when there is no
   * such panel any more (closed, or replaced by another in its tab), or when `state` is the late
   * outcome of a check the panel no longer shows (another check's `checkId` is loading there).
   */
  async show(id, frame, state) {
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
  async forget(id) {
    const record = (await this.area.get(recordKey(id)))[recordKey(id)];
    if (!record) return;
    const current = (await this.area.get(tabKey(record.tabId)))[tabKey(record.tabId)];
    await this.area.remove(current === id ? [recordKey(id), tabKey(record.tabId)] : [recordKey(id)]);
  }

  /** Forgets tab `tabId`'s panel (the tab was closed). */
  async forgetTab(tabId) {
    const id = (await this.area.get(tabKey(tabId)))[tabKey(tabId)];
    await this.area.remove(id ? [recordKey(id), tabKey(tabId)] : [tabKey(tabId)]);
  }
}
