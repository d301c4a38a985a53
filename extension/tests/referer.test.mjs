import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RefererRules, refererFor, refererRule, requestUrlOf } from '../lib/referer.js';

test('the Referer is what the page’s <img> sends under the default referrer policy', () => {
  const page = 'https://user:pw@news.example/story?id=7#comments';
  assert.equal(refererFor('https://news.example/img/a.png', page), 'https://news.example/story?id=7');
  assert.equal(refererFor('https://cdn.example/a.png', page), 'https://news.example/');
  assert.equal(refererFor('http://news.example/a.png', page), null, 'none from https to http');
  assert.equal(refererFor('https://cdn.example/a.png', 'http://plain.example/p'), 'http://plain.example/');
  assert.equal(refererFor('https://cdn.example/a.png', 'file:///home/me/page.html'), null);
  assert.equal(refererFor('https://cdn.example/a.png', null), null);
  assert.equal(refererFor('data:image/png;base64,AAAA', 'https://news.example/'), null);
});

test('request addresses: http(s) without the fragment, none a URL filter would misread', () => {
  assert.equal(requestUrlOf('https://cdn.example/a.png?w=2#frag'), 'https://cdn.example/a.png?w=2');
  assert.equal(requestUrlOf('https://cdn.example/ä.png'), 'https://cdn.example/%C3%A4.png');
  assert.equal(requestUrlOf('https://cdn.example/a*b.png'), null);
  assert.equal(requestUrlOf('https://cdn.example/a|b.png'), null);
  assert.equal(requestUrlOf('blob:https://news.example/1234'), null);
  assert.equal(requestUrlOf('not a url'), null);
});

test('the rule sets Referer on one address, for the extension’s worker only', () => {
  const rule = refererRule({ id: 7, requestUrl: 'https://cdn.example/a.png', referer: 'https://news.example/', extensionId: 'abc' });
  assert.deepEqual(rule, {
    id: 7,
    priority: 1,
    action: { type: 'modifyHeaders', requestHeaders: [{ header: 'referer', operation: 'set', value: 'https://news.example/' }] },
    condition: {
      urlFilter: '|https://cdn.example/a.png|',
      isUrlFilterCaseSensitive: true,
      initiatorDomains: ['abc'],
      tabIds: [-1],
      resourceTypes: ['xmlhttprequest'],
    },
  });
});

/** A fake chrome.declarativeNetRequest that keeps its session rules and checks ids are unique. */
function fakeDnr(initial = []) {
  const rules = new Map(initial.map((rule) => [rule.id, rule]));
  const log = [];
  return {
    rules,
    log,
    failRemoval: false,
    async getSessionRules() { return [...rules.values()]; },
    async updateSessionRules({ addRules = [], removeRuleIds = [] }) {
      await null;
      if (removeRuleIds.length && this.failRemoval) throw new Error('removal failed');
      for (const id of removeRuleIds) rules.delete(id);
      for (const rule of addRules) {
        if (rules.has(rule.id)) throw new Error(`Rule with id ${rule.id} does not have a unique ID.`);
        rules.set(rule.id, rule);
      }
      log.push({ add: addRules.map((r) => r.id), remove: removeRuleIds });
    },
  };
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

test('a rule exists only while its request is sent, also when the request fails', async () => {
  const dnr = fakeDnr();
  const rules = new RefererRules(dnr, 'ext');
  let seen;
  const answer = await rules.send('https://cdn.example/a.png', 'https://news.example/', async () => {
    seen = [...dnr.rules.values()].map((r) => r.action.requestHeaders[0].value);
    return 'response';
  });
  assert.equal(answer, 'response');
  assert.deepEqual(seen, ['https://news.example/']);
  assert.equal(dnr.rules.size, 0);

  await assert.rejects(
    rules.send('https://cdn.example/a.png', 'https://news.example/', async () => { throw new TypeError('network'); }),
    /network/,
  );
  assert.equal(dnr.rules.size, 0, 'removed after a failed request too');
});

test('rules a stopped worker left behind are removed before the first request', async () => {
  const dnr = fakeDnr([{ id: 1 }, { id: 2 }]);
  const rules = new RefererRules(dnr, 'ext', { firstId: 1 });
  await rules.send('https://cdn.example/a.png', null, async () => {
    assert.equal(dnr.rules.size, 0);
  });
  assert.deepEqual(dnr.log[0], { add: [], remove: [1, 2] });
});

test('requests for one address go one at a time; other addresses do not wait', async () => {
  const dnr = fakeDnr();
  const rules = new RefererRules(dnr, 'ext');
  const first = deferred();
  const order = [];
  const a1 = rules.send('https://cdn.example/a.png', 'https://one.example/', async () => {
    order.push('a1 sent');
    await first.promise;
    return 'a1';
  });
  // A plain request for the same address must not go out while a1's rule exists.
  const a2 = rules.send('https://cdn.example/a.png', null, async () => {
    order.push(`a2 sent with ${dnr.rules.size} rules`);
    return 'a2';
  });
  const b = rules.send('https://cdn.example/b.png', 'https://two.example/', async () => {
    order.push(`b sent with ${dnr.rules.size} rules`);
    return 'b';
  });
  assert.equal(await b, 'b');
  assert.deepEqual(order, ['a1 sent', 'b sent with 2 rules']);
  first.resolve();
  assert.deepEqual(await Promise.all([a1, a2]), ['a1', 'a2']);
  assert.deepEqual(order, ['a1 sent', 'b sent with 2 rules', 'a2 sent with 0 rules']);
  const ids = dnr.log.flatMap((entry) => entry.add);
  assert.equal(new Set(ids).size, ids.length, 'every rule had its own id');
  assert.equal(dnr.rules.size, 0);
  assert.equal(rules.byUrl.size, 0, 'nothing is kept once every request was sent');
});

test('an id whose rule could not be removed is never used again', async () => {
  const dnr = fakeDnr();
  const rules = new RefererRules(dnr, 'ext', { firstId: 5 });
  const warn = console.warn;
  console.warn = () => {};
  try {
    dnr.failRemoval = true;
    await rules.send('https://cdn.example/a.png', 'https://one.example/', async () => 'ok');
  } finally {
    console.warn = warn;
  }
  dnr.failRemoval = false;
  assert.deepEqual([...dnr.rules.keys()], [5]);
  await rules.send('https://cdn.example/b.png', 'https://one.example/', async () => 'ok');
  assert.deepEqual(dnr.log.at(-1), { add: [], remove: [6] });
  assert.deepEqual([...dnr.rules.keys()], [5]);
});
