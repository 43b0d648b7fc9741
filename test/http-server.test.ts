import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { startServer, type RunningServer } from '../src/server.ts';

/**
 * The listener `npm start` serves (startServer), over real sockets: CORS as configured, and the
 * header and request timeouts holding to within about a second of their configured values.
 */

const ALLOWED = 'https://dash.example.com';
const ALSO_ALLOWED = 'http://localhost:5173';

interface Started {
  server: RunningServer;
  key: string;
  dir: string;
}

async function start(env: Record<string, string>): Promise<Started> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-http-'));
  const out = new PassThrough();
  let printed = '';
  out.on('data', (chunk) => (printed += chunk));
  const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_PORT: '0', TENANTGATE_LOG_LEVEL: 'warn', ...env });
  const server = await startServer(config, captureLogger('warn'), out);
  const key = /tgk_[0-9A-Za-z]+/.exec(printed)?.[0];
  if (!key) throw new Error('no admin key printed');
  return { server, key, dir };
}

async function stop(started: Started | undefined): Promise<void> {
  if (!started) return;
  await started.server.stop();
  fs.rmSync(started.dir, { recursive: true, force: true });
}

function viewerRequest(started: Started, origin: string | undefined): Promise<Response> {
  return fetch(started.server.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${started.key}`,
      ...(origin ? { origin } : {}),
    },
    body: JSON.stringify({ query: '{ viewer { org { id } } }' }),
  });
}

function preflight(started: Started, origin: string): Promise<Response> {
  return fetch(started.server.url, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type',
    },
  });
}

describe('CORS with TENANTGATE_CORS_ORIGINS set', () => {
  let started: Started | undefined;
  beforeAll(async () => {
    started = await start({ TENANTGATE_CORS_ORIGINS: `${ALLOWED}, ${ALSO_ALLOWED}` });
  });
  afterAll(() => stop(started));

  it('answers a preflight from a listed origin, cacheable, without credentials mode', async () => {
    for (const origin of [ALLOWED, ALSO_ALLOWED]) {
      const res = await preflight(started!, origin);
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      expect(res.headers.get('access-control-allow-methods')).toBe('GET, POST');
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
      expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThanOrEqual(600);
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      expect(res.headers.get('vary')).toContain('Origin');
    }
  });

  it('lets a listed origin read answers, and names no origin for any other', async () => {
    const allowed = await viewerRequest(started!, ALLOWED);
    expect(allowed.status).toBe(200);
    expect((await allowed.json()).data.viewer.org.id).toBe('default');
    expect(allowed.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(allowed.headers.get('access-control-allow-credentials')).toBeNull();
    expect(allowed.headers.get('vary')).toContain('Origin');

    for (const origin of ['https://evil.example', `${ALLOWED}.evil.example`, 'null', 'https://DASH.example.com']) {
      const other = await viewerRequest(started!, origin);
      expect(other.headers.get('access-control-allow-origin'), origin).toBeNull();
      expect(other.headers.get('access-control-allow-credentials'), origin).toBeNull();
      const pre = await preflight(started!, origin);
      expect(pre.headers.get('access-control-allow-origin'), origin).toBeNull();
    }
  });
});

describe('CORS by default', () => {
  let started: Started | undefined;
  beforeAll(async () => {
    started = await start({});
  });
  afterAll(() => stop(started));

  it('allows no cross-origin page, and same-origin requests work as before', async () => {
    for (const origin of [ALLOWED, 'https://evil.example']) {
      const res = await viewerRequest(started!, origin);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      expect((await preflight(started!, origin)).headers.get('access-control-allow-origin')).toBeNull();
    }
    const plain = await viewerRequest(started!, undefined);
    expect((await plain.json()).data.viewer.org.id).toBe('default');
  });
});

describe('config', () => {
  it('refuses an origin list entry that is not an origin, naming it', () => {
    for (const bad of ['dash.example.com', 'https://dash.example.com/', 'https://*.example.com', 'ftp://x.example', '*']) {
      expect(() => loadConfig({ TENANTGATE_CORS_ORIGINS: bad }), bad).toThrow(/TENANTGATE_CORS_ORIGINS must be .*origins/);
    }
    expect(loadConfig({ TENANTGATE_CORS_ORIGINS: ` ${ALLOWED} ,${ALSO_ALLOWED}` }).corsOrigins).toEqual([ALLOWED, ALSO_ALLOWED]);
  });

  it('refuses a header timeout longer than the request timeout', () => {
    expect(() => loadConfig({ TENANTGATE_HEADERS_TIMEOUT_MS: '30000', TENANTGATE_REQUEST_TIMEOUT_MS: '20000' })).toThrow(
      /TENANTGATE_HEADERS_TIMEOUT_MS .* must not be longer/,
    );
  });
});

/** Writes `bytes` to a fresh connection and resolves with what the server answers, and after how long. */
function trickle(url: string, bytes: string): Promise<{ answer: string; ms: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let answer = '';
    const socket = net.connect(Number(port), hostname, () => socket.write(bytes));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('close', () => resolve({ answer, ms: performance.now() - started }));
    socket.on('error', reject);
  });
}

describe('timeouts', () => {
  const HEADERS_MS = 2000;
  const REQUEST_MS = 3000;
  let started: Started | undefined;
  beforeAll(async () => {
    started = await start({ TENANTGATE_HEADERS_TIMEOUT_MS: String(HEADERS_MS), TENANTGATE_REQUEST_TIMEOUT_MS: String(REQUEST_MS) });
  });
  afterAll(() => stop(started));

  // Node checks these timeouts when it sweeps connections; its default sweep (30 s) let them fire
  // up to 30 s late. Sweeping every second, they fire up to a second late; the bound allows two.
  it('answers 408 to headers that never finish, about when configured', async () => {
    const { answer, ms } = await trickle(started!.server.url, 'POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(ms).toBeGreaterThanOrEqual(HEADERS_MS - 50);
    expect(ms).toBeLessThan(HEADERS_MS + 2000);
  });

  it('answers 408 to a body that never finishes, about when configured', async () => {
    const head = `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${started!.key}\r\nContent-Length: 100\r\n\r\n`;
    const { answer, ms } = await trickle(started!.server.url, `${head}{"query":`);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).not.toContain(started!.key);
    expect(ms).toBeGreaterThanOrEqual(REQUEST_MS - 50);
    expect(ms).toBeLessThan(REQUEST_MS + 2000);
  });
});
