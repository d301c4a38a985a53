/**
 * FakeScope overlay, part 1 of 2: what the panel is built from. The stylesheet (of the panel's
 * host and of the panel page), `h()` (which inserts strings as text, never as HTML: server text
 * is untrusted) and unique element ids, shared by content/overlay.js (and, through it,
 * content/feed.js) and by the extension's panel page (panel/frame-panel.html, with
 * panel/panel-forms.js and panel/panel.js).
 *
 * A classic content script like the others (see content/overlay.js): injected before
 * them, in the order of worker/content-scripts.js, it leaves its parts on
 * `globalThis.__fakescopeOverlayDom` (the extension's isolated world, not the page's).
 *
 * Every script asks whether a part is there with `Object.hasOwn(globalThis, name)`, never by
 * reading `globalThis[name]`: the isolated world has its own global object, but it still finds
 * the page's elements by id or name (`<div id="__fakescope">` makes `globalThis.__fakescope`
 * that div, in this world too). Read that way, a page could make a script believe it already
 * ran, and so keep the panel or the badges out of the page. The parts the scripts set are own
 * properties, which an element never is.
 */
(() => {
  if (Object.hasOwn(globalThis, '__fakescopeOverlayDom')) return;
  // The worker marks what it injects with its instance id (lib/injection.js); feed scripts
  // registered for a site start in a fresh page without it, and say only that they are alive.
  if (!Object.hasOwn(globalThis, '__fakescopeInjection')) {
    globalThis.__fakescopeInjection = { instance: null, runtime: chrome.runtime };
  }

  const STYLE = `
    :host { all: initial !important; display: block !important; position: absolute !important;
      inset: 0 auto auto 0 !important; width: 0 !important; height: 0 !important; margin: 0 !important;
      padding: 0 !important; border: 0 !important; overflow: visible !important; background: none !important;
      z-index: 2147483647 !important; visibility: visible !important; opacity: 1 !important;
      pointer-events: none !important; transform: none !important; filter: none !important; }
    .panel { pointer-events: auto; position: absolute; box-sizing: border-box; width: min(380px, calc(100vw - 16px));
      max-height: min(80vh, 640px); overflow: auto; overscroll-behavior: contain; background: #fff; color: #1a1a1a;
      border: 1px solid #5a5a5a; border-radius: 10px; box-shadow: 0 6px 28px rgba(0,0,0,.35);
      font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; text-align: left;
      letter-spacing: normal; text-transform: none; direction: ltr; overflow-wrap: anywhere; }
    .panel:focus { outline: 3px solid #1a56c4; outline-offset: 2px; }
    iframe.panel { display: block; height: min(80vh, 640px); max-height: none; padding: 0; overflow: hidden; }
    * { box-sizing: border-box; }
    header { display: flex; align-items: center; justify-content: space-between; gap: 8px; padding: 10px 12px;
      border-bottom: 1px solid #ddd; background: #f3f5f9; border-radius: 10px 10px 0 0; }
    h2 { margin: 0; font-size: 15px; font-weight: 700; color: #18386e; }
    h3 { margin: 14px 0 6px; font-size: 13px; font-weight: 700; color: #333; text-transform: uppercase; letter-spacing: .03em; }
    .body { padding: 12px; }
    button, select, input, textarea { font: inherit; color: #1a1a1a; }
    button { cursor: pointer; border: 1px solid #18386e; background: #18386e; color: #fff; border-radius: 6px; padding: 5px 10px; }
    button.secondary { background: #fff; color: #18386e; }
    button:focus-visible, select:focus-visible, input:focus-visible, textarea:focus-visible, summary:focus-visible,
    .explanation:focus-visible {
      outline: 3px solid #1a56c4; outline-offset: 2px; }
    button:disabled { opacity: .6; cursor: default; }
    .close { background: transparent; color: #333; border: 1px solid transparent; font-size: 20px; line-height: 1; padding: 2px 8px; }
    .close:hover { border-color: #999; }
    .verdict { margin: 0 0 8px; font-size: 20px; font-weight: 800; }
    .tone-fake { color: #a4001d; } .tone-real { color: #17602a; } .tone-uncertain { color: #6b4700; }
    .gauge { margin: 4px 0 8px; }
    .bar { position: relative; height: 12px; border-radius: 6px; border: 1px solid #777;
      background: linear-gradient(90deg, #d9efdc 0 40%, #f6ecd2 40% 60%, #f6d6da 60% 100%); }
    .fill { position: absolute; top: -4px; width: 4px; height: 18px; margin-left: -2px; background: #1a1a1a; border-radius: 2px; }
    .scale { display: flex; justify-content: space-between; font-size: 11px; color: #555; }
    .muted { color: #555; }
    .warning { margin: 8px 0; padding: 8px; border-left: 4px solid #a86b00; background: #fff4dc; color: #4a3200; }
    .error-title { margin: 0 0 6px; font-size: 17px; font-weight: 800; color: #a4001d; }
    ul { margin: 0; padding-left: 18px; }
    li { margin: 3px 0; }
    .tag { display: inline-block; font-size: 11px; color: #444; border: 1px solid #bbb; border-radius: 4px; padding: 0 4px; margin-left: 4px; }
    .row { display: flex; gap: 6px; align-items: center; margin: 6px 0; }
    .row > select, .row > input:not([type="radio"]) { flex: 1; min-width: 0; padding: 4px 6px; border: 1px solid #777; border-radius: 5px; background: #fff; }
    label { font-size: 13px; color: #333; }
    textarea { width: 100%; min-height: 56px; padding: 4px 6px; border: 1px solid #777; border-radius: 5px; background: #fff; }
    .explanation { max-height: 12em; overflow: auto; overscroll-behavior: contain; white-space: pre-wrap; }
    .answer { white-space: pre-wrap; margin-top: 6px; padding: 8px; background: #f6f7f9; border-radius: 6px; min-height: 1.5em; }
    .answer:empty { display: none; }
    fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 6px 0; padding: 6px 8px; }
    legend { font-size: 13px; padding: 0 4px; }
    .spinner { display: inline-block; width: 14px; height: 14px; border: 2px solid #18386e; border-right-color: transparent;
      border-radius: 50%; animation: spin .8s linear infinite; vertical-align: -2px; margin-right: 6px; }
    @keyframes spin { to { transform: rotate(360deg); } }
    @media (prefers-reduced-motion: reduce) { .spinner { animation: none; } }
    .status { margin-top: 6px; font-size: 13px; }
    .hint-title { margin: 0 0 8px; font-size: 17px; font-weight: 800; }
    .hint-note, .frame-note { margin: 8px 0; padding: 8px; border-left: 4px solid #18386e; background: #eef2fa; color: #1a1a1a; }
    .frame-note { margin-top: 0; }
    .sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
      clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
  `;

  /** Creates an element; strings become text nodes (never HTML: server text is untrusted). */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === false || value === null || value === undefined) continue;
      if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else if (name === 'className') el.className = value;
      else el.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  let idCounter = 0;
  const uid = (prefix) => `fs-${prefix}-${(idCounter += 1)}`;

  globalThis.__fakescopeOverlayDom = { STYLE, h, uid };
})();
