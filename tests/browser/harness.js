// What every browser test needs: a bin-server of its own on a free port, headless Chromium
// (Debian's, driven by playwright-core), and a few HTTP helpers. Every wait has a timeout.
//
// Environment:
//   HOOKBIN_SERVER_BIN  the bin-server binary (default: target/debug/bin-server, which
//                       scripts/test.sh builds; build it first with `cargo build -p bin-server`)
//   CHROMIUM            the browser (default: /usr/bin/chromium)
//   CI=true             a missing browser fails the tests instead of skipping them

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

export const serverBin =
  process.env.HOOKBIN_SERVER_BIN || path.join(repoRoot, 'target', 'debug', 'bin-server');
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

/** Flags known to work with Debian's Chromium in a container. */
export const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** A free TCP port on 127.0.0.1 (nothing listens on it when this returns). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts bin-server on a free port and waits until /healthz answers.
 * Returns { base, port, stop() }.
 */
export async function startServer(extraArgs = []) {
  if (!existsSync(serverBin)) {
    throw new Error(
      `bin-server binary not found at ${serverBin}: build it with \`cargo build -p bin-server\` ` +
        'or set HOOKBIN_SERVER_BIN',
    );
  }
  const port = await freePort();
  const child = spawn(
    serverBin,
    ['--bind', '127.0.0.1', '--port', String(port), ...extraArgs],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`bin-server exited with ${child.exitCode}: ${stderr}`);
    }
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`bin-server did not answer /healthz within 20 s: ${stderr}`);
    }
    await sleep(100);
  }
  return {
    base,
    port,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([
        new Promise((r) => child.once('exit', r)),
        sleep(5000).then(() => child.kill('SIGKILL')),
      ]);
    },
  };
}

/**
 * Launches headless Chromium with a fresh profile. Without a browser: fails under CI=true,
 * otherwise skips the calling test (`t.skip`) and returns null.
 */
export async function launchBrowser(t) {
  if (!existsSync(chromiumPath)) {
    const msg = `Chromium not found at ${chromiumPath} (apt-get install chromium, or set CHROMIUM)`;
    if (process.env.CI === 'true') throw new Error(msg);
    t.skip(msg);
    return null;
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), 'hookbin-chromium-'));
  // launchPersistentContext takes the profile dir (Chromium's --user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1280, height: 860 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(10_000);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A page that fails the test on uncaught page errors and records alert()s. */
export async function newPage(context) {
  const page = await context.newPage();
  page.errors = [];
  page.dialogs = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('dialog', async (d) => {
    page.dialogs.push(d.message());
    await d.dismiss().catch(() => {});
  });
  return page;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** JSON API call; throws on a non-2xx answer. */
export async function api(base, method, route, body) {
  const res = await fetch(base + route, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/**
 * Sends a raw HTTP/1.1 request over a socket, byte for byte (paths and header values the
 * fetch API would refuse or encode). Resolves with the raw answer.
 */
export function rawRequest(port, head, body = Buffer.alloc(0)) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    sock.setTimeout(10_000, () => sock.destroy(new Error('raw request timed out')));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
  });
}

/** Sends `count` requests to a capture URL, `concurrency` at a time, over keep-alive. */
export async function flood(captureUrl, count, { concurrency = 16, perSecond = 0, body } = {}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(captureUrl);
  let next = 0;
  const started = Date.now();
  const one = (i) =>
    new Promise((resolve, reject) => {
      const payload = Buffer.from(body ?? JSON.stringify({ n: i, event: 'flood' }));
      const req = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method: 'POST',
          path: `${url.pathname}/item/${i}?n=${i}`,
          headers: { 'content-type': 'application/json', 'content-length': payload.length },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('timeout', () => req.destroy(new Error('flood request timed out')));
      req.on('error', reject);
      req.end(payload);
    });
  const worker = async () => {
    while (next < count) {
      const i = next++;
      if (perSecond > 0) {
        const due = started + (i * 1000) / perSecond;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait);
      }
      await one(i);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
}
