import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import type { PgliteServer } from './pglite-server.ts';

/**
 * Which PostgreSQL the tests use, chosen once per run (test/setup/postgres.ts prints the choice):
 * - TG_TEST_POSTGRES, a superuser's URL (or a role with CREATEDB and CREATEROLE) of a server for
 *   scratch databases (database `postgres` when the URL names none); default the local server;
 * - when that server does not answer: under CI an error (.ci/run starts the server, so CI always
 *   runs everything); elsewhere PGlite in each test process, where only the tests that need several
 *   processes on one server are skipped. TG_TEST_POSTGRES=pglite chooses PGlite outright.
 * The superuser only creates, seeds and drops scratch databases: it bypasses RLS even when forced,
 * so it never serves a request.
 */

// TG_, not TENANTGATE_: a test setting, not one of the gateway's (test/readme-config.test.ts).
export const TEST_POSTGRES_SETTING = 'TG_TEST_POSTGRES';
export const DEFAULT_TEST_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

export type PgChoice =
  | { kind: 'server'; url: string; where: string }
  | { kind: 'pglite'; reason: string };

export type Env = Record<string, string | undefined>;

export const inCi = (env: Env = process.env) => Boolean(env.CI) && env.CI !== 'false' && env.CI !== '0';

/** host:port/database of a URL: what may be printed (never its role's password). */
export function where(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '5432'}${u.pathname === '/' ? '' : u.pathname}`;
}

async function probe(url: string): Promise<{ ok: true; canCreate: boolean } | { ok: false; code: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ ok: boolean }>(
      'SELECT rolsuper OR (rolcreatedb AND rolcreaterole) AS ok FROM pg_roles WHERE rolname = current_user',
    );
    return { ok: true, canCreate: rows[0]?.ok === true };
  } catch (error) {
    return { ok: false, code: (error as NodeJS.ErrnoException).code ?? 'error' };
  } finally {
    await client.end().catch(() => {});
  }
}

/** The choice for this run; throws (a clear sentence) where a fallback would hide a problem. */
export async function choosePostgres(env: Env = process.env): Promise<PgChoice> {
  const setting = env[TEST_POSTGRES_SETTING]?.trim();
  if (setting === 'pglite') return { kind: 'pglite', reason: `${TEST_POSTGRES_SETTING}=pglite` };
  let url = setting || DEFAULT_TEST_POSTGRES;
  let at: string;
  try {
    const parsed = new URL(url);
    if (!/^postgres(ql)?:$/.test(parsed.protocol)) throw new Error('not postgres');
    if (parsed.pathname === '' || parsed.pathname === '/') {
      parsed.pathname = '/postgres';
      url = parsed.toString();
    }
    at = where(url);
  } catch {
    throw new Error(`${TEST_POSTGRES_SETTING} must be a postgres:// URL (or "pglite")`);
  }
  const named = setting ? `${TEST_POSTGRES_SETTING} (${at})` : at;
  const found = await probe(url);
  if (found.ok) {
    if (!found.canCreate) throw new Error(`${named}: its role can create neither databases nor roles; name a superuser (or a role with CREATEDB and CREATEROLE)`);
    return { kind: 'server', url, where: at };
  }
  if (inCi(env)) {
    throw new Error(`no PostgreSQL answers at ${named} (${found.code}), and CI runs the PostgreSQL tests on a server (.ci/run starts it)`);
  }
  return { kind: 'pglite', reason: `no PostgreSQL answers at ${named} (${found.code})` };
}

/** The one line a run prints about its PostgreSQL. */
export function describeChoice(choice: PgChoice): string {
  return choice.kind === 'server'
    ? `postgres: the PostgreSQL tests use the server at ${choice.where} (a scratch database per store, dropped after)`
    : `postgres: ${choice.reason}: the PostgreSQL tests run on PGlite, and the tests that need several processes on one server are skipped (CI runs them)`;
}

declare module 'vitest' {
  export interface ProvidedContext {
    tenantgatePostgres: { choice: PgChoice; run: string };
  }
}

/** A scratch database with its owning role (migrations) and the request role it names (requests). */
export interface Scratch {
  kind: PgChoice['kind'];
  database: string;
  ownerRole: string;
  requestRole: string;
  /** The owning role's URL: TENANTGATE_MIGRATION_DATABASE. Not a superuser, so FORCE holds it too. */
  ownerUrl: string;
  /** The request role's URL: TENANTGATE_DATABASE. The role exists once migrations ran. */
  requestUrl: string;
  /** The superuser in this database, to seed and inspect; never to serve requests. */
  superuserUrl: string;
  /** Drops the database and its roles; safe to call twice. */
  drop(): Promise<void>;
}

export interface PgServer {
  kind: PgChoice['kind'];
  /** Several processes can share one database (false on PGlite: its server lives in this test process). */
  multiProcess: boolean;
  /** The server's superuser URL on `database` (a server only: PGlite has no databases but scratch ones). */
  superuserUrl(database: string): string;
  createScratch(): Promise<Scratch>;
}

/** Names of this run's scratch objects start with this, so the run's teardown finds leftovers. */
export const SCRATCH_PREFIX = 'tg_t_';

function provided(): { choice: PgChoice; run: string } | undefined {
  try {
    return inject('tenantgatePostgres');
  } catch {
    return undefined;
  }
}

let chosen: Promise<PgServer> | undefined;

/** This process's PostgreSQL for the tests (the run's choice; chosen here when no setup ran). */
export function pgServer(): Promise<PgServer> {
  chosen ??= (async () => {
    const given = provided();
    const choice = given?.choice ?? (await choosePostgres());
    const run = given?.run ?? randomBytes(3).toString('hex');
    return choice.kind === 'server' ? serverBacked(choice.url, run) : pgliteBacked();
  })();
  return chosen;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

function withDatabase(url: string, database: string, role?: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (role !== undefined) {
    u.username = role;
    u.password = '';
  }
  return u.toString();
}

async function asAdmin(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function serverBacked(adminUrl: string, run: string): PgServer {
  return {
    kind: 'server',
    multiProcess: true,
    superuserUrl: (database) => withDatabase(adminUrl, database),
    async createScratch() {
      const name = `${SCRATCH_PREFIX}${run}_${randomBytes(4).toString('hex')}`;
      const ownerRole = `${name}_owner`;
      const requestRole = `${name}_req`;
      // The owning role is no superuser (FORCE holds it) and may create the request role; as the
      // database's owner it owns its public schema (pg_database_owner).
      await asAdmin(adminUrl, `CREATE ROLE ${quoteIdent(ownerRole)} LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE`);
      await asAdmin(adminUrl, `CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(ownerRole)}`);
      let dropped: Promise<void> | undefined;
      return {
        kind: 'server',
        database: name,
        ownerRole,
        requestRole,
        ownerUrl: withDatabase(adminUrl, name, ownerRole),
        requestUrl: withDatabase(adminUrl, name, requestRole),
        superuserUrl: withDatabase(adminUrl, name),
        drop: () =>
          (dropped ??= (async () => {
            await asAdmin(adminUrl, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
            await asAdmin(adminUrl, `DROP ROLE IF EXISTS ${quoteIdent(requestRole)}`);
            await asAdmin(adminUrl, `DROP ROLE IF EXISTS ${quoteIdent(ownerRole)}`);
          })()),
      };
    },
  };
}

/** Drops what this run's scratch databases left behind (a test process that died before its afterAll). */
export async function dropRunLeftovers(adminUrl: string, run: string): Promise<number> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const like = `${SCRATCH_PREFIX}${run}\\_%`;
    const dbs = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [like]);
    for (const { datname } of dbs.rows) await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(datname)} WITH (FORCE)`);
    const roles = await client.query<{ rolname: string }>(
      `SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY rolname LIKE '%\\_owner' , rolname`,
      [like],
    );
    for (const { rolname } of roles.rows) await client.query(`DROP ROLE IF EXISTS ${quoteIdent(rolname)}`);
    return dbs.rows.length;
  } finally {
    await client.end();
  }
}

let pglite: Promise<PgliteServer> | undefined;

/** PGlite whatever the run chose (test/pg-server.test.ts proves the fallback on every run). */
export const pgliteForTests = (): PgServer => pgliteBacked();

function pgliteBacked(): PgServer {
  return {
    kind: 'pglite',
    multiProcess: false,
    superuserUrl: (database) => {
      throw new Error(`PGlite has no database "${database}": only scratch databases (createScratch)`);
    },
    async createScratch() {
      // Imported here: a run on a server never loads PGlite.
      pglite ??= import('./pglite-server.ts').then((m) => m.startPgliteServer());
      const server = await pglite;
      const name = `${SCRATCH_PREFIX}${randomBytes(4).toString('hex')}`;
      const ownerRole = `${name}_owner`;
      const requestRole = `${name}_req`;
      await server.createDatabase(name);
      // PGlite's one database is "postgres"; its owner owns the public schema, as above.
      await server.exec(name, `CREATE ROLE ${quoteIdent(ownerRole)} LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE; ALTER DATABASE postgres OWNER TO ${quoteIdent(ownerRole)};`);
      let dropped: Promise<void> | undefined;
      return {
        kind: 'pglite',
        database: name,
        ownerRole,
        requestRole,
        ownerUrl: server.url(ownerRole, name),
        requestUrl: server.url(requestRole, name),
        superuserUrl: server.url('postgres', name),
        drop: () => (dropped ??= server.dropDatabase(name)),
      };
    },
  };
}
