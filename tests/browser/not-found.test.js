// Pages for what is not there: a bin that does not exist says so and offers to create it with
// that name; an unknown page shows the UI's "Page not found", not the API's JSON.

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

test('a bin that does not exist says so and can be created with that name', { timeout: 60_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  await page.goto(server.base + '/bins/not-yet-here');
  await page.getByRole('heading', { name: 'No bin named not-yet-here' }).waitFor();
  await page.getByText('This bin does not exist on this server').waitFor();
  // No empty capture URL, no "deleted or expired" banner.
  assert.equal(await page.getByLabel('Capture URL').isVisible(), false);
  assert.equal(await page.getByText('no longer exists').count(), 0);
  await page.getByRole('button', { name: 'Create this bin' }).click();
  await page.waitForFunction(() => document.getElementById('capture-url')?.value?.endsWith('/b/not-yet-here'));
  await page.getByText('live', { exact: true }).waitFor();
  const bin = await api(server.base, 'GET', '/api/bins/not-yet-here');
  assert.equal(bin.id, 'not-yet-here');
  // It is live: a request shows up.
  await fetch(server.base + '/b/not-yet-here/first', { method: 'POST', body: 'hi' });
  await page.locator('.req-row', { hasText: '/first' }).waitFor();
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('an unknown page shows "Page not found"; API paths keep their JSON 404', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  const res = await page.goto(server.base + '/no/such/page');
  assert.equal(res.status(), 404);
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  await page.getByText('/no/such/page').waitFor();
  await page.getByRole('link', { name: 'Back to your bins' }).click();
  await page.getByRole('button', { name: 'New bin' }).waitFor();
  const json = await fetch(server.base + '/api/nope', { headers: { accept: 'text/html' } });
  assert.equal(json.status, 404);
  assert.match(json.headers.get('content-type'), /json/);
  assert.deepEqual(page.errors, []);
  await page.close();
});
