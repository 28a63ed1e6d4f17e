// One bin's page: live updates while it is open, each body view (JSON, form, multipart, binary
// hex), copy as cURL (and the copied command replays the request byte-exact), keyboard
// navigation and search, the custom response, and a hostile request that must stay inert.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, launchBrowser, newPage, api, rawRequest } from './harness.js';

let server;
let browser;

before(async () => {
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openNewBin(t, name) {
  browser ??= await launchBrowser(t);
  if (!browser) return null;
  const bin = await api(server.base, 'POST', '/api/bins', name ? { name } : {});
  const page = await newPage(browser.context);
  await page.goto(`${server.base}/bins/${bin.id}`);
  await page.getByText('live', { exact: true }).waitFor();
  return { bin, page };
}

const detailOf = (page) => page.getByRole('article', { name: 'Selected request' });
const rowsOf = (page) => page.getByRole('listbox', { name: 'Captured requests' }).getByRole('option');

test('requests appear live, and each body view shows them', { timeout: 90_000 }, async (t) => {
  const opened = await openNewBin(t);
  if (!opened) return;
  const { bin, page } = opened;
  const send = (path, init) => fetch(bin.url + path, { signal: AbortSignal.timeout(10_000), ...init });

  // JSON, pretty and coloured, keys in their order.
  // Raw, so the duplicate header keeps its two lines and their case.
  const json = '{"zeta":1,"alpha":{"ok":true,"n":null},"list":[1.50,"s"]}';
  await rawRequest(
    server.port,
    `POST /b/${bin.id}/orders?id=7&tag=a%20b HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      'Content-Type: application/json\r\nX-Dup: one\r\nx-dup: two\r\n' +
      `Content-Length: ${json.length}\r\nConnection: close\r\n\r\n`,
    Buffer.from(json),
  );
  const rows = rowsOf(page);
  await rows.first().waitFor();
  assert.equal(await rows.count(), 1);
  await rows.first().click();
  const detail = detailOf(page);
  await detail.getByRole('tab', { name: 'JSON', selected: true }).waitFor();
  const pretty = await detail.locator('pre.json').innerText();
  assert.equal(pretty, '{\n  "zeta": 1,\n  "alpha": {\n    "ok": true,\n    "n": null\n  },\n  "list": [\n    1.50,\n    "s"\n  ]\n}');
  assert.equal(await detail.locator('pre.json .j-key').first().innerText(), '"zeta"');
  // Headers in arrival order, duplicates kept; query decoded.
  const headers = await detail.getByRole('table', { name: 'Headers' }).locator('tr').allInnerTexts();
  const dup = headers.filter((h) => /^x-dup\t/i.test(h));
  assert.deepEqual(dup, ['X-Dup\tone', 'x-dup\ttwo']);
  const query = await detail.getByRole('table', { name: 'Query parameters' }).locator('tr').allInnerTexts();
  assert.deepEqual(query, ['id\t7', 'tag\ta b']);
  await detail.getByText('/orders?id=7&tag=a%20b').first().waitFor();

  // A form, decoded.
  await send('/form', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'name=J%C3%BCrgen+M&tag=a&tag=%3Cb%3E',
  });
  await rows.nth(1).waitFor();
  await rows.first().click();
  await detail.getByRole('tab', { name: 'Form', selected: true }).waitFor();
  const form = await detail.getByRole('table', { name: 'Form fields' }).locator('tr').allInnerTexts();
  assert.deepEqual(form, ['name\tJürgen M', 'tag\ta', 'tag\t<b>']);
  await detail.getByRole('tab', { name: 'Raw' }).click();
  assert.equal(await detail.locator('pre.raw').innerText(), 'name=J%C3%BCrgen+M&tag=a&tag=%3Cb%3E');

  // Multipart, split into parts.
  const boundary = 'XyZzY';
  const multipart =
    `--${boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nHello\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n` +
    `Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n--${boundary}--\r\n`;
  await send('/upload', {
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    body: Buffer.from(multipart, 'latin1'),
  });
  await rows.nth(2).waitFor();
  await rows.first().click();
  await detail.getByRole('tab', { name: 'Multipart', selected: true }).waitFor();
  await detail.getByRole('heading', { name: /^Part 1: title/ }).waitFor();
  await detail.getByRole('heading', { name: /^Part 2: file \(file a\.bin\)/ }).waitFor();
  await detail.locator('.part pre.hex').getByText(/^00000000 {2}00 01 02 /).waitFor();

  // Binary: not UTF-8, so the hex dump.
  const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff, 0x10, 0x41]);
  await send('/image', { method: 'PUT', headers: { 'content-type': 'image/png' }, body: bytes });
  await rows.nth(3).waitFor();
  await rows.first().click();
  await detail.getByRole('tab', { name: 'Hex', selected: true }).waitFor();
  assert.equal(await detail.getByRole('tab').count(), 1, 'binary bodies have only the hex view');
  const hex = await detail.locator('pre.hex').innerText();
  assert.match(hex, /^00000000 {2}89 50 4e 47 00 ff 10 41 {2}/);
  assert.match(hex, /\|\.PNG\.\.\.A\|/);

  assert.equal(await rows.count(), 4, 'all four arrived without a reload');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('copy as cURL gives a command that replays the request byte-exact', { timeout: 60_000 }, async (t) => {
  const opened = await openNewBin(t);
  if (!opened) return;
  const { bin, page } = opened;
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  const body = `{"quote":"it's \\"here\\"","dollar":"$HOME","nl":"a\\nb"}`;
  await fetch(`${bin.url}/replay/it's?a=1&b='x'`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', 'X-Token': "a'b $c" },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  await rowsOf(page).first().click();
  const detail = detailOf(page);
  await detail.getByRole('button', { name: 'Copy as cURL' }).click();
  await detail.getByRole('button', { name: 'Copied' }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  const shown = await detail.getByLabel('cURL command').innerText();
  assert.equal(copied, shown);
  assert.ok(copied.startsWith("curl \\\n  -X 'PATCH' \\\n  'http://127.0.0.1:"), copied);
  assert.ok(copied.includes(`/b/${bin.id}/replay/it'\\''s?a=1&b=%27x%27' `), copied);
  assert.ok(!/-H 'Host:/i.test(copied) && !/-H 'Content-Length:/i.test(copied), copied);
  assert.match(copied, /-H 'X-Token: a'\\''b \$c'/);

  // Run it: the bin receives the same method, path, query, header and body.
  execFileSync('bash', ['-c', `${copied} -s -o /dev/null`], { timeout: 15_000 });
  const page2 = await api(server.base, 'GET', `/api/bins/${bin.id}/requests?limit=2`);
  const [replayed, original] = page2.requests;
  assert.equal(replayed.method, original.method);
  assert.equal(replayed.path, original.path);
  assert.equal(replayed.query, original.query);
  assert.equal(replayed.body, original.body);
  assert.equal(replayed.body, body);
  assert.ok(replayed.headers.some((h) => h.name === 'X-Token' && h.value === "a'b $c"));
  await page.close();
});

test('keyboard: j/k and arrows move the selection, / searches', { timeout: 60_000 }, async (t) => {
  const opened = await openNewBin(t);
  if (!opened) return;
  const { bin, page } = opened;
  const post = (p) =>
    fetch(bin.url + p, { method: 'POST', body: `body of ${p}`, signal: AbortSignal.timeout(10_000) });
  // The first request is selected on its own (none was), whether it came live or with the
  // page's first load; the ones after it leave the selection where it is. (Sent together, the
  // three could all land before the page's first load, which then selects the newest.)
  const selected = () => rowsOf(page).and(page.getByRole('option', { selected: true }));
  await post('/one');
  await selected().getByText('/one').waitFor();
  await post('/two');
  await post('/three');
  await rowsOf(page).nth(2).waitFor();
  await selected().getByText('/one').waitFor();
  await page.locator('body').click({ position: { x: 5, y: 300 } });
  await page.keyboard.press('k');
  await selected().getByText('/two').waitFor();
  await page.keyboard.press('ArrowUp');
  await selected().getByText('/three').waitFor();
  await page.keyboard.press('j');
  await selected().getByText('/two').waitFor();
  await page.keyboard.press('ArrowDown');
  await selected().getByText('/one').waitFor();
  await page.keyboard.press('k');
  await selected().getByText('/two').waitFor();
  await detailOf(page).getByText('body of /two').waitFor();

  await page.keyboard.press('/');
  const search = page.getByLabel('Search requests');
  assert.equal(await search.evaluate((el) => el === document.activeElement), true);
  await page.keyboard.type('of /thr');
  await page.waitForFunction(() => document.querySelectorAll('[role=option]').length === 1);
  await rowsOf(page).getByText('/three').waitFor();
  // A live request that does not match stays out; one that does comes in.
  await fetch(bin.url + '/other', { method: 'POST', body: 'nope', signal: AbortSignal.timeout(10_000) });
  await fetch(bin.url + '/again', { method: 'POST', body: 'x of /thr x', signal: AbortSignal.timeout(10_000) });
  await rowsOf(page).getByText('/again').waitFor();
  assert.equal(await rowsOf(page).count(), 2);
  await search.fill('');
  await page.waitForFunction(() => document.querySelectorAll('[role=option]').length === 5);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('the custom response is what the bin answers', { timeout: 60_000 }, async (t) => {
  const opened = await openNewBin(t, 'custom-response');
  if (!opened) return;
  const { bin, page } = opened;
  await page.getByText('Custom response').click();
  await page.getByLabel('Status').fill('201');
  await page.getByLabel('Headers (one "Name: value" per line)').fill('X-Hook: yes\nContent-Type: text/plain');
  await page.getByLabel('Default body (JSON naming the request id)').uncheck();
  await page.getByLabel('Body', { exact: true }).fill('created!');
  await page.getByLabel('Delay (ms)').fill('10');
  await page.getByRole('button', { name: 'Save response' }).click();
  await page.getByText('Saved.').waitFor();
  const res = await fetch(bin.url + '/x', { method: 'POST', body: 'hi', signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get('x-hook'), 'yes');
  assert.equal(await res.text(), 'created!');

  // A bad status is refused next to its field.
  await page.getByLabel('Status').fill('42');
  await page.getByRole('button', { name: 'Save response' }).click();
  await page.getByText('A status code from 200 to 599.').waitFor();
  assert.equal(await page.getByLabel('Status').getAttribute('aria-invalid'), 'true');
  await page.close();
});

test('delete a request, clear the bin, delete the bin', { timeout: 60_000 }, async (t) => {
  const opened = await openNewBin(t);
  if (!opened) return;
  const { bin, page } = opened;
  for (const p of ['/a', '/b']) {
    await fetch(bin.url + p, { method: 'POST', body: p, signal: AbortSignal.timeout(10_000) });
  }
  const rows = rowsOf(page);
  await rows.nth(1).waitFor();
  await rows.first().click();
  await detailOf(page).getByRole('button', { name: 'Delete' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[role=option]').length === 1);
  assert.equal((await api(server.base, 'GET', `/api/bins/${bin.id}/requests`)).total, 1);

  await page.getByRole('button', { name: 'Clear all requests' }).click();
  await page.getByRole('button', { name: 'Confirm: clear all requests' }).click();
  await page.getByText('No requests yet.', { exact: false }).waitFor();
  assert.equal((await api(server.base, 'GET', `/api/bins/${bin.id}/requests`)).total, 0);

  // Deleted elsewhere: the page says so and stops listening.
  const other = await api(server.base, 'POST', '/api/bins', {});
  const otherPage = await newPage(browser.context);
  await otherPage.goto(`${server.base}/bins/${other.id}`);
  await otherPage.getByText('live', { exact: true }).waitFor();
  await api(server.base, 'DELETE', `/api/bins/${other.id}`);
  await otherPage.getByText('This bin no longer exists').waitFor();
  await otherPage.getByText('closed', { exact: true }).waitFor();
  await otherPage.close();

  await page.getByRole('button', { name: 'Delete bin' }).click();
  await page.getByRole('button', { name: 'Confirm: delete this bin' }).click();
  await page.waitForURL(server.base + '/');
  const { bins } = await api(server.base, 'GET', '/api/bins');
  assert.ok(!bins.some((b) => b.id === bin.id));
  await page.close();
});

test('a hostile request stays inert: script and onerror show as text', { timeout: 60_000 }, async (t) => {
  const opened = await openNewBin(t);
  if (!opened) return;
  const { bin, page } = opened;
  const evil = '<img src=x onerror=alert(1)>';
  const body = `${evil}<script>window.__pwned=1;alert(2)</script>`;
  // HTTP forbids a raw < in the request target, so the path breaks out of attributes instead.
  const path = `/"onmouseover="alert(3)"'/%3Cscript%3Ealert(4)%3C/script%3E`;
  const head =
    `POST /b/${bin.id}${path}?q=%22onfocus%3D%22alert(5)&x='y' HTTP/1.1\r\n` +
    `Host: 127.0.0.1:${server.port}\r\n` +
    `X-Evil: ${evil}\r\n` +
    `X-Script: <script>alert(6)</script>\r\n` +
    'Content-Type: text/html\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n';
  const answer = await rawRequest(server.port, head, Buffer.from(body));
  assert.match(answer, /^HTTP\/1\.1 200/, answer);

  const row = rowsOf(page).first();
  await row.waitFor();
  assert.ok((await row.innerText()).includes(path));
  await row.click();
  const detail = detailOf(page);
  await detail.getByRole('tab', { name: 'Raw', selected: true }).waitFor();
  assert.equal(await detail.locator('pre.raw').innerText(), body);
  const headers = detail.getByRole('table', { name: 'Headers' });
  await headers.getByText(evil).waitFor();
  await headers.getByText('<script>alert(6)</script>').waitFor();
  await detail.getByRole('heading', { name: path }).waitFor();
  await detail.getByRole('table', { name: 'Query parameters' }).getByText('"onfocus="alert(5)').waitFor();
  await detail.getByRole('tab', { name: 'Hex' }).click();
  await detail.locator('pre.hex').waitFor();
  await row.hover();
  await page.waitForTimeout(300);

  // Nothing ran and nothing became markup.
  assert.deepEqual(page.dialogs, []);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator('img').count(), 0);
  assert.equal(await page.locator('main script').count(), 0);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('theme: follows the system, the toggle overrides it and is remembered', { timeout: 60_000 }, async (t) => {
  browser ??= await launchBrowser(t);
  if (!browser) return;
  const page = await newPage(browser.context);
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(server.base + '/');
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(await bg(), 'rgb(20, 23, 28)');
  await page.getByRole('button', { name: 'Light theme' }).click();
  assert.equal(await bg(), 'rgb(247, 248, 250)');
  await page.reload();
  await page.getByRole('button', { name: 'Dark theme' }).waitFor();
  assert.equal(await bg(), 'rgb(247, 248, 250)');
  await page.evaluate(() => localStorage.removeItem('hookbin-theme'));
  await page.close();
});
