import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // graphql 16 ships index.mjs (picked by Vite's "module" field) and index.js (what Node, and so
    // every dependency, loads). Two copies break instanceof checks ("from another module or
    // realm"), so test code gets the same copy as Node.
    alias: { graphql: require.resolve('graphql') },
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Child processes (migrations, crash tests) on a 2-core machine: generous, never relied on.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
