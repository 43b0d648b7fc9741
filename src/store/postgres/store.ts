import { and, eq, getTableColumns } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { MODULE_COLUMNS, MODULE_COMPUTED, MODULE_FIELDS } from '../module-fields.ts';
import { DEFAULT_ORG } from '../types.ts';
import type {
  ApiKeyRow,
  AuditAction,
  AuditActor,
  AuthStore,
  CredentialMeta,
  CredentialRow,
  KeyTree,
  ModuleChange,
  ModuleField,
  ModulePatch,
  ModuleRecord,
  OrgQuotaRow,
  OrgRow,
  OrgStatus,
  OrgStore,
  RecordRunUnitsResult,
  RunUnitEvent,
  Store,
  SystemStore,
  UsageBucket,
  UsageTotals,
} from '../types.ts';
import { CHANGES_CHANNEL, createPostgresChangeFeed, notifyPayload, type ChangeKind, type PostgresChangeFeed } from './changes.ts';
import { StoreError } from '../errors.ts';
import { toStoreError } from './errors.ts';
import { createPostgresFailureLimiter, createPostgresRequestLimiter } from './limiter.ts';
import { ConnectionNotIdle, idle, orgTransaction } from './transaction.ts';
import { appendAudit, auditChain, auditHead, auditPage, auditPrune } from './audit.ts';
import { auditRecorded, type AuditEntry } from '../audit-chain.ts';
import { apiKeys, credentials, modules } from './schema.ts';
import { createPostgresOrgKeys } from './org-keys.ts';

export interface PostgresStoreOptions {
  /** The request role's URL (TENANTGATE_DATABASE). */
  url: string;
  /** Host, port and database only, for logs and /ready. */
  location: string;
  /** Connections the pool may hold at once. */
  poolMax: number;
  /** How long a request waits for a pooled connection (or a new one to open) before the store is unavailable. */
  connectionTimeoutMs: number;
  /** An idle pooled connection is closed after this long. */
  idleTimeoutMs: number;
  /** The longest any statement may run (the server cancels it: a busy StoreError). */
  statementTimeoutMs: number;
  /** Told when the change feed's listening connection is lost and back, and of idle connections that fail. */
  onEvent?: (level: 'info' | 'warn', event: string, fields?: Record<string, unknown>) => void;
}

export interface PostgresStore extends Store {
  readonly dialect: 'postgres';
  readonly changes: PostgresChangeFeed;
  /** The request role's pool, for tests and maintenance only; never handed to resolvers. */
  readonly pool: pg.Pool;
}

/**
 * int8 (modules.usage_count, drizzle/pg/0005) read as a number on this pool: node-postgres hands
 * bigint over as a string, and module reads take rows as arrays (rowMode), past drizzle's own
 * mapping. SQLite's INTEGER is read as a number too; a value past 2^53 would lose precision alike.
 */
const INT8_AS_NUMBER: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

/** The SQL of each computed field (a correlated subquery; the wall applies inside it too). */
const COMPUTED_SQL: Record<keyof typeof MODULE_COMPUTED, string> = {
  hasCredential:
    'EXISTS (SELECT 1 FROM "credentials" AS c WHERE c."org_id" = "modules"."org_id" AND c."module_id" = "modules"."module_id")',
};
/** The same fields as the definer function tenantgate_unhealthy_modules names its output columns. */
const COMPUTED_COLUMN: Record<keyof typeof MODULE_COMPUTED, string> = { hasCredential: '"has_credential"' };

type FieldSpec = (typeof MODULE_FIELDS)[number];

// Module reads take rows as arrays and map them here, from the one definition of module fields
// (module-fields.ts), as the SQLite store does: PostgreSQL returns booleans and integers typed,
// so each value is taken as it comes.
function moduleReader(fields: readonly FieldSpec[], computed: Record<keyof typeof MODULE_COMPUTED, string> = COMPUTED_SQL) {
  const names = fields.map((f) => f.field);
  const n = names.length;
  const select = [
    `"${MODULE_COLUMNS.orgId.column}"`,
    `"${MODULE_COLUMNS.moduleId.column}"`,
    ...fields.map((f) => (f.column === undefined ? computed[f.field as keyof typeof MODULE_COMPUTED] : `"${f.column}"`)),
  ].join(', ');
  const decode = (r: unknown[]): ModuleRecord => {
    const record: Record<string, unknown> = { orgId: r[0], moduleId: r[1] };
    for (let i = 0; i < n; i++) record[names[i]!] = r[i + 2];
    // With a narrowed list only the asked-for fields are present; the API reads no other (see ModuleListOptions).
    return record as ModuleRecord;
  };
  return { select, decode };
}

const WHOLE_MODULE = moduleReader(MODULE_FIELDS);
const UNHEALTHY_MODULE = moduleReader(MODULE_FIELDS, COMPUTED_COLUMN);
const ALL_MODULE_FIELDS: ReadonlySet<ModuleField> = new Set(MODULE_FIELDS.map((f) => f.field));
/** At most this many distinct projections keep a named prepared statement (queries select few shapes). */
const MAX_PROJECTIONS = 64;

function checkModuleColumns(): void {
  const table = Object.entries(getTableColumns(modules)).map(([key, column]) => `${key}:${column.name}`);
  const defined = Object.entries(MODULE_COLUMNS).map(([key, spec]) => `${key}:${spec.column}`);
  if (table.sort().join() !== defined.sort().join()) {
    throw new Error(`the PostgreSQL modules table and MODULE_COLUMNS (src/store/module-fields.ts) differ: ${table.join()} / ${defined.join()}`);
  }
}

const KEY_COLUMNS =
  '"id", "org_id", "name", "prefix", "hash", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at", "created_by_key_id"';
type KeyRecord = {
  id: string; org_id: string; name: string; prefix: string; hash: string; scopes: string[]; created_at: string;
  expires_at: string | null; revoked_at: string | null; last_used_at: string | null; created_by_key_id: string | null;
};
const keyRow = (r: KeyRecord): ApiKeyRow => ({
  id: r.id,
  orgId: r.org_id,
  name: r.name,
  prefix: r.prefix,
  hash: r.hash,
  scopes: r.scopes,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
  lastUsedAt: r.last_used_at,
  createdByKeyId: r.created_by_key_id,
});

const CREDENTIAL_COLUMNS = '"org_id", "module_id", "ciphertext", "iv", "tag", "key_id", "fields", "created_at", "updated_at"';
type CredentialRecord = {
  org_id: string; module_id: string; ciphertext: Buffer; iv: Buffer; tag: Buffer; key_id: string; fields: string[];
  created_at: string; updated_at: string;
};
const credentialRow = (r: CredentialRecord): CredentialRow => ({
  orgId: r.org_id,
  moduleId: r.module_id,
  ciphertext: r.ciphertext,
  iv: r.iv,
  tag: r.tag,
  keyId: r.key_id,
  fields: r.fields,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** PostgreSQL text cannot hold NUL: no stored id has one, so a lookup by such an id is answered as missing without asking. */
const storable = (value: string) => !value.includes('\u0000');

// Run-unit metering (issue 14).

const EVENT_COLUMNS = '"org_id", "id", "idempotency_key", "units", "module_id", "occurred_at", "recorded_at", "key_id"';
type EventRecord = {
  org_id: string; id: string; idempotency_key: string; units: number; module_id: string | null; occurred_at: string; recorded_at: string; key_id: string | null;
};
type RecordRecord = EventRecord & { new: boolean; month_total: number | null };
const eventRow = (r: EventRecord): RunUnitEvent => ({
  id: r.id,
  orgId: r.org_id,
  idempotencyKey: r.idempotency_key,
  units: r.units,
  moduleId: r.module_id,
  occurredAt: r.occurred_at,
  recordedAt: r.recorded_at,
  keyId: r.key_id,
});

const QUOTA_COLUMNS = '"org_id", "run_units_per_month", "requests_per_minute", "burst", "updated_at"';
type QuotaRecord = { org_id: string; run_units_per_month: number | null; requests_per_minute: number | null; burst: number | null; updated_at: string };
const quotaRow = (r: QuotaRecord): OrgQuotaRow => ({
  orgId: r.org_id,
  runUnitsPerMonth: r.run_units_per_month,
  requestsPerMinute: r.requests_per_minute,
  burst: r.burst,
  updatedAt: r.updated_at,
});

/** The UTC month and hour a report counts in, in the store's ISO form. */
function buckets(occurredAt: string): { monthStart: string; hourStart: string } {
  const iso = new Date(occurredAt).toISOString();
  return { monthStart: `${iso.slice(0, 7)}-01T00:00:00.000Z`, hourStart: `${iso.slice(0, 13)}:00:00.000Z` };
}

/** A report past the quota: thrown inside the transaction so that its ROLLBACK takes the event back out. */
class OverQuota extends Error {
  constructor(
    readonly limit: number,
    readonly used: number,
  ) {
    super('over the run-unit quota');
  }
}

/**
 * One report in one statement (its transaction's first round trip, with BEGIN), under the wall:
 * - ins: the event, unless the module is named and not this org's, or the key is taken (ON
 *   CONFLICT DO NOTHING; under READ COMMITTED an insert of a key another transaction inserted and
 *   has not committed waits on the unique index for its outcome, so each key is recorded once
 *   however many processes send it);
 * - month: the inserted units added to the month row only while the sum stays within the quota
 *   ($11, null: none), atomically (the upsert locks the row and, having waited, sees the latest
 *   total); a first row is inserted only if the units alone fit. Nothing returned: over quota;
 * - hour: the units added to the hour, only when the month took them;
 * - the answer: the inserted event with the month's new total, or the event this statement's
 *   snapshot holds for the key (a repeat).
 * Month row before hour row, always: the lock order tenantgate_add_requests keeps (drizzle/pg/0010).
 */
const RECORD = `WITH ins AS (
    INSERT INTO "run_unit_events" (${EVENT_COLUMNS})
    SELECT $1, $2, $3, $4, $5, $6, $7, $8
     WHERE $5::text IS NULL OR EXISTS (SELECT 1 FROM "modules" WHERE "org_id" = $1 AND "module_id" = $5)
    ON CONFLICT ("org_id", "idempotency_key") DO NOTHING
    RETURNING ${EVENT_COLUMNS}
  ), month AS (
    INSERT INTO "usage_months" AS m ("org_id", "month_start", "run_units", "requests")
    SELECT ins."org_id", $9, ins."units", 0 FROM ins WHERE $11::bigint IS NULL OR ins."units" <= $11::bigint
    ON CONFLICT ("org_id", "month_start") DO UPDATE SET "run_units" = m."run_units" + excluded."run_units"
     WHERE $11::bigint IS NULL OR m."run_units" + excluded."run_units" <= $11::bigint
    RETURNING m."run_units"
  ), hour AS (
    INSERT INTO "usage_hours" AS h ("org_id", "hour_start", "run_units", "requests")
    SELECT ins."org_id", $10, ins."units", 0 FROM ins CROSS JOIN month
    ON CONFLICT ("org_id", "hour_start") DO UPDATE SET "run_units" = h."run_units" + excluded."run_units"
  )
  SELECT true AS "new", (SELECT "run_units" FROM month) AS "month_total", ins.* FROM ins
  UNION ALL
  SELECT false, NULL, ${EVENT_COLUMNS.split(', ').map((c) => `e.${c}`).join(', ')} FROM "run_unit_events" AS e
   WHERE e."org_id" = $1 AND e."idempotency_key" = $3 AND NOT EXISTS (SELECT 1 FROM ins)`;
const EVENT_BY_KEY = `SELECT ${EVENT_COLUMNS} FROM "run_unit_events" WHERE "org_id" = $1 AND "idempotency_key" = $2`;
const MONTH_UNITS = 'SELECT "run_units" FROM "usage_months" WHERE "org_id" = $1 AND "month_start" = $2';
const SERIES_HOURS = `SELECT "hour_start" AS "start", "run_units", "requests" FROM "usage_hours"
  WHERE "org_id" = $1 AND "hour_start" >= $2 AND "hour_start" < $3 ORDER BY "hour_start"`;
/** Days are the hours grouped by their date (hour_start is COLLATE "C", and so the day is). */
const SERIES_DAYS = `SELECT left("hour_start", 10) || 'T00:00:00.000Z' AS "start", sum("run_units")::bigint AS "run_units", sum("requests")::bigint AS "requests"
  FROM "usage_hours" WHERE "org_id" = $1 AND "hour_start" >= $2 AND "hour_start" < $3 GROUP BY 1 ORDER BY 1`;

/** A key's tree (itself and what it created, directly or not), walked within the org; UNION ends a cycle in hand-edited rows. */
const KEY_TREE = `WITH RECURSIVE tree(id) AS (
    SELECT r."id" FROM "api_keys" AS r WHERE r."org_id" = $1 AND r."id" = $2
    UNION
    SELECT k."id" FROM "api_keys" AS k JOIN tree ON k."created_by_key_id" = tree."id" WHERE k."org_id" = $1
  )`;

/** What a unit of work notifies at commit; DURABLE: a write that notifies nothing, answered once committed. */
const DURABLE = 'durable';
type OrgDbRow = { id: string; name: string; created_at: string; status: string; suspended_at: string | null; suspend_reason: string | null };
const ORG_COLUMNS = '"id", "name", "created_at", "status", "suspended_at", "suspend_reason"';
const orgRow = (r: OrgDbRow): OrgRow => ({
  id: r.id,
  name: r.name,
  createdAt: r.created_at,
  status: r.status as OrgStatus,
  suspendedAt: r.suspended_at,
  suspendReason: r.suspend_reason,
});

/**
 * What a write tells the change feed: its kind, and for a write of one module's, which module its
 * result says it changed (nothing when it changed nothing: a conflict, a module not found).
 */
type Notify<T = never> = { kind: ChangeKind; module?: (result: T) => ModuleChange | undefined } | typeof DURABLE | undefined;
const moduleChange = (id: string, event: ModuleChange['event']) => (happened: unknown): ModuleChange | undefined =>
  happened ? { id, event } : undefined;
/** inOrg's mark of a read whose work writes its statement before its first await (transaction.ts `oneShot`). */
const ONE_SHOT = true;

/**
 * The PostgreSQL implementation of the storage seam, over a bounded pg.Pool as the request role.
 * Every org-bound method is one transaction whose first round trip is BEGIN with the org set
 * (set_config(..., true): transaction-local, so a pooled connection never carries it on), and whose
 * statements still name org_id (the wall is row-level security; the filter also leads every
 * index). A write notifies in the round trip of its COMMIT, and counts in this process's change
 * feed at once. Cross-org operations call the definer functions of drizzle/pg/0002. Hot reads are
 * written as SQL with named prepared statements and array rows (as the SQLite store does); the
 * writes with many columns go through drizzle on the transaction's connection.
 */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  checkModuleColumns();
  const pool = new pg.Pool({
    connectionString: options.url,
    types: INT8_AS_NUMBER,
    max: options.poolMax,
    connectionTimeoutMillis: options.connectionTimeoutMs,
    idleTimeoutMillis: options.idleTimeoutMs,
    statement_timeout: options.statementTimeoutMs,
    // A lock wait counts against the statement timeout too, but a row lock held by a stuck
    // transaction should fail fast rather than hold a pooled connection for the whole timeout.
    lock_timeout: Math.min(options.statementTimeoutMs, 5_000),
    idle_in_transaction_session_timeout: Math.max(options.statementTimeoutMs * 2, 10_000),
    keepAlive: true,
    application_name: 'tenantgate',
  });
  // An idle client whose server went away emits 'error' on the pool; without a listener that
  // would end the process. The next checkout opens a new connection.
  pool.on('error', (error) => options.onEvent?.('warn', 'idle PostgreSQL connection failed', { code: (error as { code?: string }).code ?? 'connection' }));

  let changes: PostgresChangeFeed;
  try {
    changes = await createPostgresChangeFeed({
      client: { connectionString: options.url, connectionTimeoutMillis: options.connectionTimeoutMs, application_name: 'tenantgate-listen' },
      onState: (state, error) =>
        state === 'lost'
          ? options.onEvent?.('warn', 'change feed lost its connection; caches off until it listens again', {
              code: (error as { code?: string } | undefined)?.code ?? 'connection',
            })
          : options.onEvent?.('info', 'change feed listening'),
    });
  } catch (error) {
    await pool.end();
    throw toStoreError(error);
  }

  // pg-pool listens for errors of idle clients only: a checked-out client whose connection ends
  // (a terminated backend, a restarted server) emits 'error', which with no listener would end the
  // process. The query in flight rejects on its own; this listener only keeps the process up.
  const guarded = new WeakSet<pg.PoolClient>();
  async function checkout(): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw connectFailure(error);
    }
    if (!guarded.has(client)) {
      guarded.add(client);
      client.on('error', () => {});
    }
    return client;
  }

  /**
   * One transaction for `orgId`, pipelined (transaction.ts): BEGIN with the org set and the
   * work's first statements go out together. A read answers as soon as its statements have (its
   * COMMIT runs after, before the connection goes back to the pool: nothing it read depends on
   * it). A write answers after COMMIT, notifying in the same round trip, and is counted in the
   * change feed whether or not the commit was acknowledged (a spurious change costs a cache miss;
   * a missed one a stale answer). ONE_SHOT marks a read whose work writes its one statement
   * before its first await: its COMMIT goes out with it, one round trip in all.
   */
  async function inOrg<T>(orgId: string, notify: Notify<T>, work: (c: pg.PoolClient) => Promise<T>, oneShot = false): Promise<T> {
    let client = await checkout();
    let changed: ModuleChange | undefined;
    if (!idle(client)) {
      // Never expected (a connection goes back only idle); refused and replaced once.
      client.release(new ConnectionNotIdle());
      client = await checkout();
    }
    try {
      return await orgTransaction(
        notify === undefined
          ? { client, orgId, oneShot }
          : notify === DURABLE
            ? { client, orgId, durable: true }
            : {
                client,
                orgId,
                notify: () => `SELECT pg_notify('${CHANGES_CHANNEL}', ${client.escapeLiteral(notifyPayload(notify.kind, orgId, changed))})`,
                wrote: () => changes.wrote(notify.kind, orgId),
              },
        notify === undefined || notify === DURABLE || notify.module === undefined
          ? work
          : async (c) => {
              const result = await work(c);
              changed = notify.module?.(result);
              return result;
            },
      );
    } catch (error) {
      throw toStoreError(error);
    }
  }

  /**
   * A statement outside any org (the definer functions), on a pooled connection of its own
   * (checked out by `checkout`, so that a connection refused reads as the outage it is).
   */
  async function crossOrg<R extends pg.QueryResultRow>(text: string, values: unknown[], name?: string): Promise<R[]> {
    const client = await checkout();
    try {
      return (await client.query<R>({ text, values, ...(name ? { name } : {}) })).rows;
    } catch (error) {
      throw toStoreError(error);
    } finally {
      client.release();
    }
  }

  /**
   * inOrg for a write that is recorded: `log` appends to the org's audit chain on the same
   * transaction (a failure rolls the change back); the records are counted once it committed.
   */
  async function audited<T>(
    orgId: string,
    notify: Exclude<Notify<T>, undefined>,
    work: (c: pg.PoolClient, log: (actor: AuditActor, entry: AuditEntry) => Promise<void>) => Promise<T>,
  ): Promise<T> {
    const done: AuditAction[] = [];
    const value = await inOrg(orgId, notify, (c) => work(c, async (actor, entry) => void done.push((await appendAudit(c, orgId, actor, entry)).action)));
    for (const action of done) auditRecorded(action);
    return value;
  }

  const db = (client: pg.PoolClient): NodePgDatabase => drizzle({ client });
  const orgKeys = createPostgresOrgKeys({
    read: (orgId, work) => inOrg(orgId, undefined, work),
    write: (orgId, work) => inOrg(orgId, DURABLE, work),
    crossOrg,
  });

  // List pages, whole or projected: one named prepared statement per (field set, enabled filter).
  const projections = new Map<string, { name: string | undefined; text: string; decode: (r: unknown[]) => ModuleRecord }>();
  const projection = (wanted: ReadonlySet<ModuleField>, filtered: boolean) => {
    const fields = MODULE_FIELDS.filter((f) => wanted.has(f.field));
    const key = `${filtered ? 'e' : 'a'}:${fields.map((f) => f.field).join(',')}`;
    let entry = projections.get(key);
    if (!entry) {
      const reader = moduleReader(fields);
      const text =
        `SELECT ${reader.select} FROM "modules" WHERE "org_id" = $1 ${filtered ? 'AND "enabled" = $4 ' : ''}` +
        'AND "module_id" > $2 ORDER BY "module_id" LIMIT $3';
      const cached = projections.size < MAX_PROJECTIONS;
      entry = { name: cached ? `tg_modules_${projections.size}` : undefined, text, decode: reader.decode };
      if (cached) projections.set(key, entry);
    }
    return entry;
  };

  const countModules = async (c: pg.PoolClient, orgId: string, enabled: boolean | undefined): Promise<number> => {
    const { rows } =
      enabled === undefined
        ? await c.query<unknown[]>({ name: 'tg_modules_count', text: 'SELECT count(*)::integer FROM "modules" WHERE "org_id" = $1', values: [orgId], rowMode: 'array' })
        : await c.query<unknown[]>({
            name: 'tg_modules_count_enabled',
            text: 'SELECT count(*)::integer FROM "modules" WHERE "org_id" = $1 AND "enabled" = $2',
            values: [orgId, enabled],
            rowMode: 'array',
          });
    return rows[0]![0] as number;
  };

  const MODULE_GET = `SELECT ${WHOLE_MODULE.select} FROM "modules" WHERE "org_id" = $1 AND "module_id" = $2`;
  const getModule = async (c: pg.PoolClient, orgId: string, moduleId: string): Promise<ModuleRecord | undefined> => {
    const { rows } = await c.query<unknown[]>({ name: 'tg_module_get', text: MODULE_GET, values: [orgId, moduleId], rowMode: 'array' });
    return rows[0] === undefined ? undefined : WHOLE_MODULE.decode(rows[0]);
  };
  const KEY_GET = `SELECT ${KEY_COLUMNS} FROM "api_keys" WHERE "org_id" = $1 AND "id" = $2`;
  const getKey = async (c: pg.PoolClient, orgId: string, id: string): Promise<ApiKeyRow | undefined> => {
    const { rows } = await c.query<KeyRecord>({ name: 'tg_key_get', text: KEY_GET, values: [orgId, id] });
    return rows[0] === undefined ? undefined : keyRow(rows[0]);
  };
  const DESCENDANTS = `${KEY_TREE} SELECT ${KEY_COLUMNS} FROM "api_keys" WHERE "org_id" = $1 AND "id" <> $2 AND "id" IN (SELECT "id" FROM tree)
    ORDER BY "created_at", "id"`;
  const descendantsOf = async (c: pg.PoolClient, orgId: string, id: string): Promise<ApiKeyRow[]> =>
    (await c.query<KeyRecord>({ name: 'tg_key_descendants', text: DESCENDANTS, values: [orgId, id] })).rows.map(keyRow);

  const usageOf = (orgId: string): OrgStore['usage'] => ({
    record: async (event, runUnitsPerMonth) => {
      // A module id PostgreSQL text cannot hold names no module (storable, above).
      if (event.moduleId !== null && !storable(event.moduleId)) return { kind: 'no-module' };
      const { monthStart, hourStart } = buckets(event.occurredAt);
      try {
        return await inOrg(orgId, DURABLE, async (c): Promise<RecordRunUnitsResult> => {
          const { rows } = await c.query<RecordRecord>({
            name: 'tg_usage_record',
            text: RECORD,
            values: [orgId, event.id, event.idempotencyKey, event.units, event.moduleId, event.occurredAt, event.recordedAt, event.keyId, monthStart, hourStart, runUnitsPerMonth],
          });
          const row = rows[0];
          if (row !== undefined && !row.new) return { kind: 'repeat', event: eventRow(row) };
          if (row !== undefined) {
            if (row.month_total !== null) return { kind: 'recorded', event: eventRow(row) };
            // Past the quota: what the month holds now (a statement of its own sees the commits
            // this one waited for), then ROLLBACK (inOrg, on the throw) takes the event back out.
            const used = await c.query<{ run_units: number }>({ name: 'tg_usage_used', text: MONTH_UNITS, values: [orgId, monthStart] });
            throw new OverQuota(runUnitsPerMonth ?? 0, used.rows[0]?.run_units ?? 0);
          }
          // Nothing inserted and no event in this statement's snapshot: either one with this key
          // was committed while the insert waited for it (a statement of its own sees it), or the
          // module is not this org's.
          const again = await c.query<EventRecord>({ name: 'tg_usage_event_by_key', text: EVENT_BY_KEY, values: [orgId, event.idempotencyKey] });
          if (again.rows[0] !== undefined) return { kind: 'repeat', event: eventRow(again.rows[0]) };
          if (event.moduleId !== null) return { kind: 'no-module' };
          throw new StoreError('other', 'run-units', 'a run-unit report was neither recorded nor found');
        });
      } catch (error) {
        if (error instanceof OverQuota) return { kind: 'over-quota', limit: error.limit, used: error.used };
        throw error;
      }
    },
    month: (monthStart) =>
      inOrg(orgId, undefined, async (c): Promise<UsageTotals> => {
        const { rows } = await c.query<{ run_units: number; requests: number }>({
          name: 'tg_usage_month',
          text: 'SELECT "run_units", "requests" FROM "usage_months" WHERE "org_id" = $1 AND "month_start" = $2',
          values: [orgId, monthStart],
        });
        return { runUnits: rows[0]?.run_units ?? 0, requests: rows[0]?.requests ?? 0 };
      }, ONE_SHOT),
    series: (from, to, granularity) =>
      inOrg(orgId, undefined, async (c): Promise<UsageBucket[]> => {
        const { rows } = await c.query<{ start: string; run_units: number; requests: number }>(
          granularity === 'hour'
            ? { name: 'tg_usage_hours', text: SERIES_HOURS, values: [orgId, from, to] }
            : { name: 'tg_usage_days', text: SERIES_DAYS, values: [orgId, from, to] },
        );
        return rows.map((r) => ({ start: r.start, runUnits: r.run_units, requests: r.requests }));
      }, ONE_SHOT),
    events: ({ after, since, until, limit }) =>
      inOrg(orgId, undefined, async (c): Promise<RunUnitEvent[]> => {
        // One named statement per combination of the optional bounds (eight at most).
        const where = ['"org_id" = $1'];
        const values: unknown[] = [orgId, limit];
        if (after !== undefined) {
          values.push(after.occurredAt, after.id);
          where.push(`("org_id", "occurred_at", "id") > ($1, $${values.length - 1}, $${values.length})`);
        }
        if (since !== undefined) {
          values.push(since);
          where.push(`"occurred_at" >= $${values.length}`);
        }
        if (until !== undefined) {
          values.push(until);
          where.push(`"occurred_at" < $${values.length}`);
        }
        const { rows } = await c.query<EventRecord>({
          name: `tg_usage_events_${after ? 'a' : ''}${since ? 's' : ''}${until ? 'u' : ''}`,
          text: `SELECT ${EVENT_COLUMNS} FROM "run_unit_events" WHERE ${where.join(' AND ')} ORDER BY "occurred_at", "id" LIMIT $2`,
          values,
        });
        return rows.map(eventRow);
      }, ONE_SHOT),
    quota: () =>
      inOrg(orgId, undefined, async (c) => {
        const { rows } = await c.query<QuotaRecord>({
          name: 'tg_usage_quota',
          text: `SELECT ${QUOTA_COLUMNS} FROM "org_quotas" WHERE "org_id" = $1`,
          values: [orgId],
        });
        return rows[0] === undefined ? undefined : quotaRow(rows[0]);
      }, ONE_SHOT),
    // An org write, so the change feed hears of it (not as 'data': cached answers do not read quotas).
    setQuota: (row, actor) =>
      audited(orgId, { kind: 'touch' }, async (c, log) => {
        const { rows } = await c.query<QuotaRecord>({
          name: 'tg_usage_set_quota',
          text: `INSERT INTO "org_quotas" AS q (${QUOTA_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT ("org_id") DO UPDATE SET "run_units_per_month" = excluded."run_units_per_month",
                   "requests_per_minute" = excluded."requests_per_minute", "burst" = excluded."burst", "updated_at" = excluded."updated_at"
                 RETURNING ${QUOTA_COLUMNS}`,
          values: [orgId, row.runUnitsPerMonth, row.requestsPerMinute, row.burst, row.updatedAt],
        });
        await log(actor, { action: 'QUOTA_SET', targetId: orgId });
        return quotaRow(rows[0]!);
      }),
  });

  const orgStore = (orgId: string): OrgStore => ({
    orgId,
    org: () =>
      inOrg(orgId, undefined, async (c) => {
        const { rows } = await c.query<OrgDbRow>({
          name: 'tg_org_get',
          text: `SELECT ${ORG_COLUMNS} FROM "orgs" WHERE "id" = $1`,
          values: [orgId],
        });
        const r = rows[0];
        return r === undefined ? undefined : orgRow(r);
      }),
    // The operator's: orgs admits the request role to read its row only (drizzle/pg/0013).
    // In the org's own transaction, so that the record of the change goes with it.
    rename: (name, _at, actor) =>
      audited(orgId, { kind: 'touch' }, async (c, log) => {
        const { rows } = await c.query<OrgDbRow>({ text: `SELECT ${ORG_COLUMNS} FROM public.tenantgate_rename_org($1, $2)`, values: [orgId, name] });
        if (rows[0] === undefined) return undefined;
        await log(actor, { action: 'ORG_RENAME', targetId: orgId });
        return orgRow(rows[0]);
      }),
    setStatus: (status, reason, at, actor) =>
      audited(orgId, { kind: 'touch' }, async (c, log) => {
        const { rows } = await c.query<OrgDbRow>({
          text: `SELECT ${ORG_COLUMNS} FROM public.tenantgate_set_org_status($1, $2, $3, $4)`,
          values: [orgId, status, at, reason],
        });
        if (rows[0] === undefined) return undefined;
        await log(actor, { action: status === 'suspended' ? 'ORG_SUSPEND' : 'ORG_RESUME', targetId: orgId });
        return orgRow(rows[0]);
      }),

    apiKeys: {
      list: () =>
        inOrg(orgId, undefined, async (c) =>
          (
            await c.query<KeyRecord>({
              name: 'tg_keys_list',
              text: `SELECT ${KEY_COLUMNS} FROM "api_keys" WHERE "org_id" = $1 ORDER BY "created_at", "id"`,
              values: [orgId],
            })
          ).rows.map(keyRow),
        ),
      get: async (id) => (storable(id) ? inOrg(orgId, undefined, (c) => getKey(c, orgId, id)) : undefined),
      insert: (row, actor) =>
        audited(orgId, { kind: 'touch' }, async (c, log) => {
          await db(c).insert(apiKeys).values({ ...row, orgId });
          await log(actor, { action: 'KEY_CREATE', targetId: row.id });
        }),
      revoke: async (id, at, actor) =>
        storable(id)
          ? audited(orgId, { kind: 'touch' }, async (c, log) => {
              const { rows } = await c.query<KeyRecord>({
                name: 'tg_key_revoke',
                text: `UPDATE "api_keys" SET "revoked_at" = COALESCE("revoked_at", $3) WHERE "org_id" = $1 AND "id" = $2 RETURNING ${KEY_COLUMNS}`,
                values: [orgId, id, at],
              });
              await log(actor, { action: 'KEY_REVOKE', targetId: id, ...(rows[0] ? {} : { outcome: 'not_found' as const }) });
              return rows[0] === undefined ? undefined : keyRow(rows[0]);
            })
          : undefined,
      descendants: async (id) => (storable(id) ? inOrg(orgId, undefined, (c) => descendantsOf(c, orgId, id)) : []),
      revokeTree: async (id, at, check, actor) => {
        if (!storable(id)) return undefined;
        let refused: { error: unknown } | undefined;
        try {
          return await audited(orgId, { kind: 'touch' }, async (c, log): Promise<KeyTree | undefined> => {
            // The key's row is locked first, so two revocations of one tree take turns and each check sees the other's outcome.
            const { rows } = await c.query<KeyRecord>({
              name: 'tg_key_lock',
              text: `SELECT ${KEY_COLUMNS} FROM "api_keys" WHERE "org_id" = $1 AND "id" = $2 FOR UPDATE`,
              values: [orgId, id],
            });
            if (rows[0] === undefined) {
              await log(actor, { action: 'KEY_REVOKE', targetId: id, outcome: 'not_found' });
              return undefined;
            }
            const before = keyRow(rows[0]);
            const beforeDescendants = await descendantsOf(c, orgId, id);
            try {
              check(before, beforeDescendants);
            } catch (error) {
              refused = { error };
              throw error;
            }
            await c.query({
              name: 'tg_key_revoke_tree',
              text: `${KEY_TREE} UPDATE "api_keys" SET "revoked_at" = $3 WHERE "org_id" = $1 AND "revoked_at" IS NULL AND "id" IN (SELECT "id" FROM tree)`,
              values: [orgId, id, at],
            });
            const revoked = [before, ...beforeDescendants].filter((k) => k.revokedAt === null).map((k) => k.id);
            // One record per key this revocation ended (the root's alone when all were revoked already).
            for (const keyId of revoked.length > 0 ? revoked : [id]) await log(actor, { action: 'KEY_REVOKE', targetId: keyId });
            return { key: (await getKey(c, orgId, id))!, descendants: await descendantsOf(c, orgId, id), revoked };
          });
        } catch (error) {
          // The check's own refusal reaches the caller as it threw it.
          if (refused) throw refused.error;
          throw error;
        }
      },
    },

    modules: {
      list: ({ enabled, after, limit, fields }) =>
        inOrg(orgId, undefined, async (c) => {
          const { name, text, decode } = projection(fields ?? ALL_MODULE_FIELDS, enabled !== undefined);
          const values = enabled === undefined ? [orgId, after, limit] : [orgId, after, limit, enabled];
          const { rows } = await c.query<unknown[]>({ ...(name ? { name } : {}), text, values, rowMode: 'array' });
          return rows.map(decode);
        }, ONE_SHOT),
      count: (enabled) => inOrg(orgId, undefined, (c) => countModules(c, orgId, enabled), ONE_SHOT),
      // Both statements are written before the first await (ONE_SHOT): BEGIN, the org, the page,
      // the count and COMMIT go out together, one round trip and one transaction.
      listCounted: ({ enabled, after, limit, fields }) =>
        inOrg(orgId, undefined, async (c) => {
          const { name, text, decode } = projection(fields ?? ALL_MODULE_FIELDS, enabled !== undefined);
          const values = enabled === undefined ? [orgId, after, limit] : [orgId, after, limit, enabled];
          const page = c.query<unknown[]>({ ...(name ? { name } : {}), text, values, rowMode: 'array' });
          const total = countModules(c, orgId, enabled);
          // Neither rejects unseen: the page's failure is the one reported, the count's is awaited too.
          const [rows, count] = await Promise.allSettled([page, total]);
          if (rows.status === 'rejected') throw rows.reason;
          if (count.status === 'rejected') throw count.reason;
          return { rows: rows.value.rows.map(decode), total: count.value };
        }, ONE_SHOT),
      get: async (moduleId) => (storable(moduleId) ? inOrg(orgId, undefined, (c) => getModule(c, orgId, moduleId), ONE_SHOT) : undefined),
      insert: (row, actor) =>
        audited(orgId, { kind: 'data', module: moduleChange(row.moduleId, 'installed') }, async (c, log) => {
          const inserted = await db(c)
            .insert(modules)
            .values({ ...row, orgId })
            .onConflictDoNothing()
            .returning({ moduleId: modules.moduleId });
          await log(actor, { action: 'MODULE_INSTALL', targetId: row.moduleId, ...(inserted.length === 1 ? {} : { outcome: 'conflict' as const }) });
          return inserted.length === 1;
        }),
      update: async (moduleId, patch: ModulePatch, at, actor) =>
        storable(moduleId)
          ? audited(orgId, { kind: 'data', module: moduleChange(moduleId, 'changed') }, async (c, log) => {
              await db(c)
                .update(modules)
                .set({ ...patch, updatedAt: at })
                .where(and(eq(modules.orgId, orgId), eq(modules.moduleId, moduleId)));
              const row = await getModule(c, orgId, moduleId);
              const onlyEnabled = Object.keys(patch).length === 1 && patch.enabled !== undefined;
              const action = onlyEnabled ? (patch.enabled ? 'MODULE_ENABLE' : 'MODULE_DISABLE') : 'MODULE_UPDATE';
              await log(actor, { action, targetId: moduleId, ...(row ? {} : { outcome: 'not_found' as const }) });
              return row;
            })
          : undefined,
      delete: async (moduleId, actor) =>
        storable(moduleId)
          ? audited(orgId, { kind: 'data', module: moduleChange(moduleId, 'uninstalled') }, async (c, log) => {
              const { rowCount } = await c.query({
                name: 'tg_module_delete',
                text: 'DELETE FROM "modules" WHERE "org_id" = $1 AND "module_id" = $2',
                values: [orgId, moduleId],
              });
              await log(actor, { action: 'MODULE_UNINSTALL', targetId: moduleId, ...(rowCount === 1 ? {} : { outcome: 'not_found' as const }) });
              return rowCount === 1;
            })
          : false,
    },

    credentials: {
      get: async (moduleId) =>
        storable(moduleId)
          ? inOrg(orgId, undefined, async (c) => {
              const { rows } = await c.query<CredentialRecord>({
                name: 'tg_credential_get',
                text: `SELECT ${CREDENTIAL_COLUMNS} FROM "credentials" WHERE "org_id" = $1 AND "module_id" = $2`,
                values: [orgId, moduleId],
              });
              return rows[0] === undefined ? undefined : credentialRow(rows[0]);
            })
          : undefined,
      list: () =>
        inOrg(orgId, undefined, async (c) => {
          const { rows } = await c.query<Omit<CredentialRecord, 'ciphertext' | 'iv' | 'tag'>>({
            name: 'tg_credential_list',
            text: 'SELECT "org_id", "module_id", "fields", "key_id", "created_at", "updated_at" FROM "credentials" WHERE "org_id" = $1 ORDER BY "module_id"',
            values: [orgId],
          });
          return rows.map(
            (r): CredentialMeta => ({ orgId: r.org_id, moduleId: r.module_id, fields: r.fields, keyId: r.key_id, createdAt: r.created_at, updatedAt: r.updated_at }),
          );
        }),
      has: async (moduleId) =>
        storable(moduleId)
          ? inOrg(orgId, undefined, async (c) => {
              const { rowCount } = await c.query({
                name: 'tg_credential_has',
                text: 'SELECT 1 FROM "credentials" WHERE "org_id" = $1 AND "module_id" = $2',
                values: [orgId, moduleId],
              });
              return rowCount === 1;
            })
          : false,
      upsert: async (row, actor) =>
        storable(row.moduleId)
          ? audited(orgId, { kind: 'data', module: moduleChange(row.moduleId, 'changed') }, async (c, log) => {
              // The module must exist in this org; its row is locked (KEY SHARE, as the foreign key's own check) so it cannot go in between.
              const { rowCount } = await c.query({
                name: 'tg_credential_module',
                text: 'SELECT 1 FROM "modules" WHERE "org_id" = $1 AND "module_id" = $2 FOR KEY SHARE',
                values: [orgId, row.moduleId],
              });
              if (rowCount !== 1) {
                await log(actor, { action: 'CREDENTIAL_SET', targetId: row.moduleId, outcome: 'not_found' });
                return false;
              }
              // Replaces the sealed value and field names; created_at stays as first written.
              await db(c)
                .insert(credentials)
                .values({ ...row, orgId })
                .onConflictDoUpdate({
                  target: [credentials.orgId, credentials.moduleId],
                  set: { ciphertext: row.ciphertext, iv: row.iv, tag: row.tag, keyId: row.keyId, fields: row.fields, updatedAt: row.updatedAt },
                });
              await log(actor, { action: 'CREDENTIAL_SET', targetId: row.moduleId });
              return true;
            })
          : false,
      delete: async (moduleId, actor) =>
        storable(moduleId)
          ? audited(orgId, { kind: 'data', module: moduleChange(moduleId, 'changed') }, async (c, log) => {
              const { rowCount } = await c.query({
                name: 'tg_credential_delete',
                text: 'DELETE FROM "credentials" WHERE "org_id" = $1 AND "module_id" = $2',
                values: [orgId, moduleId],
              });
              await log(actor, { action: 'CREDENTIAL_DELETE', targetId: moduleId, ...(rowCount === 1 ? {} : { outcome: 'not_found' as const }) });
              return rowCount === 1;
            })
          : false,
      // Answered only once the record of the read has committed (DURABLE).
      reveal: async (moduleId, actor) =>
        storable(moduleId)
          ? audited(orgId, DURABLE, async (c, log) => {
              const { rows } = await c.query<CredentialRecord>({
                name: 'tg_credential_get',
                text: `SELECT ${CREDENTIAL_COLUMNS} FROM "credentials" WHERE "org_id" = $1 AND "module_id" = $2`,
                values: [orgId, moduleId],
              });
              await log(actor, { action: 'CREDENTIAL_REVEAL', targetId: moduleId, ...(rows[0] ? {} : { outcome: 'not_found' as const }) });
              return rows[0] === undefined ? undefined : credentialRow(rows[0]);
            })
          : undefined,
    },

    ...orgKeys.forOrg(orgId),
    usage: usageOf(orgId),

    audit: {
      page: (query) => inOrg(orgId, undefined, (c) => auditPage(c, orgId, query)),
      chain: (afterSeq, limit) => inOrg(orgId, undefined, (c) => auditChain(c, orgId, afterSeq, limit)),
      head: () => inOrg(orgId, undefined, (c) => auditHead(c, orgId), ONE_SHOT),
      prune: async (before, actor) => {
        let checkpoint = false;
        const n = await inOrg(orgId, DURABLE, (c) => auditPrune(c, orgId, before, actor, () => (checkpoint = true)));
        if (checkpoint) auditRecorded('AUDIT_CHECKPOINT');
        return n;
      },
    },
  });

  const auth: AuthStore = {
    keyByHash: async (hash) => {
      if (!storable(hash)) return undefined;
      const rows = await crossOrg<KeyRecord>(`SELECT ${KEY_COLUMNS} FROM public.tenantgate_key_by_hash($1)`, [hash], 'tg_key_by_hash');
      return rows[0] === undefined ? undefined : keyRow(rows[0]);
    },
    touchKeys: async (entries) => {
      if (entries.length === 0) return;
      await crossOrg('SELECT public.tenantgate_touch_keys($1, $2)', [entries.map((e) => e[0]), entries.map((e) => e[1])], 'tg_touch_keys');
    },
  };

  /** A platform report about one org's module: an org-bound write, the narrower path. */
  const moduleReport = (orgId: string, moduleId: string, event: ModuleChange['event'], text: string, values: unknown[], name: string) =>
    storable(moduleId)
      ? inOrg(orgId, { kind: 'data', module: moduleChange(moduleId, event) }, async (c) => {
          await c.query({ name, text, values: [orgId, moduleId, ...values] });
          return getModule(c, orgId, moduleId);
        })
      : Promise.resolve(undefined);

  const system: SystemStore = {
    orgs: {
      list: async () => (await crossOrg<OrgDbRow>(`SELECT ${ORG_COLUMNS} FROM public.tenantgate_orgs()`, [])).map(orgRow),
      /**
       * In the org's own transaction: its credentials and modules as the request role (the wall
       * admits exactly the org's rows; modules has no cascade from orgs), then the orgs row
       * through tenantgate_delete_org, whose cascade takes every other table's rows of the org
       * (keys, metering, its data key, its audit log).
       */
      delete: async (orgId, _at, actor) => {
        let recorded = false;
        const deleted = await inOrg(orgId, { kind: 'touch' }, async (c) => {
          await c.query({ text: 'DELETE FROM "credentials" WHERE "org_id" = $1', values: [orgId] });
          await c.query({ text: 'DELETE FROM "modules" WHERE "org_id" = $1', values: [orgId] });
          const { rows } = await c.query<{ deleted: boolean }>({ text: 'SELECT public.tenantgate_delete_org($1) AS deleted', values: [orgId] });
          const done = rows[0]?.deleted === true;
          // The record goes to the operator org's log (the org's own went with it), in this same
          // transaction: the org setting moves to `default` for it (transaction-local, as BEGIN's).
          await c.query({ text: "SELECT set_config('app.org_id', $1, true)", values: [DEFAULT_ORG.id] });
          await appendAudit(c, DEFAULT_ORG.id, actor, { action: 'ORG_DELETE', targetId: orgId, ...(done ? {} : { outcome: 'not_found' as const }) });
          recorded = true;
          return done;
        });
        if (recorded) auditRecorded('ORG_DELETE');
        return deleted;
      },
      // In the new org's own transaction (org set to its id): the wall admits its first audit record.
      insert: (row, actor) =>
        audited(row.id, { kind: 'touch' }, async (c, log) => {
          const { rows } = await c.query<{ inserted: boolean }>({
            text: 'SELECT public.tenantgate_insert_org($1, $2, $3) AS inserted',
            values: [row.id, row.name, row.createdAt],
          });
          const inserted = rows[0]?.inserted === true;
          await log(actor, { action: 'ORG_CREATE', targetId: row.id, ...(inserted ? {} : { outcome: 'conflict' as const }) });
          return inserted;
        }),
    },
    keyCount: async () => (await crossOrg<{ n: number }>('SELECT public.tenantgate_key_count() AS n', []))[0]?.n ?? 0,
    modules: {
      reportHealth: (orgId, moduleId, status, message, at) =>
        moduleReport(
          orgId,
          moduleId,
          'health',
          'UPDATE "modules" SET "health_status" = $3, "health_message" = $4, "last_health_check" = $5 WHERE "org_id" = $1 AND "module_id" = $2',
          [status, message, at],
          'tg_module_health',
        ),
      recordUsage: (orgId, moduleId, n, at) =>
        moduleReport(
          orgId,
          moduleId,
          'changed',
          'UPDATE "modules" SET "usage_count" = "usage_count" + $3, "last_used_at" = $4 WHERE "org_id" = $1 AND "module_id" = $2',
          [n, at],
          'tg_module_usage',
        ),
      unhealthy: async (limit) => {
        try {
          const { rows } = await pool.query<unknown[]>({
            text: `SELECT ${UNHEALTHY_MODULE.select} FROM public.tenantgate_unhealthy_modules($1)`,
            values: [limit],
            rowMode: 'array',
          });
          return rows.map(UNHEALTHY_MODULE.decode);
        } catch (error) {
          throw toStoreError(error);
        }
      },
    },
    usage: {
      addRequests: async (entries) => {
        // What the definer function could not store is left out here (it drops the rest: orgs that do not exist, hours not on the hour).
        const kept = entries.filter((e) => storable(e.orgId) && storable(e.hourStart) && Number.isSafeInteger(e.count) && e.count > 0);
        if (kept.length === 0) return;
        await crossOrg(
          'SELECT public.tenantgate_add_requests($1, $2, $3)',
          [kept.map((e) => e.orgId), kept.map((e) => e.hourStart), kept.map((e) => e.count)],
          'tg_add_requests',
        );
      },
      top: async (monthStart, limit) => {
        if (!storable(monthStart)) return [];
        const rows = await crossOrg<{ org_id: string; run_units: number; requests: number }>(
          'SELECT "org_id", "run_units", "requests" FROM public.tenantgate_usage_top($1, $2)',
          [monthStart, Math.max(0, Math.min(Math.trunc(limit), 2 ** 31 - 1))],
          'tg_usage_top',
        );
        return rows.map((r) => ({ orgId: r.org_id, runUnits: r.run_units, requests: r.requests }));
      },
      quotas: async () => (await crossOrg<QuotaRecord>(`SELECT ${QUOTA_COLUMNS} FROM public.tenantgate_org_quotas()`, [], 'tg_org_quotas')).map(quotaRow),
    },
    credentials: {
      keyIds: async () => (await crossOrg<{ key_id: string }>('SELECT k AS key_id FROM public.tenantgate_credential_key_ids() AS k', [])).map((r) => r.key_id),
      // The definer function names the rows only (drizzle/pg/0007); each sealed row is read in a
      // transaction with its own org set, under the wall. A row resealed meanwhile is skipped; if a
      // whole batch was, the next one is asked for, so an empty answer still means none is left.
      notUnderKey: async (keyId, limit) => {
        for (let round = 0; ; round++) {
          const names = await crossOrg<{ org_id: string; module_id: string }>(
            'SELECT org_id, module_id FROM public.tenantgate_credentials_not_under_key($1, $2)',
            [keyId, limit],
          );
          const rows: CredentialRow[] = [];
          for (const n of names) {
            const row = await inOrg(n.org_id, undefined, async (c) => {
              const { rows: found } = await c.query<CredentialRecord>({
                text: `SELECT ${CREDENTIAL_COLUMNS} FROM "credentials" WHERE "org_id" = $1 AND "module_id" = $2 AND "key_id" <> $3`,
                values: [n.org_id, n.module_id, keyId],
              });
              return found[0];
            });
            if (row) rows.push(credentialRow(row));
          }
          if (rows.length > 0 || names.length === 0 || round === 10) return rows;
        }
      },
      reseal: (row, expectedIv) =>
        inOrg(row.orgId, { kind: 'data' }, async (c) => {
          const { rowCount } = await c.query({
            text: 'UPDATE "credentials" SET "ciphertext" = $3, "iv" = $4, "tag" = $5, "key_id" = $6 WHERE "org_id" = $1 AND "module_id" = $2 AND "iv" = $7',
            values: [row.orgId, row.moduleId, row.ciphertext, row.iv, row.tag, row.keyId, expectedIv],
          });
          return rowCount === 1;
        }),
      underMasterKey: orgKeys.underMasterKey,
    },
    orgKeys: orgKeys.system,
  };

  let closed = false;
  return {
    dialect: 'postgres',
    location: options.location,
    pool,
    forOrg: orgStore,
    auth,
    system,
    changes,
    failureLimiter: (limit) => createPostgresFailureLimiter(pool, limit),
    requestLimiter: (limit) => createPostgresRequestLimiter(pool, limit),

    check: async () => {
      if (closed) return { ok: false, reason: 'store is closed' };
      if (!changes.listening) return { ok: false, reason: 'change feed is not listening' };
      try {
        const { rows } = await pool.query<{ ro: string }>("SELECT current_setting('transaction_read_only') AS ro");
        if (rows[0]?.ro === 'on') return { ok: false, reason: 'store is read-only' };
        return { ok: true };
      } catch (error) {
        const mapped = toStoreError(error);
        return { ok: false, reason: `store is ${(mapped as { kind?: string }).kind ?? 'failing'}` };
      }
    },

    close: async () => {
      if (closed) return;
      closed = true;
      await changes.close();
      await pool.end();
    },
  };
}

/**
 * A connection that could not be had is the store being unavailable, whatever the server said:
 * test/postgres-faults.test.ts found a database refusing connections (55000, "not currently
 * accepting connections", as ALLOW_CONNECTIONS false or a maintenance window gives) answered as an
 * internal error, 500, where the outage is a retryable 503.
 */
function connectFailure(error: unknown): unknown {
  const mapped = toStoreError(error);
  if (mapped instanceof StoreError && !mapped.retryable) return new StoreError('unavailable', mapped.code, error);
  return mapped;
}

/** Host, port and database of a PostgreSQL URL, for logs: never its user or password. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `postgres://${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
