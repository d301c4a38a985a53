/**
 * Which image addresses the service worker may fetch for a page. The worker fetches images the
 * page names (every image feed mode sees, the image of a check), and it is not bound by what
 * the browser refuses the page itself: a page from the internet may not reach this computer or
 * the local network (Chrome's Local Network Access), and the worker reads `localhost` and
 * `127.0.0.1` with its host permissions. Fetched for such a page, an image of a local service
 * (a router's page, a local photo server, the FakeScope server itself) would be requested on
 * the page's behalf, and its verdict shown in that page. So an image goes no further inward
 * than its page: an internet page's images are fetched only from the internet, a local
 * network page's from the local network or the internet; a page on this computer's from
 * anywhere.
 *
 * Judged by the address as written (a name or an IP literal), since the extension cannot see
 * where a name resolves: `localhost` and its subdomains and loopback addresses are this
 * computer; private, link-local and shared ranges, `.local` (mDNS) and a few intranet names
 * are the local network. A public name that resolves to a local address is not caught (the
 * browser's own check still applies to the page).
 */

/** This computer, the local network, the internet: the order of the checks below. */
export const LOOPBACK = 'loopback';
export const LOCAL = 'local';
export const PUBLIC = 'public';

const RANK = { [LOOPBACK]: 0, [LOCAL]: 1, [PUBLIC]: 2 };
const LOCAL_NAME_SUFFIXES = ['.local', '.internal', '.lan', '.home.arpa', '.intranet'];

function ipv4Space(octets) {
  const [a, b] = octets;
  if (a === 127 || a === 0) return LOOPBACK; // 0.0.0.0 reaches this computer too
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return LOCAL;
  if (a === 169 && b === 254) return LOCAL; // link-local
  if (a === 100 && b >= 64 && b <= 127) return LOCAL; // shared address space (carrier NAT)
  return PUBLIC;
}

/** The 8 groups of a serialized IPv6 address (WHATWG URL writes it compressed, lower case). */
function ipv6Groups(text) {
  const [head, tail = null] = text.split('::');
  const part = (s) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const front = part(head);
  const back = tail === null ? [] : part(tail);
  return [...front, ...Array(8 - front.length - back.length).fill(0), ...back];
}

function ipv6Space(groups) {
  if (groups.slice(0, 7).every((g) => g === 0) && groups[7] <= 1) return LOOPBACK; // ::1 and ::
  // IPv4-mapped (::ffff:a.b.c.d): the IPv4 address decides.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return ipv4Space([groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff]);
  }
  if ((groups[0] & 0xfe00) === 0xfc00) return LOCAL; // unique local fc00::/7
  if ((groups[0] & 0xffc0) === 0xfe80) return LOCAL; // link-local fe80::/10
  return PUBLIC;
}

/**
 * Where the address `url` points: LOOPBACK (this computer), LOCAL (the local network) or PUBLIC.
 * A `blob:` address is its creator's origin; an address with no host (`data:`, `about:`) or
 * that does not parse counts as PUBLIC, the most restricted page; `file:` is this computer.
 */
export function addressSpaceOf(url) {
  let parsed;
  try {
    parsed = new URL(String(url));
    if (parsed.protocol === 'blob:') parsed = new URL(parsed.origin);
  } catch {
    return PUBLIC;
  }
  if (parsed.protocol === 'file:') return LOOPBACK;
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return PUBLIC;
  const host = parsed.hostname.replace(/\.$/, '');
  if (host.startsWith('[')) return ipv6Space(ipv6Groups(host.slice(1, -1)));
  // The URL parser writes every IPv4 form (0x7f.1, 2130706433) as a dotted quad.
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return ipv4Space(host.split('.').map(Number));
  if (host === 'localhost' || host.endsWith('.localhost')) return LOOPBACK;
  if (!host.includes('.') || LOCAL_NAME_SUFFIXES.some((suffix) => host.endsWith(suffix))) return LOCAL;
  return PUBLIC;
}

/**
 * Whether the worker may fetch the image at `imageUrl` for the document at `documentUrl` (the
 * frame the image is in): not when the image is further inward (more private) than the page.
 */
export function mayFetchForPage(imageUrl, documentUrl) {
  return RANK[addressSpaceOf(imageUrl)] >= RANK[addressSpaceOf(documentUrl)];
}
