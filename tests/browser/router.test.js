// The UI's routes (frontend/src/router.rs): a plain click on a link to a page of the app changes
// the page without reloading it, back and forward follow, deep links open their page, and what
// is not a plain click on an in-app link (a modified click, a download) is left to the browser.

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

/** Marks the document: the mark survives a change of page in the app, not a reload. */
const mark = (page) => page.evaluate(() => { window.__sameDocument = true; });
const sameDocument = (page) => page.evaluate(() => window.__sameDocument === true);

test('links change the page without a reload; back and forward follow', { timeout: 60_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/routed', {});
  const page = await newPage(browser.context);
  await page.goto(server.base + '/');
  await page.getByRole('link', { name: 'routed' }).waitFor();
  await mark(page);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Webhooks' }).click();
  await page.waitForURL(server.base + '/webhooks');
  await page.getByRole('heading', { name: 'Webhooks', level: 1 }).waitFor();
  assert.equal(await page.title(), 'Webhooks · Hookbin');
  assert.equal(await page.getByRole('link', { name: 'Webhooks' }).first().getAttribute('aria-current'), 'page');

  await page.goBack();
  await page.waitForURL(server.base + '/');
  await page.getByRole('link', { name: 'routed' }).click();
  await page.waitForURL(server.base + '/bins/routed');
  await page.getByRole('heading', { name: 'Bin routed' }).waitFor();
  assert.equal(await page.title(), 'Bin routed · Hookbin');

  await page.goBack();
  await page.getByRole('heading', { name: 'Bins', level: 1 }).waitFor();
  await page.goForward();
  await page.getByRole('heading', { name: 'Bin routed' }).waitFor();
  assert.equal(await sameDocument(page), true, 'no reload along the way');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a modified click and a download are the browser\'s; a deep link opens its page', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  await api(server.base, 'PUT', '/api/bins/deep', {});
  await fetch(server.base + '/b/deep/one', { method: 'POST', body: 'one' });
  const page = await newPage(browser.context);
  await page.goto(server.base + '/');
  await page.getByRole('link', { name: 'deep' }).waitFor();
  await mark(page);

  // Ctrl-click (or Cmd-click): a new tab on the bin; this one stays where it is.
  const opened = browser.context.waitForEvent('page', { timeout: 10_000 });
  await page.getByRole('link', { name: 'deep' }).click({ modifiers: ['ControlOrMeta'] });
  const tab = await opened;
  await tab.waitForURL(server.base + '/bins/deep');
  await tab.getByRole('heading', { name: 'Bin deep' }).waitFor();
  await tab.close();
  assert.equal(page.url(), server.base + '/');
  assert.equal(await sameDocument(page), true);

  // A deep link to one request opens the bin with it selected.
  await page.goto(server.base + '/bins/deep/requests/1');
  const detail = page.getByRole('article', { name: 'Selected request' });
  await detail.getByRole('heading', { name: '/one' }).waitFor();
  await mark(page);
  // Download raw is a download, not a page of the app.
  const download = page.waitForEvent('download', { timeout: 10_000 });
  await detail.getByRole('link', { name: 'Download raw' }).click();
  assert.equal(await (await download).suggestedFilename() !== '', true);
  assert.equal(page.url(), server.base + '/bins/deep/requests/1');
  assert.equal(await sameDocument(page), true);
  assert.deepEqual(page.errors, []);
  await page.close();
});
