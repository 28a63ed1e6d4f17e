// What the UI says: counts with the right noun, backticked words in event descriptions shown as
// code, a truncation banner that says how much arrived and how much was kept, relative times with
// the exact time on hover, and no keyboard hints on a touch screen.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, api } from './harness.js';

let server;
let browser;

before(async () => {
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('"1 request", the truncation banner, relative times with the exact time on hover', { timeout: 60_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/small', { limits: { max_body_bytes: 16 } });
  await fetch(server.base + '/b/small/big', { method: 'POST', body: 'x'.repeat(400) });
  const page = await newPage(browser.context);
  await page.goto(server.base + '/bins/small');
  await page.locator('.list-summary .count').getByText('1 request', { exact: true }).waitFor();
  const detail = page.getByRole('article', { name: 'Selected request' });
  await detail
    .locator('.truncated')
    .getByText('Truncated: 400 B arrived, the first 16 B were kept (this bin keeps at most 16 B of a body).', { exact: true })
    .waitFor();
  // The row's relative time carries the exact time.
  const row = page.locator('.req-row').first();
  await row.locator('.time').getByText('just now').waitFor();
  const title = await row.locator('.time').getAttribute('title');
  assert.match(title, new RegExp(String(new Date().getFullYear())));
  const ago = detail.locator('time.ago');
  assert.equal(await ago.innerText(), 'just now');
  assert.match(await ago.getAttribute('title'), new RegExp(String(new Date().getFullYear())));
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('backticks in event descriptions are code, not literal backticks', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const { events } = await api(server.base, 'GET', '/api/events');
  const ev = events.find((e) => /`[^`]+`/.test(e.description));
  assert.ok(ev, 'the catalog has a description with `code`');
  const word = ev.description.match(/`([^`]+)`/)[1];
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const article = page.locator(`#event-${ev.slug}`);
  await article.locator('p code', { hasText: word }).first().waitFor();
  assert.equal((await article.locator('p').first().innerText()).includes('`'), false);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('no keyboard hints on a touch screen', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/touch', {});
  const page = await newPage(browser.context);
  await page.goto(server.base + '/bins/touch');
  const search = page.getByLabel('Search requests');
  assert.match(await search.getAttribute('placeholder'), /\( \/ \)/);
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 5 });
  await cdp.send('Emulation.setEmitTouchEventsForMouse', { enabled: true, configuration: 'mobile' });
  await page.reload();
  assert.equal(await page.evaluate(() => matchMedia('(hover: none) and (pointer: coarse)').matches), true);
  assert.equal(await search.getAttribute('placeholder'), 'Search path, headers, body');
  assert.deepEqual(page.errors, []);
  await page.close();
});
