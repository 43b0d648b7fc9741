import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { getTableConfig as getPgTableConfig, type PgColumn, type PgTable } from 'drizzle-orm/pg-core';
import { getTableConfig as getSqliteTableConfig, type SQLiteTable } from 'drizzle-orm/sqlite-core';
import pg from 'pg';
import { ConfigError, loadConfig } from '../config.ts';
import { createLogger, type Logger } from '../logger.ts';
import { migratePostgres } from '../store/postgres/migrate.ts';
import * as pgSchema from '../store/postgres/schema.ts';
import type { SqliteDatabase } from '../store/sqlite/connection.ts';
import * as sqliteSchema from '../store/sqlite/schema.ts';

// `tenantgate copy --to postgres://OWNER@HOST/DB` (issue 13, item 6): the embedded store, copied
// whole into an empty PostgreSQL store in one transaction, verified row by row by the target
// database before it commits. Credentials travel sealed: their bytes are copied as they are, so
// no key material is read or needed here.

/** Bad input or a target we must not write to: one line, exit code 2, nothing written. */
export class CopyRefused extends Error {
  override name = 'CopyRefused';
}

/** The copy ran and was rolled back (verification found a difference, or the target failed): exit code 1. */
export class CopyFailed extends Error {
  override name = 'CopyFailed';
}

export interface CopyProgress {
  table: string;
  copied: number;
  total: number;
}

export interface CopyOptions {
  /** The opened SQLite store's raw connection (OpenedStore.sqlite), migrated already. It is only read. */
  source: SqliteDatabase;
  /** The owning role's URL of the target (the migration URL). */
  targetUrl: string;
  logger: Logger;
  /** Called after each batch, inside the copy (the source snapshot and the target transaction are open). */
  onProgress?: (progress: CopyProgress) => void | Promise<void>;
  /** Rows per INSERT statement (default 5000). */
  batchSize?: number;
}

export interface TableResult {
  table: string;
  rows: number;
  /** sha256 over the sorted row hashes, equal on both sides. */
  checksum: string;
}

export interface CopyResult {
  /** Where the rows went, without the URL's password. */
  target: string;
  tables: TableResult[];
  /** Migrations applied to the target before the copy. */
  migrated: string[];
  ms: number;
}

// ---------------------------------------------------------------------------------------------
// The target URL, and keeping its password out of everything we say

/** The URL as safe to print: the password, if any, replaced by ***. */
export function describeTarget(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparseable URL)';
  }
}

/** `text` with the URL's password (as written and decoded) and any other URL password removed. */
function scrub(text: string, url: string): string {
  let out = text;
  try {
    const u = new URL(url);
    for (const secret of new Set([u.password, decodeURIComponent(u.password)])) {
      if (secret) out = out.split(secret).join('***');
    }
  } catch {
    // Unparseable: only the generic pattern below applies.
  }
  return out.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@]*@/gi, '$1***@');
}

/** Checks the --to URL without connecting; the messages never repeat the value. */
export function checkTargetUrl(url: string): void {
  const usage = 'postgres://OWNER[:PASSWORD]@HOST[:PORT]/DATABASE';
  if (!/^postgres(ql)?:\/\//i.test(url)) throw new CopyRefused(`--to must be a postgres:// URL of the target's owning role (${usage})`);
  if (!URL.canParse(url)) throw new CopyRefused(`--to is not a valid URL (a password with @, :, / or % must be percent-encoded): ${usage}`);
  const u = new URL(url);
  if (!u.username) throw new CopyRefused(`--to names no role: ${usage} (the role that owns, or will own, the tables)`);
  if (!u.hostname) throw new CopyRefused(`--to names no host: ${usage}`);
  if (u.pathname.length <= 1) throw new CopyRefused(`--to names no database: ${usage}`);
}

/** A connection error as one line naming host and database, never the password. */
function connectFailure(error: unknown, url: string): CopyRefused {
  const e = error as NodeJS.ErrnoException & { code?: string };
  const why = e.code && /^E[A-Z]+$/.test(e.code) ? e.code : (e.message ?? String(error));
  return new CopyRefused(scrub(`cannot connect to ${describeTarget(url)}: ${why}`, url));
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000, application_name: 'tenantgate copy' });
  client.on('error', () => {}); // a lost connection fails the query in progress, which reports it
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw connectFailure(error, url);
  }
  return client;
}

// ---------------------------------------------------------------------------------------------
// The tables: their columns and keys come from the PostgreSQL schema, so a column added there is
// copied and checked without a change here (and an unknown column type stops the copy).

type Kind = 'text' | 'integer' | 'bigint' | 'boolean' | 'bytea' | 'jsonb';
const KINDS: readonly string[] = ['text', 'integer', 'bigint', 'boolean', 'bytea', 'jsonb'];

interface Column {
  name: string;
  kind: Kind;
}

interface TableSpec {
  name: string;
  columns: Column[];
  /** Indexes into `columns` of the primary key. */
  key: number[];
}

const PAIRS: Array<[PgTable, SQLiteTable]> = [
  // Parents first: api keys, modules, the metering tables and org keys reference orgs, credentials reference modules.
  [pgSchema.orgs, sqliteSchema.orgs],
  [pgSchema.apiKeys, sqliteSchema.apiKeys],
  [pgSchema.modules, sqliteSchema.modules],
  [pgSchema.credentials, sqliteSchema.credentials],
  [pgSchema.runUnitEvents, sqliteSchema.runUnitEvents],
  [pgSchema.usageMonths, sqliteSchema.usageMonths],
  [pgSchema.usageHours, sqliteSchema.usageHours],
  [pgSchema.orgQuotas, sqliteSchema.orgQuotas],
  // Each org's data key (issue 15): without it the org's credentials could not be opened.
  [pgSchema.orgKeys, sqliteSchema.orgKeys],
  // Each org's audit log and its chain's head (issue 15): copied byte for byte, so the chain still verifies.
  [pgSchema.auditLog, sqliteSchema.auditLog],
  [pgSchema.auditHeads, sqliteSchema.auditHeads],
];

function tableSpecs(): TableSpec[] {
  return PAIRS.map(([pgTable, sqliteTable]) => {
    const config = getPgTableConfig(pgTable);
    const columns = config.columns.map((c: PgColumn): Column => {
      const type = c.getSQLType();
      if (!KINDS.includes(type)) throw new Error(`copy: ${config.name}.${c.name} is ${type}, which copy does not know how to check`);
      return { name: c.name, kind: type as Kind };
    });
    const sqliteColumns = getSqliteTableConfig(sqliteTable).columns.map((c) => c.name).sort();
    if (JSON.stringify(sqliteColumns) !== JSON.stringify(columns.map((c) => c.name).sort())) {
      throw new Error(`copy: the SQLite and PostgreSQL schemas of ${config.name} have different columns`);
    }
    const keyNames = config.primaryKeys[0]?.columns.map((c) => c.name) ?? config.columns.filter((c) => c.primary).map((c) => c.name);
    return { name: config.name, columns, key: keyNames.map((n) => columns.findIndex((c) => c.name === n)) };
  });
}

const q = (name: string) => `"${name.replace(/"/g, '""')}"`;

// ---------------------------------------------------------------------------------------------
// The canonical serialisation of a row. Each value becomes a token; a row is its tokens joined by
// '|', hashed with SHA-256; a table's checksum is SHA-256 over its row hashes in byte order (so
// no collation is involved). The source side is computed here from the SQLite values; the target
// side by PostgreSQL from the rows it stored (targetToken below), never from what was sent.
//
//   NULL     N
//   text     T<octets>:<text>
//   integer  I<decimal>
//   boolean  B1 | B0
//   bytea    X<lowercase hex>
//   jsonb    J<octets>:<jsonb's own text form>

/** jsonb's text output for a parsed JSON value: ", " and ": " separators, object keys by length then bytes, the last duplicate kept. */
export function jsonbText(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value); // escapes as PostgreSQL's escape_json does
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(', ')}]`;
  const keys = Object.keys(value as object).sort((a, b) => {
    const la = Buffer.byteLength(a);
    const lb = Buffer.byteLength(b);
    return la !== lb ? la - lb : Buffer.compare(Buffer.from(a), Buffer.from(b));
  });
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${jsonbText((value as Record<string, unknown>)[k])}`).join(', ')}}`;
}

function targetToken(c: Column): string {
  const col = q(c.name);
  switch (c.kind) {
    case 'text':
      return `'T' || octet_length(${col}) || ':' || ${col}`;
    case 'integer':
    case 'bigint':
      return `'I' || ${col}::text`;
    case 'boolean':
      return `CASE WHEN ${col} THEN 'B1' WHEN NOT ${col} THEN 'B0' END`;
    case 'bytea':
      return `'X' || encode(${col}, 'hex')`;
    case 'jsonb':
      return `'J' || octet_length(${col}::text) || ':' || ${col}::text`;
  }
}

/** The SQL of one row's hash, computed by the target from what it stored. */
function targetRowHash(spec: TableSpec): string {
  const tokens = spec.columns.map((c) => `coalesce(${targetToken(c)}, 'N')`).join(`, '|', `);
  return `sha256(convert_to(concat(${tokens}), 'UTF8'))`;
}

const INT4 = 2 ** 31;

/** String.prototype.isWellFormed (Node 20; not in the ES2023 lib this project compiles against). */
const wellFormed = (text: string) => (text as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * A SQLite value as it will be sent (`param`, JSON-able: bytes as hex) and its token. Values PostgreSQL cannot hold as they
 * are (a blob in a text column, an integer past int4, a NUL in text, JSON that does not parse)
 * stop the copy here with the table, row and column named (never a text or byte value).
 */
function prepareValue(value: unknown, c: Column, where: () => string): { param: unknown; token: string } {
  if (value === null || value === undefined) return { param: null, token: 'N' };
  const bad = (why: string) => new CopyRefused(`the source cannot be copied: ${where()} column ${c.name} ${why}`);
  switch (c.kind) {
    case 'text': {
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'bigint') throw bad('holds a blob where text is expected');
      const text = String(value);
      if (text.includes('\u0000')) throw bad('holds a NUL character, which PostgreSQL text cannot store');
      if (!wellFormed(text)) throw bad('holds text that is not valid Unicode (a lone surrogate)');
      return { param: text, token: `T${Buffer.byteLength(text)}:${text}` };
    }
    case 'integer': {
      const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw bad('holds something other than an integer');
      if (n < -INT4 || n >= INT4) throw bad(`holds ${n}, past the range of a PostgreSQL integer`);
      return { param: n, token: `I${n}` };
    }
    case 'bigint': {
      // 64 bits in both; the store reads it as a JavaScript number, so copy carries what is exact there.
      const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : typeof value === 'bigint' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw bad('holds something other than an integer');
      if (!Number.isSafeInteger(n)) throw bad(`holds ${n}, past 2^53, which the store cannot read exactly`);
      return { param: n, token: `I${n}` };
    }
    case 'boolean': {
      if (value !== 0 && value !== 1) throw bad('holds something other than 0 or 1 where a boolean is expected');
      return { param: value === 1, token: value === 1 ? 'B1' : 'B0' };
    }
    case 'bytea': {
      if (!Buffer.isBuffer(value)) throw bad('holds text where bytes are expected');
      const hex = value.toString('hex');
      return { param: hex, token: `X${hex}` };
    }
    case 'jsonb': {
      if (typeof value !== 'string') throw bad('holds something other than JSON text');
      let parsed: unknown;
      try {
        parsed = JSON.parse(value);
      } catch {
        throw bad('holds text that is not JSON');
      }
      if (value.includes('\\u0000') || value.includes('\u0000')) throw bad('holds a NUL, which jsonb cannot store');
      if (!wellFormed(value)) throw bad('holds text that is not valid Unicode (a lone surrogate)');
      const text = jsonbText(parsed);
      return { param: value, token: `J${Buffer.byteLength(text)}:${text}` };
    }
  }
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest();

function tableChecksum(rowHashes: Buffer[]): string {
  const sorted = [...rowHashes].sort(Buffer.compare);
  return sha256(Buffer.concat(sorted)).toString('hex');
}

/** A row's key, for messages and to match rows: its key columns as a JSON array (ids only, never values). */
const keyOf = (spec: TableSpec, row: readonly unknown[]) => JSON.stringify(spec.key.map((i) => row[i]));

function describeKey(spec: TableSpec, key: string): string {
  const values = JSON.parse(key) as unknown[];
  return `${spec.name} row ${spec.key.map((i, n) => `${spec.columns[i]!.name}=${JSON.stringify(values[n])}`).join(', ')}`;
}

// ---------------------------------------------------------------------------------------------
// The target: empty, owned, and its wall

/** What the target holds beyond a fresh migration (org `default`), in words; undefined when empty. */
async function nonEmpty(client: pg.Client): Promise<string | undefined> {
  const { rows } = await client.query<{ orgs: number; api_keys: number; modules: number; credentials: number; events: number; usage: number; quotas: number }>(
    `SELECT (SELECT count(*)::int FROM public.orgs WHERE id <> 'default') AS orgs,
            (SELECT count(*)::int FROM public.api_keys) AS api_keys,
            (SELECT count(*)::int FROM public.modules) AS modules,
            (SELECT count(*)::int FROM public.credentials) AS credentials,
            (SELECT count(*)::int FROM public.run_unit_events) AS events,
            (SELECT count(*)::int FROM public.usage_months) + (SELECT count(*)::int FROM public.usage_hours) AS usage,
            (SELECT count(*)::int FROM public.org_quotas) AS quotas`,
  );
  const r = rows[0]!;
  const held = [
    r.orgs > 0 ? `${r.orgs} org(s) besides "default"` : '',
    r.api_keys > 0 ? `${r.api_keys} API key(s)` : '',
    r.modules > 0 ? `${r.modules} module(s)` : '',
    r.credentials > 0 ? `${r.credentials} credential(s)` : '',
    r.events > 0 ? `${r.events} run-unit event(s)` : '',
    r.usage > 0 ? `${r.usage} usage total(s)` : '',
    r.quotas > 0 ? `${r.quotas} quota row(s)` : '',
  ].filter(Boolean);
  return held.length > 0 ? held.join(', ') : undefined;
}

const WALLED = pgSchema.WALLED_TABLES.map((t) => `public.${q(t)}`).join(', ');

/**
 * Inside the target transaction: the tables locked against everyone else and their wall lifted
 * for this transaction only. FORCE holds the owner to the org policies, under which it can see
 * no row nor insert an org; NO FORCE is transactional, so a rollback restores it and the commit
 * path forces it again first (checked in the catalog before COMMIT).
 */
async function liftWall(client: pg.Client, url: string): Promise<void> {
  try {
    await client.query(`LOCK TABLE ${WALLED} IN ACCESS EXCLUSIVE MODE NOWAIT`);
    for (const t of pgSchema.WALLED_TABLES) await client.query(`ALTER TABLE public.${q(t)} NO FORCE ROW LEVEL SECURITY`);
  } catch (error) {
    const e = error as { code?: string; message?: string };
    if (e.code === '42501') {
      throw new CopyRefused(
        `${describeTarget(url)} connects as a role that does not own the tables: --to must be the owning role's URL (the migration URL)`,
      );
    }
    if (e.code === '55P03') throw new CopyRefused(`the target is in use (its tables are locked by another session): stop what uses ${describeTarget(url)} first`);
    throw error;
  }
}

async function restoreWall(client: pg.Client): Promise<void> {
  for (const t of pgSchema.WALLED_TABLES) await client.query(`ALTER TABLE public.${q(t)} FORCE ROW LEVEL SECURITY`);
  const { rows } = await client.query<{ relname: string }>(
    `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname = ANY($1)
        AND relrowsecurity AND relforcerowsecurity`,
    [[...pgSchema.WALLED_TABLES]],
  );
  if (rows.length !== pgSchema.WALLED_TABLES.length) throw new CopyFailed('row-level security is not forced on every table after the copy');
}

/**
 * Before migrating: a target that exists and holds rows is refused without writing anything (the
 * look is taken in a transaction rolled back after, the wall lifted only for it).
 */
async function refuseNonEmpty(url: string): Promise<void> {
  const client = await connect(url);
  try {
    const encoding = (await client.query<{ server_encoding: string }>('SHOW server_encoding')).rows[0]!.server_encoding;
    if (encoding !== 'UTF8') {
      throw new CopyRefused(`the target database's encoding is ${encoding}: create it with ENCODING 'UTF8' (the store holds any Unicode text)`);
    }
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relname = ANY($1)`,
      [[...pgSchema.WALLED_TABLES]],
    );
    if (rows[0]!.n === 0) return; // a fresh database: the migration creates the tables
    await client.query('BEGIN');
    try {
      await liftWall(client, url);
      const held = await nonEmpty(client);
      if (held) throw new CopyRefused(`the target is not empty: it holds ${held}; copy only into a new, empty database`);
    } finally {
      await client.query('ROLLBACK').catch(() => {});
    }
  } finally {
    await client.end().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------

interface SourceTable {
  spec: TableSpec;
  total: number;
  checksum: string;
}

/**
 * Copies the SQLite store `source` into the PostgreSQL database at `targetUrl` (the owning role's
 * URL): migrates the target, then in one transaction refuses a target that holds data, copies
 * every row of every table in batches, verifies counts and a checksum of every row computed by
 * the target, and commits only when all match. The source is read in one read transaction, a
 * consistent snapshot even while a gateway writes to it, and is never written.
 */
export async function copyToPostgres(options: CopyOptions): Promise<CopyResult> {
  const started = performance.now();
  const { source, targetUrl, logger } = options;
  const batchSize = options.batchSize ?? 5000;
  checkTargetUrl(targetUrl);
  const target = describeTarget(targetUrl);
  const specs = tableSpecs();

  await refuseNonEmpty(targetUrl);
  let migrated: string[];
  try {
    migrated = (await migratePostgres({ ownerUrl: targetUrl })).applied;
  } catch (error) {
    if (error instanceof CopyRefused) throw error;
    const e = error as { code?: string; message?: string };
    if (e.code === '42501') {
      throw new CopyRefused(scrub(`cannot migrate ${target}: ${e.message} (--to must be the owning role's URL, allowed to create in schema public)`, targetUrl));
    }
    throw new CopyFailed(scrub(`migrating ${target} failed: ${e.message ?? String(error)}`, targetUrl));
  }
  if (migrated.length > 0) logger.info('copy: target migrated', { target, applied: migrated });

  if (source.inTransaction) throw new Error('copy: the source connection is already in a transaction');
  const client = await connect(targetUrl);
  let committed = false;
  try {
    await client.query('BEGIN');
    // The source snapshot starts at its first read, inside this transaction.
    source.prepare('BEGIN').run();
    try {
      await liftWall(client, targetUrl);
      const held = await nonEmpty(client);
      if (held) throw new CopyRefused(`the target is not empty: it holds ${held}; copy only into a new, empty database`);
      // The migration's org `default` is replaced by the source's own row (its name and creation time).
      await client.query(`DELETE FROM public.orgs WHERE id = 'default'`);

      const copied: SourceTable[] = [];
      for (const spec of specs) copied.push(await copyTable(client, source, spec, batchSize, logger, options.onProgress));

      const tables: TableResult[] = [];
      const problems: string[] = [];
      for (const table of copied) {
        const { rows } = await client.query<{ n: number; checksum: string }>(
          `SELECT count(*)::int AS n,
                  encode(sha256(coalesce(string_agg(h, ''::bytea ORDER BY h), ''::bytea)), 'hex') AS checksum
             FROM (SELECT ${targetRowHash(table.spec)} AS h FROM public.${q(table.spec.name)}) AS r`,
        );
        const got = rows[0]!;
        if (got.n === table.total && got.checksum === table.checksum) {
          tables.push({ table: table.spec.name, rows: got.n, checksum: got.checksum });
          continue;
        }
        problems.push(await explainDifference(client, source, table, got.n));
      }
      if (problems.length > 0) throw new CopyFailed(`verification failed, nothing was copied (rolled back): ${problems.join('; ')}`);

      // Fresh statistics, so the gateways' first plans on the copy are not made blind.
      await client.query(`ANALYZE ${WALLED}`);
      await restoreWall(client);
      await client.query('COMMIT');
      committed = true;
      const ms = Math.round(performance.now() - started);
      logger.info('copy: committed', { target, ms, ...Object.fromEntries(tables.map((t) => [t.table, t.rows])) });
      return { target, tables, migrated, ms };
    } finally {
      source.prepare('COMMIT').run();
    }
  } catch (error) {
    if (!committed) await client.query('ROLLBACK').catch(() => {});
    if (error instanceof CopyRefused || error instanceof CopyFailed) throw error;
    const e = error as { message?: string };
    throw new CopyFailed(scrub(`copy failed, nothing was copied (rolled back): ${e.message ?? String(error)}`, targetUrl));
  } finally {
    await client.end().catch(() => {});
  }
}

/** The SQLite rows of a table in rowid batches, from the open read transaction. */
function* sourceBatches(source: SqliteDatabase, spec: TableSpec, batchSize: number): Generator<unknown[][]> {
  const read = source
    .prepare(`SELECT rowid, ${spec.columns.map((c) => q(c.name)).join(', ')} FROM ${q(spec.name)} WHERE rowid > ? ORDER BY rowid LIMIT ?`)
    .raw();
  let after = -Infinity;
  for (;;) {
    const rows = read.all(after, batchSize) as unknown[][];
    if (rows.length === 0) return;
    after = rows[rows.length - 1]![0] as number;
    yield rows.map((r) => r.slice(1));
  }
}

/** A source row's hash and, when `params` is given, its values as sent (one JSON array per row). */
function hashRow(spec: TableSpec, row: readonly unknown[], params?: unknown[][]): Buffer {
  const tokens: string[] = new Array(spec.columns.length);
  const sent: unknown[] = new Array(spec.columns.length);
  for (let i = 0; i < spec.columns.length; i++) {
    const { param, token } = prepareValue(row[i], spec.columns[i]!, () => describeKey(spec, keyOf(spec, row)));
    tokens[i] = token;
    sent[i] = param;
  }
  params?.push(sent);
  return sha256(tokens.join('|'));
}

/** The SQL reading one sent value back from the batch's JSON: bytes travel as hex, the rest as JSON scalars or text. */
function fromBatch(c: Column, i: number): string {
  switch (c.kind) {
    case 'text':
      return `r->>${i}`;
    case 'integer':
      return `(r->>${i})::integer`;
    case 'bigint':
      return `(r->>${i})::bigint`;
    case 'boolean':
      return `(r->>${i})::boolean`;
    case 'bytea':
      return `decode(r->>${i}, 'hex')`;
    case 'jsonb':
      return `(r->>${i})::jsonb`;
  }
}

/**
 * One table: read in rowid batches from the source snapshot, hashed, and inserted with one
 * statement per batch whose one parameter is the batch as JSON (JSON.stringify and PostgreSQL's
 * jsonb parser are both native: several times faster than node-postgres' array literals).
 */
async function copyTable(
  client: pg.Client,
  source: SqliteDatabase,
  spec: TableSpec,
  batchSize: number,
  logger: Logger,
  onProgress: CopyOptions['onProgress'],
): Promise<SourceTable> {
  const total = (source.prepare(`SELECT count(*) FROM ${q(spec.name)}`).pluck().get() as number) ?? 0;
  const insert =
    `INSERT INTO public.${q(spec.name)} (${spec.columns.map((c) => q(c.name)).join(', ')}) ` +
    `SELECT ${spec.columns.map(fromBatch).join(', ')} FROM jsonb_array_elements($1::jsonb) AS r`;
  const rowHashes: Buffer[] = [];
  let copied = 0;
  // One batch in flight while the next is read and hashed: PostgreSQL and this process each keep a core busy.
  let inFlight: { done: Promise<unknown>; rows: number } | undefined;
  const landed = async () => {
    if (!inFlight) return;
    await inFlight.done;
    copied += inFlight.rows;
    inFlight = undefined;
    logger.info('copy: rows copied', { table: spec.name, copied, of: total });
    await onProgress?.({ table: spec.name, copied, total });
  };
  for (const rows of sourceBatches(source, spec, batchSize)) {
    const params: unknown[][] = [];
    for (const row of rows) rowHashes.push(hashRow(spec, row, params));
    const body = JSON.stringify(params);
    await landed();
    const done = client.query(insert, [body]);
    done.catch(() => {}); // its failure is taken when it is awaited, by landed()
    inFlight = { done, rows: rows.length };
  }
  await landed();
  return { spec, total: copied, checksum: tableChecksum(rowHashes) };
}

/**
 * Which rows of a table differ, in one line: counts, then up to three rows by key with the
 * columns that differ (names only, never values). Computed only when the checksums disagree.
 */
async function explainDifference(client: pg.Client, source: SqliteDatabase, table: SourceTable, targetCount: number): Promise<string> {
  const { spec } = table;
  const keyCols = spec.key.map((i) => q(spec.columns[i]!.name));
  const { rows } = await client.query<{ k: unknown[]; h: string }>(
    `SELECT json_build_array(${keyCols.join(', ')}) AS k, encode(${targetRowHash(spec)}, 'hex') AS h FROM public.${q(spec.name)}`,
  );
  const targetHashes = new Map(rows.map((r) => [JSON.stringify(r.k), r.h]));
  // The source's row hashes again, from the same snapshot (kept only now that they are needed).
  const sourceHashes = new Map<string, string>();
  for (const batch of sourceBatches(source, spec, 5000)) {
    for (const row of batch) sourceHashes.set(keyOf(spec, row), hashRow(spec, row).toString('hex'));
  }
  const missing = [...sourceHashes.keys()].filter((k) => !targetHashes.has(k));
  const extra = [...targetHashes.keys()].filter((k) => !sourceHashes.has(k));
  const changed = [...sourceHashes].filter(([k, h]) => targetHashes.has(k) && targetHashes.get(k) !== h).map(([k]) => k);

  const parts = [`${spec.name}: ${table.total} row(s) read, ${targetCount} stored`];
  if (missing.length > 0) parts.push(`${missing.length} missing (first: ${describeKey(spec, missing[0]!)})`);
  if (extra.length > 0) parts.push(`${extra.length} not in the source (first: ${describeKey(spec, extra[0]!)})`);
  if (changed.length > 0) {
    const details: string[] = [];
    for (const key of changed.slice(0, 3)) details.push(`${describeKey(spec, key)} differs in ${(await differingColumns(client, source, spec, key)).join(', ')}`);
    parts.push(`${changed.length} stored differently (${details.join('; ')})`);
  }
  return parts.join(', ');
}

async function differingColumns(client: pg.Client, source: SqliteDatabase, spec: TableSpec, key: string): Promise<string[]> {
  const values = JSON.parse(key) as unknown[];
  const where = spec.key.map((i, n) => `${q(spec.columns[i]!.name)} = $${n + 1}`).join(' AND ');
  const stored = await client.query<Record<string, string | null>>(
    `SELECT ${spec.columns.map((c, i) => `encode(sha256(convert_to(coalesce(${targetToken(c)}, 'N'), 'UTF8')), 'hex') AS t${i}`).join(', ')}
       FROM public.${q(spec.name)} WHERE ${where}`,
    values,
  );
  const sqliteWhere = spec.key.map((i) => `${q(spec.columns[i]!.name)} = ?`).join(' AND ');
  const row = source
    .prepare(`SELECT ${spec.columns.map((c) => q(c.name)).join(', ')} FROM ${q(spec.name)} WHERE ${sqliteWhere}`)
    .raw()
    .get(...values) as unknown[] | undefined;
  const got = stored.rows[0];
  if (!got || !row) return ['(row not found on one side)'];
  return spec.columns
    .filter((c, i) => sha256(prepareValue(row[i], c, () => key).token).toString('hex') !== got[`t${i}`])
    .map((c) => c.name);
}

// ---------------------------------------------------------------------------------------------
// The command

export const COPY_USAGE = 'usage: tenantgate copy --to postgres://OWNER[:PASSWORD]@HOST[:PORT]/DATABASE';

export interface CopyIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/**
 * `tenantgate copy --to <url>`: the configured SQLite store (TENANTGATE_DATA_DIR /
 * TENANTGATE_DATABASE, a pre-tenant file adopted first) into the PostgreSQL database at <url>.
 * Returns the exit code: 0 copied, 2 bad input or a target refused (nothing written), 1 the copy
 * ran and was rolled back. Progress goes to stderr as log lines, the result to stdout.
 */
export async function runCopy(argv: string[], env: NodeJS.ProcessEnv = process.env, io: CopyIo = process): Promise<number> {
  const say = (text: string) => io.stderr.write(`tenantgate: ${text}\n`);
  let to: string | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { to: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help) {
      io.stdout.write(`${COPY_USAGE}\n`);
      return 0;
    }
    const rest = positionals[0] === 'copy' ? positionals.slice(1) : positionals;
    if (rest.length > 0) {
      say(`unexpected argument "${rest[0]}"; ${COPY_USAGE}`);
      return 2;
    }
    to = values.to;
  } catch (error) {
    // Node's message quotes the option, never a value; a --to value is not repeated either way.
    say(`${(error as Error).message.split('. ')[0]!.replace(/['"]/g, '')}; ${COPY_USAGE}`);
    return 2;
  }
  if (!to) {
    say(`copy needs --to, the target's owning role URL; ${COPY_USAGE}`);
    return 2;
  }
  try {
    checkTargetUrl(to);
    if (env.TENANTGATE_DATABASE !== undefined && /^postgres(ql)?:\/\//i.test(env.TENANTGATE_DATABASE)) {
      throw new CopyRefused('TENANTGATE_DATABASE is a PostgreSQL URL: copy reads the embedded SQLite store (TENANTGATE_DATA_DIR or a TENANTGATE_DATABASE file)');
    }
    const config = loadConfig(env);
    const logger = createLogger(config.logLevel, (line) => io.stderr.write(`${line}\n`));
    const { openStore } = await import('../store/open.ts');
    const opened = await openStore(config, logger);
    try {
      const result = await copyToPostgres({ source: opened.sqlite, targetUrl: to, logger });
      io.stdout.write(
        `copied into ${result.target} in ${result.ms} ms, verified row by row: ` +
          `${result.tables.map((t) => `${t.table} ${t.rows}`).join(', ')}\n` +
          'credentials are sealed under the same master key: give the gateways on PostgreSQL this store\'s key (TENANTGATE_MASTER_KEY)\n',
      );
      return 0;
    } finally {
      await opened.store.close();
    }
  } catch (error) {
    if (error instanceof CopyRefused || error instanceof ConfigError) {
      say(scrub(error.message, to));
      return 2;
    }
    say(scrub(error instanceof CopyFailed ? error.message : `copy failed: ${(error as Error).message}`, to));
    return 1;
  }
}
