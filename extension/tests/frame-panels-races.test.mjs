import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryArea } from '../lib/cache.js';
import { FRAME_PANEL_KEY_PREFIX, FramePanels } from '../lib/frame-panels.js';

// Panels opened, shown and closed at once (a fast double-click on a feed badge, Try again while
// a result comes in, a tab closed meanwhile) must not lose each other's writes to the store.

const TOP = { frameId: 0, documentId: 'doc-top', origin: 'http://localhost', ancestorOrigins: [] };
const IN_FRAME = { frameId: 5, documentId: 'doc-5', origin: 'http://127.0.0.1:8080', ancestorOrigins: ['http://localhost'] };
const OWN = (host) => ({ frameId: host.frameId, origin: host.origin, note: null });
const PAGE = 'http://localhost/feed.html';
const loading = (checkId) => ({ state: 'loading', srcUrl: 'http://localhost/a.png', checkId });
const hint = () => ({ state: 'hint', srcUrl: 'http://localhost/a.png', hint: { label: 'fake' } });

/** A deterministic stream of numbers in [0, 1) (mulberry32). */
function random(seed) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A storage area like chrome.storage.session, whose calls take a while, as over IPC: each get,
 * set or remove waits a few event-loop turns (`turns()`) before it reads or writes, so calls made
 * at once interleave, a write landing after a read that started later.
 */
function slowArea(turns) {
  const area = memoryArea();
  const slow = (method) => async (arg) => {
    for (let n = turns(method); n > 0; n -= 1) await turn();
    return area[method](arg);
  };
  return { map: area.map, get: slow('get'), set: slow('set'), remove: slow('remove') };
}

/**
 * Reads are quickest, then removals, then sets: every read made at once sees the store before any
 * write lands, and a set made with a removal lands after it.
 */
const readsFirst = (method) => ({ get: 0, remove: 1, set: 3 })[method];

/**
 * What a consistent store holds: every panel record is listed as its host frame's panel in its
 * tab's list, and every listed panel has its record; no record is left that nothing would forget.
 */
function assertConsistent(area) {
  const records = new Map();
  const listed = new Map();
  for (const [key, value] of area.map) {
    if (key.startsWith(FRAME_PANEL_KEY_PREFIX)) records.set(key.slice(FRAME_PANEL_KEY_PREFIX.length), value);
    else for (const [frameId, id] of Object.entries(value)) listed.set(id, { tab: key, frameId: Number(frameId) });
  }
  for (const [id, record] of records) {
    assert.deepEqual(listed.get(id), { tab: `framePanelOfTab:${record.tabId}`, frameId: record.host.frameId }, `record ${id} is orphaned`);
  }
  for (const id of listed.keys()) assert.ok(records.has(id), `panel ${id} is listed without its record`);
  return records;
}

test('a double click on a badge (two panels opened at once in one frame) leaves one panel, none orphaned', async () => {
  const area = slowArea(readsFirst);
  const framePanels = new FramePanels(area);
  const ids = await Promise.all([framePanels.open(7, PAGE, TOP, OWN(TOP)), framePanels.open(7, PAGE, TOP, OWN(TOP))]);

  const records = assertConsistent(area);
  assert.deepEqual([...records.keys()], [ids[1]], 'the panel opened last is the frame\'s panel');
  assert.equal(await framePanels.of(ids[0], 7), null);
  await framePanels.forgetTab(7);
  assert.deepEqual([...area.map.keys()], [], 'closing the tab forgets everything');
});

test('changes to one store wait for each other whichever FramePanels asks', async () => {
  const area = slowArea(readsFirst);
  const ids = await Promise.all([new FramePanels(area).open(7, PAGE, TOP, OWN(TOP)), new FramePanels(area).open(7, PAGE, TOP, OWN(TOP))]);
  assert.deepEqual([...assertConsistent(area).keys()], [ids[1]]);
});

test('a change that fails does not stop the ones asked for after it', async () => {
  const area = slowArea(readsFirst);
  const framePanels = new FramePanels(area);
  const set = area.set;
  area.set = async () => { area.set = set; throw new Error('Session storage quota bytes exceeded.'); };
  const [failed, opened] = await Promise.allSettled([framePanels.open(7, PAGE, TOP, OWN(TOP)), framePanels.open(7, PAGE, TOP, OWN(TOP))]);
  assert.equal(failed.status, 'rejected');
  assert.deepEqual([...assertConsistent(area).keys()], [opened.value]);
});

test('panels opened at once in two frames of a tab are both kept', async () => {
  const area = slowArea(readsFirst);
  const framePanels = new FramePanels(area);
  const [inTop, inFrame] = await Promise.all([
    framePanels.open(7, PAGE, TOP, OWN(TOP)), framePanels.open(7, PAGE, IN_FRAME, OWN(IN_FRAME)),
  ]);

  assert.deepEqual([...assertConsistent(area).keys()].sort(), [inTop, inFrame].sort());
  assert.equal((await framePanels.of(inTop, 7)).host.frameId, 0);
  assert.equal((await framePanels.of(inFrame, 7)).host.frameId, 5);
});

test('states shown at once each make a version of their own, and the one asked for last is kept', async () => {
  const area = slowArea(readsFirst);
  const framePanels = new FramePanels(area);
  const id = await framePanels.open(7, PAGE, TOP, OWN(TOP));

  const shown = await Promise.all([
    framePanels.show(id, OWN(TOP), loading('first')), framePanels.show(id, OWN(TOP), loading('again')),
  ]);

  assert.deepEqual(shown, [true, true]);
  const record = await framePanels.of(id, 7);
  assert.equal(record.version, 2, 'no state was lost');
  assert.equal(record.state.checkId, 'again');
});

test('a state shown while its panel is replaced or closed does not bring the panel back', async () => {
  const area = slowArea(readsFirst);
  const framePanels = new FramePanels(area);
  const replaced = await framePanels.open(7, PAGE, TOP, OWN(TOP));
  const [shown, next] = await Promise.all([
    framePanels.show(replaced, OWN(TOP), hint()), framePanels.open(7, PAGE, TOP, OWN(TOP)),
  ]);
  assert.equal(shown, true, 'shown before it was replaced');
  assert.deepEqual([...assertConsistent(area).keys()], [next]);

  const closed = next;
  await Promise.all([framePanels.forget(closed), framePanels.show(closed, OWN(TOP), hint())]);
  assert.deepEqual([...area.map.keys()], [], 'closed, and nothing left behind');
});

test('many panels opened, shown and closed at once in any order leave a consistent store', async () => {
  for (let seed = 1; seed <= 20; seed += 1) {
    const next = random(seed);
    const area = slowArea(() => Math.floor(next() * 4));
    const framePanels = new FramePanels(area);
    const hosts = [TOP, IN_FRAME];
    const opened = [];
    const calls = [];
    for (let n = 0; n < 30; n += 1) {
      const tabId = 7 + Math.floor(next() * 2);
      const host = hosts[Math.floor(next() * hosts.length)];
      const pick = next();
      if (pick < 0.4 || !opened.length) {
        calls.push(framePanels.open(tabId, PAGE, host, OWN(host)).then((id) => opened.push(id)));
      } else if (pick < 0.8) {
        calls.push(framePanels.show(opened[Math.floor(next() * opened.length)], OWN(host), loading(`c${n}`)));
      } else if (pick < 0.95) {
        calls.push(framePanels.forget(opened[Math.floor(next() * opened.length)]));
      } else {
        calls.push(framePanels.forgetTab(tabId));
      }
    }
    await Promise.all(calls);

    assertConsistent(area);
    await Promise.all([framePanels.forgetTab(7), framePanels.forgetTab(8)]);
    assert.deepEqual([...area.map.keys()], [], `seed ${seed}: closing the tabs forgets everything`);
  }
});
