// Node 20 (node --experimental-websocket): the SDK with the built-in WebSocket.
// Usage: node --experimental-websocket test/node-smoke.mjs <gateway url> <token>
// (the user has 3 stored events)
import { PushgateClient } from '../src/index.js';

const [url, token] = process.argv.slice(2);
const client = new PushgateClient({ url, token, after: 0 });
client.start();
await client.waitConnected(10000);
const pingMs = await client.ping(); // its pong follows the backlog: the SDK holds all 3 events
const it = client[Symbol.asyncIterator]();
const events = [(await it.next()).value];
const lastSeqs = [client.lastSeq]; // the app has seen 1 event: the resume point is its seq
events.push((await it.next()).value, (await it.next()).value);
lastSeqs.push(client.lastSeq);
await client.close();
console.log(JSON.stringify({ seqs: events.map((e) => e.seq), body: events[0].body, lastSeqs, pingMs }));
