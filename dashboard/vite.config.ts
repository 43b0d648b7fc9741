import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The operator dashboard: dashboard/index.html and dashboard/src, built into dist/dashboard, which
 * the gateway serves at /dashboard (src/http/dashboard.ts) under a CSP without 'unsafe-inline':
 * everything the build emits must be a file of its own. bin/build-dashboard.js runs this build
 * (npm run build, npm start's prestart and the tests' globalSetup, only when dashboard/ changed).
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/dashboard/',
  // Nothing to copy verbatim: every file the page uses goes through the build and gets a hash.
  publicDir: false,
  // Vite 8 transforms TypeScript and JSX with Oxc; no framework plugin needed for Preact.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/dashboard', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The polyfill is for browsers without <link rel="modulepreload"> (every current one has it).
    modulePreload: { polyfill: false },
    // One stylesheet, linked from the page: CSS split into async chunks is inserted at run time,
    // which style-src 'self' may refuse.
    cssCodeSplit: false,
    // Images may become data: URLs (img-src allows them); fonts may not (font-src 'self').
    assetsInlineLimit: (file) => (/\.(woff2?|ttf|otf|eot)$/i.test(file) ? false : undefined),
    // The page's assets are served from memory: no maps to ship or to keep.
    sourcemap: false,
    reportCompressedSize: false,
  },
});
