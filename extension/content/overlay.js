/**
 * FakeScope overlay, part 4 of 4: the panel's place in the page. Shows one image's verdict
 * next to it, inside a Shadow DOM; or, for an image of another frame, hosts the extension page
 * that shows it.
 *
 * Classic (non-module) content scripts, with no imports on purpose: content scripts cannot be
 * ES modules, and importing lib/ modules dynamically would mean listing them as
 * web_accessible_resources, which lets any page detect the extension. Instead the service
 * worker sends a ready-made view (lib/verdict.js describeAnalysis) and the overlay only renders
 * it and relays the user's actions back. Injected on demand (right-click, with
 * content/page-image.js) or with content/feed.js on the sites where feed mode is on.
 *
 * Four files, injected in this order (worker/content-scripts.js): content/overlay-dom.js
 * (styles, h(), ids), content/overlay-forms.js (ask and report), content/overlay-panel.js (the
 * panel: the dialog and its states), then this one, which puts the panel in the page and
 * answers the worker's `fakescope:overlay` messages. The first three leave their parts on
 * `globalThis` (the extension's isolated world); this one leaves `globalThis.__fakescope` for
 * content/feed.js. Each runs once per frame (per extension instance: what an earlier one left
 * is stopped and cleared first, see lib/injection.js).
 *
 * Isolation: the host element sits in the top layer (popover) with its own
 * `:host { all: initial !important }` so page CSS such as `* { all: unset }` or
 * huge z-indexes cannot hide or restyle it; it is absolutely positioned in
 * document coordinates, so it never changes the page's layout or scrolling.
 *
 * Confidentiality: the panel for an image of another frame (shown here because that frame is
 * too small for it, worker/check.js) must tell this page nothing it could not read itself: not
 * the verdict, not the words the user types into it, not what they select. So it is not drawn
 * here at all: the host holds, in a closed shadow root, only an iframe of the extension page
 * panel/frame-panel.html (a cross-origin document: no DOM, no key or input events, no
 * selection reach this page), of a fixed size whatever it shows. The page's URL carries the
 * panel's id, which only the worker and this script know; the panel page reads what to show
 * from the extension (worker/frame-panels.js), and asks the worker to close it. A panel for
 * this document's own images stays here, in an open root (the page has the image anyway).
 */
(() => {
  // Own properties only: a page element named like a part is not one (content/overlay-dom.js).
  const has = (name) => Object.hasOwn(globalThis, name);
  if (has('__fakescope') || !has('__fakescopeOverlayDom') || !has('__fakescopePanel')) return;
  const { STYLE, h } = globalThis.__fakescopeOverlayDom;
  const { Panel } = globalThis.__fakescopePanel;

  /** The <img> elements showing this URL, best candidate (largest visible) first. */
  function findImages(srcUrl) {
    return [...document.images]
      .filter((img) => img.currentSrc === srcUrl || img.src === srcUrl)
      .sort((a, b) => b.clientWidth * b.clientHeight - a.clientWidth * a.clientHeight);
  }

  class Overlay {
    /**
     * `framePanel`: the id of the extension's panel page to host (an image of another frame);
     * none: the panel is drawn here, for an image of this document.
     */
    constructor({ framePanel = null } = {}) {
      this.framePanel = framePanel;
      this.host = document.createElement('fakescope-overlay');
      // Kept here: a closed root is reachable only through this reference (host.shadowRoot is null).
      this.root = this.host.attachShadow({ mode: framePanel ? 'closed' : 'open' });
      this.root.append(h('style', {}, STYLE));
      if (framePanel) {
        // The page's dynamic URL (web_accessible_resources use_dynamic_url) changes every session.
        const src = `${chrome.runtime.getURL('panel/frame-panel.html')}#${framePanel}`;
        this.inline = null;
        this.panel = h('iframe', { className: 'panel', src, title: 'FakeScope result' });
        // Focused while it loads, the iframe keeps the focus but its new document does not get
        // it: hand it on (the page then focuses its dialog, panel/frame-panel.js).
        this.panel.addEventListener('load', () => {
          if (this.hasFocus()) this.panel.contentWindow?.focus();
        });
        this.root.append(this.panel);
      } else {
        this.inline = new Panel(this.root, {
          close: () => this.close(),
          recheckMessage: (srcUrl) => ({ type: 'fakescope:recheck', srcUrl }),
        });
        this.panel = this.inline.panel;
      }
      // What the worker last said this panel shows: the image, and whether it is still checking.
      this.srcUrl = null;
      this.loading = false;
      // The check shown as loading: the results of an older one are dropped.
      this.checkId = null;
      // Set when the user closes the panel while a check is still running: its result must
      // not pop the panel open again (and steal the focus) for an image they gave up on.
      this.dismissedSrc = null;
      this.returnFocus = null;
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

    /** Whether the keyboard focus is inside the panel (in the hosted panel page, for a framed one). */
    hasFocus() {
      return this.inline ? this.inline.hasFocus() : this.root.activeElement === this.panel;
    }

    /** Shows a state the worker sent; a framed panel's page reads it from the extension itself. */
    show(message) {
      this.srcUrl = message.srcUrl;
      this.loading = message.state === 'loading';
      this.checkId = this.loading ? message.checkId ?? null : null;
      this.inline?.show(message);
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
        this.dismissedSrc = null;
        // The element with the focus, inside shadow roots too: a feed badge sits in a shadow
        // root of its own, and focusing its host would put the focus nowhere.
        let active = document.activeElement;
        while (active?.shadowRoot?.activeElement) active = active.shadowRoot.activeElement;
        this.returnFocus = active && active !== document.body ? active : null;
        document.documentElement.append(this.host);
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
      }
      this.position();
      this.inline?.makeScrollersFocusable();
      if (opening || focus) this.focus();
    }

    /** Focuses the dialog; a framed one's page does that itself when its frame gets the focus. */
    focus() {
      if (this.inline) this.inline.focus();
      else if (!this.hasFocus()) this.panel.focus({ preventScroll: true });
    }

    /**
     * Places the panel over the image's top-left corner, kept inside the viewport horizontally,
     * and high enough that its top half-screen (the verdict, the score) is on screen even for
     * an image low in the viewport (all of it, when it fits); with no image to go by (another
     * frame's), at the top right of the viewport.
     */
    position() {
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

    /** Closes the panel; `restoreFocus: false` leaves the focus where it is (see replaceOverlay). */
    close({ restoreFocus = true } = {}) {
      if (this.isOpen && (this.inline ? this.inline.busy : this.loading)) this.dismissedSrc = this.srcUrl;
      this.inline?.stop();
      window.removeEventListener('resize', this.onResize);
      window.removeEventListener('scroll', this.onScroll, { capture: true });
      if (this.host.matches?.(':popover-open')) this.host.hidePopover();
      this.host.remove(); // a framed panel's page goes with its iframe, and its ports with it
      if (restoreFocus && this.returnFocus?.isConnected) this.returnFocus.focus({ preventScroll: true });
      this.returnFocus = null;
    }
  }

  let overlay = null;

  /**
   * Another panel than the one shown is needed (the one for another frame's image and the one
   * drawn here differ, and each panel page shows one frame's image): the old panel is closed
   * (host, listeners, ports) and a new one made. The focus goes back where it was before the old
   * panel only if it was inside it; so the new panel gives it back to the same place.
   */
  function replaceOverlay(framePanel) {
    if (overlay.framePanel === framePanel) return;
    overlay.close({ restoreFocus: overlay.hasFocus() });
    overlay = new Overlay({ framePanel });
  }

  /**
   * Shows a state (loading / result / hint / error) for an image URL, anchored at that image;
   * or, for an image of a small embedded frame (`framePanel`, from the worker), hosts the panel
   * page that shows it, at the viewport's top right.
   */
  function showOverlay(message) {
    const { state, srcUrl, checkId, anchor } = message;
    const framePanel = typeof message.framePanel === 'string' ? message.framePanel : null;
    overlay ??= new Overlay({ framePanel });
    // The outcome of a check the user already replaced (a second right-click, a badge, Try
    // again) comes late: the panel keeps showing what the user asked for last.
    if (state !== 'loading' && checkId !== undefined && checkId !== overlay.checkId) return;
    // The user closed the panel while this image was being checked: keep it closed (a badge
    // click, which comes with its anchor, is the user asking again).
    if (state !== 'loading' && !anchor && !overlay.isOpen && overlay.dismissedSrc === srcUrl) return;
    replaceOverlay(framePanel);
    // The image is in another frame: an image of this document with the same address is not it.
    const target = framePanel ? null : anchor ?? findImages(srcUrl)[0] ?? null;
    // A new check, or a badge the user clicked, takes the focus; the outcome of a check already
    // shown as loading keeps the focus where it is (unless the update removed the focused control).
    const update = state !== 'loading' && !anchor && overlay.isOpen && overlay.srcUrl === srcUrl;
    const hadFocus = overlay.hasFocus();
    overlay.show(message);
    overlay.open(target, { focus: !update || (hadFocus && !overlay.hasFocus()) });
  }

  function onOverlayMessage(message, _sender, sendResponse) {
    if (message?.type === 'fakescope:overlay') {
      showOverlay(message);
    } else if (message?.type === 'fakescope:overlay-close') {
      // The panel page's close button or Escape, passed on by the worker (panel/frame-panel.js).
      if (overlay?.isOpen && overlay.framePanel !== null && overlay.framePanel === message.framePanel) overlay.close();
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

  /** Closes the panel and stops listening (a newer extension instance replaces this one: lib/injection.js). */
  function stop() {
    try {
      overlay?.close();
    } finally {
      chrome.runtime.onMessage.removeListener(onOverlayMessage);
    }
  }

  globalThis.__fakescope = { showOverlay, findImages, h, keepOnTop, stop };
})();
