// PushgateClient's connection logic: an in-memory fake gateway (injected as
// options.WebSocket) for resume points and token refresh, and real sockets to a port
// nothing listens on for reconnect backoff (Node's built-in WebSocket when present, i.e.
// Node 22+ or `node --experimental-websocket` on Node 20, and the `ws` package).
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { Backoff, PushgateClient, refreshAt } from '../src/index.js';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
/** An unsigned JWT-shaped token expiring at `expMs` (the SDK only reads `exp`). */
const token = (expMs) => `${b64({ alg: 'HS256' })}.${b64({ sub: 'u', exp: expMs / 1000 })}.sig`;

/** `client`, closed when test `t` ends (also when it fails: its timers would keep node up). */
function closing(t, client) {
  t.after(() => client.close());
  return client;
}

/** Resolves when `cond()` holds; rejects after `ms` with `what`. */
function until(cond, what, ms = 5000) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const poll = () => {
      if (cond()) resolve(undefined);
      else if (Date.now() > deadline) reject(new Error(`timed out: ${what}`));
      else setImmediate(poll);
    };
    poll();
  });
}

/** A gateway in memory: stored events, hello / backlog / pong / fetch, server closes. */
class FakeGateway {
  constructor() {
    this.stored = []; // seqs 1..n
    this.sockets = [];
    this.acks = [];
    const gw = this;
    this.WebSocket = class {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        gw.sockets.push(this);
        queueMicrotask(() => gw._accept(this));
      }

      send(text) {
        if (this.readyState === 1) gw._onFrame(this, JSON.parse(text));
      }

      close(code = 1000, reason = '') {
        gw._close(this, code, reason);
      }
    };
  }

  get ws() {
    return this.sockets[this.sockets.length - 1];
  }

  /** `after` of the n-th connection (null if the URL had none). */
  after(n) {
    const v = new URL(this.sockets[n].url).searchParams.get('after');
    return v === null ? null : Number(v);
  }

  store(count) {
    for (let i = 0; i < count; i++) {
      const seq = this.stored.length + 1;
      this.stored.push(seq);
      const ws = this.ws;
      if (ws?.readyState === 1 && ws.hello) this._tx(ws, this._event(seq));
    }
  }

  /** The server ends the current connection. */
  drop(code = 4000, reason = 'server shutting down') {
    this._close(this.ws, code, reason);
  }

  _event(seq) {
    return { type: 'event', seq, id: `e${seq}`, body: { n: seq }, created_at: 0 };
  }

  _tx(ws, frame) {
    queueMicrotask(() => { if (ws.readyState === 1) ws.onmessage?.({ data: JSON.stringify(frame) }); });
  }

  _close(ws, code, reason) {
    if (ws.readyState >= 2) return;
    ws.readyState = 3;
    queueMicrotask(() => ws.onclose?.({ code, reason }));
  }

  _accept(ws) {
    if (ws.readyState !== 0) return;
    ws.readyState = 1;
    ws.onopen?.({});
    if (this.refuse) { // a refused token: the server's close, no hello
      this._close(ws, this.refuse, 'token has expired');
      return;
    }
    const head = this.stored.length;
    const after = new URL(ws.url).searchParams.get('after');
    ws.hello = true;
    this._tx(ws, { type: 'hello', session: `s${this.sockets.length}`, user: 'u', head, unread: 0, v: 1,
      limits: { idle_timeout_s: 100000, fetch_max_limit: 500 } });
    for (const seq of this.stored) if (after !== null && seq > Number(after)) this._tx(ws, this._event(seq));
  }

  _onFrame(ws, f) {
    if (f.type === 'ack') this.acks.push(f.seq);
    else if (f.type === 'ping') this._tx(ws, { type: 'pong', rid: f.rid });
    else if (f.type === 'fetch') {
      const events = this.stored.filter((s) => s > f.after).slice(0, f.limit);
      this._tx(ws, { type: 'reply', rid: f.rid, events: events.map((s) => this._event(s)),
        head: this.stored.length, more: events.length > 0 && events[events.length - 1] < this.stored.length });
    }
  }
}

// -- lastSeq: what the application was handed ----------------------------------------------

test('lastSeq counts only events a for-await consumer was given; the SDK resumes from what it received', async (t) => {
  const gw = new FakeGateway();
  gw.store(50);
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static', after: 0,
    WebSocket: gw.WebSocket, backoff: { base: 10, cap: 20 } }));
  assert.equal(client.lastSeq, 0); // the `after` given
  const it = client[Symbol.asyncIterator]();
  client.start();
  await client.waitConnected(5000);
  const first = await it.next();
  await client.ping({ timeoutMs: 5000 }); // the pong follows the whole backlog: all 50 are in
  assert.equal(first.value.seq, 1);
  assert.equal(client.lastSeq, 1, 'the consumer has seen seq 1 only');
  assert.equal((await it.next()).value.seq, 2);
  assert.equal((await it.next()).value.seq, 3);
  assert.equal(client.lastSeq, 3);

  // a reconnect resumes after the 50 the SDK holds (no event twice), the app gets the rest
  gw.drop();
  await until(() => gw.sockets.length === 2 && client.state === 'connected', 'reconnected');
  assert.equal(gw.after(1), 50);
  assert.equal(client.lastSeq, 3);
  gw.store(2); // 51, 52 live
  const rest = [];
  while (rest[rest.length - 1] !== 52) rest.push((await it.next()).value.seq);
  assert.deepEqual(rest, Array.from({ length: 49 }, (_, i) => i + 4));
  assert.equal(client.lastSeq, 52);
  assert.deepEqual([...new Set(gw.acks)].sort((a, b) => a - b), Array.from({ length: 52 }, (_, i) => i + 1));
  await client.close();
  assert.equal((await it.next()).done, true);
});

test('lastSeq with an event listener is the seq being handled; without after it starts at the head', async (t) => {
  const gw = new FakeGateway();
  gw.store(5); // history before the client: not delivered without `after`
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static', WebSocket: gw.WebSocket }));
  assert.equal(client.lastSeq, null);
  const seen = [];
  client.on('event', (e) => seen.push([e.seq, client.lastSeq]));
  await client.waitConnected(5000);
  assert.equal(client.lastSeq, 5);
  assert.equal(gw.after(0), null);
  gw.store(3);
  await until(() => seen.length === 3, '3 live events');
  assert.deepEqual(seen, [[6, 6], [7, 7], [8, 8]]);
  assert.equal(client.lastSeq, 8);
  await client.close();
});

test('events kept before the first consumer count once it gets them', { timeout: 10000 }, async (t) => {
  const gw = new FakeGateway();
  gw.store(4);
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static', after: 1,
    WebSocket: gw.WebSocket }));
  await client.waitConnected(5000);
  await client.ping({ timeoutMs: 5000 });
  assert.equal(client.lastSeq, 1, 'seqs 2..4 wait for a consumer');
  const it = client[Symbol.asyncIterator]();
  assert.equal((await it.next()).value.seq, 2);
  assert.equal(client.lastSeq, 2);
  await it.return();
  assert.equal(client.lastSeq, 2, 'events left in the iterator were not handed');
  // ...and the next consumer gets them: breaking out of a for-await loses nothing
  gw.store(1); // 5, live
  const again = [];
  for await (const e of client) {
    again.push(e.seq);
    if (e.seq === 5) break;
  }
  assert.deepEqual(again, [3, 4, 5]);
  assert.equal(client.lastSeq, 5);
  await client.close();
});

test('leaving a for-await loop with events queued behind it loses none of them', { timeout: 10000 }, async (t) => {
  const gw = new FakeGateway();
  gw.store(3);
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static', after: 0,
    WebSocket: gw.WebSocket }));
  await client.waitConnected(5000);
  const first = [];
  for await (const e of client) {
    first.push(e.seq);
    gw.store(3); // 4..6 arrive while the loop body runs
    await client.ping({ timeoutMs: 5000 });
    break;
  }
  assert.deepEqual(first, [1]);
  assert.equal(client.lastSeq, 1);
  gw.store(1); // 7
  const second = [];
  try {
    for await (const e of client) {
      second.push(e.seq);
      if (e.seq === 4) throw new Error('the body fails once'); // the loop is left too
    }
  } catch (e) {
    assert.equal(/** @type {Error} */ (e).message, 'the body fails once');
  }
  for await (const e of client) {
    second.push(e.seq);
    if (e.seq === 7) break;
  }
  assert.deepEqual(second, [2, 3, 4, 5, 6, 7]);
  assert.equal(client.lastSeq, 7);
  await client.close();
});

test('for await starts the client by itself, as Python\'s async for does', { timeout: 10000 }, async (t) => {
  const gw = new FakeGateway();
  gw.store(2);
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static', after: 0,
    WebSocket: gw.WebSocket })); // no start()
  const got = [];
  for await (const e of client) {
    got.push(e.seq);
    if (e.seq === 2) break;
  }
  assert.deepEqual(got, [1, 2]);
});

test('a large event announced again by head (a retried send-with-ack) is acked', { timeout: 10000 }, async (t) => {
  const gw = new FakeGateway();
  gw.store(2);
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static', after: 0,
    WebSocket: gw.WebSocket }));
  await client.waitConnected(5000);
  await until(() => gw.acks.includes(2), 'the backlog acked');
  gw.acks.length = 0;
  gw._tx(gw.ws, { type: 'head', head: 1 }); // seq 1 again, as head only: nothing to fetch
  await until(() => gw.acks.includes(1), 'seq 1 acked again');
});

test('a request over the server\'s max_frame_bytes fails alone; the connection stays', { timeout: 10000 }, async (t) => {
  const gw = new FakeGateway();
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static',
    WebSocket: gw.WebSocket }));
  await client.waitConnected(5000);
  client.hello.limits.max_frame_bytes = 1000;
  await assert.rejects(client.send({ x: 'y'.repeat(2000) }, { users: ['b'] }),
    (e) => e.code === 'payload_too_large' && e.field === 'body');
  assert.ok(await client.ping({ timeoutMs: 5000 }) >= 0);
  assert.equal(gw.sockets.length, 1);
});

test('close() ends a client whose token provider never answers', { timeout: 10000 }, async (t) => {
  const client = new PushgateClient({ url: 'http://gw', tokenProvider: () => new Promise(() => {}),
    WebSocket: new FakeGateway().WebSocket });
  client.start();
  await new Promise((r) => setTimeout(r, 50));
  const closed = client.close().then(() => 'closed');
  const late = new Promise((r) => setTimeout(() => r('hung'), 3000));
  assert.equal(await Promise.race([closed, late]), 'closed');
});

test('a server whose store was reset (head below lastSeq) is read again from seq 0', { timeout: 10000 }, async (t) => {
  const gw = new FakeGateway();
  gw.store(5);
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static', after: 0,
    WebSocket: gw.WebSocket, backoff: { base: 10, cap: 20 } }));
  const got = [];
  client.on('event', (e) => got.push(e.seq));
  client.start();
  await until(() => client.lastSeq === 5, 'the first five');
  gw.stored = []; // a new store: its seqs start at 1 again
  gw.store(2);
  gw.drop();
  await until(() => client.lastSeq === 2 && got.length === 7, 'the new store\'s two events');
  assert.deepEqual(got, [1, 2, 3, 4, 5, 1, 2]);
  gw.store(1); // 3, live: not passed over as an old seq
  await until(() => got.length === 8, 'the next live event');
  assert.equal(client.lastSeq, 3);
});

test('the watchdog gives up 3 ping intervals after the last frame, not a tick late', { timeout: 10000 }, async (t) => {
  // checked at the ping ticks only, the silence at the third tick after the last pong
  // (a round trip after its tick) was short of the limit: the link went at the fourth
  const gw = new FakeGateway();
  let pongs = 0;
  let last = 0;
  gw._onFrame = (ws, f) => {
    if (f.type !== 'ping' || f.rid !== undefined || pongs >= 3) return; // silent after three
    pongs += 1;
    setTimeout(() => {
      if (ws.readyState !== 1) return;
      ws.onmessage?.({ data: JSON.stringify({ type: 'pong' }) });
      last = Date.now();
    }, 100);
  };
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static',
    WebSocket: gw.WebSocket, pingIntervalMs: 600, watchdogPings: 3, backoff: { base: 5000, cap: 5000 } }));
  let silent = null;
  client.on('disconnected', (info) => { if (silent === null) silent = Date.now() - last; });
  client.start();
  await until(() => silent !== null, 'the watchdog', 8000);
  assert.equal(client.lastClose.reason, 'watchdog');
  // 3 x 600 ms; a tick late it was 2,300 ms at least (4 ticks less the round trip)
  assert.ok(silent >= 1750 && silent < 2200, `${silent} ms`);
});

// -- token refresh ---------------------------------------------------------------------------

test('a provider of tokens refused as expired is asked with backoff, not in a loop', { timeout: 10000 }, async (t) => {
  const gw = new FakeGateway();
  gw.refuse = 4101; // every token: a stale cache, a skewed clock
  let calls = 0;
  const client = closing(t, new PushgateClient({ url: 'http://gw', WebSocket: gw.WebSocket,
    tokenProvider: () => { calls += 1; return 'stale'; }, backoff: { base: 5, cap: 5000 } }));
  client.start();
  await until(() => calls >= 5, 'five tokens asked for');
  assert.equal(client.lastClose.code, 4101);
  assert.ok(client.backoff.attempt >= calls - 1, `${client.backoff.attempt} attempts, ${calls} calls`);
  assert.equal(client.closed, false); // still trying: a later token may be good
  await client.close();
});

test('lastClose is set before the state listeners hear of the disconnect', { timeout: 10000 }, async (t) => {
  // as in the Python SDK (clients.md): a 'state' listener read the previous connection's
  // close, or null at the first one
  const gw = new FakeGateway();
  gw.refuse = 4003;
  const client = closing(t, new PushgateClient({ url: 'http://gw', token: 'static',
    WebSocket: gw.WebSocket, backoff: { base: 5000, cap: 5000 } }));
  const seen = [];
  client.on('state', (s) => { if (s === 'disconnected') seen.push(client.lastClose?.code ?? null); });
  client.start();
  await until(() => seen.length >= 1, 'the first disconnect');
  assert.deepEqual(seen, [4003]);
});

test('refreshAt: uniform from 1.5 x margin to margin before exp, never before half the life', () => {
  const s = 1000;
  assert.equal(refreshAt(0, 10 * s, 30 * s), 5 * s);
  assert.equal(refreshAt(0, 10 * s, 30 * s, 0.999), 5 * s); // short token: half its life
  assert.equal(refreshAt(0, 1800 * s, 30 * s), 1770 * s);
  assert.equal(refreshAt(0, 1800 * s, 30 * s, 0.5), 1762.5 * s);
  assert.ok(refreshAt(0, 1800 * s, 30 * s, 0.999999) > 1755 * s); // at most 1.5 x margin
  assert.equal(refreshAt(0, 100 * s, 30 * s, 0.5), 62.5 * s); // between 55 and 70 s
  assert.equal(refreshAt(0, 70 * s, 30 * s, 0.999), 35 * s + 0.001 * 5 * s); // lo: half
  assert.equal(refreshAt(5 * s, 4 * s, 30 * s, 0.5), 4 * s); // already expired
});

/** A client on a fake gateway whose provider mints tokens living `lifeMs`; `random` fixed. */
async function refreshingClient(t, lifeMs, random) {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const gw = new FakeGateway();
  const obtained = [];
  const client = closing(t, new PushgateClient({
    url: 'http://gw', after: 0, WebSocket: gw.WebSocket, random,
    tokenProvider: () => { obtained.push(Date.now()); return token(Date.now() + lifeMs); },
  }));
  client.start();
  await until(() => client.state === 'connected', 'connected');
  return { client, gw, obtained };
}

test('a short-lived token is not replaced before half its life, whatever the jitter', async (t) => {
  const { client, gw, obtained } = await refreshingClient(t, 3000, () => 0.99);
  const start = obtained[0];
  t.mock.timers.tick(1500 - 2 - (Date.now() - start)); // half-life (1500 ms) not reached
  await new Promise(setImmediate);
  assert.equal(obtained.length, 1, 'refreshed before half the token life');
  t.mock.timers.tick(500);
  await until(() => obtained.length === 2, 'the refresh');
  await until(() => gw.sockets.length === 2 && client.state === 'connected', 'reconnected with the new token');
  await client.close();
});

test('a long-lived token is replaced at most `margin` early: within [exp - 2 margin, exp - margin]', async (t) => {
  const life = 1800 * 1000;
  // random 0.999: refresh at exp - 30 s - 29.97 s = 1740.03 s after obtaining the token
  const { client, obtained } = await refreshingClient(t, life, () => 0.999);
  t.mock.timers.tick(life - 60000 - 100 - (Date.now() - obtained[0]));
  await new Promise(setImmediate);
  assert.equal(obtained.length, 1, 'refreshed more than 2 margins before exp');
  t.mock.timers.tick(30000);
  await until(() => obtained.length === 2, 'the refresh');
  await client.close();
});

// -- reconnect backoff when nothing listens ----------------------------------------------------

/** A TCP port nothing listens on (bound, then released). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (srv.address());
      srv.close(() => resolve(port));
    });
  });
}

let wsPackage = null;
try {
  wsPackage = (await import('ws')).WebSocket;
} catch { /* not installed: that case is skipped */ }

const BACKOFF = { base: 100, cap: 800 };
const RANDOM = 0.9; // each delay is 0.9 * its window: 90, 180, 360, 720, 720 ms

/** Connect attempts of a client to a refused port: when each started, each disconnect. */
async function refusedAttempts(WS, n) {
  const port = await freePort();
  const started = [];
  class Recording extends WS {
    constructor(...args) {
      started.push(performance.now());
      super(...args);
    }
  }
  const client = new PushgateClient({
    url: `http://127.0.0.1:${port}`, token: token(Date.now() + 3600e3), WebSocket: Recording,
    backoff: BACKOFF, random: () => RANDOM, connectTimeoutMs: 3000,
  });
  const closes = [];
  const attemptsAtClose = [];
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
        `${closes.length} of ${n} attempts failed within 8 s: ${JSON.stringify(closes)}`)), 8000);
      client.on('disconnected', (info) => {
        closes.push(info);
        attemptsAtClose.push(started.length);
        if (closes.length === n) {
          clearTimeout(timer);
          resolve(undefined);
        }
      });
      client.start();
    });
  } finally {
    await client.close();
  }
  return { started, closes, attemptsAtClose };
}

function assertBackoff({ started, closes, attemptsAtClose }, n) {
  // one disconnect per attempt (error and close, where both fire, are handled once)
  assert.deepEqual(attemptsAtClose, Array.from({ length: n }, (_, i) => i + 1));
  assert.equal(closes.length, n);
  for (const c of closes) assert.deepEqual([c.code, c.byClient], [1006, false]);
  const b = new Backoff(BACKOFF);
  for (let k = 0; k < n - 1; k++) {
    const gap = started[k + 1] - started[k];
    const delay = RANDOM * b.window(k);
    // the backoff delay plus the failed connect itself (well under the 3 s connect timeout)
    assert.ok(gap >= delay - 2 && gap <= delay + 600,
      `attempt ${k + 1} -> ${k + 2}: ${gap.toFixed(0)} ms, expected ${delay} ms + a failed connect`);
  }
}

test('refused connects back off with the built-in WebSocket (Node 20: --experimental-websocket)',
  { skip: !globalThis.WebSocket && 'no global WebSocket (run node with --experimental-websocket)' },
  async () => {
    assertBackoff(await refusedAttempts(globalThis.WebSocket, 6), 6);
  });

test('refused connects back off with the ws package', { skip: !wsPackage && 'ws is not installed' },
  async () => {
    assertBackoff(await refusedAttempts(wsPackage, 6), 6);
  });

test('a caching provider does not make the client reconnect with the same token', { timeout: 15000 }, async (t) => {
  // the provider's cache renews its token only 2.5 s before exp: asked early it hands out
  // the token in use, and the client keeps its session (asking again later) instead of
  // reconnecting with it; one reconnect, with the renewed token
  const gw = new FakeGateway();
  const minted = [];
  const cached = () => {
    if (!minted.length || Date.now() >= minted[minted.length - 1].exp - 2500) {
      const exp = Date.now() + 6000;
      minted.push({ exp, token: token(exp) });
    }
    return minted[minted.length - 1].token;
  };
  const client = closing(t, new PushgateClient({ url: 'http://gw', WebSocket: gw.WebSocket,
    tokenProvider: cached, refreshMarginMs: 10000 }));
  client.start();
  await until(() => minted.length >= 2, 'a renewed token', 10000);
  await until(() => gw.sockets.length >= 2, 'the reconnect with it');
  assert.equal(gw.sockets.length, 2);
  assert.ok(gw.ws.url.includes(encodeURIComponent(minted[1].token)) || gw.ws.url.includes(minted[1].token));
  await client.close();
});
