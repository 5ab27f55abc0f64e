// @ts-check
/**
 * Reconnect delays: exponential backoff with full jitter (pure).
 * delay(attempt) = random(0, min(cap, base * 2 ** attempt)) milliseconds: after an
 * outage every client waits a different random time, so a restarted server sees its
 * clients come back spread over the whole window instead of all at once.
 */
export class Backoff {
  /**
   * @param {{base?: number, cap?: number, random?: () => number}} [options]
   *   base / cap in milliseconds (default 500 / 30000)
   */
  constructor({ base = 500, cap = 30000, random = Math.random } = {}) {
    if (!(base > 0) || cap < base) throw new RangeError('need 0 < base <= cap');
    this.base = base;
    this.cap = cap;
    this.attempt = 0;
    this._random = random;
  }

  /** Upper bound of the delay for `attempt` (default: the current one). */
  window(attempt = this.attempt) {
    return Math.min(this.cap, this.base * 2 ** Math.min(attempt, 62));
  }

  /** The delay before the next try (ms); counts the attempt. */
  next() {
    const d = this._random() * this.window();
    this.attempt += 1;
    return d;
  }

  /** A delay within the first window: for reconnects that need no backoff but must
   * not all happen in the same instant (e.g. after a token refresh). */
  jitter() {
    return this._random() * this.base;
  }

  reset() {
    this.attempt = 0;
  }
}
