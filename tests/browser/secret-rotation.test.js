// Rotating a webhook's signing secret from its card: a confirm with the grace period, then the
// card shows the new secret (masked, Show, Copy) and when the previous one expires (relative,
// the exact time on hover). A delivery sent during the grace period carries two `v1,`
// signatures, checked here with a real HMAC-SHA256 over the exact bytes the bin received: one
// valid for the old secret and one for the new.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
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

/** Standard Webhooks: does any `v1,` entry of `signature` match `secret` over `id.ts.body`? */
function signedBy(secret, id, timestamp, body, signature) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key)
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();
  return signature.split(' ').some((entry) => {
    const [version, b64] = entry.split(',');
    const got = Buffer.from(b64 ?? '', 'base64');
    return version === 'v1' && got.length === expected.length && timingSafeEqual(got, expected);
  });
}

test('rotate the secret: the card shows both, and a delivery verifies with each', { timeout: 90_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/rotation', {});
  const before = await api(server.base, 'POST', '/api/webhooks', {
    name: 'Rotating',
    url: server.base + '/b/rotation/hook',
    event: 'payment_received',
  });
  const oldSecret = before.secret;

  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: 'Rotating' });
  const secret = card.locator('.secret-value');
  await secret.getByText('whsec_••••••••••••').waitFor();
  assert.equal(await card.locator('.previous-secret').count(), 0);

  // Asked first; Cancel changes nothing.
  await card.getByRole('button', { name: 'Rotate secret' }).click();
  const confirm = card.getByRole('group', { name: 'Rotate the signing secret' });
  await confirm.getByText('A new secret will sign every delivery.').waitFor();
  assert.equal(await confirm.getByLabel('Grace period').inputValue(), '24h');
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await confirm.waitFor({ state: 'detached' });
  assert.equal((await api(server.base, 'GET', '/api/webhooks/Rotating')).secret, oldSecret);

  // Rotate with one hour of grace.
  await card.getByRole('button', { name: 'Rotate secret' }).click();
  await confirm.getByLabel('Grace period').selectOption({ label: '1 hour' });
  await confirm.getByRole('button', { name: 'Rotate', exact: true }).click();
  await card.getByText('Secret rotated: give the new secret to the receiver.').waitFor();
  await confirm.waitFor({ state: 'detached' });
  const after = await api(server.base, 'GET', '/api/webhooks/Rotating');
  assert.notEqual(after.secret, oldSecret);
  assert.equal(after.previous_secret, oldSecret);

  // The previous secret's end: relative on screen, the exact time on hover.
  const previous = card.locator('.previous-secret');
  await previous.getByText(/^The previous secret also signs every delivery; it expires in (59|60) min\.$/).waitFor();
  const until = previous.locator('time');
  assert.equal(await until.getAttribute('datetime'), after.previous_secret_expires_at);
  assert.match(await until.getAttribute('title'), /\d{4}/);

  // The new secret: masked, shown on request, copyable.
  await secret.getByText('whsec_••••••••••••').waitFor();
  await card.getByRole('button', { name: 'Show' }).click();
  await secret.getByText(after.secret, { exact: true }).waitFor();
  await card.getByRole('button', { name: 'Copy the signing secret' }).waitFor();

  // A delivery now: two signatures, one per secret, on the bytes the bin got.
  await card.getByRole('button', { name: 'Send Test Event' }).click();
  const dialog = page.getByRole('dialog', { name: 'Send Test Event' });
  await dialog.getByText('Success: the test event was delivered.').waitFor();
  const messageId = (await dialog.locator('.message-id').textContent()).trim();
  const page1 = await api(server.base, 'GET', '/api/bins/rotation/requests');
  assert.equal(page1.requests.length, 1);
  const seq = page1.requests[0].seq;
  const captured = await api(server.base, 'GET', `/api/bins/rotation/requests/${seq}`);
  const header = (name) => captured.headers.find((h) => h.name.toLowerCase() === name)?.value;
  assert.equal(header('webhook-id'), messageId);
  const signature = header('webhook-signature');
  assert.equal(signature.split(' ').length, 2, signature);
  const raw = await fetch(`${server.base}/api/bins/rotation/requests/${seq}/raw`, {
    signal: AbortSignal.timeout(10_000),
  });
  const body = Buffer.from(await raw.arrayBuffer());
  const ts = header('webhook-timestamp');
  assert.ok(signedBy(after.secret, messageId, ts, body, signature), 'signed with the new secret');
  assert.ok(signedBy(oldSecret, messageId, ts, body, signature), 'signed with the old secret');
  // The check is real: another key, or another byte, does not verify.
  assert.ok(!signedBy('whsec_' + Buffer.alloc(32, 7).toString('base64'), messageId, ts, body, signature));
  assert.ok(!signedBy(after.secret, messageId, ts, Buffer.concat([body, Buffer.from(' ')]), signature));

  assert.deepEqual(page.errors, []);
  await page.close();
});
