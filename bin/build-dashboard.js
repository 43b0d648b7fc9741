#!/usr/bin/env node
// Builds the operator dashboard (dashboard/, a Vite project: dashboard/vite.config.ts) into
// dist/dashboard, which the gateway serves at /dashboard (src/http/dashboard.ts), and prints what
// a browser downloads: each script and stylesheet, raw and gzipped. Called by bin/build-if-stale.js
// when dashboard/ changed; `node bin/build-dashboard.js` runs it alone.
//
// Vite writes into a folder of its own beside dist/dashboard, which then takes dist/dashboard's
// place, so a gateway starting during a build reads the old build or the new one, never half of one.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

export const DASHBOARD_OUT = path.join('dist', 'dashboard');

/**
 * What the page may not hold under its CSP (no 'unsafe-inline'): an inline script, a <style>
 * element, a style attribute or an event-handler attribute. A build that emits one fails here
 * rather than in the browser.
 */
const INLINE = [
  [/<script\b(?![^>]*\ssrc=)[^>]*>/i, 'an inline <script>'],
  [/<style\b/i, 'a <style> element'],
  [/<[^>]+\sstyle=/i, 'a style attribute'],
  [/<[^>]+\son[a-z]+=/i, 'an event-handler attribute'],
];

function* walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else yield full;
  }
}

/** Every script and stylesheet of a build, with its size as stored and gzipped. */
export function shippedSizes(dir) {
  const files = [];
  for (const file of walk(dir)) {
    const ext = path.extname(file);
    if (ext !== '.js' && ext !== '.css') continue;
    const bytes = fs.readFileSync(file);
    files.push({ file: path.relative(dir, file).split(path.sep).join('/'), kind: ext.slice(1), raw: bytes.length, gzip: gzipSync(bytes).length });
  }
  return files.sort((a, b) => a.file.localeCompare(b.file));
}

const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`;

function report(files, ms) {
  const lines = [`tenantgate: dashboard built into ${DASHBOARD_OUT} in ${(ms / 1000).toFixed(1)} s`];
  for (const kind of ['js', 'css']) {
    const of = files.filter((f) => f.kind === kind);
    const raw = of.reduce((sum, f) => sum + f.raw, 0);
    const gzip = of.reduce((sum, f) => sum + f.gzip, 0);
    lines.push(`  ${kind.toUpperCase().padEnd(3)} ${kb(raw).padStart(9)} (${kb(gzip)} gzip) in ${of.length} file${of.length === 1 ? '' : 's'}`);
    for (const f of of) lines.push(`      ${f.file}: ${f.raw} B, ${f.gzip} B gzip`);
  }
  return `${lines.join('\n')}\n`;
}

/** Builds `<root>/dashboard` into `<root>/dist/dashboard`; throws on errors (Vite has printed them). */
export async function buildDashboard(root) {
  const started = performance.now();
  const { build } = await import('vite');
  const out = path.join(root, DASHBOARD_OUT);
  const staging = `${out}.building-${process.pid}`;
  const old = `${out}.old-${process.pid}`;
  // What ships is the production build whoever asks for it: under vitest (NODE_ENV=test, the
  // tests' globalSetup) Vite would otherwise keep the libraries' development code (74 KB, not 56).
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({
      configFile: path.join(root, 'dashboard', 'vite.config.ts'),
      mode: 'production',
      logLevel: 'warn',
      build: { outDir: staging, emptyOutDir: true },
    });
    const page = fs.readFileSync(path.join(staging, 'index.html'), 'utf8');
    for (const [pattern, what] of INLINE) {
      if (pattern.test(page)) throw new Error(`the built dashboard page holds ${what}, which its Content-Security-Policy refuses: ${pattern.exec(page)[0]}`);
    }
    fs.rmSync(old, { recursive: true, force: true });
    try {
      fs.renameSync(out, old);
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
    fs.renameSync(staging, out);
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(old, { recursive: true, force: true });
  }
  const files = shippedSizes(out);
  process.stderr.write(report(files, performance.now() - started));
  return files;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await buildDashboard(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));
}
