import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { openStore } from '../src/store/open.ts';
import type { NewRunUnitEvent, RunUnitEvent } from '../src/store/types.ts';
import { createScratchDatabase, postgresMultiProcess, type ScratchDatabase } from './helpers/postgres.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

// `tenantgate usage export` on PostgreSQL (issue 14, item 2): the same CLI, TENANTGATE_DATABASE a
// request role's URL, paging under the org wall. The CLI is a process of its own, so it needs a
// server it can reach (not PGlite, which lives in this test process). The SQLite side, with the
// formats' details: test/cli-usage.test.ts.

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const multiProcess = await postgresMultiProcess();
if (!multiProcess) console.log('postgres-cli-usage: skipped, the run uses PGlite (a CLI process cannot reach it)');

const MASTER_KEY = randomBytes(32).toString('base64');
const FIELDS = ['id', 'idempotencyKey', 'units', 'moduleId', 'occurredAt', 'recordedAt', 'keyId'];

describe.runIf(multiProcess)('tenantgate usage export on PostgreSQL', () => {
  let scratch: ScratchDatabase;
  let dir: string;
  let env: Record<string, string>;
  let expected: RunUnitEvent[];

  beforeAll(async () => {
    scratch = await createScratchDatabase();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-pg-cli-usage-'));
    env = { TENANTGATE_DATA_DIR: dir, TENANTGATE_DATABASE: scratch.requestUrl, TENANTGATE_MASTER_KEY: MASTER_KEY };
    const opened = await openStore(loadConfig(env), captureLogger());
    const { store } = opened;
    try {
      await store.system.orgs.insert({ id: 'org-a', name: 'A', createdAt: '2026-11-01T00:00:00.000Z' }, SYSTEM_ACTOR);
      await store.system.orgs.insert({ id: 'org-b', name: 'B', createdAt: '2026-11-01T00:00:00.000Z' }, SYSTEM_ACTOR);
      const ev = (id: string, key: string, occurredAt: string): NewRunUnitEvent => ({
        id, idempotencyKey: key, units: 2, moduleId: null, occurredAt, recordedAt: '2026-12-03T00:00:00.000Z', keyId: null,
      });
      const record = async (org: string, e: NewRunUnitEvent) => expect((await store.forOrg(org).usage.record(e, null)).kind).toBe('recorded');
      await record('org-a', ev('ru_before', 'before', '2026-11-30T23:59:59.999Z'));
      await record('org-a', ev('ru_after', 'after', '2027-01-01T00:00:00.000Z'));
      // More than a page (500), in batches the pool takes.
      for (let batch = 0; batch < 6; batch++) {
        await Promise.all(
          Array.from({ length: 100 }, (_, i) => {
            const n = batch * 100 + i;
            return record('org-a', ev(`ru_${String(n).padStart(4, '0')}`, `k-${n}`, `2026-12-${String((n % 28) + 1).padStart(2, '0')}T10:00:00.000Z`));
          }),
        );
      }
      await record('org-b', ev('ru_b', 'k-1', '2026-12-05T10:00:00.000Z'));
      expected = [];
      let after: { occurredAt: string; id: string } | undefined;
      for (;;) {
        const page = await store.forOrg('org-a').usage.events({ after, since: '2026-12-01T00:00:00.000Z', until: '2027-01-01T00:00:00.000Z', limit: 250 });
        expected.push(...page);
        if (page.length < 250) break;
        after = { occurredAt: page.at(-1)!.occurredAt, id: page.at(-1)!.id };
      }
      expect(expected).toHaveLength(600);
    } finally {
      await store.close();
    }
  });
  afterAll(async () => {
    await scratch?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const cli = async (...args: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
        cwd: ROOT,
        env: { ...process.env, ...env },
        maxBuffer: 16 * 1024 * 1024,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it('writes the org\'s events in [from, to), oldest first, across pages, as NDJSON and as CSV', async () => {
    const ndjson = await cli('usage', 'export', '--org', 'org-a', '--from', '2026-12-01', '--to', '2027-01-01');
    expect(ndjson.stderr).toBe('');
    expect(ndjson.code).toBe(0);
    const rows = ndjson.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toEqual(expected.map((e) => Object.fromEntries(FIELDS.map((f) => [f, e[f as keyof RunUnitEvent]]))));
    expect(ndjson.stdout).not.toMatch(/ru_b"|ru_before|ru_after/);

    const csv = await cli('usage', 'export', '--org', 'org-a', '--from', '2026-12-01', '--to', '2027-01-01', '--format', 'csv');
    expect(csv.code, csv.stderr).toBe(0);
    const lines = csv.stdout.split('\r\n');
    expect(lines.pop()).toBe('');
    expect(lines[0]).toBe(FIELDS.join(','));
    expect(lines.slice(1)).toEqual(expected.map((e) => [e.id, e.idempotencyKey, e.units, '', e.occurredAt, e.recordedAt, ''].join(',')));
  });

  it('answers an unknown org with one line and exit code 2', async () => {
    const r = await cli('usage', 'export', '--org', 'no-such-org', '--from', '2026-12-01', '--to', '2027-01-01');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('tenantgate: Org "no-such-org" was not found');
  });
});
