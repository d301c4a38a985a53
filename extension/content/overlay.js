/**
 * FakeScope overlay: shows one image's verdict next to it, inside a Shadow DOM.
 *
 * Classic (non-module) content scripts, with no imports on purpose: content
 * scripts cannot be ES modules, and importing lib/ modules dynamically would
 * mean listing them as web_accessible_resources, which lets any page detect the
 * extension. Instead the service worker sends a ready-made view (lib/verdict.js
 * describeAnalysis) and the overlay only renders it and relays the user's
 * actions back. Injected on demand (right-click, with content/page-image.js) or
 * with content/feed.js on the sites where feed mode is on.
 *
 * Three files, injected in this order (worker/content-scripts.js): content/overlay-dom.js
 * (styles, h(), ids), content/overlay-forms.js (ask and report), then this one, the panel
 * itself. The first two leave their parts on `globalThis` (the extension's isolated world);
 * this one leaves `globalThis.__fakescope` for content/feed.js. Each runs once per frame
 * (per extension instance: what an earlier one left is stopped and cleared first, see
 * lib/injection.js).
 *
 * Isolation: the host element sits in the top layer (popover) with its own
 * `:host { all: initial !important }` so page CSS such as `* { all: unset }` or
 * huge z-indexes cannot hide or restyle it; it is absolutely positioned in
 * document coordinates, so it never changes the page's layout or scrolling.
 *
 * Confidentiality: a panel for an image of another frame (shown here because that frame is
 * too small for it, worker/check.js) uses a closed shadow root, so this page's scripts cannot
 * read what the check says about an image they could not read themselves; the panel keeps its
 * own reference to the root and nothing of it goes into the host's attributes or the light
 * DOM. A panel for this document's own images stays open (the page has the image anyway).
 */
(() => {
  if (globalThis.__fakescope || !globalThis.__fakescopeOverlayDom || !globalThis.__fakescopeOverlayForms) return;
  const { STYLE, h, uid } = globalThis.__fakescopeOverlayDom;
  const { askSection, reportSection } = globalThis.__fakescopeOverlayForms;

  /** The <img> elements showing this URL, best candidate (largest visible) first. */
  function findImages(srcUrl) {
    return [...document.images]
      .filter((img) => img.currentSrc === srcUrl || img.src === srcUrl)
      .sort((a, b) => b.clientWidth * b.clientHeight - a.clientWidth * a.clientHeight);
  }

  class Overlay {
    /** `closed`: a panel for an image of another frame, whose root this page must not reach. */
    constructor({ closed = false } = {}) {
      this.closed = closed;
      this.host = document.createElement('fakescope-overlay');
      // Kept here: a closed root is reachable only through this reference (host.shadowRoot is null).
      this.root = this.host.attachShadow({ mode: closed ? 'closed' : 'open' });
      this.root.append(h('style', {}, STYLE));
      this.titleId = uid('title');
      this.closeButton = h('button', { className: 'close', type: 'button', 'aria-label': 'Close FakeScope result', onclick: () => this.close() }, '×');
      this.body = h('div', { className: 'body' });
      this.live = h('p', { className: 'sr-only', role: 'status', 'aria-live': 'polite' });
      // The image's frame, when it is an embedded one too small for the panel and the panel
      // shows in the top frame instead (worker/check.js): {frameId, origin, note}.
      this.frame = null;
      // Set when the user closes the panel while a check is still running: its result must
      // not pop the panel open again (and steal the focus) for an image they gave up on.
      this.dismissedSrc = null;
      this.panel = h(
        'section',
        { className: 'panel', role: 'dialog', 'aria-labelledby': this.titleId, tabindex: '-1' },
        h('header', {}, h('h2', { id: this.titleId }, 'FakeScope'), this.closeButton),
        this.body,
        this.live,
      );
      this.root.append(this.panel);
      this.root.addEventListener('keydown', (event) => {
        if (event.key === 'Escape') {
          event.stopPropagation();
          this.close();
        }
      });
      this.askPort = null;
      // The check shown as loading: its id (results of an older check are dropped) and the
      // port that tells the panel when the service worker stopped before answering.
      this.checkId = null;
      this.watchPort = null;
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
      this.makeScrollersFocusable();
      if (opening || focus) this.panel.focus({ preventScroll: true });
    }

    /**
     * A long explanation scrolls in a box of its own: one that scrolls gets a tab stop (and a
     * name), so keyboard users can scroll it too; a short one stays out of the tab order.
     */
    makeScrollersFocusable() {
      for (const box of this.body.querySelectorAll('.explanation')) {
        if (box.scrollHeight > box.clientHeight + 1) {
          box.setAttribute('tabindex', '0');
          box.setAttribute('role', 'region');
          box.setAttribute('aria-label', 'Explanation');
        } else {
          box.removeAttribute('tabindex');
          box.removeAttribute('role');
          box.removeAttribute('aria-label');
        }
      }
    }

    /** Whether the keyboard focus is inside the panel (Escape only works from there). */
    hasFocus() {
      const inside = this.root.activeElement;
      return Boolean(inside && this.panel.contains(inside));
    }

    /**
     * Places the panel over the image's top-left corner, kept inside the viewport horizontally,
     * and high enough that its top half-screen (the verdict, the score) is on screen even for
     * an image low in the viewport (all of it, when it fits).
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
      if (this.isOpen && this.body.getAttribute('aria-busy') === 'true') this.dismissedSrc = this.srcUrl;
      this.unwatch();
      this.askPort?.disconnect();
      this.askPort = null;
      window.removeEventListener('resize', this.onResize);
      window.removeEventListener('scroll', this.onScroll, { capture: true });
      if (this.host.matches?.(':popover-open')) this.host.hidePopover();
      this.host.remove();
      if (restoreFocus && this.returnFocus?.isConnected) this.returnFocus.focus({ preventScroll: true });
      this.returnFocus = null;
    }

    setBody(...children) {
      // Every state of an image in an embedded frame says so first (the image is not beside it).
      const note = this.frame ? h('p', { className: 'frame-note', role: 'note' }, this.frame.note) : null;
      // replaceChildren() would insert `null` as the text "null": drop absent parts first.
      this.body.replaceChildren(...[note, ...children.flat()].filter((child) => child !== null && child !== undefined && child !== false));
      this.body.removeAttribute('aria-busy');
    }

    /** Says a state change to screen readers (focus stays where the user put it). */
    announce(text) {
      this.live.textContent = '';
      // A fresh text node in the next task, so an identical message is announced again.
      setTimeout(() => { this.live.textContent = text; }, 50);
    }

    /** `checkId`: the worker's id of this check (none when the panel asked for it itself). */
    showLoading(srcUrl, checkId = null) {
      this.srcUrl = srcUrl;
      this.checkId = checkId;
      this.setBody(h('p', { className: 'loading' }, h('span', { className: 'spinner', 'aria-hidden': 'true' }), 'Checking this image…'));
      this.body.setAttribute('aria-busy', 'true');
      // Said through the panel's own live region: one inside the busy body would stay silent.
      this.announce('FakeScope: checking this image…');
      this.watch();
    }

    /**
     * Chrome stops an extension's service worker when it likes (idle, memory, an update), and
     * with it the check it was running: nothing would ever replace "Checking…". A port open to
     * the worker while the panel waits closes when the worker goes; the panel then says so.
     */
    watch() {
      if (this.watchPort) return;
      let port;
      try {
        port = chrome.runtime.connect({ name: 'fakescope-check-watch' });
      } catch {
        return; // the extension was reloaded: this old script cannot reach it any more
      }
      this.watchPort = port;
      port.onDisconnect.addListener(() => {
        if (this.watchPort !== port) return;
        this.watchPort = null;
        if (this.body.getAttribute('aria-busy') !== 'true') return;
        this.showError(this.srcUrl, {
          title: 'FakeScope stopped before the check finished',
          message: 'The browser stopped FakeScope’s background worker while it was checking this image, so no verdict came back.',
          guidance: 'Press Try again to check it again.',
        });
      });
    }

    unwatch() {
      const port = this.watchPort;
      this.watchPort = null;
      port?.disconnect();
    }

    showError(srcUrl, failure) {
      this.unwatch();
      this.srcUrl = srcUrl;
      this.announce(`FakeScope: ${failure?.title ?? 'Something went wrong'}`);
      const retry = h('button', { type: 'button', className: 'retry' }, 'Try again');
      retry.addEventListener('click', (event) => {
        // "Try again" sends the image again: only a real click does, not a page script's.
        if (!event.isTrusted) return;
        this.retry();
      });
      this.setBody(
        h('div', { role: 'alert' },
          h('p', { className: 'error-title' }, failure?.title ?? 'Something went wrong'),
          h('p', {}, failure?.message ?? ''),
          failure?.guidance ? h('p', { className: 'muted' }, failure.guidance) : null),
        h('div', { className: 'row' },
          retry,
          failure?.imageOrigin
            ? h('button', {
                type: 'button', className: 'secondary',
                onclick: () => chrome.runtime.sendMessage({ type: 'fakescope:open-options', grant: failure.imageOrigin }).catch(() => {}),
              }, 'Allow this image site…')
            : null,
          h('button', { type: 'button', className: 'secondary', onclick: () => this.close() }, 'Close')),
      );
    }

    retry() {
      this.showLoading(this.srcUrl);
      // The focused "Try again" button is gone: keep the focus in the panel (Escape still closes it).
      this.panel.focus({ preventScroll: true });
      // A panel shown for an image of an embedded frame names that frame: the image is read there.
      const frameId = this.frame?.frameId;
      chrome.runtime.sendMessage({ type: 'fakescope:recheck', srcUrl: this.srcUrl, frameId }).catch((error) => {
        this.showError(this.srcUrl, {
          title: 'FakeScope is unavailable',
          message: String(error?.message ?? error),
          guidance: 'Reload the page and try again.',
        });
      });
    }

    /**
     * A feed hint: this image was not checked, but it looks like one that was. Says so
     * plainly and offers the real check (which sends the image, so it needs the user's click).
     */
    showHint(srcUrl, hint) {
      this.unwatch();
      this.srcUrl = srcUrl;
      this.askPort?.disconnect();
      this.askPort = null;
      this.announce(`FakeScope: ${hint.short}`);
      const check = h('button', { type: 'button', className: 'check' }, 'Check this image');
      check.addEventListener('click', (event) => {
        // Only a real click sends the image: a page script clicking this button does nothing.
        if (!event.isTrusted) return;
        this.checkNow();
      });
      this.setBody(
        h('p', {
          className: `hint-title tone-${hint.label}`,
          'data-hint': hint.label,
          'data-mirrored': String(hint.mirrored === true),
        }, hint.title),
        h('p', { className: 'hint-text' }, hint.text),
        h('p', { className: 'hint-note', role: 'note' }, hint.caution),
        h('p', { className: 'hint-distance muted' },
          hint.distanceText ?? `Fingerprint distance: ${hint.distance ?? '?'} of 256 bits (PDQ perceptual hash).`),
        h('div', { className: 'row' },
          check,
          h('button', { type: 'button', className: 'secondary', onclick: () => this.close() }, 'Close')),
        h('p', { className: 'muted' }, 'Checking sends this image to your FakeScope server for a verdict of its own.'),
      );
    }

    /** "Check this image" from a hint: the same check as the context menu's. */
    checkNow() {
      this.showLoading(this.srcUrl);
      this.panel.focus({ preventScroll: true });
      chrome.runtime.sendMessage({ type: 'fakescope:check', srcUrl: this.srcUrl }).catch((error) => {
        this.showError(this.srcUrl, {
          title: 'FakeScope is unavailable',
          message: String(error?.message ?? error),
          guidance: 'Reload the page and try again.',
        });
      });
    }

    showResult(srcUrl, view, aspects, cached) {
      this.unwatch();
      this.srcUrl = srcUrl;
      this.view = view;
      this.askPort?.disconnect();
      this.askPort = null;
      this.announce(`FakeScope: ${view.headline}. ${view.score.text}.`);
      const score = view.score.percent;
      const gauge = score === null
        ? h('p', { className: 'muted' }, view.score.text)
        : h('div', { className: 'gauge' },
            h('div', {
              className: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100',
              'aria-valuenow': String(score), 'aria-valuetext': view.score.text, 'aria-label': 'Likelihood of AI generation',
            }, h('span', { className: 'fill', style: `left: ${score}%` })),
            h('div', { className: 'scale', 'aria-hidden': 'true' }, h('span', {}, 'authentic'), h('span', {}, 'AI-generated')),
            h('p', { className: 'score' }, view.score.text));
      this.setBody(
        h('p', { className: `verdict tone-${view.label}`, 'data-label': view.label }, view.headline),
        gauge,
        h('p', { className: 'decided' }, view.decidedBy),
        view.untrainedWarning ? h('p', { className: 'warning', role: 'note' }, view.untrainedWarning) : null,
        h('h3', {}, 'Explanation'),
        h('p', { className: 'explanation' }, view.explanation ?? 'The server gave no explanation for this image.'),
        h('h3', {}, 'Evidence'),
        view.evidence.length
          ? h('ul', { className: 'evidence' }, view.evidence.map((item) =>
              h('li', {}, item.summary, h('span', { className: 'tag' }, item.tag))))
          : h('p', { className: 'muted' }, 'No provenance metadata (C2PA, IPTC, generator tags, camera EXIF) was found in the file.'),
        h('p', { className: 'muted model' }, view.model ? `Model: ${view.model}` : 'No model ran on this server.',
          cached ? ' · from this browser’s recent checks' : ''),
        askSection(this, aspects),
        reportSection(this),
      );
    }
  }

  let overlay = null;

  /**
   * A shadow root's mode cannot change: when the panel needed is of the other kind (a closed one
   * for an image of another frame, an open one for this document's), the old panel is closed
   * (host, listeners, ports) and a new one made. The focus goes back where it was before the old
   * panel only if it was inside it; so the new panel gives it back to the same place.
   */
  function replaceOverlay(closed) {
    if (overlay.closed === closed) return;
    overlay.close({ restoreFocus: overlay.hasFocus() });
    overlay = new Overlay({ closed });
  }

  /**
   * Shows a state (loading / result / hint / error) for an image URL, anchored at that image;
   * or, for an image of a small embedded frame (`frame`, from the worker), at the viewport's
   * top right, saying where the image is.
   */
  function showOverlay({ state, srcUrl, checkId, view, aspects, cached, failure, hint, anchor, frame }) {
    const closed = typeof frame?.note === 'string';
    overlay ??= new Overlay({ closed });
    // The outcome of a check the user already replaced (a second right-click, a badge, Try
    // again) comes late: the panel keeps showing what the user asked for last.
    if (state !== 'loading' && checkId !== undefined && checkId !== overlay.checkId) return;
    // The user closed the panel while this image was being checked: keep it closed (a badge
    // click, which comes with its anchor, is the user asking again).
    if (state !== 'loading' && !anchor && !overlay.isOpen && overlay.dismissedSrc === srcUrl) return;
    replaceOverlay(closed);
    overlay.frame = closed ? frame : null;
    // The image is in another frame: an image of this document with the same address is not it.
    const target = overlay.frame ? null : anchor ?? findImages(srcUrl)[0] ?? null;
    // A new check, or a badge the user clicked, takes the focus; the outcome of a check already
    // shown as loading keeps the focus where it is (unless the update removed the focused control).
    const update = state !== 'loading' && !anchor && overlay.isOpen && overlay.srcUrl === srcUrl;
    const hadFocus = overlay.hasFocus();
    if (state !== 'loading') overlay.checkId = null; // shown now: no check's late outcome replaces it
    if (state === 'loading') overlay.showLoading(srcUrl, checkId ?? null);
    else if (state === 'result') overlay.showResult(srcUrl, view, aspects, cached);
    else if (state === 'hint') overlay.showHint(srcUrl, hint);
    else overlay.showError(srcUrl, failure);
    overlay.open(target, { focus: !update || (hadFocus && !overlay.hasFocus()) });
  }

  function onOverlayMessage(message, _sender, sendResponse) {
    if (message?.type !== 'fakescope:overlay') return false;
    showOverlay(message);
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
