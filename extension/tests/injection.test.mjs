import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prepareInjection } from '../lib/injection.js';

const liveRuntime = () => ({ id: 'klcfoepkiopccmcpfkgblnjdlhandhho' });

/** An isolated world's global object: `chrome`, a document, and whatever scripts left there. */
function world(left = {}) {
  const removed = [];
  const hosts = [{ remove: () => removed.push('fakescope-overlay') }];
  const scope = {
    chrome: { runtime: liveRuntime() },
    document: { querySelectorAll: () => hosts },
    ...left,
  };
  return { scope, removed };
}

/** The parts the content scripts leave, each recording when it is stopped. */
function parts(stopped) {
  return {
    __fakescopePageImage: { stop: () => stopped.push('page-image') },
    __fakescopeOverlayDom: { STYLE: '', h() {}, uid() {} },
    __fakescopeOverlayForms: { askSection() {}, reportSection() {} },
    __fakescope: { showOverlay() {}, stop: () => stopped.push('overlay') },
    __fakescopeFeed: { flush() {}, stop: () => stopped.push('feed') },
  };
}

test('a fresh frame gets a marker with this instance and its runtime', () => {
  const { scope, removed } = world();
  assert.equal(prepareInjection('instance-b', scope), 'fresh');
  assert.equal(scope.__fakescopeInjection.instance, 'instance-b');
  assert.equal(scope.__fakescopeInjection.runtime, scope.chrome.runtime);
  assert.deepEqual(removed, [], 'nothing of a page is removed in a fresh frame');
});

test("this instance's scripts stay, so the injected files skip a second run", () => {
  const stopped = [];
  const marker = { instance: 'instance-b', runtime: liveRuntime() };
  const { scope, removed } = world({ __fakescopeInjection: marker, ...parts(stopped) });
  assert.equal(prepareInjection('instance-b', scope), 'live');
  assert.equal(scope.__fakescopeInjection, marker);
  assert.ok(scope.__fakescope && scope.__fakescopeFeed && scope.__fakescopePageImage);
  assert.deepEqual(stopped, []);
  assert.deepEqual(removed, []);
});

test('feed scripts registered for a site (no instance id, a live runtime) stay too', () => {
  const stopped = [];
  const marker = { instance: null, runtime: liveRuntime() };
  const { scope } = world({ __fakescopeInjection: marker, ...parts(stopped) });
  assert.equal(prepareInjection('instance-b', scope), 'live');
  assert.ok(scope.__fakescopeFeed);
  assert.deepEqual(stopped, []);
});

test("another instance's scripts are stopped, last injected first, and removed", () => {
  const stopped = [];
  const marker = { instance: 'instance-a', runtime: liveRuntime() };
  const { scope, removed } = world({ __fakescopeInjection: marker, ...parts(stopped) });
  assert.equal(prepareInjection('instance-b', scope), 'stale');
  assert.deepEqual(stopped, ['feed', 'overlay', 'page-image']);
  assert.deepEqual(Object.keys(scope).filter((key) => key.startsWith('__fakescope')), ['__fakescopeInjection']);
  assert.equal(scope.__fakescopeInjection.instance, 'instance-b');
  assert.deepEqual(removed, ['fakescope-overlay'], 'a panel the old scripts left open goes');
});

test('scripts whose extension context is gone are stale, even with the same instance id', () => {
  for (const runtime of [{ id: undefined }, undefined, { get id() { throw new Error('Extension context invalidated.'); } }]) {
    const stopped = [];
    const { scope } = world({ __fakescopeInjection: { instance: 'instance-b', runtime }, ...parts(stopped) });
    assert.equal(prepareInjection('instance-b', scope), 'stale');
    assert.equal(scope.__fakescope, undefined);
    assert.equal(scope.__fakescopeInjection.runtime, scope.chrome.runtime);
  }
});

test('a registered script whose extension context is gone is stale', () => {
  const { scope } = world({ __fakescopeInjection: { instance: null, runtime: { id: undefined } }, ...parts([]) });
  assert.equal(prepareInjection('instance-b', scope), 'stale');
});

test("an older version's parts without any marker are stale", () => {
  const stopped = [];
  const { scope, removed } = world({
    __fakescopePageImage: true,
    __fakescopeOverlayDom: { STYLE: '', h() {}, uid() {} },
    __fakescope: { showOverlay() {} },
    __fakescopeFeed: { flush() {}, stop: () => stopped.push('feed') },
  });
  assert.equal(prepareInjection('instance-b', scope), 'stale');
  assert.deepEqual(stopped, ['feed']);
  assert.equal(scope.__fakescopePageImage, undefined);
  assert.equal(scope.__fakescope, undefined);
  assert.deepEqual(removed, ['fakescope-overlay']);
});

test('a part that cannot be stopped (a dead context refuses) does not keep the others', () => {
  const stopped = [];
  const { scope } = world({
    __fakescopeInjection: { instance: 'instance-a', runtime: liveRuntime() },
    ...parts(stopped),
    __fakescopeFeed: { stop: () => { throw new Error('Extension context invalidated.'); } },
  });
  assert.equal(prepareInjection('instance-b', scope), 'stale');
  assert.deepEqual(stopped, ['overlay', 'page-image']);
  assert.equal(scope.__fakescopeFeed, undefined);
});

test('runs from its own source, as chrome.scripting.executeScript sends it', () => {
  // executeScript serialises `func`: nothing from the module around it may be used.
  const rebuilt = new Function(`return (${prepareInjection.toString()})`)();
  const { scope } = world({ __fakescopeInjection: { instance: 'instance-a', runtime: liveRuntime() } });
  assert.equal(rebuilt('instance-b', scope), 'stale');
  assert.equal(scope.__fakescopeInjection.instance, 'instance-b');
});

test("the page's elements the isolated world finds by name are neither a marker nor parts", () => {
  // The global object finds `<div id="__fakescopeInjection">` and the like through its
  // prototype chain (named access), in the extension's isolated world too: never own properties.
  const pageElements = Object.create({
    __fakescopeInjection: { instance: null, runtime: liveRuntime() },
    __fakescope: { stop() { throw new Error('a page element is not stopped'); } },
  });
  const { scope, removed } = world();
  Object.setPrototypeOf(scope, pageElements);
  assert.equal(prepareInjection('instance-b', scope), 'fresh');
  assert.ok(Object.hasOwn(scope, '__fakescopeInjection'), 'its own marker shadows the element');
  assert.equal(scope.__fakescopeInjection.instance, 'instance-b');
  assert.deepEqual(removed, [], 'nothing of the page is removed in a fresh frame');
});
