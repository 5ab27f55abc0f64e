// Pure parts of the JS SDK: ordering / dedupe, backoff, close-code rule, URLs, tokens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, Inbox, refreshAt, shouldReconnect, tokenExpiry, wsUrl } from '../src/index.js';

const ev = (seq) => ({ seq, id: null, body: { n: seq }, createdAt: 0, transient: false });
const seqs = (events) => events.map((e) => e.seq);

test('in-order events flow through, duplicates are dropped', () => {
  const box = new Inbox(0);
  assert.deepEqual(seqs(box.add(ev(1))), [1]);
  assert.deepEqual(seqs(box.add(ev(2))), [2]);
  assert.deepEqual(box.add(ev(2)), []);
  assert.equal(box.nextFetch(), null);
});

test('a gap holds later events until a fetch fills it; missing seqs are holes', () => {
  const box = new Inbox(3);
  assert.deepEqual(box.add(ev(6)), []);
  assert.deepEqual(box.nextFetch(), { after: 3 });
  assert.equal(box.nextFetch(), null);
  assert.deepEqual(seqs(box.onFetchReply([ev(5)], 6, false)), [5, 6]); // 4 expired
  assert.equal(box.lastSeq, 6);
});

test('a partial page covers only up to its last event', () => {
  const box = new Inbox(0);
  box.onHead(10);
  box.nextFetch();
  assert.deepEqual(seqs(box.onFetchReply([ev(1), ev(3)], 10, true)), [1, 3]);
  assert.deepEqual(box.nextFetch(), { after: 3 });
});

test('random arrival orders give each seq once, in order', () => {
  let s = 7;
  const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  for (let round = 0; round < 200; round++) {
    const n = 1 + Math.floor(rnd() * 40);
    const arrivals = [];
    for (let q = 1; q <= n; q++) for (let k = 0; k < 1 + Math.floor(rnd() * 2); k++) arrivals.push(ev(q));
    arrivals.sort(() => rnd() - 0.5);
    const box = new Inbox(0);
    const out = [];
    for (const e of arrivals.slice(0, Math.floor(rnd() * arrivals.length))) out.push(...box.add(e));
    box.onHead(n);
    for (let req = box.nextFetch(); req; req = box.nextFetch()) {
      const page = [];
      for (let q = req.after + 1; q <= Math.min(n, req.after + 5); q++) page.push(ev(q));
      out.push(...box.onFetchReply(page, n, page[page.length - 1].seq < n));
    }
    assert.deepEqual(seqs(out), Array.from({ length: n }, (_, i) => i + 1));
  }
});

test('backoff: full jitter within a capped exponential window', () => {
  const b = new Backoff({ base: 500, cap: 4000 });
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => b.window(n)), [500, 1000, 2000, 4000, 4000]);
  const delays = Array.from({ length: 2000 }, () => new Backoff({ base: 500, cap: 4000 }).next());
  assert.ok(Math.min(...delays) < 10 && Math.max(...delays) > 490 && Math.max(...delays) <= 500);
  assert.throws(() => new Backoff({ base: 0 }));
});

test('close codes, urls, token expiry', () => {
  for (const c of [1000, 1001, 1006, 1011, 1012, 4000, 4001, 4099]) assert.ok(shouldReconnect(c), c);
  for (const c of [1009, 4100, 4102, 4103, 4104, 4200]) assert.ok(!shouldReconnect(c), c);
  assert.equal(wsUrl('http://h:1'), 'ws://h:1/v1/ws');
  assert.equal(wsUrl('https://h/base/'), 'wss://h/base/v1/ws');
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  assert.equal(tokenExpiry(`${part({ alg: 'HS256' })}.${part({ exp: 1700000000 })}.x`), 1700000000000);
  assert.equal(tokenExpiry('garbage'), null);
  assert.equal(refreshAt(0, 10000, 30000), 5000);
});
