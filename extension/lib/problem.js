/**
 * Failures as the user reads them: every error the extension can meet (server
 * down, problem+json 4xx/5xx, 413, 429/503 with Retry-After, an image the page's
 * site will not share) becomes a title, a message and guidance. Never swallowed.
 */

export class ApiError extends Error {
  /**
   * @param {'network'|'http'|'timeout'|'protocol'|'interrupted'} kind
   * @param {{status?: number, problem?: object|null, retryAfterSeconds?: number|null,
   *          serverUrl?: string, cause?: unknown}} [info]
   */
  constructor(kind, message, { status = 0, problem = null, retryAfterSeconds = null, serverUrl = '', cause } = {}) {
    super(message, { cause });
    this.name = 'ApiError';
    this.kind = kind;
    this.status = status;
    this.problem = problem;
    this.retryAfterSeconds = retryAfterSeconds;
    this.serverUrl = serverUrl;
  }
}

/** The largest image the extension sends (the server's default upload limit). */
export const MAX_IMAGE_BYTES = 25 * 1024 * 1024;

export class ImageUnavailableError extends Error {
  /**
   * @param {string} imageUrl
   * @param {string[]} reasons what each way of reading it answered
   * @param {{notFound?: boolean, tooLarge?: boolean, canGrant?: boolean, inward?: boolean, notImage?: boolean}} [info]
   *   notFound: every attempt got 404/410; tooLarge: over MAX_IMAGE_BYTES; canGrant: the
   *   extension lacks host access to the image's site, so allowing it could help; inward: the
   *   image is on this computer or the local network and its page is not, so the extension did
   *   not fetch it (lib/address-space.js); notImage: a local file whose first bytes name no image
   *   format, which was not sent
   */
  constructor(imageUrl, reasons, { notFound = false, tooLarge = false, canGrant = true, inward = false, notImage = false } = {}) {
    super(`Could not read the image at ${imageUrl}: ${reasons.join('; ')}`);
    this.name = 'ImageUnavailableError';
    this.imageUrl = imageUrl;
    this.reasons = reasons;
    this.notFound = notFound;
    this.tooLarge = tooLarge;
    this.canGrant = canGrant;
    this.inward = inward;
    this.notImage = notImage;
  }
}

/** A failed read of image bytes: its HTTP status (0 when none), or too large. */
export class ImageFetchError extends Error {
  constructor(message, { status = 0, tooLarge = false } = {}) {
    super(message);
    this.name = 'ImageFetchError';
    this.status = status;
    this.tooLarge = tooLarge;
  }
}

function sizeText(bytes) {
  return `${Math.round(bytes / (1024 * 1024))} MiB`;
}

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined || value === '') return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

function waitText(seconds) {
  if (seconds === null || seconds === undefined) return 'Try again in a little while.';
  if (seconds <= 1) return 'Try again in a second.';
  if (seconds < 120) return `Try again in ${seconds} seconds.`;
  return `Try again in about ${Math.round(seconds / 60)} minutes.`;
}

function detailOf(error) {
  const problem = error.problem;
  const detail = problem && typeof problem.detail === 'string' ? problem.detail.trim() : '';
  const title = problem && typeof problem.title === 'string' ? problem.title.trim() : '';
  return detail || title || '';
}

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url || 'the image’s site';
  }
}

const capitalized = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/** "the file NAME" for a file: address (its last part: its folders may say more than needed). */
function fileNameOf(url) {
  try {
    const name = decodeURIComponent(new URL(url).pathname.split('/').pop());
    return name ? `the file ${name}` : 'this image file';
  } catch {
    return 'this image file';
  }
}

/**
 * @returns {{title: string, message: string, guidance: string, status: number|null,
 *            retryAfterSeconds: number|null, imageOrigin?: string}}
 */
export function describeFailure(error) {
  if (error instanceof ImageUnavailableError || error?.name === 'ImageUnavailableError') {
    const base = { status: null, retryAfterSeconds: null };
    const why = (error.reasons ?? []).join('; ');
    if (error.tooLarge) {
      return {
        ...base,
        title: 'This image is too large',
        message: `The image is larger than ${sizeText(MAX_IMAGE_BYTES)}, more than FakeScope sends to the server.`,
        guidance: 'Use a smaller copy of the image.',
      };
    }
    if (error.notImage) {
      return {
        ...base,
        title: 'This file is not an image',
        message: `${capitalized(fileNameOf(error.imageUrl))} is not an image FakeScope can check (JPEG, PNG, GIF, WebP, BMP, TIFF, HEIF or AVIF): nothing was sent to the server.`,
        guidance: 'Check an image file; a page or document that shows an image can be checked by right-clicking the image itself.',
      };
    }
    if (error.inward) {
      return {
        ...base,
        title: 'FakeScope does not read this image for this page',
        message: `The image is at ${hostOf(error.imageUrl)}, on this computer or your local network, and the page is not: FakeScope does not fetch local addresses for a page from elsewhere (${why}).`,
        guidance: 'If you trust this image, open it in its own tab and check it there.',
      };
    }
    if (error.notFound) {
      return {
        ...base,
        title: 'The image is not there any more',
        message: `The site ${hostOf(error.imageUrl)} answered “not found” for this image (${why}).`,
        guidance: 'Reload the page; if the image still does not appear, the site removed it.',
      };
    }
    if (/^file:/i.test(String(error.imageUrl ?? ''))) {
      // A picture on this computer (a file: page's image): no site refused it, the file is gone
      // or the browser did not let FakeScope read local files.
      return {
        ...base,
        title: 'This image file could not be read',
        message: `FakeScope could not read ${fileNameOf(error.imageUrl)} on this computer (${why}).`,
        guidance: 'Choose “Check an image file…” in the FakeScope toolbar menu and pick the file there. '
          + 'Checks on local pages also need “Allow access to file URLs” on FakeScope’s card in chrome://extensions.',
      };
    }
    let imageOrigin;
    try {
      const url = new URL(error.imageUrl);
      imageOrigin = /^https?:$/.test(url.protocol) ? url.origin : undefined;
    } catch {
      imageOrigin = undefined;
    }
    const grant = Boolean(imageOrigin) && error.canGrant !== false;
    return {
      ...base,
      title: 'This image could not be read',
      message: `The site ${hostOf(error.imageUrl)} refused to share the image with FakeScope (${why}).`,
      guidance: grant
        ? 'Allow FakeScope to read images from this site in the options page, or save the image and check it from a page that serves it directly.'
        : 'Save the image and check it from a page that serves it directly, or reload the page and try again.',
      // The overlay offers "Allow this image site…" only where the permission could help.
      ...(grant ? { imageOrigin } : {}),
    };
  }
  if (!(error instanceof ApiError) && error?.name !== 'ApiError') {
    return {
      title: 'Something went wrong',
      message: String(error?.message ?? error),
      guidance: 'Try again; if it keeps happening, reload the page.',
      status: null,
      retryAfterSeconds: null,
    };
  }
  const server = error.serverUrl || 'the configured address';
  const retry = error.retryAfterSeconds ?? null;
  const base = { status: error.status || null, retryAfterSeconds: retry };
  if (error.kind === 'network') {
    return {
      ...base,
      title: 'FakeScope server unreachable',
      message: `Could not connect to the FakeScope server at ${server}.`,
      guidance: 'Check that the server is running and that the address in FakeScope’s options is right.',
    };
  }
  if (error.kind === 'timeout') {
    return {
      ...base,
      title: 'The server took too long',
      message: `No answer from ${server} in time.`,
      guidance: 'The server may be overloaded. Try again in a minute.',
    };
  }
  if (error.kind === 'interrupted') {
    return {
      ...base,
      title: 'The answer was cut off',
      message: `The connection to ${server} closed before the answer was complete.`,
      guidance: 'Ask again. If it keeps happening, the server may be restarting.',
    };
  }
  if (error.kind === 'protocol') {
    return {
      ...base,
      title: 'Unexpected answer from the server',
      message: error.message,
      guidance: 'Check that the address in the options points at a FakeScope server.',
    };
  }
  const detail = detailOf(error);
  const withDetail = (fallback) => detail || fallback;
  switch (error.status) {
    case 400:
      return { ...base, title: 'The server could not read this image', message: withDetail('The image is damaged or not an image.'), guidance: 'Try another copy of the image.' };
    case 401:
    case 403:
      return { ...base, title: 'The server refused the request', message: withDetail('A valid API token is required.'), guidance: 'Set a valid API token in FakeScope’s options.' };
    case 404:
      return { ...base, title: 'Not found on the server', message: withDetail('The server does not know this image.'), guidance: 'Check the image again first.' };
    case 413:
      return { ...base, title: 'This image is too large', message: withDetail('The image is larger than the server accepts.'), guidance: 'Use a smaller copy of the image.' };
    case 415:
      return { ...base, title: 'Unsupported image format', message: withDetail('The server does not accept this kind of file.'), guidance: 'FakeScope reads JPEG, PNG, WebP, GIF, BMP, TIFF and HEIF images.' };
    case 422:
      return { ...base, title: 'The server rejected the request', message: withDetail('The request was not valid.'), guidance: 'Check what you typed and try again.' };
    case 429:
      return { ...base, title: 'Too many requests', message: withDetail('The server is rate limiting this browser.'), guidance: waitText(retry) };
    case 503:
      return { ...base, title: 'The server is busy', message: withDetail('The server’s queue is full or the model is not ready.'), guidance: waitText(retry) };
    default:
      if (error.status >= 500) {
        return { ...base, title: 'The server failed', message: withDetail(`HTTP ${error.status}`), guidance: 'Try again later; if it persists, tell the server’s operator.' };
      }
      return { ...base, title: `The server answered HTTP ${error.status}`, message: withDetail('Unexpected status.'), guidance: 'Check FakeScope’s options.' };
  }
}
