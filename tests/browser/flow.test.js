// The seed's flow exactly as Ultimate Multisite's "Webhooks (v2)" page describes it, and the
// form's edges a new user trips over: several events kept on edit, errors that take the user
// to the first bad field, and "Use a new bin" then Cancel leaving no bin behind.

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

test('Add New Webhook saves with a button of that name, closes, scrolls to and highlights the new webhook', { timeout: 60_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  // Enough webhooks that the new one lands below the fold.
  for (let i = 0; i < 8; i++) {
    await api(server.base, 'POST', '/api/webhooks', {
      name: `Existing ${i}`,
      url: 'http://127.0.0.1:9/x',
      event: 'payment_received',
    });
  }
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('article', { name: 'Existing 7' }).waitFor();
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  const form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByLabel('Name').fill('Zeta newest');
  await form.getByLabel('URL').fill('http://127.0.0.1:9/new');
  await form.getByLabel('Event').selectOption({ label: 'Payment Received' });
  // The seed: "click the Add New Webhook button to save the webhook".
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await form.waitFor({ state: 'detached' });
  const card = page.getByRole('article', { name: 'Zeta newest' });
  await card.and(page.locator('[data-highlighted="true"]')).waitFor();
  // Scrolled to: the card is inside the viewport.
  await page.waitForFunction(() => {
    const el = [...document.querySelectorAll('article.webhook')].find((a) =>
      a.textContent.includes('Zeta newest'),
    );
    if (!el) return false;
    const r = el.getBoundingClientRect();
    return r.top >= 0 && r.top < window.innerHeight;
  }, null, { timeout: 5_000 });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('editing a webhook with several events keeps every one of them', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const hook = await api(server.base, 'POST', '/api/webhooks', {
    name: 'Multi events',
    url: 'http://127.0.0.1:9/multi',
    events: ['payment_received', 'site_published'],
  });
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: 'Multi events' });
  await card.getByRole('button', { name: 'Edit' }).click();
  const form = card.getByRole('form', { name: 'Edit webhook' });
  const select = form.getByLabel('Event');
  await page.waitForFunction(
    (id) => document.getElementById(id)?.selectedOptions.length === 2,
    `wh-${hook.id}-event`,
    { timeout: 5_000 },
  );
  const picked = await select.evaluate((s) => [...s.selectedOptions].map((o) => o.value));
  assert.deepEqual(picked.sort(), ['payment_received', 'site_published']);
  await form.getByLabel('Name').fill('Multi events renamed');
  await form.getByRole('button', { name: 'Save changes' }).click();
  await page.getByRole('article', { name: 'Multi events renamed' }).waitFor();
  const saved = await api(server.base, 'GET', `/api/webhooks/${hook.id}`);
  assert.deepEqual([...saved.events].sort(), ['payment_received', 'site_published']);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('errors show next to their fields and the first bad field gets the focus', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  const form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByLabel('Name').fill('x');
  await form.getByLabel('URL').fill('ftp://nope');
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await page.locator('#wh-name-error').getByText('Name must be at least 2 characters.').waitFor();
  await page.locator('#wh-url-error').getByText('URL must start with http:// or https://.').waitFor();
  await page.waitForFunction(() => document.activeElement?.id === 'wh-name', null, { timeout: 5_000 });
  // Fix the name only: the URL is now the first error, and takes the focus.
  await form.getByLabel('Name').fill('Fine name');
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await page.waitForFunction(() => document.activeElement?.id === 'wh-url', null, { timeout: 5_000 });
  // An error the server finds lands next to its field too (the name is taken).
  await api(server.base, 'POST', '/api/webhooks', { name: 'Taken', url: 'http://127.0.0.1:9/t', event: 'payment_received' });
  await form.getByLabel('Name').fill('Taken');
  await form.getByLabel('URL').fill('http://127.0.0.1:9/other');
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await page.locator('#wh-name-error').filter({ hasText: /taken|exists|already/i }).waitFor();
  await page.waitForFunction(() => document.activeElement?.id === 'wh-name', null, { timeout: 5_000 });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('"Use a new bin" then Cancel leaves no bin behind; saving keeps it', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const before = (await api(server.base, 'GET', '/api/bins')).bins.map((b) => b.id);
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  let form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByRole('button', { name: 'Use a new bin' }).click();
  await form.getByRole('link', { name: /^open bin / }).waitFor();
  const url = await form.getByLabel('URL').inputValue();
  assert.ok((await api(server.base, 'GET', '/api/bins')).bins.some((b) => b.url === url));
  await form.getByRole('button', { name: 'Cancel' }).click();
  await form.waitFor({ state: 'detached' });
  // The delete is a request of its own: wait (bounded) until the server has it.
  const deadline = Date.now() + 5_000;
  for (;;) {
    const bins = (await api(server.base, 'GET', '/api/bins')).bins;
    if (!bins.some((b) => b.url === url)) break;
    assert.ok(Date.now() < deadline, 'the new bin was not deleted on Cancel');
    await page.waitForTimeout(50);
  }

  // Saved with the new bin's URL: the bin stays.
  await page.getByRole('button', { name: 'Add New Webhook' }).click();
  form = page.getByRole('form', { name: 'Add New Webhook' });
  await form.getByLabel('Name').fill('Kept bin');
  await form.getByRole('button', { name: 'Use a new bin' }).click();
  await form.getByRole('link', { name: /^open bin / }).waitFor();
  const kept = await form.getByLabel('URL').inputValue();
  await form.getByRole('button', { name: 'Add New Webhook', exact: true }).click();
  await page.getByRole('article', { name: 'Kept bin' }).waitFor();
  const after = (await api(server.base, 'GET', '/api/bins')).bins;
  assert.ok(after.some((b) => b.url === kept), 'the saved webhook\'s bin is kept');
  assert.equal(after.length, before.length + 1);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a webhook\'s signing secret is hidden until shown, and copies', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const hook = await api(server.base, 'POST', '/api/webhooks', {
    name: 'Has a secret',
    url: 'http://127.0.0.1:9/s',
    event: 'payment_received',
  });
  assert.match(hook.secret, /^whsec_/);
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  const page = await newPage(browser.context);
  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: 'Has a secret' });
  const value = card.locator('.secret-value');
  await value.getByText('whsec_••••••••••••', { exact: true }).waitFor();
  assert.equal((await card.innerText()).includes(hook.secret), false, 'hidden until asked for');
  await card.getByRole('button', { name: 'Show' }).click();
  await value.getByText(hook.secret, { exact: true }).waitFor();
  await card.getByRole('button', { name: 'Hide' }).click();
  await value.getByText('whsec_••••••••••••', { exact: true }).waitFor();
  await card.getByRole('button', { name: 'Copy the signing secret' }).click();
  await card.getByRole('button', { name: 'Copy the signing secret' }).getByText('Copied').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), hook.secret);
  assert.deepEqual(page.errors, []);
  await page.close();
});
