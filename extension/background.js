/**
 * FakeScope service worker: the only part of the extension that talks to the
 * network. It owns the context menu, reads image bytes, calls the server, keeps
 * the short-lived cache, and relays answers to the content scripts.
 *
 * This file is the wiring: every listener is registered here, at top level, so the
 * events wake the worker; what each one does lives in worker/ (which uses lib/'s pure modules).
 *
 * Follow one right-click: contextMenus.onClicked → handleMenuClick (worker/check.js) →
 * readImage (worker/image-bytes.js: worker fetch; refused: again with the page's Referer;
 * else the page's content script, for blob: images and a canvas) → ApiClient.analyze →
 * the extension page panel/frame-panel.html renders describeAnalysis(...) (panel/panel.js), in
 * an iframe that the content script content/overlay.js hosts in a closed shadow root, over the
 * image (or, for an image of a small embedded frame, in the top frame).
 */

import { ASK_PORT_NAME, relayAnswer } from './worker/ask-relay.js';
import { CHECK_WATCH_PORT_NAME, MENU_ID, acceptCheckWatch, handleMenuClick } from './worker/check.js';
import { framePanels } from './worker/panels.js';
import { syncFeedScripts } from './worker/feed-scripts.js';
import { handleMessage } from './worker/message-handlers.js';
import { keepSettingsFromContentScripts } from './worker/server-client.js';
import { forgetAddressReads } from './worker/session-caches.js';

// The settings, the API token with them, are for the extension's pages and this worker only.
keepSettingsFromContentScripts();

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_ID, title: 'Check with FakeScope', contexts: ['image'] });
  });
  syncFeedScripts();
});
chrome.runtime.onStartup.addListener(() => syncFeedScripts());
chrome.contextMenus.onClicked.addListener((info, tab) => {
  handleMenuClick(info, tab).catch((error) => console.warn('FakeScope: the check failed', error));
});
// Feed mode follows the settings and the granted sites.
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === 'local' && changes.settings) syncFeedScripts();
});
chrome.permissions.onAdded.addListener(() => syncFeedScripts());
// Access taken back: feed mode stops there, and what was read with that access is forgotten.
chrome.permissions.onRemoved.addListener(() => {
  syncFeedScripts();
  forgetAddressReads().catch((error) => console.warn('FakeScope: could not forget image reads', error));
});
// The overlay, the panel page, feed mode, the popup and the options page (worker/message-handlers.js).
chrome.runtime.onMessage.addListener(handleMessage);
// A closed tab's panels have nothing left to show (lib/frame-panels.js).
chrome.tabs.onRemoved.addListener((tabId) => {
  framePanels.forgetTab(tabId).catch((error) => console.warn('FakeScope: could not forget a panel', error));
});
// The panel page's questions, answered as a stream; and the panel page watching a check it
// shows as loading (the port closes if Chrome stops this worker before the result is sent).
// Only the extension's own pages ask: no content script draws a panel.
chrome.runtime.onConnect.addListener((port) => {
  if (port.sender?.id !== chrome.runtime.id || !port.sender.url?.startsWith(chrome.runtime.getURL(''))) {
    port.disconnect();
    return;
  }
  if (port.name === ASK_PORT_NAME) relayAnswer(port);
  else if (port.name === CHECK_WATCH_PORT_NAME) acceptCheckWatch(port);
});

// Test hooks: browser tests drive the worker through these (see tests/extension/).
self.fakescopeHandleMenuClick = handleMenuClick;
self.fakescopeSyncFeedScripts = syncFeedScripts;
