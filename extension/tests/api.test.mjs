import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiClient, readAnswerStream } from '../lib/api.js';
import { ApiError, describeFailure } from '../lib/problem.js';

function fakeFetch(respond) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    return respond(url, init);
  };
  fn.calls = calls;
  return fn;
}

const json = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

test('analyze posts the bytes as multipart field "file" with the token', async () => {
  const fetch = fakeFetch(() => json({ sha256: 'a'.repeat(64), label: 'fake' }));
  const client = new ApiClient({ baseUrl: 'http://s:1/', token: 'tok', fetch });
  const result = await client.analyze(new Uint8Array([1, 2, 3]), { filename: 'x.png', contentType: 'image/png' });
  assert.equal(result.label, 'fake');
  const { url, init } = fetch.calls[0];
  assert.equal(url, 'http://s:1/v1/analyze?explain=true');
  assert.equal(init.method, 'POST');
  assert.equal(init.headers.Authorization, 'Bearer tok');
  const file = init.body.get('file');
  assert.equal(file.name, 'x.png');
  assert.deepEqual(new Uint8Array(await file.arrayBuffer()), new Uint8Array([1, 2, 3]));
});

test('no token means no Authorization header', async () => {
  const fetch = fakeFetch(() => json({ results: {}, near: [] }));
  await new ApiClient({ baseUrl: 'http://s', fetch }).lookup(['a'.repeat(64)]);
  assert.equal(fetch.calls[0].init.headers.Authorization, undefined);
  assert.deepEqual(JSON.parse(fetch.calls[0].init.body), { sha256: ['a'.repeat(64)], pdq: [] });
});

test('a problem+json error becomes an ApiError with status, detail and Retry-After', async () => {
  const fetch = fakeFetch(() => json({ title: 'Service Unavailable', detail: 'Queue full', status: 503 }, 503, { 'Retry-After': '7' }));
  const error = await new ApiClient({ baseUrl: 'http://s', fetch }).analyze(new Uint8Array([1])).catch((e) => e);
  assert.ok(error instanceof ApiError);
  assert.equal(error.kind, 'http');
  assert.equal(error.status, 503);
  assert.equal(error.problem.detail, 'Queue full');
  assert.equal(error.retryAfterSeconds, 7);
});

test('a refused connection becomes a network ApiError naming the server', async () => {
  const fetch = fakeFetch(() => { throw new TypeError('Failed to fetch'); });
  const error = await new ApiClient({ baseUrl: 'http://127.0.0.1:9', fetch }).ready().catch((e) => e);
  assert.equal(error.kind, 'network');
  assert.equal(error.serverUrl, 'http://127.0.0.1:9');
});

test('a lookup answer without results is a protocol error', async () => {
  const fetch = fakeFetch(() => json({ nope: 1 }));
  const error = await new ApiClient({ baseUrl: 'http://s', fetch }).lookup([]).catch((e) => e);
  assert.equal(error.kind, 'protocol');
});

test('report sends the suggested label in snake case', async () => {
  const fetch = fakeFetch(() => json({ id: 1 }, 201));
  await new ApiClient({ baseUrl: 'http://s', fetch }).report({ sha256: 'c'.repeat(64), reason: 'wrong', suggestedLabel: 'real' });
  assert.deepEqual(JSON.parse(fetch.calls[0].init.body), { sha256: 'c'.repeat(64), reason: 'wrong', suggested_label: 'real' });
});

function streamOf(pieces) {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const p of pieces) controller.enqueue(encoder.encode(p));
      controller.close();
    },
  });
}

test('ask streams answer pieces as they arrive', async () => {
  const body = streamOf(['event: token\ndata: {"text":"The ', 'light"}\n\nevent: token\ndata: {"text":" is off"}\n\n', 'event: done\ndata: {}\n\n']);
  const fetch = fakeFetch(() => new Response(body, { headers: { 'Content-Type': 'text/event-stream' } }));
  const pieces = [];
  const answer = await new ApiClient({ baseUrl: 'http://s', fetch }).ask({ sha256: 'a'.repeat(64), aspect: 'texture' }, { onText: (t) => pieces.push(t) });
  assert.deepEqual(pieces, ['The light', ' is off']);
  assert.equal(answer, 'The light is off');
  assert.equal(fetch.calls[0].init.headers.Accept, 'text/event-stream');
});

test('a plain JSON answer to ask is accepted too', async () => {
  const fetch = fakeFetch(() => json({ answer: 'Flat lighting.' }));
  assert.equal(await new ApiClient({ baseUrl: 'http://s', fetch }).ask({}), 'Flat lighting.');
});

test('an error event in the stream rejects with its detail', async () => {
  const stream = streamOf(['data: partial\n\nevent: error\ndata: {"status":503,"detail":"model crashed"}\n\n']);
  const error = await readAnswerStream(stream, () => {}).catch((e) => e);
  assert.equal(error.status, 503);
  assert.equal(error.problem.detail, 'model crashed');
});

test('an answer stream that ends without its "done" event is cut off, not complete', async () => {
  const stream = streamOf(['event: token\ndata: {"text":"The shadows "}\n\n', 'event: token\ndata: {"text":"are"}\n\n']);
  const pieces = [];
  const error = await readAnswerStream(stream, (t) => pieces.push(t), 'http://s').catch((e) => e);
  assert.ok(error instanceof ApiError, String(error));
  assert.equal(error.kind, 'interrupted');
  assert.equal(error.serverUrl, 'http://s');
  assert.deepEqual(pieces, ['The shadows ', 'are'], 'the pieces already shown stay shown');
  assert.equal(describeFailure(error).title, 'The answer was cut off');
});

test('a connection that breaks in the middle of the answer is an interrupted ApiError', async () => {
  const encoder = new TextEncoder();
  const stream = new ReadableStream({
    start(controller) {
      controller.enqueue(encoder.encode('event: token\ndata: {"text":"The "}\n\n'));
      controller.error(new TypeError('network error'));
    },
  });
  const error = await readAnswerStream(stream, () => {}, 'http://s').catch((e) => e);
  assert.ok(error instanceof ApiError, String(error));
  assert.equal(error.kind, 'interrupted');
  assert.match(describeFailure(error).message, /http:\/\/s/);
});

test('a 404 or 405 that is not a problem+json answer means the address is not a FakeScope server', async () => {
  for (const [status, body, type] of [[404, '<h1>Not Found</h1>', 'text/html'], [405, '', 'text/plain'], [501, 'Unsupported method', 'text/html']]) {
    const fetch = fakeFetch(() => new Response(body, { status, headers: { 'Content-Type': type } }));
    const error = await new ApiClient({ baseUrl: 'http://s', fetch }).ready().catch((e) => e);
    assert.equal(error.kind, 'protocol', `HTTP ${status}`);
    assert.equal(error.status, status);
    const failure = describeFailure(error);
    assert.match(failure.message, /not look like a FakeScope server/);
    assert.doesNotMatch(failure.message, /does not know this image/);
  }
});

test('a FakeScope 404 (problem+json) stays "not found on the server"', async () => {
  const fetch = fakeFetch(() => new Response(JSON.stringify({ title: 'Not Found', status: 404, detail: 'no analysis of this image' }), {
    status: 404, headers: { 'Content-Type': 'application/problem+json' },
  }));
  const error = await new ApiClient({ baseUrl: 'http://s', fetch }).report({ sha256: 'c'.repeat(64), reason: 'x' }).catch((e) => e);
  assert.equal(error.kind, 'http');
  assert.equal(describeFailure(error).title, 'Not found on the server');
});

test('a /readyz that answers 200 with something other than JSON is not a FakeScope server', async () => {
  const fetch = fakeFetch(() => new Response('<html>welcome</html>', { status: 200, headers: { 'Content-Type': 'text/html' } }));
  const error = await new ApiClient({ baseUrl: 'http://s', fetch }).ready().catch((e) => e);
  assert.equal(error.kind, 'protocol');
});
