import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LOCAL, LOOPBACK, PUBLIC, addressSpaceOf, mayFetchForPage } from '../lib/address-space.js';

test('this computer: localhost and its subdomains, loopback addresses in every spelling', () => {
  for (const url of [
    'http://localhost:8000/a.png', 'http://LOCALHOST./a.png', 'https://api.localhost/a.png',
    'http://127.0.0.1/a.png', 'http://127.9.8.7/', 'http://0x7f.1/', 'http://2130706433/',
    'http://0.0.0.0:631/', 'http://[::1]/', 'http://[::]/', 'http://[::ffff:127.0.0.1]/',
    'file:///home/me/a.png',
  ]) {
    assert.equal(addressSpaceOf(url), LOOPBACK, url);
  }
});

test('the local network: private, link-local and shared ranges, mDNS and intranet names', () => {
  for (const url of [
    'http://10.0.0.1/', 'http://172.16.0.1/', 'http://172.31.255.255/', 'http://192.168.1.1/reboot',
    'http://169.254.169.254/latest/meta-data/', 'http://100.64.0.1/', 'http://[fd00::1]/',
    'http://[fe80::1]/', 'http://[::ffff:192.168.0.1]/', 'http://printer.local/', 'http://nas:5000/',
    'https://wiki.corp.internal/', 'http://router.lan/', 'http://box.home.arpa/',
  ]) {
    assert.equal(addressSpaceOf(url), LOCAL, url);
  }
});

test('the internet: public names and addresses; no host or no address counts as public', () => {
  for (const url of [
    'https://cdn.example.com/a.png', 'http://172.32.0.1/', 'http://192.169.0.1/', 'http://8.8.8.8/',
    'http://[2001:db8::1]/', 'http://100.128.0.1/', 'data:image/png;base64,AAAA', 'about:blank',
    'not a url', '', 'blob:https://site.example/0f6c1d3e-1b2c-4d5e-8f90-123456789abc',
  ]) {
    assert.equal(addressSpaceOf(url), PUBLIC, url);
  }
  assert.equal(addressSpaceOf('blob:http://localhost:3000/0f6c1d3e-1b2c-4d5e-8f90-123456789abc'), LOOPBACK);
});

test('an image is fetched for its page only when it is no further inward than the page', () => {
  const internet = 'https://news.example/story';
  assert.equal(mayFetchForPage('https://cdn.example/a.png', internet), true);
  assert.equal(mayFetchForPage('http://127.0.0.1:8000/a.png', internet), false);
  assert.equal(mayFetchForPage('http://localhost/a.png', internet), false);
  assert.equal(mayFetchForPage('http://192.168.1.1/cam.jpg', internet), false);
  assert.equal(mayFetchForPage('http://192.168.1.1/cam.jpg', 'http://10.0.0.5/intranet'), true);
  assert.equal(mayFetchForPage('http://127.0.0.1/a.png', 'http://10.0.0.5/intranet'), false);
  assert.equal(mayFetchForPage('http://127.0.0.1:9000/a.png', 'http://localhost:3000/'), true);
  assert.equal(mayFetchForPage('https://cdn.example/a.png', 'http://localhost:3000/'), true);
  // A frame whose address says nothing (about:blank, srcdoc) gets what an internet page gets.
  assert.equal(mayFetchForPage('http://localhost/a.png', 'about:srcdoc'), false);
  assert.equal(mayFetchForPage('data:image/png;base64,AAAA', internet), true);
});
