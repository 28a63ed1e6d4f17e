// A server started with --auth-token: the UI asks for the token once (however many calls were
// refused), trades it for the session cookie (HttpOnly, SameSite=Strict), keeps the token in the
// tab's sessionStorage so a lost cookie is replaced without asking again, loads what was refused,
// and the live streams work with the cookie. A wrong token gets the server's error and no cookie;
// nothing is shown before the token is given.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser } from './harness.js';

const TOKEN = 'browser-admin-token-0123456789';

let server;
let browser;

before(async () => {
  server = await startServer(['--auth-token', TOKEN]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page that answers every prompt with `answer` and records the prompts. */
async function pageAnswering(context, answer) {
  const page = await context.newPage();
  page.errors = [];
  page.prompts = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('dialog', async (d) => {
    page.prompts.push(d.message());
    await (d.type() === 'prompt' ? d.accept(answer) : d.dismiss()).catch(() => {});
  });
  return page;
}

async function adminCall(method, route, body) {
  const res = await fetch(server.base + route, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  assert.ok(res.ok, `${method} ${route}: ${res.status}`);
  return res.json();
}

test('the UI asks for the token once, then loads and streams with the session cookie', { timeout: 90_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await adminCall('PUT', '/api/bins/private-bin', {});

  const page = await pageAnswering(browser.context, TOKEN);
  await page.goto(server.base + '/');
  // The refused list loads once the session is there.
  await page.getByRole('link', { name: 'private-bin' }).waitFor();
  assert.equal(page.prompts.length, 1, `asked once: ${page.prompts}`);
  assert.match(page.prompts[0], /access token/);

  const cookies = await browser.context.cookies(server.base);
  const session = cookies.find((c) => c.name === 'hookbin_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.ok(!session.value.includes(TOKEN), 'the cookie is not the token');

  // A bin's page streams with the cookie alone: no prompt, live, and a capture shows up.
  await page.getByRole('link', { name: 'private-bin' }).click();
  await page.getByText('live', { exact: true }).waitFor();
  const sent = await fetch(server.base + '/b/private-bin/from-outside', {
    method: 'POST',
    body: '{"hello":"auth"}',
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(sent.status, 200);
  await page
    .getByRole('listbox', { name: 'Captured requests' })
    .getByRole('option')
    .first()
    .waitFor();
  assert.equal(page.prompts.length, 1, 'no second prompt');
  assert.deepEqual(page.errors, []);
});

test('a wrong token gets the server error and no session', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await browser.context.clearCookies();
  const page = await pageAnswering(browser.context, 'not-the-token-at-all');
  await page.goto(server.base + '/');
  await page.getByRole('alert').filter({ hasText: 'admin token' }).first().waitFor();
  assert.ok(page.prompts.length >= 1);
  const cookies = await browser.context.cookies(server.base);
  assert.equal(cookies.find((c) => c.name === 'hookbin_session'), undefined);
  assert.deepEqual(page.errors, []);
});

test('the tab keeps the token for its session: a lost cookie is replaced without asking again', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await browser.context.clearCookies();
  await adminCall('PUT', '/api/bins/kept-token-bin', {});
  const page = await pageAnswering(browser.context, TOKEN);
  await page.goto(server.base + '/');
  await page.getByRole('link', { name: 'kept-token-bin' }).waitFor();
  assert.equal(page.prompts.length, 1);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('hookbin-token')), TOKEN);
  // The session cookie is gone (expired, or the server forgot it): the tab trades its token again.
  await browser.context.clearCookies();
  await page.reload();
  await page.getByRole('link', { name: 'kept-token-bin' }).waitFor();
  assert.equal(page.prompts.length, 1, 'not asked a second time');
  assert.ok((await browser.context.cookies(server.base)).some((c) => c.name === 'hookbin_session'));
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('nothing is shown before the token is given', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await browser.context.clearCookies();
  await adminCall('PUT', '/api/bins/secret-bin-name', {});
  const page = await browser.context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  let asked = 0;
  page.on('dialog', async (d) => {
    asked++;
    await d.dismiss().catch(() => {});
  });
  await page.goto(server.base + '/');
  await page.getByRole('alert').first().waitFor();
  assert.ok(asked >= 1);
  assert.equal(await page.getByText('secret-bin-name').count(), 0);
  assert.deepEqual(page.errors, []);
  await page.close();
});
