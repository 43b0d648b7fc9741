import { sql } from 'drizzle-orm';
import {
  blob,
  foreignKey,
  index,
  integer,
  primaryKey,
  sqliteTable,
  text,
  unique,
} from 'drizzle-orm/sqlite-core';
import type { ApiKeyRow, AuditAction, AuditActor, AuditOutcome, AuditRecord, CredentialRow, ModuleRow, OrgKeyRow, OrgQuotaRow, OrgRow, OrgStatus, RunUnitEvent } from '../types.ts';

// Timestamps are ISO-8601 UTC text, as the pre-tenant registry wrote them, so adopted rows keep
// their bytes and new rows sort the same way.

export const orgs = sqliteTable('orgs', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  createdAt: text('created_at').notNull(),
  status: text('status').notNull().default('active').$type<OrgStatus>(),
  suspendedAt: text('suspended_at'),
  suspendReason: text('suspend_reason'),
});

export const apiKeys = sqliteTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull().unique(),
    scopes: text('scopes', { mode: 'json' }).notNull().$type<string[]>(),
    createdAt: text('created_at').notNull(),
    expiresAt: text('expires_at'),
    revokedAt: text('revoked_at'),
    lastUsedAt: text('last_used_at'),
    createdByKeyId: text('created_by_key_id'),
  },
  (t) => [index('api_keys_org_idx').on(t.orgId, t.createdAt, t.id)],
);

export const modules = sqliteTable(
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
    enabled: integer('enabled', { mode: 'boolean' }).notNull().default(true),
    healthStatus: text('health_status').notNull().default('unknown'),
    healthMessage: text('health_message'),
    lastHealthCheck: text('last_health_check'),
    usageCount: integer('usage_count').notNull().default(0),
    lastUsedAt: text('last_used_at'),
    installedAt: text('installed_at').notNull(),
    updatedAt: text('updated_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orgId, t.moduleId] }),
    index('modules_org_enabled_idx').on(t.orgId, t.enabled, t.moduleId),
    // Partial: only unhealthy rows are indexed, so the admin's cross-org scan stays small while
    // org_id still leads the index.
    index('modules_unhealthy_idx')
      .on(t.orgId, t.moduleId)
      .where(sql`health_status IN ('degraded', 'unhealthy')`),
  ],
);

export const credentials = sqliteTable(
  'credentials',
  {
    orgId: text('org_id').notNull(),
    moduleId: text('module_id').notNull(),
    ciphertext: blob('ciphertext', { mode: 'buffer' }).notNull(),
    iv: blob('iv', { mode: 'buffer' }).notNull(),
    tag: blob('tag', { mode: 'buffer' }).notNull(),
    keyId: text('key_id').notNull(),
    /** Field names only, as a JSON array; never values. */
    fields: text('fields', { mode: 'json' }).notNull().$type<string[]>(),
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
  ],
);

// Run-unit metering (issue 14). An event keeps its module id as text, not a foreign key: a module
// may be uninstalled later and its billing history stays.
export const runUnitEvents = sqliteTable(
  'run_unit_events',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    id: text('id').notNull(),
    idempotencyKey: text('idempotency_key').notNull(),
    units: integer('units').notNull(),
    moduleId: text('module_id'),
    occurredAt: text('occurred_at').notNull(),
    recordedAt: text('recorded_at').notNull(),
    keyId: text('key_id'),
  },
  (t) => [
    primaryKey({ columns: [t.orgId, t.id] }),
    unique('run_unit_events_org_key_unique').on(t.orgId, t.idempotencyKey),
    index('run_unit_events_org_occurred_idx').on(t.orgId, t.occurredAt, t.id),
  ],
);

/** Per-org totals of a UTC calendar month (`YYYY-MM-01T00:00:00.000Z`): the row the quota check reads and adds to. */
export const usageMonths = sqliteTable(
  'usage_months',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    monthStart: text('month_start').notNull(),
    runUnits: integer('run_units').notNull().default(0),
    requests: integer('requests').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.monthStart] })],
);

/** Per-org totals of an hour (`YYYY-MM-DDTHH:00:00.000Z`), for series; a day is its hours grouped by date. */
export const usageHours = sqliteTable(
  'usage_hours',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    hourStart: text('hour_start').notNull(),
    runUnits: integer('run_units').notNull().default(0),
    requests: integer('requests').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.hourStart] })],
);

/** An org's quotas; a null column means the configured default. */
export const orgQuotas = sqliteTable('org_quotas', {
  orgId: text('org_id')
    .primaryKey()
    .references(() => orgs.id, { onDelete: 'cascade' }),
  runUnitsPerMonth: integer('run_units_per_month'),
  requestsPerMinute: integer('requests_per_minute'),
  burst: integer('burst'),
  updatedAt: text('updated_at').notNull(),
});

// Audit log and per-org data keys (issue 15).

/** Each org's data key, wrapped by a master key; deleting the row shreds the org's credentials. */
export const orgKeys = sqliteTable('org_keys', {
  orgId: text('org_id')
    .primaryKey()
    .references(() => orgs.id, { onDelete: 'cascade' }),
  keyId: text('key_id').notNull(),
  wrapped: blob('wrapped', { mode: 'buffer' }).notNull(),
  iv: blob('iv', { mode: 'buffer' }).notNull(),
  tag: blob('tag', { mode: 'buffer' }).notNull(),
  masterKeyId: text('master_key_id').notNull(),
  createdAt: text('created_at').notNull(),
});

/** The audit records of each org, a hash chain in seq order (see AuditRecord). */
export const auditLog = sqliteTable(
  'audit_log',
  {
    orgId: text('org_id')
      .notNull()
      .references(() => orgs.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
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
  (t) => [primaryKey({ columns: [t.orgId, t.seq] }), index('audit_log_org_at_idx').on(t.orgId, t.at, t.seq)],
);

/** The head of each org's chain: the last seq and hash, so that appending reads one row. */
export const auditHeads = sqliteTable('audit_heads', {
  orgId: text('org_id')
    .primaryKey()
    .references(() => orgs.id, { onDelete: 'cascade' }),
  seq: integer('seq').notNull(),
  hash: text('hash').notNull(),
});

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
