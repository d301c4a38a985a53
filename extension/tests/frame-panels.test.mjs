import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryArea } from '../lib/cache.js';
import { FRAME_PANEL_KEY_PREFIX, FramePanels } from '../lib/frame-panels.js';

const FRAME = { frameId: 3, origin: 'http://127.0.0.1:8080', note: 'This image is in an embedded frame…' };
const loading = (checkId) => ({ state: 'loading', srcUrl: 'http://127.0.0.1:8080/a.png', checkId });
const result = (checkId) => ({ state: 'result', srcUrl: 'http://127.0.0.1:8080/a.png', checkId, view: { label: 'real' } });

function panels() {
  const area = memoryArea();
  return { area, framePanels: new FramePanels(area) };
}

test('a panel gets a random id, and its record only what the panel page needs', async () => {
  const { area, framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', FRAME);
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.notEqual(await framePanels.open(8, 'http://localhost/other.html', FRAME), id);
  assert.deepEqual(area.map.get(`${FRAME_PANEL_KEY_PREFIX}${id}`), {
    tabId: 7, pageUrl: 'http://localhost/page.html', frame: FRAME, state: null, version: 0,
  });
});

test('each state shown is a new version of the record, with the frame it is about', async () => {
  const { framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', FRAME);
  assert.equal(await framePanels.show(id, FRAME, loading('c1')), true);
  const moved = { ...FRAME, origin: 'http://127.0.0.1:9090' };
  assert.equal(await framePanels.show(id, moved, result('c1')), true);
  const record = await framePanels.of(id, 7);
  assert.deepEqual([record.version, record.state.state, record.frame.origin], [2, 'result', 'http://127.0.0.1:9090']);
});

test('the late outcome of a check the panel no longer shows is not recorded', async () => {
  const { framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', FRAME);
  await framePanels.show(id, FRAME, loading('first'));
  await framePanels.show(id, FRAME, loading('again')); // Try again
  assert.equal(await framePanels.show(id, FRAME, result('first')), false);
  assert.equal((await framePanels.of(id, 7)).state.checkId, 'again');
  assert.equal(await framePanels.show(id, FRAME, result('again')), true);
});

test('a panel is given only to its own tab, and never for an unknown id', async () => {
  const { framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', FRAME);
  assert.equal((await framePanels.of(id, 7)).tabId, 7);
  assert.equal(await framePanels.of(id, 8), null);
  assert.equal(await framePanels.of('00000000-0000-4000-8000-000000000000', 7), null);
  assert.equal(await framePanels.of(undefined, 7), null);
  assert.equal(await framePanels.of('', 7), null);
});

test('a new panel in a tab forgets the previous one, whose states go nowhere', async () => {
  const { area, framePanels } = panels();
  const first = await framePanels.open(7, 'http://localhost/page.html', FRAME);
  await framePanels.show(first, FRAME, loading('c1'));
  const second = await framePanels.open(7, 'http://localhost/page.html', FRAME);
  assert.equal(await framePanels.of(first, 7), null);
  assert.equal(await framePanels.show(first, FRAME, result('c1')), false);
  assert.notEqual(await framePanels.of(second, 7), null);
  assert.equal([...area.map.keys()].filter((key) => key.startsWith(FRAME_PANEL_KEY_PREFIX)).length, 1);
});

test('closing the panel or its tab forgets it', async () => {
  const { area, framePanels } = panels();
  const closed = await framePanels.open(7, 'http://localhost/page.html', FRAME);
  await framePanels.forget(closed);
  assert.equal(await framePanels.of(closed, 7), null);
  assert.equal(await framePanels.show(closed, FRAME, loading('c1')), false);
  const other = await framePanels.open(8, 'http://localhost/other.html', FRAME);
  await framePanels.forgetTab(8);
  assert.equal(await framePanels.of(other, 8), null);
  assert.deepEqual([...area.map.keys()], []);
});
