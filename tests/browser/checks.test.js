// A bin's Checks panel (JSON Schema, signature secret and scheme, set through the bin settings
// API), the list filtered by signature, badges that explain themselves; per request Replay to
// URL; per bin Export as HAR and NDJSON.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
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

test('Checks: set a schema and a secret, filter by signature, badges explain themselves', { timeout: 90_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/checked', {});
  const secret = 'whsec_' + randomBytes(24).toString('base64');
  const page = await newPage(browser.context);
  await page.goto(server.base + '/bins/checked');
  await page.getByText('Checks', { exact: true }).click();
  const form = page.getByRole('form', { name: 'Checks' });
  await form.getByLabel('JSON Schema').fill('{"type": "object", "required": ["must_have"]}');
  await form.getByLabel('Signature scheme').selectOption({ label: 'Standard Webhooks' });
  await form.getByLabel('Secret').fill(secret);
  await form.getByRole('button', { name: 'Save checks' }).click();
  await form.getByText('Saved: new requests are checked.').waitFor();
  const bin = await api(server.base, 'GET', '/api/bins/checked');
  assert.deepEqual(bin.schema, { type: 'object', required: ['must_have'] });
  assert.equal(bin.signature_scheme, 'standard');
  assert.equal(await form.getByLabel('Secret').inputValue(), '', 'the secret is not left on screen');

  // A bad schema is refused next to its field.
  await form.getByLabel('JSON Schema').fill('{"type": 12}');
  await form.getByRole('button', { name: 'Save checks' }).click();
  await page.locator('#checks-schema-error').filter({ hasText: /schema/i }).waitFor();
  await form.getByLabel('JSON Schema').fill('{"type": "object", "required": ["must_have"]}');

  // Signed by the sender with the same secret: valid. Unsigned: missing. Tampered: invalid.
  const hook = await api(server.base, 'POST', '/api/webhooks', {
    name: 'Signed', url: server.base + '/b/checked/signed', event: 'payment_received', secret,
  });
  await api(server.base, 'POST', `/api/webhooks/${hook.id}/test`);
  await fetch(server.base + '/b/checked/unsigned', { method: 'POST', body: '{"must_have": 1}' });
  await fetch(server.base + '/b/checked/tampered', {
    method: 'POST',
    headers: {
      'webhook-id': 'msg_x',
      'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
      'webhook-signature': 'v1,' + Buffer.alloc(32).toString('base64'),
    },
    body: '{}',
  });
  const rows = page.getByRole('listbox', { name: 'Captured requests' }).getByRole('option');
  await page.waitForFunction(() => document.querySelectorAll('.req-row').length === 3);
  const filter = page.getByLabel('Signature', { exact: true });
  for (const [label, path] of [['Valid signature', '/signed'], ['Missing signature', '/unsigned'], ['Invalid signature', '/tampered']]) {
    await filter.selectOption({ label });
    await page.waitForFunction((p) => {
      const r = [...document.querySelectorAll('.req-row .path')];
      return r.length === 1 && r[0].textContent === p;
    }, path, { timeout: 5_000 });
  }
  await page.locator('.list-summary .count').getByText('1 matching').waitFor();
  // The badge says what it means, on hover (title) and to a screen reader or keyboard (focus).
  const badge = rows.first().locator('.badge', { hasText: 'signature invalid' });
  assert.match(await badge.getAttribute('title'), /^Signature invalid: it does not match the bin's secret\./);
  await badge.focus();
  assert.equal(await badge.evaluate((b) => b === document.activeElement), true);
  const schemaBadge = rows.first().locator('.badge', { hasText: 'schema ✗' });
  assert.match(await schemaBadge.getAttribute('aria-label'), /must_have/);
  await filter.selectOption({ label: 'Any signature' });
  await page.waitForFunction(() => document.querySelectorAll('.req-row').length === 3);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('Replay to URL sends the request again; Export downloads HAR and NDJSON', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const received = [];
  let gotOne;
  const arrived = new Promise((r) => { gotOne = r; });
  const target = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, body: Buffer.concat(chunks).toString() });
      res.writeHead(201, { 'content-type': 'text/plain' });
      res.end('target says hi');
      gotOne();
    });
  });
  await new Promise((r) => target.listen(0, '127.0.0.1', r));
  t.after(() => target.close());
  await api(server.base, 'PUT', '/api/bins/replayed', {});
  await fetch(server.base + '/b/replayed/orders?x=1', { method: 'PUT', body: 'replay me' });
  await fetch(server.base + '/b/replayed/second', { method: 'POST', body: 'two' });

  const page = await newPage(browser.context);
  await page.goto(server.base + '/bins/replayed/requests/1');
  const detail = page.getByRole('article', { name: 'Selected request' });
  await detail.getByText('Replay to URL').click();
  const form = detail.getByRole('form', { name: 'Replay to URL' });
  await form.getByLabel('Send this request again to').fill(`http://127.0.0.1:${target.address().port}/hook`);
  await form.getByRole('button', { name: 'Replay' }).click();
  await detail.getByText(/^HTTP 201 in (\d+ ms|< 1 ms) · /).waitFor();
  await detail.locator('pre.response').getByText('target says hi').waitFor();
  await arrived;
  assert.deepEqual(received, [{ method: 'PUT', url: '/hook/orders?x=1', body: 'replay me' }]);

  for (const [label, check] of [
    ['Export HAR', (text) => assert.equal(JSON.parse(text).log.entries.length, 2)],
    ['Export NDJSON', (text) => {
      const lines = text.trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(lines.map((r) => r.seq), [1, 2]);
    }],
  ]) {
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 10_000 }),
      page.getByRole('link', { name: label }).click(),
    ]);
    check(readFileSync(await download.path(), 'utf8'));
  }
  // Copy as cURL is there too.
  await detail.getByRole('button', { name: 'Copy as cURL' }).waitFor();
  assert.deepEqual(page.errors, []);
  await page.close();
});
