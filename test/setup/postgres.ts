import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { choosePostgres, describeChoice, dropRunLeftovers } from '../helpers/pg-server.ts';

/**
 * vitest globalSetup: chooses the run's PostgreSQL once (test/helpers/pg-server.ts), prints the one
 * line saying which, hands the choice to every test process, and after the run drops the scratch
 * databases and roles a test process left behind (one that died before its afterAll).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const choice = await choosePostgres();
  const run = randomBytes(3).toString('hex');
  console.log(describeChoice(choice));
  project.provide('tenantgatePostgres', { choice, run });
  return async () => {
    if (choice.kind !== 'server') return; // PGlite's databases ended with their test processes
    const left = await dropRunLeftovers(choice.url, run);
    if (left > 0) console.log(`postgres: dropped ${left} scratch database(s) a test process left behind`);
  };
}
