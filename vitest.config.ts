import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

/** Files that need PostgreSQL whatever the dialect: they run once, in the postgres project. */
const POSTGRES_ONLY = ['test/postgres-*.test.ts', 'test/copy.test.ts', 'test/usage-postgres.test.ts'];

/**
 * Files whose stores hold the data a tenant sees: run again on PostgreSQL, their gateways on a
 * scratch database each (TG_TEST_DIALECT=postgres is createTestGateway's default dialect there).
 */
const ON_BOTH = ['tenancy', 'subscriptions', 'dashboard-browser', 'modules', 'credentials', 'auth', 'key-policy', 'leaks', 'usage', 'org-lifecycle', 'data-keys', 'audit', 'audit-tamper'].map((name) => `test/${name}.test.ts`);

/** Builds dist/dashboard if dashboard/ changed, so that the gateways tests start serve it. */
const DASHBOARD = 'test/setup/dashboard.ts';

export default defineConfig({
  resolve: {
    // graphql 16 ships index.mjs (picked by Vite's "module" field) and index.js (what Node, and so
    // every dependency, loads). Two copies break instanceof checks ("from another module or
    // realm"), so test code gets the same copy as Node.
    alias: { graphql: require.resolve('graphql') },
  },
  test: {
    // Child processes (migrations, crash tests) on a 2-core machine: generous, never relied on.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'], exclude: POSTGRES_ONLY, globalSetup: [DASHBOARD] } },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: [...POSTGRES_ONLY, ...ON_BOTH],
          env: { TG_TEST_DIALECT: 'postgres' },
          // Chooses the run's PostgreSQL (a server, or PGlite where none answers) and prints which.
          globalSetup: ['test/setup/postgres.ts', DASHBOARD],
        },
      },
    ],
  },
});
