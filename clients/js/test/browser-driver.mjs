// Drives headless Chromium (Debian's /usr/bin/chromium) with playwright-core for tests.
// Protocol: one JSON command per stdin line, one JSON answer per stdout line:
//   {"id": 1, "op": "goto", "url": "..."}        -> {"id": 1, "ok": true}
//   {"id": 2, "op": "eval", "expr": "1 + 1"}     -> {"id": 2, "ok": true, "value": 2}
//   {"op": "fill", "selector": "#key", "value": "..."}, {"op": "click", "selector": "..."}:
//   typing and clicking as a user does (the page may navigate: the op waits for it);
//   {"op": "waitFor", "expr": "...", "ms": 30000}: until `expr` is truthy in the page;
//   {"op": "screenshot", "path": "...", "width": 1280, "height": 900}.
// Promises returned by `expr` are awaited. Page console output and errors are reported
// as {"console": "..."} lines. EOF on stdin closes the browser.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const userDataDir = mkdtempSync(join(tmpdir(), 'pushgate-chromium-'));
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = context.pages()[0] ?? await context.newPage();
page.on('console', (m) => out({ console: `${m.type()}: ${m.text()}` }));
page.on('pageerror', (e) => out({ console: `pageerror: ${e.message}` }));
out({ ready: true, version: context.browser()?.version() ?? null });

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  try {
    if (cmd.op === 'goto') {
      await page.goto(cmd.url, { waitUntil: 'load' });
      out({ id: cmd.id, ok: true });
    } else if (cmd.op === 'eval') {
      const value = await page.evaluate(cmd.expr);
      out({ id: cmd.id, ok: true, value: value ?? null });
    } else if (cmd.op === 'fill') {
      await page.fill(cmd.selector, cmd.value);
      out({ id: cmd.id, ok: true });
    } else if (cmd.op === 'click') {
      await page.click(cmd.selector);
      await page.waitForLoadState('load');
      out({ id: cmd.id, ok: true });
    } else if (cmd.op === 'waitFor') {
      // polled with page.evaluate (waitForFunction evaluates strings in the page, which a
      // strict Content-Security-Policy forbids)
      const deadline = Date.now() + (cmd.ms ?? 30000);
      let value = await page.evaluate(cmd.expr);
      while (!value) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${cmd.expr}`);
        await new Promise((r) => setTimeout(r, 100));
        value = await page.evaluate(cmd.expr);
      }
      out({ id: cmd.id, ok: true, value });
    } else if (cmd.op === 'screenshot') {
      await page.setViewportSize({ width: cmd.width ?? 1280, height: cmd.height ?? 900 });
      await page.screenshot({ path: cmd.path, fullPage: true });
      out({ id: cmd.id, ok: true });
    } else {
      out({ id: cmd.id, ok: false, error: `unknown op ${cmd.op}` });
    }
  } catch (e) {
    out({ id: cmd.id, ok: false, error: String(e?.message ?? e) });
  }
}
await context.close();
rmSync(userDataDir, { recursive: true, force: true });
