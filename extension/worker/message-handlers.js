/**
 * The service worker's answers to runtime messages, one handler per message type, from
 * the panel page (report, recheck, frame-panel-close, panel-size, open-options), feed mode (lookup,
 * feed-panel), the popup (status, start-feed), the options page (test-connection) and the
 * check-file page (check-file). Only the
 * extension's own scripts are answered, and some messages only its pages (not content scripts in
 * web pages). The panel page names its panel (recheck, close, size), which must be its own tab's
 * (worker/panels.js); a feed badge's panel goes into the sender's document (`sender.documentId`).
 * A report or a question carries the image's sha256.
 */

import { ApiClient } from '../lib/api.js';
import { recheckPanel } from './check.js';
import { CHECK_FILE_MESSAGE, checkFile } from './check-file.js';
import { lookupImages, openFeedPanel } from './feed-lookup.js';
import { closePanel, framePanels, resizePanel } from './panels.js';
import { startFeedInTab } from './feed-scripts.js';
import { isSha256Hex } from '../lib/hash.js';
import { ApiError, describeFailure } from '../lib/problem.js';
import { clientFor, currentSettings } from './server-client.js';
import { validateServerUrl, validateToken } from '../lib/settings.js';

/**
 * A chrome.runtime.onMessage listener: answers a known message from the extension itself
 * asynchronously (returns true), or leaves it (returns false).
 */
export function handleMessage(message, sender, sendResponse) {
  if (sender.id !== chrome.runtime.id) return false;
  const handler = MESSAGE_HANDLERS[message?.type];
  if (!handler) return false;
  // The options page and the popup may test servers and start feed mode; content scripts
  // (which run inside web pages) may not.
  if (EXTENSION_PAGE_ONLY.has(message.type) && !isExtensionPage(sender)) return false;
  handler(message, sender).then(sendResponse, (error) => sendResponse({ ok: false, failure: describeFailure(error) }));
  return true; // answer asynchronously
}

const REPORT_LABELS = new Set(['fake', 'real', 'uncertain']);

/** Messages only the extension's own pages (options, popup, the panel page) may send. */
const EXTENSION_PAGE_ONLY = new Set([
  'fakescope:test-connection', 'fakescope:start-feed', 'fakescope:status', 'fakescope:frame-panel-close', 'fakescope:recheck',
  'fakescope:panel-size', CHECK_FILE_MESSAGE,
]);

function isExtensionPage(sender) {
  return typeof sender.url === 'string' && sender.url.startsWith(chrome.runtime.getURL(''));
}

const MESSAGE_HANDLERS = {
  /** The panel's "report a wrong verdict" form. */
  'fakescope:report': async (message) => {
    if (!isSha256Hex(message.sha256)) throw new TypeError('Unknown image.');
    const reason = String(message.reason ?? '').trim().slice(0, 2000);
    if (!reason) return { ok: false, failure: { title: 'Say what is wrong', message: 'Describe why the verdict is wrong.', guidance: '' } };
    const suggestedLabel = REPORT_LABELS.has(message.suggestedLabel) ? message.suggestedLabel : null;
    const settings = await currentSettings();
    await clientFor(settings).report({ sha256: message.sha256, reason, suggestedLabel });
    return { ok: true };
  },
  /**
   * The panel page's **Try again** after an error, or a hint's **Check this image**: it names
   * its panel (`panel`), whose image is checked again and shown there (worker/check.js
   * recheckPanel). Only from the extension's page in that panel's tab.
   */
  'fakescope:recheck': async (message, sender) => {
    const record = await framePanels.of(message.panel, sender.tab?.id);
    if (!record) return { ok: false, failure: { title: 'This panel is closed', message: '', guidance: '' } };
    return recheckPanel(message.panel, record);
  },
  /** The panel page's close button or Escape: its host removes it. */
  'fakescope:frame-panel-close': async (message, sender) => {
    const record = await framePanels.of(message.panel, sender.tab?.id);
    if (!record) return { ok: false };
    await closePanel(message.panel, record);
    return { ok: true };
  },
  /**
   * The panel page's content height (a ResizeObserver): its host sets the iframe's height to it,
   * rounded up to 80 px steps; only for a panel about its host's own image (worker/panels.js).
   */
  'fakescope:panel-size': async (message, sender) => {
    const record = await framePanels.of(message.panel, sender.tab?.id);
    const height = record ? await resizePanel(message.panel, record, message.height) : null;
    return { ok: height !== null, height };
  },
  'fakescope:lookup': async (message, sender) => lookupImages(Array.isArray(message.urls) ? message.urls : [], sender),
  /**
   * A feed badge the user clicked (content/feed.js): a panel in the badge's document, showing
   * what the worker knows of the image (its verdict, or the hint), which the page never gets.
   */
  'fakescope:feed-panel': async (message, sender) => openFeedPanel(String(message.srcUrl ?? ''), sender),
  /** The popup's status line. */
  'fakescope:status': async () => {
    const settings = await currentSettings();
    const ready = await clientFor(settings).ready();
    return { ok: true, serverUrl: settings.serverUrl, ready };
  },
  /** The options page's "Test connection" button, on the values typed (not yet saved). */
  'fakescope:test-connection': async (message) => {
    const server = validateServerUrl(message.serverUrl);
    if (!server.ok) return { ok: false, failure: { title: 'Invalid address', message: server.error, guidance: '' } };
    const token = validateToken(message.apiToken);
    if (!token.ok) return { ok: false, failure: { title: 'Invalid token', message: token.error, guidance: '' } };
    const client = new ApiClient({ baseUrl: server.value, token: token.value });
    const ready = await client.ready();
    // /readyz is public: an empty lookup checks that the server accepts this token (or none).
    try {
      await client.lookup([]);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        const f = describeFailure(error);
        return {
          ok: false,
          serverUrl: server.value,
          ready,
          failure: {
            ...f,
            title: token.value ? 'The server refused this API token' : 'The server requires an API token',
          },
        };
      }
      throw error;
    }
    return { ok: true, serverUrl: server.value, ready };
  },
  /** The panel's "Allow this image site" button: the options page asks for the permission. */
  'fakescope:open-options': async (message) => {
    const query = typeof message.grant === 'string' ? `?grant=${encodeURIComponent(message.grant)}` : '';
    await chrome.tabs.create({ url: chrome.runtime.getURL(`options/options.html${query}`) });
    return { ok: true };
  },
  /** The **Check an image file…** page (check-file/): a file's bytes, checked like an image's (worker/check-file.js). */
  [CHECK_FILE_MESSAGE]: async (message) => checkFile(message),
  /** The popup's feed switch: start feed mode in the open tab right away. */
  'fakescope:start-feed': async (message) => startFeedInTab(message.tabId),
};
