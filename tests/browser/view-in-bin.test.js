// From a webhook to the request it produced: "View in bin" in the Send Test Event dialog and on
// each card whose URL is a bin of this server; a selected request has its own URL
// (/bins/{bin}/requests/{seq}); a bin page selects the newest request when none is; and Send
// Test Event on a webhook with several events lets the user pick the event and edit the payload.

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

const selectedSeq = (page) =>
  page.locator('.req-row[aria-selected="true"] .seq').innerText().then((t) => Number(t.replace('#', '')));

test('View in bin from the test dialog lands on the request it sent, selected, at its own URL', { timeout: 60_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/viewbin', {});
  await api(server.base, 'POST', '/api/webhooks', {
    name: 'To viewbin',
    url: server.base + '/b/viewbin',
    event: 'payment_received',
  });
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: 'To viewbin' });
  // The card links to its bin.
  assert.equal(await card.getByRole('link', { name: 'View in bin' }).getAttribute('href'), '/bins/viewbin');
  await card.getByRole('button', { name: 'Send Test Event' }).click();
  const dialog = page.getByRole('dialog', { name: 'Send Test Event' });
  await dialog.getByText('Success: the test event was delivered.').waitFor();
  const messageId = (await dialog.locator('.result .message-id').innerText()).trim();
  assert.match(messageId, /^msg_/);
  // Something newer arrives after it: the link must still land on the test's request.
  await fetch(server.base + '/b/viewbin/later', { method: 'POST', body: 'later' });
  const captured = await api(server.base, 'GET', `/api/bins/viewbin/wait?header=webhook-id:${messageId}&timeout=5s`);
  await dialog.getByRole('link', { name: 'View in bin' }).click();
  await page.waitForURL(new RegExp(`/bins/viewbin/requests/${captured.seq}$`));
  const detail = page.getByRole('article', { name: 'Selected request' });
  await detail.getByRole('table', { name: 'Headers' }).getByText(messageId).waitFor();
  assert.equal(await selectedSeq(page), captured.seq);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a bin page selects the newest request; a request URL opens with it selected; selecting changes the URL', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/pick', {});
  for (const n of [1, 2, 3]) {
    await fetch(`${server.base}/b/pick/n${n}`, { method: 'POST', body: `body ${n}` });
  }
  const page = await newPage(browser.context);
  await page.goto(server.base + '/bins/pick');
  await page.waitForURL(/\/bins\/pick\/requests\/3$/);
  await page.getByRole('article', { name: 'Selected request' }).getByRole('heading', { name: '/n3' }).waitFor();

  // Shared link to one request.
  await page.goto(server.base + '/bins/pick/requests/1');
  const detail = page.getByRole('article', { name: 'Selected request' });
  await detail.getByRole('heading', { name: '/n1' }).waitFor();
  assert.equal(await selectedSeq(page), 1);

  // Clicking another row puts it in the URL, without reloading the list.
  await page.locator('.req-row', { hasText: '/n2' }).click();
  await page.waitForURL(/\/bins\/pick\/requests\/2$/);
  await detail.getByRole('heading', { name: '/n2' }).waitFor();
  // The keyboard too.
  await page.keyboard.press('j');
  await page.waitForURL(/\/bins\/pick\/requests\/1$/);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('Send Test Event on a webhook with several events: pick the event, see and edit the payload', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/multi', {});
  await api(server.base, 'POST', '/api/webhooks', {
    name: 'Two events',
    url: server.base + '/b/multi',
    events: ['payment_received', 'site_published'],
  });
  const { events } = await api(server.base, 'GET', '/api/events');
  const site = events.find((e) => e.slug === 'site_published');
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: 'Two events' });
  await card.getByRole('button', { name: 'Send Test Event' }).click();
  const dialog = page.getByRole('dialog', { name: 'Send Test Event' });
  const compose = dialog.getByRole('form', { name: 'Event to send' });
  await compose.getByLabel('Event').selectOption({ label: 'Site Published' });
  // The payload that will be sent: the event's example.
  const shown = JSON.parse(await compose.getByLabel('Payload').inputValue());
  assert.deepEqual(shown, site.example);
  await compose.getByRole('button', { name: 'Send test event' }).click();
  await dialog.getByText('Success: the test event was delivered.').waitFor();
  const testId = (await dialog.locator('.result .message-id').innerText()).trim();
  const tested = await api(server.base, 'GET', `/api/bins/multi/wait?header=webhook-id:${testId}&timeout=5s`);
  // The flat envelope sends the payload itself: Site Published's, not Payment Received's.
  const sent = JSON.parse(Buffer.from(tested.body ?? '', tested.body_encoding === 'base64' ? 'base64' : 'utf8').toString());
  assert.deepEqual(Object.keys(sent).sort(), Object.keys(site.example).sort());

  // Edit the payload: it is sent as written.
  await dialog.getByRole('button', { name: 'Edit payload' }).click();
  await compose.getByLabel('Payload').fill('{"custom": "edited-in-the-dialog"}');
  await compose.getByRole('button', { name: 'Send edited payload' }).click();
  await dialog.getByText(/^Queued: 1 message for this event\.$/).waitFor();
  const edited = await api(server.base, 'GET', '/api/bins/multi/wait?json=/custom=edited-in-the-dialog&timeout=10s');
  assert.ok(edited.seq > tested.seq);
  // Its View in bin lands on the emitted message's request.
  await dialog.getByRole('link', { name: 'View in bin' }).click();
  await page.waitForURL(new RegExp(`/bins/multi/requests/${edited.seq}$`));
  await page.getByRole('article', { name: 'Selected request' }).getByText('edited-in-the-dialog').first().waitFor();
  await page.goto(server.base + '/webhooks');
  await card.getByRole('button', { name: 'Send Test Event' }).click();
  // Several events: the dialog opens on the choice again.
  await compose.waitFor();
  // Not JSON: refused before sending.
  await compose.getByLabel('Payload').fill('{nope');
  await compose.getByText(/^Not JSON:/).waitFor();
  assert.equal(await compose.getByRole('button', { name: 'Send edited payload' }).isDisabled(), true);
  assert.deepEqual(page.errors, []);
  await page.close();
});
