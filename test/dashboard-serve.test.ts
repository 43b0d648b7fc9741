import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { createSchema, createYoga } from 'graphql-yoga';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DASHBOARD_CSP, useDashboard } from '../src/http/dashboard.ts';
import { createTestGateway, requestLines } from './helpers/gateway.ts';
import { startTestServer, type RawResponse, type TestServer } from './helpers/server.ts';

/**
 * The operator dashboard as `npm start` serves it: dist/dashboard (built by the globalSetup,
 * test/setup/dashboard.ts, when dashboard/ changed) over real HTTP. The page and everything it
 * names, under a CSP without inline code, cached by hash, gzipped, revalidated by ETag; nothing
 * outside the build; none of it where the dashboard is off. And the build runs only when its
 * sources changed (bin/build-if-stale.js, in a copy of the tree).
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMMUTABLE = 'public, max-age=31536000, immutable';

/** A GET (or HEAD) of a path sent exactly as written (a URL would resolve `..` before sending). */
function rawPath(origin: string, urlPath: string, headers: Record<string, string> = {}, method = 'GET'): Promise<RawResponse> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: urlPath, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The scripts and stylesheets the page loads: <script src> and <link href> (stylesheet, modulepreload). */
type Referenced = { url: string; kind: 'js' | 'css' };

function referencedBy(page: string): Referenced[] {
  const scripts = [...page.matchAll(/<script\b[^>]*\ssrc="([^"]+)"/g)].map((m): Referenced => ({ url: m[1]!, kind: 'js' }));
  const links = [...page.matchAll(/<link\b[^>]*>/g)].flatMap(([tag]): Referenced[] => {
    const href = /\shref="([^"]+)"/.exec(tag)?.[1];
    const rel = /\srel="([^"]+)"/.exec(tag)?.[1];
    if (href === undefined) return [];
    if (rel === 'stylesheet') return [{ url: href, kind: 'css' }];
    if (rel === 'modulepreload') return [{ url: href, kind: 'js' }];
    return [];
  });
  return [...scripts, ...links];
}

describe('the dashboard over HTTP', () => {
  let on: TestServer;
  let off: TestServer;
  let production: TestServer;
  let productionOn: TestServer;
  let page: RawResponse;
  beforeAll(async () => {
    const buildError = inject('tenantgateDashboardBuildError');
    if (buildError) throw new Error(buildError);
    [on, off, production, productionOn] = await Promise.all([
      startTestServer(),
      startTestServer({ TENANTGATE_DASHBOARD: 'false' }),
      startTestServer({ TENANTGATE_PRODUCTION: 'true' }),
      startTestServer({ TENANTGATE_PRODUCTION: 'true', TENANTGATE_DASHBOARD: 'true' }),
    ]);
    page = await rawPath(on.origin, '/dashboard');
  });
  afterAll(async () => Promise.all([on?.close(), off?.close(), production?.close(), productionOn?.close()]));

  it('serves the page at /dashboard and /dashboard/ under the strict CSP, not cached', async () => {
    expect(page.status).toBe(200);
    const html = page.body.toString('utf8');
    expect(html).toMatch(/^<!doctype html>/i);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toBe(DASHBOARD_CSP);
    expect(DASHBOARD_CSP).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect(page.headers['cache-control']).toBe('no-cache');
    expect(page.headers.etag).toMatch(/^"[0-9a-f]{16}"$/);
    const slash = await rawPath(on.origin, '/dashboard/');
    expect(slash.status).toBe(200);
    expect(slash.body.equals(page.body)).toBe(true);
    // Nothing the CSP would refuse: every script a file, no <style>, no style or on* attributes.
    expect(html).not.toMatch(/<script\b(?![^>]*\ssrc=)[^>]*>/i);
    expect(html).not.toMatch(/<style\b|<[^>]+\s(style|on[a-z]+)=/i);
    expect(html).not.toMatch(/https?:\/\//);
  });

  it('serves every script and stylesheet the page names, hashed, typed, immutable, with the CSP', async () => {
    const assets = referencedBy(page.body.toString('utf8'));
    expect(assets.filter((a) => a.kind === 'js').length).toBeGreaterThan(0);
    for (const { url, kind } of assets) {
      expect(url).toMatch(/^\/dashboard\/assets\/[\w.-]+-[\w-]{8}\.(js|css)$/);
      const res = await rawPath(on.origin, url);
      expect(res.status, url).toBe(200);
      expect(res.headers['content-type'], url).toBe(kind === 'js' ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8');
      expect(res.headers['cache-control'], url).toBe(IMMUTABLE);
      expect(res.headers['content-security-policy'], url).toBe(DASHBOARD_CSP);
      expect(res.headers['x-content-type-options'], url).toBe('nosniff');
      expect(Number(res.headers['content-length']), url).toBe(res.body.length);
      // script-src without 'unsafe-eval'.
      if (kind === 'js') expect(res.body.toString('utf8'), url).not.toMatch(/\beval\(|\bnew Function\(/);
    }
  });

  it('gzips when asked, answers 304 to a matching ETag, and HEAD without a body', async () => {
    const script = referencedBy(page.body.toString('utf8')).find((a) => a.kind === 'js')!.url;
    for (const url of ['/dashboard', script]) {
      const plain = await rawPath(on.origin, url);
      expect(plain.headers['content-encoding'], url).toBeUndefined();
      const zipped = await rawPath(on.origin, url, { 'accept-encoding': 'br, gzip;q=0.8' });
      expect(zipped.headers['content-encoding'], url).toBe('gzip');
      expect(zipped.headers.vary, url).toBe('Accept-Encoding');
      expect(zipped.body.length, url).toBeLessThan(plain.body.length);
      expect(gunzipSync(zipped.body).equals(plain.body), url).toBe(true);

      const again = await rawPath(on.origin, url, { 'if-none-match': plain.headers.etag! });
      expect(again.status, url).toBe(304);
      expect(again.body.length, url).toBe(0);
      expect(again.headers.etag, url).toBe(plain.headers.etag);
      const other = await rawPath(on.origin, url, { 'if-none-match': '"0000000000000000"' });
      expect(other.status, url).toBe(200);

      const head = await rawPath(on.origin, url, {}, 'HEAD');
      expect(head.status, url).toBe(200);
      expect(head.body.length, url).toBe(0);
      expect(head.headers['content-length'], url).toBe(String(plain.body.length));
      expect(head.headers['content-type'], url).toBe(plain.headers['content-type']);
    }
  });

  it('answers 404 for paths that are not files of the build, and never reaches outside it', async () => {
    for (const url of ['/dashboard/assets/index-00000000.js', '/dashboard/nope', '/dashboard/assets/', '/dashboard/.vite/manifest.json']) {
      expect((await rawPath(on.origin, url)).status, url).toBe(404);
    }
    const outside = [
      '/dashboard/../package.json',
      '/dashboard/%2e%2e/package.json',
      '/dashboard/..%2fpackage.json',
      '/dashboard/assets/..%2f..%2f..%2fpackage.json',
      '/dashboard/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json',
      '/dashboard/..%5c..%5cpackage.json',
      '/dashboard//work/main/package.json',
      `/dashboard/${encodeURIComponent(path.join(ROOT, 'package.json'))}`,
    ];
    for (const url of outside) {
      const res = await rawPath(on.origin, url);
      expect(res.status, url).toBeGreaterThanOrEqual(400);
      expect(res.body.toString('utf8'), url).not.toContain('"name": "tenantgate"');
    }
  });

  it('needs no key: the page is public, and a bad key is not even looked at', async () => {
    const res = await rawPath(on.origin, '/dashboard', { authorization: 'Bearer tgk_notakey' });
    expect(res.status).toBe(200);
    expect(res.headers['www-authenticate']).toBeUndefined();
    // The API behind it still wants one.
    expect((await rawPath(on.origin, '/graphql?query=%7Bviewer%7Bid%7D%7D', { accept: 'application/json' })).status).toBe(401);
  });

  it('is 404 where TENANTGATE_DASHBOARD=false, and off in production unless switched on', async () => {
    const script = referencedBy(page.body.toString('utf8')).find((a) => a.kind === 'js')!.url;
    for (const server of [off, production]) {
      for (const url of ['/dashboard', '/dashboard/', script]) {
        const res = await rawPath(server.origin, url);
        expect(res.status, url).toBe(404);
        expect(res.body.toString('utf8'), url).not.toMatch(/<html/i);
      }
    }
    expect((await rawPath(productionOn.origin, '/dashboard')).status).toBe(200);
    expect((await rawPath(productionOn.origin, script)).status).toBe(200);
  });
});

describe('the dashboard in the request log', () => {
  it('logs its requests as GraphiQL assets are logged: method, path, status', async () => {
    const gw = await createTestGateway({ seed: false });
    try {
      const from = gw.logger.lines.length;
      expect((await gw.fetch('/dashboard')).status).toBe(200);
      expect((await gw.fetch('/dashboard/assets/none-00000000.js')).status).toBe(404);
      const lines = requestLines(gw, from);
      expect(lines).toMatchObject([
        { method: 'GET', path: '/dashboard', status: 200 },
        { method: 'GET', path: '/dashboard/assets/none-00000000.js', status: 404 },
      ]);
      // Not GraphQL requests: no org, key or operation on the line.
      for (const line of lines) expect(line).not.toHaveProperty('orgId');
    } finally {
      await gw.close();
    }
  });
});

describe('a missing build', () => {
  it('answers 503 naming npm run build, and the gateway still serves the rest', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-no-dashboard-'));
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (msg: string) => warnings.push(msg), error() {} };
    try {
      const yoga = createYoga({
        schema: createSchema({ typeDefs: 'type Query { ok: Boolean }', resolvers: { Query: { ok: () => true } } }),
        plugins: [useDashboard({ dir: path.join(empty, 'dashboard'), logger })],
      });
      for (const url of ['/dashboard', '/dashboard/', '/dashboard/assets/index-00000000.js']) {
        const res = await yoga.fetch(`http://localhost${url}`);
        expect(res.status, url).toBe(503);
        const text = await res.text();
        expect(text, url).toBe('the dashboard is not built: run `npm run build`\n');
      }
      expect(warnings).toHaveLength(1);
      const graphql = await yoga.fetch('http://localhost/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ ok }' }),
      });
      expect(await graphql.json()).toEqual({ data: { ok: true } });
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('bin/build-if-stale.js --dashboard', () => {
  let copy: string;
  beforeAll(() => {
    // A copy of what the build reads; node_modules is linked, not copied.
    copy = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-build-'));
    for (const entry of ['dashboard', 'bin', 'package.json', 'package-lock.json']) {
      fs.cpSync(path.join(ROOT, entry), path.join(copy, entry), { recursive: true, preserveTimestamps: true });
    }
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'), 'dir');
  });
  afterAll(() => {
    if (copy) fs.rmSync(copy, { recursive: true, force: true });
  });

  /** Runs the check in the copy: its exit status and what it printed (the build's report goes to stderr). */
  const run = () => {
    const result = spawnSync(process.execPath, ['bin/build-if-stale.js', '--dashboard'], { cwd: copy, encoding: 'utf8' });
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  };

  it('builds a missing dashboard, skips an unchanged tree, and rebuilds after a source changes', () => {
    const first = run();
    expect(first.status).toBe(0);
    expect(first.output).toContain('tenantgate: building the dashboard');
    expect(first.output).toMatch(/JS +[\d.]+ KB \([\d.]+ KB gzip\)/);
    expect(first.output).toMatch(/CSS +[\d.]+ KB \([\d.]+ KB gzip\)/);
    const index = path.join(copy, 'dist', 'dashboard', 'index.html');
    const built = fs.statSync(index).mtimeMs;
    const firstPage = fs.readFileSync(index, 'utf8');

    const second = run();
    expect(second.status).toBe(0);
    expect(second.output).toBe('');
    expect(fs.statSync(index).mtimeMs).toBe(built);

    // Touched: the same bytes rebuild into the same names.
    const main = path.join(copy, 'dashboard', 'src', 'main.tsx');
    const later = new Date(Date.now() + 5_000);
    fs.utimesSync(main, later, later);
    const touched = run();
    expect(touched.output).toContain('tenantgate: building the dashboard');
    expect(fs.readFileSync(index, 'utf8')).toBe(firstPage);
    expect(run().output).toBe('');

    // Edited: a new script, under a new name, which the new page names.
    fs.appendFileSync(main, '\nconsole.info("tenantgate dashboard test edit");\n');
    const edited = run();
    expect(edited.output).toContain('tenantgate: building the dashboard');
    const editedPage = fs.readFileSync(index, 'utf8');
    expect(editedPage).not.toBe(firstPage);
    const script = referencedBy(editedPage).find((a) => a.kind === 'js')!.url;
    expect(fs.readFileSync(path.join(copy, 'dist', script.replace(/^\//, '')), 'utf8')).toContain('tenantgate dashboard test edit');

    // A new file under dashboard/, and a changed lock file, rebuild too.
    fs.writeFileSync(path.join(copy, 'dashboard', 'src', 'unused.ts'), 'export const unused = 1;\n');
    expect(run().output).toContain('tenantgate: building the dashboard');
    fs.utimesSync(path.join(copy, 'package-lock.json'), later, new Date(Date.now() + 10_000));
    expect(run().output).toContain('tenantgate: building the dashboard');
    expect(run().output).toBe('');

    // A deleted build is rebuilt whatever the stamp says.
    fs.rmSync(path.join(copy, 'dist', 'dashboard'), { recursive: true });
    expect(run().output).toContain('tenantgate: building the dashboard');
    expect(fs.existsSync(index)).toBe(true);
  });
});
