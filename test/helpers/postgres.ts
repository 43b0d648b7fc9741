import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migratePostgres, type PgMigrateResult } from '../../src/store/postgres/migrate.ts';

/**
 * Scratch PostgreSQL databases for tests: one per call, owned by a fresh owning role (no
 * superuser, so FORCE holds it too), dropped with its roles by `drop()`. The superuser only creates
 * and drops them and inspects rows; it never stands in for a request (it bypasses RLS even with
 * FORCE). The server is TG_TEST_POSTGRES (a superuser URL without a database), by default the
 * local one.
 */
export const PG_SERVER = process.env.TG_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432';
const inCi = Boolean(process.env.CI) && process.env.CI !== 'false';

const urlOf = (role: string, db: string, password?: string) => {
  const server = new URL(PG_SERVER);
  return `postgres://${encodeURIComponent(role)}${password ? `:${encodeURIComponent(password)}` : ''}@${server.host}/${db}`;
};
const superuserUrl = (db: string) => {
  const url = new URL(PG_SERVER);
  url.pathname = `/${db}`;
  return url.toString();
};

let answered: Promise<boolean> | undefined;

/**
 * Whether the server answers (asked once per test file). In CI a missing server is an error, not
 * a skip: .ci/run starts one.
 */
export function postgresAvailable(): Promise<boolean> {
  answered ??= (async () => {
    const client = new pg.Client({ connectionString: superuserUrl('postgres'), connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      if (inCi) throw new Error(`no PostgreSQL answers at ${new URL(PG_SERVER).host}, and CI must run the PostgreSQL tests (.ci/run starts the server)`);
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return answered;
}

/** Runs `fn` as the superuser on `db` (scratch set-up and inspection only). */
export async function asSuperuser<T>(db: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: superuserUrl(db) });
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
  const suffix = randomBytes(5).toString('hex');
  const name = `tenantgate_test_${suffix}`;
  const owner = `tenantgate_owner_${suffix}`;
  const request = `tenantgate_req_${suffix}`;
  await asSuperuser('postgres', async (c) => {
    // CREATEROLE: migrating creates the request role. The database's owner owns its public schema (pg_database_owner).
    await c.query(`CREATE ROLE "${owner}" LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE`);
    await c.query(`CREATE DATABASE "${name}" OWNER "${owner}"`);
  });
  const ownerUrl = urlOf(owner, name);
  const requestUrl = urlOf(request, name, options.password);
  let dropping: Promise<void> | undefined;
  const scratch: ScratchDatabase = {
    name,
    ownerUrl,
    requestUrl,
    migration: undefined,
    query: async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) =>
      asSuperuser(name, async (c) => (await c.query<R>(text, values)).rows),
    terminate: async (applicationName) =>
      asSuperuser(name, async (c) => {
        const { rows } = await c.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE datname = $1 AND pid <> pg_backend_pid() AND ($2::text IS NULL OR application_name = $2)`,
          [name, applicationName ?? null],
        );
        return rows[0]?.n ?? 0;
      }),
    drop: () =>
      (dropping ??= asSuperuser('postgres', async (c) => {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await c.query(`DROP ROLE IF EXISTS "${request}"`);
        await c.query(`DROP ROLE IF EXISTS "${owner}"`);
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
