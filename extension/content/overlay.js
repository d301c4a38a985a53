/**
 * FakeScope overlay, part 2 of 2: the result panel's place in the page. Every panel is the
 * extension page panel/frame-panel.html, which draws the verdict; this script only hosts it: an
 * iframe of that page, in a closed shadow root, over the image's corner (or, for an image of a
 * small embedded frame, at the viewport's top right), following scrolling containers, in the top
 * layer, taking the focus when it opens and giving it back when it closes.
 *
 * Classic (non-module) content scripts, with no imports on purpose: content scripts cannot be
 * ES modules, and importing lib/ modules dynamically would mean listing them as
 * web_accessible_resources, which lets any page detect the extension. Injected on demand
 * (right-click, with content/page-image.js) or with content/feed.js on the sites where feed mode
 * is on, after content/overlay-dom.js (styles, h()); it answers the worker's `fakescope:overlay`
 * messages and leaves `globalThis.__fakescope` for content/feed.js. Runs once per frame (per
 * extension instance: what an earlier one left is stopped and cleared first, see
 * lib/injection.js).
 *
 * Isolation: the host element sits in the top layer (popover) with its own
 * `:host { all: initial !important }` so page CSS such as `* { all: unset }` or
 * huge z-indexes cannot hide or restyle it; it is absolutely positioned in
 * document coordinates, so it never changes the page's layout or scrolling.
 *
 * Confidentiality and integrity: the page must neither read the verdict nor the words the user
 * types or selects, nor change what the panel shows. So nothing of it is drawn here: the host
 * holds, in a closed shadow root, only the iframe (a cross-origin document: no DOM, no key or
 * input events, no selection reach this page), of one fixed size whatever it shows, except for
 * a panel about this document's own image (which the page has anyway): that one is as tall as
 * what it shows, rounded up to 80 px steps (worker/panels.js resizePanel). This script
 * never gets the verdict either (only which panel, image and check, and for feed badges the
 * badge's words): the panel page reads what to show from the extension under the panel's id
 * (worker/panels.js), which only the worker and this script know, and asks the worker to close.
 *
 * Left behind: reloading or updating the extension orphans this script (its extension context is
 * invalidated) and kills the panel page in its iframe (whose × then does nothing), while both stay
 * in the page. The new instance's scripts run in an isolated world of their own, which never sees
 * this one's panel or badges; so while it shows something, this script looks whether its
 * extension is still there, and when it is not, takes away what it put in the page (`orphaned`).
 */
(() => {
  // Own properties only: a page element named like a part is not one (content/overlay-dom.js).
  const has = (name) => Object.hasOwn(globalThis, name);
  if (has('__fakescope') || !has('__fakescopeOverlayDom')) return;
  const { STYLE, h } = globalThis.__fakescopeOverlayDom;

  /** The <img> elements showing this URL, best candidate (largest visible) first. */
  function findImages(srcUrl) {
    return [...document.images]
      .filter((img) => img.currentSrc === srcUrl || img.src === srcUrl)
      .sort((a, b) => b.clientWidth * b.clientHeight - a.clientWidth * a.clientHeight);
  }

  // Where each host is made (see the Overlay constructor): a document with no custom elements.
  let inertDocument = null;

  class Overlay {
    /** `framePanel`: the id of the panel page to host (worker/panels.js). */
    constructor(framePanel) {
      this.framePanel = framePanel;
      // Made in a document of its own, which has no custom elements: a page that defined
      // `fakescope-overlay` itself (customElements.define, before this script ran) would get its
      // own class's instance from this document's createElement, its constructor run here, and
      // through attachInternals() the closed root (ElementInternals.shadowRoot gives a custom
      // element's root, closed or not). An element that is not custom when its root is attached
      // never lets internals reach the root, nor does a definition that upgrades it later.
      inertDocument ??= document.implementation.createHTMLDocument('');
      const host = inertDocument.createElement('fakescope-overlay');
      // Kept here: a closed root is reachable only through this reference (host.shadowRoot is null).
      this.root = host.attachShadow({ mode: 'closed' });
      this.host = document.adoptNode(host);
      // The page's dynamic URL (web_accessible_resources use_dynamic_url) changes every session.
      const src = `${chrome.runtime.getURL('panel/frame-panel.html')}#${framePanel}`;
      this.panel = h('iframe', { className: 'panel', src, title: 'FakeScope result' });
      // Focused while it loads, the iframe keeps the focus but its new document does not get
      // it: hand it on (the page then focuses its dialog, panel/frame-panel.js).
      this.panel.addEventListener('load', () => {
        if (this.hasFocus()) this.panel.contentWindow?.focus();
      });
      this.root.append(h('style', {}, STYLE), this.panel);
      // What the worker last said this panel shows: the image, and whether it is still checking.
      this.srcUrl = null;
      this.checkId = null;
      this.returnFocus = null;
      // Whether the panel is about this document's own image (so it may follow its content).
      this.followsContent = false;
      // Opened and not closed since: its listeners are on, even if the page took the host out.
      this.shown = false;
      this.onResize = () => this.position();
      // The panel sits in document coordinates, so it moves with the page by itself; an image
      // inside a scrolling container (a feed column, a carousel) moves without it. Scroll
      // events do not bubble, so they are caught on the way down, once per frame.
      this.repositionQueued = false;
      this.onScroll = (event) => {
        // The page's own scroll moves the panel with it already.
        if (event.target === document || this.repositionQueued) return;
        this.repositionQueued = true;
        requestAnimationFrame(() => {
          this.repositionQueued = false;
          if (this.isOpen) this.position();
        });
      };
    }

    get isOpen() {
      return this.host.isConnected;
    }

    /** Whether the keyboard focus is inside the panel (in the hosted panel page). */
    hasFocus() {
      return this.root.activeElement === this.panel;
    }

    /**
     * Shows the panel at `anchor`. The focus moves into the panel when it opens or when the
     * user asked for something new (`focus`), never on a later update of the same check: a
     * slow check's result must not pull the focus away from where the user is typing.
     */
    open(anchor, { focus = true } = {}) {
      this.anchor = anchor ?? null;
      const opening = !this.isOpen;
      if (opening) {
        // The element with the focus, inside shadow roots too: a feed badge sits in a shadow
        // root of its own, and focusing its host would put the focus nowhere.
        let active = document.activeElement;
        while (active?.shadowRoot?.activeElement) active = active.shadowRoot.activeElement;
        this.returnFocus = active && active !== document.body ? active : null;
        // A modal dialog of the page (a lightbox) makes everything outside it inert, a popover
        // above it too, and a scripted one (aria-modal) pulls the focus back into itself: the
        // panel could be neither clicked nor typed in. So the host goes into that dialog (the one
        // around the image, else the last <dialog> open); it stays in the top layer all the same.
        const modal = this.anchor?.closest('dialog:modal, [aria-modal="true"]') ?? [...document.querySelectorAll('dialog:modal')].pop();
        (modal ?? document.documentElement).append(this.host);
        // The top layer puts it above any z-index the page uses; older browsers fall back to z-index.
        if (typeof this.host.showPopover === 'function') {
          this.host.setAttribute('popover', 'manual');
          try {
            this.host.showPopover();
          } catch {
            this.host.removeAttribute('popover');
          }
        }
        window.addEventListener('resize', this.onResize, { passive: true });
        window.addEventListener('scroll', this.onScroll, { passive: true, capture: true });
        this.shown = true;
        watchExtension();
      }
      this.position();
      if ((opening || focus) && !this.hasFocus()) this.panel.focus({ preventScroll: true });
    }

    /**
     * Places the panel over the image's top-left corner, kept inside the viewport horizontally,
     * and high enough that its top half-screen (the verdict, the score) is on screen even for
     * an image low in the viewport (all of it, when it fits); with no image to go by (another
     * frame's), at the top right of the viewport.
     */
    position() {
      // A page that zooms its root (`html { zoom: 1.5 }`) zooms this host with it, and so the
      // panel's px and vh: the iframe undoes that, so that what is measured here in the
      // viewport's px (the image's box, the scroll, the viewport) places and sizes it as it is.
      const zoom = this.host.currentCSSZoom ?? 1;
      this.panel.style.zoom = zoom > 0 && zoom !== 1 ? String(1 / zoom) : '';
      const margin = 8;
      const width = this.panel.offsetWidth || 380;
      let top = window.scrollY + 16;
      let left = window.scrollX + document.documentElement.clientWidth - width - 16;
      if (this.anchor?.isConnected) {
        const rect = this.anchor.getBoundingClientRect();
        top = window.scrollY + Math.max(rect.top, 0) + margin;
        left = window.scrollX + rect.left + margin;
      }
      const viewportHeight = document.documentElement.clientHeight;
      const shown = Math.min(this.panel.offsetHeight || 0, Math.round(viewportHeight / 2));
      const maxTop = window.scrollY + viewportHeight - shown - margin;
      top = Math.max(window.scrollY + margin, Math.min(top, maxTop));
      const maxLeft = window.scrollX + document.documentElement.clientWidth - width - margin;
      left = Math.max(window.scrollX + margin, Math.min(left, maxLeft));
      this.panel.style.top = `${Math.round(top)}px`;
      this.panel.style.left = `${Math.round(left)}px`;
    }

    /**
     * A panel about this document's own image is as tall as what it shows: `height` px, its
     * content rounded up to a step by the worker (worker/panels.js resizePanel), from what the
     * panel page measured; never over 80% of the viewport. Any other panel keeps its one size
     * (content/overlay-dom.js iframe.panel). `null`: back to that size.
     */
    setHeight(height) {
      if (height === null) this.panel.style.removeProperty('height');
      else if (this.followsContent && Number.isInteger(height) && height > 0) this.panel.style.height = `min(${height}px, 80vh)`;
      else return;
      if (this.isOpen) this.position();
    }

    /** Closes the panel; `restoreFocus: false` leaves the focus where it is (see replaceOverlay). */
    close({ restoreFocus = true } = {}) {
      this.shown = false;
      window.removeEventListener('resize', this.onResize);
      window.removeEventListener('scroll', this.onScroll, { capture: true });
      if (this.host.matches?.(':popover-open')) this.host.hidePopover();
      this.host.remove(); // the panel page goes with its iframe, and its ports with it
      if (restoreFocus && this.returnFocus?.isConnected) this.returnFocus.focus({ preventScroll: true });
      this.returnFocus = null;
    }
  }

  let overlay = null;
  // The height a panel about this document's own image starts at, before its page measures it:
  // two of the worker's 80 px steps (lib/frame-panels.js), what the loading state needs.
  const FIRST_HEIGHT = 160;

  /**
   * Another panel than the one shown (a new check, a badge): the old panel is closed (host,
   * listeners) and a new one made. The focus goes back where it was before the old panel only if
   * it was inside it; so the new panel gives it back to the same place.
   */
  function replaceOverlay(framePanel) {
    if (overlay?.framePanel === framePanel) return;
    overlay?.close({ restoreFocus: overlay.hasFocus() });
    overlay = new Overlay(framePanel);
  }

  /**
   * Opens panel `framePanel` (from the worker) for a state (loading / result / hint / error) of
   * an image: anchored at that image when it is this document's (`imageHere`; a badge passes its
   * own `anchor`), else at the viewport's top right.
   */
  function showOverlay(message) {
    const { state, srcUrl, checkId, anchor } = message;
    const framePanel = message.framePanel;
    if (typeof framePanel !== 'string' || !framePanel) return;
    // The outcome of a check the user already replaced (Try again) comes late: the panel keeps
    // showing what the user asked for last. (The worker drops it too: worker/panels.js.)
    if (state !== 'loading' && overlay?.framePanel === framePanel && checkId !== undefined && checkId !== overlay.checkId) return;
    // A panel closed meanwhile stays closed: the worker sends nothing more for it.
    if (state !== 'loading' && !anchor && overlay?.framePanel === framePanel && !overlay.isOpen) return;
    replaceOverlay(framePanel);
    const target = message.imageHere === true ? anchor ?? findImages(srcUrl)[0] ?? null : null;
    // A new check, or a badge the user clicked, takes the focus; the outcome of a check already
    // shown as loading keeps the focus where it is.
    const update = state !== 'loading' && !anchor && overlay.isOpen && overlay.srcUrl === srcUrl;
    overlay.srcUrl = srcUrl;
    overlay.checkId = state === 'loading' ? checkId ?? null : null;
    // A panel about this document's own image starts at what its loading state needs and then
    // follows its content (setHeight); one about another frame's image keeps its one size.
    const follows = message.imageHere === true;
    if (follows !== overlay.followsContent) {
      overlay.followsContent = follows;
      overlay.setHeight(follows ? FIRST_HEIGHT : null);
    }
    overlay.open(target, { focus: !update });
  }

  function onOverlayMessage(message, _sender, sendResponse) {
    if (message?.type === 'fakescope:overlay') {
      showOverlay(message);
    } else if (message?.type === 'fakescope:overlay-close') {
      // The panel page's close button or Escape, passed on by the worker (panel/frame-panel.js).
      if (overlay?.isOpen && overlay.framePanel === message.framePanel) overlay.close();
    } else if (message?.type === 'fakescope:overlay-size') {
      // The panel page's content height, rounded by the worker (only for this document's image).
      if (overlay?.isOpen && overlay.framePanel === message.framePanel && message.height !== null) overlay.setHeight(message.height);
    } else {
      return false;
    }
    sendResponse({ ok: true });
    return false;
  }
  chrome.runtime.onMessage.addListener(onOverlayMessage);

  /**
   * The panel over every badge: a popover shown later lies above it in the top layer, so a
   * badge shown while the panel is open (content/feed.js) puts the panel back on top.
   */
  function keepOnTop() {
    if (overlay?.host.matches(':popover-open')) {
      overlay.host.hidePopover();
      overlay.host.showPopover(); // the focus stays where it is: nothing ran in between
    }
  }

  /**
   * Closes the panel and stops listening (a newer extension instance replaces this one:
   * lib/injection.js; or this one's extension went: `orphaned`). `restoreFocus`: see close().
   */
  function stop({ restoreFocus = true } = {}) {
    unwatchExtension();
    try {
      overlay?.close({ restoreFocus });
    } finally {
      try {
        chrome.runtime.onMessage.removeListener(onOverlayMessage);
      } catch {
        // An invalidated extension context may refuse even this; its listeners are inert anyway.
      }
    }
  }

  /**
   * Whether this script's extension is still there: reloading, updating or removing it
   * invalidates this script's context, and `chrome.runtime.id` goes (reading it may throw instead).
   */
  function extensionAlive() {
    try {
      return Boolean(chrome.runtime?.id);
    } catch {
      return false;
    }
  }

  // Nothing tells a content script that its extension went (a port to the worker closes as well
  // whenever Chrome stops an idle worker, which is when an update is applied), so while it shows
  // something it asks, once a second (a property read), and as soon as its tab is shown again (a
  // hidden tab's timers run seldom); also when a message to the worker fails (content/feed.js).
  const EXTENSION_CHECK_MS = 1000;
  let extensionCheck = null;

  /** Whether feed mode runs in this document (content/feed.js, which leaves null when it stops). */
  const feedRunning = () => Object.hasOwn(globalThis, '__fakescopeFeed') && Boolean(globalThis.__fakescopeFeed);

  /** Looks whether the extension is still there (see above) while the panel or feed mode is on. */
  function watchExtension() {
    if (extensionCheck !== null) return;
    extensionCheck = setInterval(checkExtension, EXTENSION_CHECK_MS);
    document.addEventListener('visibilitychange', checkExtension);
  }

  function unwatchExtension() {
    clearInterval(extensionCheck);
    extensionCheck = null;
    document.removeEventListener('visibilitychange', checkExtension);
  }

  /**
   * Whether the extension is still there; when it is not, what this script and feed mode put in
   * the page goes (`orphaned`). With nothing shown any more, it stops looking.
   */
  function checkExtension() {
    if (!extensionAlive()) {
      orphaned();
      return false;
    }
    if (!overlay?.shown && !feedRunning()) unwatchExtension();
    return true;
  }

  /**
   * The extension was reloaded, updated or removed: this script and the panel page it hosts are
   * dead, and the new instance (whose scripts run in another isolated world) will not take their
   * panel, badges or listeners away. So they go now: the panel (the focus back where it was, if it
   * was in the panel), feed mode's badges, notice, observers and listeners. Never throws.
   */
  function orphaned() {
    unwatchExtension();
    try {
      stop({ restoreFocus: overlay?.hasFocus() ?? false });
    } catch {
      // Taken out as far as it could be: nothing else to do.
    }
    if (feedRunning()) {
      try {
        globalThis.__fakescopeFeed.stop();
      } catch {
        // As above.
      }
    }
  }

  globalThis.__fakescope = { showOverlay, findImages, h, keepOnTop, stop, watchExtension, checkExtension };
})();
