/**
 * Reads an image as the page itself would, for the service worker, when the
 * image's site refused the worker's own request (hotlink protection) or the
 * URL is the page's blob:. A classic content script injected with the overlay
 * on a right-click; it answers one message, `fakescope:read-image`.
 */
(() => {
  if (globalThis.__fakescopePageImage) return;
  globalThis.__fakescopePageImage = true;

  /**
   * Reads an image the worker could not fetch: as the page itself (its cookies,
   * its Referer), which works for same-origin, data: and blob: images; else by
   * drawing an already-loaded, untainted <img> to a canvas (PNG re-encode).
   */
  const MAX_BYTES = 25 * 1024 * 1024; // the server's default upload limit

  async function readImage(srcUrl) {
    const reasons = [];
    let status = 0;
    try {
      const response = await fetch(srcUrl, { credentials: 'include' });
      if (!response.ok) {
        status = response.status;
        throw new Error(`HTTP ${response.status}`);
      }
      const tooLarge = { ok: false, tooLarge: true, error: 'the image is larger than 25 MiB' };
      if (Number(response.headers.get('Content-Length') ?? 0) > MAX_BYTES) {
        response.body?.cancel().catch(() => {});
        return tooLarge;
      }
      const blob = await response.blob();
      if (blob.size > MAX_BYTES) return tooLarge;
      return { ok: true, base64: await blobToBase64(blob), contentType: blob.type || 'application/octet-stream' };
    } catch (error) {
      reasons.push(`fetch: ${error.message}`);
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
    }
    return { ok: false, status, error: reasons.join('; ') };
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

  chrome.runtime.onMessage.addListener((message, _sender, sendResponse) => {
    if (message?.type !== 'fakescope:read-image') return false;
    readImage(message.srcUrl).then(sendResponse);
    return true;
  });
})();
