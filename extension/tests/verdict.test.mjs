import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeAnalysis, verdictHeadline, scorePercent, decidedByText, shortVerdict, UNTRAINED_WARNING } from '../lib/verdict.js';

const analysis = {
  sha256: 'a'.repeat(64),
  label: 'fake',
  p_fake: 0.734,
  decided_by: 'model',
  evidence: [{ kind: 'camera_exif', indicates: 'real', strength: 'weak', summary: 'Camera EXIF: Canon', source: 'exif', details: {} }],
  explanation: '  The hands have six fingers. ',
  model: { id: 'tiny-llava', revision: null, quantization: 'none', untrained: true, family: 'llava' },
  untrained: true,
  flags: ['conflict_camera_vs_model'],
};

test('labels read as the three verdicts in words', () => {
  assert.equal(verdictHeadline('fake'), 'Likely AI-generated');
  assert.equal(verdictHeadline('real'), 'Likely authentic');
  assert.equal(verdictHeadline('uncertain'), 'Uncertain');
});

test('an unknown label reads as uncertain instead of failing', () => {
  assert.equal(verdictHeadline('banana'), 'Uncertain');
  assert.equal(describeAnalysis({ label: 'banana' }).label, 'uncertain');
});

test('p_fake becomes a clamped whole percentage and null stays null', () => {
  assert.equal(scorePercent(0.734), 73);
  assert.equal(scorePercent(1.7), 100);
  assert.equal(scorePercent(-0.2), 0);
  assert.equal(scorePercent(null), null);
  assert.equal(scorePercent(Number.NaN), null);
});

test('the view carries verdict, score, decider, explanation, evidence and model', () => {
  const view = describeAnalysis(analysis);
  assert.equal(view.headline, 'Likely AI-generated');
  assert.deepEqual(view.score, { percent: 73, text: '73% likelihood of AI generation' });
  assert.equal(view.decidedBy, "Decided by the forensic model's score");
  assert.equal(view.explanation, 'The hands have six fingers.');
  assert.equal(view.evidence.length, 1);
  assert.equal(view.evidence[0].tag, 'weak · points to a real capture');
  assert.equal(view.model, 'tiny-llava');
  assert.deepEqual(view.flags, ['conflict_camera_vs_model']);
});

test('an untrained model is always called out', () => {
  const view = describeAnalysis({ ...analysis, untrained: false });
  assert.equal(view.untrained, true, 'model.untrained alone is enough');
  assert.equal(view.untrainedWarning, UNTRAINED_WARNING);
  assert.equal(describeAnalysis({ ...analysis, untrained: false, model: { id: 'm', untrained: false } }).untrainedWarning, null);
});

test('a provenance-only analysis says there is no model score', () => {
  const view = describeAnalysis({ label: 'uncertain', p_fake: null, decided_by: 'provenance', model: null });
  assert.equal(view.score.percent, null);
  assert.match(view.score.text, /provenance/);
  assert.equal(view.model, null);
  assert.equal(view.explanation, null);
});

test('a human review decision names the reviewer note', () => {
  const text = decidedByText({ decided_by: 'review', review: { label: 'real', note: 'Original found' } });
  assert.match(text, /human reviewer/);
  assert.match(text, /Original found/);
});

test('the short verdict adds the percentage when there is one', () => {
  assert.equal(shortVerdict(analysis), 'Likely AI-generated (73%)');
  assert.equal(shortVerdict({ label: 'real', p_fake: null }), 'Likely authentic');
});
