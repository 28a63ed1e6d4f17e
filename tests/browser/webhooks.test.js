// The seed's flow, clicked as a new user would: New bin, Webhooks, Add New Webhook (Name, the
// bin's URL, Event = Payment Received), Send Test Event, the dialog reports success with 200, and
// the bin (open in another tab) shows the payload arriving live. Then the failure path: Send Test
// Event to a dead URL reports the failure and its error.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, freePort, api } from './harness.js';

let server;
let browser;

before(async () => {
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('seed flow: new bin, add webhook, send test event, payload arrives live', { timeout: 90_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  const binTab = await newPage(browser.context);

  // Open the app, New bin: it opens the bin.
  await binTab.goto(server.base + '/');
  await binTab.getByRole('button', { name: 'New bin' }).click();
  await binTab.waitForURL(/\/bins\/[0-9a-f-]{36}$/);
  await binTab.waitForFunction(() => document.getElementById('capture-url')?.value);
  const captureUrl = await binTab.getByLabel('Capture URL').inputValue();
  assert.match(captureUrl, /^http:\/\/127\.0\.0\.1:\d+\/b\/[0-9a-f-]{36}$/);
  await binTab.getByText('live', { exact: true }).waitFor();
  await binTab.getByText('Waiting for the first request…').waitFor();

  // Another tab: Webhooks, Add New Webhook.
  const page = await newPage(browser.context);
  await page.goto(server.base + '/');
  await page.getByRole('link', { name: 'Webhooks' }).click();
  await page.getByRole('heading', { name: 'Webhooks', level: 1 }).waitFor();
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  const form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByLabel('Name').fill('Payments to my bin');
  await form.getByLabel('URL').fill(captureUrl);
  await form.getByLabel('Event').selectOption({ label: 'Payment Received' });
  // The preview shows the chosen event's payload.
  await form.locator('.preview').getByText('"payment_total"').first().waitFor();
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await form.waitFor({ state: 'detached' });

  const card = page.getByRole('article', { name: 'Payments to my bin' });
  await card.getByText(captureUrl).waitFor();
  await card.getByText('Payment Received').waitFor();

  // Send Test Event: the dialog tells the true outcome.
  await card.getByRole('button', { name: 'Send Test Event' }).click();
  const dialog = page.getByRole('dialog', { name: 'Send Test Event' });
  await dialog.getByText('Success: the test event was delivered.').waitFor();
  await dialog.getByText(/^HTTP 200 in (\d+ ms|< 1 ms)$/).waitFor();
  // The bin's default answer names the request it captured.
  await dialog.locator('pre.response').getByText('request_id').waitFor();
  await dialog.getByRole('button', { name: 'Close' }).click();
  await dialog.waitFor({ state: 'hidden' });

  // The bin tab, never reloaded, shows the payload.
  const rows = binTab.getByRole('listbox', { name: 'Captured requests' }).getByRole('option');
  const row = rows.filter({ hasText: 'POST' });
  await row.first().waitFor({ timeout: 10_000 });
  assert.equal(await rows.count(), 1);
  await row.first().click();
  const detail = binTab.getByRole('article', { name: 'Selected request' });
  await detail.getByRole('tab', { name: 'JSON' }).waitFor();
  await detail.locator('.json').getByText('"payment_total"').waitFor();
  await detail.getByRole('table', { name: 'Headers' }).getByText('webhook-signature').waitFor();

  // The delivery log lists the attempt, with Resend on its message.
  await card.getByRole('button', { name: 'Delivery log' }).click();
  const log = card.getByRole('region', { name: 'Delivery log' });
  await log.getByText('delivered').first().waitFor();
  await log.getByRole('button', { name: 'Resend' }).first().click();
  await log.getByText(/Queued as msg_/).waitFor();
  // The resent message arrives in the bin too.
  await rows.nth(1).waitFor({ timeout: 10_000 });

  assert.deepEqual(page.errors, []);
  assert.deepEqual(binTab.errors, []);
  await page.close();
  await binTab.close();
});

test('"Use a new bin" fills the URL with a fresh bin in one click', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  const form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByRole('button', { name: 'Use a new bin' }).click();
  await form.getByRole('link', { name: /^open bin / }).waitFor();
  const url = await form.getByLabel('URL').inputValue();
  assert.match(url, /\/b\/[0-9a-f-]{36}$/);
  const bins = await api(server.base, 'GET', '/api/bins');
  assert.ok(bins.bins.some((b) => b.url === url), 'the bin exists on the server');
  await page.close();
});

test('form errors show next to the field that caused them', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  const form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByLabel('Name').fill('x');
  await form.getByLabel('URL').fill('ftp://nope');
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await form.getByText('Name must be at least 2 characters.').waitFor();
  await form.getByText('URL must start with http:// or https://.').waitFor();
  assert.equal(await form.getByLabel('Name').getAttribute('aria-invalid'), 'true');
  assert.equal(await form.getByLabel('URL').getAttribute('aria-invalid'), 'true');
  await page.close();
});

test('Send Test Event to a dead URL reports the failure and the error', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  // Nothing listens on this port once freePort returns.
  const deadUrl = `http://127.0.0.1:${await freePort()}/hook`;
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  const form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByLabel('Name').fill('Dead endpoint');
  await form.getByLabel('URL').fill(deadUrl);
  await form.getByLabel('Event').selectOption({ label: 'Payment Received' });
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();

  const card = page.getByRole('article', { name: 'Dead endpoint' });
  await card.getByRole('button', { name: 'Send Test Event' }).click();
  const dialog = page.getByRole('dialog', { name: 'Send Test Event' });
  await dialog.getByText('Failed: the test event was not delivered.').waitFor({ timeout: 30_000 });
  await dialog.getByText(/^No answer after (\d+ ms|< 1 ms)$/).waitFor();
  const error = await dialog.locator('.error-text').innerText();
  assert.match(error, /^Error: .*(refused|connect)/i, error);
  assert.equal(await dialog.getByText('Success').count(), 0);
  await dialog.getByRole('button', { name: 'Close' }).click();
  // The delivery log keeps the failed attempt and its error, with Resend.
  await card.getByRole('button', { name: 'Delivery log' }).click();
  const log = card.getByRole('region', { name: 'Delivery log' });
  await log.getByText('failed', { exact: true }).waitFor();
  await log.getByText('no answer').waitFor();
  await log.getByRole('button', { name: 'Resend' }).waitFor();
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('edit, disable and delete a webhook; the event catalog lists every event', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const hook = await api(server.base, 'POST', '/api/webhooks', {
    name: 'To edit',
    url: 'http://127.0.0.1:9/x',
    event: 'payment_received',
  });
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: 'To edit' });
  await card.getByRole('button', { name: 'Edit' }).click();
  const form = card.getByRole('form', { name: 'Edit webhook' });
  await form.getByLabel('Name').fill('Edited');
  await form.getByLabel('Event').selectOption({ label: 'Site Published' });
  await form.getByRole('button', { name: 'Save changes' }).click();
  const edited = page.getByRole('article', { name: 'Edited' });
  await edited.getByText('Site Published').waitFor();

  await edited.getByRole('button', { name: 'Disable' }).click();
  await edited.getByText('Inactive').waitFor();
  assert.equal((await api(server.base, 'GET', `/api/webhooks/${hook.id}`)).active, false);
  await edited.getByRole('button', { name: 'Enable' }).click();
  await edited.getByText('Active', { exact: true }).waitFor();

  await edited.getByRole('button', { name: 'Delete' }).click();
  await edited.getByRole('button', { name: 'Confirm delete' }).click();
  await edited.waitFor({ state: 'detached' });

  // At the bottom: every catalog event with its description and example payload.
  const { events } = await api(server.base, 'GET', '/api/events');
  const catalog = page.getByRole('region', { name: 'Events' });
  assert.equal(await catalog.getByRole('article').count(), events.length);
  const first = catalog.getByRole('article').first();
  await first.getByText('Example payload').click();
  await first.locator('.json .j-key').first().waitFor();
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('webhooks and deliveries made elsewhere show up live, without a reload', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/live-hook', {});
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('heading', { name: 'Your webhooks' }).waitFor();
  // Added through the API (a CLI, a script): the page shows it on its own.
  await api(server.base, 'POST', '/api/webhooks', {
    name: 'Live hook',
    url: server.base + '/b/live-hook',
    event: 'payment_received',
  });
  const card = page.getByRole('article', { name: 'Live hook' });
  await card.waitFor({ timeout: 10_000 });
  // An event emitted elsewhere is delivered; the card's count follows.
  await api(server.base, 'POST', '/api/events/payment_received/emit', {});
  await card
    .locator('dt:has-text("Events sent") + dd')
    .filter({ hasText: /^1$/ })
    .waitFor({ timeout: 10_000 });
  assert.deepEqual(page.errors, []);
  await page.close();
});
