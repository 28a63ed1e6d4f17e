// Nothing overflows the viewport at phone width (390 px) on any page: long bin names, long URLs
// and paths, a truncated request, an open delivery log, the Send Test Event dialog, the forms.

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

const WIDTH = 390;

async function assertFits(page, what) {
  // Layout settles after the data arrives: measured once the page says it is quiet.
  await page.waitForLoadState('load');
  const { width, culprits } = await page.evaluate((max) => {
    const width = document.documentElement.scrollWidth;
    const over = (el) => el.getClientRects().length && el.getBoundingClientRect().right > max + 0.5;
    // The outermost elements that stick out (their parent does not).
    const culprits = [...document.querySelectorAll('body *')]
      .filter((el) => over(el) && !(el.parentElement && over(el.parentElement)))
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')} right=${Math.round(el.getBoundingClientRect().right)}`);
    return { width, culprits };
  }, WIDTH);
  if (width > WIDTH) overflows.push(`${what}: page is ${width} px wide at ${WIDTH} px: ${culprits.join('; ')}`);
}

// Every page is measured; the test lists every overflow at once.
const overflows = [];

test('no page overflows 390 px', { timeout: 120_000 }, async (t) => {
  browser = await launchBrowser(t);
  if (!browser) return;
  const longName = 'a-very-long-bin-name-' + 'x'.repeat(43);
  await api(server.base, 'PUT', `/api/bins/${longName}`, { limits: { max_body_bytes: 16 } });
  const longPath = '/' + 'segment-without-breaks'.repeat(8) + '?' + 'query=' + 'v'.repeat(120);
  await fetch(server.base + `/b/${longName}` + longPath, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-very-long-header-name-for-testing-widths': 'y'.repeat(200) },
    body: JSON.stringify({ long: 'z'.repeat(400) }),
  });
  const uuidBin = await api(server.base, 'POST', '/api/bins', {});
  await fetch(uuidBin.url + '/x', { method: 'POST', body: 'hello' });
  const hook = await api(server.base, 'POST', '/api/webhooks', {
    name: 'A webhook with a rather long name to wrap on a phone screen',
    url: `${uuidBin.url}/` + 'deep/'.repeat(30),
    events: ['payment_received', 'site_published'],
  });
  await api(server.base, 'POST', `/api/webhooks/${hook.id}/test`);

  const page = await newPage(browser.context);
  await page.setViewportSize({ width: WIDTH, height: 844 });

  await page.goto(server.base + '/');
  await page.locator('table.bins').waitFor();
  await assertFits(page, 'bins list');

  await page.goto(server.base + `/bins/${longName}`);
  await page.getByRole('article', { name: 'Selected request' }).getByText('Truncated', { exact: false }).first().waitFor();
  await assertFits(page, 'bin with a long name and a truncated request');

  await page.goto(server.base + `/bins/${uuidBin.id}`);
  await page.getByRole('article', { name: 'Selected request' }).waitFor();
  await assertFits(page, 'bin named by a UUID');

  await page.goto(server.base + '/bins/does-not-exist-' + 'q'.repeat(49));
  await page.getByRole('button', { name: 'Create this bin' }).waitFor();
  await assertFits(page, 'missing bin');

  await page.goto(server.base + '/no/such/' + 'page'.repeat(30));
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  await assertFits(page, 'page not found');

  await page.goto(server.base + '/webhooks');
  const card = page.getByRole('article', { name: /A webhook with a rather long name/ });
  await card.getByRole('button', { name: 'Delivery log' }).click();
  await card.getByRole('region', { name: 'Delivery log' }).getByText('delivered').first().waitFor();
  await assertFits(page, 'webhooks with an open delivery log');

  await card.getByRole('button', { name: 'Edit' }).click();
  await card.getByRole('form', { name: 'Edit webhook' }).waitFor();
  await assertFits(page, 'edit form');

  await page.getByRole('button', { name: 'Add New Webhook' }).first().click();
  await page.getByRole('form', { name: 'Add New Webhook' }).locator('.preview .json').first().waitFor();
  await assertFits(page, 'add form');

  await card.getByRole('button', { name: 'Send Test Event' }).click();
  const dialog = page.getByRole('dialog', { name: 'Send Test Event' });
  await dialog.getByRole('form', { name: 'Event to send' }).waitFor();
  await assertFits(page, 'send test event dialog');
  assert.deepEqual(overflows, []);
  assert.deepEqual(page.errors, []);
  await page.close();
});
