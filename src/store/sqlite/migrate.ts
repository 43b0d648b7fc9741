import fs from 'node:fs';
import path from 'node:path';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import type { SecretBox } from '../../crypto/secret-box.ts';
import type { SqliteDatabase } from './connection.ts';
import { DEFAULT_ORG } from '../types.ts';
import { findMigrations } from '../migrations-folder.ts';

export const SQLITE_MIGRATIONS = findMigrations('sqlite', import.meta.url);

/** drizzle's journal table; we write it exactly as drizzle does, so drizzle-kit stays usable. */
const JOURNAL = '__drizzle_migrations';

export interface MigrateOptions {
  migrationsFolder?: string;
  /** Called lazily, only when plaintext secrets of a pre-tenant file need encrypting. */
  secretBox: () => SecretBox;
  /** Test seam: called at named points of the adoption, so a test can kill the process there. */
  onStep?: (step: string) => void;
  now?: () => string;
}

export interface MigrateResult {
  applied: string[];
  adoptedLegacy: boolean;
  backupFile: string | undefined;
}

type Layout = 'empty' | 'current' | 'legacy-v0';

function tableExists(db: SqliteDatabase, name: string): boolean {
  return db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name) !== undefined;
}

function columns(db: SqliteDatabase, table: string): string[] {
  return (db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as { name: string }[]).map((c) => c.name);
}

/**
 * Whether the file holds credentials sealed under a master key (before migrating: a pre-tenant
 * file's are plaintext, and a new file has none), so that a missing key is refused, not generated.
 */
export function holdsSealedCredentials(db: SqliteDatabase): boolean {
  if (tableExists(db, 'org_keys') && db.prepare('SELECT 1 FROM org_keys LIMIT 1').get() !== undefined) return true;
  if (!tableExists(db, 'credentials') || !columns(db, 'credentials').includes('key_id')) return false;
  return db.prepare('SELECT 1 FROM credentials LIMIT 1').get() !== undefined;
}

/**
 * The master key ids in use (after migrating), for the start-up check: those wrapping the orgs'
 * data keys, and those sealing credentials directly (before their move to data keys, `mk_…`).
 */
export function sealedKeyIds(db: SqliteDatabase): string[] {
  const direct = db.prepare(`SELECT DISTINCT key_id FROM credentials WHERE substr(key_id, 1, 3) = 'mk_'`).pluck().all() as string[];
  const wrapping = db.prepare('SELECT DISTINCT master_key_id FROM org_keys').pluck().all() as string[];
  return [...new Set([...direct, ...wrapping])].sort();
}

function layoutOf(db: SqliteDatabase): Layout {
  if (tableExists(db, JOURNAL)) return 'current';
  if (!tableExists(db, 'modules')) return 'empty';
  const moduleColumns = columns(db, 'modules');
  if (!moduleColumns.includes('org_id') && moduleColumns.includes('module_id')) return 'legacy-v0';
  throw new Error('the database has a modules table but no migration journal and no known layout; refusing to touch it');
}

/**
 * Brings a SQLite file to the current schema, in one IMMEDIATE transaction so that two processes
 * starting together serialise and a killed run leaves the file wholly old. We run the migrations
 * ourselves (drizzle 0.45's migrator reads the journal before its transaction and issues a plain
 * BEGIN, so two processes could both apply the same migration) but from drizzle's files and journal.
 *
 * Foreign keys are switched off on the connection first: inside a transaction
 * `PRAGMA foreign_keys` is ignored, and a migration that rebuilds a parent table would otherwise
 * cascade-delete its children (drizzle-orm issue 5782). `foreign_key_check` runs before commit.
 */
export function migrateSqlite(db: SqliteDatabase, file: string, options: MigrateOptions): MigrateResult {
  const migrations = readMigrationFiles({ migrationsFolder: options.migrationsFolder ?? SQLITE_MIGRATIONS });
  const now = options.now ?? (() => new Date().toISOString());
  const step = options.onStep ?? (() => {});
  const result: MigrateResult = { applied: [], adoptedLegacy: false, backupFile: undefined };

  if (layoutOf(db) === 'legacy-v0' && file !== ':memory:') {
    result.backupFile = backup(db, file);
    step('backed-up');
  }

  db.pragma('foreign_keys = OFF');
  try {
    db.exec('BEGIN IMMEDIATE');
    try {
      const layout = layoutOf(db); // again, under the write lock: another process may have won
      let last = 0;
      if (layout === 'legacy-v0') {
        const baseline = migrations[0];
        if (!baseline) throw new Error('no baseline migration in drizzle/sqlite');
        adoptLegacy(db, baseline.sql, options.secretBox, now, step);
        createJournal(db);
        db.prepare(`INSERT INTO "${JOURNAL}" ("hash", "created_at") VALUES (?, ?)`).run(baseline.hash, baseline.folderMillis);
        last = baseline.folderMillis;
        result.adoptedLegacy = true;
        result.applied.push('0000 (adopted pre-tenant schema)');
      } else {
        createJournal(db);
        const row = db.prepare(`SELECT created_at FROM "${JOURNAL}" ORDER BY created_at DESC LIMIT 1`).get() as
          | { created_at: number | string }
          | undefined;
        last = row ? Number(row.created_at) : 0;
      }
      for (const migration of migrations) {
        if (migration.folderMillis <= last) continue;
        for (const statement of migration.sql) {
          if (statement.trim()) db.exec(statement);
        }
        db.prepare(`INSERT INTO "${JOURNAL}" ("hash", "created_at") VALUES (?, ?)`).run(migration.hash, migration.folderMillis);
        result.applied.push(String(migration.folderMillis));
        step(`applied-${migration.folderMillis}`);
      }
      db.prepare(`INSERT OR IGNORE INTO orgs (id, name, created_at) VALUES (?, ?, ?)`).run(DEFAULT_ORG.id, DEFAULT_ORG.name, now());
      // Only after a change: with foreign keys on at run time, an untouched file stays sound, and
      // the check reads every row of every table (seconds, and the whole page cache, at 1M rows).
      const changed = result.applied.length > 0;
      const violations = changed ? (db.pragma('foreign_key_check') as Array<{ table: string; rowid: number; parent: string }>) : [];
      if (violations.length > 0) {
        // Name the rows (table and rowid only, never their content) so an operator can mend them,
        // e.g. a pre-tenant credential whose module is gone.
        const describe = (v: { table: string; rowid: number; parent: string }) => {
          const key = db.prepare(`SELECT * FROM "${v.table}" WHERE rowid = ?`).get(v.rowid) as { module_id?: string } | undefined;
          return `${v.table} row ${key?.module_id !== undefined ? `for module "${key.module_id}"` : v.rowid} has no ${v.parent} row`;
        };
        const rows = violations.slice(0, 5).map(describe).join('; ');
        throw new Error(
          `migration left ${violations.length} foreign key violation(s) (${rows}${violations.length > 5 ? '; …' : ''}); nothing was changed`,
        );
      }
      step('before-commit');
      db.exec('COMMIT');
    } catch (error) {
      if (db.inTransaction) db.exec('ROLLBACK');
      throw error;
    }
  } finally {
    db.pragma('foreign_keys = ON');
  }
  if (result.adoptedLegacy) {
    // Copy the zeroed pages into the main file now and empty the WAL, so no plaintext secret
    // lingers in either until some later checkpoint (a reader in another process may delay it).
    db.pragma('wal_checkpoint(TRUNCATE)');
  }
  return result;
}

function createJournal(db: SqliteDatabase): void {
  db.exec(`CREATE TABLE IF NOT EXISTS "${JOURNAL}" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)`);
}

/** A consistent copy next to the file, written before anything changes. */
function backup(db: SqliteDatabase, file: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  // The copy holds the plaintext secrets, and VACUUM INTO would create it 0644 (under the usual
  // umask): create it empty first, 0600 whatever the umask, like the store itself (VACUUM INTO
  // keeps an existing file's mode). 'wx' also keeps two processes backing up in the same
  // millisecond off one file.
  const mode = 0o600;
  for (let n = 0; ; n++) {
    const target = path.join(path.dirname(file), `${path.basename(file)}.pre-tenant-${stamp}${n > 0 ? `-${n}` : ''}.bak`);
    try {
      fs.writeFileSync(target, '', { flag: 'wx', mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    fs.chmodSync(target, mode);
    db.prepare('VACUUM INTO ?').run(target);
    return target;
  }
}

interface LegacyCredential {
  rowid: number;
  module_id: string;
  data: string;
  created_at: string;
  updated_at: string;
}

/**
 * Rebuilds the pre-tenant tables (keyed by module_id alone, plaintext secrets) into the current
 * ones: rename aside, create the baseline schema, copy every row into org `default` column for
 * column (so text keeps its bytes), seal each plaintext secret, drop the old tables.
 */
function adoptLegacy(
  db: SqliteDatabase,
  baselineSql: string[],
  secretBox: () => SecretBox,
  now: () => string,
  step: (name: string) => void,
): void {
  db.exec('ALTER TABLE modules RENAME TO _v0_modules');
  db.exec('ALTER TABLE credentials RENAME TO _v0_credentials');
  db.exec('DROP INDEX IF EXISTS modules_health_idx');
  for (const statement of baselineSql) {
    if (statement.trim()) db.exec(statement);
  }
  step('adopt-created');
  db.prepare(`INSERT OR IGNORE INTO orgs (id, name, created_at) VALUES (?, ?, ?)`).run(DEFAULT_ORG.id, DEFAULT_ORG.name, now());
  // Every column the pre-tenant table shares with the baseline one, as it is; the baseline's
  // others (org_id aside) take their defaults. Both tables are fixed, so this never changes when
  // a later migration adds a column.
  const shared = columns(db, '_v0_modules').filter((c) => c !== 'org_id' && columns(db, 'modules').includes(c));
  const list = shared.map((c) => `"${c}"`).join(', ');
  db.prepare(`INSERT INTO modules ("org_id", ${list}) SELECT ?, ${list} FROM _v0_modules`).run(DEFAULT_ORG.id);
  step('adopt-modules-copied');
  const insert = db.prepare(`
    INSERT INTO credentials (org_id, module_id, ciphertext, iv, tag, key_id, fields, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  // better-sqlite3 cannot write while a statement iterates, so read in rowid-ordered batches.
  const batch = db.prepare(
    'SELECT rowid, module_id, data, created_at, updated_at FROM _v0_credentials WHERE rowid > ? ORDER BY rowid LIMIT 500',
  );
  let box: SecretBox | undefined;
  let lastRowid = -Infinity;
  let count = 0;
  for (;;) {
    const rows = batch.all(lastRowid) as LegacyCredential[];
    if (rows.length === 0) break;
    for (const row of rows) {
      box ??= secretBox();
      const sealed = box.seal(DEFAULT_ORG.id, row.module_id, row.data);
      insert.run(
        DEFAULT_ORG.id,
        row.module_id,
        sealed.ciphertext,
        sealed.iv,
        sealed.tag,
        sealed.keyId,
        JSON.stringify(fieldNames(row.data)),
        row.created_at,
        row.updated_at,
      );
      lastRowid = row.rowid;
      if (++count === 1) step('adopt-first-credential');
    }
  }
  step('adopt-credentials-sealed');
  // DROP TABLE only moves the pages to the freelist, plaintext and all; secure_delete zeroes them
  // inside this transaction (the caller checkpoints after commit, so the zeroes reach the file).
  const secureDelete = db.pragma('secure_delete', { simple: true }) as number;
  db.pragma('secure_delete = ON');
  try {
    db.exec('DROP TABLE _v0_credentials');
    db.exec('DROP TABLE _v0_modules');
  } finally {
    db.pragma(`secure_delete = ${secureDelete}`);
  }
}

/** Field names of a legacy secret; a value that is not a JSON object is kept whole, with no names. */
function fieldNames(data: string): string[] {
  try {
    const parsed: unknown = JSON.parse(data);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return Object.keys(parsed).sort();
  } catch {
    // kept sealed as-is; revealing it reports that it is not an object
  }
  return [];
}
