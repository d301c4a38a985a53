import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryArea } from '../lib/cache.js';
import { prepareInjection } from '../lib/injection.js';

// worker/ modules call chrome.*: a stand-in with what injecting asks for.
const injected = [];
globalThis.chrome = {
  storage: { session: memoryArea() },
  scripting: { executeScript: async (injection) => { injected.push(injection); return []; } },
};
const { CHECK_SCRIPTS, extensionInstance, injectContentScripts } = await import('../worker/content-scripts.js');

test('the instance id stays the same while the extension runs, across worker restarts', async () => {
  const id = await extensionInstance();
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(await extensionInstance(), id);
  // A restarted worker loads its modules afresh; storage.session is still there.
  const restarted = await import('../worker/content-scripts.js?worker-restart');
  assert.equal(await restarted.extensionInstance(), id);
});

test('an update or reload (storage.session emptied) makes a new instance id', async () => {
  const before = await extensionInstance();
  globalThis.chrome.storage.session = memoryArea();
  const updated = await import('../worker/content-scripts.js?after-update');
  assert.notEqual(await updated.extensionInstance(), before);
});

test('the frame is prepared with the instance id before the files go in', async () => {
  injected.length = 0;
  const target = { tabId: 7, frameIds: [0] };
  await injectContentScripts(target, CHECK_SCRIPTS);
  assert.equal(injected.length, 2);
  assert.deepEqual(injected[0], { target, func: prepareInjection, args: [await extensionInstance()] });
  assert.deepEqual(injected[1], { target, files: CHECK_SCRIPTS });
});
