// @ts-check
/**
 * Errors of the JS SDK (same tree as the Python SDK):
 *
 *   PushgateError
 *   ├── StoppedError          the client stopped for good (code, reason of the last close)
 *   │   ├── UnauthorizedError   4100: the token was refused (a fresh one too)
 *   │   ├── TokenExpiredError   4101 without a token provider
 *   │   ├── KickedError         4102: a newer session of the user took this slot
 *   │   ├── ForbiddenOriginError 4103: this page's Origin is not allowed
 *   │   ├── BadFrameError       4104: protocol violation (a client bug)
 *   │   └── MessageTooBigError  1009: a frame this client sent was too large
 *   ├── RequestError          an `error` frame answered a request (code, field, retryable)
 *   ├── RequestTimeoutError   no answer in time
 *   ├── ConnectionLostError   the connection dropped before the answer came
 *   └── ClientClosedError     the application closed the client
 */

export class PushgateError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

export class StoppedError extends PushgateError {
  /** @param {number} code @param {string} reason */
  constructor(code, reason) {
    super(`connection closed with ${code}: ${reason || '-'} (not reconnecting)`);
    this.code = code;
    this.reason = reason;
  }
}
export class UnauthorizedError extends StoppedError {}
export class TokenExpiredError extends StoppedError {}
export class KickedError extends StoppedError {
  /** @param {number} code @param {string} reason @param {string|null} kickedReason @param {string|null} by */
  constructor(code, reason, kickedReason = null, by = null) {
    super(code, reason);
    this.kickedReason = kickedReason;
    this.by = by;
  }
}
export class ForbiddenOriginError extends StoppedError {}
export class BadFrameError extends StoppedError {}
export class MessageTooBigError extends StoppedError {}

export class RequestError extends PushgateError {
  /** @param {{code?: string, message?: string, field?: string|null, retryable?: boolean, rid?: any}} f */
  constructor(f) {
    super(`${f.code}: ${f.message}${f.field ? ` (field ${f.field})` : ''}`);
    this.code = f.code ?? 'error';
    this.field = f.field ?? null;
    this.retryable = !!f.retryable;
    this.rid = f.rid ?? null;
  }
}
export class RequestTimeoutError extends PushgateError {}
export class ConnectionLostError extends PushgateError {}
export class ClientClosedError extends PushgateError {}

/**
 * @param {number} code @param {string} reason @param {{reason?: string, by?: string}|null} [kicked]
 * @returns {StoppedError}
 */
export function stoppedError(code, reason, kicked = null) {
  if (code === 4102 || kicked) {
    return new KickedError(code, reason, kicked?.reason ?? null, kicked?.by ?? null);
  }
  const cls = { 4100: UnauthorizedError, 4101: TokenExpiredError, 4103: ForbiddenOriginError,
    4104: BadFrameError, 1009: MessageTooBigError }[code] ?? StoppedError;
  return new cls(code, reason);
}

/** The close-code rule of docs/protocol.md: 4000-4099 and 1xxx except 1009 reconnect.
 * @param {number} code */
export function shouldReconnect(code) {
  if (code >= 4000 && code <= 4099) return true;
  return !(code >= 4000 || code === 1009);
}
