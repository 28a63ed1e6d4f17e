// What the UI weighs on the wire: the wasm, the JS glue and the stylesheet as the browser fetched
// them (gzip), reported on every run. The budget fails the test when the wasm grows past it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage } from './harness.js';

/** The gzipped wasm may not grow past this (README, "The web UI", gives today's figure). */
const WASM_BUDGET_KB = 280;

let server;
let browser;

before(async () => {
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the UI\'s size on the wire', { timeout: 60_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  await page.goto(server.base + '/');
  await page.getByRole('button', { name: 'New bin' }).waitFor();
  const sizes = await page.evaluate(() =>
    performance
      .getEntriesByType('resource')
      .filter((e) => /\/assets\//.test(e.name))
      .map((e) => ({ name: e.name.split('/').pop(), wire: e.encodedBodySize, decoded: e.decodedBodySize })),
  );
  const wasm = sizes.find((s) => s.name.endsWith('.wasm'));
  assert.ok(wasm, `the wasm was fetched: ${JSON.stringify(sizes)}`);
  for (const s of sizes) {
    t.diagnostic(`${s.name}: ${(s.decoded / 1024).toFixed(0)} KB, ${(s.wire / 1024).toFixed(0)} KB on the wire`);
  }
  assert.ok(wasm.wire < wasm.decoded, 'the wasm is compressed on the wire');
  assert.ok(wasm.wire <= WASM_BUDGET_KB * 1024, `wasm is ${(wasm.wire / 1024).toFixed(0)} KB gzipped, over the ${WASM_BUDGET_KB} KB budget`);
  await page.close();
});
