#!/usr/bin/env node
// Bundles src/main.ts and everything it imports from node_modules into one ES module,
// dist/tenantgate.mjs, which `npm start` runs. Loading ~825 separate module files cost about
// 750 ms of every start (graphql-yoga alone 400-480 ms); one file parses in a fraction of that.
// Called by bin/build-if-stale.js after tsc has type-checked src/; `node bin/bundle.js` runs it alone.
//
// Left outside the bundle, loaded from node_modules at run time:
// - better-sqlite3: a native addon, found by `bindings` relative to its own files.
// - pg-native: pg's optional native driver, required only if asked for (never: we use pg's JavaScript client).
// - @graphql-yoga/render-graphiql: never imported; src/http/graphiql.ts resolves it with
//   createRequire(import.meta.url) and reads it in a worker thread (9 MB that must not be parsed
//   at start). From dist/ that resolves through the same node_modules/.
// Left out altogether: fast-json-stringify (and the ajv it loads), which graphql-jit imports but
// never calls as the gateway uses it; bin/unused-fast-json-stringify.js stands in for it.
// The drizzle migrations are found by walking up from import.meta.url, i.e. from dist/ to the
// package root, where drizzle/sqlite lives.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const BUNDLE = path.join('dist', 'tenantgate.mjs');

/** Writes `<root>/dist/tenantgate.mjs` (and its .map) from `<root>/src/main.ts`; throws on errors. */
export async function bundle(root) {
  const esbuild = await import('esbuild');
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: ['src/main.ts'],
    outfile: BUNDLE,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Stack traces (npm start's --enable-source-maps) need the mappings only; the sources are in
    // src/. Node 20 reads the whole map at load: without them it is 1.8 MB instead of 6, ~35 ms less.
    sourcemap: true,
    sourcesContent: false,
    // Bundled CommonJS packages call require() for Node's built-ins; an ES module has none.
    banner: {
      js: "import { createRequire as __tenantgateCreateRequire } from 'node:module';\nconst require = __tenantgateCreateRequire(import.meta.url);",
    },
    external: ['better-sqlite3', '@graphql-yoga/render-graphiql', 'pg-native'],
    alias: { 'fast-json-stringify': './bin/unused-fast-json-stringify.js' },
    // NODE_ENV is read at run time: main.ts settles it before graphql-js is first evaluated.
    logLevel: 'warning',
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await bundle(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));
}
