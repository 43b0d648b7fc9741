import fs from 'node:fs';
import path from 'node:path';
import { and, asc, count, eq, getTableColumns, isNull, ne, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import type {
  ApiKeyRow,
  AuthStore,
  CredentialRow,
  KeyTree,
  ModuleField,
  ModulePatch,
  ModuleRecord,
  OrgRow,
  OrgStore,
  Store,
  SystemStore,
} from '../types.ts';
import type Database from 'better-sqlite3';
import { BUSY_TIMEOUT_MS, type SqliteDatabase } from './connection.ts';
import { createSqliteChangeFeed } from './changes.ts';
import { settle } from './errors.ts';
import { apiKeys, credentials, modules, orgs } from './schema.ts';

const p = sql.placeholder;

/** Below this headroom /ready says not ready: a module with a 64 KiB config needs ~17 pages. */
const MIN_FREE_PAGES = 64;
const MIN_FREE_DISK_BYTES = 1024 * 1024;

/** Module columns in select order: `moduleColumns` below must list exactly these (checked at start). */
const MODULE_KEYS = [
  'orgId',
  'moduleId',
  'name',
  'version',
  'description',
  'config',
  'enabled',
  'healthStatus',
  'healthMessage',
  'lastHealthCheck',
  'usageCount',
  'lastUsedAt',
  'installedAt',
  'updatedAt',
  'hasCredential',
] as const satisfies ReadonlyArray<keyof ModuleRecord>;

/**
 * Module reads (every list page and lookup) take raw values and map them here: drizzle's generic
 * row mapper costs about 30 µs on a page of 21 rows, a third of the query. Same decoding as
 * drizzle's: booleans from 0/1, everything else as SQLite returns it.
 */
function toModuleRecord(r: unknown[]): ModuleRecord {
  return {
    orgId: r[0] as string,
    moduleId: r[1] as string,
    name: r[2] as string,
    version: r[3] as string,
    description: r[4] as string | null,
    config: r[5] as string,
    enabled: Number(r[6]) === 1,
    healthStatus: r[7] as string,
    healthMessage: r[8] as string | null,
    lastHealthCheck: r[9] as string | null,
    usageCount: r[10] as number,
    lastUsedAt: r[11] as string | null,
    installedAt: r[12] as string,
    updatedAt: r[13] as string,
    hasCredential: Boolean(r[14]),
  };
}

const HAS_CREDENTIAL_SQL =
  'EXISTS (SELECT 1 FROM "credentials" AS c WHERE c."org_id" = "modules"."org_id" AND c."module_id" = "modules"."module_id")';

/** SQL for each field of a projected module list, and how to decode its value. */
const MODULE_FIELD_SQL: Record<ModuleField, string> = {
  name: '"name"',
  version: '"version"',
  description: '"description"',
  config: '"config"',
  enabled: '"enabled"',
  healthStatus: '"health_status"',
  healthMessage: '"health_message"',
  lastHealthCheck: '"last_health_check"',
  usageCount: '"usage_count"',
  lastUsedAt: '"last_used_at"',
  installedAt: '"installed_at"',
  updatedAt: '"updated_at"',
  hasCredential: HAS_CREDENTIAL_SQL,
};
const MODULE_FIELDS = Object.keys(MODULE_FIELD_SQL) as ModuleField[];
const ALL_MODULE_FIELDS: ReadonlySet<ModuleField> = new Set(MODULE_FIELDS);
const decodeField = (field: ModuleField, value: unknown): unknown =>
  field === 'enabled' ? Number(value) === 1 : field === 'hasCredential' ? Boolean(value) : value;

/** At most this many distinct projections keep a prepared statement (queries select few shapes). */
const MAX_PROJECTIONS = 64;

/**
 * The SQLite implementation of the storage seam. Hot statements are prepared once here (building
 * a drizzle query on every call costs about 50 µs more); every tenant statement leads its WHERE
 * with org_id, which also leads every index it uses.
 */
export function createSqliteStore(sqlite: SqliteDatabase, location: string): Store {
  const db = drizzle({ client: sqlite });

  const moduleColumns = {
    ...getTableColumns(modules),
    // Written out with table names: drizzle renders columns of a single-table select unqualified,
    // which inside this subquery would compare the credentials table with itself.
    hasCredential: sql<boolean>`${sql.raw(HAS_CREDENTIAL_SQL)}`.mapWith(Boolean),
  };
  if (Object.keys(moduleColumns).join() !== MODULE_KEYS.join()) {
    throw new Error('modules columns changed: update MODULE_KEYS and toModuleRecord in store.ts');
  }

  const q = {
    orgGet: db.select().from(orgs).where(eq(orgs.id, p('id'))).prepare(),
    orgList: db.select().from(orgs).orderBy(asc(orgs.id)).prepare(),
    keyByHash: db.select().from(apiKeys).where(eq(apiKeys.hash, p('hash'))).prepare(),
    keyCount: db.select({ n: count() }).from(apiKeys).prepare(),
    keysForOrg: db
      .select()
      .from(apiKeys)
      .where(eq(apiKeys.orgId, p('orgId')))
      .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id))
      .prepare(),
    keyForOrg: db
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.orgId, p('orgId')), eq(apiKeys.id, p('id'))))
      .prepare(),
    keyRevoke: db
      .update(apiKeys)
      .set({ revokedAt: sql`${p('at')}` })
      .where(and(eq(apiKeys.orgId, p('orgId')), eq(apiKeys.id, p('id')), isNull(apiKeys.revokedAt)))
      .prepare(),
    keyTouch: db
      .update(apiKeys)
      .set({ lastUsedAt: sql`${p('at')}` })
      .where(eq(apiKeys.id, p('id')))
      .prepare(),
    moduleGet: db
      .select(moduleColumns)
      .from(modules)
      .where(and(eq(modules.orgId, p('orgId')), eq(modules.moduleId, p('moduleId'))))
      .prepare(),
    moduleDelete: db
      .delete(modules)
      .where(and(eq(modules.orgId, p('orgId')), eq(modules.moduleId, p('moduleId'))))
      .prepare(),
    moduleSetEnabled: db
      .update(modules)
      .set({ enabled: sql`${p('enabled')}`, updatedAt: sql`${p('at')}` })
      .where(and(eq(modules.orgId, p('orgId')), eq(modules.moduleId, p('moduleId'))))
      .prepare(),
    credentialGet: db
      .select()
      .from(credentials)
      .where(and(eq(credentials.orgId, p('orgId')), eq(credentials.moduleId, p('moduleId'))))
      .prepare(),
    credentialList: db
      .select({
        orgId: credentials.orgId,
        moduleId: credentials.moduleId,
        fields: credentials.fields,
        keyId: credentials.keyId,
        createdAt: credentials.createdAt,
        updatedAt: credentials.updatedAt,
      })
      .from(credentials)
      .where(eq(credentials.orgId, p('orgId')))
      .orderBy(asc(credentials.moduleId))
      .prepare(),
    // Replaces the sealed value and field names; created_at stays as first written.
    credentialUpsert: db
      .insert(credentials)
      .values({
        orgId: p('orgId'),
        moduleId: p('moduleId'),
        ciphertext: p('ciphertext'),
        iv: p('iv'),
        tag: p('tag'),
        keyId: p('keyId'),
        fields: p('fields'),
        createdAt: p('createdAt'),
        updatedAt: p('updatedAt'),
      })
      .onConflictDoUpdate({
        target: [credentials.orgId, credentials.moduleId],
        set: {
          ciphertext: sql`excluded.ciphertext`,
          iv: sql`excluded.iv`,
          tag: sql`excluded.tag`,
          keyId: sql`excluded.key_id`,
          fields: sql`excluded.fields`,
          updatedAt: sql`excluded.updated_at`,
        },
      })
      .prepare(),
    credentialDelete: db
      .delete(credentials)
      .where(and(eq(credentials.orgId, p('orgId')), eq(credentials.moduleId, p('moduleId'))))
      .prepare(),
    credentialKeyIds: db.selectDistinct({ keyId: credentials.keyId }).from(credentials).prepare(),
    usage: db
      .update(modules)
      .set({ usageCount: sql`${modules.usageCount} + ${p('count')}`, lastUsedAt: sql`${p('at')}` })
      .where(and(eq(modules.orgId, p('orgId')), eq(modules.moduleId, p('moduleId'))))
      .prepare(),
    health: db
      .update(modules)
      .set({ healthStatus: sql`${p('status')}`, healthMessage: sql`${p('message')}`, lastHealthCheck: sql`${p('at')}` })
      .where(and(eq(modules.orgId, p('orgId')), eq(modules.moduleId, p('moduleId'))))
      .prepare(),
    unhealthy: db
      .select(moduleColumns)
      .from(modules)
      // Literal, so the planner can use the partial index modules_unhealthy_idx.
      .where(sql`${modules.healthStatus} IN ('degraded', 'unhealthy')`)
      .orderBy(asc(modules.orgId), asc(modules.moduleId))
      .limit(p('limit'))
      .prepare(),
  };

  // totalCount runs with every page: a plain counting statement, no row mapping.
  const countModules = sqlite.prepare<[string]>('SELECT count(*) FROM "modules" WHERE "org_id" = ?').pluck();
  const countModulesEnabled = sqlite
    .prepare<[string, number]>('SELECT count(*) FROM "modules" WHERE "org_id" = ? AND "enabled" = ?')
    .pluck();

  // List pages, whole or projected: one prepared statement per (field set, enabled filter), made on first use.
  const projections = new Map<string, { statement: Database.Statement<unknown[]>; fields: ModuleField[] }>();
  const projection = (wanted: ReadonlySet<ModuleField>, filtered: boolean) => {
    const fields = MODULE_FIELDS.filter((f) => wanted.has(f));
    const key = `${filtered ? 'e' : 'a'}:${fields.join(',')}`;
    let entry = projections.get(key);
    if (!entry) {
      const columns = ['"org_id"', '"module_id"', ...fields.map((f) => MODULE_FIELD_SQL[f])].join(', ');
      const statement = sqlite
        .prepare<unknown[]>(
          `SELECT ${columns} FROM "modules" WHERE "org_id" = ? ${filtered ? 'AND "enabled" = ? ' : ''}` +
            'AND "module_id" > ? ORDER BY "module_id" LIMIT ?',
        )
        .raw();
      entry = { statement, fields };
      if (projections.size < MAX_PROJECTIONS) projections.set(key, entry);
    }
    return entry;
  };
  const listProjected = (
    orgId: string,
    enabled: boolean | undefined,
    after: string,
    limit: number,
    wanted: ReadonlySet<ModuleField>,
  ): ModuleRecord[] => {
    const { statement, fields } = projection(wanted, enabled !== undefined);
    const rows = (
      enabled === undefined ? statement.all(orgId, after, limit) : statement.all(orgId, enabled ? 1 : 0, after, limit)
    ) as unknown[][];
    return rows.map((r) => {
      const record: Record<string, unknown> = { orgId: r[0], moduleId: r[1] };
      for (let i = 0; i < fields.length; i++) record[fields[i]!] = decodeField(fields[i]!, r[i + 2]);
      // Only the asked-for fields are present; the API reads no other (see ModuleListOptions).
      return record as ModuleRecord;
    });
  };

  const getModule = (orgId: string, moduleId: string): ModuleRecord | undefined => {
    const row = q.moduleGet.values({ orgId, moduleId })[0];
    return row === undefined ? undefined : toModuleRecord(row);
  };

  const changes = createSqliteChangeFeed(sqlite);
  /** Runs a write of the org's modules or credentials and counts it, whether or not it succeeds. */
  const writing = <T>(orgId: string, write: () => T): T => {
    try {
      return write();
    } finally {
      changes.wrote(orgId);
    }
  };

  // A key's descendants: the walk follows created_by_key_id and every step stays in the org (its
  // join names org_id), so another org's keys are never reached even if ids collide. UNION, not
  // UNION ALL, so a cycle in hand-edited rows ends instead of looping.
  const inKeyTree = (orgId: string, id: string, withRoot: boolean) => sql`${apiKeys.id} IN (
    WITH RECURSIVE tree(id) AS (
      SELECT r."id" FROM "api_keys" AS r WHERE r."org_id" = ${orgId} AND r."id" = ${id}
      UNION
      SELECT k."id" FROM "api_keys" AS k JOIN tree ON k."created_by_key_id" = tree."id" WHERE k."org_id" = ${orgId}
    ) SELECT "id" FROM tree${withRoot ? sql`` : sql` WHERE "id" <> ${id}`})`;
  const descendantsOf = (orgId: string, id: string) =>
    db
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.orgId, orgId), inKeyTree(orgId, id, false)))
      .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id))
      .all();
  const revokeTree = sqlite.transaction(
    (orgId: string, id: string, at: string, check: (key: ApiKeyRow, descendants: readonly ApiKeyRow[]) => void): KeyTree | undefined => {
      const before = q.keyForOrg.get({ orgId, id });
      if (!before) return undefined;
      const beforeDescendants = descendantsOf(orgId, id);
      check(before, beforeDescendants);
      db.update(apiKeys)
        .set({ revokedAt: at })
        .where(and(eq(apiKeys.orgId, orgId), isNull(apiKeys.revokedAt), inKeyTree(orgId, id, true)))
        .run();
      const revoked = [before, ...beforeDescendants].filter((k) => k.revokedAt === null).map((k) => k.id);
      return { key: q.keyForOrg.get({ orgId, id })!, descendants: descendantsOf(orgId, id), revoked };
    },
  );

  const touchMany = sqlite.transaction((entries: ReadonlyArray<readonly [string, string]>) => {
    for (const [id, at] of entries) q.keyTouch.run({ id, at });
  });

  // The credential's module must exist in the same org; checked inside the write transaction.
  const upsertCredential = sqlite.transaction((row: CredentialRow): boolean => {
    if (!getModule(row.orgId, row.moduleId)) return false;
    q.credentialUpsert.run(row);
    return true;
  });

  const orgStore = (orgId: string): OrgStore => ({
    orgId,
    org: () => settle(() => q.orgGet.get({ id: orgId })),

    apiKeys: {
      list: () => settle(() => q.keysForOrg.all({ orgId })),
      get: (id) => settle(() => q.keyForOrg.get({ orgId, id })),
      insert: (row) =>
        settle(() => {
          db.insert(apiKeys).values({ ...row, orgId }).run();
          changes.touched(orgId);
        }),
      revoke: (id, at) =>
        settle(() => {
          q.keyRevoke.run({ orgId, id, at });
          changes.touched(orgId);
          return q.keyForOrg.get({ orgId, id });
        }),
      descendants: (id) => settle(() => descendantsOf(orgId, id)),
      revokeTree: (id, at, check) =>
        settle(() => {
          const tree = revokeTree.immediate(orgId, id, at, check);
          if (tree) changes.touched(orgId);
          return tree;
        }),
    },

    modules: {
      list: ({ enabled, after, limit, fields }) =>
        settle(() => listProjected(orgId, enabled, after, limit, fields ?? ALL_MODULE_FIELDS)),
      count: (enabled) =>
        settle(
          () => (enabled === undefined ? countModules.get(orgId) : countModulesEnabled.get(orgId, enabled ? 1 : 0)) as number,
        ),
      get: (moduleId) => settle(() => getModule(orgId, moduleId)),
      insert: (row) =>
        settle(() => writing(orgId, () => db.insert(modules).values({ ...row, orgId }).onConflictDoNothing().run().changes === 1)),
      update: (moduleId, patch: ModulePatch, at) =>
        settle(() => {
          writing(orgId, () => {
            if (Object.keys(patch).length === 1 && patch.enabled !== undefined) {
              q.moduleSetEnabled.run({ orgId, moduleId, enabled: patch.enabled ? 1 : 0, at });
            } else {
              db.update(modules)
                .set({ ...patch, updatedAt: at })
                .where(and(eq(modules.orgId, orgId), eq(modules.moduleId, moduleId)))
                .run();
            }
          });
          return getModule(orgId, moduleId);
        }),
      delete: (moduleId) => settle(() => writing(orgId, () => q.moduleDelete.run({ orgId, moduleId }).changes === 1)),
    },

    credentials: {
      get: (moduleId) => settle(() => q.credentialGet.get({ orgId, moduleId })),
      list: () => settle(() => q.credentialList.all({ orgId })),
      has: (moduleId) => settle(() => q.credentialGet.get({ orgId, moduleId }) !== undefined),
      upsert: (row) => settle(() => writing(orgId, () => upsertCredential.immediate({ ...row, orgId }))),
      delete: (moduleId) => settle(() => writing(orgId, () => q.credentialDelete.run({ orgId, moduleId }).changes === 1)),
    },
  });

  const auth: AuthStore = {
    keyByHash: (hash) => settle(() => q.keyByHash.get({ hash })),
    touchKeys: (entries) =>
      settle(() => {
        if (entries.length === 0) return;
        // Last-used times are best effort: their commit is not synced on its own (WAL with
        // synchronous=NORMAL stays consistent; the next synced commit makes it durable too).
        // Every other write keeps the connection's setting (connection.ts), restored here.
        const synchronous = sqlite.pragma('synchronous', { simple: true }) as number;
        sqlite.pragma('synchronous = NORMAL');
        try {
          touchMany(entries);
        } finally {
          sqlite.pragma(`synchronous = ${synchronous}`);
        }
      }),
  };

  const insertOrg = (row: OrgRow) =>
    settle(() => {
      const inserted = db.insert(orgs).values(row).onConflictDoNothing().run().changes === 1;
      if (inserted) changes.touched(row.id);
      return inserted;
    });
  const keyCount = () => settle(() => q.keyCount.get()?.n ?? 0);

  const system: SystemStore = {
    orgs: {
      list: () => settle(() => q.orgList.all()),
      insert: insertOrg,
    },
    keyCount,
    modules: {
      reportHealth: (orgId, moduleId, status, message, at) =>
        settle(() => {
          writing(orgId, () => q.health.run({ orgId, moduleId, status, message, at }));
          return getModule(orgId, moduleId);
        }),
      recordUsage: (orgId, moduleId, n, at) =>
        settle(() => {
          writing(orgId, () => q.usage.run({ orgId, moduleId, count: n, at }));
          return getModule(orgId, moduleId);
        }),
      unhealthy: (limit) => settle(() => q.unhealthy.values({ limit }).map(toModuleRecord)),
    },
    credentials: {
      keyIds: () => settle(() => q.credentialKeyIds.all().map((r) => r.keyId)),
      notUnderKey: (keyId, limit) =>
        settle(() => db.select().from(credentials).where(ne(credentials.keyId, keyId)).limit(limit).all()),
      reseal: (row, expectedIv) =>
        settle(() =>
          writing(
            row.orgId,
            () =>
              db
                .update(credentials)
                .set({ ciphertext: row.ciphertext, iv: row.iv, tag: row.tag, keyId: row.keyId })
                .where(
                  and(
                    eq(credentials.orgId, row.orgId),
                    eq(credentials.moduleId, row.moduleId),
                    eq(credentials.iv, expectedIv),
                  ),
                )
                .run().changes === 1,
          ),
        ),
    },
  };

  return {
    dialect: 'sqlite',
    location,
    forOrg: orgStore,
    auth,
    system,
    changes: { version: changes.version, subscribe: changes.subscribe },
    dataVersion: changes.version,
    apiKeys: { count: keyCount },
    orgs: { insert: insertOrg },

    check: async () => {
      try {
        if (!sqlite.open) return { ok: false, reason: 'store is closed' };
        if (sqlite.readonly) return { ok: false, reason: 'store is read-only' };
        // A write that changes nothing still needs the write lock and a writable file. Without
        // waiting: another process holding the lock (the CLI) means busy, not broken, and the
        // busy_timeout wait would stall every request on this event loop for up to 5 s.
        sqlite.pragma('busy_timeout = 0');
        try {
          sqlite.prepare('BEGIN IMMEDIATE').run();
          sqlite.prepare('ROLLBACK').run();
        } catch (error) {
          if (!String((error as { code?: string }).code).startsWith('SQLITE_BUSY')) throw error;
        } finally {
          sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
        }
        // ...but not a free page: a full store (or disk) passes the above and fails every insert.
        const used = Number(sqlite.pragma('page_count', { simple: true })) - Number(sqlite.pragma('freelist_count', { simple: true }));
        if (Number(sqlite.pragma('max_page_count', { simple: true })) - used < MIN_FREE_PAGES) return { ok: false, reason: 'store is full' };
        if (location !== ':memory:') {
          const disk = fs.statfsSync(path.dirname(location));
          if (disk.bavail * disk.bsize < MIN_FREE_DISK_BYTES) return { ok: false, reason: 'disk is full' };
        }
        return { ok: true };
      } catch (error) {
        if (sqlite.inTransaction) sqlite.prepare('ROLLBACK').run();
        return { ok: false, reason: (error as { code?: string }).code ?? 'store check failed' };
      }
    },

    close: async () => {
      changes.close();
      if (sqlite.open) {
        sqlite.pragma('wal_checkpoint(TRUNCATE)');
        sqlite.close();
      }
    },
  };
}
