/**
 * The configured server, as the service worker talks to it: the current settings (read
 * from chrome.storage.local on every use, so a saved change applies at once) and an
 * ApiClient for them.
 */

import { ApiClient } from '../lib/api.js';
import { loadSettings } from '../lib/settings.js';

/**
 * Keeps storage.local, where the API token is, from content scripts: only the extension's pages
 * and this worker read it (none of the content scripts needs it), so a web page's process,
 * where content scripts run, never holds the token even if the page takes it over. Chrome keeps
 * the setting; set again whenever the worker starts. Browsers without it log a warning.
 */
export async function keepSettingsFromContentScripts() {
  try {
    await chrome.storage.local.setAccessLevel({ accessLevel: 'TRUSTED_CONTEXTS' });
  } catch (error) {
    console.warn('FakeScope: content scripts can still read the settings', error);
  }
}

export async function currentSettings() {
  return loadSettings(chrome.storage.local);
}

export function clientFor(settings) {
  return new ApiClient({ baseUrl: settings.serverUrl, token: settings.apiToken });
}
