import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ASPECTS, askBody, isAspect, InvalidQuestionError, MAX_QUESTION_LENGTH } from '../lib/aspects.js';

const sha = 'b'.repeat(64);

test('there are the 14 FakeQA aspects with unique names', () => {
  assert.equal(ASPECTS.length, 14);
  assert.equal(new Set(ASPECTS.map((a) => a.name)).size, 14);
  assert.ok(isAspect('light_and_shadow'));
  assert.ok(!isAspect('light & shadow'));
});

test('an aspect request becomes an aspect body', () => {
  assert.deepEqual(askBody(sha, { aspect: 'texture' }), { sha256: sha, aspect: 'texture' });
});

test('a free question is trimmed and bounded', () => {
  assert.deepEqual(askBody(sha, { question: '  Why? ' }), { sha256: sha, question: 'Why?' });
  assert.throws(() => askBody(sha, { question: '   ' }), /Type a question/);
  assert.throws(() => askBody(sha, { question: 'x'.repeat(MAX_QUESTION_LENGTH + 1) }), /limited/);
});

test('unknown aspects and unknown images are refused before any request', () => {
  assert.throws(() => askBody(sha, { aspect: 'vibes' }), /Unknown aspect/);
  assert.throws(() => askBody('nope', { aspect: 'texture' }), /Unknown image/);
  assert.throws(() => askBody(sha, {}), InvalidQuestionError);
});

test('enhance asks for suggestions', () => {
  assert.deepEqual(askBody(sha, { enhance: true }), { sha256: sha, enhance: true });
});
