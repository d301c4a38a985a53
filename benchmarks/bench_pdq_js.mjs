// The extension's PDQ (extension/lib/pdq.js) on the CPU: milliseconds per image for what feed
// mode hashes (pixels already decoded and shrunk to at most 512 px: the hash, its quality and the
// seven turned and flipped hashes), on photo-like pictures of a few sizes.
//
//   node benchmarks/bench_pdq_js.mjs                          # this checkout's pdq.js
//   node benchmarks/bench_pdq_js.mjs --compare OTHER/pdq.js   # and another version, in turns
//   node benchmarks/bench_pdq_js.mjs --json out.json
//
// With --compare both versions hash the same pictures, alternating round by round, and the ratio
// of their medians is printed (one run, one machine: compare ratios, not absolute times).
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const rounds = Number(option('--rounds') ?? 15);
const here = new URL('../extension/lib/pdq.js', import.meta.url);
const { texture } = await import(new URL('../extension/tests/texture.mjs', import.meta.url).href);
const versions = { current: await import(here.href) };
if (option('--compare')) versions.compared = await import(pathToFileURL(resolve(option('--compare'))).href);

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const results = [];
for (const [width, height] of [[512, 384], [512, 512], [384, 512], [256, 171]]) {
  const pixels = texture(width, height, { seed: width * 7 + height });
  const times = Object.fromEntries(Object.keys(versions).map((name) => [name, []]));
  for (const module of Object.values(versions)) module.pdqFromRgba(pixels, width, height); // warm up
  for (let round = 0; round < rounds; round += 1) {
    for (const [name, module] of Object.entries(versions)) {
      const start = performance.now();
      module.pdqFromRgba(pixels, width, height);
      times[name].push(performance.now() - start);
    }
  }
  const row = { width, height, rounds, ms: Object.fromEntries(Object.entries(times).map(([n, t]) => [n, median(t)])) };
  if (versions.compared) row.ratio = row.ms.current / row.ms.compared;
  results.push(row);
  const shown = Object.entries(row.ms).map(([n, ms]) => `${n} ${ms.toFixed(2)} ms`).join(', ');
  console.log(`${width}×${height}: ${shown}${row.ratio ? `, current / compared ${row.ratio.toFixed(2)}` : ''}`);
}
if (option('--json')) writeFileSync(option('--json'), `${JSON.stringify({ node: process.version, results }, null, 2)}\n`);
