/**
 * **Check an image file…** (the popup's button opens this page in a tab: a file picker in the
 * popup itself would close the popup). The user picks an image file, or drops one on the page;
 * its bytes go to the service worker (`fakescope:check-file`, worker/check-file.js), which sends
 * them to the configured server as any check does, and the verdict shows here in the same panel
 * every check has (panel/panel.js: the same words, live regions and controls, the ask and report
 * forms included). The page makes no network request of its own.
 */

import { ImageUnavailableError, MAX_IMAGE_BYTES, describeFailure } from '../lib/problem.js';
import { loadSettings } from '../lib/settings.js';

const { STYLE, h } = globalThis.__fakescopeOverlayDom;
const { Panel } = globalThis.__fakescopePanel;
const $ = (id) => document.getElementById(id);

// The panel in the flow of this page, not floating over a web page (content/overlay-dom.js STYLE).
const PAGE_STYLE = `
  :host { all: initial !important; display: block !important; position: static !important;
    width: auto !important; height: auto !important; pointer-events: auto !important; }
  .panel { position: static; width: 100%; max-height: none; box-shadow: 0 2px 10px rgba(0,0,0,.15); }
  .explanation { max-height: 24em; }
`;

const input = $('file');
const result = $('result');
const host = document.createElement('fakescope-panel');
const root = host.attachShadow({ mode: 'open' });
root.append(h('style', {}, STYLE), h('style', {}, PAGE_STYLE));
result.append(host);

let current = null; // the file shown: Try again sends it again
let sequence = 0; // a newer file's result replaces an older one's, never the other way round

const panel = new Panel(root, {
  close: () => {
    sequence += 1;
    panel.stop();
    result.hidden = true;
    input.focus();
  },
  recheck: () => check(current, { fresh: false }),
});

function sizeText(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${Math.max(1, Math.round(bytes / 1024))} KiB`;
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).slice(String(reader.result).indexOf(',') + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** Checks `file` and shows it in the panel; resolves once the panel shows the result or the failure. */
async function check(file, { fresh = true } = {}) {
  if (!file) return;
  current = file;
  const mine = (sequence += 1);
  $('chosen').textContent = `${file.name} (${sizeText(file.size)})`;
  result.hidden = false;
  if (fresh) panel.showLoading(file.name);
  panel.focus();
  let state;
  if (file.size > MAX_IMAGE_BYTES) {
    // Not read, not sent: the same failure as any image over the limit.
    state = { state: 'error', srcUrl: file.name, failure: describeFailure(new ImageUnavailableError(file.name, [], { tooLarge: true })) };
  } else {
    try {
      const base64 = file.size > 0 ? await readBase64(file) : '';
      const reply = await chrome.runtime.sendMessage({ type: 'fakescope:check-file', name: file.name, contentType: file.type, base64 });
      state = reply?.state ?? { state: 'error', srcUrl: file.name, failure: reply?.failure ?? describeFailure(new Error('No answer from FakeScope.')) };
    } catch (error) {
      state = {
        state: 'error',
        srcUrl: file.name,
        failure: { title: 'FakeScope could not check this file', message: String(error?.message ?? error), guidance: 'Reload this page and try again.' },
      };
    }
  }
  if (mine !== sequence) return;
  // The result takes the focus back only from where the check left it: the panel, or nowhere
  // (the body); not from a control the user moved on to meanwhile.
  const stayed = panel.hasFocus() || document.activeElement === document.body || document.activeElement === null;
  panel.show(state);
  panel.makeScrollersFocusable();
  if (document.hasFocus() && stayed && !panel.hasFocus()) panel.focus();
}

/** The one file checked of those given (several dropped or pasted: the first, said so). */
function firstOf(files) {
  $('more').textContent = files.length > 1 ? `${files.length} files were given: only the first, ${files[0].name}, was checked.` : '';
  return files[0];
}

input.addEventListener('change', () => {
  const files = [...(input.files ?? [])];
  input.value = ''; // the same file chosen again is checked again (the name shows in #chosen)
  if (files.length) check(firstOf(files));
});

// A file dropped anywhere on the page is checked (and never opened by the browser instead).
const drop = $('drop');
document.addEventListener('dragover', (event) => {
  if (!event.dataTransfer?.types?.includes('Files')) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = 'copy';
  drop.classList.add('over');
});
document.addEventListener('dragleave', (event) => {
  if (event.relatedTarget === null) drop.classList.remove('over');
});
document.addEventListener('drop', (event) => {
  if (!event.dataTransfer?.types?.includes('Files')) return;
  event.preventDefault();
  drop.classList.remove('over');
  const files = [...(event.dataTransfer.files ?? [])];
  if (!files.length) return;
  if (event.dataTransfer.items?.[0]?.webkitGetAsEntry?.()?.isDirectory) {
    showFolder(files[0].name);
    return;
  }
  check(firstOf(files));
});

/** A folder was dropped: nothing to check in it as such. */
function showFolder(name) {
  sequence += 1;
  $('more').textContent = '';
  $('chosen').textContent = name;
  result.hidden = false;
  panel.show({
    state: 'error',
    srcUrl: name,
    failure: { title: 'This is a folder', message: `${name} is a folder, not an image file.`, guidance: 'Drop or choose one image file from it.', status: null, retryAfterSeconds: null },
  });
  panel.focus();
}

$('options').addEventListener('click', (event) => {
  event.preventDefault();
  chrome.runtime.openOptionsPage();
});

loadSettings(chrome.storage.local).then((settings) => {
  $('server').textContent = ` at ${settings.serverUrl}`;
}).catch(() => {});
