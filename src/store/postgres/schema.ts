import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  customType,
  foreignKey,
  index,
  integer,
  jsonb,
  pgPolicy,
  pgTable,
  primaryKey,
  text,
  unique,
} from 'drizzle-orm/pg-core';
import type { ApiKeyRow, AuditAction, AuditActor, AuditOutcome, AuditRecord, CredentialRow, ModuleRow, OrgKeyRow, OrgQuotaRow, OrgRow, OrgStatus, RunUnitEvent } from '../types.ts';

// Mirrors src/store/sqlite/schema.ts column for column. Timestamps stay ISO-8601 UTC text (not
// timestamptz) so a row copied from SQLite keeps its bytes and sorts the same way. The name lists
// (scopes, fields) are jsonb: they are read whole and never compared as text, and jsonb rejects
// a value that is not JSON. modules.config stays text: the store hands it back byte for byte as
// the client wrote it, and jsonb would reorder keys and drop duplicates.

/** node-postgres reads bytea as a Buffer and writes a Buffer as bytea. */
const bytea = customType<{ data: Buffer; driverData: Buffer }>({
  dataType: () => 'bytea',
});

/**
 * The second wall: a row is visible and writable only while the transaction's `app.org_id` names
 * its org. The setting is read once per statement (the subselect); unset it is NULL and after a
 * transaction-local setting ends it is '', and neither equals an org id, so nothing is admitted.
 * The policy is for PUBLIC: the request role's name is the deployer's (TENANTGATE_DATABASE), so a
 * migration cannot name it, and a role the policy does not name would see nothing anyway. The
 * owning role is held to it too (FORCE, in the custom migration).
 */
const orgWall = (table: string) =>
  pgPolicy(`${table}_org_wall`, {
    as: 'permissive',
    for: 'all',
    to: 'public',
    using: sql`org_id = (select current_setting('app.org_id', true))`,
    withCheck: sql`org_id = (select current_setting('app.org_id', true))`,
  });

// orgs is walled too, on its id: an org's name is its own, and another org must not learn that it
// exists. Creating and listing orgs are operator paths, not the request role's.
export const orgs = pgTable(
  'orgs',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    createdAt: text('created_at').notNull(),
    status: text('status').notNull().default('active').$type<OrgStatus>(),
    suspendedAt: text('suspended_at'),
    suspendReason: text('suspend_reason'),
  },
  () => [
    pgPolicy('orgs_org_wall', {
      as: 'permissive',
      for: 'select',
      to: 'public',
      using: sql`id = (select current_setting('app.org_id', true))`,
    }),
  ],
).enableRLS();

export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').notNull(),
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull(),
    scopes: jsonb('scopes').notNull().$type<string[]>(),
    createdAt: text('created_at').notNull(),
    expiresAt: text('expires_at'),
    revokedAt: text('revoked_at'),
    lastUsedAt: text('last_used_at'),
    createdByKeyId: text('created_by_key_id'),
  },
  (t) => [
    // org_id leads the key; the id alone is still unique, as in SQLite, so a key id names one key.
    primaryKey({ columns: [t.orgId, t.id] }),
    unique('api_keys_id_key').on(t.id),
    unique('api_keys_hash_key').on(t.hash),
    index('api_keys_org_idx').on(t.orgId, t.createdAt, t.id),
    orgWall('api_keys'),
  ],
).enableRLS();

export const modules = pgTable(
  'modules',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id),
    moduleId: text('module_id').notNull(),
    name: text('name').notNull(),
    version: text('version').notNull(),
    description: text('description'),
    config: text('config').notNull().default('{}'),
    enabled: boolean('enabled').notNull().default(true),
    healthStatus: text('health_status').notNull().default('unknown'),
    healthMessage: text('health_message'),
    lastHealthCheck: text('last_health_check'),
    // 64-bit, as SQLite's INTEGER is (drizzle/pg/0005); read as a JavaScript number (usageCount is a Float in the API).
    usageCount: bigint('usage_count', { mode: 'number' }).notNull().default(0),
    lastUsedAt: text('last_used_at'),
    installedAt: text('installed_at').notNull(),
    updatedAt: text('updated_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orgId, t.moduleId] }),
    index('modules_org_enabled_idx').on(t.orgId, t.enabled, t.moduleId),
    index('modules_unhealthy_idx')
      .on(t.orgId, t.moduleId)
      .where(sql`health_status IN ('degraded', 'unhealthy')`),
    orgWall('modules'),
  ],
).enableRLS();

export const credentials = pgTable(
  'credentials',
  {
    orgId: text('org_id').notNull(),
    moduleId: text('module_id').notNull(),
    ciphertext: bytea('ciphertext').notNull(),
    iv: bytea('iv').notNull(),
    tag: bytea('tag').notNull(),
    keyId: text('key_id').notNull(),
    /** Field names only, as a JSON array; never values. */
    fields: jsonb('fields').notNull().$type<string[]>(),
    createdAt: text('created_at').notNull(),
    updatedAt: text('updated_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orgId, t.moduleId] }),
    foreignKey({
      columns: [t.orgId, t.moduleId],
      foreignColumns: [modules.orgId, modules.moduleId],
    }).onDelete('cascade'),
    index('credentials_org_key_idx').on(t.orgId, t.keyId),
    orgWall('credentials'),
  ],
).enableRLS();

// Run-unit metering and quotas (issue 14): the same tables and columns as SQLite's. Ids and the
// ordered text columns are COLLATE "C" (drizzle/pg/0010, as 0008 did for the older tables).

/**
 * One run-unit report as it was recorded. module_id is not a foreign key: the billing history
 * outlives a module. A repeat of (org_id, idempotency_key) is the unique index's to refuse.
 */
export const runUnitEvents = pgTable(
  'run_unit_events',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    id: text('id').notNull(),
    idempotencyKey: text('idempotency_key').notNull(),
    units: bigint('units', { mode: 'number' }).notNull(),
    moduleId: text('module_id'),
    occurredAt: text('occurred_at').notNull(),
    recordedAt: text('recorded_at').notNull(),
    keyId: text('key_id'),
  },
  (t) => [
    primaryKey({ columns: [t.orgId, t.id] }),
    unique('run_unit_events_idempotency_key').on(t.orgId, t.idempotencyKey),
    index('run_unit_events_org_occurred_idx').on(t.orgId, t.occurredAt, t.id),
    orgWall('run_unit_events'),
  ],
).enableRLS();

/** An org's totals per UTC calendar month (month_start `YYYY-MM-01T00:00:00.000Z`): run units by occurred_at, requests served. */
export const usageMonths = pgTable(
  'usage_months',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    monthStart: text('month_start').notNull(),
    runUnits: bigint('run_units', { mode: 'number' }).notNull().default(0),
    requests: bigint('requests', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.monthStart] }), orgWall('usage_months')],
).enableRLS();

/** The same totals per UTC hour (hour_start `YYYY-MM-DDTHH:00:00.000Z`), for the series. */
export const usageHours = pgTable(
  'usage_hours',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    hourStart: text('hour_start').notNull(),
    runUnits: bigint('run_units', { mode: 'number' }).notNull().default(0),
    requests: bigint('requests', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.hourStart] }), orgWall('usage_hours')],
).enableRLS();

/** An org's quotas, set by the operator; null: the configured default. */
export const orgQuotas = pgTable(
  'org_quotas',
  {
    orgId: text('org_id')
      .primaryKey()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    runUnitsPerMonth: bigint('run_units_per_month', { mode: 'number' }),
    requestsPerMinute: integer('requests_per_minute'),
    burst: integer('burst'),
    updatedAt: text('updated_at').notNull(),
  },
  () => [orgWall('org_quotas')],
).enableRLS();

// Audit log and per-org data keys (issue 15): as SQLite's; walled and forced (drizzle/pg/0012).

/** Each org's data key, wrapped by a master key; deleting the row shreds the org's credentials. */
export const orgKeys = pgTable(
  'org_keys',
  {
    orgId: text('org_id')
      .primaryKey()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    keyId: text('key_id').notNull(),
    wrapped: bytea('wrapped').notNull(),
    iv: bytea('iv').notNull(),
    tag: bytea('tag').notNull(),
    masterKeyId: text('master_key_id').notNull(),
    createdAt: text('created_at').notNull(),
  },
  () => [orgWall('org_keys')],
).enableRLS();

/** The audit records of each org, a hash chain in seq order (see AuditRecord). */
export const auditLog = pgTable(
  'audit_log',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    id: text('id').notNull(),
    at: text('at').notNull(),
    action: text('action').notNull().$type<AuditAction>(),
    actorKeyId: text('actor_key_id'),
    actorKeyPrefix: text('actor_key_prefix'),
    actorVia: text('actor_via').notNull().$type<AuditActor['via']>(),
    targetId: text('target_id'),
    requestId: text('request_id'),
    clientAddress: text('client_address'),
    outcome: text('outcome').notNull().$type<AuditOutcome>(),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.seq] }), index('audit_log_org_at_idx').on(t.orgId, t.at, t.seq), orgWall('audit_log')],
).enableRLS();

/** The head of each org's chain; appending updates it, so concurrent appends of one org take turns on its row. */
export const auditHeads = pgTable(
  'audit_heads',
  {
    orgId: text('org_id')
      .primaryKey()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    hash: text('hash').notNull(),
  },
  () => [orgWall('audit_heads')],
).enableRLS();

/** The tables holding an org's rows, each under the wall, forced (drizzle/pg/0001, 0010, 0012). */
export const TENANT_TABLES = [
  'api_keys',
  'modules',
  'credentials',
  'run_unit_events',
  'usage_months',
  'usage_hours',
  'org_quotas',
  'org_keys',
  'audit_log',
  'audit_heads',
] as const;
/** Every table under the wall: the tenant tables and orgs (read-only to the request role). */
export const WALLED_TABLES = ['orgs', ...TENANT_TABLES] as const;

// The tables must read back exactly the store's row types: a column added here and not there (or
// the other way round) fails to compile.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true[]> = T;
export type SchemaMatchesRowTypes = Assert<[
  Same<typeof orgs.$inferSelect, OrgRow>,
  Same<typeof apiKeys.$inferSelect, ApiKeyRow>,
  Same<typeof modules.$inferSelect, ModuleRow>,
  Same<typeof credentials.$inferSelect, CredentialRow>,
  Same<typeof runUnitEvents.$inferSelect, RunUnitEvent>,
  Same<typeof orgQuotas.$inferSelect, OrgQuotaRow>,
  Same<typeof orgKeys.$inferSelect, OrgKeyRow>,
  Same<typeof auditLog.$inferSelect, AuditRecord>,
]>;
