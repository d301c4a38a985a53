import { test } from 'node:test';
import assert from 'node:assert/strict';

// worker/ modules call chrome.*: a stand-in with just what feedRunsOn asks.
const granted = new Set();
const asked = [];
globalThis.chrome = {
  permissions: {
    contains: async ({ origins }) => {
      asked.push(...origins);
      return origins.every((origin) => granted.has(origin));
    },
  },
};
const { feedRunsOn } = await import('../worker/feed-scripts.js');

const settings = { serverUrl: 'http://127.0.0.1:8000', apiToken: '', feedSites: ['https://news.example'] };

test('feed mode runs on a site switched on whose permission is granted', async () => {
  granted.add('https://news.example/*');
  assert.equal(await feedRunsOn(settings, 'https://news.example/today?id=1'), true);
});

test('feed mode stops on a site whose permission was taken back, though still switched on', async () => {
  granted.clear();
  assert.equal(await feedRunsOn(settings, 'https://news.example/today'), false);
});

test('a site not switched on is not asked about at all', async () => {
  asked.length = 0;
  granted.add('https://other.example/*');
  assert.equal(await feedRunsOn(settings, 'https://other.example/'), false);
  assert.equal(await feedRunsOn(settings, ''), false);
  assert.deepEqual(asked, []);
});
