/**
 * The result panel itself, a labelled dialog and what it shows of one image (loading, result,
 * hint, error), drawn by the extension page panel/frame-panel.js into a root it is given. That
 * page is what every content script hosts in an iframe (content/overlay.js), so the page the
 * panel is in sees only a cross-origin iframe.
 *
 * What depends on the page comes in as `actions`: `close()` (remove the panel: its host's
 * iframe, through the worker) and `recheck()` (**Try again** and a hint's **Check this image**:
 * the worker checks the panel's image again and shows it here; resolves, or rejects when the
 * worker cannot be reached). The panel only renders the views the service worker sends
 * (lib/verdict.js describeAnalysis) and passes the user's clicks back; the questions and reports
 * go out through the forms (panel/panel-forms.js), which use this panel's `view`, `panel` and
 * `askPort`.
 *
 * A classic script: panel/frame-panel.html loads it after content/overlay-dom.js and
 * panel/panel-forms.js; it leaves `Panel` on `globalThis.__fakescopePanel`.
 */
(() => {
  // Own properties only: a page element named like a part is not one (content/overlay-dom.js).
  const has = (name) => Object.hasOwn(globalThis, name);
  if (has('__fakescopePanel') || !has('__fakescopeOverlayDom') || !has('__fakescopeOverlayForms')) return;
  const { h, uid } = globalThis.__fakescopeOverlayDom;
  const { askSection, reportSection } = globalThis.__fakescopeOverlayForms;

  class Panel {
    /**
     * @param {ShadowRoot} root where the panel and its keyboard handling live (its styles are the root owner's)
     * @param {{close: () => void, recheck: () => Promise<unknown>}} actions
     */
    constructor(root, actions) {
      this.root = root;
      this.actions = actions;
      this.titleId = uid('title');
      this.closeButton = h('button', { className: 'close', type: 'button', 'aria-label': 'Close FakeScope result', onclick: () => this.actions.close() }, '×');
      this.body = h('div', { className: 'body' });
      this.live = h('p', { className: 'sr-only', role: 'status', 'aria-live': 'polite' });
      // The note every state starts with when the image is not beside the panel: it is in an
      // embedded frame too small for the panel (worker/check.js), named by its site.
      this.note = null;
      this.panel = h(
        'section',
        { className: 'panel', role: 'dialog', 'aria-labelledby': this.titleId, tabindex: '-1' },
        h('header', {}, h('h2', { id: this.titleId }, 'FakeScope'), this.closeButton),
        this.body,
        this.live,
      );
      this.root.append(this.panel);
      // Escape closes the panel when it is released, as a button acts on release: the close
      // removes this page's frame, and when that happened between key-down and key-up (once in
      // a CI run), the browser never acknowledged the key-up and the key press hung.
      let escapeDown = false;
      this.root.addEventListener('keydown', (event) => {
        if (event.key === 'Escape') {
          event.stopPropagation();
          escapeDown = true;
        }
      });
      this.root.addEventListener('keyup', (event) => {
        if (event.key === 'Escape' && escapeDown) {
          event.stopPropagation();
          escapeDown = false;
          this.actions.close();
        }
      });
      this.askPort = null;
      // While a check runs: the port that tells the panel when the service worker stopped before answering.
      this.watchPort = null;
      this.srcUrl = null;
      this.view = null;
    }

    /** Whether it shows a check still running. */
    get busy() {
      return this.body.getAttribute('aria-busy') === 'true';
    }

    /** Whether the keyboard focus is inside the panel (Escape only works from there). */
    hasFocus() {
      const inside = this.root.activeElement;
      return Boolean(inside && this.panel.contains(inside));
    }

    focus() {
      this.panel.focus({ preventScroll: true });
    }

    /** Shows one state the worker sent (`fakescope:overlay`, less where it goes). */
    show({ state, srcUrl, view, aspects, cached, failure, hint }) {
      if (state === 'loading') this.showLoading(srcUrl);
      else if (state === 'result') this.showResult(srcUrl, view, aspects, cached);
      else if (state === 'hint') this.showHint(srcUrl, hint);
      else this.showError(srcUrl, failure);
    }

    /** Stops what runs for the panel (its answer stream, its check watch): it is going away. */
    stop() {
      this.unwatch();
      this.askPort?.disconnect();
      this.askPort = null;
    }

    /**
     * A long explanation scrolls in a box of its own: one that scrolls gets a tab stop (and a
     * name), so keyboard users can scroll it too; a short one stays out of the tab order.
     * Measured, so called once the panel is laid out.
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

    setBody(...children) {
      const note = this.note ? h('p', { className: 'frame-note', role: 'note' }, this.note) : null;
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

    showLoading(srcUrl) {
      this.srcUrl = srcUrl;
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
        if (!this.busy) return;
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
        // "Try again" sends the image again: only a real click does, never a script's.
        if (!event.isTrusted) return;
        this.recheck();
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
                // A tab opens for a real click only, not for each click() of a script.
                onclick: (event) => {
                  if (event.isTrusted) chrome.runtime.sendMessage({ type: 'fakescope:open-options', grant: failure.imageOrigin }).catch(() => {});
                },
              }, 'Allow this image site…')
            : null,
          h('button', { type: 'button', className: 'secondary', onclick: () => this.actions.close() }, 'Close')),
      );
    }

    /**
     * Checks this panel's image again and shows it here: **Try again** after an error, and a
     * hint's **Check this image** (the same check as the context menu's, which sends the image).
     */
    recheck() {
      this.showLoading(this.srcUrl);
      // The focused button is gone: keep the focus in the panel (Escape still closes it).
      this.focus();
      this.actions.recheck().catch((error) => {
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
        // Only a real click sends the image: a script clicking this button does nothing.
        if (!event.isTrusted) return;
        this.recheck();
      });
      this.setBody(
        h('p', {
          className: `hint-title tone-${hint.label}`,
          'data-hint': hint.label,
          'data-mirrored': String(hint.mirrored === true),
          'data-rotated': hint.rotated ?? '',
          'data-flipped': hint.flipped ?? '',
        }, hint.title),
        h('p', { className: 'hint-text' }, hint.text),
        h('p', { className: 'hint-note', role: 'note' }, hint.caution),
        h('p', { className: 'hint-distance muted' },
          hint.distanceText ?? `Fingerprint distance: ${hint.distance ?? '?'} of 256 bits (PDQ perceptual hash).`),
        h('div', { className: 'row' },
          check,
          h('button', { type: 'button', className: 'secondary', onclick: () => this.actions.close() }, 'Close')),
        h('p', { className: 'muted' }, 'Checking sends this image to your FakeScope server for a verdict of its own.'),
      );
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

  globalThis.__fakescopePanel = { Panel };
})();
