/**
 * The content scripts the service worker puts into pages, in the order they must run:
 * classic scripts that share their isolated world, each later one using what the earlier
 * ones left on `globalThis` (see content/overlay.js).
 */

/** The panel: its DOM helpers and styles, its ask and report forms, then the panel itself. */
export const OVERLAY_SCRIPTS = ['content/overlay-dom.js', 'content/overlay-forms.js', 'content/overlay.js'];
/** A right-click check: the page reader (content/page-image.js) and the panel. */
export const CHECK_SCRIPTS = ['content/page-image.js', ...OVERLAY_SCRIPTS];
/** Feed mode: the panel, which the badges open, and the badges. */
export const FEED_SCRIPTS = [...OVERLAY_SCRIPTS, 'content/feed.js'];
