import pg from 'pg';
import { migratePostgres, type PgMigrateResult } from '../../src/store/postgres/migrate.ts';
import { pgServer } from './pg-server.ts';

const withPassword = (url: string, password: string) => {
  const u = new URL(url);
  u.password = password;
  return u.toString();
};

/**
 * Scratch PostgreSQL databases for tests: one per call, owned by a fresh owning role (no
 * superuser, so FORCE holds it too), dropped with its roles by `drop()`. The superuser only creates
 * and drops them and inspects rows; it never stands in for a request (it bypasses RLS even with
 * FORCE). The server is the run's choice (test/helpers/pg-server.ts): TG_TEST_POSTGRES, by default
 * the local one, else PGlite outside CI.
 */

/**
 * Whether the PostgreSQL tests can run here: always, on a server or on PGlite. In CI a missing
 * server is an error, not PGlite (.ci/run starts one); pg-server.ts throws it.
 */
export async function postgresAvailable(): Promise<boolean> {
  await pgServer();
  return true;
}

/** Whether several processes can share a scratch database (a server; not PGlite, which lives in this test process). */
export async function postgresMultiProcess(): Promise<boolean> {
  return (await pgServer()).multiProcess;
}

/** Superuser URLs of this process's scratch databases, by name. */
const scratchAdmins = new Map<string, string>();

/** Runs `fn` as the superuser on `db`, a scratch database or (on a server) any (scratch set-up and inspection only). */
export async function asSuperuser<T>(db: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const url = scratchAdmins.get(db) ?? (await pgServer()).superuserUrl(db);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface ScratchDatabase {
  /** The database's name. */
  name: string;
  /** The owning role's URL (TENANTGATE_MIGRATION_DATABASE): it owns the tables, held to the wall by FORCE. */
  ownerUrl: string;
  /** The request role's URL (TENANTGATE_DATABASE); the role exists once migrated (by `migrate` here, or by openStore with the owner URL). */
  requestUrl: string;
  /** What the first migration did, when `migrate` was asked for. */
  migration: PgMigrateResult | undefined;
  /** A statement as the superuser on this database, for a test to look at or plant rows (bypasses RLS: never for requests). */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]): Promise<R[]>;
  /** Ends every other connection to the database of the given application_name (or all), as a crash or failover would. */
  terminate(applicationName?: string): Promise<number>;
  /** Drops the database and its roles; once. */
  drop(): Promise<void>;
}

export interface ScratchOptions {
  /** Migrate it (creating the request role) before returning; default true. */
  migrate?: boolean;
  /** Give the request role a password (it goes in requestUrl), to prove a URL's password never reaches a log. */
  password?: string;
}

/** A fresh database, owning role and request role name, on the test server. */
export async function createScratchDatabase(options: ScratchOptions = {}): Promise<ScratchDatabase> {
  const server = await pgServer();
  const created = await server.createScratch();
  const name = created.database;
  scratchAdmins.set(name, created.superuserUrl);
  const ownerUrl = created.ownerUrl;
  const requestUrl = options.password ? withPassword(created.requestUrl, options.password) : created.requestUrl;
  let dropping: Promise<void> | undefined;
  const scratch: ScratchDatabase = {
    name,
    ownerUrl,
    requestUrl,
    migration: undefined,
    query: async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) =>
      asSuperuser(name, async (c) => (await c.query<R>(text, values)).rows),
    terminate: async (applicationName) => {
      if (!server.multiProcess) throw new Error('terminate() needs a PostgreSQL server: PGlite has one backend for every client');
      return asSuperuser(name, async (c) => {
        const { rows } = await c.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE datname = $1 AND pid <> pg_backend_pid() AND ($2::text IS NULL OR application_name = $2)`,
          [name, applicationName ?? null],
        );
        return rows[0]?.n ?? 0;
      });
    },
    drop: () =>
      (dropping ??= created.drop().finally(() => {
        scratchAdmins.delete(name);
      })),
  };
  if (options.migrate !== false) {
    try {
      scratch.migration = await migratePostgres({ ownerUrl, requestUrl });
    } catch (error) {
      await scratch.drop();
      throw error;
    }
  }
  return scratch;
}
