/** The popup's "recent checks" list: newest first, one entry per image, bounded. */

export const RECENT_KEY = 'recentChecks';
export const MAX_RECENT = 10;

/**
 * @param {Array<{sha256: string}>} list
 * @param {{sha256: string, imageUrl: string, pageUrl: string|null, verdict: string, label: string, at: number}} entry
 */
export function withRecentCheck(list, entry, max = MAX_RECENT) {
  const rest = (Array.isArray(list) ? list : []).filter((item) => item?.sha256 !== entry.sha256);
  return [entry, ...rest].slice(0, max);
}

/** Per storage area, the end of the updates asked for so far (never rejected). */
const pendingUpdates = new WeakMap();

/**
 * Adds `entry` to the list kept under RECENT_KEY in `area` (chrome.storage.local). Updates
 * to one area run one after another, whichever `recentChecks` asks (the right-click check
 * and the file check each have one): two checks finishing at once would otherwise both read
 * the old list and the second write would drop the first entry.
 */
export function recentChecks(area, max = MAX_RECENT) {
  return function remember(entry) {
    const update = (pendingUpdates.get(area) ?? Promise.resolve()).then(async () => {
      const stored = (await area.get(RECENT_KEY))[RECENT_KEY];
      await area.set({ [RECENT_KEY]: withRecentCheck(stored, entry, max) });
    });
    pendingUpdates.set(area, update.catch(() => {})); // a failed update must not block the next
    return update;
  };
}
