import type Database from 'better-sqlite3';
import type {
  NewRunUnitEvent,
  OrgQuotaRow,
  OrgStore,
  RecordRunUnitsResult,
  RunUnitEvent,
  RunUnitEventQuery,
  SystemStore,
  UsageBucket,
  UsageTotals,
} from '../types.ts';
import type { SqliteAudit } from './audit.ts';
import type { SqliteDatabase } from './connection.ts';
import { settle } from './errors.ts';

// Run-unit metering on SQLite (issue 14): run_unit_events, usage_months, usage_hours, org_quotas
// (src/store/sqlite/schema.ts). Every statement of an org's part leads its WHERE with org_id.

/** The UTC calendar month and hour an instant counts in, as the rows' keys (ISO text, like every timestamp). */
export function usageBuckets(at: string): { month: string; hour: string } {
  const date = new Date(at);
  if (Number.isNaN(date.getTime())) throw new Error(`not a timestamp: ${JSON.stringify(at)}`);
  const hour = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate(), date.getUTCHours()));
  const month = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
  return { month: month.toISOString(), hour: hour.toISOString() };
}

/** An hour's key exactly as the rows hold it. */
const ON_THE_HOUR = /^\d{4}-\d{2}-\d{2}T\d{2}:00:00\.000Z$/;

const EVENT_COLUMNS =
  '"org_id" AS orgId, "id", "idempotency_key" AS idempotencyKey, "units", "module_id" AS moduleId, ' +
  '"occurred_at" AS occurredAt, "recorded_at" AS recordedAt, "key_id" AS keyId';
const QUOTA_COLUMNS =
  '"org_id" AS orgId, "run_units_per_month" AS runUnitsPerMonth, "requests_per_minute" AS requestsPerMinute, ' +
  '"burst", "updated_at" AS updatedAt';

/** What the store's write path lends: durable (answered once synced) and unsynced writes, and the change feed. */
export interface UsageDeps {
  durable: <T>(work: () => T) => Promise<T>;
  /** The org's quota row changed: not data cached answers read, so announced, not counted. */
  touched: (orgId: string) => void;
  /** Setting a quota is recorded (QUOTA_SET) in its transaction. */
  audit: Pick<SqliteAudit, 'append' | 'transaction'>;
}

export function createSqliteUsage(sqlite: SqliteDatabase, deps: UsageDeps) {
  const s = {
    eventByKey: sqlite.prepare<[string, string]>(
      `SELECT ${EVENT_COLUMNS} FROM "run_unit_events" WHERE "org_id" = ? AND "idempotency_key" = ?`,
    ),
    moduleExists: sqlite.prepare<[string, string]>('SELECT 1 FROM "modules" WHERE "org_id" = ? AND "module_id" = ?').pluck(),
    monthUnits: sqlite
      .prepare<[string, string]>('SELECT "run_units" FROM "usage_months" WHERE "org_id" = ? AND "month_start" = ?')
      .pluck(),
    insertEvent: sqlite.prepare<[string, string, string, number, string | null, string, string, string | null]>(
      'INSERT INTO "run_unit_events" ("org_id", "id", "idempotency_key", "units", "module_id", "occurred_at", "recorded_at", "key_id") ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    addMonthUnits: sqlite.prepare<[string, string, number]>(
      'INSERT INTO "usage_months" ("org_id", "month_start", "run_units", "requests") VALUES (?, ?, ?, 0) ' +
        'ON CONFLICT ("org_id", "month_start") DO UPDATE SET "run_units" = "run_units" + excluded."run_units"',
    ),
    addHourUnits: sqlite.prepare<[string, string, number]>(
      'INSERT INTO "usage_hours" ("org_id", "hour_start", "run_units", "requests") VALUES (?, ?, ?, 0) ' +
        'ON CONFLICT ("org_id", "hour_start") DO UPDATE SET "run_units" = "run_units" + excluded."run_units"',
    ),
    // The org's existence is checked in the statement, so an entry of an org that is gone adds
    // nothing instead of failing the batch on the foreign key. (WHERE also keeps SQLite's parser
    // from reading ON CONFLICT as a join's ON.)
    addMonthRequests: sqlite.prepare<[string, string, number, string]>(
      'INSERT INTO "usage_months" ("org_id", "month_start", "run_units", "requests") ' +
        'SELECT ?, ?, 0, ? WHERE EXISTS (SELECT 1 FROM "orgs" WHERE "id" = ?) ' +
        'ON CONFLICT ("org_id", "month_start") DO UPDATE SET "requests" = "requests" + excluded."requests"',
    ),
    addHourRequests: sqlite.prepare<[string, string, number, string]>(
      'INSERT INTO "usage_hours" ("org_id", "hour_start", "run_units", "requests") ' +
        'SELECT ?, ?, 0, ? WHERE EXISTS (SELECT 1 FROM "orgs" WHERE "id" = ?) ' +
        'ON CONFLICT ("org_id", "hour_start") DO UPDATE SET "requests" = "requests" + excluded."requests"',
    ),
    month: sqlite.prepare<[string, string]>(
      'SELECT "run_units" AS runUnits, "requests" FROM "usage_months" WHERE "org_id" = ? AND "month_start" = ?',
    ),
    hours: sqlite.prepare<[string, string, string]>(
      'SELECT "hour_start" AS start, "run_units" AS runUnits, "requests" FROM "usage_hours" ' +
        'WHERE "org_id" = ? AND "hour_start" >= ? AND "hour_start" < ? AND ("run_units" > 0 OR "requests" > 0) ' +
        'ORDER BY "hour_start"',
    ),
    // An hour's key is ISO text, so its day is its first 10 characters.
    days: sqlite.prepare<[string, string, string]>(
      `SELECT substr("hour_start", 1, 10) || 'T00:00:00.000Z' AS start, sum("run_units") AS runUnits, sum("requests") AS requests ` +
        'FROM "usage_hours" WHERE "org_id" = ? AND "hour_start" >= ? AND "hour_start" < ? ' +
        'GROUP BY substr("hour_start", 1, 10) HAVING sum("run_units") > 0 OR sum("requests") > 0 ORDER BY 1',
    ),
    quota: sqlite.prepare<[string]>(`SELECT ${QUOTA_COLUMNS} FROM "org_quotas" WHERE "org_id" = ?`),
    setQuota: sqlite.prepare<[string, number | null, number | null, number | null, string]>(
      'INSERT OR REPLACE INTO "org_quotas" ("org_id", "run_units_per_month", "requests_per_minute", "burst", "updated_at") ' +
        'VALUES (?, ?, ?, ?, ?)',
    ),
    quotas: sqlite.prepare(`SELECT ${QUOTA_COLUMNS} FROM "org_quotas" ORDER BY "org_id"`),
    // No index leads with month_start: the admin's ranking reads every org's row of the month
    // (one per org and month, few), not events.
    top: sqlite.prepare<[string, number]>(
      'SELECT "org_id" AS orgId, "run_units" AS runUnits, "requests" FROM "usage_months" ' +
        'WHERE "month_start" = ? AND "run_units" > 0 ORDER BY "run_units" DESC, "org_id" LIMIT ?',
    ),
  };

  // Event pages: one statement per combination of bounds, made on first use (at most eight).
  const pages = new Map<string, Database.Statement<unknown[]>>();
  const pageStatement = (after: boolean, since: boolean, until: boolean) => {
    const key = `${after ? 'a' : ''}${since ? 's' : ''}${until ? 'u' : ''}`;
    let statement = pages.get(key);
    if (!statement) {
      statement = sqlite.prepare<unknown[]>(
        `SELECT ${EVENT_COLUMNS} FROM "run_unit_events" WHERE "org_id" = ?` +
          (after ? ' AND ("occurred_at", "id") > (?, ?)' : '') +
          (since ? ' AND "occurred_at" >= ?' : '') +
          (until ? ' AND "occurred_at" < ?' : '') +
          ' ORDER BY "occurred_at", "id" LIMIT ?',
      );
      pages.set(key, statement);
    }
    return statement;
  };

  // The check and the write in one transaction, run IMMEDIATE: the write lock is taken before the
  // first read, so another process's report cannot slip between this one's quota check (or key
  // look-up) and its insert; it waits on busy_timeout instead.
  const record = sqlite.transaction(
    (orgId: string, event: NewRunUnitEvent, runUnitsPerMonth: number | null): RecordRunUnitsResult => {
      const first = s.eventByKey.get(orgId, event.idempotencyKey) as RunUnitEvent | undefined;
      if (first) return { kind: 'repeat', event: first };
      if (event.moduleId !== null && s.moduleExists.get(orgId, event.moduleId) === undefined) return { kind: 'no-module' };
      const { month, hour } = usageBuckets(event.occurredAt);
      const used = (s.monthUnits.get(orgId, month) as number | undefined) ?? 0;
      if (runUnitsPerMonth !== null && used + event.units > runUnitsPerMonth) {
        return { kind: 'over-quota', limit: runUnitsPerMonth, used };
      }
      s.insertEvent.run(orgId, event.id, event.idempotencyKey, event.units, event.moduleId, event.occurredAt, event.recordedAt, event.keyId);
      s.addMonthUnits.run(orgId, month, event.units);
      s.addHourUnits.run(orgId, hour, event.units);
      return { kind: 'recorded', event: { ...event, orgId } };
    },
  );

  const addRequests = sqlite.transaction((entries: ReadonlyArray<{ orgId: string; hourStart: string; count: number }>) => {
    for (const { orgId, hourStart, count } of entries) {
      // Dropped, as on PostgreSQL (tenantgate_add_requests): a count that adds nothing, an hour that is not one.
      if (!(count > 0) || !ON_THE_HOUR.test(hourStart)) continue;
      const { month, hour } = usageBuckets(hourStart);
      s.addMonthRequests.run(orgId, month, count, orgId);
      s.addHourRequests.run(orgId, hour, count, orgId);
    }
  });

  const forOrg = (orgId: string): OrgStore['usage'] => ({
    // Waited for even when it answers a repeat: the first record may be another request's whose
    // sync is still under way, and a repeat must not vouch for a record that is not yet on disk.
    // Not announced on the change feed: no cached answer reads usage.
    record: (event, runUnitsPerMonth) => deps.durable(() => record.immediate(orgId, event, runUnitsPerMonth)),
    month: (monthStart) =>
      settle(() => (s.month.get(orgId, monthStart) as UsageTotals | undefined) ?? { runUnits: 0, requests: 0 }),
    series: (from, to, granularity) =>
      settle(() => (granularity === 'hour' ? s.hours : s.days).all(orgId, from, to) as UsageBucket[]),
    events: ({ after, since, until, limit }: RunUnitEventQuery) =>
      settle(() => {
        const params: unknown[] = [orgId];
        if (after) params.push(after.occurredAt, after.id);
        if (since !== undefined) params.push(since);
        if (until !== undefined) params.push(until);
        params.push(limit);
        return pageStatement(after !== undefined, since !== undefined, until !== undefined).all(...params) as RunUnitEvent[];
      }),
    quota: () => settle(() => s.quota.get(orgId) as OrgQuotaRow | undefined),
    setQuota: (row, actor) =>
      deps.durable(() => {
        deps.audit.transaction(() => {
          s.setQuota.run(orgId, row.runUnitsPerMonth, row.requestsPerMinute, row.burst, row.updatedAt);
          deps.audit.append(orgId, actor, { action: 'QUOTA_SET', targetId: orgId });
        });
        deps.touched(orgId);
        return { orgId, runUnitsPerMonth: row.runUnitsPerMonth, requestsPerMinute: row.requestsPerMinute, burst: row.burst, updatedAt: row.updatedAt };
      }),
  });

  const system: SystemStore['usage'] = {
    // Best effort, like the keys' last-used times: not waited for (the next durable write's sync covers it).
    addRequests: (entries) =>
      settle(() => {
        if (entries.length > 0) addRequests.immediate(entries);
      }),
    top: (monthStart, limit) => settle(() => s.top.all(monthStart, limit) as Array<UsageTotals & { orgId: string }>),
    quotas: () => settle(() => s.quotas.all() as OrgQuotaRow[]),
  };

  return { forOrg, system };
}
