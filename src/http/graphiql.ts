import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { gzip } from 'node:zlib';
import { shouldRenderGraphiQL, type GraphiQLOptions, type Plugin } from 'graphql-yoga';

/** Where the assets are served; outside the GraphQL endpoint, so Yoga never parses these paths. */
const PREFIX = '/graphiql/';

/**
 * Asset URLs hold a hash of their bytes, so a browser may keep them for good and a new release of
 * render-graphiql (or of BOOT below) is a new URL.
 */
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * The page runs nothing but same-origin scripts: GraphiQL's bundle and BOOT, with its options in a
 * JSON data block. Styles may be inline because Monaco and GraphiQL add <style> elements at run
 * time; fonts and images are data: URLs inside the stylesheet. Workers are the same-origin assets.
 */
export const GRAPHIQL_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Starts GraphiQL once its bundle has run (both scripts are deferred; DOMContentLoaded comes after
 * them). Monaco's workers are loaded from their asset URLs (render-graphiql's own page turns each
 * into a blob: URL instead, which would need `worker-src blob:`).
 *
 * GraphiQL 5 (render-graphiql 5.24.1) introspects once on load, when the headers pane still holds
 * the placeholder key, and again only on Shift-Ctrl-R; its schema store is not reachable from
 * outside. So when the headers change to other valid JSON, BOOT sends that shortcut, and the docs
 * explorer fills in without a reload.
 */
const BOOT = `'use strict';
(function () {
  var config = JSON.parse(document.getElementById('graphiql-config').textContent);
  self.MonacoEnvironment = {
    globalAPI: false,
    getWorkerUrl: function (_moduleId, label) { return config.workers[label]; },
  };
  function normalise(text) {
    try {
      var parsed = JSON.parse(text || '{}');
      return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? JSON.stringify(parsed) : undefined;
    } catch (_) {
      return undefined;
    }
  }
  var introspectedWith = normalise(config.options.headers);
  var timer;
  function refetchSchema() {
    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'R', code: 'KeyR', ctrlKey: true, shiftKey: true }));
  }
  var options = Object.assign({}, config.options, {
    onEditHeaders: function (text) {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var headers = normalise(text);
        if (headers === undefined || headers === introspectedWith) return;
        introspectedWith = headers;
        refetchSchema();
      }, 400);
    },
  });
  document.addEventListener('DOMContentLoaded', function () {
    YogaGraphiQL.renderYogaGraphiQL(document.getElementById('root'), options);
  });
})();
`;

/** What a Fetch Response takes as a body (a Buffer's type allows a SharedArrayBuffer). */
type Bytes = Uint8Array<ArrayBuffer>;

interface Asset {
  path: string;
  type: string;
  body: Bytes;
  etag: string;
  gzipped?: Promise<Bytes>;
}

interface Assets {
  byPath: Map<string, Asset>;
  page: string;
}

/** render-graphiql's exports as bytes, the favicon decoded from its data: URL. */
interface Bundle {
  css: Bytes;
  js: Bytes;
  editorWorkerService: Bytes;
  jsonWorker: Bytes;
  graphqlWorker: Bytes;
  favicon?: { type: string; bytes: Bytes };
}

/**
 * Runs in a worker thread, which ends once it has posted the bytes. render-graphiql is 9 MB of
 * string literals: imported here, its source and strings would stay in this process's heap for
 * good (about 33 MB of it, and npm start caps the old space at 128 MB); a worker hands over the
 * 9 MB as transferred buffers, outside the heap, and frees the rest when it exits.
 */
const LOADER = `'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const bundle = require(workerData);
const encoder = new TextEncoder();
const out = {};
for (const name of ['css', 'js', 'editorWorkerService', 'jsonWorker', 'graphqlWorker']) out[name] = encoder.encode(bundle[name]);
const icon = /^data:([^;,]+);base64,(.*)$/s.exec(bundle.favicon);
if (icon) out.favicon = { type: icon[1], bytes: new Uint8Array(Buffer.from(icon[2], 'base64')) };
const transfer = [out.css, out.js, out.editorWorkerService, out.jsonWorker, out.graphqlWorker, out.favicon?.bytes];
parentPort.postMessage(out, transfer.filter(Boolean).map((bytes) => bytes.buffer));
`;

function loadBundle(): Promise<Bundle> {
  const file = createRequire(import.meta.url).resolve('@graphql-yoga/render-graphiql/graphiql');
  return new Promise((resolve, reject) => {
    const worker = new Worker(LOADER, { eval: true, workerData: file });
    worker.once('message', (bundle: Bundle) => resolve(bundle));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the GraphiQL asset loader exited (${code}) without its assets`)));
  });
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function asset(name: string, ext: string, type: string, body: Bytes): Asset {
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 16);
  return { path: `${PREFIX}${name}-${hash}.${ext}`, type, body, etag: `"${hash}"` };
}

async function loadAssets(options: GraphiQLOptions): Promise<Assets> {
  // Loaded on the first GraphiQL request, never where GraphiQL is off.
  const bundle = await loadBundle();
  const js = 'text/javascript; charset=utf-8';
  const all = {
    css: asset('graphiql', 'css', 'text/css; charset=utf-8', bundle.css),
    js: asset('graphiql', 'js', js, bundle.js),
    boot: asset('boot', 'js', js, new TextEncoder().encode(BOOT)),
    favicon: bundle.favicon ? asset('favicon', 'ico', bundle.favicon.type, bundle.favicon.bytes) : undefined,
    editorWorkerService: asset('editor-worker', 'js', js, bundle.editorWorkerService),
    json: asset('json-worker', 'js', js, bundle.jsonWorker),
    graphql: asset('graphql-worker', 'js', js, bundle.graphqlWorker),
  };
  const config = {
    workers: { editorWorkerService: all.editorWorkerService.path, json: all.json.path, graphql: all.graphql.path },
    options,
  };
  // JSON inside <script>: no "<" may appear, or "</script>" in an option would end the block.
  const configJson = JSON.stringify(config).replace(/</g, '\\u003c');
  const page = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(options.title ?? 'GraphiQL')}</title>
    ${all.favicon ? `<link rel="icon" href="${all.favicon.path}" />` : ''}
    <link rel="stylesheet" href="${all.css.path}" />
    <script type="application/json" id="graphiql-config">${configJson}</script>
    <script defer src="${all.boot.path}"></script>
    <script defer src="${all.js.path}"></script>
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
  </body>
</html>
`;
  const byPath = new Map<string, Asset>();
  for (const a of Object.values(all)) if (a) byPath.set(a.path, a);
  return { byPath, page };
}

/** True when the Accept-Encoding header takes gzip: named, or `*`, with a q above 0. */
export function acceptsGzip(header: string | null): boolean {
  if (!header) return false;
  let gzipQ: number | undefined;
  let anyQ: number | undefined;
  for (const part of header.toLowerCase().split(',')) {
    const [coding, ...params] = part.split(';').map((s) => s.trim());
    const q = params.find((p) => p.startsWith('q='));
    const weight = q === undefined ? 1 : Number(q.slice(2));
    if (coding === 'gzip') gzipQ = weight;
    else if (coding === '*') anyQ = weight;
  }
  const weight = gzipQ ?? anyQ;
  return weight !== undefined && weight > 0;
}

/** Whether an If-None-Match header names this ETag (or is `*`). */
function matches(ifNoneMatch: string | null, etag: string): boolean {
  if (!ifNoneMatch) return false;
  return ifNoneMatch.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t === etag || t === `W/${etag}`;
  });
}

export interface GraphiQLPageOptions {
  graphqlEndpoint: string;
  /** What GraphiQL starts with; `headers` is the headers pane of a new tab. */
  options: GraphiQLOptions;
}

/**
 * GraphiQL on `GET <endpoint>` (a browser asking for HTML), served from the installed
 * @graphql-yoga/render-graphiql instead of Yoga's default page, which loads it from a CDN and so
 * stays blank on a machine without internet. The page is small and not cached; its assets
 * (about 9 MB, 2.4 MB gzipped) are served under /graphiql/ with hashed names, an ETag, a year's
 * immutable caching, and a gzip copy made on first request. Install only where GraphiQL is on:
 * the assets 404 where it is off, as the page does.
 *
 * Headers typed into GraphiQL are not kept in the browser's storage unless the user turns that on
 * in GraphiQL's settings (Yoga's page keeps them by default: here they are API keys).
 */
export function useGraphiQLPage({ graphqlEndpoint, options }: GraphiQLPageOptions): Plugin {
  const pageOptions: GraphiQLOptions & { showPersistHeadersSettings: boolean } = {
    shouldPersistHeaders: false,
    showPersistHeadersSettings: true,
    ...options,
  };
  let loaded: Promise<Assets> | undefined;
  const assets = () => {
    loaded ??= loadAssets(pageOptions).catch((error: unknown) => {
      loaded = undefined;
      throw error;
    });
    return loaded;
  };

  const serveAsset = async (request: Request, path: string, fetchAPI: { Response: typeof Response }): Promise<Response> => {
    const found = (await assets()).byPath.get(path);
    if (!found) {
      return new fetchAPI.Response('not found\n', { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' } });
    }
    const headers: Record<string, string> = {
      'content-type': found.type,
      'cache-control': IMMUTABLE,
      etag: found.etag,
      vary: 'Accept-Encoding',
      'x-content-type-options': 'nosniff',
    };
    if (matches(request.headers.get('if-none-match'), found.etag)) return new fetchAPI.Response(null, { status: 304, headers });
    let body = found.body;
    if (acceptsGzip(request.headers.get('accept-encoding'))) {
      // zlib's async gzip runs off the event loop; the copy is kept for every later request.
      found.gzipped ??= promisify(gzip)(found.body).then((zipped) => new Uint8Array(zipped));
      body = await found.gzipped;
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    return new fetchAPI.Response(request.method === 'HEAD' ? null : body, { status: 200, headers });
  };

  const servePage = async (fetchAPI: { Response: typeof Response }): Promise<Response> =>
    new fetchAPI.Response((await assets()).page, {
      status: 200,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-cache',
        'content-security-policy': GRAPHIQL_CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      },
    });

  return {
    // Not async: a GraphQL POST passes through with no promise made here.
    onRequest({ request, url, endResponse, fetchAPI }) {
      const method = request.method;
      if (method !== 'GET' && method !== 'HEAD') return undefined;
      const path = url.pathname;
      if (path.startsWith(PREFIX)) {
        return serveAsset(request, path, fetchAPI).then(endResponse);
      }
      if (method === 'GET' && (path === graphqlEndpoint || path === `${graphqlEndpoint}/`) && shouldRenderGraphiQL(request)) {
        return servePage(fetchAPI).then(endResponse);
      }
      return undefined;
    },
  };
}
