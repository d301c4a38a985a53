import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryArea } from '../lib/cache.js';
import {
  FRAME_PANEL_KEY_PREFIX, FramePanels, PANEL_HEIGHT_STEP, followsContent, panelHeight,
} from '../lib/frame-panels.js';

const FRAME = { frameId: 3, origin: 'http://127.0.0.1:8080', note: 'This image is in an embedded frame…' };
// The top frame hosts the panel for the image of FRAME; a large frame hosts its own image's.
const TOP = { frameId: 0, documentId: 'doc-top', origin: 'http://localhost', ancestorOrigins: [] };
const IN_FRAME = { frameId: 5, documentId: 'doc-5', origin: 'http://127.0.0.1:8080', ancestorOrigins: ['http://localhost'] };
const OWN = { frameId: 5, origin: 'http://127.0.0.1:8080', note: null };
const loading = (checkId) => ({ state: 'loading', srcUrl: 'http://127.0.0.1:8080/a.png', checkId });
const result = (checkId) => ({ state: 'result', srcUrl: 'http://127.0.0.1:8080/a.png', checkId, view: { label: 'real' } });

function panels() {
  const area = memoryArea();
  return { area, framePanels: new FramePanels(area) };
}

const recordKeys = (area) => [...area.map.keys()].filter((key) => key.startsWith(FRAME_PANEL_KEY_PREFIX));

test('a panel gets a random id, and its record only what the panel page needs', async () => {
  const { area, framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.notEqual(await framePanels.open(8, 'http://localhost/other.html', TOP, FRAME), id);
  assert.deepEqual(area.map.get(`${FRAME_PANEL_KEY_PREFIX}${id}`), {
    tabId: 7, pageUrl: 'http://localhost/page.html', host: TOP, frame: FRAME, state: null, version: 0,
  });
});

test('each state shown is a new version of the record, with the frame it is about', async () => {
  const { framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  assert.equal(await framePanels.show(id, FRAME, loading('c1')), true);
  const moved = { ...FRAME, origin: 'http://127.0.0.1:9090' };
  assert.equal(await framePanels.show(id, moved, result('c1')), true);
  const record = await framePanels.of(id, 7);
  assert.deepEqual([record.version, record.state.state, record.frame.origin], [2, 'result', 'http://127.0.0.1:9090']);
});

test('a state with no check (a feed badge) is recorded in a new panel', async () => {
  const { framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', IN_FRAME, OWN);
  assert.equal(await framePanels.show(id, OWN, { state: 'hint', srcUrl: 'http://127.0.0.1:8080/a.png', hint: {} }), true);
  assert.equal((await framePanels.of(id, 7)).state.state, 'hint');
});

test('the late outcome of a check the panel no longer shows is not recorded', async () => {
  const { framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  await framePanels.show(id, FRAME, loading('first'));
  await framePanels.show(id, FRAME, loading('again')); // Try again
  assert.equal(await framePanels.show(id, FRAME, result('first')), false);
  assert.equal((await framePanels.of(id, 7)).state.checkId, 'again');
  assert.equal(await framePanels.show(id, FRAME, result('again')), true);
});

test('a panel is given only to its own tab, and never for an unknown id', async () => {
  const { framePanels } = panels();
  const id = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  assert.equal((await framePanels.of(id, 7)).tabId, 7);
  assert.equal(await framePanels.of(id, 8), null);
  assert.equal(await framePanels.of('00000000-0000-4000-8000-000000000000', 7), null);
  assert.equal(await framePanels.of(undefined, 7), null);
  assert.equal(await framePanels.of('', 7), null);
});

test('a new panel in a frame forgets that frame\'s previous one, whose states go nowhere', async () => {
  const { area, framePanels } = panels();
  const first = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  await framePanels.show(first, FRAME, loading('c1'));
  const second = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  assert.equal(await framePanels.of(first, 7), null);
  assert.equal(await framePanels.show(first, FRAME, result('c1')), false);
  assert.notEqual(await framePanels.of(second, 7), null);
  assert.equal(recordKeys(area).length, 1);
});

test('panels hosted by different frames of a tab stay side by side', async () => {
  const { area, framePanels } = panels();
  const inTop = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  const inFrame = await framePanels.open(7, 'http://localhost/page.html', IN_FRAME, OWN);
  assert.equal((await framePanels.of(inTop, 7)).host.frameId, 0);
  assert.equal((await framePanels.of(inFrame, 7)).host.frameId, 5);
  // Closing one keeps the other; the next panel of the frame still replaces it.
  await framePanels.forget(inTop);
  assert.equal(await framePanels.of(inTop, 7), null);
  assert.notEqual(await framePanels.of(inFrame, 7), null);
  const again = await framePanels.open(7, 'http://localhost/page.html', IN_FRAME, OWN);
  assert.equal(await framePanels.of(inFrame, 7), null);
  assert.deepEqual(recordKeys(area), [`${FRAME_PANEL_KEY_PREFIX}${again}`]);
});

test('closing the panels or their tab forgets them', async () => {
  const { area, framePanels } = panels();
  const closed = await framePanels.open(7, 'http://localhost/page.html', TOP, FRAME);
  await framePanels.forget(closed);
  assert.equal(await framePanels.of(closed, 7), null);
  assert.equal(await framePanels.show(closed, FRAME, loading('c1')), false);
  const top = await framePanels.open(8, 'http://localhost/other.html', TOP, FRAME);
  const inFrame = await framePanels.open(8, 'http://localhost/other.html', IN_FRAME, OWN);
  await framePanels.forgetTab(8);
  assert.equal(await framePanels.of(top, 8), null);
  assert.equal(await framePanels.of(inFrame, 8), null);
  assert.deepEqual([...area.map.keys()], []);
});

test('a panel about its host document\'s own image follows its content, in steps of 80 px up to 640', () => {
  assert.deepEqual([0, 1, 77, 78, 79, 118, 158, 159, 400, 637, 638, 5000].map(panelHeight),
    [80, 80, 80, 80, 160, 160, 160, 240, 480, 640, 640, 640]);
  assert.equal(PANEL_HEIGHT_STEP, 80);
  for (const bad of [-1, Number.NaN, Infinity, '120', null, undefined, {}]) assert.equal(panelHeight(bad), null);
  assert.equal(followsContent({ host: TOP, frame: { ...FRAME, frameId: 0 } }), true);
  assert.equal(followsContent({ host: IN_FRAME, frame: OWN }), true);
  assert.equal(followsContent({ host: TOP, frame: FRAME }), false, 'another frame\'s image keeps one size');
  assert.equal(followsContent(null), false);
});
