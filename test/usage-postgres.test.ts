import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from '../src/logger.ts';
import { openStore, type OpenedStore } from '../src/store/open.ts';
import type { PostgresStore } from '../src/store/postgres/store.ts';
import type { Change, NewRunUnitEvent, RunUnitEvent } from '../src/store/types.ts';
import { createScratchDatabase, postgresMultiProcess, type ScratchDatabase } from './helpers/postgres.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

// Run-unit metering and per-org rate limits on PostgreSQL (issue 14): every usage method of the
// seam as the request role, exactly once per idempotency key in one process and across four, the
// quota never overshot, each org's rows unreachable from another both through the store and, with
// the application out of the way, through row-level security, and the request limiter shared by
// two stores (two replicas) on one database.

const ROOT = path.resolve(import.meta.dirname, '..');
const MASTER_KEY = randomBytes(32);
const T0 = '2026-01-01T00:00:00.000Z';

const storeConfig = (scratch: ScratchDatabase) => ({
  database: scratch.requestUrl,
  dataDir: os.tmpdir(),
  masterKey: MASTER_KEY,
  previousMasterKeys: [],
  databasePool: { max: 6, connectTimeoutMs: 5000, idleTimeoutMs: 10_000, statementTimeoutMs: 10_000 },
});

let ids = 0;
const report = (idempotencyKey: string, units: number, extra: Partial<NewRunUnitEvent> = {}): NewRunUnitEvent => ({
  id: `ru_test${String(ids++).padStart(20, '0')}`,
  idempotencyKey,
  units,
  moduleId: null,
  occurredAt: '2026-03-15T10:20:30.000Z',
  recordedAt: '2026-03-15T10:20:31.000Z',
  keyId: 'key-a',
  ...extra,
});
const MARCH = '2026-03-01T00:00:00.000Z';
/** The child-process tests need a server (PGlite lives in this process). */
const multiProcess = await postgresMultiProcess();

describe('run-unit metering on PostgreSQL (issue 14)', () => {
  let scratch: ScratchDatabase;
  let opened: OpenedStore;
  let store: PostgresStore;
  let other: OpenedStore; // a second replica's store on the same database

  beforeAll(async () => {
    scratch = await createScratchDatabase();
    opened = await openStore(storeConfig(scratch), captureLogger());
    store = opened.postgres!;
    other = await openStore(storeConfig(scratch), captureLogger());
    for (const id of ['a', 'b', 'c', 'd']) expect(await store.system.orgs.insert({ id, name: `Org ${id}`, createdAt: T0 }, SYSTEM_ACTOR)).toBe(true);
    const module = (moduleId: string) => ({ moduleId, name: moduleId, version: '1', description: null, config: '{}', enabled: true, installedAt: T0, updatedAt: T0 });
    expect(await store.forOrg('a').modules.insert(module('mod-a'), SYSTEM_ACTOR)).toBe(true);
    expect(await store.forOrg('b').modules.insert(module('mod-b'), SYSTEM_ACTOR)).toBe(true);
  });
  afterAll(async () => {
    await opened?.store.close();
    await other?.store.close();
    await scratch?.drop();
  });

  /** Rows as the superuser sees them (every org), for checks behind the store's back. */
  const raw = async (sql: string, values: unknown[] = []) => scratch.query(sql, values);

  it('records a report once per idempotency key: the repeat answers with the first event and counts nothing', async () => {
    const a = store.forOrg('a').usage;
    const first = report('once-1', 7, { moduleId: 'mod-a' });
    const recorded = await a.record(first, null);
    expect(recorded).toEqual({ kind: 'recorded', event: { ...first, orgId: 'a' } });
    // Other units, module, time and id: still the first event, and nothing added.
    const again = await a.record(report('once-1', 500, { occurredAt: '2026-04-02T00:00:00.000Z' }), null);
    expect(again).toEqual({ kind: 'repeat', event: { ...first, orgId: 'a' } });
    expect(await a.month(MARCH)).toEqual({ runUnits: 7, requests: 0 });
    expect(await a.month('2026-04-01T00:00:00.000Z')).toEqual({ runUnits: 0, requests: 0 });
    const rows = await raw(`SELECT id, units::int AS units FROM run_unit_events WHERE org_id = 'a' AND idempotency_key = 'once-1'`);
    expect(rows).toEqual([{ id: first.id, units: 7 }]);
  });

  it('the same key sent at once through two replicas is recorded once, every other answer a repeat of it', async () => {
    const stores = [store, other.store];
    const sends = Array.from({ length: 24 }, (_, i) => stores[i % 2]!.forOrg('c').usage.record(report('race-1', 10 + i), null));
    const results = await Promise.all(sends);
    const recorded = results.filter((r) => r.kind === 'recorded');
    expect(recorded).toHaveLength(1);
    const winner = (recorded[0] as { event: RunUnitEvent }).event;
    for (const r of results) expect(r).toMatchObject({ event: winner });
    expect(results.filter((r) => r.kind === 'repeat')).toHaveLength(23);
    expect(await store.forOrg('c').usage.month(MARCH)).toEqual({ runUnits: winner.units, requests: 0 });
    const hours = await raw(`SELECT hour_start, run_units FROM usage_hours WHERE org_id = 'c'`);
    expect(hours).toEqual([{ hour_start: '2026-03-15T10:00:00.000Z', run_units: String(winner.units) }]);
  });

  it("another org's module answers as a missing one and nothing is recorded", async () => {
    const a = store.forOrg('a').usage;
    const before = await a.month(MARCH);
    expect(await a.record(report('mod-x', 3, { moduleId: 'mod-b' }), null)).toEqual({ kind: 'no-module' });
    expect(await a.record(report('mod-y', 3, { moduleId: 'no-such' }), null)).toEqual({ kind: 'no-module' });
    expect(await a.record(report('mod-z', 3, { moduleId: 'nul\u0000' }), null)).toEqual({ kind: 'no-module' });
    expect(await a.month(MARCH)).toEqual(before);
    expect(await raw(`SELECT id FROM run_unit_events WHERE idempotency_key IN ('mod-x', 'mod-y', 'mod-z')`)).toEqual([]);
    // The key was not spent: with a module of its own org it records.
    expect(await a.record(report('mod-x', 3, { moduleId: 'mod-a' }), null)).toMatchObject({ kind: 'recorded', event: { moduleId: 'mod-a' } });
  });

  it('a report past the quota is refused whole with the limit and what is used; a report that fits exactly records', async () => {
    const d = store.forOrg('d').usage;
    const may = '2026-05-01T00:00:00.000Z';
    const at = { occurredAt: '2026-05-10T08:00:00.000Z' };
    // A first report larger than the quota alone: no month row yet.
    expect(await d.record(report('q-0', 101, at), 100)).toEqual({ kind: 'over-quota', limit: 100, used: 0 });
    expect(await raw(`SELECT * FROM usage_months WHERE org_id = 'd'`)).toEqual([]);
    expect(await d.record(report('q-1', 60, at), 100)).toMatchObject({ kind: 'recorded' });
    expect(await d.record(report('q-2', 41, at), 100)).toEqual({ kind: 'over-quota', limit: 100, used: 60 });
    expect(await d.month(may)).toEqual({ runUnits: 60, requests: 0 });
    expect((await d.events({ limit: 10 })).map((e) => e.idempotencyKey)).toEqual(['q-1']);
    expect(await d.series('2026-05-10T00:00:00.000Z', '2026-05-11T00:00:00.000Z', 'hour')).toEqual([
      { start: '2026-05-10T08:00:00.000Z', runUnits: 60, requests: 0 },
    ]);
    expect(await d.record(report('q-2', 40, at), 100)).toMatchObject({ kind: 'recorded' });
    expect(await d.month(may)).toEqual({ runUnits: 100, requests: 0 });
    expect(await d.record(report('q-3', 1, at), 100)).toEqual({ kind: 'over-quota', limit: 100, used: 100 });
    // A repeat of a recorded key is a repeat even when the month is full; no quota: anything goes.
    expect(await d.record(report('q-1', 1, at), 100)).toMatchObject({ kind: 'repeat' });
    expect(await d.record(report('q-3', 1, at), null)).toMatchObject({ kind: 'recorded' });
    // The quota is the month's: June starts from zero.
    expect(await d.record(report('q-4', 100, { occurredAt: '2026-06-01T00:00:00.000Z' }), 100)).toMatchObject({ kind: 'recorded' });
  });

  it('concurrent reports never overshoot the quota: those that fit are recorded, the rest refused', async () => {
    const stores = [store, other.store];
    const at = { occurredAt: '2026-07-04T12:00:00.000Z' };
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => stores[i % 2]!.forOrg('b').usage.record(report(`qc-${i}`, 7, at), 50)),
    );
    expect(results.filter((r) => r.kind === 'recorded')).toHaveLength(7); // 49 of 50
    for (const r of results.filter((r) => r.kind !== 'recorded')) expect(r).toEqual({ kind: 'over-quota', limit: 50, used: 49 });
    expect(await store.forOrg('b').usage.month('2026-07-01T00:00:00.000Z')).toEqual({ runUnits: 49, requests: 0 });
    const [count] = await raw(`SELECT count(*)::int AS n, sum(units)::int AS s FROM run_unit_events WHERE org_id = 'b' AND idempotency_key LIKE 'qc-%'`);
    expect(count).toEqual({ n: 7, s: 49 });
  });

  it('months are UTC calendar months and hours UTC hours, by occurredAt', async () => {
    const u = store.forOrg('c').usage;
    await u.record(report('edge-1', 1, { occurredAt: '2026-08-31T23:59:59.999Z' }), null);
    await u.record(report('edge-2', 2, { occurredAt: '2026-09-01T00:00:00.000Z' }), null);
    await u.record(report('edge-3', 4, { occurredAt: '2026-09-01T00:59:59.999Z' }), null);
    await u.record(report('edge-4', 8, { occurredAt: '2026-09-01T01:00:00.000Z' }), null);
    expect(await u.month('2026-08-01T00:00:00.000Z')).toEqual({ runUnits: 1, requests: 0 });
    expect(await u.month('2026-09-01T00:00:00.000Z')).toEqual({ runUnits: 14, requests: 0 });
    expect(await u.series('2026-08-31T00:00:00.000Z', '2026-09-02T00:00:00.000Z', 'hour')).toEqual([
      { start: '2026-08-31T23:00:00.000Z', runUnits: 1, requests: 0 },
      { start: '2026-09-01T00:00:00.000Z', runUnits: 6, requests: 0 },
      { start: '2026-09-01T01:00:00.000Z', runUnits: 8, requests: 0 },
    ]);
    expect(await u.series('2026-08-31T00:00:00.000Z', '2026-09-02T00:00:00.000Z', 'day')).toEqual([
      { start: '2026-08-31T00:00:00.000Z', runUnits: 1, requests: 0 },
      { start: '2026-09-01T00:00:00.000Z', runUnits: 14, requests: 0 },
    ]);
    // [from, to): the bucket at `to` is out.
    expect(await u.series('2026-09-01T00:00:00.000Z', '2026-09-01T01:00:00.000Z', 'hour')).toEqual([
      { start: '2026-09-01T00:00:00.000Z', runUnits: 6, requests: 0 },
    ]);
  });

  it('events page by (occurredAt, id) after a cursor, within [since, until)', async () => {
    const u = store.forOrg('a').usage;
    const at = ['2026-10-01T00:00:00.000Z', '2026-10-01T00:00:00.000Z', '2026-10-02T00:00:00.000Z', '2026-10-03T00:00:00.000Z', '2026-11-01T00:00:00.000Z'];
    // Two at the same time: the id breaks the tie (ids in byte order, given out of order here).
    const made = [
      report('p-0', 1, { id: 'ru_p_b', occurredAt: at[0]! }),
      report('p-1', 1, { id: 'ru_p_a', occurredAt: at[1]! }),
      report('p-2', 1, { id: 'ru_p_c', occurredAt: at[2]! }),
      report('p-3', 1, { id: 'ru_p_d', occurredAt: at[3]! }),
      report('p-4', 1, { id: 'ru_p_e', occurredAt: at[4]! }),
    ];
    for (const r of made) expect(await u.record(r, null)).toMatchObject({ kind: 'recorded' });
    const since = '2026-10-01T00:00:00.000Z';
    const until = '2026-11-01T00:00:00.000Z';
    const page1 = await u.events({ since, until, limit: 2 });
    expect(page1.map((e) => e.id)).toEqual(['ru_p_a', 'ru_p_b']);
    const last = page1.at(-1)!;
    const page2 = await u.events({ since, until, limit: 2, after: { occurredAt: last.occurredAt, id: last.id } });
    expect(page2.map((e) => e.id)).toEqual(['ru_p_c', 'ru_p_d']);
    const page3 = await u.events({ since, until, limit: 2, after: { occurredAt: page2[1]!.occurredAt, id: page2[1]!.id } });
    expect(page3).toEqual([]);
    expect((await u.events({ since: '2026-10-02T00:00:00.000Z', limit: 10 })).map((e) => e.id)).toEqual(['ru_p_c', 'ru_p_d', 'ru_p_e']);
    expect((await u.events({ until: '2026-10-01T00:00:00.001Z', after: { occurredAt: since, id: 'ru_p_a' }, limit: 10 })).map((e) => e.id)).toEqual(['ru_p_b']);
    expect(page1[0]).toEqual({ ...made[1], orgId: 'a' });
  });

  it('quota rows: none until set, then replaced whole; a write the other replica hears of (not as data)', async () => {
    const u = store.forOrg('c').usage;
    expect(await u.quota()).toBeUndefined();
    const heard: Change[] = [];
    const stop = other.store.changes.subscribe((c) => heard.push(c));
    try {
      const set = await u.setQuota({ runUnitsPerMonth: 2 ** 40, requestsPerMinute: 600, burst: 50, updatedAt: '2026-03-01T00:00:00.000Z' }, SYSTEM_ACTOR);
      expect(set).toEqual({ orgId: 'c', runUnitsPerMonth: 2 ** 40, requestsPerMinute: 600, burst: 50, updatedAt: '2026-03-01T00:00:00.000Z' });
      const replaced = await u.setQuota({ runUnitsPerMonth: null, requestsPerMinute: 60, burst: null, updatedAt: '2026-03-02T00:00:00.000Z' }, SYSTEM_ACTOR);
      expect(replaced).toEqual({ orgId: 'c', runUnitsPerMonth: null, requestsPerMinute: 60, burst: null, updatedAt: '2026-03-02T00:00:00.000Z' });
      expect(await other.store.forOrg('c').usage.quota()).toEqual(replaced);
      const deadline = Date.now() + 5000;
      // Both writes heard (a notification per write, at its commit).
      while (heard.filter((c) => c.orgId === 'c').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const forC = heard.filter((c) => c.orgId === 'c');
      expect(forC.length).toBeGreaterThanOrEqual(2);
      for (const c of forC) expect(c.kind).toBeUndefined();
    } finally {
      stop();
    }
    // Recording notifies nothing (no cached answer reads usage). First the writes' own
    // notifications settle (this store hears its own too), so that none is taken for the report's.
    await new Promise((r) => setTimeout(r, 300));
    const before = store.changes.version('c');
    heard.length = 0;
    const stop2 = other.store.changes.subscribe((c) => heard.push(c));
    try {
      await u.record(report('quiet-1', 1), null);
      await new Promise((r) => setTimeout(r, 300));
      expect(heard).toEqual([]);
      expect(store.changes.version('c')).toBe(before);
    } finally {
      stop2();
    }
  });

  it("every method keeps to its org: another org sees none of a's usage, and the same key is its own", async () => {
    const a = store.forOrg('a').usage;
    const fresh = store.forOrg('fresh-org-not-created').usage;
    await a.setQuota({ runUnitsPerMonth: 5000, requestsPerMinute: null, burst: null, updatedAt: T0 }, SYSTEM_ACTOR);
    for (const u of [store.forOrg('d').usage, fresh]) {
      expect(await u.month('2026-10-01T00:00:00.000Z')).toEqual({ runUnits: 0, requests: 0 });
      expect(await u.series('2026-10-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z', 'hour')).toEqual([]);
      expect(await u.series('2026-10-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z', 'day')).toEqual([]);
      expect(await u.events({ since: '2026-10-01T00:00:00.000Z', until: '2026-11-01T00:00:00.000Z', limit: 100 })).toEqual([]);
    }
    expect(await store.forOrg('d').usage.quota()).toBeUndefined();
    // a's key 'once-1' is d's to use too: recorded, not a repeat of a's event.
    const mine = await store.forOrg('d').usage.record(report('once-1', 2, { occurredAt: '2026-02-01T00:00:00.000Z' }), null);
    expect(mine).toMatchObject({ kind: 'recorded', event: { orgId: 'd', units: 2 } });
    // An org that does not exist records nothing (its row would name no org: the foreign key refuses it).
    await expect(fresh.record(report('ghost', 1), null)).rejects.toMatchObject({ name: 'StoreError' });
    expect(await raw(`SELECT count(*)::int AS n FROM run_unit_events WHERE org_id = 'fresh-org-not-created'`)).toEqual([{ n: 0 }]);
  });

  it('row-level security is a second wall on the four tables: raw SQL as the request role sees only the org set, and nothing unset', async () => {
    const requests = new pg.Pool({ connectionString: scratch.requestUrl, max: 1 });
    try {
      const inTransaction = async <T>(org: string | undefined, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> => {
        const c = await requests.connect();
        try {
          await c.query('BEGIN');
          if (org !== undefined) await c.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
          try {
            return await fn(c);
          } finally {
            await c.query('ROLLBACK');
          }
        } finally {
          c.release();
        }
      };
      const tables = ['run_unit_events', 'usage_months', 'usage_hours', 'org_quotas'];
      const seen = async (org: string | undefined) =>
        inTransaction(org, async (c) => {
          const out: Record<string, string[]> = {};
          for (const t of tables) out[t] = [...new Set((await c.query<{ org_id: string }>(`SELECT * FROM ${t}`)).rows.map((r) => r.org_id))].sort();
          return out;
        });
      // The superuser's view: a has rows in all four.
      for (const t of tables) expect((await raw(`SELECT count(*)::int AS n FROM ${t} WHERE org_id = 'a'`))[0]!.n).toBeGreaterThan(0);
      expect(await seen('b')).toEqual({ run_unit_events: ['b'], usage_months: ['b'], usage_hours: ['b'], org_quotas: [] });
      expect(await seen('a')).toEqual({ run_unit_events: ['a'], usage_months: ['a'], usage_hours: ['a'], org_quotas: ['a'] });
      for (const org of [undefined, '']) expect(await seen(org)).toEqual({ run_unit_events: [], usage_months: [], usage_hours: [], org_quotas: [] });
      // Writes with no org filter reach only the org set; a row for another org is refused.
      const changed = await inTransaction('b', async (c) => ({
        updated: (await c.query('UPDATE usage_months SET run_units = 0')).rowCount,
        deleted: (await c.query('DELETE FROM run_unit_events')).rowCount,
      }));
      expect(changed).toEqual({ updated: 1, deleted: 7 });
      await expect(
        inTransaction('b', (c) => c.query(`INSERT INTO org_quotas (org_id, updated_at) VALUES ('a', 'x')`)),
      ).rejects.toMatchObject({ code: '42501' });
      await expect(
        inTransaction('b', (c) => c.query(`INSERT INTO usage_hours (org_id, hour_start) VALUES ('a', '2026-01-01T00:00:00.000Z')`)),
      ).rejects.toMatchObject({ code: '42501' });
      // The cross-org path reads no event: the request role with no org set, through no function.
      const catalog = await raw(
        `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
          WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1) ORDER BY c.relname`,
        [tables],
      );
      expect(catalog).toEqual([...tables].sort().map((relname) => ({ relname, relrowsecurity: true, relforcerowsecurity: true })));
      const collations = await raw(
        `SELECT table_name || '.' || column_name AS c FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name = ANY($1) AND collation_name = 'C' ORDER BY 1`,
        [tables],
      );
      expect(collations.map((r) => r.c)).toEqual([
        'org_quotas.org_id',
        'run_unit_events.id', 'run_unit_events.idempotency_key', 'run_unit_events.key_id', 'run_unit_events.module_id',
        'run_unit_events.occurred_at', 'run_unit_events.org_id',
        'usage_hours.hour_start', 'usage_hours.org_id',
        'usage_months.month_start', 'usage_months.org_id',
      ]);
    } finally {
      await requests.end();
    }
  });

  it('addRequests adds served requests to the month and hour across orgs in one call, dropping orgs that do not exist and bad entries', async () => {
    await store.system.usage.addRequests([
      { orgId: 'a', hourStart: '2026-12-01T05:00:00.000Z', count: 3 },
      { orgId: 'a', hourStart: '2026-12-01T05:00:00.000Z', count: 2 },
      { orgId: 'a', hourStart: '2026-12-31T23:00:00.000Z', count: 10 },
      { orgId: 'b', hourStart: '2026-12-01T05:00:00.000Z', count: 1 },
      { orgId: 'no-such-org', hourStart: '2026-12-01T05:00:00.000Z', count: 99 },
      { orgId: 'a', hourStart: '2026-12-01T05:30:00.000Z', count: 1000 }, // not on the hour
      { orgId: 'a', hourStart: '2026-12-01T06:00:00.000Z', count: -4 },
      { orgId: 'a\u0000', hourStart: '2026-12-01T06:00:00.000Z', count: 4 },
    ]);
    await other.store.system.usage.addRequests([{ orgId: 'a', hourStart: '2026-12-01T05:00:00.000Z', count: 1 }]);
    await store.system.usage.addRequests([]);
    const dec = '2026-12-01T00:00:00.000Z';
    expect(await store.forOrg('a').usage.month(dec)).toEqual({ runUnits: 0, requests: 16 });
    expect(await store.forOrg('b').usage.month(dec)).toEqual({ runUnits: 0, requests: 1 });
    expect(await store.forOrg('a').usage.series(dec, '2027-01-01T00:00:00.000Z', 'hour')).toEqual([
      { start: '2026-12-01T05:00:00.000Z', runUnits: 0, requests: 6 },
      { start: '2026-12-31T23:00:00.000Z', runUnits: 0, requests: 10 },
    ]);
    expect(await raw(`SELECT count(*)::int AS n FROM usage_months WHERE org_id NOT IN ('a', 'b', 'c', 'd')`)).toEqual([{ n: 0 }]);
    // Requests and run units share the rows: a report in December adds to the same month.
    await store.forOrg('a').usage.record(report('dec-1', 5, { occurredAt: '2026-12-01T05:59:00.000Z' }), null);
    expect(await store.forOrg('a').usage.series(dec, '2026-12-02T00:00:00.000Z', 'day')).toEqual([
      { start: '2026-12-01T00:00:00.000Z', runUnits: 5, requests: 6 },
    ]);
  });

  it('top ranks orgs by run units in a month, most first, ties by id, orgs with none absent; quotas lists every row', async () => {
    const jan = '2027-01-01T00:00:00.000Z';
    const at = { occurredAt: '2027-01-05T00:00:00.000Z' };
    await store.forOrg('b').usage.record(report('top-b', 30, at), null);
    await store.forOrg('d').usage.record(report('top-d', 30, at), null);
    await store.forOrg('a').usage.record(report('top-a', 50, at), null);
    await store.system.usage.addRequests([{ orgId: 'c', hourStart: '2027-01-05T00:00:00.000Z', count: 1000 }]);
    expect(await store.system.usage.top(jan, 10)).toEqual([
      { orgId: 'a', runUnits: 50, requests: 0 },
      { orgId: 'b', runUnits: 30, requests: 0 },
      { orgId: 'd', runUnits: 30, requests: 0 },
    ]);
    expect(await other.store.system.usage.top(jan, 2)).toEqual([
      { orgId: 'a', runUnits: 50, requests: 0 },
      { orgId: 'b', runUnits: 30, requests: 0 },
    ]);
    expect(await store.system.usage.top('2027-02-01T00:00:00.000Z', 10)).toEqual([]);
    expect((await store.system.usage.quotas()).map((q) => [q.orgId, q.runUnitsPerMonth])).toEqual([['a', 5000], ['c', null]]);
  });

  it('the request limiter is shared by two stores (two replicas), per org, and refuses from memory once an org is past it', async () => {
    const options = { name: 'org-rpm-test', points: 3, durationSec: 60 };
    const one = store.requestLimiter!(options);
    const two = other.store.requestLimiter!(options);
    await one.consume('a');
    await two.consume('a');
    await one.consume('a');
    await expect(two.consume('a')).rejects.toMatchObject({ msBeforeNext: expect.any(Number) });
    await expect(one.consume('a')).rejects.toMatchObject({ msBeforeNext: expect.any(Number) });
    // Another org's budget is its own.
    await one.consume('b');
    await two.consume('b');
    const rows = await raw(`SELECT key, points FROM tenantgate_limits.org_requests ORDER BY key`);
    expect(rows).toEqual([
      { key: 'org-rpm-test:a', points: 5 },
      { key: 'org-rpm-test:b', points: 2 },
    ]);
    // Refused again on `one`, from memory: the row is not touched.
    await expect(one.consume('a')).rejects.toMatchObject({ msBeforeNext: expect.any(Number) });
    expect(await raw(`SELECT points FROM tenantgate_limits.org_requests WHERE key = 'org-rpm-test:a'`)).toEqual([{ points: 5 }]);
  });

  /** Runs `count` child recorders on the scratch database, started together; their results by child. */
  async function children(count: number, env: Record<string, string>) {
    const procs = Array.from({ length: count }, (_, i) =>
      spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/run-units-pg-child.ts'], {
        cwd: ROOT,
        env: { ...process.env, TG_DATABASE: scratch.requestUrl, TG_NAME: `child${i}`, TG_INDEX: String(i), ...env },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const lines = procs.map((c) => readline.createInterface({ input: c.stdout! })[Symbol.asyncIterator]());
    for (const l of lines) expect((await l.next()).value).toBe('ready');
    for (const c of procs) c.stdin!.write('go\n');
    const results = await Promise.all(lines.map(async (l) => JSON.parse((await l.next()).value as string) as Array<{ key: string; units: number; kind: string; id?: string }>));
    await Promise.all(procs.map((c) => new Promise((resolve) => (c.exitCode === null ? c.on('exit', resolve) : resolve(null)))));
    for (const c of procs) expect(c.exitCode).toBe(0);
    return results;
  }

  it.skipIf(!multiProcess)('four processes, 50 distinct reports each and the same 10 shared keys: the month is exactly the sum, each shared key once', async () => {
    await store.system.orgs.insert({ id: 'procs', name: 'Processes', createdAt: T0 }, SYSTEM_ACTOR);
    const results = await children(4, { TG_ORG: 'procs', TG_DISTINCT: '50', TG_SHARED: '10', TG_UNITS: '3', TG_OCCURRED_AT: '2027-03-03T03:03:03.000Z' });
    const all = results.flat();
    expect(all).toHaveLength(4 * (50 + 10 + 10));
    // Each shared key was recorded by exactly one child; every other send of it is a repeat of that event.
    const sharedWins = new Map<string, { id: string; units: number }>();
    for (const r of all.filter((r) => r.key.startsWith('shared-') && r.kind === 'recorded')) {
      expect(sharedWins.has(r.key)).toBe(false);
      sharedWins.set(r.key, { id: r.id!, units: r.units });
    }
    expect(sharedWins.size).toBe(10);
    for (const r of all.filter((r) => r.key.startsWith('shared-') && r.kind !== 'recorded')) {
      expect(r).toMatchObject({ kind: 'repeat', id: sharedWins.get(r.key)!.id });
    }
    for (const r of all.filter((r) => !r.key.startsWith('shared-'))) expect(r.kind).toBe('recorded');
    const expected = 4 * 50 * 3 + [...sharedWins.values()].reduce((s, w) => s + w.units, 0);
    expect(await store.forOrg('procs').usage.month('2027-03-01T00:00:00.000Z')).toEqual({ runUnits: expected, requests: 0 });
    expect(await store.forOrg('procs').usage.series('2027-03-03T00:00:00.000Z', '2027-03-04T00:00:00.000Z', 'day')).toEqual([
      { start: '2027-03-03T00:00:00.000Z', runUnits: expected, requests: 0 },
    ]);
    const stored = await raw(`SELECT count(*)::int AS n, sum(units)::int AS s, count(DISTINCT idempotency_key)::int AS k FROM run_unit_events WHERE org_id = 'procs'`);
    expect(stored).toEqual([{ n: 210, s: expected, k: 210 }]);
  });

  it.skipIf(!multiProcess)('four processes against a quota they would overshoot: the month never passes it, and what was recorded is what it holds', async () => {
    await store.system.orgs.insert({ id: 'procs-q', name: 'Quota', createdAt: T0 }, SYSTEM_ACTOR);
    // 4 × 50 × 3 distinct plus the shared ones (3 + index) would be about 640: the quota is 400.
    const results = await children(4, { TG_ORG: 'procs-q', TG_DISTINCT: '50', TG_SHARED: '10', TG_UNITS: '3', TG_QUOTA: '400', TG_OCCURRED_AT: '2027-04-04T04:04:04.000Z' });
    const all = results.flat();
    const recorded = all.filter((r) => r.kind === 'recorded');
    const total = recorded.reduce((s, r) => s + r.units, 0);
    const month = await store.forOrg('procs-q').usage.month('2027-04-01T00:00:00.000Z');
    expect(month.runUnits).toBe(total);
    expect(total).toBeLessThanOrEqual(400);
    // Refusals came only once too little was left for them (3 to 6 units), so the month ended full to within one report.
    expect(total).toBeGreaterThan(400 - 6);
    expect(all.filter((r) => r.kind === 'over-quota').length).toBeGreaterThan(0);
    for (const r of all) expect(['recorded', 'repeat', 'over-quota']).toContain(r.kind);
    const stored = await raw(`SELECT count(*)::int AS n, coalesce(sum(units), 0)::int AS s FROM run_unit_events WHERE org_id = 'procs-q'`);
    expect(stored).toEqual([{ n: recorded.length, s: total }]);
  });
});
