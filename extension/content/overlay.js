/**
 * FakeScope overlay: shows one image's verdict next to it, inside a Shadow DOM.
 *
 * A classic (non-module) content script, self-contained on purpose: content
 * scripts cannot be ES modules, and importing lib/ modules dynamically would
 * mean listing them as web_accessible_resources, which lets any page detect the
 * extension. Instead the service worker sends a ready-made view (lib/verdict.js
 * describeAnalysis) and this script only renders it and relays the user's
 * actions back. Injected on demand (right-click, with content/page-image.js) or
 * with content/feed.js on the sites where feed mode is on.
 *
 * Isolation: the host element sits in the top layer (popover) with its own
 * `:host { all: initial !important }` so page CSS such as `* { all: unset }` or
 * huge z-indexes cannot hide or restyle it; it is absolutely positioned in
 * document coordinates, so it never changes the page's layout or scrolling.
 */
(() => {
  if (globalThis.__fakescope) return;

  const STYLE = `
    :host { all: initial !important; display: block !important; position: absolute !important;
      inset: 0 auto auto 0 !important; width: 0 !important; height: 0 !important; margin: 0 !important;
      padding: 0 !important; border: 0 !important; overflow: visible !important; background: none !important;
      z-index: 2147483647 !important; visibility: visible !important; opacity: 1 !important;
      pointer-events: none !important; transform: none !important; filter: none !important; }
    .panel { pointer-events: auto; position: absolute; box-sizing: border-box; width: min(380px, calc(100vw - 16px));
      max-height: min(80vh, 640px); overflow: auto; overscroll-behavior: contain; background: #fff; color: #1a1a1a;
      border: 1px solid #5a5a5a; border-radius: 10px; box-shadow: 0 6px 28px rgba(0,0,0,.35);
      font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; text-align: left;
      letter-spacing: normal; text-transform: none; direction: ltr; }
    .panel:focus { outline: 3px solid #1a56c4; outline-offset: 2px; }
    * { box-sizing: border-box; }
    header { display: flex; align-items: center; justify-content: space-between; gap: 8px; padding: 10px 12px;
      border-bottom: 1px solid #ddd; background: #f3f5f9; border-radius: 10px 10px 0 0; }
    h2 { margin: 0; font-size: 15px; font-weight: 700; color: #18386e; }
    h3 { margin: 14px 0 6px; font-size: 13px; font-weight: 700; color: #333; text-transform: uppercase; letter-spacing: .03em; }
    .body { padding: 12px; }
    button, select, input, textarea { font: inherit; color: #1a1a1a; }
    button { cursor: pointer; border: 1px solid #18386e; background: #18386e; color: #fff; border-radius: 6px; padding: 5px 10px; }
    button.secondary { background: #fff; color: #18386e; }
    button:focus-visible, select:focus-visible, input:focus-visible, textarea:focus-visible, summary:focus-visible {
      outline: 3px solid #1a56c4; outline-offset: 2px; }
    button:disabled { opacity: .6; cursor: default; }
    .close { background: transparent; color: #333; border: 1px solid transparent; font-size: 20px; line-height: 1; padding: 2px 8px; }
    .close:hover { border-color: #999; }
    .verdict { margin: 0 0 8px; font-size: 20px; font-weight: 800; }
    .tone-fake { color: #a4001d; } .tone-real { color: #17602a; } .tone-uncertain { color: #6b4700; }
    .gauge { margin: 4px 0 8px; }
    .bar { position: relative; height: 12px; border-radius: 6px; border: 1px solid #777;
      background: linear-gradient(90deg, #d9efdc 0 40%, #f6ecd2 40% 60%, #f6d6da 60% 100%); }
    .fill { position: absolute; top: -4px; width: 4px; height: 18px; margin-left: -2px; background: #1a1a1a; border-radius: 2px; }
    .scale { display: flex; justify-content: space-between; font-size: 11px; color: #555; }
    .muted { color: #555; }
    .warning { margin: 8px 0; padding: 8px; border-left: 4px solid #a86b00; background: #fff4dc; color: #4a3200; }
    .error-title { margin: 0 0 6px; font-size: 17px; font-weight: 800; color: #a4001d; }
    ul { margin: 0; padding-left: 18px; }
    li { margin: 3px 0; }
    .tag { display: inline-block; font-size: 11px; color: #444; border: 1px solid #bbb; border-radius: 4px; padding: 0 4px; margin-left: 4px; }
    .row { display: flex; gap: 6px; align-items: center; margin: 6px 0; }
    .row > select, .row > input { flex: 1; min-width: 0; padding: 4px 6px; border: 1px solid #777; border-radius: 5px; background: #fff; }
    label { font-size: 13px; color: #333; }
    textarea { width: 100%; min-height: 56px; padding: 4px 6px; border: 1px solid #777; border-radius: 5px; background: #fff; }
    .explanation { max-height: 12em; overflow: auto; overscroll-behavior: contain; white-space: pre-wrap; }
    .answer { white-space: pre-wrap; margin-top: 6px; padding: 8px; background: #f6f7f9; border-radius: 6px; min-height: 1.5em; }
    .answer:empty { display: none; }
    fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 6px 0; padding: 6px 8px; }
    legend { font-size: 13px; padding: 0 4px; }
    .spinner { display: inline-block; width: 14px; height: 14px; border: 2px solid #18386e; border-right-color: transparent;
      border-radius: 50%; animation: spin .8s linear infinite; vertical-align: -2px; margin-right: 6px; }
    @keyframes spin { to { transform: rotate(360deg); } }
    @media (prefers-reduced-motion: reduce) { .spinner { animation: none; } }
    .status { margin-top: 6px; font-size: 13px; }
    .hint-title { margin: 0 0 8px; font-size: 17px; font-weight: 800; }
    .hint-note { margin: 8px 0; padding: 8px; border-left: 4px solid #18386e; background: #eef2fa; color: #1a1a1a; }
    .sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
      clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
  `;

  /** Creates an element; strings become text nodes (never HTML: server text is untrusted). */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === false || value === null || value === undefined) continue;
      if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else if (name === 'className') el.className = value;
      else el.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  let idCounter = 0;
  const uid = (prefix) => `fs-${prefix}-${(idCounter += 1)}`;

  /** The <img> elements showing this URL, best candidate (largest visible) first. */
  function findImages(srcUrl) {
    return [...document.images]
      .filter((img) => img.currentSrc === srcUrl || img.src === srcUrl)
      .sort((a, b) => b.clientWidth * b.clientHeight - a.clientWidth * a.clientHeight);
  }

  class Overlay {
    constructor() {
      this.host = document.createElement('fakescope-overlay');
      this.root = this.host.attachShadow({ mode: 'open' });
      this.root.append(h('style', {}, STYLE));
      this.titleId = uid('title');
      this.closeButton = h('button', { className: 'close', type: 'button', 'aria-label': 'Close FakeScope result', onclick: () => this.close() }, '×');
      this.body = h('div', { className: 'body' });
      this.live = h('p', { className: 'sr-only', role: 'status', 'aria-live': 'polite' });
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
        const active = document.activeElement;
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
      if (opening || focus) this.panel.focus({ preventScroll: true });
    }

    /** Whether the keyboard focus is inside the panel (Escape only works from there). */
    hasFocus() {
      const inside = this.root.activeElement;
      return Boolean(inside && this.panel.contains(inside));
    }

    /** Places the panel over the image's top-left corner, kept inside the viewport horizontally. */
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
      const maxLeft = window.scrollX + document.documentElement.clientWidth - width - margin;
      left = Math.max(window.scrollX + margin, Math.min(left, maxLeft));
      this.panel.style.top = `${Math.round(top)}px`;
      this.panel.style.left = `${Math.round(left)}px`;
    }

    close() {
      if (this.isOpen && this.body.getAttribute('aria-busy') === 'true') this.dismissedSrc = this.srcUrl;
      this.askPort?.disconnect();
      this.askPort = null;
      window.removeEventListener('resize', this.onResize);
      window.removeEventListener('scroll', this.onScroll, { capture: true });
      if (this.host.matches?.(':popover-open')) this.host.hidePopover();
      this.host.remove();
      if (this.returnFocus?.isConnected) this.returnFocus.focus({ preventScroll: true });
      this.returnFocus = null;
    }

    setBody(...children) {
      // replaceChildren() would insert `null` as the text "null": drop absent parts first.
      this.body.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
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
      this.setBody(h('p', { role: 'status' }, h('span', { className: 'spinner', 'aria-hidden': 'true' }), 'Checking this image…'));
      this.body.setAttribute('aria-busy', 'true');
    }

    showError(srcUrl, failure) {
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
      chrome.runtime.sendMessage({ type: 'fakescope:recheck', srcUrl: this.srcUrl }).catch((error) => {
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
        this.askSection(aspects),
        this.reportSection(),
      );
    }

    askSection(aspects) {
      const aspectId = uid('aspect');
      const questionId = uid('question');
      const answer = h('div', { className: 'answer', 'aria-live': 'polite' });
      const status = h('p', { className: 'status muted', role: 'status' });
      const select = h('select', { id: aspectId }, (aspects ?? []).map((a) => h('option', { value: a.name }, a.label)));
      const input = h('input', { id: questionId, type: 'text', maxlength: '500', placeholder: 'e.g. Are the shadows consistent?' });
      const buttons = [];
      // Questions and reports go to the server under the user's token: only the user's own
      // clicks and keys send them, not a page script's (the shadow root is open).
      const ask = (request, event) => {
        if (event.isTrusted) this.ask(request, answer, status, buttons);
      };
      // Two buttons read "Ask": their accessible names say which question each sends.
      const aspectButton = h('button', { type: 'button', 'aria-label': 'Ask about the aspect', onclick: (event) => ask({ aspect: select.value }, event) }, 'Ask');
      const questionButton = h('button', { type: 'button', 'aria-label': 'Ask your question', onclick: (event) => ask({ question: input.value }, event) }, 'Ask');
      buttons.push(aspectButton, questionButton);
      input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter') ask({ question: input.value }, event);
      });
      return h('section', { 'aria-label': 'Ask about this image' },
        h('h3', {}, 'Ask about this image'),
        h('label', { for: aspectId }, 'An aspect'),
        h('div', { className: 'row' }, select, aspectButton),
        h('label', { for: questionId }, 'Or your own question'),
        h('div', { className: 'row' }, input, questionButton),
        status, answer);
    }

    /** Streams the answer from the service worker (which reads the server's SSE) into the panel. */
    ask(request, answer, status, buttons) {
      this.askPort?.disconnect();
      answer.textContent = '';
      status.textContent = 'Waiting for the answer…';
      buttons.forEach((b) => { b.disabled = true; });
      const port = chrome.runtime.connect({ name: 'fakescope-ask' });
      this.askPort = port;
      const finish = (text) => {
        status.textContent = text;
        buttons.forEach((b) => { b.disabled = false; });
        if (this.askPort === port) {
          port.disconnect();
          this.askPort = null;
        }
      };
      port.onMessage.addListener((message) => {
        if (message.type === 'text') {
          status.textContent = 'Answering…';
          answer.append(message.text);
        } else if (message.type === 'done') {
          if (!answer.textContent && message.answer) answer.textContent = message.answer;
          finish('Answer complete.');
        } else if (message.type === 'error') {
          const f = message.failure ?? {};
          finish(`${f.title ?? 'Failed'}: ${f.message ?? ''} ${f.guidance ?? ''}`.trim());
        }
      });
      port.onDisconnect.addListener(() => {
        if (this.askPort === port) finish('The connection to FakeScope closed.');
      });
      port.postMessage({ sha256: this.view.sha256, ...request });
    }

    reportSection() {
      const formId = uid('report');
      const reasonId = uid('reason');
      const status = h('p', { className: 'status report-status', role: 'status' });
      const choices = [['fake', 'AI-generated'], ['real', 'Authentic'], ['uncertain', 'Not sure']]
        .filter(([value]) => value !== this.view.label);
      const radios = choices.map(([value, text], i) =>
        h('label', { className: 'row' }, h('input', { type: 'radio', name: formId, value, checked: i === 0 }), text));
      const reason = h('textarea', { id: reasonId, maxlength: '2000', 'aria-required': 'true' });
      const submit = h('button', { type: 'submit' }, 'Send report');
      const form = h('form', { id: formId, hidden: true },
        h('fieldset', {}, h('legend', {}, 'What should the verdict be?'), radios),
        h('label', { for: reasonId }, 'Why is the verdict wrong?'),
        reason,
        h('div', { className: 'row' }, submit));
      const toggle = h('button', { type: 'button', className: 'secondary', 'aria-expanded': 'false', 'aria-controls': formId }, 'Report a wrong verdict');
      toggle.addEventListener('click', () => {
        form.hidden = !form.hidden;
        toggle.setAttribute('aria-expanded', String(!form.hidden));
        if (!form.hidden) reason.focus();
      });
      // A report goes out under the user's token: only a submission the user made counts.
      // A submit event cannot tell (requestSubmit() fires a trusted one), so the button's
      // click, which every user path goes through (Enter too), is what is checked.
      let byUser = false;
      submit.addEventListener('click', (event) => {
        byUser = event.isTrusted;
      });
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        const submittedByUser = byUser;
        byUser = false;
        if (!submittedByUser) return;
        if (!reason.value.trim()) {
          status.textContent = 'Please say why the verdict is wrong.';
          reason.setAttribute('aria-invalid', 'true');
          reason.focus();
          return;
        }
        reason.removeAttribute('aria-invalid');
        submit.disabled = true;
        status.textContent = 'Sending…';
        const suggestedLabel = form.querySelector('input[type=radio]:checked')?.value ?? null;
        const reply = await chrome.runtime.sendMessage({
          type: 'fakescope:report', sha256: this.view.sha256, reason: reason.value, suggestedLabel,
        }).catch((error) => ({ ok: false, failure: { title: 'FakeScope is unavailable', message: String(error.message ?? error) } }));
        submit.disabled = false;
        if (reply?.ok) {
          form.hidden = true;
          toggle.hidden = true;
          status.textContent = 'Thank you: the image was sent to human review.';
          this.panel.focus({ preventScroll: true }); // the focused button was hidden
        } else {
          const f = reply?.failure ?? {};
          status.textContent = `${f.title ?? 'The report failed'}: ${f.message ?? ''} ${f.guidance ?? ''}`.trim();
        }
      });
      return h('section', { 'aria-label': 'Report a wrong verdict' }, h('h3', {}, 'Wrong verdict?'), toggle, form, status);
    }
  }

  let overlay = null;

  /** Shows a state (loading / result / hint / error) for an image URL, anchored at that image. */
  function showOverlay({ state, srcUrl, view, aspects, cached, failure, hint, anchor }) {
    overlay ??= new Overlay();
    // The user closed the panel while this image was being checked: keep it closed (a badge
    // click, which comes with its anchor, is the user asking again).
    if (state !== 'loading' && !anchor && !overlay.isOpen && overlay.dismissedSrc === srcUrl) return;
    const target = anchor ?? findImages(srcUrl)[0] ?? null;
    // A new check, or a badge the user clicked, takes the focus; the outcome of a check already
    // shown as loading keeps the focus where it is (unless the update removed the focused control).
    const update = state !== 'loading' && !anchor && overlay.isOpen && overlay.srcUrl === srcUrl;
    const hadFocus = overlay.hasFocus();
    if (state === 'loading') overlay.showLoading(srcUrl);
    else if (state === 'result') overlay.showResult(srcUrl, view, aspects, cached);
    else if (state === 'hint') overlay.showHint(srcUrl, hint);
    else overlay.showError(srcUrl, failure);
    overlay.open(target, { focus: !update || (hadFocus && !overlay.hasFocus()) });
  }

  chrome.runtime.onMessage.addListener((message, _sender, sendResponse) => {
    if (message?.type !== 'fakescope:overlay') return false;
    showOverlay(message);
    sendResponse({ ok: true });
    return false;
  });

  globalThis.__fakescope = { showOverlay, findImages, h };
})();
