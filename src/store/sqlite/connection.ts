import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../errors.ts';

export type SqliteDatabase = Database.Database;

export const BUSY_TIMEOUT_MS = 5000;
/** SQLite's page cache per connection, in KiB (see openDatabase). */
const PAGE_CACHE_KIB = 8192;

/**
 * Opens a SQLite file with every pragma set explicitly, on every connection:
 * - WAL, so readers never block the writer and a second process (the CLI) can share the file;
 * - busy_timeout, so a writer waits for another process's write instead of failing SQLITE_BUSY;
 * - synchronous=FULL, so an acknowledged write survives a crash of the process and of the machine
 *   (migrations run so; the store then takes the syncing off the event loop: see createWalSync);
 * - foreign_keys=ON (better-sqlite3 12 defaults it on; we do not rely on that default);
 * - cache_size of 8 MiB (better-sqlite3 builds SQLite with 16 MiB): the page cache is part of the
 *   gateway's memory budget, and the OS page cache keeps the file's hot pages anyway;
 * - secure_delete=ON: deleted content (a deleted org's rows and data key, a replaced credential's
 *   old ciphertext) is overwritten with zeros, freed pages included, instead of lingering in the
 *   file until reused (issue 15: deleting an org shreds it; see the README on its write cost).
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
    db.pragma('secure_delete = ON');
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

/**
 * Group commit, off the event loop. The store runs its connection at synchronous=NORMAL, where a
 * commit in WAL mode writes its frames to the -wal file without an fsync, and calls `synced()`
 * after each write: it resolves once an fdatasync of the -wal file that began after the write had
 * committed has completed, so a write is answered only once it survives a power loss, as with
 * synchronous=FULL. The fdatasync runs on libuv's thread pool, not on the event loop (one took
 * about 4 ms here, during which FULL held every other request), and one covers every write that
 * committed before it began: writes that arrive while one is under way share the next.
 *
 * Recovery replays the -wal file's committed frames, and a checkpoint (which SQLite runs at
 * NORMAL too) syncs the -wal before copying it into the database and the database after, so a
 * synced frame stays durable whichever comes first. The first sync also syncs the folder, so a
 * -wal file created by this connection is found after a power loss. A failed sync rejects the
 * writes waiting on it with a StoreError of kind `io` (their answer is an error, though they may
 * have landed) and is kept in `failure` until a sync succeeds.
 */
export interface WalSync {
  /** Resolves once every write committed before the call is on disk; rejects if the sync failed. */
  synced(): Promise<void>;
  /** Why the last sync failed, until one succeeds. */
  readonly failure: StoreError | undefined;
}

/** fdatasync of a file (or folder) by path; a file that is not there has nothing to sync. */
async function syncPath(target: string): Promise<void> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(target, 'r');
  } catch (error) {
    // No -wal file: SQLite removed it after checkpointing it whole (at close), so nothing is left to sync.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** `syncFile` is for tests (to hold a sync, or fail it). */
export function createWalSync(file: string, syncFile: (target: string) => Promise<void> = syncPath): WalSync {
  if (file === ':memory:') return { synced: () => Promise.resolve(), failure: undefined };
  const wal = `${file}-wal`;
  let folderSynced = false;
  let failure: StoreError | undefined;
  /** The sync under way, if any; and the waiters of the one after it (begun when it ends). */
  let running: Promise<void> | undefined;
  let next: { promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void } | undefined;

  const start = (): Promise<void> => {
    const sync = (async () => {
      await syncFile(wal);
      if (!folderSynced) {
        await syncFile(path.dirname(path.resolve(file)));
        folderSynced = true;
      }
    })().then(
      () => {
        failure = undefined;
      },
      (error: unknown) => {
        failure = new StoreError('io', 'SQLITE_IOERR_FSYNC', error);
        throw failure;
      },
    );
    const settled = () => {
      running = undefined;
      const waiting = next;
      next = undefined;
      if (waiting) {
        running = start();
        running.then(waiting.resolve, waiting.reject);
      }
    };
    sync.then(settled, settled);
    return sync;
  };

  return {
    synced() {
      if (running === undefined) return (running = start());
      // The sync under way may have begun before this write committed: wait for the next one.
      if (next === undefined) {
        let resolve!: () => void;
        let reject!: (error: unknown) => void;
        const promise = new Promise<void>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        next = { promise, resolve, reject };
      }
      return next.promise;
    },
    get failure() {
      return failure;
    },
  };
}
