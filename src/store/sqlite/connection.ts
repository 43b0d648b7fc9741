import Database from 'better-sqlite3';

export type SqliteDatabase = Database.Database;

export const BUSY_TIMEOUT_MS = 5000;
/** SQLite's page cache per connection, in KiB (see openDatabase). */
const PAGE_CACHE_KIB = 8192;

/**
 * Opens a SQLite file with every pragma set explicitly, on every connection:
 * - WAL, so readers never block the writer and a second process (the CLI) can share the file;
 * - busy_timeout, so a writer waits for another process's write instead of failing SQLITE_BUSY;
 * - synchronous=FULL, so an acknowledged write survives a crash of the process and of the machine;
 * - foreign_keys=ON (better-sqlite3 12 defaults it on; we do not rely on that default);
 * - cache_size of 8 MiB (better-sqlite3 builds SQLite with 16 MiB): the page cache is part of the
 *   gateway's memory budget, and the OS page cache keeps the file's hot pages anyway.
 * Its folder and file are made and checked first, by openStore (see data-dir.ts).
 */
export function openDatabase(file: string): SqliteDatabase {
  // Switching a file to WAL takes an exclusive lock without calling the busy handler (SQLite
  // 3.53), so two processes opening a new or pre-tenant file together can fail at once with
  // SQLITE_BUSY. Retry for as long as busy_timeout would have waited.
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      return connect(file);
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() >= deadline) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5 + Math.random() * 20);
    }
  }
}

function connect(file: string): SqliteDatabase {
  const db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`could not switch ${file} to WAL (journal_mode is ${String(mode)})`);
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}
