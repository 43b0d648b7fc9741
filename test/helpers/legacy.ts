import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { prng } from './prng.ts';

/**
 * Pre-tenant (v0) database files for the migration tests, built from the project's own
 * description of that schema (test/fixtures/legacy-v0.sql), so a clone needs nothing beside it.
 */

export const LEGACY_FIXTURE = fileURLToPath(new URL('../fixtures/legacy-v0.sql', import.meta.url));

/** Every secret value written by `generateLegacy` contains this, so a scan of the file bytes finds leftovers. */
export const SECRET_MARKER = 'PLAINTEXT-SECRET-';

/** The secret values in the fixture's own rows. */
export const FIXTURE_SECRETS = ['ghp_legacyPlaintextToken0001', 'xoxb-legacy-0002', 's3cr3t'] as const;

export const MODULE_COLUMNS = [
  'module_id',
  'name',
  'version',
  'description',
  'config',
  'enabled',
  'health_status',
  'health_message',
  'last_health_check',
  'usage_count',
  'last_used_at',
  'installed_at',
  'updated_at',
] as const;

export const CREDENTIAL_COLUMNS = ['module_id', 'data', 'created_at', 'updated_at'] as const;

/**
 * A legacy file holding exactly the fixture (schema and its few rows). The file keeps SQLite's
 * default rollback journal, as the single-tenant registry left it: one file, easy to copy.
 */
export function createLegacyFromFixture(file: string): void {
  const db = new Database(file);
  try {
    db.exec(fs.readFileSync(LEGACY_FIXTURE, 'utf8'));
  } finally {
    db.close();
  }
}


export interface LegacyOptions {
  /** Generated modules, on top of the fixture's three. */
  modules: number;
  /** Generated credentials (at most one per module), on top of the fixture's two. */
  credentials: number;
  seed: number;
}

export interface LegacySummary {
  modules: number;
  credentials: number;
  /** Generated module ids that break today's id rule ^[a-z0-9][a-z0-9._-]{0,63}$. */
  invalidIds: string[];
}

export const ID_RULE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

const HEALTH = ['unknown', 'healthy', 'degraded', 'unhealthy'] as const;

/** Id shapes found in (or plausible for) pre-tenant registries; most break today's rule. */
const ID_SHAPES: ReadonlyArray<(i: number) => string> = [
  (i) => `mod-${i}`,
  (i) => `svc.${i}_x`,
  (i) => `zürich-${i}`,
  (i) => `café-${i}`, // NFC
  (i) => `cafe\u0301-${i}`, // the same text in NFD: must stay a different id
  (i) => `東京-${i}`,
  (i) => `🚀-rocket-${i}`,
  (i) => `👩‍💻-${i}`, // zero-width joiner sequence
  (i) => `GitHub_${i}`,
  (i) => `my module ${i}`,
  (i) => `.hidden-${i}`,
  (i) => `-dash-${i}`,
  (i) => `o'brien-${i}`,
  (i) => `x"; DROP TABLE modules;--${i}`,
  (i) => `100%_like_${i}`,
  (i) => `${'long'.repeat(20)}-${i}`, // longer than 64 characters
  (i) => `مرحبا-${i}`, // right-to-left
  (i) => `tab\there-${i}`,
  (i) => `ß-${i}`,
];

const NAMES = ['GitHub', 'Slack', 'Zürich Wetter ☀', 'Jira', 'Notion 📝', '東京メトロ', 'Ünïcödé', 'plain', ''];

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)] as T;
}

function isoAt(rand: () => number): string {
  const ms = Date.UTC(2024, 0, 1) + Math.floor(rand() * 2 * 365 * 24 * 3600 * 1000);
  const iso = new Date(ms).toISOString();
  // The registry wrote seconds-only 'Z' timestamps, but files in the field also hold these.
  const r = rand();
  if (r < 0.7) return `${iso.slice(0, 19)}Z`;
  if (r < 0.9) return iso;
  return `${iso.slice(0, 19)}+00:00`;
}

/** A JSON object of roughly `bytes` bytes, nested and with unicode, so it spans overflow pages. */
function longConfig(rand: () => number, bytes: number): string {
  const items: unknown[] = [];
  let size = 0;
  while (size < bytes) {
    const item = { key: `k${items.length}`, value: `wert-${Math.floor(rand() * 1e9)}-ü€😀`, nested: [rand() < 0.5, null, items.length] };
    size += JSON.stringify(item).length + 1;
    items.push(item);
  }
  return JSON.stringify({ endpoint: 'https://example.test/ä', items });
}

function secretData(rand: () => number, i: number): string {
  const token = () => `${SECRET_MARKER}${i}-${Math.floor(rand() * 1e12).toString(36)}`;
  const r = rand();
  if (r < 0.03) return '{}'; // no fields, nothing secret
  if (r < 0.05) return JSON.stringify(`${token()} a bare JSON string`);
  if (r < 0.06) return `not json at all ${token()}`;
  if (r < 0.07) return JSON.stringify([token(), token()]);
  if (r < 0.09) return JSON.stringify({ token: `${token()}${'x'.repeat(6000)}` }); // overflow pages
  if (r < 0.12) return JSON.stringify({ 'schlüssel 🔑': `${token()}-wärme-😀`, api_key: token() });
  const fields: Record<string, string> = {};
  const n = 1 + Math.floor(rand() * 4);
  for (let f = 0; f < n; f++) fields[pick(rand, ['token', 'apiKey', 'clientSecret', 'password', 'signingSecret', 'refresh_token'])] = token();
  // Spacing as some clients wrote it: the sealed text must be these bytes, not a re-serialisation.
  return rand() < 0.2 ? JSON.stringify(fields, null, 2) : JSON.stringify(fields);
}

/**
 * Writes a large legacy file: the fixture's schema and rows, plus `modules` generated modules and
 * `credentials` credentials, deterministically from `seed`, in one transaction. Rows cover unicode
 * and emoji ids, ids that break today's rule, NULL in every nullable column, ~20 KiB JSON configs,
 * all four health statuses, secrets that are not JSON objects and secrets spanning overflow pages.
 */
export function generateLegacy(file: string, options: LegacyOptions): LegacySummary {
  if (options.credentials > options.modules) throw new Error('at most one credential per module');
  const rand = prng(options.seed);
  const db = new Database(file);
  try {
    db.exec(fs.readFileSync(LEGACY_FIXTURE, 'utf8'));
    const insertModule = db.prepare(`INSERT INTO modules (${MODULE_COLUMNS.join(', ')}) VALUES (${MODULE_COLUMNS.map(() => '?').join(', ')})`);
    const insertCredential = db.prepare('INSERT INTO credentials (module_id, data, created_at, updated_at) VALUES (?, ?, ?, ?)');
    const ids: string[] = [];
    const invalidIds: string[] = [];
    db.transaction(() => {
      for (let i = 0; i < options.modules; i++) {
        const shape = ID_SHAPES[i % ID_SHAPES.length] as (i: number) => string;
        const id = shape(i);
        ids.push(id);
        if (!ID_RULE.test(id)) invalidIds.push(id);
        const installed = isoAt(rand);
        const r = rand();
        insertModule.run(
          id,
          pick(rand, NAMES),
          pick(rand, ['1.0.0', '0.1.0-beta.3', '2.3.1+build.7', 'v3']),
          rand() < 0.3 ? null : `description ${i} — ünïcode ${rand() < 0.1 ? '😀'.repeat(50) : ''}`,
          i % 40 === 7 ? longConfig(rand, 20 * 1024) : r < 0.5 ? '{}' : JSON.stringify({ n: i, region: pick(rand, ['eu', 'us', 'zürich']) }),
          rand() < 0.8 ? 1 : 0,
          HEALTH[i % HEALTH.length],
          rand() < 0.5 ? null : pick(rand, ['token expired', 'timeout after 30s', 'Zeitüberschreitung ⏱', '']),
          rand() < 0.4 ? null : isoAt(rand),
          i % 997 === 0 ? Number.MAX_SAFE_INTEGER : Math.floor(rand() * 100_000),
          rand() < 0.4 ? null : isoAt(rand),
          installed,
          rand() < 0.5 ? installed : isoAt(rand),
        );
      }
      // Credentials on an evenly spread, seeded choice of modules.
      const chosen = ids.map((id, index) => ({ id, order: rand(), index })).sort((a, b) => a.order - b.order).slice(0, options.credentials);
      for (const { id, index } of chosen) {
        const at = isoAt(rand);
        insertCredential.run(id, secretData(rand, index), at, rand() < 0.5 ? at : isoAt(rand));
      }
    })();
    return { modules: options.modules + 3, credentials: options.credentials + 2, invalidIds };
  } finally {
    db.close();
  }
}

/** `typeof:hex` of a column: exact for NULL, INTEGER, TEXT (its bytes) and BLOB. */
export function exact(column: string): string {
  return `typeof("${column}") || ':' || hex("${column}")`;
}

export interface ExactRow {
  moduleId: string;
  /** Every listed column as `typeof:hex`, in order. */
  cells: string[];
}

/** Rows of `table` with the given columns as exact text, in binary module_id order. */
export function exactRows(db: Database.Database, table: string, columnNames: readonly string[], where = ''): ExactRow[] {
  const select = columnNames.map((c, i) => `${exact(c)} AS c${i}`).join(', ');
  const rows = db
    .prepare(`SELECT module_id AS moduleId, ${select} FROM "${table}" ${where} ORDER BY module_id`)
    .raw()
    .all() as unknown[][];
  return rows.map((row) => ({ moduleId: row[0] as string, cells: row.slice(1) as string[] }));
}

/** The differences between two row lists, at most `limit` of them, as readable lines (empty when equal). */
export function rowDifferences(actual: ExactRow[], expected: ExactRow[], columnNames: readonly string[], limit = 5): string[] {
  const out: string[] = [];
  if (actual.length !== expected.length) out.push(`row count: ${actual.length} != expected ${expected.length}`);
  const byId = new Map(actual.map((r) => [r.cells[0], r]));
  for (const want of expected) {
    if (out.length >= limit) break;
    const got = byId.get(want.cells[0]);
    if (!got) {
      out.push(`missing row ${JSON.stringify(want.moduleId)}`);
      continue;
    }
    want.cells.forEach((cell, i) => {
      if (got.cells[i] !== cell) out.push(`${JSON.stringify(want.moduleId)}.${columnNames[i]}: ${got.cells[i]} != expected ${cell}`);
    });
  }
  return out.slice(0, limit);
}
