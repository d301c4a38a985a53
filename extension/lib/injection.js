/**
 * Whether the content scripts already in a frame belong to this extension instance, run in
 * the frame's isolated world just before the worker injects them (worker/content-scripts.js).
 *
 * Each content script runs once per frame: it leaves its part on `globalThis`
 * (`__fakescopeOverlayDom`, `__fakescope`, `__fakescopeFeed`, …) and does nothing when that
 * part is already there. If Chrome keeps a page's isolated world across an extension update
 * or reload, the parts of the dead instance are still there, their listeners inert, and would
 * keep the new instance's scripts out: a right-click would show nothing until the page is
 * reloaded. So the first injection leaves a marker, `__fakescopeInjection`: the injecting
 * instance's id and its `chrome.runtime`, whose `id` is gone once that extension context is
 * invalidated. A marker of another instance, of a dead runtime, or parts with no marker (an
 * older version's) are stale: what can be stopped of them is stopped, and they are removed so
 * the scripts inject afresh.
 *
 * `prepareInjection` is passed as `func` to `chrome.scripting.executeScript`, which sends its
 * source, not its closure: it must use nothing from outside its own body.
 */

/**
 * Makes the frame ready for this instance's content scripts; returns what it found: `fresh`
 * (nothing), `live` (this instance's scripts: they stay, and skip a second run) or `stale`
 * (an older instance's, now stopped and removed).
 *
 * @param {string} instance this extension instance's id (worker/content-scripts.js)
 * @param {object} scope the isolated world's global object (a stand-in in unit tests)
 */
export function prepareInjection(instance, scope = globalThis) {
  const MARKER = '__fakescopeInjection';
  // The feed badges, their failure notice and the panel, of this version or an older one.
  const HOSTS = 'fakescope-overlay, fakescope-badges, fakescope-badge, fakescope-notice';

  function runtimeAlive(runtime) {
    try {
      return Boolean(runtime?.id);
    } catch {
      return false; // an invalidated extension context may throw instead of answering
    }
  }

  // Own properties only: the isolated world still finds the page's elements by id or name
  // (`<div id="__fakescopeInjection">`), and they must not pass for a marker or for parts.
  const marker = Object.hasOwn(scope, MARKER) ? scope[MARKER] : undefined;
  const parts = Object.keys(scope).filter((key) => key.startsWith('__fakescope') && key !== MARKER);
  // Feed scripts registered for a site start in a fresh page without the worker's instance id
  // (content/overlay-dom.js marks them with `instance: null`): their live runtime is enough.
  const live = marker !== null && typeof marker === 'object' && runtimeAlive(marker.runtime) &&
    (marker.instance === null || marker.instance === instance);
  if (live) return 'live';

  const stale = marker !== undefined || parts.length > 0;
  // Later scripts use the earlier ones' parts: stop them first (feed, panel, page reader).
  for (const key of parts.reverse()) {
    try {
      scope[key]?.stop?.();
    } catch {
      // A dead extension context may refuse even this; its listeners are inert anyway.
    }
    delete scope[key];
  }
  if (stale) scope.document?.querySelectorAll(HOSTS).forEach((host) => host.remove());
  scope[MARKER] = { instance, runtime: scope.chrome?.runtime };
  return stale ? 'stale' : 'fresh';
}
