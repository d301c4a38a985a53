/**
 * Verdict wording: turns an Analysis (the server's JSON) into the words and
 * numbers the overlay, badges and popup show. Pure: no chrome.* and no DOM, so
 * the content scripts receive a ready-made view and never interpret raw JSON.
 */

export const VERDICT_HEADLINES = Object.freeze({
  fake: 'Likely AI-generated',
  real: 'Likely authentic',
  uncertain: 'Uncertain',
});

const DECIDERS = Object.freeze({
  provenance: 'Decided by provenance metadata embedded in the file',
  model: "Decided by the forensic model's score",
  review: 'Decided by a human reviewer',
});

const INDICATES = Object.freeze({
  fake: 'points to AI generation',
  real: 'points to a real capture',
  neutral: 'neutral',
});

export const UNTRAINED_WARNING =
  'Untrained demo model: this server runs random weights for testing, so the score and ' +
  'explanation carry no meaning.';

/** The headline for a label; unknown labels read as "Uncertain" rather than crashing. */
export function verdictHeadline(label) {
  return VERDICT_HEADLINES[label] ?? VERDICT_HEADLINES.uncertain;
}

/** p_fake in [0, 1] as a whole percentage, or null when no model ran. */
export function scorePercent(pFake) {
  if (typeof pFake !== 'number' || !Number.isFinite(pFake)) return null;
  return Math.round(Math.min(1, Math.max(0, pFake)) * 100);
}

/** Who decided the verdict, in words (review decisions name the reviewer's note when present). */
export function decidedByText(analysis) {
  const base = DECIDERS[analysis?.decided_by] ?? 'Decided by an unknown rule';
  const note = analysis?.decided_by === 'review' ? analysis?.review?.note : null;
  return note ? `${base}: “${note}”` : base;
}

function modelText(model) {
  if (!model || typeof model !== 'object') return null;
  const parts = [String(model.id ?? 'unknown model')];
  if (model.revision) parts.push(`revision ${model.revision}`);
  if (model.quantization && model.quantization !== 'none') parts.push(`${model.quantization} quantized`);
  return parts.join(', ');
}

function evidenceItem(item) {
  const indicates = INDICATES[item?.indicates] ?? INDICATES.neutral;
  const strength = typeof item?.strength === 'string' ? item.strength : 'info';
  return {
    summary: String(item?.summary ?? item?.kind ?? 'evidence'),
    kind: String(item?.kind ?? ''),
    indicates: item?.indicates in INDICATES ? item.indicates : 'neutral',
    strength,
    tag: `${strength} · ${indicates}`,
    source: item?.source ? String(item.source) : null,
  };
}

/**
 * The overlay's view of an analysis. Everything the content script renders
 * comes from here, already worded.
 */
export function describeAnalysis(analysis) {
  const label = analysis?.label in VERDICT_HEADLINES ? analysis.label : 'uncertain';
  const percent = scorePercent(analysis?.p_fake);
  const untrained = Boolean(analysis?.untrained || analysis?.model?.untrained);
  return {
    sha256: String(analysis?.sha256 ?? ''),
    label,
    headline: verdictHeadline(label),
    score:
      percent === null
        ? { percent: null, text: 'No model score (the server runs provenance checks only)' }
        : { percent, text: `${percent}% likelihood of AI generation` },
    decidedBy: decidedByText(analysis),
    explanation: typeof analysis?.explanation === 'string' && analysis.explanation.trim()
      ? analysis.explanation.trim()
      : null,
    evidence: Array.isArray(analysis?.evidence) ? analysis.evidence.map(evidenceItem) : [],
    model: modelText(analysis?.model),
    untrained,
    untrainedWarning: untrained ? UNTRAINED_WARNING : null,
    flags: Array.isArray(analysis?.flags) ? analysis.flags.map(String) : [],
  };
}

/** A one-line summary for badges and the popup's recent list. */
export function shortVerdict(analysis) {
  const headline = verdictHeadline(analysis?.label);
  const percent = scorePercent(analysis?.p_fake);
  return percent === null ? headline : `${headline} (${percent}%)`;
}

const JUDGED = Object.freeze({
  fake: 'judged likely AI-generated',
  real: 'judged likely authentic',
  uncertain: 'with an uncertain verdict',
});

/** A rotated copy's turn (lib/lookup.js ROTATIONS), in words: how it looks turned from the checked image. */
const TURNS = Object.freeze({
  clockwise: 'a quarter turn clockwise',
  halfTurn: 'a half turn',
  counterclockwise: 'a quarter turn counterclockwise',
});
/** The turn that undoes it: how this image's fingerprint was turned back to match. */
const TURNS_BACK = Object.freeze({
  clockwise: 'a quarter turn counterclockwise',
  halfTurn: 'a half turn',
  counterclockwise: 'a quarter turn clockwise',
});

/**
 * A flipped copy's flip (lib/lookup.js FLIPS), in words: `copy` names the copy (title and
 * short line), `how` says how it looks flipped from the checked image, `back` how this
 * image's fingerprint was flipped back to match. A diagonal flip is a mirror and a quarter
 * turn together (PIL's TRANSPOSE is the left-right mirror then a quarter turn
 * counterclockwise; TRANSVERSE the mirror then a quarter turn clockwise).
 */
const FLIPS = Object.freeze({
  upsideDown: {
    copy: 'copy flipped upside down',
    how: 'a copy flipped upside down (top to bottom)',
    back: 'this image flipped upside down',
  },
  transposed: {
    copy: 'mirrored and turned copy',
    how: 'a mirrored copy that was also turned a quarter turn (flipped left to right, then turned a quarter turn counterclockwise)',
    back: 'this image turned a quarter turn clockwise, then flipped left to right',
  },
  transversed: {
    copy: 'mirrored and turned copy',
    how: 'a mirrored copy that was also turned a quarter turn (flipped left to right, then turned a quarter turn clockwise)',
    back: 'this image turned a quarter turn counterclockwise, then flipped left to right',
  },
});

/**
 * The view of a feed *hint*: this image was not checked, but its PDQ fingerprint is
 * `distance` bits (of 256) from that of an image that was. With `mirrored`, the match is
 * on the fingerprint of this image flipped left to right: it looks like a mirrored copy of
 * the checked image. With `rotated` (a turn named in TURNS), the match is on the
 * fingerprint of this image turned back: it looks like a rotated copy, turned that way.
 * With `flipped` (a flip named in FLIPS), on the fingerprint of this image flipped back: it
 * looks like a copy flipped upside down, or mirrored and turned a quarter turn.
 * Worded so that it never reads as this image's own verdict.
 * @param {object} analysis the similar (checked) image's analysis
 * @param {number} distance
 * @param {{mirrored?: boolean, rotated?: 'clockwise' | 'halfTurn' | 'counterclockwise' | null,
 *   flipped?: 'upsideDown' | 'transposed' | 'transversed' | null}} [options]
 */
export function describeHint(analysis, distance, { mirrored = false, rotated = null, flipped: flip = null } = {}) {
  const label = analysis?.label in VERDICT_HEADLINES ? analysis.label : 'uncertain';
  const bits = Number.isInteger(distance) && distance >= 0 ? distance : null;
  const flipped = mirrored === true;
  const turn = !flipped && Object.hasOwn(TURNS, rotated) ? rotated : null;
  const other = !flipped && !turn && Object.hasOwn(FLIPS, flip) ? flip : null;
  const differ = bits === null ? 'a few bits differ' : `${bits} of 256 bits differ`;
  const verdict = shortVerdict(analysis);
  const common = {
    kind: 'hint',
    label,
    distance: bits,
    mirrored: flipped,
    rotated: turn,
    flipped: other,
    similarSha256: String(analysis?.sha256 ?? ''),
    similarVerdict: verdict,
  };
  if (other) {
    const words = FLIPS[other];
    return {
      ...common,
      short: `Not checked: looks like a ${words.copy} of an image ${JUDGED[label]} (${differ})`,
      title: `Not checked · ${words.copy} of an image ${JUDGED[label]}`,
      text:
        `FakeScope has not checked this image itself. It looks like ${words.how} of an image ` +
        `that was checked: that image's verdict is “${verdict}”. This image's perceptual ` +
        `fingerprint (PDQ), flipped back, is close to that image's: ${differ}.`,
      caution:
        'Reposting a picture flipped or turned is a common way to dodge duplicate detection, but ' +
        'different pictures can be this close too. This is a hint, not a verdict on this image.',
      distanceText: `Fingerprint distance: ${bits ?? '?'} of 256 bits (PDQ perceptual hash, ${words.back}).`,
    };
  }
  if (turn) {
    return {
      ...common,
      short: `Not checked: looks like a rotated copy of an image ${JUDGED[label]} (${differ})`,
      title: `Not checked · rotated copy of an image ${JUDGED[label]}`,
      text:
        `FakeScope has not checked this image itself. It looks like a rotated copy (turned ` +
        `${TURNS[turn]}) of an image that was checked: that image's verdict is “${verdict}”. ` +
        `This image's perceptual fingerprint (PDQ), turned back, is close to that image's: ` +
        `${differ}.`,
      caution:
        'Reposting a picture rotated is a common way to dodge duplicate detection, but ' +
        'different pictures can be this close too. This is a hint, not a verdict on this image.',
      distanceText:
        `Fingerprint distance: ${bits ?? '?'} of 256 bits (PDQ perceptual hash, this image turned ` +
        `${TURNS_BACK[turn]}).`,
    };
  }
  const similar = flipped
    ? `looks like a mirrored copy of an image ${JUDGED[label]}`
    : `similar to an image ${JUDGED[label]}`;
  return {
    ...common,
    short: `Not checked: ${similar} (${differ})`,
    title: flipped ? `Not checked · mirrored copy of an image ${JUDGED[label]}` : `Not checked · ${similar}`,
    text: flipped
      ? `FakeScope has not checked this image itself. It looks like a mirrored (flipped left ` +
        `to right) copy of an image that was checked: that image's verdict is “${verdict}”. ` +
        `This image's perceptual fingerprint (PDQ), flipped back, is close to that image's: ` +
        `${differ}.`
      : `FakeScope has not checked this image itself. It looks like an image that was checked: ` +
        `that image's verdict is “${verdict}”. Their perceptual fingerprints (PDQ) ` +
        `are close: ${differ}.`,
    caution: flipped
      ? 'Reposting a picture mirrored is a common way to dodge duplicate detection, but ' +
        'different pictures can be this close too. This is a hint, not a verdict on this image.'
      : 'A resized or re-encoded copy of a picture usually differs in a few bits, but different ' +
        'pictures can be this close too. This is a hint, not a verdict on this image.',
    distanceText: flipped
      ? `Fingerprint distance: ${bits ?? '?'} of 256 bits (PDQ perceptual hash, this image flipped left to right).`
      : `Fingerprint distance: ${bits ?? '?'} of 256 bits (PDQ perceptual hash).`,
  };
}
