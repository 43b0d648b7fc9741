import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from '../logger.ts';
import { acceptsGzip } from './graphiql.ts';

/** Where the dashboard is served: its page at `/dashboard` and `/dashboard/`, the rest below. */
const PAGE_PATH = '/dashboard';
const PREFIX = '/dashboard/';

/** Vite puts the hashed files (`[name]-[hash].js`) here; the hash changes with the bytes. */
const HASHED = `${PREFIX}assets/`;
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * Nothing inline, nothing evaluated: the build emits only same-origin files (dashboard/vite.config.ts
 * turns off what would put an inline script or style in the page), and the app talks to this origin.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** Types worth gzipping; images and fonts are compressed already. */
const COMPRESSIBLE = /^(text\/|application\/json|image\/svg\+xml)/;

const NOT_BUILT = 'the dashboard is not built: run `npm run build`\n';

/** What a Fetch Response takes as a body (a Buffer's type allows a SharedArrayBuffer). */
type Bytes = Uint8Array<ArrayBuffer>;

interface File {
  type: string;
  body: Bytes;
  etag: string;
  cacheControl: string;
  gzipped?: Promise<Bytes>;
}

/**
 * dist/dashboard of the package this module belongs to, found upwards from it (src/http/ under
 * tsx, dist/ when bundled, dist/src/http/ when compiled): the first folder holding a package.json.
 */
export function defaultDashboardDir(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'dist', 'dashboard');
    if (path.dirname(dir) === dir) return path.resolve('dist', 'dashboard');
  }
}

function* walk(dir: string): Generator<string> {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    // .vite/ holds the build's manifest, not something a browser asks for.
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else if (entry.isFile()) yield full;
  }
}

/**
 * Every file of the build, by the URL path it is served at, read into memory once. A request only
 * ever looks a path up in this map, so no URL can reach a file outside the build. Undefined when
 * the build is missing (or has no page).
 */
function loadBuild(dir: string): Map<string, File> | undefined {
  if (!fs.existsSync(path.join(dir, 'index.html'))) return undefined;
  const files = new Map<string, File>();
  for (const full of walk(dir)) {
    const urlPath = PREFIX + path.relative(dir, full).split(path.sep).join('/');
    const body = new Uint8Array(fs.readFileSync(full));
    files.set(urlPath, {
      type: TYPES[path.extname(full).toLowerCase()] ?? 'application/octet-stream',
      body,
      etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`,
      cacheControl: urlPath.startsWith(HASHED) ? IMMUTABLE : 'no-cache',
    });
  }
  return files;
}

/** Whether an If-None-Match header names this ETag (or is `*`). */
function matches(ifNoneMatch: string | null, etag: string): boolean {
  if (!ifNoneMatch) return false;
  return ifNoneMatch.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t === etag || t === `W/${etag}`;
  });
}

export interface DashboardOptions {
  /** The built dashboard (Vite's output); dist/dashboard of this package by default. */
  dir?: string;
  /** Told once, at start, when the build is missing. */
  logger?: Logger;
}

/**
 * The operator dashboard (dashboard/, built by Vite into dist/dashboard) at `GET /dashboard`.
 * The page and its files need no key (the data they fetch does), so this answers before
 * authentication, as GraphiQL's assets do. The build is read once, here: a rebuild is served
 * after a restart. Hashed files are immutable; the page and unhashed files are revalidated by
 * ETag. Where the build is missing, `/dashboard` answers 503 saying how to build it.
 */
export function useDashboard({ dir = defaultDashboardDir(), logger }: DashboardOptions = {}): Plugin {
  let files: Map<string, File> | undefined;
  try {
    files = loadBuild(dir);
  } catch (error) {
    // Unreadable, or swapped for a new build while being read: answer 503, never stop the start.
    logger?.warn('dashboard unreadable', { dir, error: { name: (error as Error).name, message: (error as Error).message } });
  }
  if (!files) logger?.warn('dashboard not built: /dashboard answers 503 until `npm run build` has run', { dir });

  const serve = async (request: Request, file: File, fetchAPI: { Response: typeof Response }): Promise<Response> => {
    const headers: Record<string, string> = {
      'content-type': file.type,
      'cache-control': file.cacheControl,
      etag: file.etag,
      vary: 'Accept-Encoding',
      'content-security-policy': DASHBOARD_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    if (matches(request.headers.get('if-none-match'), file.etag)) return new fetchAPI.Response(null, { status: 304, headers });
    let body = file.body;
    if (COMPRESSIBLE.test(file.type) && acceptsGzip(request.headers.get('accept-encoding'))) {
      // zlib's async gzip runs off the event loop; the copy is kept for every later request.
      file.gzipped ??= promisify(gzip)(file.body).then((zipped) => new Uint8Array(zipped));
      body = await file.gzipped;
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    return new fetchAPI.Response(request.method === 'HEAD' ? null : body, { status: 200, headers });
  };

  const text = (status: number, body: string, fetchAPI: { Response: typeof Response }) =>
    new fetchAPI.Response(body, {
      status,
      headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' },
    });

  return {
    // Not async: a GraphQL request passes through with no promise made here.
    onRequest({ request, url, endResponse, fetchAPI }) {
      const method = request.method;
      if (method !== 'GET' && method !== 'HEAD') return undefined;
      const urlPath = url.pathname;
      if (urlPath !== PAGE_PATH && !urlPath.startsWith(PREFIX)) return undefined;
      if (!files) return endResponse(text(503, NOT_BUILT, fetchAPI));
      const file = files.get(urlPath === PAGE_PATH || urlPath === PREFIX ? `${PREFIX}index.html` : urlPath);
      if (!file) return endResponse(text(404, 'not found\n', fetchAPI));
      return serve(request, file, fetchAPI).then(endResponse);
    },
  };
}
