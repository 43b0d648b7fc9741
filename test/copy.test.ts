import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { drizzle as sqliteDrizzle } from 'drizzle-orm/better-sqlite3';
import { drizzle as pgDrizzle } from 'drizzle-orm/node-postgres';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Scope } from '../src/auth/scopes.ts';
import { loadConfig } from '../src/config.ts';
import { DataKey, orgKeyring } from '../src/crypto/data-keys.ts';
import { SecretBox } from '../src/crypto/secret-box.ts';
import { captureLogger } from '../src/logger.ts';
import { copyToPostgres, jsonbText, runCopy } from '../src/maintenance/copy.ts';
import { issueApiKey } from '../src/repos/api-keys.ts';
import { openStore } from '../src/store/open.ts';
import * as pgSchema from '../src/store/postgres/schema.ts';
import * as sqliteSchema from '../src/store/sqlite/schema.ts';
import { createTestGateway, ORG_A, ORG_B } from './helpers/gateway.ts';
import { createLegacyFromFixture, FIXTURE_SECRETS } from './helpers/legacy.ts';
import { asSuperuser, createScratchDatabase, postgresAvailable, type ScratchDatabase } from './helpers/postgres.ts';
import { SYSTEM_ACTOR, type OrgKeyRow } from '../src/store/types.ts';

// `tenantgate copy --to postgres://…` (issue 13, item 6): a SQLite store into an empty PostgreSQL
// database, in one transaction, verified by the target. Each test copies into a scratch database
// of its own (owned by a non-superuser owning role, dropped after); the superuser only creates,
// inspects and plants (a trigger, a row), never copies.

const available = await postgresAvailable();
if (!available) console.log('copy: skipped, no PostgreSQL answers (CI starts one and runs these)');

const at = (day: number) => new Date(Date.UTC(2026, 0, day, 8, 30, 0, 123)).toISOString();

interface Source {
  dir: string;
  env: Record<string, string>;
  masterKey: Buffer;
  /** A live key of org A minted in the source, to use on the copy. */
  keyA: string;
  plaintexts: Map<string, string>;
}

const dirs: string[] = [];
const scratches: ScratchDatabase[] = [];
afterAll(async () => {
  for (const s of scratches) await s.drop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-copy-'));
  dirs.push(dir);
  return dir;
}

async function scratch(): Promise<ScratchDatabase> {
  const s = await createScratchDatabase({ migrate: false });
  scratches.push(s);
  return s;
}

/** A SQLite store written through the store's own calls: two orgs, key chains, modules with every field, credentials. */
async function buildSource(): Promise<Source> {
  const dir = tempDir();
  const masterKey = randomBytes(32);
  const env = { TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: masterKey.toString('base64'), TENANTGATE_LOG_LEVEL: 'warn' };
  const opened = await openStore(loadConfig(env), captureLogger());
  const { store, secretBox, sqlite } = opened;
  try {
    await store.system.orgs.insert({ id: ORG_A, name: 'Org A', createdAt: at(1) }, SYSTEM_ACTOR);
    await store.system.orgs.insert({ id: ORG_B, name: 'Zürich Ö 😀 "quoted"', createdAt: at(2) }, SYSTEM_ACTOR);
    const operator = { keyId: null, scopes: 'all' } as const;
    const root = await issueApiKey(store, ORG_A, { name: 'root', scopes: ['modules:read', 'modules:write', 'keys:manage'] }, operator, SYSTEM_ACTOR);
    const child = await issueApiKey(store, ORG_A, { name: 'child', scopes: ['modules:read', 'keys:manage'] }, { keyId: root.apiKey.id, scopes: new Set(root.apiKey.scopes as Scope[]) }, SYSTEM_ACTOR);
    await issueApiKey(store, ORG_A, { name: 'grandchild', scopes: ['modules:read'] }, { keyId: child.apiKey.id, scopes: new Set(child.apiKey.scopes as Scope[]) }, SYSTEM_ACTOR);
    const revoked = await issueApiKey(store, ORG_A, { name: 'revoked', scopes: ['modules:read'] }, operator, SYSTEM_ACTOR);
    await store.forOrg(ORG_A).apiKeys.revoke(revoked.apiKey.id, at(5), SYSTEM_ACTOR);
    const expiring = await issueApiKey(store, ORG_B, { name: 'expired', scopes: ['modules:read'], expiresAt: new Date(Date.now() + 60_000) }, operator, SYSTEM_ACTOR);
    sqlite.prepare('UPDATE api_keys SET expires_at = ?, last_used_at = ? WHERE id = ?').run(at(3), at(2), expiring.apiKey.id);
    await issueApiKey(store, ORG_B, { name: 'b live', scopes: ['modules:read', 'credentials:reveal'] }, operator, SYSTEM_ACTOR);

    const plaintexts = new Map<string, string>();
    for (const [org, ids] of [[ORG_A, ['github', 'slack', 'zürich-wetter']], [ORG_B, ['github', 'notion']]] as const) {
      for (const moduleId of ids) {
        await store.forOrg(org).modules.insert({
          moduleId,
          name: `${moduleId} of ${org} ☀`,
          version: '2.3.1+build.7',
          description: moduleId === 'slack' ? null : `desc\nwith "quotes" | pipes and 😀 ${org}`,
          config: '{"b": 1,  "a": [true, null, 1.5], "ü": "x"}',
          enabled: moduleId !== 'notion',
          installedAt: at(3),
          updatedAt: at(4),
        }, SYSTEM_ACTOR);
      }
      const secret = JSON.stringify({ token: `ghp_${org}_${randomBytes(6).toString('hex')}`, 'schlüssel': 'wärme' });
      plaintexts.set(`${org}/github`, secret);
      const sealed = (await orgKeyring(store, secretBox).seal(store.forOrg(org), 'github', secret))!; // under the org's data key
      await store.forOrg(org).credentials.upsert({ moduleId: 'github', ...sealed, fields: ['token', 'schlüssel'], createdAt: at(5), updatedAt: at(6) }, SYSTEM_ACTOR);
    }
    // The columns only system operations write (health, usage), set here directly.
    sqlite
      .prepare(
        `UPDATE modules SET health_status = 'degraded', health_message = 'timeout after 30s ⏱', last_health_check = ?,
                usage_count = 1099511627776, last_used_at = ? WHERE org_id = ? AND module_id = 'github'`,
      )
      .run(at(7), at(8), ORG_A);
    // Metering (issue 14): events (one past 2^31 units, one attributed to a module), their month
    // and hour totals, served requests, quota rows.
    const event = (id: string, idempotencyKey: string, units: number, occurredAt: string, moduleId: string | null = null) => ({
      id, idempotencyKey, units, moduleId, occurredAt, recordedAt: occurredAt, keyId: root.apiKey.id,
    });
    for (const [org, e] of [
      [ORG_A, event('ru_a1', 'runner-1 "job" ü', 5, at(10), 'github')],
      [ORG_A, event('ru_a2', 'runner-2', 7, at(10))],
      [ORG_A, event('ru_a3', 'runner-3', 2 ** 40, '2026-02-01T00:00:00.000Z')],
      [ORG_B, event('ru_b1', 'runner-1 "job" ü', 1, at(11))],
    ] as const) {
      expect(await store.forOrg(org).usage.record(e, null)).toMatchObject({ kind: 'recorded' });
    }
    await store.system.usage.addRequests([
      { orgId: ORG_A, hourStart: '2026-01-10T08:00:00.000Z', count: 3 },
      { orgId: ORG_B, hourStart: '2026-01-12T00:00:00.000Z', count: 2 },
    ]);
    await store.forOrg(ORG_A).usage.setQuota({ runUnitsPerMonth: 2 ** 41, requestsPerMinute: 600, burst: 100, updatedAt: at(9) }, SYSTEM_ACTOR);
    await store.forOrg(ORG_B).usage.setQuota({ runUnitsPerMonth: null, requestsPerMinute: null, burst: null, updatedAt: at(9) }, SYSTEM_ACTOR);
    return { dir, env, masterKey, keyA: root.secret, plaintexts };
  } finally {
    await store.close();
  }
}

type Rows = Record<string, unknown[]>;
const sortRows = (rows: Array<Record<string, unknown>>) =>
  [...rows].sort((a, b) =>
    JSON.stringify([a.orgId, a.id, a.moduleId, a.monthStart, a.hourStart]).localeCompare(JSON.stringify([b.orgId, b.id, b.moduleId, b.monthStart, b.hourStart])),
  );

/** Every row of every table, read back through each dialect's drizzle schema (typed the same way). */
type CopiedCredential = { orgId: string; moduleId: string; ciphertext: Buffer; iv: Buffer; tag: Buffer; keyId: string };

/** A copied credential opened with the master key and its org's copied data key (issue 15). */
function openCopied(masterKey: Buffer, rows: Rows, c: CopiedCredential): string {
  const k = (rows.orgKeys as OrgKeyRow[]).find((r) => r.orgId === c.orgId);
  if (!k) throw new Error(`no data key copied for ${c.orgId}`);
  return new DataKey(k.orgId, k.keyId, new SecretBox(masterKey).unwrapDataKey(k.orgId, k.keyId, k)).open(c.moduleId, c);
}

function sourceRows(file: string): Rows {
  const db = new Database(file, { readonly: true });
  try {
    const d = sqliteDrizzle({ client: db });
    return {
      orgs: sortRows(d.select().from(sqliteSchema.orgs).all()),
      apiKeys: sortRows(d.select().from(sqliteSchema.apiKeys).all()),
      modules: sortRows(d.select().from(sqliteSchema.modules).all()),
      credentials: sortRows(d.select().from(sqliteSchema.credentials).all()),
      runUnitEvents: sortRows(d.select().from(sqliteSchema.runUnitEvents).all()),
      usageMonths: sortRows(d.select().from(sqliteSchema.usageMonths).all()),
      usageHours: sortRows(d.select().from(sqliteSchema.usageHours).all()),
      orgQuotas: sortRows(d.select().from(sqliteSchema.orgQuotas).all()),
      orgKeys: sortRows(d.select().from(sqliteSchema.orgKeys).all()),
      auditLog: sortRows(d.select().from(sqliteSchema.auditLog).all()),
      auditHeads: sortRows(d.select().from(sqliteSchema.auditHeads).all()),
    };
  } finally {
    db.close();
  }
}

/** The target's rows, read as the superuser (inspection only: it bypasses the wall). */
function targetRows(db: ScratchDatabase): Promise<Rows> {
  return asSuperuser(db.name, async (client) => {
    const d = pgDrizzle({ client });
    return {
      orgs: sortRows(await d.select().from(pgSchema.orgs)),
      apiKeys: sortRows(await d.select().from(pgSchema.apiKeys)),
      modules: sortRows(await d.select().from(pgSchema.modules)),
      credentials: sortRows(await d.select().from(pgSchema.credentials)),
      runUnitEvents: sortRows(await d.select().from(pgSchema.runUnitEvents)),
      usageMonths: sortRows(await d.select().from(pgSchema.usageMonths)),
      usageHours: sortRows(await d.select().from(pgSchema.usageHours)),
      orgQuotas: sortRows(await d.select().from(pgSchema.orgQuotas)),
      orgKeys: sortRows(await d.select().from(pgSchema.orgKeys)),
      auditLog: sortRows(await d.select().from(pgSchema.auditLog)),
      auditHeads: sortRows(await d.select().from(pgSchema.auditHeads)),
    };
  });
}

async function forced(db: ScratchDatabase): Promise<Record<string, boolean>> {
  const rows = await db.query<{ relname: string; forced: boolean }>(
    `SELECT relname, relrowsecurity AND relforcerowsecurity AS forced FROM pg_class
      WHERE relnamespace = 'public'::regnamespace AND relname = ANY($1) ORDER BY relname`,
    [[...pgSchema.WALLED_TABLES]],
  );
  return Object.fromEntries(rows.map((r) => [r.relname, r.forced]));
}
const ALL_FORCED = Object.fromEntries([...pgSchema.WALLED_TABLES].sort().map((t) => [t, true]));

function capture() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: { write: (t: string) => (out.stdout += t) }, stderr: { write: (t: string) => (out.stderr += t) } } };
}

describe('jsonbText (the source side of a jsonb token)', () => {
  it("prints as PostgreSQL's jsonb output does", () => {
    expect(jsonbText(JSON.parse('{"bb":1,"a":[true,null,"x\\"\\n\\u0001"],"bb":2,"ü":{}}'))).toBe('{"a": [true, null, "x\\"\\n\\u0001"], "bb": 2, "ü": {}}');
    expect(jsonbText(['modules:read', 'keys:manage'])).toBe('["modules:read", "keys:manage"]');
  });
});

describe.skipIf(!available)('tenantgate copy --to postgres://… (issue 13, item 6)', () => {
  let gateway: Awaited<ReturnType<typeof createTestGateway>> | undefined;
  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
  });

  it('copies every row of every table, verified, and a gateway on the copy serves it with a key minted in the source', async () => {
    const source = await buildSource();
    const target = await scratch();
    const { out, io } = capture();
    const code = await runCopy(['copy', '--to', target.ownerUrl], { ...source.env, TENANTGATE_LOG_LEVEL: 'info' }, io);
    expect(out.stderr).not.toMatch(/"level":"(warn|error)"/);
    expect(code).toBe(0);
    expect(out.stdout).toMatch(/^copied into postgres:\/\/.* verified row by row: orgs 3, api_keys 6, modules 5, credentials 2, run_unit_events 4, usage_months 3, usage_hours 4, org_quotas 2, org_keys 2, audit_log 18, audit_heads 2\n/);
    expect(out.stderr).toMatch(/"msg":"copy: rows copied","table":"modules","copied":5,"of":5/);

    const want = sourceRows(path.join(source.dir, 'tenantgate.db'));
    const got = await targetRows(target);
    for (const table of Object.keys(want)) expect(got[table], table).toEqual(want[table]);
    // The look-alike data is there to be compared, not empty.
    expect(want.apiKeys!.length).toBe(6);
    expect(want.runUnitEvents!.length).toBe(4);
    expect(want.usageMonths).toContainEqual({ orgId: ORG_A, monthStart: '2026-01-01T00:00:00.000Z', runUnits: 12, requests: 3 });
    expect((got.apiKeys as Array<{ createdByKeyId: string | null }>).filter((k) => k.createdByKeyId !== null)).toHaveLength(2);
    expect((got.orgs as Array<{ id: string; createdAt: string }>).find((o) => o.id === 'default')?.createdAt).toBe(
      (want.orgs as Array<{ id: string; createdAt: string }>).find((o) => o.id === 'default')?.createdAt,
    );

    // Sealed bytes copied as they are, the org keys with them: they open with the same master key, bound to their row.
    for (const row of got.credentials as CopiedCredential[]) {
      expect(openCopied(source.masterKey, got, row)).toBe(source.plaintexts.get(`${row.orgId}/${row.moduleId}`));
    }
    expect(await forced(target)).toEqual(ALL_FORCED);

    // The user's path: a gateway on the copied database, as the request role, over HTTP.
    gateway = await createTestGateway({ database: target, seed: false, env: { TENANTGATE_MASTER_KEY: source.masterKey.toString('base64') } });
    const res = await gateway.gql(source.keyA, '{ module(id: "github") { id name config health { status message } usageCount hasCredential } viewer { org { id name } } }');
    expect(res.status, res.text).toBe(200);
    expect(res.body.data?.module, res.text).toEqual({
      id: 'github',
      name: `github of ${ORG_A} ☀`,
      config: { b: 1, a: [true, null, 1.5], ü: 'x' },
      health: { status: 'DEGRADED', message: 'timeout after 30s ⏱' },
      usageCount: 1099511627776,
      hasCredential: true,
    });
    expect(res.body.data.viewer.org).toEqual({ id: ORG_A, name: 'Org A' });
    // The audit chains came across byte for byte: they verify on PostgreSQL as they did on SQLite.
    const { verifyAudit } = await import('../src/maintenance/audit.ts');
    const verified = await verifyAudit(gateway.opened.store, { logger: gateway.logger });
    // (18 copied, and what the test gateway's own set-up appended to them since.)
    expect(verified.failures).toEqual([]);
    expect(verified.checked).toBeGreaterThan(18);
  });

  it('copies a consistent snapshot: a row written to the source during the copy is not copied, and the source is unchanged', async () => {
    const source = await buildSource();
    const target = await scratch();
    const file = path.join(source.dir, 'tenantgate.db');
    const before = sourceRows(file);
    const opened = await openStore(loadConfig(source.env), captureLogger());
    const writer = new Database(file);
    let wrote = false;
    try {
      const result = await copyToPostgres({
        source: opened.sqlite,
        targetUrl: target.ownerUrl,
        logger: captureLogger(),
        batchSize: 2,
        onProgress: ({ table, copied }) => {
          if (table !== 'modules' || copied !== 2) return;
          writer
            .prepare(`INSERT INTO modules (org_id, module_id, name, version, installed_at, updated_at) VALUES (?, 'late', 'late', '1', ?, ?)`)
            .run(ORG_A, at(9), at(9));
          wrote = true;
        },
      });
      expect(result.tables.find((t) => t.table === 'modules')?.rows).toBe(5);
    } finally {
      writer.close();
      await opened.store.close();
    }
    expect(wrote).toBe(true);
    const got = await targetRows(target);
    expect(got.modules).toEqual(before.modules);
    const after = sourceRows(file);
    expect(after.modules).toHaveLength(before.modules!.length + 1); // the late row, and nothing else changed
    expect(after.apiKeys).toEqual(before.apiKeys);
    expect(after.credentials).toEqual(before.credentials);
  });

  it('refuses a target that is not empty, in one line, and leaves it unchanged', async () => {
    const source = await buildSource();
    const target = await scratch();
    expect(await runCopy(['copy', '--to', target.ownerUrl], source.env, capture().io)).toBe(0);
    const before = await targetRows(target);
    const { out, io } = capture();
    expect(await runCopy(['copy', '--to', target.ownerUrl], source.env, io)).toBe(2);
    expect(out.stderr).toBe('tenantgate: the target is not empty: it holds 2 org(s) besides "default", 6 API key(s), 5 module(s), 2 credential(s), 4 run-unit event(s), 7 usage total(s), 2 quota row(s); copy only into a new, empty database\n');
    expect(out.stdout).toBe('');
    expect(await targetRows(target)).toEqual(before);
    expect(await forced(target)).toEqual(ALL_FORCED);

    // One planted module is enough to refuse.
    const other = await scratch();
    await runCopy(['copy', '--to', other.ownerUrl], { ...source.env, TENANTGATE_DATA_DIR: tempDir(), TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64') }, capture().io);
    await other.query(`INSERT INTO modules (org_id, module_id, name, version, installed_at, updated_at) VALUES ('default', 'x', 'x', '1', 'now', 'now')`);
    const second = capture();
    expect(await runCopy(['copy', '--to', other.ownerUrl], source.env, second.io)).toBe(2);
    expect(second.out.stderr).toMatch(/^tenantgate: the target is not empty: it holds 1 module\(s\); /);
  });

  it('adopts a pre-tenant file first, then copies it', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'tenantgate.db');
    createLegacyFromFixture(file);
    const masterKey = randomBytes(32);
    const env = { TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: masterKey.toString('base64'), TENANTGATE_LOG_LEVEL: 'warn' };
    const target = await scratch();
    const { out, io } = capture();
    expect(await runCopy(['copy', '--to', target.ownerUrl], env, io)).toBe(0);
    expect(out.stdout).toMatch(/orgs 1, api_keys 0, modules 3, credentials 2, run_unit_events 0, usage_months 0, usage_hours 0, org_quotas 0, org_keys 1, audit_log 0, audit_heads 0\n/);
    const got = await targetRows(target);
    expect((got.modules as Array<{ orgId: string; moduleId: string }>).map((m) => [m.orgId, m.moduleId])).toEqual([
      ['default', 'github'],
      ['default', 'slack'],
      ['default', 'zürich-weather'],
    ]);
    expect(got).toEqual(sourceRows(file));
    // Adopted (sealed under the master key), then moved to the org's data key on the copy's start.
    const opened = (got.credentials as CopiedCredential[]).map((c) => openCopied(masterKey, got, c));
    expect(opened.join(' ')).toContain(FIXTURE_SECRETS[0]);
    expect(opened.join(' ')).toContain(FIXTURE_SECRETS[2]);
  });

  it('catches a target that stores something other than what was sent, names the row and column, and rolls back', async () => {
    const source = await buildSource();
    const target = await scratch();
    // Migrated first (copy migrates only what is missing), then a trigger planted by the superuser.
    expect(await runCopy(['copy', '--to', target.ownerUrl], { ...source.env, TENANTGATE_DATA_DIR: tempDir(), TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64') }, capture().io)).toBe(0);
    await target.query(`DELETE FROM api_keys`);
    await target.query(`DELETE FROM orgs WHERE id <> 'default'`);
    await target.query(`
      CREATE FUNCTION alter_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.module_id = 'slack' THEN NEW.description := 'tampered'; END IF;
        RETURN NEW;
      END $$`);
    await target.query(`CREATE TRIGGER alter_on_insert BEFORE INSERT ON modules FOR EACH ROW EXECUTE FUNCTION alter_on_insert()`);
    const { out, io } = capture();
    expect(await runCopy(['copy', '--to', target.ownerUrl], source.env, io)).toBe(1);
    expect(out.stderr).toBe(
      'tenantgate: verification failed, nothing was copied (rolled back): modules: 5 row(s) read, 5 stored, ' +
        '1 stored differently (modules row org_id="org-a", module_id="slack" differs in description)\n',
    );
    const got = await targetRows(target);
    expect(got.modules).toEqual([]);
    expect(got.apiKeys).toEqual([]);
    expect((got.orgs as Array<{ id: string }>).map((o) => o.id)).toEqual(['default']);
    expect(await forced(target)).toEqual(ALL_FORCED);
  });

  it('stops at a source value PostgreSQL cannot hold, naming the row and column, and copies nothing', async () => {
    const source = await buildSource();
    const db = new Database(path.join(source.dir, 'tenantgate.db'));
    db.prepare(`UPDATE modules SET usage_count = ? WHERE org_id = ? AND module_id = 'slack'`).run(2n ** 62n, ORG_A);
    db.close();
    const target = await scratch();
    const { out, io } = capture();
    expect(await runCopy(['copy', '--to', target.ownerUrl], source.env, io)).toBe(2);
    expect(out.stderr).toBe(
      'tenantgate: the source cannot be copied: modules row org_id="org-a", module_id="slack" column usage_count holds 4611686018427388000, past 2^53, which the store cannot read exactly\n',
    );
    const got = await targetRows(target);
    expect([got.apiKeys, got.modules, got.credentials]).toEqual([[], [], []]);
    expect(await forced(target)).toEqual(ALL_FORCED);
  });

  it('answers bad input in one line with exit code 2, never repeating a password, and writes nothing', async () => {
    const source = await buildSource();
    const cases: Array<[string[], RegExp]> = [
      [['copy'], /^tenantgate: copy needs --to, the target's owning role URL; usage: tenantgate copy --to postgres:\/\/OWNER/],
      [['copy', '--to', 'mysql://root:hunter2@db/x'], /^tenantgate: --to must be a postgres:\/\/ URL/],
      [['copy', '--to', './other.db'], /^tenantgate: --to must be a postgres:\/\/ URL/],
      [['copy', '--to', 'postgres://127.0.0.1/db'], /^tenantgate: --to names no role/],
      [['copy', '--to', 'postgres://owner:hunter2@127.0.0.1:1/db'], /^tenantgate: cannot connect to postgres:\/\/owner:\*\*\*@127\.0\.0\.1:1\/db: ECONNREFUSED\n$/],
      // A missing database on the local server (refused outright where none runs, as under PGlite).
      [['copy', '--to', 'postgres://postgres:hunter2@127.0.0.1:5432/tenantgate_no_such_db'], /^tenantgate: cannot connect to postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:5432\/tenantgate_no_such_db: (.*does not exist|ECONNREFUSED)\n$/],
      [['copy', '--to'], /^tenantgate: Option --to <value> argument missing/],
      [['copy', '--to', 'postgres://a@h/d', 'extra'], /^tenantgate: unexpected argument "extra"/],
    ];
    for (const [argv, expected] of cases) {
      const { out, io } = capture();
      expect(await runCopy(argv, source.env, io), argv.join(' ')).toBe(2);
      expect(out.stderr, argv.join(' ')).toMatch(expected);
      expect(out.stderr.split('\n').filter(Boolean), argv.join(' ')).toHaveLength(1);
      expect(out.stderr + out.stdout).not.toContain('hunter2');
    }

    // The request role of a migrated store is not the owner: refused before anything is written.
    const target = await createScratchDatabase({ password: 'hunter2' });
    scratches.push(target);
    const { out, io } = capture();
    expect(await runCopy(['copy', '--to', target.requestUrl], source.env, io)).toBe(2);
    expect(out.stderr).toMatch(/does not own the tables: --to must be the owning role's URL/);
    expect(out.stderr).not.toContain('hunter2');
    expect((await targetRows(target)).modules).toEqual([]);
  });
});
