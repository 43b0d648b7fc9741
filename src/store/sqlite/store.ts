import fs from 'node:fs';
import path from 'node:path';
import { and, asc, count, eq, getTableColumns, isNull, ne, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { DEFAULT_ORG } from '../types.ts';
import type {
  ApiKeyRow,
  AuditActor,
  AuthStore,
  CredentialRow,
  KeyTree,
  ModuleField,
  ModulePatch,
  ModuleChange,
  ModuleRecord,
  NewOrg,
  OrgStore,
  Store,
  SystemStore,
} from '../types.ts';
import type Database from 'better-sqlite3';
import { BUSY_TIMEOUT_MS, createWalSync, type SqliteDatabase, type WalSync } from './connection.ts';
import { createSqliteChangeFeed } from './changes.ts';
import { settle, toStoreError } from './errors.ts';
import { MODULE_COLUMNS, MODULE_COMPUTED, MODULE_FIELDS } from '../module-fields.ts';
import { apiKeys, credentials, modules, orgs } from './schema.ts';
import { createSqliteUsage } from './usage.ts';
import { checkpointShredded, createSqliteOrgKeys } from './org-keys.ts';
import { createSqliteAudit } from './audit.ts';

const p = sql.placeholder;

/** Below this headroom /ready says not ready: a module with a 64 KiB config needs ~17 pages. */
const MIN_FREE_PAGES = 64;
const MIN_FREE_DISK_BYTES = 1024 * 1024;

// Module reads take raw values and map them here, from the one definition of module fields
// (module-fields.ts): drizzle's generic row mapper costs about 30 µs on a page of 21 rows, a third
// of the query. Same decoding as drizzle's: booleans from 0/1, everything else as SQLite returns it.

/** The SQL of each computed field, written out with table names (it is a correlated subquery). */
const COMPUTED_SQL: Record<keyof typeof MODULE_COMPUTED, string> = {
  hasCredential:
    'EXISTS (SELECT 1 FROM "credentials" AS c WHERE c."org_id" = "modules"."org_id" AND c."module_id" = "modules"."module_id")',
};

type FieldSpec = (typeof MODULE_FIELDS)[number];

/** How to read a set of module fields: the select list, and the row mapping (one record per row, nothing else). */
function moduleReader(fields: readonly FieldSpec[]) {
  const names = fields.map((f) => f.field);
  const booleans = fields.map((f) => f.kind === 'boolean');
  const n = names.length;
  const select = [
    `"${MODULE_COLUMNS.orgId.column}"`,
    `"${MODULE_COLUMNS.moduleId.column}"`,
    ...fields.map((f) => (f.column === undefined ? COMPUTED_SQL[f.field as keyof typeof MODULE_COMPUTED] : `"${f.column}"`)),
  ].join(', ');
  const decode = (r: unknown[]): ModuleRecord => {
    const record: Record<string, unknown> = { orgId: r[0], moduleId: r[1] };
    for (let i = 0; i < n; i++) {
      const value = r[i + 2];
      record[names[i]!] = booleans[i] ? Number(value) === 1 : value;
    }
    // With a narrowed list only the asked-for fields are present; the API reads no other (see ModuleListOptions).
    return record as ModuleRecord;
  };
  return { select, decode };
}

const WHOLE_MODULE = moduleReader(MODULE_FIELDS);
const ALL_MODULE_FIELDS: ReadonlySet<ModuleField> = new Set(MODULE_FIELDS.map((f) => f.field));

/** The drizzle table (what migrations are generated from) must have exactly the defined columns. */
function checkModuleColumns(): void {
  const table = Object.entries(getTableColumns(modules)).map(([key, column]) => `${key}:${column.name}`);
  const defined = Object.entries(MODULE_COLUMNS).map(([key, spec]) => `${key}:${spec.column}`);
  if (table.sort().join() !== defined.sort().join()) {
    throw new Error(`the modules table and MODULE_COLUMNS (src/store/module-fields.ts) differ: ${table.join()} / ${defined.join()}`);
  }
}

/** At most this many distinct projections keep a prepared statement (queries select few shapes). */
const MAX_PROJECTIONS = 64;

/**
 * The SQLite implementation of the storage seam. Hot statements are prepared once here (building
 * a drizzle query on every call costs about 50 µs more); every tenant statement leads its WHERE
 * with org_id, which also leads every index it uses.
 */
export function createSqliteStore(sqlite: SqliteDatabase, location: string, options: { walSync?: WalSync } = {}): Store {
  const db = drizzle({ client: sqlite });

  // Every write is answered only once it is on disk, as at synchronous=FULL, but the fsync runs
  // off the event loop and is shared by the writes that commit while one is under way (group
  // commit; see createWalSync and the README's Performance section). Only the key last-used
  // times (touchKeys) are not waited for: they are best effort, and the next sync covers them.
  sqlite.pragma('synchronous = NORMAL');
  const wal = options.walSync ?? createWalSync(location);
  /** Store work that writes: settled once the write is durable. */
  const durable = <T>(work: () => T): Promise<T> => settle(work).then((value) => wal.synced().then(() => value));

  checkModuleColumns();

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
  };

  const moduleGet = sqlite
    .prepare<[string, string]>(`SELECT ${WHOLE_MODULE.select} FROM "modules" WHERE "org_id" = ? AND "module_id" = ?`)
    .raw();
  const unhealthy = sqlite
    .prepare<[number]>(
      // Literal, so the planner can use the partial index modules_unhealthy_idx.
      `SELECT ${WHOLE_MODULE.select} FROM "modules" WHERE "health_status" IN ('degraded', 'unhealthy') ` +
        'ORDER BY "org_id", "module_id" LIMIT ?',
    )
    .raw();

  // totalCount runs with every page: a plain counting statement, no row mapping.
  const countModules = sqlite.prepare<[string]>('SELECT count(*) FROM "modules" WHERE "org_id" = ?').pluck();
  const countModulesEnabled = sqlite
    .prepare<[string, number]>('SELECT count(*) FROM "modules" WHERE "org_id" = ? AND "enabled" = ?')
    .pluck();

  // List pages, whole or projected: one prepared statement per (field set, enabled filter), made on first use.
  const projections = new Map<string, { statement: Database.Statement<unknown[]>; decode: (r: unknown[]) => ModuleRecord }>();
  const projection = (wanted: ReadonlySet<ModuleField>, filtered: boolean) => {
    const fields = MODULE_FIELDS.filter((f) => wanted.has(f.field));
    const key = `${filtered ? 'e' : 'a'}:${fields.map((f) => f.field).join(',')}`;
    let entry = projections.get(key);
    if (!entry) {
      const reader = moduleReader(fields);
      const statement = sqlite
        .prepare<unknown[]>(
          `SELECT ${reader.select} FROM "modules" WHERE "org_id" = ? ${filtered ? 'AND "enabled" = ? ' : ''}` +
            'AND "module_id" > ? ORDER BY "module_id" LIMIT ?',
        )
        .raw();
      entry = { statement, decode: reader.decode };
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
    const { statement, decode } = projection(wanted, enabled !== undefined);
    const rows = (
      enabled === undefined ? statement.all(orgId, after, limit) : statement.all(orgId, enabled ? 1 : 0, after, limit)
    ) as unknown[][];
    return rows.map(decode);
  };

  const getModule = (orgId: string, moduleId: string): ModuleRecord | undefined => {
    const row = moduleGet.get(orgId, moduleId) as unknown[] | undefined;
    return row === undefined ? undefined : WHOLE_MODULE.decode(row);
  };

  const changes = createSqliteChangeFeed(sqlite);
  const audit = createSqliteAudit(sqlite, durable);
  const usage = createSqliteUsage(sqlite, { durable, touched: changes.touched, audit });
  const orgKeys = createSqliteOrgKeys(sqlite, { durable });
  /**
   * Runs a write of the org's modules or credentials and counts it, whether or not it succeeds;
   * `changed` names the module it changed, from its result (a write that changed nothing names none).
   */
  const writing = <T>(orgId: string, write: () => T, changed?: (result: T) => ModuleChange | undefined): T => {
    let module: ModuleChange | undefined;
    try {
      const result = write();
      module = changed?.(result);
      return result;
    } finally {
      changes.wrote(orgId, module);
    }
  };
  const moduleChange = (id: string, event: ModuleChange['event']) => (happened: unknown): ModuleChange | undefined =>
    happened ? { id, event } : undefined;

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
    (
      orgId: string,
      id: string,
      at: string,
      check: (key: ApiKeyRow, descendants: readonly ApiKeyRow[]) => void,
      actor: AuditActor,
    ): KeyTree | undefined => {
      const before = q.keyForOrg.get({ orgId, id });
      if (!before) {
        audit.append(orgId, actor, { action: 'KEY_REVOKE', targetId: id, outcome: 'not_found' });
        return undefined;
      }
      const beforeDescendants = descendantsOf(orgId, id);
      check(before, beforeDescendants);
      db.update(apiKeys)
        .set({ revokedAt: at })
        .where(and(eq(apiKeys.orgId, orgId), isNull(apiKeys.revokedAt), inKeyTree(orgId, id, true)))
        .run();
      const revoked = [before, ...beforeDescendants].filter((k) => k.revokedAt === null).map((k) => k.id);
      // One record per key this revocation ended (the root's alone when all were revoked already).
      for (const keyId of revoked.length > 0 ? revoked : [id]) audit.append(orgId, actor, { action: 'KEY_REVOKE', targetId: keyId });
      return { key: q.keyForOrg.get({ orgId, id })!, descendants: descendantsOf(orgId, id), revoked };
    },
  );

  const touchMany = sqlite.transaction((entries: ReadonlyArray<readonly [string, string]>) => {
    for (const [id, at] of entries) q.keyTouch.run({ id, at });
  });

  // The credential's module must exist in the same org; checked inside the write transaction.
  const upsertCredential = (row: CredentialRow, actor: AuditActor): boolean =>
    audit.transaction(() => {
      if (!getModule(row.orgId, row.moduleId)) {
        audit.append(row.orgId, actor, { action: 'CREDENTIAL_SET', targetId: row.moduleId, outcome: 'not_found' });
        return false;
      }
      q.credentialUpsert.run(row);
      audit.append(row.orgId, actor, { action: 'CREDENTIAL_SET', targetId: row.moduleId });
      return true;
    });

  const orgStore = (orgId: string): OrgStore => ({
    orgId,
    org: () => settle(() => q.orgGet.get({ id: orgId })),
    rename: (name, _at, actor) =>
      durable(() => {
        const row = audit.transaction(() => {
          const renamed = db.update(orgs).set({ name }).where(eq(orgs.id, orgId)).returning().get();
          if (renamed) audit.append(orgId, actor, { action: 'ORG_RENAME', targetId: orgId });
          return renamed;
        });
        if (row) changes.touched(orgId);
        return row;
      }),
    setStatus: (status, reason, at, actor) =>
      durable(() => {
        const suspended = status === 'suspended';
        const row = audit.transaction(() => {
          const changed = db
            .update(orgs)
            .set({ status, suspendedAt: suspended ? at : null, suspendReason: suspended ? reason : null })
            .where(eq(orgs.id, orgId))
            .returning()
            .get();
          if (changed) audit.append(orgId, actor, { action: suspended ? 'ORG_SUSPEND' : 'ORG_RESUME', targetId: orgId });
          return changed;
        });
        if (row) changes.touched(orgId);
        return row;
      }),

    apiKeys: {
      list: () => settle(() => q.keysForOrg.all({ orgId })),
      get: (id) => settle(() => q.keyForOrg.get({ orgId, id })),
      insert: (row, actor) =>
        durable(() => {
          audit.transaction(() => {
            db.insert(apiKeys).values({ ...row, orgId }).run();
            audit.append(orgId, actor, { action: 'KEY_CREATE', targetId: row.id });
          });
          changes.touched(orgId);
        }),
      revoke: (id, at, actor) =>
        durable(() => {
          const row = audit.transaction(() => {
            q.keyRevoke.run({ orgId, id, at });
            const after = q.keyForOrg.get({ orgId, id });
            audit.append(orgId, actor, { action: 'KEY_REVOKE', targetId: id, ...(after ? {} : { outcome: 'not_found' as const }) });
            return after;
          });
          changes.touched(orgId);
          return row;
        }),
      descendants: (id) => settle(() => descendantsOf(orgId, id)),
      revokeTree: (id, at, check, actor) =>
        durable(() => {
          const tree = audit.transaction(() => revokeTree(orgId, id, at, check, actor));
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
      // Both statements read one snapshot: nothing else runs on this connection between them.
      listCounted: ({ enabled, after, limit, fields }) =>
        settle(() => ({
          rows: listProjected(orgId, enabled, after, limit, fields ?? ALL_MODULE_FIELDS),
          total: (enabled === undefined ? countModules.get(orgId) : countModulesEnabled.get(orgId, enabled ? 1 : 0)) as number,
        })),
      get: (moduleId) => settle(() => getModule(orgId, moduleId)),
      insert: (row, actor) =>
        durable(() =>
          writing(orgId, () =>
            audit.transaction(() => {
              const inserted = db.insert(modules).values({ ...row, orgId }).onConflictDoNothing().run().changes === 1;
              audit.append(orgId, actor, { action: 'MODULE_INSTALL', targetId: row.moduleId, ...(inserted ? {} : { outcome: 'conflict' as const }) });
              return inserted;
            }),
            moduleChange(row.moduleId, 'installed'),
          ),
        ),
      update: (moduleId, patch: ModulePatch, at, actor) =>
        durable(() =>
          writing(orgId, () =>
            audit.transaction(() => {
              const onlyEnabled = Object.keys(patch).length === 1 && patch.enabled !== undefined;
              const changed = onlyEnabled
                ? q.moduleSetEnabled.run({ orgId, moduleId, enabled: patch.enabled ? 1 : 0, at }).changes
                : db
                    .update(modules)
                    .set({ ...patch, updatedAt: at })
                    .where(and(eq(modules.orgId, orgId), eq(modules.moduleId, moduleId)))
                    .run().changes;
              const action = onlyEnabled ? (patch.enabled ? 'MODULE_ENABLE' : 'MODULE_DISABLE') : 'MODULE_UPDATE';
              audit.append(orgId, actor, { action, targetId: moduleId, ...(changed === 1 ? {} : { outcome: 'not_found' as const }) });
              return getModule(orgId, moduleId);
            }),
            moduleChange(moduleId, 'changed'),
          ),
        ),
      delete: (moduleId, actor) =>
        durable(() =>
          writing(orgId, () =>
            audit.transaction(() => {
              const deleted = q.moduleDelete.run({ orgId, moduleId }).changes === 1;
              audit.append(orgId, actor, { action: 'MODULE_UNINSTALL', targetId: moduleId, ...(deleted ? {} : { outcome: 'not_found' as const }) });
              return deleted;
            }),
            moduleChange(moduleId, 'uninstalled'),
          ),
        ),
    },

    credentials: {
      get: (moduleId) => settle(() => q.credentialGet.get({ orgId, moduleId })),
      list: () => settle(() => q.credentialList.all({ orgId })),
      has: (moduleId) => settle(() => q.credentialGet.get({ orgId, moduleId }) !== undefined),
      upsert: (row, actor) => durable(() => writing(orgId, () => upsertCredential({ ...row, orgId }, actor), moduleChange(row.moduleId, 'changed'))),
      delete: (moduleId, actor) =>
        durable(() =>
          writing(orgId, () =>
            audit.transaction(() => {
              const deleted = q.credentialDelete.run({ orgId, moduleId }).changes === 1;
              audit.append(orgId, actor, { action: 'CREDENTIAL_DELETE', targetId: moduleId, ...(deleted ? {} : { outcome: 'not_found' as const }) });
              return deleted;
            }),
            moduleChange(moduleId, 'changed'),
          ),
        ),
      reveal: (moduleId, actor) =>
        durable(() =>
          audit.transaction(() => {
            const row = q.credentialGet.get({ orgId, moduleId });
            audit.append(orgId, actor, { action: 'CREDENTIAL_REVEAL', targetId: moduleId, ...(row ? {} : { outcome: 'not_found' as const }) });
            return row;
          }),
        ),
    },

    ...orgKeys.forOrg(orgId),
    usage: usage.forOrg(orgId),
    audit: audit.forOrg(orgId),
  });

  const auth: AuthStore = {
    keyByHash: (hash) => settle(() => q.keyByHash.get({ hash })),
    touchKeys: (entries) =>
      settle(() => {
        if (entries.length === 0) return;
        // Last-used times are best effort: not waited for (the next write's sync makes them
        // durable too; WAL at synchronous=NORMAL stays consistent without it).
        touchMany(entries);
      }),
  };

  const insertOrg = (row: NewOrg, actor: AuditActor) =>
    durable(() => {
      const inserted = audit.transaction(() => {
        const made = db.insert(orgs).values(row).onConflictDoNothing().run().changes === 1;
        audit.append(row.id, actor, { action: 'ORG_CREATE', targetId: row.id, ...(made ? {} : { outcome: 'conflict' as const }) });
        return made;
      });
      if (inserted) changes.touched(row.id);
      return inserted;
    });
  const keyCount = () => settle(() => q.keyCount.get()?.n ?? 0);

  /**
   * Every row of the org, in every table that has one (read from the schema, so a table added
   * later cannot be missed), then the org itself, in one transaction. secure_delete (connection.ts)
   * zeroes the freed pages.
   */
  const deleteOrg = sqlite.transaction((orgId: string): boolean => {
    if (!q.orgGet.get({ id: orgId })) return false;
    for (const table of orgTables()) sqlite.prepare(`DELETE FROM "${table}" WHERE org_id = ?`).run(orgId);
    sqlite.prepare('DELETE FROM orgs WHERE id = ?').run(orgId);
    return true;
  });
  /** The tables with an org_id column, children first (credentials before modules). */
  const orgTables = (): string[] => {
    const tables = sqlite.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all() as string[];
    const withOrg = tables.filter((t) => (sqlite.prepare('SELECT 1 FROM pragma_table_info(?) WHERE name = ?').get(t, 'org_id') ?? null) !== null);
    return withOrg.sort((a, b) => (a === 'credentials' ? -1 : b === 'credentials' ? 1 : 0));
  };

  const system: SystemStore = {
    orgs: {
      list: () => settle(() => q.orgList.all()),
      insert: insertOrg,
      // The record goes to the operator org's log, in the deleting transaction: the org's own log goes with it.
      delete: (orgId, _at, actor) =>
        durable(() => {
          const deleted = audit.transaction(() => {
            const done = deleteOrg(orgId);
            audit.append(DEFAULT_ORG.id, actor, { action: 'ORG_DELETE', targetId: orgId, ...(done ? {} : { outcome: 'not_found' as const }) });
            return done;
          });
          if (deleted) changes.touched(orgId);
          return deleted;
        }),
    },
    keyCount,
    modules: {
      reportHealth: (orgId, moduleId, status, message, at) =>
        durable(() => {
          writing(orgId, () => q.health.run({ orgId, moduleId, status, message, at }).changes === 1, moduleChange(moduleId, 'health'));
          return getModule(orgId, moduleId);
        }),
      recordUsage: (orgId, moduleId, n, at) =>
        durable(() => {
          writing(orgId, () => q.usage.run({ orgId, moduleId, count: n, at }).changes === 1, moduleChange(moduleId, 'changed'));
          return getModule(orgId, moduleId);
        }),
      unhealthy: (limit) => settle(() => (unhealthy.all(limit) as unknown[][]).map(WHOLE_MODULE.decode)),
    },
    usage: usage.system,
    credentials: {
      keyIds: () => settle(() => q.credentialKeyIds.all().map((r) => r.keyId)),
      notUnderKey: (keyId, limit) =>
        settle(() => db.select().from(credentials).where(ne(credentials.keyId, keyId)).limit(limit).all()),
      reseal: (row, expectedIv) =>
        durable(() =>
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
      underMasterKey: orgKeys.underMasterKey,
    },
    orgKeys: orgKeys.system,
  };
  // A deletion is shredded from the files too, not only from the tables (org-keys.ts).
  const deleteOrgRows = system.orgs.delete;
  system.orgs.delete = async (orgId, at, actor) => {
    const deleted = await deleteOrgRows(orgId, at, actor);
    if (deleted) await checkpointShredded(sqlite, BUSY_TIMEOUT_MS).catch((error: unknown) => Promise.reject(toStoreError(error)));
    return deleted;
  };

  return {
    dialect: 'sqlite',
    location,
    forOrg: orgStore,
    auth,
    system,
    changes: { version: changes.version, subscribe: changes.subscribe },

    check: async () => {
      try {
        if (!sqlite.open) return { ok: false, reason: 'store is closed' };
        if (sqlite.readonly) return { ok: false, reason: 'store is read-only' };
        // Writes would land but could not be answered: they are not known to be on disk.
        if (wal.failure) return { ok: false, reason: 'store cannot sync its writes to disk' };
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
