// Screenshots of the three pages, light and dark, for the README. They go to a temporary folder
// on every run (so this path stays tested) and into docs/screenshots/ with HOOKBIN_SCREENSHOTS=1.
// Headless Chromium's own --screenshot hangs on an open SSE stream; the driver does not.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, launchBrowser, newPage, api, freePort, repoRoot } from './harness.js';

const outDir =
  process.env.HOOKBIN_SCREENSHOTS === '1'
    ? path.join(repoRoot, 'docs', 'screenshots')
    : mkdtempSync(path.join(os.tmpdir(), 'hookbin-shots-'));

let server;
let browser;

before(async () => {
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A bin with a few realistic requests, one of them a signed test event. */
async function seed() {
  const bin = await api(server.base, 'POST', '/api/bins', { name: 'payments-staging' });
  await api(server.base, 'POST', '/api/bins', { name: 'ci-orders' });
  await api(server.base, 'POST', '/api/bins', {});
  await fetch(`${bin.url}/health?probe=1`, { signal: AbortSignal.timeout(5000) });
  await fetch(`${bin.url}/forms/contact`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'name=Ada+Lovelace&email=ada%40example.com&message=Hello%21',
    signal: AbortSignal.timeout(5000),
  });
  const hook = await api(server.base, 'POST', '/api/webhooks', {
    name: 'Payments to staging',
    url: bin.url,
    event: 'payment_received',
  });
  // Rotated: its card shows when the previous secret stops signing.
  await api(server.base, 'POST', `/api/webhooks/${hook.id}/secret/rotate`, { grace: '24h' });
  await api(server.base, 'POST', `/api/webhooks/${hook.id}/test`);
  await api(server.base, 'POST', '/api/webhooks', {
    name: 'Site published to CRM',
    url: `http://127.0.0.1:${await freePort()}/crm/hooks`,
    event: 'site_published',
  });
  return bin;
}

test('screenshots of Bins, Bin and Webhooks in light and dark', { timeout: 120_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  mkdirSync(outDir, { recursive: true });
  const bin = await seed();
  const page = await newPage(browser.context);
  const shots = [];
  for (const theme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: theme });

    await page.goto(server.base + '/');
    await page.getByRole('link', { name: 'payments-staging' }).waitFor();
    shots.push(await shot(page, `bins-${theme}`));

    await page.goto(`${server.base}/bins/${bin.id}`);
    await page.getByText('live', { exact: true }).waitFor();
    await page.getByRole('listbox', { name: 'Captured requests' }).getByRole('option').first().click();
    await page.getByRole('article', { name: 'Selected request' }).locator('pre.json').waitFor();
    // Tall enough to show the body view under the headers.
    await page.setViewportSize({ width: 1280, height: 1400 });
    shots.push(await shot(page, `bin-${theme}`));
    await page.setViewportSize({ width: 1280, height: 860 });

    await page.goto(server.base + '/webhooks');
    const card = page.getByRole('article', { name: 'Payments to staging' });
    await card.getByRole('button', { name: 'Send Test Event' }).click();
    await page.getByRole('dialog', { name: 'Send Test Event' }).getByText(/^HTTP 200/).waitFor();
    shots.push(await shot(page, `send-test-event-${theme}`));
    await page.getByRole('dialog').getByRole('button', { name: 'Close' }).click();
    await page.getByRole('button', { name: 'Add New Webhook' }).click();
    await page.getByRole('form', { name: 'Add New Webhook' }).getByLabel('Name').fill('Payments to my bin');
    await page.getByRole('form', { name: 'Add New Webhook' }).locator('.preview .json').waitFor();
    shots.push(await shot(page, `webhooks-${theme}`));
  }
  // A phone: the list above the selected request.
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${server.base}/bins/${bin.id}`);
  await page.getByRole('listbox', { name: 'Captured requests' }).getByRole('option').first().waitFor();
  shots.push(await shot(page, 'bin-phone-light'));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px too wide)`);

  for (const file of shots) {
    assert.ok(statSync(file).size > 10_000, `${file} has content`);
  }
  t.diagnostic(`screenshots in ${outDir}`);
  assert.deepEqual(page.errors, []);
  await page.close();
});

async function shot(page, name) {
  // Relative times ("just now") and the theme settle; then the viewport, like a user sees it.
  await page.waitForTimeout(200);
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
