/**
 * The audit log is tamper-evident (issue 15 item 2), on both dialects (ON_BOTH): records edited,
 * deleted or swapped directly in the database (SQLite's own connection; PostgreSQL's superuser,
 * which bypasses the wall) are each caught by the verifier, which names the org and the first
 * record that is wrong; after pruning, what is left still verifies. On SQLite, `tenantgate audit
 * verify` runs as a process too: exit 0 with the count on an intact log, 1 naming org, seq and
 * id otherwise, a log line per failure without content; `audit export` and `audit prune` as well.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from '../src/logger.ts';
import { verifyAudit } from '../src/maintenance/audit.ts';
import { install, ok } from './helpers/api.ts';
import { createTestGateway, DEFAULT_DIALECT, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';
import { rawRows, rawRun } from './helpers/raw.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');

let gw: TestGateway;

const verify = (orgId?: string) => verifyAudit(gw.opened.store, { orgId, logger: captureLogger() });

type Row = Record<string, unknown> & { seq: number | string; id: string };
const rowAt = async (seq: number): Promise<Row> => (await rawRows<Row>(gw, 'SELECT * FROM audit_log WHERE org_id = ? AND seq = ?', [ORG_A, seq]))[0]!;

async function cli(...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, TENANTGATE_DATA_DIR: gw.dir, TENANTGATE_MASTER_KEY: gw.config.masterKey!.toString('base64') },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  gw = await createTestGateway();
  for (let i = 0; i < 6; i++) ok(await install(gw, gw.keys.a, { id: `tamper-${i}` }));
  ok(await install(gw, gw.keys.b, { id: 'b-only' }));
});
afterAll(async () => gw?.close());

describe('the verifier', () => {
  it('passes an intact log and counts what it checked', async () => {
    const total = Number((await rawRows<{ n: number }>(gw, 'SELECT count(*) AS n FROM audit_log'))[0]!.n);
    const result = await verify();
    expect(result.failures).toEqual([]);
    expect(result.checked).toBe(total);
  });

  it('names the first edited record', async () => {
    const row = await rowAt(3);
    await rawRun(gw, "UPDATE audit_log SET target_id = 'someone-else' WHERE org_id = ? AND seq = 3", [ORG_A]);
    try {
      const result = await verify();
      expect(result.failures).toEqual([{ orgId: ORG_A, seq: 3, id: row.id, problem: 'edited' }]);
      // Org B's chain is its own, and intact.
      expect((await verify(ORG_B)).failures).toEqual([]);
      // Counted by the process that verified (here: the gateway's own metrics).
      const metrics = await (await gw.fetch('/metrics')).text();
      expect(Number(/^tenantgate_audit_verify_failures_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      await rawRun(gw, 'UPDATE audit_log SET target_id = ? WHERE org_id = ? AND seq = 3', [row.target_id, ORG_A]);
    }
    expect((await verify()).failures).toEqual([]);
  });

  it('catches an edit of the time or the actor, too', async () => {
    const row = await rowAt(2);
    await rawRun(gw, "UPDATE audit_log SET at = '2020-01-01T00:00:00.000Z' WHERE org_id = ? AND seq = 2", [ORG_A]);
    expect((await verify(ORG_A)).failures).toMatchObject([{ seq: 2, problem: 'edited' }]);
    await rawRun(gw, "UPDATE audit_log SET at = ?, actor_key_id = 'key_forged' WHERE org_id = ? AND seq = 2", [row.at, ORG_A]);
    expect((await verify(ORG_A)).failures).toMatchObject([{ seq: 2, problem: 'edited' }]);
    await rawRun(gw, 'UPDATE audit_log SET actor_key_id = ? WHERE org_id = ? AND seq = 2', [row.actor_key_id, ORG_A]);
    expect((await verify(ORG_A)).failures).toEqual([]);
  });

  it('names the record after a deleted one, and a deleted last record', async () => {
    const row = await rowAt(4);
    const columns = Object.keys(row);
    const reinsert = async (r: Row) =>
      rawRun(gw, `INSERT INTO audit_log (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`, columns.map((c) => r[c]));
    await rawRun(gw, 'DELETE FROM audit_log WHERE org_id = ? AND seq = 4', [ORG_A]);
    const next = await rowAt(5);
    expect((await verify()).failures).toEqual([{ orgId: ORG_A, seq: 5, id: next.id, problem: 'removed' }]);
    await reinsert(row);
    expect((await verify()).failures).toEqual([]);

    const head = Number((await rawRows<{ seq: number }>(gw, 'SELECT seq FROM audit_heads WHERE org_id = ?', [ORG_A]))[0]!.seq);
    const last = await rowAt(head);
    await rawRun(gw, 'DELETE FROM audit_log WHERE org_id = ? AND seq = ?', [ORG_A, head]);
    expect((await verify(ORG_A)).failures).toMatchObject([{ orgId: ORG_A, seq: head, problem: 'removed' }]);
    await reinsert(last);

    const first = await rowAt(1);
    await rawRun(gw, 'DELETE FROM audit_log WHERE org_id = ? AND seq = 1', [ORG_A]);
    expect((await verify(ORG_A)).failures).toMatchObject([{ seq: 2, problem: 'removed' }]);
    await reinsert(first);
    expect((await verify()).failures).toEqual([]);
  });

  it('names the first of two swapped records', async () => {
    const [r3, r4] = [await rowAt(3), await rowAt(4)];
    const swap = async () => {
      await rawRun(gw, 'UPDATE audit_log SET seq = 1000000 WHERE org_id = ? AND seq = 3', [ORG_A]);
      await rawRun(gw, 'UPDATE audit_log SET seq = 3 WHERE org_id = ? AND seq = 4', [ORG_A]);
      await rawRun(gw, 'UPDATE audit_log SET seq = 4 WHERE org_id = ? AND seq = 1000000', [ORG_A]);
    };
    await swap();
    expect((await verify()).failures).toEqual([{ orgId: ORG_A, seq: 3, id: r4.id, problem: 'reordered' }]);
    await swap();
    expect((await rowAt(3)).id).toBe(r3.id);
    expect((await verify()).failures).toEqual([]);
  });

  it('passes after pruning, and still catches what is done to the rest', async () => {
    const before = await rowAt(4);
    const cutoff = new Date(new Date(String(before.at)).getTime() + 1).toISOString();
    await new Promise((r) => setTimeout(r, 5));
    const pruned = await gw.opened.store.forOrg(ORG_A).audit.prune(cutoff, { keyId: null, keyPrefix: null, requestId: null, address: null, via: 'cli' });
    expect(pruned).toBeGreaterThanOrEqual(4);
    expect(await rawRows(gw, 'SELECT seq FROM audit_log WHERE org_id = ? AND seq <= 4', [ORG_A])).toEqual([]);
    const result = await verify(ORG_A);
    expect(result.failures).toEqual([]);
    // Deleting more of the old end is not vouched for by the checkpoint.
    const firstLeft = (await gw.opened.store.forOrg(ORG_A).audit.chain(0, 1))[0]!;
    const row = await rowAt(firstLeft.seq);
    await rawRun(gw, 'DELETE FROM audit_log WHERE org_id = ? AND seq = ?', [ORG_A, firstLeft.seq]);
    expect((await verify(ORG_A)).failures).toMatchObject([{ orgId: ORG_A, problem: 'removed' }]);
    const columns = Object.keys(row);
    await rawRun(gw, `INSERT INTO audit_log (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`, columns.map((c) => row[c]));
    expect((await verify()).failures).toEqual([]);
  });
});

// On PostgreSQL the verifier above is the CLI's (maintenance/audit.ts); the process is proved on SQLite.
describe.skipIf(DEFAULT_DIALECT === 'postgres')('the CLI (SQLite: a process on the data dir)', () => {
  it('audit verify: exit 0 and the count; exit 1 naming org, seq and id, a log line per failure without content', async () => {
    // The gateway's store stays open; the CLI opens the same file, as it may beside a running gateway.
    const intact = await cli('audit', 'verify');
    expect(intact.code, intact.stderr).toBe(0);
    expect(intact.stdout).toMatch(/^audit log intact: \d+ record\(s\) in \d+ org\(s\) checked\n$/);

    const row = (await gw.opened.store.forOrg(ORG_B).audit.chain(0, 10)).at(-1)!;
    await rawRun(gw, "UPDATE audit_log SET outcome = 'conflict' WHERE org_id = ? AND seq = ?", [ORG_B, row.seq]);
    try {
      const broken = await cli('audit', 'verify');
      expect(broken.code).toBe(1);
      expect(broken.stdout).toContain(`org "${ORG_B}": record seq ${row.seq} (${row.id}) was edited`);
      const lines = broken.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toEqual([expect.objectContaining({ msg: 'audit chain broken', orgId: ORG_B, seq: row.seq, recordId: row.id, problem: 'edited' })]);
      expect(broken.stderr).not.toContain('b-only');
      expect((await cli('audit', 'verify', '--org', ORG_A)).code).toBe(0);
    } finally {
      await rawRun(gw, "UPDATE audit_log SET outcome = 'success' WHERE org_id = ? AND seq = ?", [ORG_B, row.seq]);
    }
    expect((await cli('audit', 'verify', '--org', 'no-such-org')).code).toBe(2);
  });

  it('audit export writes NDJSON of the org, oldest first, since a time; audit prune keeps it verifiable', async () => {
    const exported = await cli('audit', 'export', '--org', ORG_B);
    expect(exported.code, exported.stderr).toBe(0);
    const records = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; orgId: string; action: string; targetId: string });
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(records.every((r) => r.orgId === ORG_B)).toBe(true);
    expect(records.some((r) => r.action === 'MODULE_INSTALL' && r.targetId === 'b-only')).toBe(true);
    const later = await cli('audit', 'export', '--org', ORG_B, '--since', '2999-01-01');
    expect(later).toMatchObject({ code: 0, stdout: '' });
    expect((await cli('audit', 'export', '--org', ORG_B, '--format', 'csv')).code).toBe(2);
    expect((await cli('audit', 'export')).code).toBe(2);

    const pruned = await cli('audit', 'prune', '--before', new Date(Date.now() + 1000).toISOString());
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.stdout).toMatch(/^pruned \d+ audit record\(s\) before .* in \d+ org\(s\)\n$/);
    const after = await cli('audit', 'verify');
    expect(after.code, after.stdout + after.stderr).toBe(0);
    expect((await cli('audit', 'prune')).code).toBe(2);
  });
});

describe('retention on start (TENANTGATE_AUDIT_RETENTION_DAYS)', () => {
  it('prunes what is older than the setting behind a checkpoint, and what is left verifies', async () => {
    const { default: fs } = await import('node:fs');
    const { default: os } = await import('node:os');
    const { PassThrough } = await import('node:stream');
    const { vi } = await import('vitest');
    const { loadConfig } = await import('../src/config.ts');
    const { openStore } = await import('../src/store/open.ts');
    const { startServer } = await import('../src/server.ts');
    const { SYSTEM_ACTOR } = await import('../src/store/types.ts');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-retention-'));
    const env = {
      TENANTGATE_DATA_DIR: dir,
      TENANTGATE_MASTER_KEY: gw.config.masterKey!.toString('base64'),
      TENANTGATE_PORT: '0',
      TENANTGATE_HOST: '127.0.0.1',
      ...(gw.postgres ? { TENANTGATE_DATABASE: gw.postgres.requestUrl, TENANTGATE_MIGRATION_DATABASE: gw.postgres.ownerUrl } : {}),
    };
    const module = (id: string, at: string) => ({ moduleId: id, name: id, version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at });
    try {
      const opened = await openStore(loadConfig(env), captureLogger());
      const org = `retained-${Date.now()}`;
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(new Date('2020-01-01T00:00:00Z'));
        await opened.store.system.orgs.insert({ id: org, name: 'Old', createdAt: new Date().toISOString() }, SYSTEM_ACTOR);
        for (const id of ['old-1', 'old-2']) await opened.store.forOrg(org).modules.insert(module(id, new Date().toISOString()), SYSTEM_ACTOR);
      } finally {
        vi.useRealTimers();
      }
      await opened.store.forOrg(org).modules.insert(module('recent', new Date().toISOString()), SYSTEM_ACTOR);
      await opened.store.close();

      const logger = captureLogger();
      const server = await startServer(loadConfig({ ...env, TENANTGATE_AUDIT_RETENTION_DAYS: '30' }), logger, new PassThrough());
      await server.stop();
      const line = logger.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'audit records pruned');
      expect(line).toMatchObject({ records: expect.any(Number) });
      expect(Number(line!.records)).toBeGreaterThanOrEqual(3);

      const again = await openStore(loadConfig(env), captureLogger());
      try {
        const left = await again.store.forOrg(org).audit.chain(0, 100);
        expect(left.map((r) => [r.action, r.targetId?.startsWith('through:') ? 'checkpoint' : r.targetId])).toEqual([
          ['MODULE_INSTALL', 'recent'],
          ['AUDIT_CHECKPOINT', 'checkpoint'],
        ]);
        expect((await verifyAudit(again.store, { orgId: org, logger: captureLogger() })).failures).toEqual([]);
      } finally {
        await again.store.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(DEFAULT_DIALECT === 'postgres')('several processes on one SQLite file (PostgreSQL: several pools, in test/audit.test.ts)', () => {
  it('append to one org in turn: one gapless chain that verifies', async () => {
    const { spawn } = await import('node:child_process');
    const { default: readline } = await import('node:readline');
    const before = (await gw.opened.store.forOrg(ORG_B).audit.head())?.seq ?? 0;
    const count = 25;
    const children = Array.from({ length: 3 }, (_, i) =>
      spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/audit-child.ts'], {
        cwd: ROOT,
        env: { ...process.env, TG_DATA_DIR: gw.dir, TG_MASTER_KEY: gw.config.masterKey!.toString('base64'), TG_ORG: ORG_B, TG_NAME: `proc${i}`, TG_COUNT: String(count) },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const lines = children.map((c) => readline.createInterface({ input: c.stdout })[Symbol.asyncIterator]());
    for (const l of lines) expect((await l.next()).value).toBe('ready');
    for (const c of children) c.stdin.end('go\n');
    // This process writes at the same time.
    const at = new Date().toISOString();
    const mine = Array.from({ length: count }, (_, i) =>
      gw.opened.store.forOrg(ORG_B).modules.insert({ moduleId: `parent-${i}`, name: 'p', version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at }, {
        keyId: null, keyPrefix: null, requestId: null, address: null, via: 'system',
      }),
    );
    for (const l of lines) expect((await l.next()).value).toBe('done');
    expect((await Promise.all(mine)).every(Boolean)).toBe(true);
    await Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode === null ? c.on('exit', resolve) : resolve(null)))));
    for (const c of children) expect(c.exitCode).toBe(0);

    const head = (await gw.opened.store.forOrg(ORG_B).audit.head())!;
    expect(head.seq).toBe(before + 4 * count);
    const chain = await gw.opened.store.forOrg(ORG_B).audit.chain(0, 10_000);
    // Contiguous from the first record kept (the CLI's prune above took the older ones) to the head.
    const first = chain[0]!.seq;
    expect(chain.map((r) => r.seq)).toEqual(Array.from({ length: head.seq - first + 1 }, (_, i) => first + i));
    expect(chain.filter((r) => r.action === 'MODULE_INSTALL' && r.targetId?.startsWith('proc')).length).toBe(3 * count);
    expect((await verify(ORG_B)).failures).toEqual([]);
  });
});
