/** The 14 FakeQA forgery aspects the server accepts in POST /v1/ask, with readable labels. */

export const ASPECTS = Object.freeze([
  ['texture', 'Texture'],
  ['edge', 'Edges'],
  ['clarity', 'Clarity'],
  ['light_and_shadow', 'Light & shadow'],
  ['layout', 'Layout'],
  ['symmetry', 'Symmetry'],
  ['reflection', 'Reflections'],
  ['perspective', 'Perspective'],
  ['shape', 'Shapes'],
  ['theme', 'Theme'],
  ['content_deficiency', 'Missing content'],
  ['distortion', 'Distortion'],
  ['unrealistic_aspect', 'Unrealistic details'],
  ['overall_tone', 'Overall tone'],
].map(([name, label]) => Object.freeze({ name, label })));

const NAMES = new Set(ASPECTS.map((a) => a.name));

export function isAspect(name) {
  return NAMES.has(name);
}

export const MAX_QUESTION_LENGTH = 500;

/** A question the server would refuse anyway: said to the user before any request. */
export class InvalidQuestionError extends TypeError {
  constructor(message) {
    super(message);
    this.name = 'InvalidQuestionError';
  }
}

/**
 * Validates what the overlay asks for and returns the /v1/ask body, or throws
 * an InvalidQuestionError with a message fit for the user.
 */
export function askBody(sha256, request) {
  if (!/^[0-9a-f]{64}$/.test(String(sha256))) throw new InvalidQuestionError('Unknown image: check it first.');
  if (request?.aspect !== undefined) {
    if (!isAspect(request.aspect)) throw new InvalidQuestionError(`Unknown aspect: ${request.aspect}`);
    return { sha256, aspect: request.aspect };
  }
  if (request?.enhance === true) return { sha256, enhance: true };
  const question = String(request?.question ?? '').trim();
  if (!question) throw new InvalidQuestionError('Type a question first.');
  if (question.length > MAX_QUESTION_LENGTH) {
    throw new InvalidQuestionError(`Questions are limited to ${MAX_QUESTION_LENGTH} characters.`);
  }
  return { sha256, question };
}
