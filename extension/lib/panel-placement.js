/**
 * Which frame shows a right-click check's panel. The panel goes into the frame the image is
 * in, next to the image; but an embedded frame (a post, an ad) is often too small for it, and
 * a panel squeezed into a 300×200 frame is cramped and cut off. Then it shows in the top frame
 * instead, not anchored to the image, with a note saying the image is in an embedded frame.
 *
 * The sizes come from the panel's own CSS (content/overlay-dom.js): its width is
 * `min(380px, 100vw - 16px)`, so it is placed 8 px from each edge; its lists, the score's
 * scale and the ask rows (a select or field beside its button) stay usable down to 344 px,
 * the panel in a 360 px viewport. Its height is at most 80% of the viewport: its first part
 * (header, verdict, score gauge, who decided) takes about 256 px, all of it on screen from a
 * 320 px viewport up.
 */

/** The narrowest frame (CSS px) the panel is usable in: 344 px of panel + 8 px each side. */
export const MIN_FRAME_WIDTH = 360;
/** The shortest frame (CSS px): 80% of it holds the panel's header, verdict and score. */
export const MIN_FRAME_HEIGHT = 320;

/**
 * `'top'` when the panel for an image in frame `frameId` should show in the top frame (an
 * embedded frame whose viewport is narrower or shorter than the panel needs), else `'frame'`
 * (the top frame itself, a frame large enough, or a size that could not be measured).
 *
 * @param {number} frameId the image's frame (0: the top frame)
 * @param {{width: number, height: number} | null | undefined} viewport measured in that frame
 */
export function panelPlacement(frameId, viewport) {
  if (frameId === 0) return 'frame';
  const width = Number(viewport?.width);
  const height = Number(viewport?.height);
  if (!Number.isFinite(width) || !Number.isFinite(height) || width <= 0 || height <= 0) return 'frame';
  return width < MIN_FRAME_WIDTH || height < MIN_FRAME_HEIGHT ? 'top' : 'frame';
}

/**
 * What the panel in the top frame says about the image's frame: that it is embedded, and from
 * which site (its origin; a sandboxed frame's is opaque, `"null"`, and has no site to name).
 */
export function embeddedFrameNote(origin) {
  const site = typeof origin === 'string' && /^[a-z][a-z0-9+.-]*:\/\/./i.test(origin) ? origin : null;
  return site
    ? `This image is in an embedded frame from ${site}, too small for this panel, so it is shown here.`
    : 'This image is in an embedded frame (of no named site), too small for this panel, so it is shown here.';
}
