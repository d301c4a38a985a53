/**
 * Where feed mode runs: the feed content scripts registered for exactly the sites the
 * user switched on (and granted), and started at once in an open tab from the popup.
 */

import { FEED_SCRIPTS, injectContentScripts } from './content-scripts.js';
import { currentSettings } from './server-client.js';
import { isFeedEnabled, originPattern } from '../lib/settings.js';

const FEED_SCRIPT_ID = 'fakescope-feed';

let feedSync = Promise.resolve();

/** Registers the feed content scripts for exactly the sites switched on (and permitted). */
export function syncFeedScripts() {
  feedSync = feedSync.then(syncFeedScriptsNow, syncFeedScriptsNow);
  // Callers are event listeners that do not wait: log a failure here instead of leaving an
  // unhandled rejection (the next sync starts afresh either way).
  feedSync.catch((error) => console.warn('FakeScope: feed script registration failed', error));
  return feedSync;
}

async function syncFeedScriptsNow() {
  const settings = await currentSettings();
  const matches = [];
  for (const site of settings.feedSites) {
    if (await chrome.permissions.contains({ origins: [originPattern(site)] })) matches.push(`${site}/*`);
  }
  const existing = await chrome.scripting.getRegisteredContentScripts({ ids: [FEED_SCRIPT_ID] });
  if (existing.length) await chrome.scripting.unregisterContentScripts({ ids: [FEED_SCRIPT_ID] });
  if (matches.length) {
    await chrome.scripting.registerContentScripts([
      { id: FEED_SCRIPT_ID, matches, js: FEED_SCRIPTS, runAt: 'document_idle', persistAcrossSessions: true },
    ]);
  }
  return matches;
}

/**
 * Whether feed mode runs on a page: switched on for its site, and the site's permission
 * still granted (the user can take it back in the browser's settings at any time; the
 * site then stays in the settings, but nothing is read or looked up there).
 */
export async function feedRunsOn(settings, pageUrl) {
  if (!isFeedEnabled(settings, pageUrl)) return false;
  return chrome.permissions.contains({ origins: [originPattern(pageUrl)] });
}

/** The popup's feed switch: starts feed mode in the open tab right away, if it is on for that site. */
export async function startFeedInTab(tabId) {
  const settings = await currentSettings();
  const tab = await chrome.tabs.get(tabId);
  if (!(await feedRunsOn(settings, tab.url ?? ''))) return { ok: false, failure: { title: 'Feed mode is off on this site', message: '', guidance: '' } };
  await syncFeedScripts();
  await injectContentScripts({ tabId }, FEED_SCRIPTS);
  return { ok: true };
}
