// PDQ of raw RGBA pixels, for the Python parity test (tests/extension/test_pdq_parity.py).
// Usage: node extension/tests/pdq_cli.mjs FILE WIDTH HEIGHT [FILE WIDTH HEIGHT ...]
// Prints one JSON line per image: {"hash": "<64 hex>", "quality": <0-100>, "mirrored": "<64 hex>",
// "rotations": {"clockwise": "<64 hex>", "halfTurn": "<64 hex>", "counterclockwise": "<64 hex>"},
// "flips": {"upsideDown": "<64 hex>", "transposed": "<64 hex>", "transversed": "<64 hex>"}}
// ("mirrored": the hash of the pixels flipped left to right; "rotations": the hashes that undo a
// quarter turn clockwise, a half turn, a quarter turn counterclockwise; "flips": the hashes that undo
// an upside-down flip and the two diagonal flips; lib/pdq.js, steps 7–8).
import { readFileSync } from 'node:fs';
import { pdqFromRgba } from '../lib/pdq.js';

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 3 !== 0) {
  console.error('usage: pdq_cli.mjs FILE WIDTH HEIGHT [...]');
  process.exit(2);
}
for (let i = 0; i < args.length; i += 3) {
  const pixels = new Uint8Array(readFileSync(args[i]));
  const result = pdqFromRgba(pixels, Number(args[i + 1]), Number(args[i + 2]));
  console.log(JSON.stringify(result));
}
