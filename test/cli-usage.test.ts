import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { csvField, exportRunUnits, parseExportTime } from '../src/maintenance/usage-export.ts';
import { openStore } from '../src/store/open.ts';
import type { NewRunUnitEvent, RunUnitEvent, RunUnitEventQuery, Store } from '../src/store/types.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

// `tenantgate usage export` (issue 14, item 2) on SQLite: the CLI as a process of its own on a
// store written through the store's calls, two orgs with look-alike events.

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const A = 'org-a';
const B = 'org-b';
const MASTER_KEY = randomBytes(32).toString('base64');

async function cli(dataDir: string, ...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, TENANTGATE_DATA_DIR: dataDir, TENANTGATE_MASTER_KEY: MASTER_KEY },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A small RFC 4180 reader (quoted fields, doubled quotes, CRLF rows), to read the export back. */
function readCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field), rows.push(row), (row = []), (field = ''), i++;
    } else field += c;
  }
  if (field !== '' || row.length > 0) throw new Error(`the CSV does not end with CRLF: ${JSON.stringify(text.slice(-40))}`);
  return rows;
}

const FIELDS = ['id', 'idempotencyKey', 'units', 'moduleId', 'occurredAt', 'recordedAt', 'keyId'];
const TRICKY_KEYS = ['plain', 'with,comma', 'with "quotes"', 'line\nbreak', 'crlf\r\nbreak', '=HYPERLINK("http://x")', '+1+1', '-2', '@SUM(A1)', 'ünï ☃'];

let dir: string;
/** A's events in December 2026, in export order. */
let inRange: RunUnitEvent[];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-cli-usage-'));
  const opened = await openStore(loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: MASTER_KEY }), captureLogger());
  const { store } = opened;
  try {
    await store.system.orgs.insert({ id: A, name: 'Org A', createdAt: '2026-11-01T00:00:00.000Z' }, SYSTEM_ACTOR);
    await store.system.orgs.insert({ id: B, name: 'Org B', createdAt: '2026-11-01T00:00:00.000Z' }, SYSTEM_ACTOR);
    const at = '2026-11-01T00:00:00.000Z';
    await store.forOrg(A).modules.insert({ moduleId: '=cmd', name: 'x', version: '1', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at }, SYSTEM_ACTOR);
    const record = async (org: string, e: NewRunUnitEvent) => expect((await store.forOrg(org).usage.record(e, null)).kind).toBe('recorded');
    const ev = (id: string, key: string, occurredAt: string, extra: Partial<NewRunUnitEvent> = {}): NewRunUnitEvent => ({
      id, idempotencyKey: key, units: 3, moduleId: null, occurredAt, recordedAt: '2026-12-03T00:00:00.000Z', keyId: 'key_1', ...extra,
    });
    // The edges of [2026-12-01, 2027-01-01): the first instant in, the last in, the first out.
    await record(A, ev('ru_before', 'before', '2026-11-30T23:59:59.999Z'));
    await record(A, ev('ru_first', 'first', '2026-12-01T00:00:00.000Z', { moduleId: '=cmd', keyId: null }));
    await record(A, ev('ru_last', 'last', '2026-12-31T23:59:59.999Z'));
    await record(A, ev('ru_after', 'after', '2027-01-01T00:00:00.000Z'));
    for (const [i, key] of TRICKY_KEYS.entries()) await record(A, ev(`ru_t${i}`, key, `2026-12-02T0${i}:00:00.000Z`, { units: i + 1 }));
    // More than a page (500) of A's, recorded concurrently (they share syncs), and B's look-alikes.
    await Promise.all(Array.from({ length: 1100 }, (_, i) => record(A, ev(`ru_bulk${String(i).padStart(4, '0')}`, `bulk-${i}`, '2026-12-10T12:00:00.000Z', { units: 1 }))));
    await Promise.all(Array.from({ length: 5 }, (_, i) => record(B, ev(`ru_b${i}`, `bulk-${i}`, '2026-12-10T12:00:00.000Z', { units: 1000 }))));
    inRange = [];
    let after: RunUnitEventQuery['after'];
    for (;;) {
      const page = await store.forOrg(A).usage.events({ after, since: '2026-12-01T00:00:00.000Z', until: '2027-01-01T00:00:00.000Z', limit: 1000 });
      inRange.push(...page);
      if (page.length < 1000) break;
      after = { occurredAt: page.at(-1)!.occurredAt, id: page.at(-1)!.id };
    }
    expect(inRange).toHaveLength(2 + TRICKY_KEYS.length + 1100);
  } finally {
    await store.close();
  }
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const pick = (e: RunUnitEvent) => Object.fromEntries(FIELDS.map((f) => [f, e[f as keyof RunUnitEvent]]));

describe('tenantgate usage export', () => {
  it('writes the org\'s events in [from, to) as NDJSON by default, every field, oldest first, across pages', async () => {
    const r = await cli(dir, 'usage', 'export', '--org', A, '--from', '2026-12-01', '--to', '2027-01-01');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.pop()).toBe('');
    const rows = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toEqual(inRange.map(pick));
    expect(Object.keys(rows[0]!)).toEqual(FIELDS);
    expect(rows[0]).toMatchObject({ id: 'ru_first', moduleId: '=cmd', keyId: null });
    expect(rows.at(-1)).toMatchObject({ id: 'ru_last' });
    // Not B's, though B has the same keys in the same hour; not outside the range.
    expect(r.stdout).not.toMatch(/ru_b\d|ru_before|ru_after/);
  });

  it('takes times with a zone, and the range is half-open', async () => {
    const r = await cli(dir, 'usage', 'export', '--org', A, '--from', '2026-12-31T23:59:59.999Z', '--to', '2027-01-01T01:00:00+01:00');
    expect(r.code, r.stderr).toBe(0);
    // 01:00+01:00 is 00:00Z, the first instant out.
    expect(r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['ru_last']);
    const none = await cli(dir, 'usage', 'export', '--org', A, '--from', '2025-01-01', '--to', '2025-02-01', '--format', 'csv');
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toBe(`${FIELDS.join(',')}\r\n`);
  });

  it('writes CSV with a header, quoting what needs it, and defusing what a spreadsheet would run', async () => {
    const r = await cli(dir, 'usage', 'export', '--org', A, '--from', '2026-12-01', '--to', '2026-12-03', '--format', 'csv');
    expect(r.code, r.stderr).toBe(0);
    const rows = readCsv(r.stdout);
    expect(rows[0]).toEqual(FIELDS);
    const body = rows.slice(1);
    const expected = inRange.filter((e) => e.occurredAt < '2026-12-03');
    expect(body.map((row) => row[0])).toEqual(expected.map((e) => e.id));
    const defuse = (v: string) => (/^[=+\-@]/.test(v) ? `'${v}` : v);
    expect(body.map((row) => row[1])).toEqual(expected.map((e) => defuse(e.idempotencyKey)));
    expect(body.find((row) => row[0] === 'ru_first')).toEqual(['ru_first', 'first', '3', "'=cmd", '2026-12-01T00:00:00.000Z', '2026-12-03T00:00:00.000Z', '']);
    // No field of the file starts a cell with a formula character.
    for (const row of body) for (const cell of row) expect(cell, cell).not.toMatch(/^[=+\-@]/);
    expect(r.stdout).toContain('"with ""quotes"""');
    expect(r.stdout).toContain('"line\nbreak"');
  });

  it('refuses an unknown org, bad times, from not before to and an unknown format: one line, exit code 2, nothing on stdout', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--org', 'no-such-org', '--from', '2026-12-01', '--to', '2027-01-01'], /^tenantgate: Org "no-such-org" was not found$/],
      [['--org', A, '--from', 'yesterday', '--to', '2027-01-01'], /^tenantgate: --from must be an ISO date/],
      [['--org', A, '--from', '2026-12-01', '--to', '2026-02-30'], /^tenantgate: --to must be an ISO date.*"2026-02-30"$/],
      [['--org', A, '--from', '2026-12-01T00:00:00', '--to', '2027-01-01'], /^tenantgate: --from must be .*with its zone/],
      [['--org', A, '--from', '2026-12-01T24:00Z', '--to', '2027-01-01'], /^tenantgate: --from must be/],
      [['--org', A, '--from', '2027-01-01', '--to', '2027-01-01'], /^tenantgate: --from must be before --to/],
      [['--org', A, '--from', '2027-01-02', '--to', '2027-01-01T00:00:00Z'], /^tenantgate: --from must be before --to/],
      [['--org', A, '--from', '2026-12-01', '--to', '2027-01-01', '--format', 'xlsx'], /^tenantgate: --format must be ndjson or csv; got "xlsx"$/],
      [['--org', A, '--from', '2026-12-01'], /^tenantgate: usage: tenantgate usage export --org/],
      [['--from', '2026-12-01', '--to', '2027-01-01'], /^tenantgate: usage: tenantgate usage export --org/],
      [['--org', A, '--from', '2026-12-01', '--to', '2027-01-01', '--name', 'x'], /^tenantgate: usage export does not take --name/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(dir, 'usage', 'export', ...args)));
    for (const [i, [args, message]] of cases.entries()) {
      const r = results[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr.trim(), args.join(' ')).toMatch(message);
    }
  });

  it('is listed in the help', async () => {
    const r = await cli(dir, 'usage', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('usage export --org <id> --from <ISO date|time> --to <ISO date|time> [--format ndjson|csv]');
  });
});

describe('the export, in process', () => {
  it('reads page by page, never more than a page at once, and follows the cursor', async () => {
    const events: RunUnitEvent[] = Array.from({ length: 7 }, (_, i) => ({
      id: `ru_${i}`, orgId: A, idempotencyKey: `k${i}`, units: 1, moduleId: null, occurredAt: `2026-12-0${i + 1}T00:00:00.000Z`, recordedAt: '2026-12-09T00:00:00.000Z', keyId: null,
    }));
    const calls: RunUnitEventQuery[] = [];
    const orgs: string[] = [];
    const store = {
      forOrg: (orgId: string) => {
        orgs.push(orgId);
        return {
          usage: {
            events: async (q: RunUnitEventQuery) => {
              calls.push(q);
              const start = q.after ? events.findIndex((e) => e.id === q.after!.id) + 1 : 0;
              return events.slice(start, start + q.limit);
            },
          },
        };
      },
    } as unknown as Store;
    const out = new PassThrough();
    let text = '';
    out.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const n = await exportRunUnits(store, { orgId: A, from: '2026-12-01T00:00:00.000Z', to: '2027-01-01T00:00:00.000Z', format: 'ndjson', pageSize: 3 }, out);
    expect(n).toBe(7);
    expect(orgs).toEqual([A]);
    expect(calls).toEqual([
      { after: undefined, since: '2026-12-01T00:00:00.000Z', until: '2027-01-01T00:00:00.000Z', limit: 3 },
      { after: { occurredAt: events[2]!.occurredAt, id: 'ru_2' }, since: '2026-12-01T00:00:00.000Z', until: '2027-01-01T00:00:00.000Z', limit: 3 },
      { after: { occurredAt: events[5]!.occurredAt, id: 'ru_5' }, since: '2026-12-01T00:00:00.000Z', until: '2027-01-01T00:00:00.000Z', limit: 3 },
    ]);
    expect(text.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(events.map((e) => e.id));
  });

  it('quotes and defuses CSV fields', () => {
    expect(csvField(null)).toBe('');
    expect(csvField(12)).toBe('12');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('=1+1')).toBe("'=1+1");
    expect(csvField('-1,2')).toBe('"\'-1,2"');
    expect(csvField('@x')).toBe("'@x");
    expect(csvField('+x')).toBe("'+x");
    expect(csvField('\tx')).toBe("'\tx");
    expect(csvField('a=b')).toBe('a=b');
  });

  it('reads dates and times as UTC instants, refusing what names no real day or no zone', () => {
    expect(parseExportTime('2026-12-01')).toBe('2026-12-01T00:00:00.000Z');
    expect(parseExportTime('2026-12-01T10:20Z')).toBe('2026-12-01T10:20:00.000Z');
    expect(parseExportTime('2026-12-01T10:20:30.5-02:00')).toBe('2026-12-01T12:20:30.500Z');
    for (const bad of ['2026-13-01', '2026-02-29', '2026-12-01T10:20', '2026-12-01 10:20Z', '20261201', '2026-12-01T25:00Z', '']) {
      expect(parseExportTime(bad), bad).toBeUndefined();
    }
    expect(parseExportTime('2028-02-29')).toBe('2028-02-29T00:00:00.000Z');
  });
});
