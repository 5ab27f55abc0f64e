// Test harness page: window.harness wraps one PushgateClient and records what the
// application sees; the test reads it through page.evaluate.
import { PushgateClient } from '../src/index.js';

const harness = {
  client: null,
  events: [],
  states: [],
  closes: [],
  errors: [],
  tokens: 0,

  start({ url, user, after = 0, ...options }) {
    const client = new PushgateClient({
      url,
      after,
      // the test page's server mints tokens, as an application backend would
      tokenProvider: async () => {
        harness.tokens += 1;
        const r = await fetch(`/token?user=${encodeURIComponent(user)}&ttl=${options.ttl ?? 600}`);
        if (!r.ok) throw new Error(`token: HTTP ${r.status}`);
        return (await r.json()).token;
      },
      ...options,
    });
    client.on('state', (s) => harness.states.push(s));
    client.on('disconnected', (c) => harness.closes.push(c.code));
    client.on('error', (e) => harness.errors.push({ name: e.name, code: e.code }));
    harness.client = client;
    // consume with the async iterator (the 'event' emitter works the same way)
    (async () => {
      try {
        for await (const e of client) harness.events.push(e);
      } catch (e) {
        harness.errors.push({ name: e.name, code: e.code, from: 'iterator' });
      }
    })();
    client.start();
    return client.waitConnected(10000).then(() => client.session);
  },

  seqs() {
    return harness.events.filter((e) => !e.transient).map((e) => e.seq);
  },

  async waitEvents(n, timeoutMs = 15000) {
    const deadline = Date.now() + timeoutMs;
    while (harness.events.length < n) {
      if (Date.now() > deadline) {
        throw new Error(`only ${harness.events.length} of ${n} events: ${JSON.stringify(harness.seqs())}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return harness.events;
  },
};

window.harness = harness;
document.getElementById('status').textContent = 'ready';
