import pg from 'pg';
import { ConfigError } from '../../config.ts';
import { loadSecretBox, wrongKeyError } from '../../crypto/master-key.ts';
import { isMasterKeyId } from '../../crypto/data-keys.ts';
import type { SecretBox } from '../../crypto/secret-box.ts';
import { moveToDataKeys } from '../../maintenance/rekey.ts';
import type { Logger } from '../../logger.ts';
import { StoreError } from '../errors.ts';
import type { OpenedStore, StoreConfig } from '../open.ts';
import type { SqliteDatabase } from '../sqlite/connection.ts';
import type { MigrateOptions, MigrateResult } from '../sqlite/migrate.ts';
import { toStoreError } from './errors.ts';
import { checkRequestRole, migratePostgres, schemaStatus } from './migrate.ts';
import { createPostgresStore, describeUrl, type PostgresStore } from './store.ts';

/** The pool when the configuration names none (tests that build a Config by hand). */
const DEFAULT_POOL: NonNullable<StoreConfig['databasePool']> = { max: 10, connectTimeoutMs: 5000, idleTimeoutMs: 30_000, statementTimeoutMs: 5000 };

/** A failure to reach PostgreSQL at start, in one line naming host and database (never the URL's role password). */
function unreachable(where: string, error: unknown): Error {
  if (error instanceof ConfigError) return error;
  const mapped = toStoreError(error);
  if (mapped instanceof StoreError) {
    const why = mapped.kind === 'unavailable' ? `cannot be reached (${mapped.code})` : `failed (${mapped.code}: ${mapped.message})`;
    return new ConfigError(`PostgreSQL at ${where} ${why}`);
  }
  return error as Error;
}

/** Any fixed bigint, for pg_advisory_lock: the same in every process. */
function lockKey(name: string): string {
  let hash = 0n;
  for (const byte of Buffer.from(`tenantgate:${name}`)) hash = (hash * 31n + BigInt(byte)) & 0x7fff_ffff_ffff_ffffn;
  return hash.toString();
}

/**
 * PostgreSQL: migrate with the owning role when its URL is given, then refuse a request role that
 * could bypass row-level security and a schema that is not current, then open the pool and the
 * change feed. Several replicas share one store, so a master key is never generated here.
 */
export async function openPostgres(
  config: StoreConfig,
  logger: Logger,
  options: Pick<MigrateOptions, 'migrationsFolder' | 'onStep'>,
): Promise<OpenedStore> {
  const location = describeUrl(config.database);
  const pool = config.databasePool ?? DEFAULT_POOL;
  const migration: MigrateResult = { applied: [], adoptedLegacy: false, backupFile: undefined };
  let store: PostgresStore | undefined;
  try {
    if (config.migrationDatabase) {
      const result = await migratePostgres({
        ownerUrl: config.migrationDatabase,
        requestUrl: config.database,
        ...(options.migrationsFolder ? { migrationsFolder: options.migrationsFolder } : {}),
      });
      migration.applied = result.applied;
      if (result.applied.length > 0) logger.info('migrations applied', { applied: result.applied, store: location });
      if (result.createdRole) logger.info('created the request role', { store: location });
      if (result.granted.length > 0) logger.info('granted the request role', { granted: result.granted });
    }
    const role = await checkRequestRole(config.database);
    if (!role.ok) throw new ConfigError(role.reason);
    const schema = await schemaStatus(config.database, options.migrationsFolder);
    if (!schema.ok) {
      throw new ConfigError(
        `${schema.reason}: run tenantgate migrate with TENANTGATE_MIGRATION_DATABASE set to the owning role's URL (or set it for the start)`,
      );
    }
    const secretBox = loadPostgresKey(config, logger);
    store = await createPostgresStore({
      url: config.database,
      location,
      poolMax: pool.max,
      connectionTimeoutMs: pool.connectTimeoutMs,
      idleTimeoutMs: pool.idleTimeoutMs,
      statementTimeoutMs: pool.statementTimeoutMs,
      onEvent: (level, event, fields) => logger[level](event, { store: location, ...fields }),
    });
    // The master keys in use: those wrapping the orgs' data keys, and those sealing credentials directly (before their move).
    const inUse = [...(await store.system.credentials.keyIds()).filter(isMasterKeyId), ...(await store.system.orgKeys.masterKeyIds())];
    const unknown = [...new Set(inUse)].filter((id) => !secretBox.knows(id)).sort();
    if (unknown.length > 0) throw wrongKeyError(unknown, secretBox);
    await moveToDataKeys(store, secretBox, { logger, ...(options.onStep ? { onStep: options.onStep } : {}) });
    const opened = store;
    return {
      store: opened,
      secretBox,
      migration,
      get sqlite(): SqliteDatabase {
        throw new Error('this store is PostgreSQL: opened.sqlite is for the SQLite store only (use opened.postgres)');
      },
      postgres: opened,
      exclusive: (name, fn) => exclusively(config.database, pool.connectTimeoutMs, name, fn),
    };
  } catch (error) {
    await store?.close().catch(() => {});
    throw unreachable(location, error);
  }
}

async function exclusively<T>(url: string, connectTimeoutMs: number, name: string, fn: () => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, application_name: 'tenantgate-lock' });
  client.on('error', () => {}); // a lost connection frees the lock; fn's own store calls report the outage
  try {
    await client.connect();
    await client.query('SELECT pg_advisory_lock($1)', [lockKey(name)]);
  } catch (error) {
    await client.end().catch(() => {});
    throw toStoreError(error);
  }
  try {
    return await fn();
  } finally {
    await client.end().catch(() => {}); // ending the session releases its advisory lock
  }
}

/**
 * The master key on PostgreSQL: TENANTGATE_MASTER_KEY, or an existing <data dir>/master.key.
 * Never generated: every replica must hold the same key, and a key made by one would be unknown
 * to the others.
 */
function loadPostgresKey(config: StoreConfig, logger: Logger): SecretBox {
  return loadSecretBox(config, logger, false, 'postgres');
}
