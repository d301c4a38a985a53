/** SHA-256 of image bytes, computed locally (crypto.subtle): the server's cache key. */

/** Lower-case hex SHA-256 of an ArrayBuffer / typed array. */
export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

export function isSha256Hex(value) {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);
}
