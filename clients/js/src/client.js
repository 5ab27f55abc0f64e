// @ts-check
/**
 * The pushgate browser / Node client: one websocket, kept alive for the application.
 * Same behaviour as the Python SDK (docs/protocol.md, "How a client should behave"):
 *
 * - connects with a token, or a token provider asked again shortly before the token
 *   expires (`refreshAt`: never before half its life) and whenever the server closes
 *   with 4101;
 * - reconnects after anything but a "do not reconnect" close, waiting
 *   random(0, min(cap, base * 2 ** attempt)) (exponential backoff, full jitter); the
 *   attempt count resets once a connection stayed up `stableAfterMs`;
 * - stops on 4100 (after one retry with a fresh token), 4102 (kicked), 4103, 4104,
 *   other 41xx-49xx codes and 1009, and reports a StoppedError (`error` event, the async
 *   iterator throws it, `closed` rejects with it);
 * - resumes with `after=<the last seq it received>` and fetches every gap: the
 *   application gets each stored event exactly once, in seq order; transient events
 *   (seq null) pass through. `lastSeq` is what the application was handed (events held
 *   for an iterator do not count): persist it, pass it back as `after`;
 * - acks every stored event it receives (`autoAck`);
 * - sends a `ping` frame every idle_timeout_s / 3 and treats a link that brought nothing
 *   for `watchdogPings` ping intervals as dead.
 */

import { Backoff } from './backoff.js';
import {
  ClientClosedError, ConnectionLostError, RequestError, RequestTimeoutError,
  shouldReconnect, stoppedError,
} from './errors.js';
import { Inbox } from './inbox.js';

/**
 * @typedef {{seq: number|null, id: string|null, body: any, createdAt: number, transient: boolean}} PushEvent
 * @typedef {{session: string, user: string, head: number, unread: number, v: number,
 *   limits: {idle_timeout_s: number, ping_interval_s: number, fetch_max_limit: number,
 *   max_frame_bytes: number, inline_event_max_bytes: number, max_body_bytes: number,
 *   max_sessions_per_user: number}}} Hello
 * @typedef {{code: number, reason: string, byClient: boolean}} CloseInfo
 * @typedef {() => (string | Promise<string>)} TokenProvider
 * @typedef {{
 *   url: string, token?: string, tokenProvider?: TokenProvider, after?: number|null,
 *   autoAck?: boolean, backoff?: {base?: number, cap?: number}, stableAfterMs?: number,
 *   connectTimeoutMs?: number, requestTimeoutMs?: number, refreshMarginMs?: number|null,
 *   pingIntervalMs?: number|null, watchdogPings?: number, fetchLimit?: number,
 *   WebSocket?: any, random?: () => number, reconnectOnOnline?: boolean,
 * }} ClientOptions
 */

export const State = Object.freeze({
  DISCONNECTED: 'disconnected',
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
});

const SYNC = '_sync'; // rid of the ping whose pong marks the end of the backlog
const FETCH = '_fetch';
const OPEN = 1; // WebSocket.OPEN

/** `http(s)://host[/prefix]` or `ws(s)://...` → the `/v1/ws` endpoint URL.
 * @param {string} url */
export function wsUrl(url) {
  const u = new URL(url, globalThis.location?.href);
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[u.protocol];
  if (!scheme) throw new TypeError(`url must be http(s):// or ws(s)://: ${url}`);
  let path = u.pathname.replace(/\/+$/, '');
  if (!path.endsWith('/v1/ws')) path += '/v1/ws';
  return `${scheme}//${u.host}${path}`;
}

/** `exp` of a JWT in ms since the epoch (not verified), or null.
 * @param {string} token */
export function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4))).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to replace a token (the Python SDK's `refresh_window`, docs/clients.md): in the
 * window from 1.5 x `margin` to `margin` ms before expiry, both ends moved up to half
 * the token's life, at the point `random` in [0, 1) picks (0: the window's end, `margin`
 * before expiry). The spread keeps clients whose tokens were minted together from
 * refreshing together; a token that lives 2 x `margin` or less is replaced at half its
 * life.
 * @param {number} obtainedAt @param {number} expiresAt @param {number} margin
 * @param {number} [random]
 */
export function refreshAt(obtainedAt, expiresAt, margin, random = 0) {
  const life = expiresAt - obtainedAt;
  if (life <= 0) return expiresAt;
  const half = obtainedAt + life / 2;
  const lo = Math.max(half, expiresAt - 1.5 * margin);
  const hi = Math.max(half, expiresAt - margin);
  return hi - random * (hi - lo);
}

/** @param {any} d @returns {PushEvent} */
function toEvent(d) {
  const seq = Number.isInteger(d.seq) ? d.seq : null;
  return { seq, id: d.id ?? null, body: d.body, createdAt: Number(d.created_at ?? 0),
    transient: seq === null };
}

const now = () => Date.now();
/** How often a token refresh asks again when the provider returns the token in use. */
const SAME_TOKEN_TRIES = 4;

export class PushgateClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    const o = options;
    if (!o || !o.url) throw new TypeError('url is required');
    if (!o.token && !o.tokenProvider) throw new TypeError('give token or tokenProvider');
    this.url = wsUrl(o.url);
    this.autoAck = o.autoAck ?? true;
    this.stableAfterMs = o.stableAfterMs ?? 10000;
    this.connectTimeoutMs = o.connectTimeoutMs ?? 10000;
    this.requestTimeoutMs = o.requestTimeoutMs ?? 10000;
    this.refreshMarginMs = o.refreshMarginMs === undefined ? 30000 : o.refreshMarginMs;
    this.pingIntervalMs = o.pingIntervalMs ?? null;
    this.watchdogPings = o.watchdogPings ?? 3;
    this.fetchLimit = o.fetchLimit ?? 500;
    this.reconnectOnOnline = o.reconnectOnOnline ?? true;
    this.backoff = new Backoff({ ...o.backoff, random: o.random });
    this._random = o.random ?? Math.random;
    this._WS = o.WebSocket ?? globalThis.WebSocket;
    if (!this._WS) {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket '
        + '(Node 20: run with --experimental-websocket or use the "ws" package)');
    }
    this._token = o.token ?? null;
    this._tokenObtained = now();
    this._provider = o.tokenProvider ?? null;
    /** @type {Inbox|null} the SDK's own cursor: what it resumes from (`after`) */
    this._inbox = o.after == null ? null : new Inbox(o.after);
    /** @type {number|null} seq of the last stored event handed to the application */
    this._handedSeq = o.after ?? null;
    /** the server's store resets seen (its seqs start again): events received before
     * the last one no longer move lastSeq when they are handed */
    this._resets = 0;
    /** @type {WeakMap<object, number>} each event's `_resets` when it was received */
    this._receivedAt = new WeakMap();

    /** @type {string} */
    this.state = State.DISCONNECTED;
    /** @type {Hello|null} */
    this.hello = null;
    /** @type {CloseInfo|null} */
    this.lastClose = null;
    this.connects = 0; // connections that reached CONNECTED
    this.fetches = 0; // gap fetches sent (diagnostics)
    this.attemptedAt = 0; // Date.now() of the latest connection attempt
    /** @type {import('./errors.js').StoppedError|null} */
    this.error = null;
    this.closed = false;

    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Set<{push: (e: PushEvent) => void, end: () => void}>} */
    this._iterators = new Set();
    /** @type {PushEvent[]} events that came before anyone listened */
    this._early = [];
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    this._rid = 0;
    /** @type {any} */
    this._conn = null; // {ws, done, cause, timers, kicked}
    /** @type {Promise<void>|null} */
    this._running = null;
    this._closing = false;
    /** @type {{timer: any, resolve: () => void}|null} */
    this._sleeping = null;
    /** @type {(() => void)|null} ends a wait for the token provider (close()) */
    this._wakeClosed = null;
    this._onOnline = () => this._wake();
    /** @type {Promise<void>} resolves when the client stops; rejects with its StoppedError */
    this.closedPromise = new Promise((resolve, reject) => {
      this._resolveClosed = resolve;
      this._rejectClosed = reject;
    });
    this.closedPromise.catch(() => {}); // observed through `error` / iterators too
  }

  // -- events ------------------------------------------------------------------------------

  /**
   * Listen: 'event' (PushEvent), 'state' (state), 'connected' (Hello),
   * 'disconnected' (CloseInfo), 'error' (StoppedError: the client stopped), 'closed'.
   * @param {string} type @param {Function} fn
   */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    /** @type {Set<Function>} */ (this._listeners.get(type)).add(fn);
    if (type === 'event') this._flushEarly();
    return this;
  }

  /** @param {string} type @param {Function} fn */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
    return this;
  }

  /** @param {string} type @param {...any} args */
  _emit(type, ...args) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(...args);
      } catch (e) {
        console.error(`pushgate: '${type}' listener failed`, e);
      }
    }
  }

  /** `e` reaches the application (an 'event' listener, or an iterator yields it).
   * @param {PushEvent} e */
  _handed(e) {
    if (e.seq === null || this._receivedAt.get(e) !== this._resets) return;
    if (this._handedSeq === null || e.seq > this._handedSeq) this._handedSeq = e.seq;
  }

  /** @param {PushEvent} e */
  _deliver(e) {
    this._receivedAt.set(e, this._resets);
    if (!this._listeners.get('event')?.size && this._iterators.size === 0) {
      this._early.push(e); // nobody listens yet: keep it for the first consumer
      return;
    }
    if (this._listeners.get('event')?.size) this._handed(e);
    this._emit('event', e);
    for (const it of this._iterators) it.push(e);
  }

  /** Events an iterator ended without taking: kept for the next consumer, unless
   * another one (which got them too) is still there.
   * @param {PushEvent[]} events */
  _keepEarly(events) {
    if (events.length && !this._listeners.get('event')?.size && this._iterators.size === 0) {
      this._early = events.concat(this._early);
    }
  }

  _flushEarly() {
    const early = this._early;
    this._early = [];
    for (const e of early) this._deliver(e);
  }

  /** `for await (const event of client)`: every stored event once, in seq order. Ends
   * when the client is closed; throws the StoppedError if it stopped by itself.
   * @returns {AsyncIterator<PushEvent>} */
  [Symbol.asyncIterator]() {
    /** @type {PushEvent[]} */
    const queue = [];
    /** @type {{resolve: Function, reject: Function}|null} */
    let waiter = null;
    let ended = false;
    const client = this;
    const finish = () => {
      if (!waiter) return;
      const w = waiter;
      waiter = null;
      if (client.error) w.reject(client.error);
      else w.resolve({ value: undefined, done: true });
    };
    const sub = {
      push(/** @type {PushEvent} */ e) {
        if (waiter) {
          const w = waiter;
          waiter = null;
          client._handed(e);
          w.resolve({ value: e, done: false });
        } else queue.push(e); // not handed yet: lastSeq waits until next() yields it
      },
      end() {
        ended = true;
        finish();
      },
    };
    this._iterators.add(sub);
    if (this.closed) sub.end();
    this._flushEarly();
    if (!this.closed) this.start(); // like `async for` in Python: iterating starts the client
    return {
      next() {
        if (queue.length) {
          const e = /** @type {PushEvent} */ (queue.shift());
          client._handed(e);
          return Promise.resolve({ value: e, done: false });
        }
        if (ended) {
          return client.error ? Promise.reject(client.error)
            : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => { waiter = { resolve, reject }; });
      },
      return() { // `break` or an exception in a for-await body: what it did not take
        client._iterators.delete(sub); // goes to the next consumer (the SDK will not
        ended = true; // fetch it again: it resumes from what it received)
        client._keepEarly(queue.splice(0));
        return Promise.resolve({ value: undefined, done: true });
      },
      // @ts-ignore - iterable iterator
      [Symbol.asyncIterator]() { return this; },
    };
  }

  // -- lifecycle ---------------------------------------------------------------------------

  /** The resume point: seq of the last stored event handed to the application (given to
   * an 'event' listener or yielded by an iterator); `after`, or the head the first `hello`
   * reported, until one is. Events the SDK received but still holds for an iterator are
   * not counted. (The SDK itself resumes from what it received: those are kept.) */
  get lastSeq() {
    return this._handedSeq;
  }

  get session() {
    return this.state === State.CONNECTED && this.hello ? this.hello.session : null;
  }

  /** Start connecting in the background (idempotent). Attach listeners first. */
  start() {
    if (!this._running) {
      globalThis.addEventListener?.('online', this._onOnline);
      this._running = this._run();
    }
    return this;
  }

  /** Close the connection and stop. */
  async close() {
    this._closing = true;
    if (this._conn) this._endConnection(this._conn, 'close', 1000, 'client closed');
    this._wake();
    this._wakeClosed?.();
    this._finish(null);
    if (this._running) await this._running;
  }

  /** @param {string} state @param {number} [timeoutMs] */
  waitState(state, timeoutMs) {
    if (this.state === state) return Promise.resolve();
    return new Promise((resolve, reject) => {
      /** @type {any} */
      let timer = null;
      const done = (/** @type {any} */ err) => {
        this.off('state', onState);
        this.off('closed', onClosed);
        clearTimeout(timer);
        if (err) reject(err); else resolve(undefined);
      };
      const onState = (/** @type {string} */ s) => { if (s === state) done(null); };
      const onClosed = () => done(this.error ?? new ClientClosedError('client is closed'));
      this.on('state', onState);
      this.on('closed', onClosed);
      if (this.closed) onClosed();
      if (timeoutMs != null) {
        timer = setTimeout(() => done(new RequestTimeoutError(`not ${state} within ${timeoutMs} ms`)),
          timeoutMs);
      }
    });
  }

  /** @param {number} [timeoutMs] */
  waitConnected(timeoutMs) {
    this.start();
    return this.waitState(State.CONNECTED, timeoutMs);
  }

  /** @param {string} state */
  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this._emit('state', state);
  }

  /** @param {import('./errors.js').StoppedError|null} error */
  _finish(error) {
    if (this.closed) return;
    this.closed = true;
    this.error = error;
    this._closing = true;
    globalThis.removeEventListener?.('online', this._onOnline);
    this._setState(State.DISCONNECTED);
    this._failPending(error ?? new ClientClosedError('client closed'));
    for (const it of this._iterators) it.end();
    if (error) {
      this._emit('error', error);
      this._rejectClosed(error);
    } else {
      this._resolveClosed();
    }
    this._emit('closed', error);
  }

  /** @param {Error} err */
  _failPending(err) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  /** @param {number} ms */
  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this._sleeping = null; resolve(undefined); }, ms);
      this._sleeping = { timer, resolve: () => { clearTimeout(timer); this._sleeping = null; resolve(undefined); } };
    });
  }

  /** Cut a backoff wait short (the browser came back online, or close()). */
  _wake() {
    if (!this._sleeping) return;
    if (this._closing) {
      this._sleeping.resolve();
      return;
    }
    if (!this.reconnectOnOnline) return;
    const s = this._sleeping;
    clearTimeout(s.timer);
    s.timer = setTimeout(s.resolve, this.backoff.jitter());
  }

  /** @param {boolean} force @returns {Promise<[string, boolean]>} */
  async _tokenForConnect(force) {
    if (!this._provider) return [/** @type {string} */ (this._token), false];
    const exp = this._token ? tokenExpiry(this._token) : null;
    const t = now();
    const stale = exp != null && (exp <= t || (this.refreshMarginMs != null
      && t >= refreshAt(this._tokenObtained, exp, this.refreshMarginMs)));
    if (force || !this._token || stale) {
      await this._refreshToken();
      return [/** @type {string} */ (this._token), true];
    }
    return [this._token, false];
  }

  async _refreshToken() {
    const token = await /** @type {TokenProvider} */ (this._provider)();
    if (typeof token !== 'string' || !token) throw new TypeError('the token provider must return a non-empty string');
    if (token !== this._token) { // (a provider's cache may hand the same one out again)
      this._token = token;
      this._tokenObtained = now();
    }
  }

  async _run() {
    let forceToken = false;
    let delay = 0;
    while (!this._closing) {
      if (delay > 0) {
        this._setState(State.DISCONNECTED);
        await this._sleep(delay);
        if (this._closing) break;
      }
      this._setState(State.CONNECTING);
      let token;
      let fresh;
      try {
        // close() must not wait for a provider that never settles
        const closed = new Promise((resolve) => { this._wakeClosed = () => resolve(null); });
        const got = await Promise.race([this._tokenForConnect(forceToken), closed]);
        this._wakeClosed = null;
        if (!got) break;
        [token, fresh] = got;
        forceToken = false;
      } catch (e) {
        console.warn('pushgate: token provider failed', e);
        delay = this.backoff.next();
        continue;
      }
      if (this._closing) break;
      this.attemptedAt = now();
      const conn = this._open(token);
      const info = await conn.done;
      if (this._closing) break;
      if (conn.helloAt && now() - conn.helloAt >= this.stableAfterMs) this.backoff.reset();
      this._emit('disconnected', info);
      if (conn.cause === 'refresh') {
        delay = 0; // the new token is ready
        continue;
      }
      if (conn.kicked) {
        this._finish(stoppedError(4102, info.reason, conn.kicked));
        return;
      }
      if (info.code === 4101 && this._provider) {
        // expired: refresh, then reconnect — at once (within the first window) after a
        // stable session; a new token refused again backs off like a failed connect
        forceToken = true;
        delay = this.backoff.next();
        continue;
      }
      if (info.code === 4100 && this._provider && !fresh) {
        forceToken = true;
        delay = this.backoff.jitter();
        continue;
      }
      if (!shouldReconnect(info.code) || info.code === 4100 || info.code === 4101) {
        this._finish(stoppedError(info.code, info.reason));
        return;
      }
      delay = this.backoff.next();
    }
    this._finish(null);
  }

  /** Open one connection; `conn.done` resolves with its CloseInfo when it ends.
   * @param {string} token */
  _open(token) {
    let url = `${this.url}?token=${encodeURIComponent(token)}`;
    if (this._inbox) url += `&after=${this._inbox.lastSeq}`;
    /** @type {any} */
    const conn = { ws: null, cause: null, kicked: null, helloAt: 0, timers: [], watchdog: null,
      lastRx: now() };
    conn.done = new Promise((resolve) => { conn.resolve = resolve; });
    this._conn = conn;
    let ws;
    try {
      ws = new this._WS(url);
    } catch (e) {
      this._endConnection(conn, 'error', 1006, String(e));
      return conn;
    }
    conn.ws = ws;
    conn.timers.push(setTimeout(() => {
      if (!conn.helloAt) this._endConnection(conn, 'timeout', 1006, 'timeout');
    }, this.connectTimeoutMs));
    ws.onmessage = (/** @type {{data: any}} */ m) => {
      conn.lastRx = now();
      let frame;
      try {
        frame = JSON.parse(typeof m.data === 'string' ? m.data : String(m.data));
      } catch {
        return;
      }
      if (frame && typeof frame === 'object') {
        try {
          this._onFrame(conn, frame);
        } catch (e) {
          console.warn('pushgate: ignoring a malformed frame', frame.type, e);
        }
      }
    };
    ws.onopen = () => { conn.opened = true; };
    ws.onclose = (/** @type {{code: number, reason: string}} */ e) => {
      this._endConnection(conn, null, e.code || 1006, e.reason || '');
    };
    ws.onerror = (/** @type {any} */ e) => {
      // Browsers and `ws` follow an error with a close event (handled once: the first one
      // ends `conn`). Node 20's built-in WebSocket fires only `error` when the connection
      // is refused, so a connect that fails before `open` ends here, not at the connect
      // timeout. After `open` the close event carries the code (the watchdog backs it up).
      if (!conn.opened) this._endConnection(conn, null, 1006, e?.message || 'connection failed');
    };
    return conn;
  }

  /** End `conn` (idempotent). `cause` is set when this client ends it.
   * @param {any} conn @param {string|null} cause @param {number} code @param {string} reason */
  _endConnection(conn, cause, code, reason) {
    if (conn.ended) return;
    conn.ended = true;
    if (cause) conn.cause = cause;
    for (const t of conn.timers) { clearTimeout(t); clearInterval(t); }
    if (conn.watchdog) clearTimeout(conn.watchdog);
    const ws = conn.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null; // onerror stays: `ws` throws unhandled errors
      if (cause) {
        try {
          ws.close(1000, String(cause).slice(0, 100));
        } catch { /* already closed */ }
      }
    }
    if (this._conn === conn) this._conn = null;
    this._inbox?.onDisconnect();
    this._failPending(new ConnectionLostError('connection closed'));
    const dead = cause === 'watchdog' || cause === 'timeout' || cause === 'error';
    const info = { code: dead ? 1006 : code, reason: reason || cause || '', byClient: !!cause };
    // before the state listeners run, as in the Python SDK: they read why it ended
    // (they saw the previous connection's close, or null)
    this.lastClose = info;
    if (!this.closed) this._setState(State.DISCONNECTED);
    conn.resolve(info);
  }

  /** @param {any} conn @param {string} text */
  _send(conn, text) {
    if (conn.ended || !conn.ws || conn.ws.readyState !== OPEN) return false;
    conn.ws.send(text);
    return true;
  }

  /** @param {any} conn @param {any} f */
  _onFrame(conn, f) {
    const kind = f.type;
    if (kind === 'hello') {
      this._onHello(conn, f);
      return;
    }
    const inbox = /** @type {Inbox} */ (this._inbox);
    if (!inbox || !conn.helloAt) return;
    if (kind === 'event') {
      const e = toEvent(f);
      if (e.seq === null) {
        this._deliver(e);
        return;
      }
      if (this.autoAck) this._send(conn, JSON.stringify({ type: 'ack', seq: e.seq }));
      for (const d of inbox.add(e)) this._deliver(d);
      this._maybeFetch(conn);
    } else if (kind === 'head') {
      const head = Number(f.head) || 0;
      // a large event this client already has, announced again: the retry of a
      // send-with-ack, whose sender waits for the ack of that seq (nothing to fetch)
      if (this.autoAck && head > 0 && !inbox.isNew(head)) this._send(conn, JSON.stringify({ type: 'ack', seq: head }));
      inbox.onHead(head);
      this._maybeFetch(conn);
    } else if (kind === 'pong' && f.rid === SYNC) {
      inbox.onHead(/** @type {Hello} */ (this.hello).head); // backlog is in: fetch the rest
      this._maybeFetch(conn);
    } else if (kind === 'reply' && f.rid === FETCH && inbox.fetching) {
      const events = (f.events ?? []).map(toEvent);
      if (this.autoAck) {
        for (const e of events) {
          if (e.seq !== null && inbox.isNew(e.seq)) this._send(conn, JSON.stringify({ type: 'ack', seq: e.seq }));
        }
      }
      for (const d of inbox.onFetchReply(events, Number(f.head) || 0, !!f.more)) this._deliver(d);
      this._maybeFetch(conn);
    } else if (kind === 'error' && f.rid === FETCH && inbox.fetching) {
      console.warn('pushgate: fetch failed', f.message);
      inbox.onFetchFailed();
      this._maybeFetch(conn);
    } else if (kind === 'reply' || kind === 'pong' || kind === 'error') {
      const p = this._pending.get(String(f.rid));
      if (!p) return;
      this._pending.delete(String(f.rid));
      clearTimeout(p.timer);
      if (kind === 'error') p.reject(new RequestError(f));
      else p.resolve(f);
    } else if (kind === 'kicked') {
      conn.kicked = { reason: f.reason ?? null, by: f.by ?? null };
    }
    // unknown frame types are ignored (newer servers)
  }

  /** @param {any} conn @param {any} f */
  _onHello(conn, f) {
    /** @type {Hello} */
    const hello = { session: f.session, user: f.user, head: Number(f.head) || 0,
      unread: Number(f.unread) || 0, v: f.v ?? 1, limits: f.limits ?? {} };
    this.hello = hello;
    conn.helloAt = now();
    if (!this._inbox) { // no `after`: start at the head
      this._inbox = new Inbox(hello.head);
      if (this._handedSeq === null) this._handedSeq = hello.head;
    } else if (hello.head < this._inbox.lastSeq) {
      // seqs never go down: the server's store was reset (or restored from an older
      // backup) and numbers its events from 1 again. Resuming above its head would pass
      // over every new event up to the old seq: start over from 0 instead
      console.warn(`pushgate: server head ${hello.head} is below the last seq ${this._inbox.lastSeq}: its store was reset; starting over from seq 0`);
      this._inbox = new Inbox(0);
      this._resets += 1;
      this._handedSeq = 0;
    }
    this._send(conn, JSON.stringify({ type: 'ping', rid: SYNC }));
    const interval = this.pingIntervalMs ?? ((hello.limits.idle_timeout_s ?? 120) * 1000) / 3;
    conn.timers.push(setInterval(() => this._send(conn, '{"type":"ping"}'), interval));
    // the watchdog wakes when the silence reaches its limit, not at the ping ticks only:
    // the last frame is usually the pong of a tick, so at the third tick after it the
    // silence was a round trip short of the limit and the link went a tick late (4 pings)
    const limit = this.watchdogPings * interval;
    const check = () => {
      const silent = now() - conn.lastRx;
      if (silent >= limit) {
        console.warn(`pushgate: no frame for ${silent} ms: reconnecting`);
        this._endConnection(conn, 'watchdog', 1006, 'watchdog');
        return;
      }
      conn.watchdog = setTimeout(check, limit - silent);
    };
    conn.watchdog = setTimeout(check, limit);
    this._scheduleRefresh(conn);
    this.connects += 1;
    this._setState(State.CONNECTED);
    this._emit('connected', hello);
  }

  /** Replace the token shortly before it expires, then reconnect with it.
   * @param {any} conn */
  _scheduleRefresh(conn) {
    if (!this._provider || this.refreshMarginMs == null || !this._token) return;
    const exp = tokenExpiry(this._token);
    if (exp == null) return;
    if (refreshAt(this._tokenObtained, exp, this.refreshMarginMs) - this._tokenObtained < 1000) {
      return; // too short-lived: the 4101 path handles it
    }
    // jittered (clients whose tokens were minted together refresh spread out), never
    // before half the token's life
    const at = refreshAt(this._tokenObtained, exp, this.refreshMarginMs, this._random());
    const wait = Math.min(2 ** 31 - 1, Math.max(0, at - now()));
    conn.timers.push(setTimeout(() => this._refreshNow(conn, exp, SAME_TOKEN_TRIES), wait));
  }

  /** Ask the provider for a new token and reconnect with it. When it returns the token
   * in use (its cache has not renewed it yet), keep the session and ask again half-way
   * to the expiry, at most `tries` times in all (a reconnect would change nothing; with
   * no new token before expiry the server's 4101 leads to the provider again).
   * @param {any} conn @param {number} exp @param {number} tries */
  async _refreshNow(conn, exp, tries) {
    const old = this._token;
    try {
      await this._refreshToken();
    } catch (e) {
      console.warn('pushgate: token refresh failed (will retry on expiry)', e);
      return;
    }
    if (this._token !== old) {
      this._endConnection(conn, 'refresh', 1000, 'token refresh');
      return;
    }
    const wait = (exp - now()) / 2;
    if (tries > 1 && wait >= 250 && this._conn === conn) {
      conn.timers.push(setTimeout(() => this._refreshNow(conn, exp, tries - 1), wait));
    }
  }

  /** @param {any} conn */
  _maybeFetch(conn) {
    const inbox = /** @type {Inbox} */ (this._inbox);
    if (inbox.fetching) return;
    if (inbox.stalls >= 5) {
      console.warn('pushgate: could not fill a gap: reconnecting');
      this._endConnection(conn, 'stall', 1000, 'fetch stalled');
      return;
    }
    const req = inbox.nextFetch();
    if (!req) return;
    const limit = Math.min(this.fetchLimit, this.hello?.limits.fetch_max_limit ?? this.fetchLimit);
    const frame = JSON.stringify({ type: 'fetch', after: req.after, limit, rid: FETCH });
    this.fetches += 1;
    if (inbox.stalls) conn.timers.push(setTimeout(() => this._send(conn, frame), Math.min(2000, 100 * 2 ** inbox.stalls)));
    else this._send(conn, frame);
  }

  // -- requests ----------------------------------------------------------------------------

  /** Ack a stored event (only needed with autoAck: false). @param {number} seq */
  ack(seq) {
    if (this._conn && this.state === State.CONNECTED) this._send(this._conn, JSON.stringify({ type: 'ack', seq }));
  }

  /**
   * Send `frame` with a fresh rid once connected; resolves with the `reply` / `pong`.
   * Rejects with RequestError, RequestTimeoutError, ConnectionLostError or the StoppedError.
   * @param {Record<string, any>} frame @param {number} [timeoutMs]
   * @returns {Promise<any>}
   */
  async request(frame, timeoutMs = this.requestTimeoutMs) {
    this.start();
    const deadline = now() + timeoutMs;
    await this.waitState(State.CONNECTED, timeoutMs);
    const rid = `r${++this._rid}`;
    const text = JSON.stringify({ ...frame, rid });
    const limit = this.hello?.limits.max_frame_bytes ?? 0;
    const size = new TextEncoder().encode(text).length;
    if (limit && size > limit) { // the server would close with 1009, which stops the client
      throw new RequestError({ code: 'payload_too_large', field: 'body', rid,
        message: `the ${frame.type} frame has ${size} bytes, over the server's max_frame_bytes (${limit})` });
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(rid);
        reject(new RequestTimeoutError(`no answer to ${frame.type} within ${timeoutMs} ms`));
      }, Math.max(0, deadline - now()));
      this._pending.set(rid, { resolve, reject, timer });
      if (!this._conn || !this._send(this._conn, text)) {
        this._pending.delete(rid);
        clearTimeout(timer);
        reject(new ConnectionLostError('not connected'));
      }
    });
  }

  /** Stored events with seq > after (outside the event stream).
   * @param {{after?: number, limit?: number, timeoutMs?: number}} [o] */
  async fetch({ after = 0, limit = 100, timeoutMs } = {}) {
    const r = await this.request({ type: 'fetch', after, limit }, timeoutMs);
    return { events: (r.events ?? []).map(toEvent), head: r.head, more: !!r.more };
  }

  /** Mark seqs read for the user (all sessions and devices).
   * @param {{seqs?: number[], ranges?: [number, number][], timeoutMs?: number}} o */
  async read({ seqs = [], ranges = [], timeoutMs } = {}) {
    const r = await this.request({ type: 'read', seqs, ranges }, timeoutMs);
    return { head: r.head, unread: r.unread, live: r.live };
  }

  /** @param {{timeoutMs?: number}} [o] */
  async readState({ timeoutMs } = {}) {
    const r = await this.request({ type: 'read_state' }, timeoutMs);
    return { head: r.head, unread: r.unread, live: r.live, read: r.read ?? [] };
  }

  /** Send through the gateway (recipients get {from, body}).
   * @param {any} body @param {{users?: string[], filter?: object, timeoutMs?: number, [k: string]: any}} [o] */
  async send(body, { timeoutMs, ...fields } = {}) {
    const r = await this.request({ type: 'send', body, ...fields }, timeoutMs);
    return { results: r.results ?? [], sessions: r.sessions ?? 0, report: r.report ?? null };
  }

  /** Round trip in ms. @param {{timeoutMs?: number}} [o] */
  async ping({ timeoutMs } = {}) {
    const t0 = now();
    await this.request({ type: 'ping' }, timeoutMs);
    return now() - t0;
  }
}
