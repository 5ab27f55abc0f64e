// @ts-check
/**
 * Ordering and dedupe of stored events (pure: no I/O). Same algorithm as the Python
 * SDK's pushgate_client/inbox.py.
 *
 * `lastSeq` is the resume point: every stored event with a seq up to it was handed to
 * the application (or does not exist any more: expired seqs leave holes). It only moves
 * forward one contiguous step at a time, so reconnecting with `after=lastSeq` never skips
 * an event. Events above a gap wait in a buffer until a fetch fills the gap; a fetch
 * reply also tells which missing seqs are holes (the server reads the head before the
 * events, so every seq up to that head the reply does not hold has expired).
 */

/** @typedef {import('./client.js').PushEvent} PushEvent */

export class Inbox {
  /** @param {number} [lastSeq] */
  constructor(lastSeq = 0) {
    this.lastSeq = lastSeq;
    this.knownHead = lastSeq; // the highest seq the server said exists
    /** @type {{after: number} | null} the fetch in flight on this connection */
    this.fetching = null;
    this.stalls = 0; // fetch replies in a row that did not move lastSeq
    /** @type {Map<number, PushEvent>} */
    this._buffer = new Map();
  }

  get buffered() {
    return this._buffer.size;
  }

  /** @param {number} seq */
  isNew(seq) {
    return seq > this.lastSeq && !this._buffer.has(seq);
  }

  /**
   * A stored event arrived (live, backlog or fetch reply).
   * @param {PushEvent} event
   * @returns {PushEvent[]} the events now deliverable, in order (empty for a duplicate)
   */
  add(event) {
    const seq = /** @type {number} */ (event.seq);
    if (!this.isNew(seq)) return [];
    this._buffer.set(seq, event);
    return this._drain();
  }

  /** The server announced a head (`head` frame, or `hello` once the backlog is in).
   * @param {number} head */
  onHead(head) {
    this.knownHead = Math.max(this.knownHead, head);
  }

  /** The fetch to send now, if one is needed and none is in flight. */
  nextFetch() {
    if (this.fetching) return null;
    if (this._buffer.size > 0 || this.knownHead > this.lastSeq) {
      this.fetching = { after: this.lastSeq };
      return this.fetching;
    }
    return null;
  }

  /**
   * A reply to the fetch in flight.
   * @param {PushEvent[]} events @param {number} head @param {boolean} more
   * @returns {PushEvent[]} the events now deliverable, in order
   */
  onFetchReply(events, head, more) {
    this.fetching = null;
    const before = this.lastSeq;
    let last = 0;
    for (const e of events) {
      if (e.seq == null) continue;
      last = Math.max(last, e.seq);
      if (this.isNew(e.seq)) this._buffer.set(e.seq, e);
    }
    const covered = more ? last : Math.max(head, last);
    this.knownHead = Math.max(this.knownHead, head);
    /** @type {PushEvent[]} */
    const out = [];
    if (covered > this.lastSeq) {
      const seqs = [...this._buffer.keys()].filter((s) => s <= covered).sort((a, b) => a - b);
      for (const s of seqs) {
        out.push(/** @type {PushEvent} */ (this._buffer.get(s)));
        this._buffer.delete(s);
      }
      this.lastSeq = covered;
    }
    out.push(...this._drain());
    this.stalls = this.lastSeq > before ? 0 : this.stalls + 1;
    return out;
  }

  onFetchFailed() {
    this.fetching = null;
    this.stalls += 1;
  }

  /** The connection ended: a fetch in flight will never be answered. */
  onDisconnect() {
    this.fetching = null;
    this.stalls = 0;
  }

  _drain() {
    /** @type {PushEvent[]} */
    const out = [];
    for (;;) {
      const e = this._buffer.get(this.lastSeq + 1);
      if (!e) return out;
      this._buffer.delete(this.lastSeq + 1);
      this.lastSeq += 1;
      out.push(e);
    }
  }
}
