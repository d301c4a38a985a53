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
