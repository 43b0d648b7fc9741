import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';
import { SecretBox } from '../src/crypto/secret-box.ts';
import { captureLogger } from '../src/logger.ts';
import { startServer } from '../src/server.ts';
import { StoreError } from '../src/store/errors.ts';
import { openStore, type OpenedStore } from '../src/store/open.ts';
import { toStoreError } from '../src/store/postgres/errors.ts';
import { PG_MIGRATIONS } from '../src/store/postgres/migrate.ts';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import type { PostgresStore } from '../src/store/postgres/store.ts';
import type { Change, NewApiKey, NewModule } from '../src/store/types.ts';
import { createTestGateway, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';
import { createScratchDatabase, postgresAvailable, postgresMultiProcess, type ScratchDatabase } from './helpers/postgres.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

// The PostgreSQL store (issue 13): every method of the seam as the request role, the cross-org
// definer path, error mapping, the LISTEN/NOTIFY change feed, what openStore refuses, and a
// gateway served on it over HTTP.

const available = await postgresAvailable();
// Cutting connections from outside (pg_terminate_backend, CONNECTION LIMIT) needs a server:
// PGlite lives in this process and has no other backends. CI always runs these (it has a server).
const onServer = available && (await postgresMultiProcess());
if (!available) console.log('postgres-store: skipped, no PostgreSQL answers (CI starts one and runs these)');

const MASTER_KEY = randomBytes(32);
/** How many migrations drizzle/pg holds: a fresh database gets them all. */
const MIGRATIONS = readMigrationFiles({ migrationsFolder: PG_MIGRATIONS }).length;
const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-02T00:00:00.000Z';
const T2 = '2026-01-03T00:00:00.000Z';

const module = (moduleId: string, extra: Partial<NewModule> = {}): NewModule => ({
  moduleId, name: `Module ${moduleId}`, version: '1.0.0', description: null, config: '{"z":1,"a":[2]}', enabled: true, installedAt: T0, updatedAt: T0, ...extra,
});
const key = (id: string, extra: Partial<NewApiKey> = {}): NewApiKey => ({
  id, name: `key ${id}`, prefix: 'tgk_abc', hash: `hash-${id}`, scopes: ['modules:read'], createdAt: T0, expiresAt: null, revokedAt: null, lastUsedAt: null, createdByKeyId: null, ...extra,
});
const sealed = (keyId = 'mk_1') => ({ ciphertext: randomBytes(8), iv: randomBytes(12), tag: randomBytes(16), keyId });

const storeConfig = (scratch: ScratchDatabase, extra: Partial<Parameters<typeof openStore>[0]> = {}) => ({
  database: scratch.requestUrl,
  dataDir: os.tmpdir(),
  masterKey: MASTER_KEY,
  previousMasterKeys: [],
  databasePool: { max: 4, connectTimeoutMs: 2000, idleTimeoutMs: 10_000, statementTimeoutMs: 2000 },
  ...extra,
});

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 5000): Promise<number> {
  const started = performance.now();
  while (!(await ok())) {
    if (performance.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return performance.now() - started;
}

describe.skipIf(!available)('the PostgreSQL store', () => {
  let scratch: ScratchDatabase;
  let opened: OpenedStore;
  let store: PostgresStore;
  let other: OpenedStore; // a second process's store on the same database

  beforeAll(async () => {
    scratch = await createScratchDatabase({ password: 'pw-SECRET-9' });
    opened = await openStore(storeConfig(scratch), captureLogger());
    store = opened.postgres!;
    other = await openStore(storeConfig(scratch), captureLogger());
    for (const id of ['a', 'b']) expect(await store.system.orgs.insert({ id, name: `Org ${id}`, createdAt: T0 }, SYSTEM_ACTOR)).toBe(true);
  });
  afterAll(async () => {
    await opened?.store.close();
    await other?.store.close();
    await scratch?.drop();
  });

  it('is PostgreSQL, and names host and database only', () => {
    expect(store.dialect).toBe('postgres');
    expect(store.location).toBe(`postgres://${new URL(scratch.requestUrl).host}/${scratch.name}`);
    expect(store.location).not.toContain('pw-SECRET-9');
    expect(() => opened.sqlite).toThrow(/PostgreSQL/);
  });

  describe('org-bound methods', () => {
    it('org(): its own row, and nothing for an org that does not exist', async () => {
      expect(await store.forOrg('a').org()).toEqual({ id: 'a', name: 'Org a', createdAt: T0, status: 'active', suspendedAt: null, suspendReason: null });
      expect(await store.forOrg('nope').org()).toBeUndefined();
    });

    it('modules: insert (false when taken), get, list with keyset cursors and filters, projections, count, update, delete', async () => {
      const a = store.forOrg('a');
      for (const id of ['m3', 'm1', 'm2']) expect(await a.modules.insert(module(id, { enabled: id !== 'm2' }), SYSTEM_ACTOR)).toBe(true);
      expect(await a.modules.insert(module('m1', { name: 'again' }), SYSTEM_ACTOR)).toBe(false);
      expect(await store.forOrg('b').modules.insert(module('m1', { name: 'B one' }), SYSTEM_ACTOR)).toBe(true); // same id, other org

      const m1 = await a.modules.get('m1');
      expect(m1).toEqual({
        orgId: 'a', moduleId: 'm1', name: 'Module m1', version: '1.0.0', description: null, config: '{"z":1,"a":[2]}', enabled: true,
        healthStatus: 'unknown', healthMessage: null, lastHealthCheck: null, usageCount: 0, lastUsedAt: null, installedAt: T0, updatedAt: T0, hasCredential: false,
      });
      expect((await a.modules.list({ enabled: undefined, after: '', limit: 10 })).map((m) => m.moduleId)).toEqual(['m1', 'm2', 'm3']);
      expect((await a.modules.list({ enabled: undefined, after: 'm1', limit: 1 })).map((m) => m.moduleId)).toEqual(['m2']);
      expect((await a.modules.list({ enabled: true, after: '', limit: 10 })).map((m) => m.moduleId)).toEqual(['m1', 'm3']);
      expect((await a.modules.list({ enabled: false, after: '', limit: 10 })).map((m) => m.moduleId)).toEqual(['m2']);
      const narrow = await a.modules.list({ enabled: undefined, after: '', limit: 1, fields: new Set(['name', 'hasCredential'] as const) });
      expect(narrow).toEqual([{ orgId: 'a', moduleId: 'm1', name: 'Module m1', hasCredential: false }]);
      expect([await a.modules.count(undefined), await a.modules.count(true), await a.modules.count(false)]).toEqual([3, 2, 1]);

      const updated = await a.modules.update('m3', { name: 'Three', enabled: false, config: '{"b":2, "b":3}' }, T1, SYSTEM_ACTOR);
      expect(updated).toMatchObject({ moduleId: 'm3', name: 'Three', enabled: false, config: '{"b":2, "b":3}', updatedAt: T1, installedAt: T0 });
      expect(await a.modules.update('absent', { name: 'x' }, T1, SYSTEM_ACTOR)).toBeUndefined();
      expect(await a.modules.get('no\u0000such')).toBeUndefined(); // PostgreSQL text holds no NUL: answered as missing
      expect(await a.modules.delete('m3', SYSTEM_ACTOR)).toBe(true);
      expect(await a.modules.delete('m3', SYSTEM_ACTOR)).toBe(false);
    });

    it('credentials: upsert (false when the module is missing in this org), get, has, list, delete by cascade with the module', async () => {
      const a = store.forOrg('a');
      const first = sealed();
      expect(await a.credentials.upsert({ moduleId: 'm1', ...first, fields: ['token'], createdAt: T0, updatedAt: T0 }, SYSTEM_ACTOR)).toBe(true);
      expect(await a.credentials.upsert({ moduleId: 'absent', ...sealed(), fields: ['x'], createdAt: T0, updatedAt: T0 }, SYSTEM_ACTOR)).toBe(false);
      // b has an m1 of its own, but a's upsert for a module only b has is refused
      expect(await store.forOrg('b').modules.insert(module('only-b'), SYSTEM_ACTOR)).toBe(true);
      expect(await a.credentials.upsert({ moduleId: 'only-b', ...sealed(), fields: ['x'], createdAt: T0, updatedAt: T0 }, SYSTEM_ACTOR)).toBe(false);

      const second = sealed('mk_2');
      expect(await a.credentials.upsert({ moduleId: 'm1', ...second, fields: ['token', 'user'], createdAt: T1, updatedAt: T1 }, SYSTEM_ACTOR)).toBe(true);
      expect(await a.credentials.get('m1')).toEqual({ orgId: 'a', moduleId: 'm1', ...second, fields: ['token', 'user'], createdAt: T0, updatedAt: T1 });
      expect(await a.credentials.has('m1')).toBe(true);
      expect(await a.credentials.has('m2')).toBe(false);
      expect(await a.credentials.list()).toEqual([{ orgId: 'a', moduleId: 'm1', fields: ['token', 'user'], keyId: 'mk_2', createdAt: T0, updatedAt: T1 }]);
      expect((await a.modules.get('m1'))?.hasCredential).toBe(true);
      expect((await a.modules.list({ enabled: undefined, after: '', limit: 10, fields: new Set(['hasCredential'] as const) })).map((m) => m.hasCredential)).toEqual([true, false]);

      expect(await a.modules.insert(module('gone'), SYSTEM_ACTOR)).toBe(true);
      expect(await a.credentials.upsert({ moduleId: 'gone', ...sealed(), fields: ['x'], createdAt: T0, updatedAt: T0 }, SYSTEM_ACTOR)).toBe(true);
      expect(await a.modules.delete('gone', SYSTEM_ACTOR)).toBe(true);
      expect(await a.credentials.get('gone')).toBeUndefined();
      expect(await scratch.query(`SELECT 1 FROM credentials WHERE org_id = 'a' AND module_id = 'gone'`)).toEqual([]);
      expect(await a.credentials.delete('m2', SYSTEM_ACTOR)).toBe(false);
    });

    it('api keys: insert, list oldest first, get, revoke (once), descendants within the org, revokeTree with its check inside the transaction', async () => {
      const a = store.forOrg('a');
      await a.apiKeys.insert(key('root', { createdAt: T0 }), SYSTEM_ACTOR);
      await a.apiKeys.insert(key('child', { createdAt: T1, createdByKeyId: 'root' }), SYSTEM_ACTOR);
      await a.apiKeys.insert(key('grandchild', { createdAt: T2, createdByKeyId: 'child' }), SYSTEM_ACTOR);
      await a.apiKeys.insert(key('spent', { createdAt: T1, createdByKeyId: 'root', revokedAt: T0 }), SYSTEM_ACTOR);
      // An org b key naming a's key as its creator is never reached from a.
      await store.forOrg('b').apiKeys.insert(key('b-planted', { createdByKeyId: 'root' }), SYSTEM_ACTOR);
      await expect(a.apiKeys.insert(key('root'), SYSTEM_ACTOR)).rejects.toMatchObject({ kind: 'constraint' });

      expect((await a.apiKeys.list()).map((k) => k.id)).toEqual(['root', 'child', 'spent', 'grandchild']);
      expect(await a.apiKeys.get('child')).toMatchObject({ id: 'child', orgId: 'a', scopes: ['modules:read'], createdByKeyId: 'root' });
      expect(await a.apiKeys.get('b-planted')).toBeUndefined();
      expect((await a.apiKeys.descendants('root')).map((k) => k.id)).toEqual(['child', 'spent', 'grandchild']);
      expect(await store.forOrg('b').apiKeys.descendants('root')).toEqual([]);

      // A refusing check revokes nothing, and reaches the caller as it was thrown.
      const refusal = new Error('not allowed');
      await expect(a.apiKeys.revokeTree('root', T2, () => { throw refusal; }, SYSTEM_ACTOR)).rejects.toBe(refusal);
      expect((await a.apiKeys.list()).filter((k) => k.revokedAt !== null).map((k) => k.id)).toEqual(['spent']);

      let seen: string[] = [];
      const tree = await a.apiKeys.revokeTree('root', T2, (k, d) => (seen = [k.id, ...d.map((x) => x.id)]), SYSTEM_ACTOR);
      expect(seen).toEqual(['root', 'child', 'spent', 'grandchild']);
      expect(tree?.revoked).toEqual(['root', 'child', 'grandchild']);
      expect(tree?.key.revokedAt).toBe(T2);
      expect(tree?.descendants.map((k) => [k.id, k.revokedAt])).toEqual([['child', T2], ['spent', T0], ['grandchild', T2]]);
      expect(await store.forOrg('b').apiKeys.revokeTree('root', T2, () => { throw new Error('not called'); }, SYSTEM_ACTOR)).toBeUndefined();
      expect((await store.forOrg('b').apiKeys.get('b-planted'))?.revokedAt).toBeNull();

      await a.apiKeys.insert(key('single'), SYSTEM_ACTOR);
      expect((await a.apiKeys.revoke('single', T1, SYSTEM_ACTOR))?.revokedAt).toBe(T1);
      expect((await a.apiKeys.revoke('single', T2, SYSTEM_ACTOR))?.revokedAt).toBe(T1); // already revoked: kept
      expect(await store.forOrg('b').apiKeys.revoke('single', T2, SYSTEM_ACTOR)).toBeUndefined();
    });

    it("another org's rows answer as missing through every method", async () => {
      const b = store.forOrg('b');
      expect(await b.modules.get('m2')).toBeUndefined();
      expect((await b.modules.list({ enabled: undefined, after: '', limit: 100 })).map((m) => `${m.orgId}/${m.moduleId}`)).toEqual(['b/m1', 'b/only-b']);
      expect(await b.modules.count(undefined)).toBe(2);
      expect(await b.modules.update('m2', { name: 'hijack' }, T2, SYSTEM_ACTOR)).toBeUndefined();
      expect(await b.modules.delete('m2', SYSTEM_ACTOR)).toBe(false);
      expect(await b.credentials.get('m1')).toBeUndefined(); // b's m1 has none; a's m1 has one
      expect(await b.credentials.list()).toEqual([]);
      expect((await b.apiKeys.list()).map((k) => k.id)).toEqual(['b-planted']);
      expect(await b.apiKeys.get('child')).toBeUndefined();
      expect((await store.forOrg('a').modules.get('m2'))?.name).toBe('Module m2');
    });
  });

  describe('the cross-org path (definer functions)', () => {
    it('keyByHash finds a key of any org; touchKeys sets last-used times, never backwards', async () => {
      expect((await store.auth.keyByHash('hash-b-planted'))?.orgId).toBe('b');
      expect((await store.auth.keyByHash('hash-child'))?.orgId).toBe('a');
      expect(await store.auth.keyByHash('hash-none')).toBeUndefined();
      await store.auth.touchKeys([['child', T1], ['b-planted', T2], ['child', T0]]);
      await other.store.auth.touchKeys([['child', T0]]); // an older time from another replica, flushed later
      expect((await store.forOrg('a').apiKeys.get('child'))?.lastUsedAt).toBe(T1);
      expect((await store.forOrg('b').apiKeys.get('b-planted'))?.lastUsedAt).toBe(T2);
    });

    it('orgs list and insert, key count', async () => {
      expect((await store.system.orgs.list()).map((o) => o.id)).toEqual(['a', 'b', 'default']);
      expect(await store.system.orgs.insert({ id: 'a', name: 'dup', createdAt: T1 }, SYSTEM_ACTOR)).toBe(false);
      const keys = await scratch.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
      expect(await store.system.keyCount()).toBe(keys[0]!.n);
    });

    it('health and usage reports are org-bound writes; unhealthy lists every org by org then id with hasCredential', async () => {
      expect(await store.system.modules.reportHealth('b', 'm1', 'degraded', 'slow', T1)).toMatchObject({ orgId: 'b', healthStatus: 'degraded', healthMessage: 'slow', lastHealthCheck: T1 });
      expect(await store.system.modules.reportHealth('a', 'm1', 'unhealthy', null, T1)).toMatchObject({ orgId: 'a', healthStatus: 'unhealthy' });
      expect(await store.system.modules.reportHealth('a', 'absent', 'unhealthy', null, T1)).toBeUndefined();
      expect(await store.system.modules.recordUsage('a', 'm1', 5, T2)).toMatchObject({ usageCount: 5, lastUsedAt: T2 });
      expect((await store.system.modules.recordUsage('a', 'm1', 2, T2))?.usageCount).toBe(7);
      const unhealthy = await store.system.modules.unhealthy(10);
      expect(unhealthy.map((m) => [m.orgId, m.moduleId, m.healthStatus, m.hasCredential])).toEqual([
        ['a', 'm1', 'unhealthy', true],
        ['b', 'm1', 'degraded', false],
      ]);
      expect(Object.keys(unhealthy[0]!).sort()).toEqual(Object.keys((await store.forOrg('a').modules.get('m1'))!).sort());
      expect(await store.system.modules.unhealthy(1)).toHaveLength(1);
    });

    it('rotation: key ids in use, rows not under a key across orgs, compare-and-swap reseal', async () => {
      expect(await store.forOrg('b').credentials.upsert({ moduleId: 'm1', ...sealed('mk_1'), fields: ['t'], createdAt: T0, updatedAt: T0 }, SYSTEM_ACTOR)).toBe(true);
      expect(await store.system.credentials.keyIds()).toEqual(['mk_1', 'mk_2']);
      const rows = await store.system.credentials.notUnderKey('mk_2', 10);
      expect(rows.map((r) => `${r.orgId}/${r.moduleId}/${r.keyId}`)).toEqual(['b/m1/mk_1']);
      const row = rows[0]!;
      const next = { ...row, ...sealed('mk_2') };
      expect(await store.system.credentials.reseal(next, Buffer.from('stale iv'))).toBe(false);
      expect(await store.system.credentials.reseal(next, row.iv)).toBe(true);
      expect(await store.system.credentials.notUnderKey('mk_2', 10)).toEqual([]);
      expect((await store.forOrg('b').credentials.get('m1'))?.iv).toEqual(next.iv);
    });

    it('the request role cannot reach another org without them, nor call them once EXECUTE is revoked', async () => {
      const client = await store.pool.connect();
      try {
        expect((await client.query('SELECT * FROM api_keys')).rowCount).toBe(0);
        expect((await client.query('SELECT * FROM tenantgate_orgs()')).rowCount).toBe(3);
      } finally {
        client.release();
      }
      const role = new URL(scratch.requestUrl).username;
      await scratch.query(`REVOKE EXECUTE ON FUNCTION tenantgate_orgs() FROM "${role}"`);
      try {
        await expect(store.system.orgs.list()).rejects.toMatchObject({ name: 'StoreError', code: '42501' });
      } finally {
        await scratch.query(`GRANT EXECUTE ON FUNCTION tenantgate_orgs() TO "${role}"`);
      }
    });
  });

  describe('errors', () => {
    it('maps SQLSTATEs and connection failures to StoreError kinds, and leaves other errors alone', () => {
      const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code, severity: 'ERROR' });
      const kinds = Object.fromEntries(
        ['08006', '57P01', '57P03', '40001', '40P01', '55P03', '57014', '53300', '23505', '23503', '25006', '53100', '58030', 'XX001', '42501'].map((c) => [
          c,
          (toStoreError(pgError(c)) as StoreError).kind,
        ]),
      );
      expect(kinds).toEqual({
        '08006': 'unavailable', '57P01': 'unavailable', '57P03': 'unavailable', '40001': 'busy', '40P01': 'busy', '55P03': 'busy', '57014': 'busy',
        '53300': 'busy', '23505': 'constraint', '23503': 'constraint', '25006': 'readonly', '53100': 'full', '58030': 'io', XX001: 'corrupt', '42501': 'other',
      });
      expect((toStoreError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })) as StoreError).kind).toBe('unavailable');
      // EPIPE has a SQLSTATE's shape (five capitals); the postgres-faults outage test met it as a 500.
      expect((toStoreError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })) as StoreError).kind).toBe('unavailable');
      expect((toStoreError(new Error('Connection terminated unexpectedly')) as StoreError).kind).toBe('unavailable');
      expect((toStoreError(new Error('timeout exceeded when trying to connect')) as StoreError).kind).toBe('unavailable');
      const own = new TypeError('a bug');
      expect(toStoreError(own)).toBe(own);
    });

    it.runIf(onServer)('a backend terminated under a waiting statement is unavailable; a lock held past lock_timeout is busy; the store recovers', async () => {
      const a = store.forOrg('a');
      await a.apiKeys.insert(key('locked'), SYSTEM_ACTOR);
      // The superuser holds the key's row lock in an open transaction, so revokeTree waits on it.
      const holder = (await import('pg')).default;
      const blocker = new holder.Client({ connectionString: `${new URL(scratch.requestUrl).protocol}//postgres@${new URL(scratch.requestUrl).host}/${scratch.name}` });
      await blocker.connect();
      try {
        await blocker.query('BEGIN');
        await blocker.query(`SELECT 1 FROM api_keys WHERE id = 'locked' FOR UPDATE`);
        const waiting = a.apiKeys.revokeTree('locked', T2, () => {}, SYSTEM_ACTOR).then(() => 'revoked', (error: unknown) => error);
        await until('the revocation to wait on the lock', async () =>
          (await scratch.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenantgate' AND wait_event_type = 'Lock'`, [scratch.name])).length === 1,
        );
        await scratch.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenantgate' AND wait_event_type = 'Lock'`,
          [scratch.name],
        );
        expect(await waiting).toMatchObject({ name: 'StoreError', kind: 'unavailable', code: '57P01', retryable: true });

        // lock_timeout (at most the statement timeout, 2 s here) ends a wait on a lock that is not let go.
        const started = performance.now();
        // lock_timeout or statement_timeout, whichever the server reaches first: both are busy.
        await expect(a.apiKeys.revokeTree('locked', T2, () => {}, SYSTEM_ACTOR)).rejects.toMatchObject({ name: 'StoreError', kind: 'busy', code: expect.stringMatching(/^(55P03|57014)$/) });
        expect(performance.now() - started).toBeLessThan(4000);
        await blocker.query('ROLLBACK');
      } finally {
        await blocker.end();
      }
      expect((await a.apiKeys.revokeTree('locked', T2, () => {}, SYSTEM_ACTOR))?.revoked).toEqual(['locked']);
      expect(await store.check()).toEqual({ ok: true });
    });

    it('a server that does not answer: every call is unavailable, none hangs, no cache may answer, and the feed keeps trying', async () => {
      const { createPostgresStore } = await import('../src/store/postgres/store.ts');
      const down = await createPostgresStore({
        url: 'postgres://nobody@127.0.0.1:1/none', location: 'x', poolMax: 2, connectionTimeoutMs: 500, idleTimeoutMs: 1000, statementTimeoutMs: 1000,
      });
      try {
        const started = performance.now();
        await expect(down.forOrg('a').modules.get('m1')).rejects.toMatchObject({ name: 'StoreError', kind: 'unavailable', code: 'ECONNREFUSED' });
        await expect(down.auth.keyByHash('h')).rejects.toMatchObject({ name: 'StoreError', kind: 'unavailable' });
        await expect(down.forOrg('a').modules.insert(module('x'), SYSTEM_ACTOR)).rejects.toMatchObject({ name: 'StoreError', kind: 'unavailable' });
        expect(performance.now() - started).toBeLessThan(1500);
        expect(down.changes.version('a')).toBeUndefined();
        expect(await down.check()).toEqual({ ok: false, reason: 'change feed is not listening' });
      } finally {
        await down.close();
      }
    });

    it("a failed query's error holds the server's message, never the query's parameters", async () => {
      const a = store.forOrg('a');
      const error = (await a.credentials
        .upsert({ moduleId: 'm1', ciphertext: Buffer.from('CIPHERTEXT-BYTES'), iv: randomBytes(12), tag: randomBytes(16), keyId: 'k', fields: ['\u0000'], createdAt: T0, updatedAt: T0 }, SYSTEM_ACTOR)
        .catch((e: unknown) => e)) as StoreError;
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).not.toContain('CIPHERTEXT');
      expect(error.message).not.toMatch(/params/);
    });
  });

  describe('the change feed', () => {
    it('an own write changes the version at once; a key write is announced without changing it', async () => {
      const heard: Change[] = [];
      const unsubscribe = store.changes.subscribe((c) => heard.push(c));
      try {
        const before = store.changes.version('a');
        const otherOrg = store.changes.version('b');
        expect(before).toBeDefined();
        await store.forOrg('a').modules.update('m1', { description: 'changed' }, T2, SYSTEM_ACTOR);
        expect(store.changes.version('a')).not.toBe(before);
        expect(heard.some((c) => c.orgId === 'a')).toBe(true);
        const afterWrite = store.changes.version('a');
        await store.forOrg('a').apiKeys.insert(key('announced'), SYSTEM_ACTOR);
        expect(heard.filter((c) => c.orgId === 'a').length).toBeGreaterThanOrEqual(2);
        // b's version moves only if a notification for b arrived, and none was sent.
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(store.changes.version('b')).toBe(otherOrg);
        expect(afterWrite).toBeDefined();
      } finally {
        unsubscribe();
      }
    });

    it("another store's committed write arrives by NOTIFY, for its org only", async () => {
      const heard: Change[] = [];
      const unsubscribe = store.changes.subscribe((c) => heard.push(c));
      try {
        const a = store.changes.version('a');
        const b = store.changes.version('b');
        await other.store.forOrg('b').modules.update('m1', { description: 'from another replica' }, T2, SYSTEM_ACTOR);
        const ms = await until('the notification', () => store.changes.version('b') !== b);
        expect(heard.some((c) => c.orgId === 'b')).toBe(true);
        expect(store.changes.version('a')).toBe(a);
        expect(ms).toBeLessThan(1000);
      } finally {
        unsubscribe();
      }
    });

    it.runIf(onServer)('a lost LISTEN connection: version undefined until it listens again, then a flush {orgId: null} and a new epoch', async () => {
      const heard: Change[] = [];
      const unsubscribe = store.changes.subscribe((c) => heard.push(c));
      try {
        const before = store.changes.version('a');
        expect(before).toBeDefined();
        expect(await scratch.terminate('tenantgate-listen')).toBe(2); // this store's and the other's
        await until('the loss to be noticed', () => store.changes.version('a') === undefined);
        const heardBeforeRecovery = heard.length;
        expect(await store.check()).toEqual({ ok: false, reason: 'change feed is not listening' });
        // A write while it is down still works; the flush that follows covers what was missed.
        await other.store.forOrg('a').modules.update('m1', { description: 'while down' }, T2, SYSTEM_ACTOR);
        await until('it to listen again', () => store.changes.version('a') !== undefined);
        // The flush comes with the recovery, whatever was announced at the loss.
        expect(heard.slice(heardBeforeRecovery).some((c) => c.orgId === null)).toBe(true);
        expect(store.changes.version('a')).not.toBe(before);
        expect(await store.check()).toEqual({ ok: true });
        // And it hears notifications again.
        const now = store.changes.version('b');
        await other.store.forOrg('b').modules.update('m1', { description: 'after' }, T2, SYSTEM_ACTOR);
        await until('a notification after the reconnect', () => store.changes.version('b') !== now);
      } finally {
        unsubscribe();
      }
    });
  });
});

describe.skipIf(!available)('opening a PostgreSQL store', () => {
  const scratches: ScratchDatabase[] = [];
  const fresh = async (migrate: boolean, password?: string) => {
    const s = await createScratchDatabase({ migrate, ...(password ? { password } : {}) });
    scratches.push(s);
    return s;
  };
  afterAll(async () => {
    for (const s of scratches) await s.drop();
  });

  it('migrates on start with TENANTGATE_MIGRATION_DATABASE (creating the request role), and a second start changes nothing', async () => {
    const s = await fresh(false, 'pw-SECRET-1');
    const logger = captureLogger();
    const first = await openStore(storeConfig(s, { migrationDatabase: s.ownerUrl }), logger);
    expect(first.migration.applied).toHaveLength(MIGRATIONS);
    await first.store.close();
    const again = await openStore(storeConfig(s, { migrationDatabase: s.ownerUrl }), logger);
    expect(again.migration.applied).toEqual([]);
    await again.store.close();
    expect(logger.lines.join('\n')).toContain('created the request role');
    expect(logger.lines.join('\n')).not.toContain('pw-SECRET-1');
    const role = await s.query<{ rolsuper: boolean; rolbypassrls: boolean }>('SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1', [
      new URL(s.requestUrl).username,
    ]);
    expect(role).toEqual([{ rolsuper: false, rolbypassrls: false }]);
  });

  it('tenantgate migrate on PostgreSQL runs as TENANTGATE_MIGRATION_DATABASE, refuses without it, and a second run changes nothing', async () => {
    const s = await fresh(false);
    const cli = (env: Record<string, string>) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'migrate'], {
        cwd: path.resolve(import.meta.dirname, '..'),
        env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TENANTGATE_'))), TENANTGATE_MASTER_KEY: MASTER_KEY.toString('base64'), ...env },
      }).catch((e: { code: number; stdout: string; stderr: string }) => e);
    const without = await cli({ TENANTGATE_DATABASE: s.requestUrl });
    expect(without).toMatchObject({ code: 2, stderr: "tenantgate: tenantgate migrate on PostgreSQL needs TENANTGATE_MIGRATION_DATABASE, the owning role's postgres:// URL\n" });
    const first = await cli({ TENANTGATE_DATABASE: s.requestUrl, TENANTGATE_MIGRATION_DATABASE: s.ownerUrl });
    expect(first.stdout).toBe(`applied: ${readMigrationFiles({ migrationsFolder: PG_MIGRATIONS }).map((m) => m.folderMillis).join(', ')}\n`);
    const second = await cli({ TENANTGATE_DATABASE: s.requestUrl, TENANTGATE_MIGRATION_DATABASE: s.ownerUrl });
    expect(second.stdout).toBe('store is up to date\n');
  });

  it('refuses an unmigrated schema, naming tenantgate migrate, in one line', async () => {
    const s = await fresh(false);
    // Only the owner's part: the request role exists but the schema does not.
    await s.query(`CREATE ROLE "${new URL(s.requestUrl).username}" LOGIN`);
    const refusal = await openStore(storeConfig(s), captureLogger()).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as Error).message).toMatch(/^the PostgreSQL schema is not migrated: run tenantgate migrate/);
    expect((refusal as Error).message).not.toContain('\n');
  });

  it('refuses one role for both URLs before touching the database', async () => {
    const s = await fresh(false);
    await expect(openStore(storeConfig(s, { database: s.ownerUrl, migrationDatabase: s.ownerUrl }), captureLogger())).rejects.toThrow(
      new ConfigError("TENANTGATE_DATABASE and TENANTGATE_MIGRATION_DATABASE name the same role; requests must not run as the tables' owner"),
    );
    expect(await s.query(`SELECT 1 FROM pg_tables WHERE schemaname = 'public'`)).toEqual([]);
  });

  it('refuses a superuser URL and the owner URL as TENANTGATE_DATABASE', async () => {
    const s = await fresh(true);
    const superuser = `postgres://postgres@${new URL(s.requestUrl).host}/${s.name}`;
    await expect(openStore(storeConfig(s, { database: superuser }), captureLogger())).rejects.toThrow(
      /^TENANTGATE_DATABASE connects as "postgres", a superuser: it bypasses row-level security$/,
    );
    await expect(openStore(storeConfig(s, { database: s.ownerUrl }), captureLogger())).rejects.toThrow(/, owner of api_keys, audit_heads, audit_log, credentials, modules, org_keys, org_quotas, orgs, run_unit_events, usage_hours, usage_months: it could switch row-level security off/);
  });

  it('never generates a master key, and refuses a key that cannot open what the store holds', async () => {
    const s = await fresh(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-pgkey-'));
    try {
      await expect(openStore(storeConfig(s, { masterKey: undefined, dataDir: dir }), captureLogger())).rejects.toThrow(
        /^no master key: on PostgreSQL every replica must use the same key, so none is generated; set TENANTGATE_MASTER_KEY/,
      );
      expect(fs.readdirSync(dir)).toEqual([]);
      // A key file the operator put there is used.
      fs.writeFileSync(path.join(dir, 'master.key'), `${MASTER_KEY.toString('base64')}\n`, { mode: 0o600 });
      const opened = await openStore(storeConfig(s, { masterKey: undefined, dataDir: dir }), captureLogger());
      const box = new SecretBox(MASTER_KEY, []);
      expect(opened.secretBox.currentKeyId).toBe(box.currentKeyId);
      await opened.store.forOrg('default').modules.insert(module('m'), SYSTEM_ACTOR);
      await opened.store.forOrg('default').credentials.upsert({ moduleId: 'm', ...box.seal('default', 'm', '{"t":"x"}'), fields: ['t'], createdAt: T0, updatedAt: T0 }, SYSTEM_ACTOR);
      await opened.store.close();
      await expect(openStore(storeConfig(s, { masterKey: randomBytes(32) }), captureLogger())).rejects.toThrow(/^wrong master key: credentials are sealed with /);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a server that cannot be reached stops the start with one line naming host and database, not the password', async () => {
    const refusal = await openStore(
      { database: 'postgres://tg:pw-SECRET-2@127.0.0.1:1/tenantgate', dataDir: os.tmpdir(), masterKey: MASTER_KEY, previousMasterKeys: [] },
      captureLogger(),
    ).catch((e: unknown) => e);
    expect((refusal as Error).message).toBe('PostgreSQL at postgres://127.0.0.1:1/tenantgate cannot be reached (ECONNREFUSED)');
  });

  it('two gateways starting together on a fresh store print one bootstrap admin key between them', async () => {
    const s = await fresh(false);
    const dirs = [0, 1].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-pgboot-')));
    const outs = dirs.map(() => new PassThrough());
    const printed = outs.map((out) => {
      let text = '';
      out.on('data', (d: Buffer) => (text += d.toString()));
      return () => text;
    });
    const env = (dir: string) =>
      loadConfig({
        TENANTGATE_PORT: '0', TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: MASTER_KEY.toString('base64'),
        TENANTGATE_DATABASE: s.requestUrl, TENANTGATE_MIGRATION_DATABASE: s.ownerUrl,
      });
    const servers = await Promise.all(dirs.map((dir, i) => startServer(env(dir), captureLogger('warn'), outs[i])));
    try {
      const keys = printed.map((text) => text().match(/admin key for org "default" \(shown once, store it now\): (\S+)/)?.[1]).filter(Boolean);
      expect(keys).toHaveLength(1);
      expect(await s.query('SELECT id FROM api_keys')).toHaveLength(1);
      // The key works on both replicas.
      for (const server of servers) {
        const res = await fetch(server.url, {
          method: 'POST',
          headers: { authorization: `Bearer ${keys[0]}`, 'content-type': 'application/json' },
          body: JSON.stringify({ query: '{ viewer { org { id } } }' }),
        });
        expect(await res.json()).toEqual({ data: { viewer: { org: { id: 'default' } } } });
      }
    } finally {
      for (const server of servers) await server.stop();
      for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!available)('a gateway on PostgreSQL, over HTTP', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ dialect: 'postgres' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('installs a module, sets and reads a credential, and keeps two orgs apart', async () => {
    expect(gw.dialect).toBe('postgres');
    expect(gw.config.database).toBe(gw.postgres!.requestUrl);
    const install = await gw.gql(gw.keys.a, 'mutation { installModule(input: { id: "pg-only", name: "PG", version: "2.0.0", config: { k: 1 } }) { id name } }');
    expect(install.body).toEqual({ data: { installModule: { id: 'pg-only', name: 'PG' } } });
    const set = await gw.gql(gw.keys.a, 'mutation($s: JSONObject!) { setCredential(moduleId: "pg-only", secret: $s) { moduleId fields } }', { s: { apiToken: 'pg-secret-value' } });
    expect(set.body).toEqual({ data: { setCredential: { moduleId: 'pg-only', fields: ['apiToken'] } } });
    const read = await gw.gql(gw.keys.a, '{ credentialSecret(moduleId: "pg-only") }');
    expect(read.body.data.credentialSecret).toEqual({ apiToken: 'pg-secret-value' });

    const aPage = await gw.gql(gw.keys.a, '{ modules(first: 10) { totalCount edges { node { id hasCredential } } } }');
    expect(aPage.body.data.modules.totalCount).toBe(4);
    expect(aPage.body.data.modules.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(['github', 'only-org-a', 'pg-only', 'slack']);
    const bPage = await gw.gql(gw.keys.b, '{ modules(first: 10) { totalCount edges { node { id } } } }');
    expect(bPage.body.data.modules.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(['github', 'only-org-b', 'slack']);
    // b cannot see, read or change a's module or credential: each answers as missing.
    expect((await gw.gql(gw.keys.b, '{ module(id: "pg-only") { id } }')).body).toEqual({ data: { module: null } });
    const bSecret = await gw.gql(gw.keys.b, '{ credentialSecret(moduleId: "pg-only") }');
    expect(bSecret.text).not.toContain('pg-secret-value');
    expect(bSecret.body.errors?.[0]?.extensions?.code ?? 'null').toMatch(/NOT_FOUND|null/);
    const bSet = await gw.gql(gw.keys.b, 'mutation($s: JSONObject!) { setCredential(moduleId: "pg-only", secret: $s) { moduleId } }', { s: { apiToken: 'x' } });
    expect(bSet.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    // The rows are where the wall says: a's in a, none planted in b.
    expect(await gw.postgres!.query(`SELECT org_id FROM credentials WHERE module_id = 'pg-only'`)).toEqual([{ org_id: ORG_A }]);
    expect(await gw.postgres!.query(`SELECT 1 FROM modules WHERE org_id = $1 AND module_id = 'pg-only'`, [ORG_B])).toEqual([]);
    // The bytes at rest are sealed.
    const stored = await gw.postgres!.query<{ ciphertext: Buffer }>(`SELECT ciphertext FROM credentials WHERE module_id = 'pg-only'`);
    expect(stored[0]!.ciphertext.toString('utf8')).not.toContain('pg-secret-value');
    // No log line names the database password or a secret.
    expect(gw.logger.lines.join('\n')).not.toContain('pg-secret-value');
  });

  it('answers /ready from the store, naming no credentials', async () => {
    const res = await gw.fetch('/ready');
    expect(res.status).toBe(200);
    expect(await res.text()).not.toContain('@');
  });

  it.runIf(onServer)('while the database refuses connections: SERVICE_UNAVAILABLE (503), never a 500 or a hang, /ready 503; it recovers by itself', async () => {
    const scratch = gw.postgres!;
    const role = new URL(scratch.requestUrl).username;
    const uncached = '{ modules(first: 5, enabled: true) { totalCount } }';
    const before = await gw.gql(gw.keys.a, uncached);
    expect(before.body.data.modules.totalCount).toBeGreaterThan(0);
    // Every connection of the request role ended, and no new one admitted (53300), as in an outage.
    await scratch.query(`ALTER ROLE "${role}" CONNECTION LIMIT 0`);
    try {
      await scratch.terminate();
      await until('the feed to notice', async () => (await gw.fetch('/ready')).status === 503);
      const started = performance.now();
      const answers = await Promise.all([
        gw.gql(gw.keys.a, uncached),
        gw.gql(gw.keys.a, 'mutation { disableModule(id: "slack") { id } }'),
        gw.gql(gw.keys.b, '{ module(id: "github") { id } }'),
      ]);
      for (const answer of answers) {
        expect(answer.status, answer.text).not.toBe(500);
        expect(answer.text).toContain('SERVICE_UNAVAILABLE');
      }
      expect(performance.now() - started).toBeLessThan(8000);
    } finally {
      await scratch.query(`ALTER ROLE "${role}" CONNECTION LIMIT -1`);
    }
    await until('it to recover', async () => (await gw.fetch('/ready')).status === 200, 10_000);
    // The refused mutation changed nothing; reads answer again.
    expect((await gw.gql(gw.keys.a, uncached)).body).toEqual(before.body);
  });
});
