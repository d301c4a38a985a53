/**
 * FakeScope feed mode: small verdict badges on images the server has already
 * analysed. Runs only on sites the user switched on (registered by the service
 * worker), after content/overlay.js, whose showOverlay the badges open.
 *
 * Images entering the viewport (IntersectionObserver; MutationObserver catches
 * images added by infinite scroll or lazy loaders that swap `src`) are queued by
 * URL and sent to the worker in debounced batches. The worker hashes the bytes
 * and asks /v1/lookup; no image leaves the browser. Work follows the reader: at most two
 * batches are in flight (the next waits for an answer), and a batch takes only addresses
 * still shown near the viewport (an image the page took out, or scrolled far
 * past, meanwhile is not fetched; it is considered again if it comes back). What is
 * remembered per address (asked, verdicts) is bounded, oldest forgotten first: a feed
 * scrolled for hours keeps getting badges.
 *
 * A badge is shown only while its image is near the viewport (the IntersectionObserver's
 * margin): the others wait hidden, with no box, nothing to lay out and nothing to do per frame,
 * so what a scrolled frame costs does not grow with the badges on the page; one comes back, the
 * same verdict in the same place, when its image comes near again (scrolled to, or Tab).
 *
 * A badge shows only its word (AI?, Real, ?) and the short verdict in its name; its click asks
 * the worker for a panel (the framed extension page, content/overlay.js), which alone shows the
 * explanation, the evidence and the forms.
 *
 * An image the server has no verdict for may get a *hint* badge instead (dashed, "≈"): it
 * looks like an image that was checked (a PDQ near match), or, "≈⇆", like a mirrored copy
 * of one (a near match of its mirror hash), or, "≈↻", like a rotated copy of one (a near
 * match of a rotation hash), or, "≈⇅", like a copy of one flipped upside down, or, "≈⇆↻",
 * like a mirrored copy also turned a quarter turn (a near match of a flip hash). The hint
 * opens the panel in its
 * hint state, which says the image itself was not checked and offers the real check.
 */
(() => {
  // Own properties only: a page element named like a part is not one (content/overlay-dom.js).
  // stop() leaves the part as null, so feed mode may start afresh.
  const has = (name) => Object.hasOwn(globalThis, name) && Boolean(globalThis[name]);
  if (has('__fakescopeFeed') || !has('__fakescope')) return;
  const { showOverlay, h, keepOnTop, watchExtension, checkExtension } = globalThis.__fakescope;

  const MAX_REMEMBERED_URLS = 2000;
  const MIN_SIDE_PX = 48;
  const BATCH_SIZE = 24;
  const MAX_BATCHES_IN_FLIGHT = 2;
  const DEBOUNCE_MS = 300;
  // A lookup turned away for a passing reason is asked again after this, doubled for each
  // turn-away in a row (up to the longest), back to the first after one that went through.
  const RETRY_FIRST_MS = 1500;
  const RETRY_LONGEST_MS = 60_000;
  let retryMs = RETRY_FIRST_MS;
  const MAX_ATTACHMENTS = 5;

  const seenUrls = new Set(); // addresses asked about (or waiting to be), oldest first
  const queued = new Set();
  const verdicts = new Map(); // url → {view: {label}, short} or {hint}: what a badge says
  const nearby = new WeakSet(); // images the observer last saw near the viewport
  let batchesInFlight = 0;
  const badges = new Map(); // img → badge button (in a shadow host of its own)
  const shown = new Set(); // images whose badge is shown: near the viewport (or focused)
  // The image whose badge opened the panel open now: its badge stays shown, scrolled far or not,
  // so that closing the panel gives the focus back to it (a hidden badge cannot take it).
  let panelOf = null;
  let notice = null; // the host of the failure notice
  let timer = null;
  let failureShown = false;

  // Each badge is a shadow host of its own, put in the page right after its image (or the link
  // or button around it), so a keyboard user reaches it next to what it describes. It is shown
  // in the top layer: it takes no room in the page's layout, and no page z-index covers it.
  const STYLE = `
    :host { all: initial !important; display: block !important; position: absolute !important;
      inset: 0 auto auto 0 !important; width: 0 !important; height: 0 !important; overflow: visible !important;
      margin: 0 !important; padding: 0 !important; border: 0 !important; z-index: 2147483646 !important;
      pointer-events: none !important; visibility: visible !important; opacity: 1 !important;
      transform: none !important; filter: none !important; }
    button { pointer-events: auto; position: absolute; font: 700 12px/1 system-ui, sans-serif; padding: 4px 6px;
      border-radius: 10px; border: 2px solid #fff; color: #fff; cursor: pointer; box-shadow: 0 1px 4px rgba(0,0,0,.5);
      white-space: nowrap; }
    button:focus-visible { outline: 3px solid #1a56c4; outline-offset: 2px; }
    .fake { background: #a4001d; } .real { background: #17602a; } .uncertain { background: #6b4700; }
    button.hint { background: #fff; border: 2px dashed currentColor; font-weight: 600; }
    .hint.fake { color: #a4001d; } .hint.real { color: #17602a; } .hint.uncertain { color: #6b4700; }
    .notice { pointer-events: auto; position: fixed; right: 12px; bottom: 12px; max-width: 320px; padding: 8px 10px;
      background: #fff; color: #1a1a1a; border: 1px solid #a4001d; border-radius: 8px; font: 13px/1.4 system-ui, sans-serif; }
  `;
  // The badge goes after the nearest control around its image: inside a link it would be a
  // control within a control, and after it the link's own name still comes first.
  const AROUND_IMAGE = 'a[href], button, summary, label, [role=link], [role=button]';

  /** A shadow host (tag `tag`) for one badge or the notice, isolated from the page's styles. */
  function isolatedHost(tag, ...content) {
    const host = document.createElement(tag);
    host.attachShadow({ mode: 'open' }).append(h('style', {}, STYLE), ...content);
    return host;
  }

  /** Shows a host in the top layer (older browsers: above the page's z-indexes). */
  function showHost(host) {
    if (typeof host.showPopover !== 'function' || host.matches(':popover-open')) return;
    host.setAttribute('popover', 'manual');
    try {
      host.showPopover();
    } catch {
      host.removeAttribute('popover');
      return;
    }
    keepOnTop(); // an open panel stays above the new badge
  }

  /**
   * Puts a badge's host right after its image (or the control or <picture> around it), so it
   * comes next in the tab order, after the badges of the images before it there (a link may
   * hold several); again when the page moved the image or took the host out. Returns whether
   * it is there.
   */
  function attachBadge(img, badge) {
    const host = badge.getRootNode().host;
    const after = img.closest(AROUND_IMAGE) ?? img.closest('picture') ?? img;
    if (!after.parentNode) return false;
    let last = after;
    for (let node = after.nextSibling; node?.localName === 'fakescope-badge'; node = node.nextSibling) {
      if (node === host) {
        showHost(host);
        return true;
      }
      last = node;
    }
    // A page that keeps taking foreign elements out gets no fight over them.
    if (badge.attachments >= MAX_ATTACHMENTS) return false;
    badge.attachments += 1;
    last.after(host);
    showHost(host);
    return true;
  }

  const urlOf = (img) => img.currentSrc || img.src || '';

  /** Adds to a Set or Map kept to MAX_REMEMBERED_URLS entries: the oldest go first. */
  function remember(memory, key, value) {
    memory.delete(key);
    if (memory instanceof Map) memory.set(key, value);
    else memory.add(key);
    while (memory.size > MAX_REMEMBERED_URLS) memory.delete(memory.keys().next().value);
  }

  function isWorthChecking(img) {
    const url = urlOf(img);
    if (!/^https?:/i.test(url)) return false;
    const rect = img.getBoundingClientRect();
    return rect.width >= MIN_SIDE_PX && rect.height >= MIN_SIDE_PX;
  }

  const visibility = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        nearby.add(entry.target);
        consider(entry.target);
      } else {
        nearby.delete(entry.target);
        hideBadge(entry.target);
      }
    }
  }, { rootMargin: '200px' });

  function consider(img) {
    // Still loading (a new source): its address may still be the old one's. The load event
    // brings it back here once it shows what it will show.
    if (!img.complete) return;
    const url = urlOf(img);
    if (badges.has(img) && badges.get(img).dataset.src !== url) removeBadge(img);
    if (verdicts.has(url)) {
      placeBadge(img, verdicts.get(url));
      return;
    }
    if (!isWorthChecking(img) || seenUrls.has(url)) return;
    remember(seenUrls, url);
    queued.add(url);
    if (queued.size >= BATCH_SIZE) flush();
    else scheduleFlush();
  }

  function scheduleFlush() {
    if (timer === null) timer = setTimeout(flush, DEBOUNCE_MS);
  }

  /**
   * The next batch: queued addresses that an image near the viewport still shows. The others
   * (taken out of the page, scrolled far past, showing another source now) are forgotten, so
   * they are considered afresh should they come near again.
   */
  function nextBatch() {
    const shownNearby = new Set();
    for (const img of document.images) if (nearby.has(img)) shownNearby.add(urlOf(img));
    const urls = [];
    for (const url of queued) {
      if (urls.length === BATCH_SIZE) break;
      queued.delete(url);
      if (shownNearby.has(url)) urls.push(url);
      else seenUrls.delete(url);
    }
    return urls;
  }

  async function flush() {
    clearTimeout(timer);
    timer = null;
    // The answer of a batch in flight sends the next: work goes at the worker's pace.
    if (batchesInFlight >= MAX_BATCHES_IN_FLIGHT) return;
    const urls = nextBatch();
    if (queued.size) scheduleFlush();
    if (!urls.length) return;
    let reply;
    batchesInFlight += 1;
    try {
      reply = await chrome.runtime.sendMessage({ type: 'fakescope:lookup', urls });
    } catch {
      // The extension was reloaded or removed: its badges and panel go (content/overlay.js);
      // anything else stops feed mode on this page all the same.
      if (checkExtension()) stop();
      return;
    } finally {
      batchesInFlight -= 1;
      if (queued.size) scheduleFlush();
    }
    if (reply?.stopped) {
      stop(); // feed mode was switched off for this site while the page stayed open
      return;
    }
    if (reply?.failure) showFailureOnce(reply.failure);
    if (reply?.retry?.length) askAgainLater(reply.retry);
    else retryMs = RETRY_FIRST_MS;
    for (const [url, result] of Object.entries(reply?.results ?? {})) {
      if (!result) continue;
      remember(verdicts, url, result);
      // Images far away now get theirs when they come near again (consider).
      for (const img of document.images) if (urlOf(img) === url && nearby.has(img)) placeBadge(img, result);
    }
  }

  /**
   * Addresses the worker could not look up now (its queue, shared by every tab, was full; the
   * server timed out, was unreachable or busy): no longer counted as asked, and considered
   * again later if their image is still near, later each time it happens again.
   */
  function askAgainLater(urls) {
    const later = new Set(urls);
    later.forEach((url) => seenUrls.delete(url));
    setTimeout(() => {
      if (globalThis.__fakescopeFeed !== feed) return; // feed mode stopped meanwhile
      for (const img of document.images) if (nearby.has(img) && later.has(urlOf(img))) consider(img);
    }, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_LONGEST_MS);
  }

  function showFailureOnce(failure) {
    if (failureShown) return;
    failureShown = true;
    const close = h('button', { type: 'button', style: 'position: static; margin-left: 8px; background: #18386e', 'aria-label': 'Dismiss the FakeScope notice' }, '×');
    const message = h('span', { role: 'status' });
    notice = isolatedHost('fakescope-notice', h('div', { className: 'notice' }, message, close));
    close.addEventListener('click', () => notice?.remove());
    document.documentElement.append(notice);
    showHost(notice);
    // The live region is in the page first and gets its words a moment later: a screen reader
    // says a change to a region it knows, not a region that arrives with its text.
    setTimeout(() => {
      message.textContent = `FakeScope feed lookups failed: ${failure.title}. ${failure.guidance ?? ''}`;
    }, 50);
  }

  /**
   * The badge of an image with a verdict (or hint): made, or given its new words; shown (in the
   * next frame, in place) if the image is near the viewport, else left hidden until it is.
   */
  function placeBadge(img, result) {
    let badge = badges.get(img);
    if (!badge) {
      badge = h('button', { type: 'button' });
      badge.attachments = 0;
      badge.dataset.src = urlOf(img);
      // Hidden (`media` all) while its image is far from the viewport: no box, no top-layer work.
      badge.far = h('style', { media: 'all' }, ':host { display: none !important; }');
      isolatedHost('fakescope-badge', badge, badge.far);
      badge.addEventListener('click', (event) => {
        event.preventDefault();
        event.stopPropagation();
        // Only the user opens a panel: a page script's click() (the badge's root is open) would
        // take the focus whenever it liked.
        if (!event.isTrusted) return;
        panelOf = img;
        openPanel(img);
      });
      badges.set(img, badge);
    }
    // The same verdict again (its image came near once more) changes nothing in the page.
    if (badge.result !== result) writeBadge(badge, result);
    if (nearby.has(img)) {
      shown.add(img);
      scheduleReposition();
    }
  }

  /** A badge's words, look and name for a verdict or a hint. */
  function writeBadge(badge, result) {
    badge.result = result;
    const { label } = result.hint ?? result.view;
    const word = label === 'fake' ? 'AI?' : label === 'real' ? 'Real' : '?';
    const short = result.hint?.short ?? result.short;
    if (result.hint) {
      // Not this image's verdict: a differently drawn badge, and no data-label.
      badge.className = `hint ${label}`;
      badge.dataset.kind = 'hint';
      badge.dataset.hint = label;
      badge.dataset.distance = String(result.hint.distance ?? '');
      // A mirrored copy of a checked image: "≈⇆"; a rotated copy: "≈↻"; a copy flipped upside
      // down: "≈⇅"; one mirrored and turned a quarter turn (a diagonal flip): "≈⇆↻"; each said
      // in the badge's label (hint.short).
      const mirrored = result.hint.mirrored === true;
      const rotated = !mirrored && typeof result.hint.rotated === 'string' ? result.hint.rotated : null;
      const flipped = !mirrored && !rotated && typeof result.hint.flipped === 'string' ? result.hint.flipped : null;
      badge.dataset.mirrored = String(mirrored);
      if (rotated) badge.dataset.rotated = rotated;
      else delete badge.dataset.rotated;
      if (flipped) badge.dataset.flipped = flipped;
      else delete badge.dataset.flipped;
      delete badge.dataset.label;
      const glyph = mirrored ? '≈⇆' : rotated ? '≈↻' : flipped === 'upsideDown' ? '≈⇅' : flipped ? '≈⇆↻' : '≈';
      badge.textContent = `${glyph} ${word}`;
    } else {
      badge.className = label;
      badge.dataset.kind = 'verdict';
      badge.dataset.label = label;
      delete badge.dataset.hint;
      delete badge.dataset.distance;
      delete badge.dataset.mirrored;
      delete badge.dataset.rotated;
      delete badge.dataset.flipped;
      badge.textContent = word;
    }
    // The name starts with the visible word (WCAG 2.5.3, label in name: a voice user says it).
    badge.setAttribute('aria-label', `${word}, FakeScope: ${short}. Show details`);
    badge.title = `FakeScope: ${short}`;
  }

  /**
   * Opens the panel for a badge's image: the worker makes it (the image's verdict or hint, which
   * it looked up, goes only into the panel page: worker/feed-lookup.js openFeedPanel) and this
   * document hosts it over the image (content/overlay.js).
   */
  async function openPanel(img) {
    const srcUrl = urlOf(img);
    let reply;
    try {
      reply = await chrome.runtime.sendMessage({ type: 'fakescope:feed-panel', srcUrl });
    } catch {
      checkExtension(); // reloaded or removed: this page's badges and panel go
      return;
    }
    if (reply?.ok && img.isConnected) showOverlay({ state: reply.state, srcUrl, framePanel: reply.framePanel, imageHere: true, anchor: img });
  }

  function removeBadge(img) {
    badges.get(img)?.getRootNode().host.remove();
    badges.delete(img);
    shown.delete(img);
  }

  /**
   * The badge of an image gone far from the viewport waits hidden: no box, and no work in the
   * frames that scroll (scheduleReposition moves only the badges shown). One with the keyboard
   * focus stays, so the focus is not lost; the badge of an image taken out of the page goes.
   */
  function hideBadge(img) {
    const badge = badges.get(img);
    if (!badge) return;
    if (!img.isConnected) removeBadge(img);
    else if (img !== panelOf && badge.getRootNode().host !== document.activeElement) {
      shown.delete(img);
      badge.far.media = 'all';
    }
  }

  /** Badges of images the page took out, or that show another source now, go (hidden ones too). */
  function dropBadgesOfImagesGone() {
    for (const [img, badge] of badges) {
      if (!img.isConnected || urlOf(img) !== badge.dataset.src) removeBadge(img);
    }
  }

  /**
   * Whether a badge still belongs to its image, which is still in the page: then it is in its
   * place in the page (attachBadge) and shown, ready to be measured.
   */
  function stillFits(img, badge) {
    // Gone, or now showing another image (a carousel or a recycled list row): the verdict was
    // for the old image, so the badge goes; the new image is considered on its own.
    if (!img.isConnected || urlOf(img) !== badge.dataset.src || !attachBadge(img, badge)) return false;
    if (badge.far.media !== 'not all') badge.far.media = 'not all';
    return true;
  }

  /** Where a badge goes: over its image's top-left corner. */
  function badgePlace(img, badge) {
    const rect = img.getBoundingClientRect();
    // Relative to the host, which sits at the top-left of its containing block (the page's
    // initial one, in the top layer): the badge moves with the page when it scrolls.
    const origin = badge.getRootNode().host.getBoundingClientRect();
    return {
      hidden: rect.width === 0 && rect.height === 0,
      top: Math.round(rect.top - origin.top + 6),
      left: Math.round(rect.left - origin.left + 6),
    };
  }

  function moveBadge(badge, place) {
    badge.hidden = place.hidden;
    badge.style.top = `${place.top}px`;
    badge.style.left = `${place.left}px`;
  }

  let repositionScheduled = false;
  function scheduleReposition() {
    if (repositionScheduled) return;
    repositionScheduled = true;
    requestAnimationFrame(() => {
      repositionScheduled = false;
      // Only the badges shown: the cost of a frame does not grow with the badges hidden far
      // away. Those that no longer fit go; every place is measured, then every badge moved: one
      // layout, not one per badge.
      const fitting = [];
      for (const img of [...shown]) {
        if (stillFits(img, badges.get(img))) fitting.push(img);
        else removeBadge(img);
      }
      const places = fitting.map((img) => [badges.get(img), badgePlace(img, badges.get(img))]);
      for (const [badge, place] of places) moveBadge(badge, place);
    });
  }

  function observeImagesIn(node) {
    if (node instanceof HTMLImageElement) visibility.observe(node);
    else if (node.querySelectorAll) node.querySelectorAll('img').forEach((img) => visibility.observe(img));
  }

  const mutations = new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === 'attributes' && record.target instanceof HTMLImageElement) {
        // A lazy loader swapped the source: the badge (for the old source) goes, and the image
        // is observed again so it is reconsidered when visible.
        removeBadge(record.target);
        visibility.unobserve(record.target);
        visibility.observe(record.target);
      }
      record.addedNodes.forEach(observeImagesIn);
    }
    if (panelOf && !document.querySelector('fakescope-overlay')) {
      // Its panel closed (the focus is back on the badge, or elsewhere): hidden again if far.
      const img = panelOf;
      panelOf = null;
      if (!nearby.has(img)) hideBadge(img);
    }
    dropBadgesOfImagesGone();
    scheduleReposition();
  });

  mutations.observe(document.documentElement, { childList: true, subtree: true, attributes: true, attributeFilter: ['src', 'srcset'] });
  function onImageLoad(event) {
    if (event.target instanceof HTMLImageElement) {
      visibility.unobserve(event.target);
      visibility.observe(event.target);
    }
  }
  document.addEventListener('load', onImageLoad, true);
  window.addEventListener('scroll', scheduleReposition, { passive: true, capture: true });
  window.addEventListener('resize', scheduleReposition, { passive: true });
  observeImagesIn(document);
  // Badges of an extension that was reloaded or removed go with it (content/overlay.js).
  watchExtension();

  /**
   * A check finished on this page (a hint's "Check this image", or the menu): its badge shows it
   * (the worker sends the badge's words with the result, worker/panels.js).
   */
  function onCheckResult(message) {
    if (message?.type !== 'fakescope:overlay' || message.state !== 'result' || !message.label || !message.short) return false;
    const result = { view: { label: message.label }, short: message.short };
    remember(verdicts, message.srcUrl, result);
    for (const img of document.images) if (urlOf(img) === message.srcUrl && badges.has(img)) placeBadge(img, result);
    return false;
  }
  chrome.runtime.onMessage.addListener(onCheckResult);

  /** Stops feed mode on this page: no more lookups, no badges. */
  function stop() {
    if (globalThis.__fakescopeFeed !== feed) return; // stopped already
    visibility.disconnect();
    mutations.disconnect();
    clearTimeout(timer);
    timer = null;
    queued.clear();
    document.removeEventListener('load', onImageLoad, true);
    window.removeEventListener('scroll', scheduleReposition, { capture: true });
    window.removeEventListener('resize', scheduleReposition);
    // The focus on a badge (or back on one from its panel) goes to the link or control around
    // its image, the place before it in the tab order, rather than to the page's body.
    const focused = [...badges].find(([, badge]) => badge.getRootNode().host === document.activeElement)?.[0];
    for (const img of [...badges.keys()]) removeBadge(img);
    if (focused?.isConnected) focused.closest(AROUND_IMAGE)?.focus({ preventScroll: true });
    notice?.remove();
    notice = null;
    globalThis.__fakescopeFeed = null; // switching feed mode on again may start it afresh
    try {
      chrome.runtime.onMessage.removeListener(onCheckResult);
    } catch {
      // In a page left by an extension that was reloaded this may throw; the listener is inert.
    }
  }

  const feed = { flush, stop };
  globalThis.__fakescopeFeed = feed;
})();
