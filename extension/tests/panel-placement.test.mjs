import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN_FRAME_HEIGHT, MIN_FRAME_WIDTH, embeddedFrameNote, panelPlacement } from '../lib/panel-placement.js';

test('an image in the top frame keeps its panel there, whatever the viewport', () => {
  assert.equal(panelPlacement(0, { width: 300, height: 200 }), 'frame');
  assert.equal(panelPlacement(0, { width: 1200, height: 900 }), 'frame');
});

test('a small embedded frame (an ad, an embedded post) sends the panel to the top frame', () => {
  assert.equal(panelPlacement(3, { width: 300, height: 200 }), 'top');
  assert.equal(panelPlacement(3, { width: 728, height: 90 }), 'top', 'a banner: wide but short');
  assert.equal(panelPlacement(3, { width: 160, height: 600 }), 'top', 'a skyscraper: tall but narrow');
});

test('a frame with room for the panel keeps it, next to the image', () => {
  assert.equal(panelPlacement(3, { width: 800, height: 600 }), 'frame');
});

test('the thresholds: 360 px wide and 320 px tall are enough, one pixel less is not', () => {
  assert.equal(MIN_FRAME_WIDTH, 360);
  assert.equal(MIN_FRAME_HEIGHT, 320);
  assert.equal(panelPlacement(5, { width: 360, height: 320 }), 'frame');
  assert.equal(panelPlacement(5, { width: 359, height: 320 }), 'top');
  assert.equal(panelPlacement(5, { width: 360, height: 319 }), 'top');
  assert.equal(panelPlacement(5, { width: 359.5, height: 800 }), 'top', 'fractional sizes (zoom) compare as they are');
});

test('a size that could not be measured keeps the panel in the image frame, as before', () => {
  for (const viewport of [null, undefined, {}, { width: 'wide', height: 200 }, { width: 0, height: 0 },
    { width: Number.NaN, height: 200 }, { width: -1, height: 500 }]) {
    assert.equal(panelPlacement(2, viewport), 'frame', JSON.stringify(viewport));
  }
});

test('the note names the frame’s site, or says it has none', () => {
  const note = embeddedFrameNote('https://ads.example.net');
  assert.match(note, /embedded frame from https:\/\/ads\.example\.net/);
  assert.match(note, /too small/);
  for (const origin of ['null', '', null, undefined, 42, 'about:blank']) {
    const plain = embeddedFrameNote(origin);
    assert.match(plain, /embedded frame/);
    assert.doesNotMatch(plain, /null|undefined|42|about/, String(origin));
  }
});
