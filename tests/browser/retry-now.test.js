// Retry now: a message waiting an hour for its next attempt (the receiver failed) has a Retry now
// button in the Delivery log; once the receiver is fixed, a click makes that attempt at once, the
// log shows it live and the button goes away. A finished message has none.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, api } from './harness.js';

let server;
let browser;

before(async () => {
  // The first retry would come an hour later: only Retry now can make it come during the test.
  server = await startServer(['--retry-schedule', '1h']);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('Retry now sends a waiting message at once', { timeout: 60_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/down', { response: { status: 503, body: 'down' } });
  await api(server.base, 'POST', '/api/webhooks', {
    name: 'Waiting',
    url: server.base + '/b/down/hook',
    event: 'payment_received',
  });
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: 'Waiting' });
  await card.getByRole('button', { name: 'Delivery log' }).click();
  const log = card.getByRole('region', { name: 'Delivery log' });
  const messages = log.getByRole('table', { name: 'Messages' });
  const attempts = log.getByRole('table', { name: 'Attempts' });

  await api(server.base, 'POST', '/api/events/payment_received/emit', {});
  await messages.getByText('retrying', { exact: true }).waitFor({ timeout: 15_000 });
  // Next attempt in about an hour.
  await messages.getByText(/^in (59 min|1 h)$/).waitFor();
  assert.equal(await attempts.locator('tr.attempt').count(), 1);
  const retry = messages.getByRole('button', { name: 'Retry now' });
  // Resend is for finished messages only.
  assert.equal(await messages.getByRole('button', { name: 'Resend' }).isDisabled(), true);

  // The receiver is fixed; Retry now: the second attempt goes out at once.
  await api(server.base, 'PUT', '/api/bins/down', {});
  await retry.click();
  await log.getByText(/^Retrying msg_\w+ now: the attempt shows below as it is made\.$/).waitFor();
  await messages.getByText('delivered', { exact: true }).waitFor({ timeout: 15_000 });
  await attempts.locator('tr.attempt').nth(1).waitFor();
  assert.equal(await attempts.locator('tr.attempt').count(), 2);
  await messages.locator('td.num', { hasText: /^2$/ }).waitFor();
  await retry.waitFor({ state: 'detached' });
  const bin = await api(server.base, 'GET', '/api/bins/down/requests');
  assert.equal(bin.requests.length, 2, 'the bin received both attempts');

  assert.deepEqual(page.errors, []);
  await page.close();
});
