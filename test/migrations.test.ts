import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DataKey, isMasterKeyId } from '../src/crypto/data-keys.ts';
import { SecretBox, type Sealed } from '../src/crypto/secret-box.ts';
import { captureLogger } from '../src/logger.ts';
import { openSqliteStore, type OpenedStore } from '../src/store/open.ts';
import { SQLITE_MIGRATIONS } from '../src/store/sqlite/migrate.ts';
import {
  CREDENTIAL_COLUMNS,
  FIXTURE_SECRETS,
  ID_RULE,
  MODULE_COLUMNS,
  SECRET_MARKER,
  createLegacyFromFixture,
  exactRows,
  generateLegacy,
  rowDifferences,
  type LegacySummary,
} from './helpers/legacy.ts';
import { prng } from './helpers/prng.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/open-store-child.ts', import.meta.url));
const MASTER_KEY = Buffer.alloc(32, 0x5a);
const box = new SecretBox(MASTER_KEY);
const NEEDLES = [SECRET_MARKER, ...FIXTURE_SECRETS];

/** The named points of an adoption, in order (migrate.ts calls onStep with them). */
const ADOPTION_STEPS = [
  'backed-up',
  'adopt-created',
  'adopt-modules-copied',
  'adopt-first-credential',
  'adopt-credentials-sealed',
  'before-commit',
] as const;

// ---------------------------------------------------------------------------------------------
// temp dirs, stores, inspection

const dirs: string[] = [];
const openStores: OpenedStore[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-migrations-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  for (const opened of openStores.splice(0)) await opened.store.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function open(file: string, onStep?: (step: string) => void): OpenedStore {
  const opened = openSqliteStore(
    { database: file, dataDir: path.dirname(file), masterKey: MASTER_KEY, previousMasterKeys: [] },
    captureLogger(),
    onStep ? { onStep } : {},
  );
  openStores.push(opened);
  return opened;
}

async function close(opened: OpenedStore): Promise<void> {
  openStores.splice(openStores.indexOf(opened), 1);
  await opened.store.close();
}

/** A plain connection with no tenantgate pragmas, for looking at a file as it is. */
function inspect<T>(file: string, fn: (db: Database.Database) => T): T {
  const db = new Database(file, { fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/**
 * A credential of org default opened as a gateway would: under the master key (as the adoption
 * sealed it), or under the org's data key once a start has moved it there (issue 15).
 */
function openSealed(db: Database.Database, moduleId: string, sealed: Sealed): string {
  if (isMasterKeyId(sealed.keyId)) return box.open('default', moduleId, sealed);
  const k = db.prepare('SELECT key_id, wrapped, iv, tag, master_key_id FROM org_keys WHERE org_id = ?').get('default') as
    | { key_id: string; wrapped: Buffer; iv: Buffer; tag: Buffer; master_key_id: string }
    | undefined;
  if (!k) throw new Error(`credential ${moduleId} names data key ${sealed.keyId}, but org default has none`);
  const dataKey = box.unwrapDataKey('default', k.key_id, { wrapped: k.wrapped, iv: k.iv, tag: k.tag, masterKeyId: k.master_key_id });
  return new DataKey('default', k.key_id, dataKey).open(moduleId, sealed);
}

function schemaOf(db: Database.Database): unknown[] {
  return db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name').all();
}

function layoutOf(db: Database.Database): 'empty' | 'legacy' | 'current' {
  const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[]).map((t) => t.name);
  if (tables.includes('__drizzle_migrations')) return 'current';
  return tables.length === 0 ? 'empty' : 'legacy';
}

function checks(db: Database.Database): { integrity: unknown; foreignKeys: unknown[] } {
  return { integrity: db.pragma('integrity_check', { simple: true }), foreignKeys: db.pragma('foreign_key_check') as unknown[] };
}

/** A hash of the whole logical content: sqlite_master (with root pages) and every row of every table, exactly. */
function dump(db: Database.Database): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(db.prepare('SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master ORDER BY type, name').raw().all()));
  const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).pluck().all() as string[];
  for (const table of tables) {
    const cols = db.prepare('SELECT name FROM pragma_table_info(?) ORDER BY cid').pluck().all(table) as string[];
    const select = cols.map((c) => `typeof("${c}") || ':' || hex("${c}")`).join(', ');
    const order = cols.map((_, i) => i + 1).join(', ');
    hash.update(`${table}\0${JSON.stringify(db.prepare(`SELECT ${select} FROM "${table}" ORDER BY ${order}`).raw().all())}`);
  }
  return hash.digest('hex');
}

/** Opens `file` once more and shows it changed nothing: no migration, no WAL write, same rows and schema. */
async function expectReopenChangesNothing(file: string): Promise<void> {
  const snapshot = (db: Database.Database) => ({ dump: dump(db), version: db.pragma('schema_version', { simple: true }) });
  const before = inspect(file, snapshot);
  const again = open(file);
  expect(again.migration).toEqual({ applied: [], adoptedLegacy: false, backupFile: undefined });
  // Nothing written: the WAL has not even a header.
  expect(fs.statSync(`${file}-wal`).size).toBe(0);
  await close(again);
  expect(inspect(file, snapshot)).toEqual(before);
}

/** Files of the store that must hold no plaintext secret: the database, its WAL and any journal. */
function plaintextHits(file: string): string[] {
  const hits: string[] = [];
  for (const suffix of ['', '-wal', '-journal', '-shm']) {
    const candidate = `${file}${suffix}`;
    if (!fs.existsSync(candidate)) continue;
    const bytes = fs.readFileSync(candidate);
    for (const needle of NEEDLES) {
      const at = bytes.indexOf(needle, 0, 'utf8');
      if (at >= 0) hits.push(`${path.basename(candidate)} holds ${JSON.stringify(needle)} at byte ${at}`);
    }
  }
  return hits;
}

function backupsOf(file: string): string[] {
  const prefix = `${path.basename(file)}.pre-tenant-`;
  return fs
    .readdirSync(path.dirname(file))
    .filter((name) => name.startsWith(prefix) && name.endsWith('.bak'))
    .map((name) => path.join(path.dirname(file), name));
}

/** Same schema, the same legacy rows column for column, and a sound file. */
function expectSameLegacyFile(db: Database.Database, want: Database.Database): void {
  expect(schemaOf(db)).toEqual(schemaOf(want));
  expect(rowDifferences(exactRows(db, 'modules', MODULE_COLUMNS), exactRows(want, 'modules', MODULE_COLUMNS), MODULE_COLUMNS)).toEqual([]);
  expect(
    rowDifferences(exactRows(db, 'credentials', CREDENTIAL_COLUMNS), exactRows(want, 'credentials', CREDENTIAL_COLUMNS), CREDENTIAL_COLUMNS),
  ).toEqual([]);
  expect(checks(db)).toEqual({ integrity: 'ok', foreignKeys: [] });
}

/** The file holds exactly the legacy schema and rows of `original`, and is sound. */
function expectWhollyOld(file: string, original: string): void {
  inspect(original, (want) =>
    inspect(file, (db) => {
      expect(layoutOf(db)).toBe('legacy');
      expectSameLegacyFile(db, want);
    }),
  );
}

/**
 * The adopted file holds every legacy row of `original`, in org default, byte for byte where the
 * column survives; every credential decrypts to exactly the legacy plaintext.
 */
function expectAdopted(db: Database.Database, original: string): void {
  inspect(original, (want) => {
    expect(layoutOf(db)).toBe('current');
    expect(db.prepare(`SELECT count(*) FROM modules WHERE org_id IS NOT 'default'`).pluck().get()).toBe(0);
    expect(db.prepare(`SELECT count(*) FROM credentials WHERE org_id IS NOT 'default'`).pluck().get()).toBe(0);
    expect(rowDifferences(exactRows(db, 'modules', MODULE_COLUMNS), exactRows(want, 'modules', MODULE_COLUMNS), MODULE_COLUMNS)).toEqual([]);

    const kept = ['module_id', 'created_at', 'updated_at'];
    expect(rowDifferences(exactRows(db, 'credentials', kept), exactRows(want, 'credentials', kept), kept)).toEqual([]);

    const legacy = new Map(
      (want.prepare('SELECT module_id, CAST(data AS BLOB) AS data FROM credentials').all() as { module_id: string; data: Buffer }[]).map(
        (r) => [r.module_id, r.data],
      ),
    );
    const sealed = db
      .prepare('SELECT module_id, ciphertext, iv, tag, key_id, fields FROM credentials ORDER BY module_id')
      .all() as { module_id: string; ciphertext: Buffer; iv: Buffer; tag: Buffer; key_id: string; fields: string }[];
    expect(sealed.length).toBe(legacy.size);
    const problems: string[] = [];
    const ivs = new Set<string>();
    for (const row of sealed) {
      ivs.add(row.iv.toString('hex'));
      const plain = legacy.get(row.module_id);
      if (!plain) {
        problems.push(`${JSON.stringify(row.module_id)}: no legacy credential`);
        continue;
      }
      const opened = Buffer.from(openSealed(db, row.module_id, { ciphertext: row.ciphertext, iv: row.iv, tag: row.tag, keyId: row.key_id }), 'utf8');
      if (!opened.equals(plain)) problems.push(`${JSON.stringify(row.module_id)}: decrypts to ${opened.toString('hex')}, legacy ${plain.toString('hex')}`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(plain.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      const names = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? Object.keys(parsed).sort() : [];
      if (row.fields !== JSON.stringify(names)) problems.push(`${JSON.stringify(row.module_id)}: fields ${row.fields}, expected ${JSON.stringify(names)}`);
      if (problems.length >= 5) break;
    }
    expect(problems).toEqual([]);
    expect(ivs.size).toBe(sealed.length); // a fresh IV per credential
    expect(checks(db)).toEqual({ integrity: 'ok', foreignKeys: [] });
  });
}

function expectBackupOf(backup: string, original: string): void {
  inspect(original, (want) =>
    inspect(backup, (db) => expectSameLegacyFile(db, want)),
  );
}

/** Schema of a store built from nothing by the real migrations, to compare adopted files with. */
function freshSchema(): unknown[] {
  const file = path.join(tempDir(), 'fresh.db');
  const opened = open(file);
  return schemaOf(opened.sqlite);
}

// ---------------------------------------------------------------------------------------------
// child processes

interface ChildEvent {
  event: string;
  [field: string]: unknown;
}

interface Child {
  events: ChildEvent[];
  waitFor(event: string): Promise<ChildEvent>;
  send(line: string): void;
  kill(): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Runs test/fixtures/open-store-child.ts under node with tsx's loader (no tsx wrapper process, so signals reach it directly). */
function spawnChild(env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, TG_MASTER_KEY: MASTER_KEY.toString('base64'), ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const events: ChildEvent[] = [];
  const waiters: Array<{ event: string; resolve: (e: ChildEvent) => void; reject: (e: Error) => void }> = [];
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    let parsed: ChildEvent;
    try {
      parsed = JSON.parse(line) as ChildEvent;
    } catch {
      return;
    }
    events.push(parsed);
    for (const waiter of waiters.filter((w) => w.event === parsed.event)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(parsed);
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    proc.on('exit', (code, signal) => {
      // Let the last stdout lines arrive before anyone looks at them.
      setImmediate(() => {
        for (const waiter of waiters.splice(0)) {
          waiter.reject(new Error(`child exited (code ${code}, signal ${signal}) before "${waiter.event}"; events ${JSON.stringify(events)}; stderr ${stderr}`));
        }
        resolve({ code, signal, stderr });
      });
    });
  });
  return {
    events,
    waitFor: (event) => {
      const seen = events.find((e) => e.event === event);
      if (seen) return Promise.resolve(seen);
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.reject(new Error(`child already exited before "${event}"`));
      return new Promise((resolve, reject) => waiters.push({ event, resolve, reject }));
    },
    send: (line) => {
      proc.stdin.write(`${line}\n`);
    },
    kill: () => {
      proc.kill('SIGKILL');
    },
    exited,
  };
}

// ---------------------------------------------------------------------------------------------
// the large legacy file: generated once, copied for each test that changes it

let largeDir: string;
let large: string;
let largeSummary: LegacySummary;

beforeAll(() => {
  largeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-large-'));
  large = path.join(largeDir, 'large-v0.db');
  largeSummary = generateLegacy(large, { modules: 5000, credentials: 3000, seed: 20260102 });
  expect(fs.existsSync(`${large}-journal`)).toBe(false); // one self-contained file, safe to copy
});

afterAll(() => {
  fs.rmSync(largeDir, { recursive: true, force: true });
});

function copyOf(source: string, name = 'tenantgate.db'): string {
  const file = path.join(tempDir(), name);
  fs.copyFileSync(source, file);
  return file;
}

let fixtureFile: string | undefined;
function fixture(): string {
  if (!fixtureFile) {
    fixtureFile = path.join(largeDir, 'fixture-v0.db');
    createLegacyFromFixture(fixtureFile);
  }
  return fixtureFile;
}

// ---------------------------------------------------------------------------------------------

describe('migrations on an empty store', () => {
  it('create every table, with org_id leading every tenant index, and org default', () => {
    const file = path.join(tempDir(), 'tenantgate.db');
    const { sqlite, migration } = open(file);

    expect(migration.adoptedLegacy).toBe(false);
    expect(migration.backupFile).toBeUndefined();
    expect(migration.applied.length).toBeGreaterThan(0);
    const tables = sqlite.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).pluck().all();
    expect(tables).toEqual([
      '__drizzle_migrations', 'api_keys', 'audit_heads', 'audit_log', 'credentials', 'modules', 'org_keys', 'org_quotas', 'orgs', 'run_unit_events', 'usage_hours', 'usage_months',
    ]);

    // Allowed exceptions: the key hash is the one unscoped lookup (key -> org), and an API key's
    // primary key is its globally unique random id (DESIGN.md: api_keys(id PK, org_id FK, ...)).
    const exceptions = new Set(['api_keys_hash_unique', 'sqlite_autoindex_api_keys_1']);
    const leading: Record<string, string> = {};
    for (const table of ['api_keys', 'modules', 'credentials', 'run_unit_events', 'usage_months', 'usage_hours', 'org_quotas', 'org_keys', 'audit_log', 'audit_heads']) {
      const info = sqlite.prepare('SELECT name, "notnull" FROM pragma_table_info(?) WHERE name = ?').get(table, 'org_id') as
        | { notnull: number }
        | undefined;
      expect(info?.notnull, `${table}.org_id NOT NULL`).toBe(1);
      for (const index of sqlite.prepare('SELECT name FROM pragma_index_list(?)').pluck().all(table) as string[]) {
        const first = sqlite.prepare('SELECT name FROM pragma_index_info(?) ORDER BY seqno LIMIT 1').pluck().get(index) as string;
        leading[index] = first;
      }
    }
    const offenders = Object.entries(leading).filter(([index, first]) => first !== 'org_id' && !exceptions.has(index));
    expect(offenders).toEqual([]);
    expect(leading).toHaveProperty('api_keys_hash_unique', 'hash');
    expect(Object.keys(leading).length).toBeGreaterThanOrEqual(6);

    // Compound keys, and the cascade from credentials to their module.
    const pk = (table: string) =>
      sqlite.prepare('SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk').pluck().all(table);
    expect(pk('modules')).toEqual(['org_id', 'module_id']);
    expect(pk('credentials')).toEqual(['org_id', 'module_id']);
    const fks = sqlite.prepare('SELECT "table", "from", "to", on_delete FROM pragma_foreign_key_list(?) ORDER BY seq').all('credentials');
    expect(fks).toEqual([
      { table: 'modules', from: 'org_id', to: 'org_id', on_delete: 'CASCADE' },
      { table: 'modules', from: 'module_id', to: 'module_id', on_delete: 'CASCADE' },
    ]);

    expect(sqlite.prepare(`SELECT id FROM orgs`).pluck().all()).toEqual(['default']);
    expect(checks(sqlite)).toEqual({ integrity: 'ok', foreignKeys: [] });
    expect(sqlite.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(sqlite.pragma('journal_mode', { simple: true })).toBe('wal');
    // NORMAL once the store is open: it syncs the -wal itself before answering a write (group commit).
    expect(sqlite.pragma('synchronous', { simple: true })).toBe(1);
    expect(sqlite.pragma('cache_size', { simple: true })).toBe(-8192);
  });

  it('have a journal with strictly increasing timestamps, each entry with its .sql file', () => {
    const journal = JSON.parse(fs.readFileSync(path.join(SQLITE_MIGRATIONS, 'meta', '_journal.json'), 'utf8')) as {
      entries: { idx: number; when: number; tag: string }[];
    };
    expect(journal.entries.length).toBeGreaterThan(0);
    journal.entries.forEach((entry, i) => {
      expect(entry.idx).toBe(i);
      expect(fs.existsSync(path.join(SQLITE_MIGRATIONS, `${entry.tag}.sql`)), `${entry.tag}.sql exists`).toBe(true);
      if (i > 0) expect(entry.when, `${entry.tag} is newer than the entry before it`).toBeGreaterThan(journal.entries[i - 1]!.when);
    });
    // A .sql file the journal does not list would never run.
    const files = fs.readdirSync(SQLITE_MIGRATIONS).filter((f) => f.endsWith('.sql')).sort();
    expect(files).toEqual(journal.entries.map((e) => `${e.tag}.sql`).sort());
  });

  it('record one journal row per migration, and change nothing when run on a current store', async () => {
    const file = path.join(tempDir(), 'tenantgate.db');
    const first = open(file);
    const migrations = fs.readdirSync(SQLITE_MIGRATIONS).filter((f) => f.endsWith('.sql')).length;
    expect(first.sqlite.prepare('SELECT count(*) FROM __drizzle_migrations').pluck().get()).toBe(migrations);
    await close(first);
    await expectReopenChangesNothing(file);
    expect(backupsOf(file)).toEqual([]);
  });
});

describe('adopting the pre-tenant fixture', () => {
  it('keeps every row in org default, seals the secrets, and leaves the fresh schema', async () => {
    const file = copyOf(fixture());
    fs.chmodSync(file, 0o600);
    const opened = open(file);
    expect(opened.migration.adoptedLegacy).toBe(true);

    expectAdopted(opened.sqlite, fixture());
    expect(plaintextHits(file)).toEqual([]); // while open: database and WAL
    expect(schemaOf(opened.sqlite)).toEqual(freshSchema());
    expect(opened.sqlite.prepare('SELECT id FROM orgs').pluck().all()).toEqual(['default']);

    // The backup: one file beside the original, holding the original rows.
    const backups = backupsOf(file);
    expect(backups).toEqual([opened.migration.backupFile]);
    expectBackupOf(backups[0]!, fixture());
    // It holds the plaintext secrets, so it must be no more readable than the original file.
    expect((fs.statSync(backups[0]!).mode & 0o077).toString(8)).toBe('0');

    // Legacy ids that break today's rule stay addressable, with their credential.
    expect(ID_RULE.test('zürich-weather')).toBe(false);
    const zurich = await opened.store.forOrg('default').modules.get('zürich-weather');
    expect(zurich).toMatchObject({ orgId: 'default', moduleId: 'zürich-weather', name: 'Zürich Wetter ☀', enabled: true, hasCredential: false });
    const github = await opened.store.forOrg('default').modules.get('github');
    expect(github).toMatchObject({ usageCount: 42, healthStatus: 'healthy', config: '{"org":"acme"}', hasCredential: true });
    const slack = await opened.store.forOrg('default').credentials.get('slack');
    expect(slack && opened.secretBox.open('default', 'slack', slack)).toBe('{"botToken":"xoxb-legacy-0002","signingSecret":"s3cr3t"}');
    expect(slack?.fields).toEqual(['botToken', 'signingSecret']);

    await close(opened);
    expect(plaintextHits(file)).toEqual([]); // and after the final checkpoint
  });

  it('keeps the cascade from credentials to modules', async () => {
    const opened = open(copyOf(fixture()));
    expect(await opened.store.forOrg('default').credentials.has('github')).toBe(true);
    expect(await opened.store.forOrg('default').modules.delete('github', SYSTEM_ACTOR)).toBe(true);
    expect(await opened.store.forOrg('default').credentials.has('github')).toBe(false);
    expect(opened.sqlite.prepare(`SELECT count(*) FROM credentials WHERE module_id = 'github'`).pluck().get()).toBe(0);
    // And the reverse: no credential without its module.
    expect(() =>
      opened.sqlite
        .prepare(`INSERT INTO credentials (org_id, module_id, ciphertext, iv, tag, key_id, fields, created_at, updated_at) VALUES ('default', 'gone', x'00', x'00', x'00', 'k', '[]', 'now', 'now')`)
        .run(),
    ).toThrow(/FOREIGN KEY/);
    expect(checks(opened.sqlite)).toEqual({ integrity: 'ok', foreignKeys: [] });
  });

  it('is idempotent: a second open changes nothing and writes no second backup', async () => {
    const file = copyOf(fixture());
    await close(open(file));
    await expectReopenChangesNothing(file);
    expect(backupsOf(file)).toHaveLength(1);
  });
});

describe('adopting a large generated legacy file', () => {
  it('generates what it promises', () => {
    inspect(large, (db) => {
      expect(db.prepare('SELECT count(*) FROM modules').pluck().get()).toBe(largeSummary.modules);
      expect(db.prepare('SELECT count(*) FROM credentials').pluck().get()).toBe(largeSummary.credentials);
      expect(largeSummary.modules).toBeGreaterThanOrEqual(5000);
      expect(largeSummary.credentials).toBeGreaterThanOrEqual(3000);
      expect(largeSummary.invalidIds.length).toBeGreaterThan(3000);
      expect(db.prepare('SELECT DISTINCT health_status FROM modules ORDER BY 1').pluck().all()).toEqual(['degraded', 'healthy', 'unhealthy', 'unknown']);
      for (const column of ['description', 'health_message', 'last_health_check', 'last_used_at']) {
        expect(db.prepare(`SELECT count(*) FROM modules WHERE "${column}" IS NULL`).pluck().get(), `NULLs in ${column}`).toBeGreaterThan(100);
      }
      expect(db.prepare('SELECT count(*) FROM modules WHERE length(CAST(config AS BLOB)) >= 20480').pluck().get()).toBeGreaterThan(100);
      expect(db.prepare(`SELECT count(*) FROM modules WHERE module_id GLOB '*[^ -~]*'`).pluck().get()).toBeGreaterThan(1000); // non-ASCII
      expect(db.prepare('SELECT count(*) FROM credentials WHERE length(data) > 6000').pluck().get()).toBeGreaterThan(10);
    });
    // Deterministic: the same seed writes the same rows.
    const again = path.join(tempDir(), 'again.db');
    generateLegacy(again, { modules: 5000, credentials: 3000, seed: 20260102 });
    expect(inspect(again, dump)).toBe(inspect(large, dump));
  });

  it('keeps every row, byte for byte, with every secret sealed and no plaintext left', async () => {
    const file = copyOf(large);
    const started = performance.now();
    const opened = open(file);
    const elapsed = performance.now() - started;
    expect(opened.migration.adoptedLegacy).toBe(true);
    expect(elapsed).toBeGreaterThan(0);

    expectAdopted(opened.sqlite, large);
    expect(plaintextHits(file)).toEqual([]);
    expect(schemaOf(opened.sqlite)).toEqual(freshSchema());
    expectBackupOf(opened.migration.backupFile!, large);

    // Every id that breaks today's rule is still addressable through the store.
    const rand = prng(7);
    for (let n = 0; n < 50; n++) {
      const id = largeSummary.invalidIds[Math.floor(rand() * largeSummary.invalidIds.length)]!;
      expect((await opened.store.forOrg('default').modules.get(id))?.moduleId, id).toBe(id);
    }
    // NFC and NFD spellings stay two different modules.
    expect((await opened.store.forOrg('default').modules.get('café-3'))?.moduleId).toBe('café-3');
    expect((await opened.store.forOrg('default').modules.get('cafe\u0301-4'))?.moduleId).toBe('cafe\u0301-4');
    expect(await opened.store.forOrg('default').modules.get('cafe\u0301-3')).toBeUndefined();

    // Cascade on adopted rows with unusual ids.
    const withCredential = opened.sqlite
      .prepare(`SELECT module_id FROM credentials WHERE module_id GLOB '*[^ -~]*' ORDER BY module_id LIMIT 20`)
      .pluck()
      .all() as string[];
    expect(withCredential).toHaveLength(20);
    for (const id of withCredential) {
      expect(await opened.store.forOrg('default').modules.delete(id, SYSTEM_ACTOR)).toBe(true);
      expect(await opened.store.forOrg('default').credentials.has(id)).toBe(false);
    }
    expect(checks(opened.sqlite)).toEqual({ integrity: 'ok', foreignKeys: [] });

    await close(opened);
    expect(plaintextHits(file)).toEqual([]);
  });

  it('is idempotent on the large file', async () => {
    const file = copyOf(large);
    await close(open(file));
    const before = inspect(file, dump);
    const again = open(file);
    expect(again.migration).toEqual({ applied: [], adoptedLegacy: false, backupFile: undefined });
    await close(again);
    expect(inspect(file, dump)).toBe(before);
    expect(backupsOf(file)).toHaveLength(1);
  });
});

describe('an adoption interrupted by a killed process', () => {
  it('passes the named steps in order', () => {
    const steps: string[] = [];
    open(copyOf(fixture()), (step) => steps.push(step));
    // Migrations after the one that adoption builds on run inside the same transaction, each
    // naming its step (`applied-<folder millis>`) between adoption's and the commit.
    expect(steps.filter((step) => !step.startsWith('applied-'))).toEqual([...ADOPTION_STEPS]);
    expect(steps.indexOf('before-commit')).toBeGreaterThan(steps.findLastIndex((step) => step.startsWith('applied-')));
  });

  it.each(ADOPTION_STEPS)('killed at %s: the file is wholly old, and the next open completes', async (step) => {
    const file = copyOf(large);
    const child = spawnChild({ TG_DATABASE: file, TG_DATA_DIR: path.dirname(file), TG_KILL_AT: step });
    const { code, signal, stderr } = await child.exited;
    expect({ code, signal, events: child.events.map((e) => e.event) }, stderr).toEqual({ code: null, signal: 'SIGKILL', events: ['ready'] });

    expectWhollyOld(file, large);
    // The backup is written before anything changes, so it exists from the first step on.
    expect(backupsOf(file)).toHaveLength(1);
    expectBackupOf(backupsOf(file)[0]!, large);

    const opened = open(file);
    expect(opened.migration.adoptedLegacy).toBe(true);
    expectAdopted(opened.sqlite, large);
    expect(plaintextHits(file)).toEqual([]);
  });

  it('killed before committing the migrations of an empty file: the file stays empty, and the next open completes', async () => {
    const file = path.join(tempDir(), 'tenantgate.db');
    const child = spawnChild({ TG_DATABASE: file, TG_DATA_DIR: path.dirname(file), TG_KILL_AT: 'before-commit' });
    expect((await child.exited).signal).toBe('SIGKILL');
    expect(inspect(file, layoutOf)).toBe('empty');
    const opened = open(file);
    expect(opened.migration.applied.length).toBeGreaterThan(0);
    expect(schemaOf(opened.sqlite)).toEqual(freshSchema());
    expect(checks(opened.sqlite)).toEqual({ integrity: 'ok', foreignKeys: [] });
  });

  it('killed at random moments: the file is wholly old or wholly new, and the next open completes', async () => {
    // How long an adoption takes in a child, from "go" to "opened", to aim the kills inside it.
    const timing = copyOf(large);
    const probe = spawnChild({ TG_DATABASE: timing, TG_DATA_DIR: path.dirname(timing), TG_BARRIER: '1' });
    await probe.waitFor('ready');
    const t0 = performance.now();
    probe.send('go');
    await probe.waitFor('opened');
    const span = performance.now() - t0;
    expect((await probe.exited).code).toBe(0);

    const rand = prng(99);
    const outcomes: string[] = [];
    for (const fraction of [0.1, 0.3, 0.5, 0.7, 0.9]) {
      const delay = Math.max(1, span * (fraction + (rand() - 0.5) * 0.2));
      const file = copyOf(large);
      const child = spawnChild({ TG_DATABASE: file, TG_DATA_DIR: path.dirname(file), TG_BARRIER: '1' });
      await child.waitFor('ready');
      child.send('go');
      const timer = setTimeout(() => child.kill(), delay);
      const { code, signal } = await child.exited;
      clearTimeout(timer);
      const layout = inspect(file, layoutOf);
      outcomes.push(`${Math.round(delay)}ms of ${Math.round(span)}ms: ${signal ?? `exit ${code}`}, ${layout}`);
      expect(signal === 'SIGKILL' || code === 0, outcomes.at(-1)).toBe(true);
      if (layout === 'legacy') {
        expectWhollyOld(file, large);
      } else {
        expect(layout).toBe('current');
        inspect(file, (db) => expectAdopted(db, large));
      }
      const opened = open(file);
      expectAdopted(opened.sqlite, large);
      expect(plaintextHits(file)).toEqual([]);
      await close(opened);
    }
    // At least one kill must have landed part-way, or this test proved nothing.
    expect(outcomes.filter((o) => o.includes('SIGKILL, legacy')).length, outcomes.join('\n')).toBeGreaterThan(0);
  });
});

describe('a store opened by two processes at once', () => {
  async function openTogether(file: string, extra: Record<string, string> = {}): Promise<[Child, Child]> {
    const children = [1, 2].map((n) =>
      spawnChild({ TG_DATABASE: file, TG_DATA_DIR: path.dirname(file), TG_BARRIER: '1', TG_PREFIX: `writer${n}`, ...extra }),
    ) as [Child, Child];
    await Promise.all(children.map((c) => c.waitFor('ready')));
    for (const c of children) c.send('go');
    return children;
  }

  async function expectBothSucceeded(children: Child[]): Promise<ChildEvent[]> {
    const results = await Promise.all(children.map((c) => c.exited));
    results.forEach((r, i) =>
      expect({ code: r.code, signal: r.signal }, `${JSON.stringify(children[i]!.events)} ${r.stderr}`).toEqual({ code: 0, signal: null }),
    );
    return children.map((c) => c.events.find((e) => e.event === 'opened')!);
  }

  it('migrate a fresh file once', async () => {
    const file = path.join(tempDir(), 'tenantgate.db');
    const opened = await expectBothSucceeded(await openTogether(file));
    const migrations = fs.readdirSync(SQLITE_MIGRATIONS).filter((f) => f.endsWith('.sql')).length;
    // One of them applied every migration; the other found them applied.
    expect(opened.map((o) => (o.applied as string[]).length).sort()).toEqual([0, migrations]);
    inspect(file, (db) => {
      expect(db.prepare('SELECT hash, count(*) AS n FROM __drizzle_migrations GROUP BY hash HAVING n > 1').all()).toEqual([]);
      expect(db.prepare('SELECT count(*) FROM __drizzle_migrations').pluck().get()).toBe(migrations);
      expect(db.prepare('SELECT id FROM orgs').pluck().all()).toEqual(['default']);
      expect(checks(db)).toEqual({ integrity: 'ok', foreignKeys: [] });
    });
  });

  it('adopt a legacy file exactly once', async () => {
    const file = copyOf(large);
    const opened = await expectBothSucceeded(await openTogether(file));
    expect(opened.filter((o) => o.adoptedLegacy === true)).toHaveLength(1);
    // Both may have taken a backup before either held the write lock; each must be a whole copy.
    const backups = backupsOf(file);
    expect(backups.length).toBeGreaterThanOrEqual(1);
    for (const backup of backups) expectBackupOf(backup, large);
    inspect(file, (db) => {
      expect(db.prepare('SELECT count(*) FROM __drizzle_migrations').pluck().get()).toBe(
        fs.readdirSync(SQLITE_MIGRATIONS).filter((f) => f.endsWith('.sql')).length,
      );
      expectAdopted(db, large);
    });
    expect(plaintextHits(file)).toEqual([]);
  });

  it('write concurrently without SQLITE_BUSY', async () => {
    const file = path.join(tempDir(), 'tenantgate.db');
    const writes = 150;
    const children = await openTogether(file, { TG_WRITES: String(writes) });
    await Promise.all(children.map((c) => c.waitFor('opened')));
    for (const c of children) c.send('go'); // start writing together
    await expectBothSucceeded(children);
    for (const c of children) expect(c.events.find((e) => e.event === 'wrote')).toEqual({ event: 'wrote', writes });
    inspect(file, (db) => {
      expect(db.prepare(`SELECT count(*) FROM modules WHERE module_id GLOB 'writer[12]-*'`).pluck().get()).toBe(2 * writes);
      expect(db.prepare(`SELECT count(*) FROM credentials WHERE module_id GLOB 'writer[12]-*'`).pluck().get()).toBe(2 * writes);
      expect(db.prepare(`SELECT usage_count FROM modules WHERE module_id = 'shared'`).pluck().get()).toBe(2 * writes);
      expect(checks(db)).toEqual({ integrity: 'ok', foreignKeys: [] });
    });
  });
});
