/**
 * The configured server, as the service worker talks to it: the current settings (read
 * from chrome.storage.local on every use, so a saved change applies at once) and an
 * ApiClient for them.
 */

import { ApiClient } from '../lib/api.js';
import { loadSettings } from '../lib/settings.js';

export async function currentSettings() {
  return loadSettings(chrome.storage.local);
}

export function clientFor(settings) {
  return new ApiClient({ baseUrl: settings.serverUrl, token: settings.apiToken });
}
