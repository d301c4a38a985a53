/**
 * Options page: server address and token (validated, with a connection test
 * through the service worker), feed-mode sites, image-site permissions.
 * Permission requests happen here because they need the user's click.
 */

import {
  loadSettings, saveSettings, validateServerUrl, validateToken, originPattern, siteOf, withFeedSite,
} from '../lib/settings.js';

// The hosts the manifest grants at install (host_permissions); any other server is asked for.
const GRANTED_AT_INSTALL = new Set(['localhost', '127.0.0.1']);

const $ = (id) => document.getElementById(id);
let settings = null;

function showFieldError(input, errorEl, message) {
  errorEl.textContent = message ?? '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function setStatus(el, text, ok) {
  el.textContent = text;
  el.className = `status ${ok === undefined ? '' : ok ? 'ok' : 'bad'}`;
}

/** Validates both fields, marks the invalid ones, focuses the first; returns values or null. */
function readServerForm() {
  const server = validateServerUrl($('server-url').value);
  const token = validateToken($('api-token').value);
  showFieldError($('server-url'), $('server-url-error'), server.ok ? '' : server.error);
  showFieldError($('api-token'), $('api-token-error'), token.ok ? '' : token.error);
  if (!server.ok) $('server-url').focus();
  else if (!token.ok) $('api-token').focus();
  return server.ok && token.ok ? { serverUrl: server.value, apiToken: token.value } : null;
}

/**
 * Asks for host access to a server the manifest does not cover (the click is the user
 * gesture the browser wants). Other loopback addresses ([::1], 127.0.0.2) need it too.
 */
async function ensureServerPermission(serverUrl) {
  if (GRANTED_AT_INSTALL.has(new URL(serverUrl).hostname)) return true;
  try {
    return await chrome.permissions.request({ origins: [originPattern(serverUrl)] });
  } catch {
    return false;
  }
}

/** Settings as stored now: the popup (or another options tab) may have changed them. */
async function freshSettings() {
  settings = await loadSettings(chrome.storage.local);
  return settings;
}

function describe(reply) {
  if (reply?.ok) {
    const ready = reply.ready ?? {};
    const model = ready.model?.id ?? ready.model ?? null;
    return `Connected to ${reply.serverUrl}: ready${typeof model === 'string' ? ` (model ${model})` : ''}.`;
  }
  const f = reply?.failure ?? {};
  return `${f.title ?? 'Failed'}: ${f.message ?? ''} ${f.guidance ?? ''}`.trim();
}

async function testConnection() {
  const values = readServerForm();
  if (!values) return;
  setStatus($('server-status'), 'Testing…');
  if (!(await ensureServerPermission(values.serverUrl))) {
    setStatus($('server-status'), 'FakeScope needs your permission to contact that server.', false);
    return;
  }
  const reply = await chrome.runtime.sendMessage({ type: 'fakescope:test-connection', ...values });
  setStatus($('server-status'), describe(reply), Boolean(reply?.ok));
}

async function saveServer(event) {
  event.preventDefault();
  const values = readServerForm();
  if (!values) {
    setStatus($('server-status'), 'Not saved: fix the highlighted field.', false);
    return;
  }
  if (!(await ensureServerPermission(values.serverUrl))) {
    setStatus($('server-status'), 'Not saved: FakeScope needs your permission to contact that server.', false);
    return;
  }
  settings = await saveSettings(chrome.storage.local, { ...(await freshSettings()), ...values });
  $('server-url').value = settings.serverUrl;
  setStatus($('server-status'), 'Saved.', true);
}

function renderSites() {
  const list = $('feed-sites');
  // Drawn again when the settings change (here or elsewhere): the focus stays on its site's button.
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.site : null;
  list.replaceChildren();
  for (const site of settings.feedSites) {
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'secondary';
    remove.textContent = 'Turn off';
    remove.setAttribute('aria-label', `Turn off feed mode on ${site}`);
    remove.dataset.site = site;
    remove.addEventListener('click', async () => {
      settings = await saveSettings(chrome.storage.local, withFeedSite(await freshSettings(), site, false));
      renderSites();
      setStatus($('feed-sites-status'), `Feed mode is off on ${site}.`);
      // The focused button went with its site: the focus goes to the next site's button, or
      // back to the field that adds a site, not to the top of the page.
      const buttons = [...$('feed-sites').querySelectorAll('button')];
      const next = buttons.find((button) => button.dataset.site > site) ?? buttons.at(-1) ?? $('feed-site');
      next.focus();
    });
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = site;
    item.append(name, remove);
    list.append(item);
    if (site === focused) remove.focus();
  }
  $('feed-empty').hidden = settings.feedSites.length > 0;
}

async function addSite(event) {
  event.preventDefault();
  const input = $('feed-site');
  const site = siteOf(input.value.trim());
  if (!site) {
    showFieldError(input, $('feed-site-error'), 'Enter a site address starting with http:// or https://');
    input.focus();
    return;
  }
  const granted = await chrome.permissions.request({ origins: [originPattern(site)] });
  if (!granted) {
    showFieldError(input, $('feed-site-error'), `Feed mode needs permission to read ${site}; it stays off.`);
    return;
  }
  showFieldError(input, $('feed-site-error'), '');
  settings = await saveSettings(chrome.storage.local, withFeedSite(await freshSettings(), site, true));
  input.value = '';
  renderSites();
  setStatus($('feed-sites-status'), `Feed mode is on for ${site}.`);
}

async function grantImageSite(event) {
  event.preventDefault();
  const input = $('grant-origin');
  const site = siteOf(input.value.trim());
  // The status is the field's description: an address that is no site marks the field invalid.
  if (!site) {
    input.setAttribute('aria-invalid', 'true');
    setStatus($('grant-status'), 'Enter an address starting with http:// or https://', false);
    input.focus();
    return;
  }
  input.removeAttribute('aria-invalid');
  const granted = await chrome.permissions.request({ origins: [originPattern(site)] });
  setStatus($('grant-status'), granted ? `FakeScope may now read images from ${site}.` : 'Permission was not granted.', granted);
}

async function init() {
  settings = await loadSettings(chrome.storage.local);
  $('server-url').value = settings.serverUrl;
  $('api-token').value = settings.apiToken;
  const grant = new URLSearchParams(location.search).get('grant');
  if (grant && siteOf(grant)) $('grant-origin').value = siteOf(grant);
  renderSites();
  $('server-form').addEventListener('submit', saveServer);
  $('test-connection').addEventListener('click', testConnection);
  $('feed-form').addEventListener('submit', addSite);
  $('grant-form').addEventListener('submit', grantImageSite);
  // Feed sites switched on or off from the popup show up here without a reload.
  chrome.storage.onChanged.addListener(async (changes, area) => {
    if (area !== 'local' || !changes.settings) return;
    await freshSettings();
    renderSites();
  });
  document.body.dataset.ready = 'true';
}

init();
