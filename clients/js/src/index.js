// @ts-check
/**
 * pushgate client SDK for browsers and Node >= 20 (ESM, no dependencies).
 *
 *   import { PushgateClient } from './src/index.js';
 *   const client = new PushgateClient({ url: 'http://127.0.0.1:8080', tokenProvider, after: 0 });
 *   client.on('event', (e) => console.log(e.seq, e.body));
 *   client.start();
 *
 * See docs/clients.md.
 */
export { PushgateClient, State, wsUrl, tokenExpiry, refreshAt } from './client.js';
export { Backoff } from './backoff.js';
export { Inbox } from './inbox.js';
export * from './errors.js';
