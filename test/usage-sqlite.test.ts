import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { openStore, type OpenedStore } from '../src/store/open.ts';
import { createSqliteStore } from '../src/store/sqlite/store.ts';
import type { Change, NewRunUnitEvent, Store } from '../src/store/types.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

// Run-unit metering on the SQLite store (issue 14, items 1-3): the store's own methods, on a real
// migrated file, two orgs with look-alike data; and several processes on one data directory.

const ROOT = path.resolve(import.meta.dirname, '..');
const A = 'org-a';
const B = 'org-b';

const dirs: string[] = [];
const opened: OpenedStore[] = [];
afterAll(async () => {
  for (const o of opened) await o.store.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-usage-'));
  dirs.push(dir);
  return dir;
}

interface Fixture {
  dir: string;
  masterKey: string;
  opened: OpenedStore;
  store: Store;
}

async function open(dir = tempDir(), masterKey = randomBytes(32).toString('base64')): Promise<Fixture> {
  const o = await openStore(loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: masterKey }), captureLogger());
  opened.push(o);
  return { dir, masterKey, opened: o, store: o.store };
}

/** Two orgs; `shared` is a module of A only, `b-only` of B only. */
async function seed(store: Store): Promise<void> {
  const at = '2026-11-01T00:00:00.000Z';
  await store.system.orgs.insert({ id: A, name: 'Org A', createdAt: at }, SYSTEM_ACTOR);
  await store.system.orgs.insert({ id: B, name: 'Org B', createdAt: at }, SYSTEM_ACTOR);
  const module = (moduleId: string) => ({ moduleId, name: moduleId, version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at });
  expect(await store.forOrg(A).modules.insert(module('shared'), SYSTEM_ACTOR)).toBe(true);
  expect(await store.forOrg(B).modules.insert(module('b-only'), SYSTEM_ACTOR)).toBe(true);
}

let n = 0;
function event(key: string, units: number, occurredAt = '2026-12-03T10:15:00.000Z', extra: Partial<NewRunUnitEvent> = {}): NewRunUnitEvent {
  return { id: `ru_${String(n++).padStart(24, '0')}`, idempotencyKey: key, units, moduleId: null, occurredAt, recordedAt: '2026-12-03T18:00:00.000Z', keyId: 'key-1', ...extra };
}

const DEC = '2026-12-01T00:00:00.000Z';
const NOV = '2026-11-01T00:00:00.000Z';
const JAN = '2027-01-01T00:00:00.000Z';

describe('recording run units (SQLite)', () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await open();
    await seed(f.store);
  });
  const raw = <T>(sql: string, ...params: unknown[]) => f.opened.sqlite.prepare(sql).all(...params) as T[];

  it('records an event with every field, and adds its units to its month and hour', async () => {
    const e = event('k1', 7, '2026-12-03T10:15:00.000Z', { moduleId: 'shared', keyId: 'key-9' });
    expect(await f.store.forOrg(A).usage.record(e, null)).toEqual({ kind: 'recorded', event: { ...e, orgId: A } });
    expect(await f.store.forOrg(A).usage.events({ limit: 10 })).toEqual([{ ...e, orgId: A }]);
    expect(await f.store.forOrg(A).usage.month(DEC)).toEqual({ runUnits: 7, requests: 0 });
    expect(raw('SELECT org_id, hour_start, run_units, requests FROM usage_hours')).toEqual([
      { org_id: A, hour_start: '2026-12-03T10:00:00.000Z', run_units: 7, requests: 0 },
    ]);
  });

  it('records a key once, sequentially: the repeat answers the first event, whatever it carries', async () => {
    const usage = f.store.forOrg(A).usage;
    const first = event('same', 5);
    expect((await usage.record(first, null)).kind).toBe('recorded');
    const again = await usage.record(event('same', 900, '2026-11-20T00:00:00.000Z', { moduleId: 'shared', keyId: 'other' }), null);
    expect(again).toEqual({ kind: 'repeat', event: { ...first, orgId: A } });
    // The repeat is answered even past the quota and with a module that does not exist: it records nothing either way.
    expect(await usage.record(event('same', 1, undefined, { moduleId: 'no-such' }), 1)).toEqual({ kind: 'repeat', event: { ...first, orgId: A } });
    expect(await usage.month(DEC)).toEqual({ runUnits: 5, requests: 0 });
    expect(await usage.month(NOV)).toEqual({ runUnits: 0, requests: 0 });
    expect(raw('SELECT count(*) AS n FROM run_unit_events')).toEqual([{ n: 1 }]);
  });

  it('records a key once, concurrently: one recorded, every other promise the same first event', async () => {
    const usage = f.store.forOrg(A).usage;
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => usage.record(event('race', i + 1), null)));
    const recorded = results.filter((r) => r.kind === 'recorded');
    expect(recorded).toHaveLength(1);
    const first = recorded[0]!.kind === 'recorded' ? recorded[0]!.event : undefined;
    for (const r of results) expect(r).toEqual({ kind: r.kind === 'recorded' ? 'recorded' : 'repeat', event: first });
    expect((await usage.month(DEC)).runUnits).toBe(first!.units);
  });

  it('answers no-module for another org\'s module, exactly as for a missing one, and records nothing', async () => {
    expect(await f.store.forOrg(A).usage.record(event('m1', 3, undefined, { moduleId: 'b-only' }), null)).toEqual({ kind: 'no-module' });
    expect(await f.store.forOrg(A).usage.record(event('m2', 3, undefined, { moduleId: 'missing' }), null)).toEqual({ kind: 'no-module' });
    expect(await f.store.forOrg(B).usage.record(event('m3', 3, undefined, { moduleId: 'shared' }), null)).toEqual({ kind: 'no-module' });
    expect(raw('SELECT count(*) AS n FROM run_unit_events')).toEqual([{ n: 0 }]);
    expect(raw('SELECT count(*) AS n FROM usage_months')).toEqual([{ n: 0 }]);
    // The key is not spent: the same key with the org's own module records.
    expect((await f.store.forOrg(B).usage.record(event('m3', 3, undefined, { moduleId: 'b-only' }), null)).kind).toBe('recorded');
  });

  it('keeps an event when its module is uninstalled later (billing history stays)', async () => {
    await f.store.forOrg(A).usage.record(event('kept', 4, undefined, { moduleId: 'shared' }), null);
    expect(await f.store.forOrg(A).modules.delete('shared', SYSTEM_ACTOR)).toBe(true);
    expect((await f.store.forOrg(A).usage.events({ limit: 10 })).map((e) => [e.idempotencyKey, e.moduleId])).toEqual([['kept', 'shared']]);
  });

  it('refuses a report that would pass the quota whole, with the limit and what is used, and records nothing', async () => {
    const usage = f.store.forOrg(A).usage;
    expect((await usage.record(event('q1', 60), 100)).kind).toBe('recorded');
    expect(await usage.record(event('q2', 41), 100)).toEqual({ kind: 'over-quota', limit: 100, used: 60 });
    expect((await usage.record(event('q3', 40), 100)).kind).toBe('recorded'); // exactly up to the limit
    expect(await usage.record(event('q4', 1), 100)).toEqual({ kind: 'over-quota', limit: 100, used: 100 });
    expect(await usage.month(DEC)).toEqual({ runUnits: 100, requests: 0 });
    expect((await usage.events({ limit: 10 })).map((e) => e.idempotencyKey)).toEqual(['q1', 'q3']);
    // A refused key is not spent: sent again without the quota it records.
    expect((await usage.record(event('q2', 41), null)).kind).toBe('recorded');
    // The quota counts the month of occurredAt, and only this org's use.
    expect((await usage.record(event('q5', 100, '2026-11-30T23:59:59.999Z'), 100)).kind).toBe('recorded');
    expect((await f.store.forOrg(B).usage.record(event('q6', 100), 100)).kind).toBe('recorded');
    expect(await usage.record(event('q7', 1, '2026-11-15T00:00:00.000Z'), 100)).toEqual({ kind: 'over-quota', limit: 100, used: 100 });
  });

  it('counts each event in its UTC calendar month and hour, at the boundaries', async () => {
    const usage = f.store.forOrg(A).usage;
    await usage.record(event('b1', 1, '2026-11-30T23:59:59.999Z'), null);
    await usage.record(event('b2', 2, '2026-12-01T00:00:00.000Z'), null);
    await usage.record(event('b3', 4, '2026-12-31T23:59:59.999Z'), null);
    await usage.record(event('b4', 8, '2027-01-01T00:00:00.000Z'), null);
    expect((await usage.month(NOV)).runUnits).toBe(1);
    expect((await usage.month(DEC)).runUnits).toBe(6);
    expect((await usage.month(JAN)).runUnits).toBe(8);
    expect(raw<{ month_start: string }>('SELECT month_start FROM usage_months ORDER BY 1').map((r) => r.month_start)).toEqual([NOV, DEC, JAN]);
    expect(raw<{ hour_start: string }>('SELECT hour_start FROM usage_hours ORDER BY 1').map((r) => r.hour_start)).toEqual([
      '2026-11-30T23:00:00.000Z',
      '2026-12-01T00:00:00.000Z',
      '2026-12-31T23:00:00.000Z',
      '2027-01-01T00:00:00.000Z',
    ]);
  });

  it('answers series by hour and by day in [from, to), oldest first, without empty buckets; requests beside run units', async () => {
    const usage = f.store.forOrg(A).usage;
    await usage.record(event('s1', 1, '2026-12-02T09:00:00.000Z'), null);
    await usage.record(event('s2', 2, '2026-12-02T09:59:59.999Z'), null);
    await usage.record(event('s3', 4, '2026-12-02T23:30:00.000Z'), null);
    await usage.record(event('s4', 8, '2026-12-03T00:00:00.000Z'), null);
    await usage.record(event('s5', 16, '2026-12-05T12:00:00.000Z'), null);
    await f.store.system.usage.addRequests([
      { orgId: A, hourStart: '2026-12-02T09:00:00.000Z', count: 3 },
      { orgId: A, hourStart: '2026-12-04T01:00:00.000Z', count: 5 },
      { orgId: A, hourStart: '2026-12-04T01:00:00.000Z', count: 1 },
    ]);
    expect(await usage.series('2026-12-02T00:00:00.000Z', '2026-12-04T00:00:00.000Z', 'hour')).toEqual([
      { start: '2026-12-02T09:00:00.000Z', runUnits: 3, requests: 3 },
      { start: '2026-12-02T23:00:00.000Z', runUnits: 4, requests: 0 },
      { start: '2026-12-03T00:00:00.000Z', runUnits: 8, requests: 0 },
    ]);
    expect(await usage.series('2026-12-02T00:00:00.000Z', '2026-12-06T00:00:00.000Z', 'day')).toEqual([
      { start: '2026-12-02T00:00:00.000Z', runUnits: 7, requests: 3 },
      { start: '2026-12-03T00:00:00.000Z', runUnits: 8, requests: 0 },
      { start: '2026-12-04T00:00:00.000Z', runUnits: 0, requests: 6 },
      { start: '2026-12-05T00:00:00.000Z', runUnits: 16, requests: 0 },
    ]);
    // `to` is exclusive, `from` inclusive.
    expect(await usage.series('2026-12-03T00:00:00.000Z', '2026-12-05T00:00:00.000Z', 'day')).toEqual([
      { start: '2026-12-03T00:00:00.000Z', runUnits: 8, requests: 0 },
      { start: '2026-12-04T00:00:00.000Z', runUnits: 0, requests: 6 },
    ]);
    expect(await usage.month(DEC)).toEqual({ runUnits: 31, requests: 9 });
  });

  it('pages events by (occurredAt, id), with since (inclusive) and until (exclusive) on occurredAt', async () => {
    const usage = f.store.forOrg(A).usage;
    const times = ['2026-12-01T00:00:00.000Z', '2026-12-02T00:00:00.000Z', '2026-12-02T00:00:00.000Z', '2026-12-02T00:00:00.000Z', '2026-12-03T00:00:00.000Z', '2026-11-05T00:00:00.000Z'];
    // Ids out of insertion order, so the page order is (occurredAt, id), not rowid.
    const ids = ['ru_f', 'ru_c', 'ru_a', 'ru_b', 'ru_e', 'ru_d'];
    for (const [i, at] of times.entries()) await usage.record(event(`p${i}`, 1, at, { id: ids[i]! }), null);
    const order = (await usage.events({ limit: 100 })).map((e) => e.id);
    expect(order).toEqual(['ru_d', 'ru_f', 'ru_a', 'ru_b', 'ru_c', 'ru_e']);

    const walk = async (q: { since?: string; until?: string }, limit: number) => {
      const seen: string[] = [];
      let after: { occurredAt: string; id: string } | undefined;
      for (;;) {
        const page = await usage.events({ ...q, after, limit });
        expect(page.length).toBeLessThanOrEqual(limit);
        seen.push(...page.map((e) => e.id));
        if (page.length < limit) return seen;
        const last = page[page.length - 1]!;
        after = { occurredAt: last.occurredAt, id: last.id };
      }
    };
    expect(await walk({}, 2)).toEqual(order);
    expect(await walk({}, 1)).toEqual(order);
    expect(await walk({ since: '2026-12-02T00:00:00.000Z' }, 2)).toEqual(['ru_a', 'ru_b', 'ru_c', 'ru_e']);
    expect(await walk({ until: '2026-12-02T00:00:00.000Z' }, 2)).toEqual(['ru_d', 'ru_f']);
    expect(await walk({ since: DEC, until: '2026-12-03T00:00:00.000Z' }, 2)).toEqual(['ru_f', 'ru_a', 'ru_b', 'ru_c']);
    // A cursor in the middle of equal times goes on with the larger ids of that time.
    expect((await usage.events({ after: { occurredAt: '2026-12-02T00:00:00.000Z', id: 'ru_a' }, limit: 10 })).map((e) => e.id)).toEqual(['ru_b', 'ru_c', 'ru_e']);
    expect((await usage.events({ after: { occurredAt: '2026-12-02T00:00:00.000Z', id: 'ru_b' }, until: '2026-12-03T00:00:00.000Z', limit: 10 })).map((e) => e.id)).toEqual(['ru_c']);
  });

  it('sets and reads quota rows; setQuota replaces and announces the org; recording announces nothing', async () => {
    const heard: Change[] = [];
    const unsubscribe = f.store.changes.subscribe((c) => heard.push(c));
    const versionA = f.store.changes.version(A);
    expect(await f.store.forOrg(A).usage.quota()).toBeUndefined();
    await f.store.forOrg(A).usage.record(event('silent', 1), null);
    expect(heard).toEqual([]);
    expect(f.store.changes.version(A)).toBe(versionA);

    const row = { runUnitsPerMonth: 1000, requestsPerMinute: 60, burst: 10, updatedAt: '2026-12-03T12:00:00.000Z' };
    expect(await f.store.forOrg(A).usage.setQuota(row, SYSTEM_ACTOR)).toEqual({ orgId: A, ...row });
    expect(heard).toEqual([{ orgId: A }]);
    const replaced = { runUnitsPerMonth: null, requestsPerMinute: 120, burst: null, updatedAt: '2026-12-03T13:00:00.000Z' };
    expect(await f.store.forOrg(A).usage.setQuota(replaced, SYSTEM_ACTOR)).toEqual({ orgId: A, ...replaced });
    expect(await f.store.forOrg(A).usage.quota()).toEqual({ orgId: A, ...replaced });
    expect(await f.store.system.usage.quotas()).toEqual([{ orgId: A, ...replaced }]);
    unsubscribe();
  });

  it('answers a record only once it is synced, repeats included', async () => {
    // A second store on the same connection whose syncs this test releases by hand.
    let release!: () => void;
    let syncs = 0;
    const held = createSqliteStore(f.opened.sqlite, f.opened.sqlite.name, {
      walSync: {
        synced: () => {
          syncs++;
          return new Promise<void>((resolve) => (release = resolve));
        },
        failure: undefined,
      },
    });
    const settled: string[] = [];
    const recording = held.forOrg(A).usage.record(event('held', 2), null).then((r) => settled.push(r.kind));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(syncs).toBe(1);
    expect(settled).toEqual([]);
    release();
    await recording;
    const repeat = held.forOrg(A).usage.record(event('held', 2), null).then((r) => settled.push(r.kind));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toEqual(['recorded']);
    release();
    await repeat;
    expect(settled).toEqual(['recorded', 'repeat']);
  });
});

describe('usage across orgs (SQLite)', () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await open();
    await seed(f.store);
  });

  it('keeps every org-bound method to its org: B never sees, spends or counts A\'s', async () => {
    const a = f.store.forOrg(A).usage;
    const b = f.store.forOrg(B).usage;
    const first = event('same-key', 50, '2026-12-02T10:00:00.000Z', { id: 'ru_same' });
    await a.record(first, null);
    await f.store.system.usage.addRequests([{ orgId: A, hourStart: '2026-12-02T10:00:00.000Z', count: 9 }]);
    await a.setQuota({ runUnitsPerMonth: 50, requestsPerMinute: 1, burst: 1, updatedAt: '2026-12-03T00:00:00.000Z' }, SYSTEM_ACTOR);

    expect(await b.month(DEC)).toEqual({ runUnits: 0, requests: 0 });
    expect(await b.series(DEC, JAN, 'hour')).toEqual([]);
    expect(await b.series(DEC, JAN, 'day')).toEqual([]);
    expect(await b.events({ limit: 100 })).toEqual([]);
    expect(await b.events({ after: { occurredAt: '', id: '' }, since: NOV, until: JAN, limit: 100 })).toEqual([]);
    expect(await b.quota()).toBeUndefined();
    // The same idempotency key and the same event id in B: B's own record, not A's repeat; A's
    // quota (50, spent) is not B's.
    const mine = await b.record({ ...first, units: 7 }, null);
    expect(mine).toEqual({ kind: 'recorded', event: { ...first, units: 7, orgId: B } });
    expect(await b.month(DEC)).toEqual({ runUnits: 7, requests: 0 });
    expect(await a.month(DEC)).toEqual({ runUnits: 50, requests: 9 });
    expect((await a.events({ limit: 100 })).map((e) => [e.orgId, e.units])).toEqual([[A, 50]]);
    await b.setQuota({ runUnitsPerMonth: 5, requestsPerMinute: null, burst: null, updatedAt: '2026-12-03T00:00:00.000Z' }, SYSTEM_ACTOR);
    expect((await a.quota())?.runUnitsPerMonth).toBe(50);
    expect((await b.quota())?.runUnitsPerMonth).toBe(5);
  });

  it('addRequests adds batches in one go, dropping entries of orgs that do not exist', async () => {
    await f.store.system.usage.addRequests([
      { orgId: A, hourStart: '2026-12-02T10:00:00.000Z', count: 2 },
      { orgId: 'no-such-org', hourStart: '2026-12-02T10:00:00.000Z', count: 100 },
      { orgId: B, hourStart: '2026-11-30T23:00:00.000Z', count: 3 },
      { orgId: A, hourStart: '2026-12-02T11:00:00.000Z', count: 4 },
      // Dropped too, as on PostgreSQL: nothing to add, or not an hour's key.
      { orgId: A, hourStart: '2026-12-02T12:00:00.000Z', count: 0 },
      { orgId: A, hourStart: '2026-12-02T12:30:00.000Z', count: 50 },
      { orgId: A, hourStart: 'not a time', count: 50 },
    ]);
    await f.store.system.usage.addRequests([]);
    expect(await f.store.forOrg(A).usage.month(DEC)).toEqual({ runUnits: 0, requests: 6 });
    expect(await f.store.forOrg(B).usage.month(NOV)).toEqual({ runUnits: 0, requests: 3 });
    expect(await f.store.forOrg('no-such-org').usage.month(DEC)).toEqual({ runUnits: 0, requests: 0 });
    const orgIds = f.opened.sqlite.prepare('SELECT DISTINCT org_id FROM usage_hours UNION SELECT DISTINCT org_id FROM usage_months ORDER BY 1').pluck().all();
    expect(orgIds).toEqual([A, B]);
  });

  it('ranks orgs by run units in a month, most first, ties by org id, orgs with none absent', async () => {
    await f.store.system.orgs.insert({ id: 'org-c', name: 'C', createdAt: NOV }, SYSTEM_ACTOR);
    await f.store.system.orgs.insert({ id: 'org-d', name: 'D', createdAt: NOV }, SYSTEM_ACTOR);
    await f.store.forOrg('org-c').usage.record(event('t1', 30), null);
    await f.store.forOrg(B).usage.record(event('t2', 30), null);
    await f.store.forOrg(A).usage.record(event('t3', 10), null);
    await f.store.forOrg(A).usage.record(event('t4', 500, '2026-11-10T00:00:00.000Z'), null); // another month
    await f.store.system.usage.addRequests([
      { orgId: 'org-d', hourStart: '2026-12-01T00:00:00.000Z', count: 1000 }, // requests only: not ranked
      { orgId: B, hourStart: '2026-12-01T00:00:00.000Z', count: 2 },
    ]);
    expect(await f.store.system.usage.top(DEC, 10)).toEqual([
      { orgId: B, runUnits: 30, requests: 2 },
      { orgId: 'org-c', runUnits: 30, requests: 0 },
      { orgId: A, runUnits: 10, requests: 0 },
    ]);
    expect((await f.store.system.usage.top(DEC, 2)).map((r) => r.orgId)).toEqual([B, 'org-c']);
    expect(await f.store.system.usage.top(NOV, 10)).toEqual([{ orgId: A, runUnits: 500, requests: 0 }]);
    expect(await f.store.system.usage.top(JAN, 10)).toEqual([]);
  });

  it('creates the tables with org_id leading every key and index', async () => {
    const sqlite = f.opened.sqlite;
    for (const table of ['run_unit_events', 'usage_months', 'usage_hours', 'org_quotas']) {
      const pk = sqlite.prepare('SELECT name FROM pragma_table_info(?) WHERE pk = 1').pluck().all(table);
      expect(pk, `${table}'s primary key`).toContain('org_id');
      for (const index of sqlite.prepare('SELECT name FROM pragma_index_list(?)').pluck().all(table) as string[]) {
        expect(sqlite.prepare('SELECT name FROM pragma_index_info(?) ORDER BY seqno LIMIT 1').pluck().get(index), index).toBe('org_id');
      }
      const fk = sqlite.prepare('SELECT "table", "on_delete" FROM pragma_foreign_key_list(?)').all(table);
      expect(fk, `${table}'s foreign keys`).toEqual([{ table: 'orgs', on_delete: 'CASCADE' }]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Several processes on one data directory (WAL, busy timeout): exactly once, exact sums, no overshoot.

interface ChildResult {
  key: string;
  units: number;
  kind: 'recorded' | 'repeat' | 'no-module' | 'over-quota';
  id?: string;
  used?: number;
  limit?: number;
}

async function runChildren(f: Fixture, env: Record<string, string>, count: number): Promise<ChildResult[][]> {
  const children = Array.from({ length: count }, (_, i) =>
    spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/run-units-child.ts'], {
      cwd: ROOT,
      env: { ...process.env, TG_DATA_DIR: f.dir, TG_MASTER_KEY: f.masterKey, TG_ORG: A, TG_NAME: `c${i}`, TG_INDEX: String(i), ...env },
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
  );
  const lines = children.map((c) => readline.createInterface({ input: c.stdout })[Symbol.asyncIterator]());
  for (const l of lines) expect((await l.next()).value).toBe('ready');
  for (const c of children) c.stdin.write('go\n');
  const results: ChildResult[][] = [];
  for (const l of lines) results.push(JSON.parse((await l.next()).value as string) as ChildResult[]);
  await Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode === null ? c.on('exit', resolve) : resolve(null)))));
  for (const c of children) expect(c.exitCode).toBe(0);
  return results;
}

describe('run units from several processes on one data directory (SQLite)', () => {
  const CHILDREN = 4;
  const DISTINCT = 50;
  const SHARED = 10;

  it('records each shared key once and adds up to exactly the sum of what was recorded', async () => {
    const f = await open();
    await seed(f.store);
    // This process holds the store open too, as a serving gateway would.
    const results = await runChildren(f, { TG_DISTINCT: String(DISTINCT), TG_SHARED: String(SHARED), TG_UNITS: '3', TG_OCCURRED_AT: '2026-12-03T10:00:00.000Z' }, CHILDREN);
    const all = results.flat();
    // Each child sends every shared key twice (first, then again among its own reports).
    expect(all).toHaveLength(CHILDREN * (DISTINCT + 2 * SHARED));
    for (const r of all.filter((r) => !r.key.startsWith('shared-'))) expect(r.kind, r.key).toBe('recorded');

    const events = await f.store.forOrg(A).usage.events({ limit: 10_000 });
    expect(events).toHaveLength(CHILDREN * DISTINCT + SHARED);
    for (let i = 0; i < SHARED; i++) {
      const key = `shared-${i}`;
      const stored = events.filter((e) => e.idempotencyKey === key);
      expect(stored, key).toHaveLength(1);
      const answers = all.filter((r) => r.key === key);
      expect(answers.filter((r) => r.kind === 'recorded'), key).toHaveLength(1);
      expect(answers.filter((r) => r.kind === 'repeat'), key).toHaveLength(2 * CHILDREN - 1);
      // Every answer, first or repeat, names the one stored event.
      for (const r of answers) expect(r.id, key).toBe(stored[0]!.id);
    }
    const recordedUnits = all.filter((r) => r.kind === 'recorded').reduce((sum, r) => sum + r.units, 0);
    expect(recordedUnits).toBe(events.reduce((sum, e) => sum + e.units, 0));
    // Distinct reports: 3 units each; a shared key's units are 3 + the index of the child that won it.
    expect(events.filter((e) => !e.idempotencyKey.startsWith('shared-')).reduce((sum, e) => sum + e.units, 0)).toBe(CHILDREN * DISTINCT * 3);
    expect((await f.store.forOrg(A).usage.month(DEC)).runUnits).toBe(recordedUnits);
    const hours = await f.store.forOrg(A).usage.series(DEC, JAN, 'hour');
    expect(hours).toEqual([{ start: '2026-12-03T10:00:00.000Z', runUnits: recordedUnits, requests: 0 }]);
    expect(await f.store.forOrg(B).usage.month(DEC)).toEqual({ runUnits: 0, requests: 0 });
  });

  it('never passes the quota however the processes interleave; refused and recorded add up to what was sent', async () => {
    const f = await open();
    await seed(f.store);
    const QUOTA = 300;
    // 4 x (50 + 10) reports of 3 units could reach 630 units: the quota stops them at exactly 300.
    const results = await runChildren(f, { TG_DISTINCT: String(DISTINCT), TG_SHARED: String(SHARED), TG_UNITS: '3', TG_QUOTA: String(QUOTA), TG_OCCURRED_AT: '2026-12-03T10:00:00.000Z' }, CHILDREN);
    // Shared keys carry 3 + the child's index: mixed sizes, so the end of the quota is contested by reports that do and do not fit.
    const all = results.flat();
    const recorded = all.filter((r) => r.kind === 'recorded');
    const refused = all.filter((r) => r.kind === 'over-quota');
    const repeats = all.filter((r) => r.kind === 'repeat');
    expect(recorded.length + refused.length + repeats.length).toBe(all.length);
    expect(all).toHaveLength(CHILDREN * (DISTINCT + 2 * SHARED));
    expect(refused.length).toBeGreaterThan(0);

    const month = await f.store.forOrg(A).usage.month(DEC);
    const recordedUnits = recorded.reduce((sum, r) => sum + r.units, 0);
    expect(month.runUnits).toBe(recordedUnits);
    expect(month.runUnits).toBeLessThanOrEqual(QUOTA);
    // Every refusal was right when it was made: what it saw used plus its units passed the limit,
    // and what it saw was never more than what ended up recorded.
    for (const r of refused) {
      expect(r.limit).toBe(QUOTA);
      expect(r.used! + r.units).toBeGreaterThan(QUOTA);
      expect(r.used!).toBeLessThanOrEqual(month.runUnits);
    }
    // The quota was filled as far as the smallest report (3 units) allows.
    expect(month.runUnits).toBeGreaterThan(QUOTA - 3);
    const events = await f.store.forOrg(A).usage.events({ limit: 10_000 });
    expect(events).toHaveLength(recorded.length);
    expect(new Set(events.map((e) => e.idempotencyKey)).size).toBe(events.length);
    // A repeat answers a key that was recorded.
    const keys = new Set(events.map((e) => e.idempotencyKey));
    for (const r of repeats) expect(keys.has(r.key), r.key).toBe(true);
  });
});
