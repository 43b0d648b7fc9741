import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptsGzip, GRAPHIQL_CSP } from '../src/http/graphiql.ts';
import { rawRequest, startTestServer, type TestServer } from './helpers/server.ts';

/**
 * GraphiQL's page and assets over real HTTP: a small page naming only same-origin assets, the
 * assets cached for good under hashed names, gzipped when asked, and none of it served where
 * GraphiQL is off. The browser test (graphiql-browser.test.ts) shows the page working.
 */

const HTML = { accept: 'text/html' };

/** Every URL the page names: its src and href attributes and the worker URLs in its config block. */
function urlsOf(page: string): string[] {
  const attributes = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  const config = /<script type="application\/json" id="graphiql-config">(.*?)<\/script>/s.exec(page)?.[1];
  const workers = Object.values((JSON.parse(config ?? '{}') as { workers?: Record<string, string> }).workers ?? {});
  return [...attributes, ...workers];
}

describe('GraphiQL over HTTP', () => {
  let on: TestServer;
  let off: TestServer;
  let page: string;
  beforeAll(async () => {
    [on, off] = await Promise.all([startTestServer(), startTestServer({ TENANTGATE_GRAPHIQL: 'false' })]);
    const res = await rawRequest(on.server.url, HTML);
    expect(res.status).toBe(200);
    page = res.body.toString('utf8');
  });
  afterAll(async () => Promise.all([on?.close(), off?.close()]));

  it('serves a small page that names only assets of its own origin, with a CSP and no caching', async () => {
    const res = await rawRequest(on.server.url, HTML);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toBe(GRAPHIQL_CSP);
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.body.length).toBeLessThan(4096);
    const urls = urlsOf(page);
    expect(urls).toHaveLength(7);
    for (const url of urls) expect(url).toMatch(/^\/graphiql\/[a-z-]+-[0-9a-f]{16}\.(js|css|ico)$/);
    expect(page).not.toMatch(/https?:\/\//);
    // The headers pane starts with the placeholder the README tells users to replace.
    expect(page).toContain(String.raw`"headers":"{\n  \"Authorization\": \"Bearer tgk_...\"\n}"`);
  });

  it('serves each asset with an ETag and a year of immutable caching, gzipped when asked', async () => {
    for (const url of urlsOf(page)) {
      const plain = await rawRequest(`${on.origin}${url}`);
      expect(plain.status, url).toBe(200);
      expect(plain.headers['cache-control'], url).toBe('public, max-age=31536000, immutable');
      expect(plain.headers.etag, url).toMatch(/^"[0-9a-f]{16}"$/);
      expect(plain.headers['content-encoding'], url).toBeUndefined();
      expect(Number(plain.headers['content-length']), url).toBe(plain.body.length);
      expect(plain.headers['content-type'], url).toMatch(url.endsWith('.ico') ? /^image\// : url.endsWith('.css') ? /^text\/css/ : /^text\/javascript/);

      const zipped = await rawRequest(`${on.origin}${url}`, { 'accept-encoding': 'br, gzip;q=0.8' });
      expect(zipped.headers['content-encoding'], url).toBe('gzip');
      expect(zipped.headers.vary, url).toBe('Accept-Encoding');
      expect(gunzipSync(zipped.body).equals(plain.body), url).toBe(true);

      const again = await rawRequest(`${on.origin}${url}`, { 'if-none-match': plain.headers.etag! });
      expect(again.status, url).toBe(304);
      expect(again.body.length, url).toBe(0);
    }
    expect((await rawRequest(`${on.origin}/graphiql/graphiql-0000000000000000.js`)).status).toBe(404);
  });

  it('reads Accept-Encoding as sent, q=0 included', () => {
    expect(acceptsGzip('gzip, deflate, br')).toBe(true);
    expect(acceptsGzip('GZIP')).toBe(true);
    expect(acceptsGzip('br;q=1, *;q=0.1')).toBe(true);
    expect(acceptsGzip('gzip;q=0')).toBe(false);
    expect(acceptsGzip('gzip; q=0.0, br')).toBe(false);
    expect(acceptsGzip('*;q=0.5, gzip;q=0')).toBe(false);
    expect(acceptsGzip('br')).toBe(false);
    expect(acceptsGzip(null)).toBe(false);
  });

  it('serves neither the page nor its assets where GraphiQL is off', async () => {
    const res = await rawRequest(off.server.url, HTML);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.body.toString('utf8')).not.toMatch(/<html/i);
    for (const url of urlsOf(page)) expect((await rawRequest(`${off.origin}${url}`)).status, url).toBe(404);
  });
});
