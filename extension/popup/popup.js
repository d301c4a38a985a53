/**
 * Toolbar popup: is the server up, feed mode for the current site, **Check an image file…**
 * (opens check-file/check-file.html in a tab: a file picker here would close the popup), the last
 * checks.
 */

import { loadSettings, saveSettings, originPattern, siteOf, withFeedSite, isFeedEnabled } from '../lib/settings.js';
import { RECENT_KEY } from '../lib/recent.js';

const $ = (id) => document.getElementById(id);

async function showServerStatus() {
  const el = $('server-status');
  const reply = await chrome.runtime.sendMessage({ type: 'fakescope:status' }).catch((error) => ({ ok: false, failure: { title: String(error) } }));
  if (reply?.ok) {
    el.textContent = `Server ready at ${reply.serverUrl}`;
    el.className = 'status ok';
  } else {
    const f = reply?.failure ?? {};
    el.textContent = `${f.title ?? 'Server problem'}. ${f.message ?? ''} ${f.guidance ?? ''}`.trim();
    el.className = 'status bad';
  }
}

async function showFeedToggle() {
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true });
  const site = tab?.url ? siteOf(tab.url) : null;
  const toggle = $('feed-toggle');
  if (!site) {
    $('feed-site').textContent = 'not available on this page';
    return;
  }
  let settings = await loadSettings(chrome.storage.local);
  $('feed-site').textContent = site;
  const granted = await chrome.permissions.contains({ origins: [originPattern(site)] });
  toggle.checked = isFeedEnabled(settings, tab.url) && granted;
  if (isFeedEnabled(settings, tab.url) && !granted) {
    $('feed-status').textContent = 'Off: permission to read this site was taken back. Switch on to grant it again.';
  }
  toggle.disabled = false;
  toggle.addEventListener('change', async () => {
    if (toggle.checked) {
      // Requested inside the click: the browser shows its own prompt for this one site.
      const granted = await chrome.permissions.request({ origins: [originPattern(site)] });
      if (!granted) {
        toggle.checked = false;
        $('feed-status').textContent = 'Feed mode needs permission to read this site.';
        return;
      }
    }
    // Read again: the options page may have changed the settings since the popup opened.
    settings = await loadSettings(chrome.storage.local);
    settings = await saveSettings(chrome.storage.local, withFeedSite(settings, tab.url, toggle.checked));
    if (toggle.checked) {
      const reply = await chrome.runtime.sendMessage({ type: 'fakescope:start-feed', tabId: tab.id })
        .catch((error) => ({ ok: false, failure: { title: String(error?.message ?? error) } }));
      $('feed-status').textContent = reply?.ok
        ? 'Badges appear on images FakeScope already knows.'
        : `On; reload the page to see badges (${reply?.failure?.title ?? 'the page refused the script'}).`;
    } else {
      $('feed-status').textContent = 'Off. Reload the page to remove the badges.';
    }
  });
}

async function showRecent() {
  const list = (await chrome.storage.local.get(RECENT_KEY))[RECENT_KEY] ?? [];
  const ol = $('recent');
  for (const entry of list) {
    const li = document.createElement('li');
    const verdict = document.createElement('span');
    verdict.className = entry.label;
    verdict.textContent = entry.verdict;
    const where = document.createElement('div');
    where.className = 'hint';
    // The address may break anywhere (a long URL has no spaces); the time stays on one line.
    const at = document.createElement('span');
    at.className = 'at';
    at.textContent = new Date(entry.at).toLocaleTimeString();
    where.append(`${entry.imageUrl} · `, at);
    li.append(verdict, where);
    ol.append(li);
  }
  $('recent-empty').hidden = list.length > 0;
}

$('check-file').addEventListener('click', async () => {
  await chrome.tabs.create({ url: chrome.runtime.getURL('check-file/check-file.html') });
  window.close();
});
$('options').addEventListener('click', (event) => {
  event.preventDefault();
  chrome.runtime.openOptionsPage();
});
showServerStatus();
showFeedToggle();
showRecent();
