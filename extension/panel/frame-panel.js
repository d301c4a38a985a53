/**
 * The result panel, as an extension page. Drawn in the page it is about, the panel would be the
 * page's to read (the verdict, the keys typed into it, what is selected) and to change (a
 * "Likely AI-generated" rewritten into "Likely real"). So a content script (content/overlay.js)
 * puts only an iframe of this page there, in a closed shadow root: the page finds a cross-origin
 * document it can neither read nor change, whose events never reach it. The iframe has one fixed
 * size, except for a panel about the host page's own image, which is as tall as what it shows,
 * in coarse steps (followContent below).
 *
 * The page draws the panel (panel/panel.js) from what the extension itself says: its URL's
 * fragment is the panel's id (random; only the worker and the host's content script know it),
 * and the worker keeps the state to show under that id in the session storage
 * (lib/frame-panels.js), which web pages and content scripts cannot read. Nothing comes from
 * window messages. **Try again**, a hint's **Check this image** and closing go to the worker as
 * runtime messages naming the panel; the worker tells the host to close.
 *
 * Listed in the manifest's web_accessible_resources (so a content script may frame it) with
 * use_dynamic_url (its address changes every browser session, so no page can probe for it).
 * A page that frames it anyway, without the id of a panel of its own tab, or not directly in the
 * document the panel was opened for (its ancestors' origins are checked against that document's
 * origin and its ancestors', as recorded in lib/frame-panels.js), gets an empty page: nothing is
 * read, drawn or listened to.
 */
(() => {
  const { STYLE, h } = globalThis.__fakescopeOverlayDom;
  const { Panel } = globalThis.__fakescopePanel;
  // lib/frame-panels.js FRAME_PANEL_KEY_PREFIX (this page's scripts are classic: no imports).
  const KEY_PREFIX = 'framePanel:';
  const id = location.hash.slice(1);
  const key = `${KEY_PREFIX}${id}`;

  // The panel fills this page, whose size its host sets (content/overlay-dom.js iframe.panel).
  const PAGE_STYLE = `
    .panel { position: fixed; inset: 0; width: 100%; height: 100%; max-height: none;
      border: 0; border-radius: 0; box-shadow: none; }
    .panel:focus { outline-offset: -3px; }
    header { border-radius: 0; }
  `;

  /**
   * Whether this page sits directly in its panel's host document: its ancestors' origins are the
   * host's origin, then the host's own ancestors' (measured in the host: worker/panels.js).
   *
   * A `file:` document (a local page, where the user let the extension run) calls itself "null"
   * (`self.origin`, which the worker records) but is listed as "file://" in its frames'
   * `location.ancestorOrigins`. So, in a panel opened on a `file:` page only, a recorded "null"
   * also matches "file://". Anywhere else "null" (a sandboxed frame, an opaque origin) matches
   * only "null", and every other origin only itself.
   */
  function framedByHost(record) {
    const expected = [record.host?.origin, ...(record.host?.ancestorOrigins ?? [])];
    const actual = [...(location.ancestorOrigins ?? [])];
    const onFilePage = /^file:/i.test(String(record.pageUrl ?? ''));
    // The host's own origin only (index 0): its ancestors' come from ancestorOrigins both sides.
    const matches = (want, got, i) => want === got || (onFilePage && i === 0 && want === 'null' && got === 'file://');
    return typeof expected[0] === 'string' && expected.length === actual.length && expected.every((origin, i) => matches(origin, actual[i], i));
  }

  /** The record of this page's panel, or null when this page is not one FakeScope put there. */
  async function ownRecord() {
    if (!/^[0-9a-f-]{36}$/.test(id) || window.parent === window) return null;
    const [stored, tab] = await Promise.all([chrome.storage.session.get(key), chrome.tabs.getCurrent()]);
    const record = stored[key];
    return record && tab && record.tabId === tab.id && framedByHost(record) ? record : null;
  }

  /** Draws the panel and follows its record; resolves to 'shown', or 'inert' (an empty page). */
  async function start() {
    if (!(await ownRecord())) return 'inert';
    const host = document.createElement('fakescope-panel');
    const root = host.attachShadow({ mode: 'open' });
    root.append(h('style', {}, STYLE), h('style', {}, PAGE_STYLE));
    const panel = new Panel(root, {
      close: () => chrome.runtime.sendMessage({ type: 'fakescope:frame-panel-close', panel: id }).catch(() => {}),
      recheck: () => chrome.runtime.sendMessage({ type: 'fakescope:recheck', panel: id }),
    });
    document.body.append(host);

    let shownVersion = -1;
    let ownImage = false;
    const show = (record) => {
      // A read and a change may arrive in either order: the newer state wins.
      if (!record?.state || record.version <= shownVersion) return;
      shownVersion = record.version;
      ownImage = record.frame?.frameId === record.host?.frameId;
      panel.note = record.frame?.note ?? null;
      // Try again shows the loading state at once: the worker's, coming next, changes nothing.
      if (!(record.state.state === 'loading' && panel.busy)) panel.show(record.state);
      panel.makeScrollersFocusable();
      // Only a focused page moves its focus: an update must not take it from where the user is.
      if (document.hasFocus() && !panel.hasFocus()) panel.focus();
    };
    chrome.storage.session.onChanged.addListener((changes) => {
      if (changes[key]?.newValue) show(changes[key].newValue);
    });
    // Read once more now that changes are followed: none made meanwhile is missed.
    show((await chrome.storage.session.get(key))[key]);
    followContent(panel, () => ownImage);
    // The host focuses this page's frame when it opens, or for a new check: the dialog takes it.
    window.addEventListener('focus', () => {
      if (!panel.hasFocus()) panel.focus();
    });
    return 'shown';
  }

  /**
   * A panel about its host document's own image is as tall as what it shows: the height of its
   * content (the header and the body, measured as laid out, whatever the iframe's own height, so
   * a new height never feeds back into the measure) goes to the worker, which has the host set
   * the iframe's height to it rounded up to 80 px steps (worker/panels.js resizePanel). A panel
   * about another frame's image sends nothing (the worker would refuse it anyway): it keeps one
   * size. Runtime messages only, never window messages.
   */
  function followContent(panel, ownImage) {
    const header = panel.panel.querySelector('header');
    let sent = null;
    const measure = () => {
      if (!ownImage()) return;
      const height = Math.ceil(header.getBoundingClientRect().height + panel.body.getBoundingClientRect().height);
      if (height === sent) return;
      sent = height;
      chrome.runtime.sendMessage({ type: 'fakescope:panel-size', panel: id, height }).catch(() => {});
    };
    const observer = new ResizeObserver(measure);
    observer.observe(header);
    observer.observe(panel.body);
  }

  // For the browser tests (as background.js's hooks): what this page made of itself.
  globalThis.fakescopeFramePanel = start();
})();
