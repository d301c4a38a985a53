/**
 * Reading a hotlink-protected image from the service worker: the site refuses requests
 * that do not come from its own pages (no Referer, or another one). The worker cannot
 * set Referer on a fetch (the browser forbids it), so a short-lived declarativeNetRequest
 * *session* rule sets it — on the one image address, on requests this extension makes
 * from its service worker (not from any tab), for as long as that one fetch runs.
 *
 * Pure helpers and a small rule keeper; the chrome API is passed in, so Node tests it.
 */

/**
 * The Referer the page's own <img> would send for this image under the default referrer
 * policy (strict-origin-when-cross-origin): the document's address (no fragment, no
 * user:password) for an image of the same origin, only its origin (`https://site/`) for
 * another site's image, none from https to http. Null when there is nothing to send.
 *
 * @param {string} imageUrl
 * @param {string | null | undefined} documentUrl the address of the frame the image is in
 * @returns {string | null}
 */
export function refererFor(imageUrl, documentUrl) {
  let image;
  let page;
  try {
    image = new URL(imageUrl);
    page = new URL(String(documentUrl ?? ''));
  } catch {
    return null;
  }
  const web = (url) => url.protocol === 'http:' || url.protocol === 'https:';
  if (!web(image) || !web(page)) return null;
  if (page.protocol === 'https:' && image.protocol === 'http:') return null;
  if (page.origin !== image.origin) return `${page.origin}/`;
  page.hash = '';
  page.username = '';
  page.password = '';
  return page.href;
}

/**
 * The address a request for `imageUrl` goes to (no fragment), or null when it is not
 * http(s) or cannot be written as an exact URL filter (`|...|`, ASCII, no `*` or `^`, which
 * are wildcards there; `|` only anchors at the ends).
 */
export function requestUrlOf(imageUrl) {
  let url;
  try {
    url = new URL(imageUrl);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  url.hash = '';
  const href = url.href;
  if (!/^[\x21-\x7e]+$/.test(href) || /[*^|]/.test(href)) return null;
  return href;
}

/**
 * The session rule: set Referer on requests for exactly `requestUrl` that this extension's
 * service worker makes (initiator: the extension, no tab). The resource type is the one
 * Chromium gives a service worker's fetch() (checked in the browser tests).
 */
export function refererRule({ id, requestUrl, referer, extensionId }) {
  return {
    id,
    priority: 1,
    action: {
      type: 'modifyHeaders',
      requestHeaders: [{ header: 'referer', operation: 'set', value: referer }],
    },
    condition: {
      urlFilter: `|${requestUrl}|`,
      isUrlFilterCaseSensitive: true,
      initiatorDomains: [extensionId],
      tabIds: [-1], // chrome.tabs.TAB_ID_NONE: the worker's own requests, never a tab's
      resourceTypes: REFERER_RULE_RESOURCE_TYPES,
    },
  };
}

/** What Chromium calls an extension service worker's fetch() (see refererRule). */
export const REFERER_RULE_RESOURCE_TYPES = ['xmlhttprequest'];

/**
 * Every request the worker makes for an image address goes through `send`, one at a time per
 * address, until its response headers are in. A request that needs the page's Referer adds a
 * session rule for its address first and removes it once the headers are in (also when it
 * fails): while the rule exists no other request of the worker's for that address is sent, so
 * none gets a Referer it did not ask for, and two rules never meet on one address. Rule ids
 * are unique; rules a stopped worker left behind (session rules outlive it) are removed
 * before the first request.
 */
export class RefererRules {
  /**
   * @param {{getSessionRules: Function, updateSessionRules: Function}} dnr
   *   chrome.declarativeNetRequest
   * @param {string} extensionId chrome.runtime.id
   * @param {{firstId?: number}} [options]
   */
  constructor(dnr, extensionId, { firstId = 1 } = {}) {
    this.dnr = dnr;
    this.extensionId = extensionId;
    this.nextId = firstId;
    this.inUse = new Set();
    this.byUrl = new Map(); // requestUrl → settles when the last request queued for it is sent
    this.ready = null;
  }

  /** Removes every session rule this extension holds (only this module adds any). */
  async clearStale() {
    const rules = await this.dnr.getSessionRules();
    const stale = rules.map((rule) => rule.id).filter((id) => !this.inUse.has(id));
    if (stale.length) await this.dnr.updateSessionRules({ removeRuleIds: stale });
  }

  allocateId() {
    while (this.inUse.has(this.nextId)) this.nextId += 1;
    const id = this.nextId;
    this.nextId = id >= 2 ** 31 - 2 ? 1 : id + 1;
    this.inUse.add(id);
    return id;
  }

  /**
   * Sends one request for `requestUrl`: `request()` is a fetch() (it resolves when the
   * response headers are in), with `referer` set on it, or none added when null.
   * @template T
   * @param {string} requestUrl from requestUrlOf()
   * @param {string | null} referer from refererFor()
   * @param {() => Promise<T>} request
   * @returns {Promise<T>}
   */
  async send(requestUrl, referer, request) {
    this.ready ??= this.clearStale().catch((error) => {
      console.warn('FakeScope: could not clear old Referer rules', error);
    });
    await this.ready;
    const before = this.byUrl.get(requestUrl) ?? Promise.resolve();
    const run = before.then(() => (referer ? this.sendWithRule(requestUrl, referer, request) : request()));
    const settled = run.then(() => {}, () => {});
    this.byUrl.set(requestUrl, settled);
    settled.then(() => {
      if (this.byUrl.get(requestUrl) === settled) this.byUrl.delete(requestUrl);
    });
    return run;
  }

  async sendWithRule(requestUrl, referer, request) {
    const id = this.allocateId();
    const rule = refererRule({ id, requestUrl, referer, extensionId: this.extensionId });
    try {
      await this.dnr.updateSessionRules({ addRules: [rule] });
    } catch (error) {
      this.inUse.delete(id);
      throw error;
    }
    try {
      return await request();
    } finally {
      try {
        await this.dnr.updateSessionRules({ removeRuleIds: [id] });
        this.inUse.delete(id);
      } catch (error) {
        // The id stays taken, so no later rule collides with the one left behind.
        console.warn('FakeScope: could not remove a Referer rule', error);
      }
    }
  }
}
