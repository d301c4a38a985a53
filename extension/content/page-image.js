/**
 * Reads an image in the page, for the service worker, when the worker cannot: the
 * page's own blob: URL, or an <img> already showing it, drawn to a canvas. It makes
 * no network request (the worker makes every one, the page's Referer included): a
 * classic content script injected with the overlay on a right-click; it answers one
 * message, `fakescope:read-image`.
 */
(() => {
  // An own property only: a page element named like it is not this script (content/overlay-dom.js).
  if (Object.hasOwn(globalThis, '__fakescopePageImage')) return;

  const MAX_BYTES = 25 * 1024 * 1024; // the server's default upload limit

  /**
   * The URL itself when it is a blob: or data: URL (reading one is local: the bytes are
   * already in this page), else an error. Every fetch() here goes through it, so a content
   * script never makes a network request (tests/server/test_design_contract.py checks it).
   */
  function localOnly(url) {
    if (!/^(blob|data):/i.test(url)) throw new Error('not a blob: or data: URL');
    return url;
  }

  /**
   * The image's bytes: a blob: or data: URL as they are; else an already-loaded,
   * untainted <img> showing it, drawn to a canvas (PNG re-encode).
   */
  async function readImage(srcUrl) {
    const reasons = [];
    if (/^(blob|data):/i.test(srcUrl)) {
      try {
        const response = await fetch(localOnly(srcUrl));
        const blob = await response.blob();
        if (blob.size > MAX_BYTES) return { ok: false, tooLarge: true, error: 'the image is larger than 25 MiB' };
        return { ok: true, base64: await blobToBase64(blob), contentType: blob.type || 'application/octet-stream' };
      } catch (error) {
        reasons.push(`fetch: ${error.message}`);
      }
    }
    const img = imagesShowing(srcUrl).find((i) => i.complete && i.naturalWidth > 0);
    if (img) {
      try {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        canvas.getContext('2d').drawImage(img, 0, 0);
        const blob = await new Promise((resolve, reject) => {
          canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('empty canvas'))), 'image/png');
        });
        return { ok: true, base64: await blobToBase64(blob), contentType: 'image/png' };
      } catch (error) {
        reasons.push(`canvas: ${error.message}`);
      }
    } else {
      reasons.push('no loaded image shows it');
    }
    return { ok: false, error: reasons.join('; ') };
  }

  async function blobToBase64(blob) {
    const dataUrl = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
    return String(dataUrl).slice(String(dataUrl).indexOf(',') + 1);
  }

  function imagesShowing(srcUrl) {
    return [...document.images].filter((img) => img.currentSrc === srcUrl || img.src === srcUrl);
  }

  function onReadImage(message, _sender, sendResponse) {
    if (message?.type !== 'fakescope:read-image') return false;
    readImage(message.srcUrl).then(sendResponse);
    return true;
  }
  chrome.runtime.onMessage.addListener(onReadImage);

  /** Stops answering (a newer extension instance replaces this one: lib/injection.js). */
  function stop() {
    chrome.runtime.onMessage.removeListener(onReadImage);
  }

  globalThis.__fakescopePageImage = { stop };
})();
