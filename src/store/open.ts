import path from 'node:path';
import { isPostgresUrl, type Config } from '../config.ts';
import { loadSecretBox, MASTER_KEY_FILE, wrongKeyError } from '../crypto/master-key.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Logger } from '../logger.ts';
import { prepareDirectory, preparePrivateFile, tightenFiles } from './data-dir.ts';
import { openDatabase, type SqliteDatabase } from './sqlite/connection.ts';
import { holdsSealedCredentials, migrateSqlite, sealedKeyIds, type MigrateOptions, type MigrateResult } from './sqlite/migrate.ts';
import { createSqliteStore } from './sqlite/store.ts';
import { moveToDataKeys } from '../maintenance/rekey.ts';
import type { PostgresStore } from './postgres/store.ts';
import type { Store } from './types.ts';

export interface OpenedStore {
  store: Store;
  secretBox: SecretBox;
  migration: MigrateResult;
  /**
   * The raw SQLite connection, for tests and maintenance commands only; never handed to
   * resolvers. On PostgreSQL reading it throws (use `postgres`).
   */
  readonly sqlite: SqliteDatabase;
  /** The PostgreSQL store (its request-role pool), for tests and maintenance only; undefined on SQLite. */
  postgres: PostgresStore | undefined;
  /**
   * Runs `fn` while no other process opening the same store runs its own (PostgreSQL: a session
   * advisory lock on a connection of its own; SQLite: one process serves a file, so it just runs).
   * Start-up's bootstrap runs under it, so replicas starting together mint one admin key.
   */
  exclusive<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export type StoreConfig = Pick<Config, 'database' | 'dataDir' | 'masterKey' | 'previousMasterKeys'> &
  Partial<Pick<Config, 'migrationDatabase' | 'databasePool'>>;

/**
 * The folders and files of the store, before SQLite opens them: the data directory (when it holds
 * the database or the generated master key) and the database's folder 0700, the database 0600
 * (its -wal and -shm files take that mode from it), each checked to be usable.
 */
function prepareFiles(config: StoreConfig, logger: Logger): void {
  if (config.database === ':memory:') return;
  const dataDir = path.resolve(config.dataDir);
  const databaseDir = path.dirname(path.resolve(config.database));
  const base = path.basename(config.database);
  const isDatabaseFile = (name: string) => name.startsWith(base);
  const isKeyFile = (name: string) => name === MASTER_KEY_FILE || name.startsWith(`${MASTER_KEY_FILE}.`);
  if (databaseDir === dataDir) {
    prepareDirectory(dataDir, 'TENANTGATE_DATA_DIR', logger, (name) => isDatabaseFile(name) || isKeyFile(name));
  } else {
    if (!config.masterKey) prepareDirectory(dataDir, 'TENANTGATE_DATA_DIR', logger, isKeyFile);
    prepareDirectory(databaseDir, 'the folder of TENANTGATE_DATABASE', logger, isDatabaseFile);
  }
  preparePrivateFile(config.database, 'TENANTGATE_DATABASE');
  tightenFiles([config.database, `${config.database}-wal`, `${config.database}-shm`], logger);
}

/**
 * Opens the configured store: a SQLite file, or PostgreSQL when TENANTGATE_DATABASE is a
 * postgres:// URL. Migrates it (SQLite always, adopting a pre-tenant file in place; PostgreSQL
 * when TENANTGATE_MIGRATION_DATABASE is set) and loads the master key, refusing to start when the
 * key cannot decrypt what the store holds.
 */
export async function openStore(
  config: StoreConfig,
  logger: Logger,
  options: Pick<MigrateOptions, 'onStep' | 'migrationsFolder'> = {},
): Promise<OpenedStore> {
  // Loaded only for PostgreSQL: a SQLite start never loads pg.
  if (isPostgresUrl(config.database)) return (await import('./postgres/open.ts')).openPostgres(config, logger, options);
  const opened = openSqliteStore(config, logger, options);
  try {
    await moveToDataKeys(opened.store, opened.secretBox, { logger, ...(options.onStep ? { onStep: options.onStep } : {}) });
  } catch (error) {
    await opened.store.close();
    throw error;
  }
  return opened;
}

/** The SQLite store, opened synchronously (openStore's SQLite half; for tests that step through a migration). */
export function openSqliteStore(
  config: StoreConfig,
  logger: Logger,
  options: Pick<MigrateOptions, 'onStep' | 'migrationsFolder'> = {},
): OpenedStore {
  prepareFiles(config, logger);
  const sqlite = openDatabase(config.database);
  try {
    const secretBox = loadSecretBox(config, logger, !holdsSealedCredentials(sqlite));
    const migration = migrateSqlite(sqlite, config.database, { ...options, secretBox: () => secretBox });
    if (migration.backupFile) {
      logger.info('adopted a pre-tenant database into org "default"', { backup: migration.backupFile });
    }
    if (migration.applied.length > 0) logger.info('migrations applied', { applied: migration.applied });
    const unknown = sealedKeyIds(sqlite).filter((id) => !secretBox.knows(id));
    if (unknown.length > 0) throw wrongKeyError(unknown, secretBox);
    return {
      store: createSqliteStore(sqlite, config.database),
      secretBox,
      migration,
      sqlite,
      postgres: undefined,
      exclusive: (_name, fn) => fn(),
    };
  } catch (error) {
    sqlite.close();
    throw error;
  }
}

