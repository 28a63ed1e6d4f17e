// The delivery log of a webhook: per attempt a Details view with the request that went out (URL,
// headers, body) and the answer (status, headers, body), shown as text only; rows keyed so an
// open Details survives live updates; a truncated body says so; Resend adds an attempt live.
// And the webhook form: every field error the server names at once, focus on the first.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, api } from './harness.js';

let server;
let browser;

before(async () => {
  // Retries 2 s apart: the second attempt comes while the test watches, and every later one
  // too until the bin answers 2xx (so a slow machine only adds 500s, never a failed message).
  server = await startServer(['--retry-schedule', '2s,2s,2s,2s,2s,2s']);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Hostile content the bin answers with: it must show as text, never as markup. */
const HOSTILE = '<img src=x onerror="window.__xss=1"><b class="injected">down</b>';

async function addWebhook(name, url) {
  return api(server.base, 'POST', '/api/webhooks', { name, url, event: 'payment_received' });
}

async function openLog(page, name) {
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name });
  await card.getByRole('button', { name: 'Delivery log' }).click();
  const log = card.getByRole('region', { name: 'Delivery log' });
  return { card, log, attempts: log.getByRole('table', { name: 'Attempts' }) };
}

/** The Details region of an attempt row, opened. */
async function openDetails(page, row) {
  const button = row.getByRole('button', { name: 'Details' });
  await button.click();
  assert.equal(await button.getAttribute('aria-expanded'), 'true');
  const id = await button.getAttribute('aria-controls');
  const details = page.locator(`[id="${id}"]`);
  await details.waitFor();
  return details;
}

const withStatus = (attempts, status) =>
  attempts.locator('tr.attempt').filter({ has: attempts.page().locator('.badge', { hasText: new RegExp(`^${status}$`) }) });

test('a 500 then a 200: both attempts with the request sent and the answer, as text', { timeout: 90_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/flaky', {
    response: { status: 500, headers: [{ name: 'x-flaky', value: 'yes' }], body: HOSTILE },
  });
  await addWebhook('Flaky', server.base + '/b/flaky/hook');
  const page = await newPage(browser.context);
  const { log, attempts } = await openLog(page, 'Flaky');
  await log.getByText('Nothing sent yet.').waitFor();

  await api(server.base, 'POST', '/api/events/payment_received/emit', {});
  const failed = withStatus(attempts, 500).first();
  await failed.waitFor({ timeout: 15_000 });
  const first = await openDetails(page, failed);
  // Marked: if a live update re-rendered the row, the mark would be gone.
  await first.evaluate((el) => {
    el.dataset.kept = 'yes';
  });

  // What went out: the URL, the signed headers, the payload.
  await first.getByText('POST ' + server.base + '/b/flaky/hook').waitFor();
  const sent = first.getByRole('table', { name: 'Request headers' });
  await sent.getByText('webhook-signature', { exact: true }).waitFor();
  await sent.getByText('webhook-id', { exact: true }).waitFor();
  await first.getByRole('group', { name: 'Request body' }).getByText('"payment_total"').waitFor();
  // What came back: the status, the bin's header, its body as the characters it sent.
  await first.getByText(/^HTTP 500 in (\d+ ms|< 1 ms)$/).waitFor();
  await first.getByRole('table', { name: 'Response headers' }).getByText('x-flaky', { exact: true }).waitFor();
  const answer = first.getByRole('group', { name: 'Response body' });
  assert.equal((await answer.innerText()).trim(), HOSTILE);
  assert.equal(await page.locator('b.injected, img[src="x"]').count(), 0, 'no markup from the body');
  assert.equal(await page.evaluate(() => window.__xss), undefined);

  // The bin recovers: the next retry is answered 200 and shows up live.
  await api(server.base, 'PATCH', '/api/bins/flaky', { response: { status: 200, body: '{"ok": true}' } });
  const ok = withStatus(attempts, 200).first();
  await ok.waitFor({ timeout: 20_000 });
  await log.getByRole('table', { name: 'Messages' }).getByText('delivered', { exact: true }).waitFor();
  // The Details opened before is still open, and the same element.
  assert.equal(await first.getAttribute('data-kept'), 'yes');
  assert.ok(await first.isVisible());
  assert.equal(await failed.getByRole('button', { name: 'Details' }).getAttribute('aria-expanded'), 'true');
  assert.ok((await attempts.locator('tr.attempt').count()) >= 2);

  const second = await openDetails(page, ok);
  await second.getByText(/^HTTP 200 in (\d+ ms|< 1 ms)$/).waitFor();
  await second.getByRole('group', { name: 'Response body' }).getByText('"ok"').waitFor();
  // A retry says when it was due and when it went; times are relative, exact on hover.
  await second.getByText('Due', { exact: true }).waitFor();
  const sentAt = second.locator('time.ago').last();
  assert.match(await sentAt.innerText(), /just now|\d+ s ago/);
  assert.ok((await sentAt.getAttribute('title')).length > 8, 'the exact time on hover');
  // On time: no "late" badge (the server was up throughout).
  assert.equal(await log.locator('.late').count(), 0);

  // At phone width the open Details fit the page.
  await page.setViewportSize({ width: 390, height: 800 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `the page is ${width} px wide at 390 px`);

  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a body cut at 64 KiB says so', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const big = 'y'.repeat(100 * 1024);
  await api(server.base, 'PUT', '/api/bins/big', { response: { status: 200, body: big } });
  await addWebhook('Big answer', server.base + '/b/big');
  const page = await newPage(browser.context);
  const { attempts } = await openLog(page, 'Big answer');
  await api(server.base, 'POST', '/api/events/payment_received/emit', {});
  const row = withStatus(attempts, 200).first();
  await row.waitFor({ timeout: 15_000 });
  const details = await openDetails(page, row);
  await details
    .getByRole('note')
    .getByText("Truncated: the answer's body was longer than 64.0 KB; the log keeps its first 64.0 KB.")
    .waitFor();
  const kept = (await details.getByRole('group', { name: 'Response body' }).innerText()).trim();
  assert.equal(kept, 'y'.repeat(64 * 1024));
  // The request was whole: no note on its side.
  assert.equal(await details.getByRole('note').count(), 1);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('Resend adds an attempt to the log, live', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/resent', {});
  await addWebhook('Resent', server.base + '/b/resent');
  const page = await newPage(browser.context);
  const { log, attempts } = await openLog(page, 'Resent');
  await api(server.base, 'POST', '/api/events/payment_received/emit', {});
  const messages = log.getByRole('table', { name: 'Messages' });
  await messages.getByText('delivered', { exact: true }).waitFor({ timeout: 15_000 });
  assert.equal(await attempts.locator('tr.attempt').count(), 1);

  await messages.getByRole('button', { name: 'Resend' }).click();
  await log.getByText(/^Queued as msg_/).waitFor();
  const resent = attempts.locator('tr.attempt').filter({ hasText: 'resend' });
  await resent.waitFor({ timeout: 15_000 });
  assert.equal(await attempts.locator('tr.attempt').count(), 2);
  // The new attempt is flagged as new, numbered on, and has its own details.
  assert.match(await resent.getAttribute('class'), /\bnew\b/);
  assert.equal((await resent.locator('td.num').first().innerText()).trim(), '2');
  const details = await openDetails(page, resent);
  await details.getByText(/^HTTP 200 in/).waitFor();
  // The message counts both attempts.
  await messages.locator('td.num', { hasText: /^2$/ }).waitFor();
  const bin = await api(server.base, 'GET', '/api/bins/resent/requests');
  assert.equal(bin.requests.length, 2, 'the bin received the message twice');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('the form shows every field error the server names, focused on the first', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  const form = page.getByRole('form', { name: 'Add New Webhook' });
  // Both pass the form's own checks; only the server refuses them, in one answer.
  await form.getByLabel('Name').fill('N'.repeat(101));
  await form.getByLabel('URL').fill('http://user:secret@127.0.0.1:9/hook');
  await form.getByLabel('Event').selectOption({ label: 'Payment Received' });
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  const nameError = form.getByText('Name: must be at most 100 characters.');
  const urlError = form.getByText('URL: must not carry a user name or password.');
  await nameError.waitFor();
  await urlError.waitFor();
  assert.equal(await form.getByLabel('Name').getAttribute('aria-invalid'), 'true');
  assert.equal(await form.getByLabel('URL').getAttribute('aria-invalid'), 'true');
  assert.equal(await form.getByLabel('Event').getAttribute('aria-invalid'), 'false');
  // Each next to its field (referenced by the field's aria-describedby).
  const describedBy = await form.getByLabel('Name').getAttribute('aria-describedby');
  assert.equal(await page.locator(`[id="${describedBy.split(' ')[0]}"]`).innerText(), 'Name: must be at most 100 characters.');
  // The first field with an error has the focus, and is on screen.
  await page.waitForFunction(() => document.activeElement?.id === 'wh-name');
  assert.ok(await form.getByLabel('Name').isVisible());
  // Nothing was created.
  const list = await api(server.base, 'GET', '/api/webhooks');
  assert.equal(list.webhooks.filter((w) => w.name.startsWith('NNN')).length, 0);

  // Fixed, the same form saves.
  await form.getByLabel('Name').fill('Fixed name');
  await form.getByLabel('URL').fill(server.base + '/b/fixed');
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await form.waitFor({ state: 'detached' });
  await page.getByRole('article', { name: 'Fixed name' }).waitFor();
  assert.deepEqual(page.errors, []);
  await page.close();
});
