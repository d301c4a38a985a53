/**
 * Settings and their validation: the server URL, the API token and the sites
 * where feed mode is switched on. Pure functions plus load/save helpers that
 * take the storage area as an argument.
 */

export const DEFAULT_SERVER_URL = 'http://127.0.0.1:8000';
export const MAX_TOKEN_LENGTH = 512;
export const SETTINGS_KEY = 'settings';

export const DEFAULT_SETTINGS = Object.freeze({
  serverUrl: DEFAULT_SERVER_URL,
  apiToken: '',
  feedSites: Object.freeze([]),
});

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

export function isLoopbackHost(hostname) {
  return LOOPBACK_HOSTS.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Checks a server URL typed by the user. Plain http is accepted only for a
 * server on this machine: anything else would send images and the token in clear.
 * @returns {{ok: true, value: string} | {ok: false, error: string}}
 */
export function validateServerUrl(input) {
  const text = String(input ?? '').trim();
  if (!text) return { ok: false, error: 'Enter the server address, e.g. http://127.0.0.1:8000' };
  let url;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, error: 'This is not a valid URL (include http:// or https://).' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, error: 'Use an http:// or https:// address.' };
  }
  if (url.username || url.password) {
    return { ok: false, error: 'Do not put a user name or password in the URL; use the API token field.' };
  }
  if (url.search || url.hash) return { ok: false, error: 'Remove the query (?…) or fragment (#…).' };
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return { ok: false, error: 'Use https:// for a server on another machine (http is only for localhost).' };
  }
  const path = url.pathname.replace(/\/+$/, '');
  return { ok: true, value: `${url.origin}${path}` };
}

/** @returns {{ok: true, value: string} | {ok: false, error: string}} */
export function validateToken(input) {
  const text = String(input ?? '').trim();
  if (text.length > MAX_TOKEN_LENGTH) {
    return { ok: false, error: `The token is too long (at most ${MAX_TOKEN_LENGTH} characters).` };
  }
  if (/[^\x21-\x7e]/.test(text)) {
    return { ok: false, error: 'The token may only contain visible ASCII characters, no spaces.' };
  }
  return { ok: true, value: text };
}

/** The site key feed mode is toggled by: the page's origin, for http(s) pages only. */
export function siteOf(pageUrl) {
  try {
    const url = new URL(pageUrl);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : null;
  } catch {
    return null;
  }
}

/** A host-permission match pattern covering an origin (any port: Chrome ignores ports in patterns). */
export function originPattern(urlOrOrigin) {
  const url = new URL(urlOrOrigin);
  return `${url.protocol}//${url.hostname}/*`;
}

/** Settings as stored, repaired: unknown keys dropped, invalid values replaced by defaults. */
export function normalizeSettings(raw) {
  const server = validateServerUrl(raw?.serverUrl);
  const token = validateToken(raw?.apiToken);
  const sites = Array.isArray(raw?.feedSites) ? raw.feedSites.map(siteOf).filter(Boolean) : [];
  return {
    serverUrl: server.ok ? server.value : DEFAULT_SERVER_URL,
    apiToken: token.ok ? token.value : '',
    feedSites: [...new Set(sites)].sort(),
  };
}

export function isFeedEnabled(settings, pageUrl) {
  const site = siteOf(pageUrl);
  return site !== null && settings.feedSites.includes(site);
}

/** New settings with feed mode switched on or off for the page's site. */
export function withFeedSite(settings, pageUrl, enabled) {
  const site = siteOf(pageUrl);
  if (site === null) throw new TypeError('Feed mode works on http(s) pages only.');
  const sites = new Set(settings.feedSites);
  if (enabled) sites.add(site);
  else sites.delete(site);
  return { ...settings, feedSites: [...sites].sort() };
}

export async function loadSettings(area) {
  const stored = (await area.get(SETTINGS_KEY))[SETTINGS_KEY];
  return normalizeSettings({ ...DEFAULT_SETTINGS, ...(stored ?? {}) });
}

export async function saveSettings(area, settings) {
  const normalized = normalizeSettings(settings);
  await area.set({ [SETTINGS_KEY]: normalized });
  return normalized;
}
