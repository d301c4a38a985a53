import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../lib/sse.js';

function collect(pieces, { end = true } = {}) {
  const events = [];
  const parser = new SseParser((e) => events.push(e));
  for (const p of pieces) parser.push(p);
  if (end) parser.end();
  return events;
}

test('events are split on blank lines and data lines are joined', () => {
  const events = collect(['data: a\ndata: b\n\nevent: done\ndata: {}\n\n']);
  assert.deepEqual(events.map((e) => [e.event, e.data]), [['message', 'a\nb'], ['done', '{}']]);
});

test('an event split anywhere, even mid-line, is reassembled', () => {
  const text = 'event: token\ndata: {"text":"Hel"}\n\nevent: token\ndata: {"text":"lo"}\n\n';
  for (let cut = 1; cut < text.length; cut += 1) {
    const events = collect([text.slice(0, cut), text.slice(cut)]);
    assert.deepEqual(events.map((e) => e.data), ['{"text":"Hel"}', '{"text":"lo"}'], `cut at ${cut}`);
  }
});

test('CRLF and CR line endings work', () => {
  assert.deepEqual(collect(['data: x\r\n\r\ndata: y\r\r']).map((e) => e.data), ['x', 'y']);
});

test('comments and events without data are ignored; ids are kept', () => {
  const events = collect([': keep-alive\n\nevent: ping\n\nid: 7\ndata: z\n\n']);
  assert.deepEqual(events, [{ event: 'message', data: 'z', id: '7' }]);
});

test('a last event without its blank line is delivered at the end only', () => {
  assert.deepEqual(collect(['data: tail'], { end: false }), []);
  assert.deepEqual(collect(['data: tail']).map((e) => e.data), ['tail']);
});
