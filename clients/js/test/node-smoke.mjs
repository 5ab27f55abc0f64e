// Node 20 (node --experimental-websocket): the SDK with the built-in WebSocket.
// Usage: node --experimental-websocket test/node-smoke.mjs <gateway url> <token>
import { PushgateClient } from '../src/index.js';

const [url, token] = process.argv.slice(2);
const client = new PushgateClient({ url, token, after: 0 });
client.start();
await client.waitConnected(10000);
const it = client[Symbol.asyncIterator]();
const first = (await it.next()).value;
const pingMs = await client.ping();
await client.close();
console.log(JSON.stringify({ seqs: [first.seq], body: first.body, pingMs }));
