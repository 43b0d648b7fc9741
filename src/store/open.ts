import path from 'node:path';
import { ConfigError, type Config } from '../config.ts';
import { loadSecretBox, MASTER_KEY_FILE } from '../crypto/master-key.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Logger } from '../logger.ts';
import { prepareDirectory, preparePrivateFile, tightenFiles } from './data-dir.ts';
import { openDatabase, type SqliteDatabase } from './sqlite/connection.ts';
import { holdsSealedCredentials, migrateSqlite, sealedKeyIds, type MigrateOptions, type MigrateResult } from './sqlite/migrate.ts';
import { createSqliteStore } from './sqlite/store.ts';
import type { Store } from './types.ts';

export interface OpenedStore {
  store: Store;
  secretBox: SecretBox;
  migration: MigrateResult;
  /** The raw connection, for tests and maintenance commands only; never handed to resolvers. */
  sqlite: SqliteDatabase;
}

type StoreConfig = Pick<Config, 'database' | 'dataDir' | 'masterKey' | 'previousMasterKeys'>;

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
 * Opens the configured store, migrates it (adopting a pre-tenant file in place) and loads the
 * master key, refusing to start when the key cannot decrypt what the store holds.
 */
export function openStore(
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
    if (unknown.length > 0) {
      throw new ConfigError(
        `wrong master key: credentials are sealed with ${unknown.join(', ')} but the configured key is ${secretBox.currentKeyId}; ` +
          'set TENANTGATE_MASTER_KEY (and TENANTGATE_MASTER_KEY_PREVIOUS during a rotation) to the keys that sealed them',
      );
    }
    return { store: createSqliteStore(sqlite, config.database), secretBox, migration, sqlite };
  } catch (error) {
    sqlite.close();
    throw error;
  }
}
