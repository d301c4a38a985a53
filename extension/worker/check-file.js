/**
 * **Check an image file…**: the extension page check-file/check-file.html (opened from the
 * popup) reads a file the user picked or dropped and sends its bytes here, as base64
 * (`fakescope:check-file`; extension messages are JSON). They go to the configured server like
 * a right-click check's (POST /v1/analyze, under the same settings and token, unless the session
 * cache has the verdict for these bytes), and the answer is the state the panel shows
 * (panel/panel.js): the result, or the failure in the same words as any check's. The check is
 * listed in the popup's recent checks under the file's name.
 */

import { ASPECTS } from '../lib/aspects.js';
import { base64ToBytes } from '../lib/base64.js';
import { isSha256Hex, sha256Hex } from '../lib/hash.js';
import { imageFormatOf } from '../lib/image-size.js';
import { ApiError, ImageUnavailableError, MAX_IMAGE_BYTES, describeFailure } from '../lib/problem.js';
import { recentChecks } from '../lib/recent.js';
import { describeAnalysis, shortVerdict } from '../lib/verdict.js';
import { whileKeepingAlive } from './keep-alive.js';
import { clientFor, currentSettings } from './server-client.js';
import { analyses, cacheKey } from './session-caches.js';

export const CHECK_FILE_MESSAGE = 'fakescope:check-file';

// Base64 of MAX_IMAGE_BYTES: a longer text is a larger file (4 characters per 3 bytes).
const MAX_BASE64_LENGTH = Math.ceil(MAX_IMAGE_BYTES / 3) * 4;

/** The file's name as the server and the recent checks get it: its last part, at most 100 characters. */
export function fileLabel(name) {
  const last = String(name ?? '').split(/[\\/]/).pop().replace(/[\u0000-\u001f\u007f]/g, '').trim();
  return last ? last.slice(0, 100) : 'image';
}

/** A MIME type as the page's File says it (type/subtype), else none. */
function mimeType(type) {
  return /^[\w.+-]+\/[\w.+-]+$/.test(String(type ?? '')) ? String(type) : 'application/octet-stream';
}

/**
 * Checks the file in `message` ({name, contentType, base64}); resolves to
 * `{ok, state, sha256?}`, `state` being what the panel shows ({state: 'result' | 'error', ...}).
 */
export async function checkFile(message) {
  const name = fileLabel(message?.name);
  try {
    const base64 = message?.base64;
    if (typeof base64 !== 'string' || base64.length === 0) {
      const failure = { title: 'This file is empty', message: `${name} has no bytes: there is no image in it to check.`, guidance: 'Choose another file.', status: null, retryAfterSeconds: null };
      return { ok: false, state: { state: 'error', srcUrl: name, failure } };
    }
    if (base64.length > MAX_BASE64_LENGTH) throw new ImageUnavailableError(name, ['larger than the limit'], { tooLarge: true });
    const bytes = base64ToBytes(base64);
    if (bytes.length > MAX_IMAGE_BYTES) throw new ImageUnavailableError(name, ['larger than the limit'], { tooLarge: true });
    if (!imageFormatOf(bytes)) {
      // A document or archive dropped by mistake never leaves the computer.
      const failure = {
        title: 'This file is not an image',
        message: `${name} is not an image FakeScope can check (JPEG, PNG, GIF, WebP, BMP, TIFF, HEIF or AVIF): nothing was sent to the server.`,
        guidance: 'Choose an image file.',
        status: null,
        retryAfterSeconds: null,
      };
      return { ok: false, state: { state: 'error', srcUrl: name, failure } };
    }
    const settings = await currentSettings();
    const sha256 = await sha256Hex(bytes);
    let analysis = await analyses.get(cacheKey(settings, sha256));
    const cached = Boolean(analysis);
    if (!analysis) {
      analysis = await whileKeepingAlive(clientFor(settings).analyze(bytes, { filename: name, contentType: mimeType(message.contentType) }));
      if (!isSha256Hex(analysis?.sha256) || typeof analysis.label !== 'string') {
        throw new ApiError('protocol', 'The analysis has no sha256 or label.', { serverUrl: settings.serverUrl });
      }
      await analyses.trySet(cacheKey(settings, analysis.sha256), analysis);
    }
    await remember(analysis, name);
    return {
      ok: true,
      sha256: analysis.sha256,
      state: { state: 'result', srcUrl: name, view: describeAnalysis(analysis), aspects: ASPECTS, cached },
    };
  } catch (error) {
    return { ok: false, state: { state: 'error', srcUrl: name, failure: describeFailure(error) } };
  }
}

const rememberCheck = recentChecks(chrome.storage.local);

async function remember(analysis, name) {
  try {
    await rememberCheck({
      sha256: analysis.sha256,
      imageUrl: `File: ${name}`,
      pageUrl: null,
      verdict: shortVerdict(analysis),
      label: analysis.label,
      at: Date.now(),
    });
  } catch (error) {
    console.warn('FakeScope: could not update the recent checks', error); // the verdict still shows
  }
}
