import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

declare module 'vitest' {
  export interface ProvidedContext {
    /** Undefined when dist/dashboard is current; else why it could not be built. */
    tenantgateDashboardBuildError: string | undefined;
  }
}

/**
 * vitest globalSetup: builds dist/dashboard when dashboard/ changed since its last build (as
 * `npm start` does), so every test that starts a gateway serves the current dashboard. Tests import
 * src/ and never need the server's build in dist/, so only the dashboard is checked. Both projects
 * run this; bin/build-if-stale.js holds a lock while it builds, so they build once.
 *
 * A failed build does not stop the run (a dashboard being edited in this checkout must not fail
 * everyone's unrelated tests): it is printed, and handed to the tests that serve the dashboard,
 * which fail with it (see dashboardBuildError in test/dashboard-serve.test.ts).
 */
export default async function setup(project: TestProject): Promise<void> {
  let failure: string | undefined;
  try {
    const { stderr } = await promisify(execFile)(process.execPath, ['bin/build-if-stale.js', '--dashboard'], { cwd: ROOT });
    if (stderr) process.stderr.write(stderr);
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    failure = `the dashboard did not build (node bin/build-if-stale.js --dashboard):\n${stdout ?? ''}${stderr ?? ''}`;
    process.stderr.write(`${failure}\n`);
  }
  project.provide('tenantgateDashboardBuildError', failure);
}
