import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { SecretBox } from '../src/crypto/secret-box.ts';
import { migratePostgres } from '../src/store/postgres/migrate.ts';
import { orgRows, PLANS, type BenchKey, type StorePlan } from './seed.ts';

/**
 * The benchmark's data on PostgreSQL (issue 13, item 7): the same plans as the SQLite stores in
 * bench/seed.ts, row for row (orgRows), in scratch databases that the bench creates and drops.
 *
 * Each database belongs to a scratch owning role (not a superuser, so FORCE ROW LEVEL SECURITY holds
 * it too) and is migrated by `migratePostgres`, which also creates the scratch request role and its
 * grants: requests, ours and PostGraphile's, run as that role. The superuser only creates and drops
 * the scratch databases and roles and bulk-loads the rows (the owner cannot: after FORCE, the
 * policies admit no insert into orgs); it never serves a request.
 *
 * Rows go in by COPY, one per table, in one transaction per database, with the foreign keys'
 * triggers off while loading (session_replication_role = replica: the rows are generated
 * consistent) and the secondary indexes built after the rows, then VACUUM ANALYZE so that the
 * planner and the visibility map start as a settled database's would. The 1M-row database loads in
 * seconds.
 */

export const PG_HOST = process.env.BENCH_PG_HOST ?? '127.0.0.1:5432';
const SUPERUSER = process.env.BENCH_PG_SUPERUSER ?? 'postgres';
const url = (role: string, db: string) => `postgres://${encodeURIComponent(role)}@${PG_HOST}/${db}`;

export interface PgStore {
  database: string;
  /** The request role's URL: TENANTGATE_DATABASE for our gateway, BENCH_PG_URL for PostGraphile. */
  requestUrl: string;
  /** The owning role's URL (TENANTGATE_MIGRATION_DATABASE). */
  ownerUrl: string;
  plan: StorePlan;
  orgs: number;
  modules: number;
  credentials: number;
  keys: BenchKey[];
  seedMs: number;
}

export interface PgFixture {
  owner: string;
  request: string;
  main: PgStore;
  scale?: { scale10k: PgStore; scale1m: PgStore };
  /** Drops the scratch databases and roles. */
  drop(): Promise<void>;
}

/** A connection as the superuser, for the scratch databases' life cycle and the bench's own probes: never for a request. */
export async function asSuperuserOn<T>(db: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url(SUPERUSER, db), connectionTimeoutMillis: 3000 });
  // A connection ended under a query (the drop of an interrupted run ends the loading one) rejects
  // that query; without a listener the client's 'error' event would also end the process.
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Whether a PostgreSQL server answers at PG_HOST as the superuser. */
export async function postgresAnswers(): Promise<boolean> {
  try {
    await asSuperuserOn('postgres', (c) => c.query('SELECT 1'));
    return true;
  } catch {
    return false;
  }
}


/** A value in COPY's text format: NULL as \N; backslash, tab, newline and carriage return escaped. */
function field(value: string | number | boolean | Buffer | null): string {
  if (value === null) return '\\N';
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (typeof value === 'number') return String(value);
  if (Buffer.isBuffer(value)) return `\\\\x${value.toString('hex')}`;
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!) : value;
}
const line = (values: Array<string | number | boolean | Buffer | null>) => `${values.map(field).join('\t')}\n`;

/** The part of node-postgres' connection that a COPY FROM STDIN needs (its Submittable protocol). */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
  stream: NodeJS.WritableStream & { writableNeedDrain?: boolean };
}

/**
 * `COPY ... FROM STDIN` on a node-postgres client, fed by `produce` (which awaits `write` for
 * back-pressure). node-postgres runs any object with `submit` as a query and hands it the
 * protocol's messages; this one answers CopyInResponse with the rows. Written here rather than
 * adding a dependency for one bench step.
 */
function copyFrom(client: pg.Client, text: string, produce: (write: (chunk: string) => Promise<void>) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: unknown;
    const submittable = {
      text,
      submit(connection: CopyConnection) {
        connection.query(text);
      },
      handleCopyInResponse(connection: CopyConnection) {
        const write = async (chunk: string) => {
          connection.sendCopyFromChunk(Buffer.from(chunk, 'utf8'));
          if (connection.stream.writableNeedDrain) await new Promise((done) => connection.stream.once('drain', done));
        };
        produce(write).then(
          () => connection.endCopyFrom(),
          (error: unknown) => {
            failure = error;
            connection.sendCopyFail(error instanceof Error ? error.message : String(error));
          },
        );
      },
      handleError(error: unknown) {
        failure ??= error;
      },
      handleReadyForQuery() {
        if (failure === undefined) resolve();
        else reject(failure);
      },
      handleCommandComplete() {},
      handleRowDescription() {},
      handleDataRow() {},
      handleEmptyQuery() {},
      handlePortalSuspended() {},
      handleCopyData() {},
    };
    client.query(submittable as unknown as pg.QueryConfig);
  });
}

const TABLES = ['orgs', 'api_keys', 'modules', 'org_keys', 'credentials'];
/** Text gathered before it is written to a COPY. */
const CHUNK = 1 << 16;

/**
 * Loads a plan's rows with one COPY per table. The modules stream to the server as they are
 * generated; the orgs, keys and credentials (a tenth as many) are gathered on the way and copied
 * after (the foreign keys' triggers are off while loading, so the order is free). The secondary
 * indexes (those that back no constraint) are dropped first and built again from their own
 * definitions once the rows are in: one sort per index instead of a million insertions, as
 * pg_restore does.
 */
async function load(client: pg.Client, plan: StorePlan, secretBox: SecretBox): Promise<Pick<PgStore, 'orgs' | 'modules' | 'credentials' | 'keys'>> {
  const { rows: indexes } = await client.query<{ name: string; definition: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
       FROM pg_index i
      WHERE i.indrelid = ANY($1::regclass[])
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`,
    [TABLES],
  );
  for (const index of indexes) await client.query(`DROP INDEX ${index.name}`);

  const keys: BenchKey[] = [];
  const rest = { orgs: [] as string[], keys: [] as string[], credentials: [] as string[], orgKeys: [] as string[] };
  let modules = 0;
  let credentials = 0;
  await copyFrom(
    client,
    'COPY modules (org_id, module_id, name, version, description, config, enabled, health_status, usage_count, installed_at, updated_at) FROM STDIN',
    async (write) => {
      let chunk = '';
      for (let o = 0; o < plan.orgIds.length; o++) {
        const rows = orgRows(plan, o, secretBox);
        const orgId = rows.org.id;
        keys.push(...rows.secrets);
        rest.orgs.push(line([orgId, rows.org.name, rows.org.createdAt]));
        const k = rows.orgKey;
        rest.orgKeys.push(line([orgId, k.keyId, k.wrapped, k.iv, k.tag, k.masterKeyId, k.createdAt]));
        for (const k of rows.keys) rest.keys.push(line([k.id, orgId, k.name, k.prefix, k.hash, k.scopes, k.createdAt]));
        for (const c of rows.credentials) rest.credentials.push(line([orgId, c.moduleId, c.ciphertext, c.iv, c.tag, c.keyId, c.fields, c.at, c.at]));
        for (const m of rows.modules) {
          chunk += line([orgId, m.moduleId, m.name, m.version, m.description, m.config, m.enabled, m.healthStatus, m.usageCount, m.at, m.at]);
        }
        modules += rows.modules.length;
        credentials += rows.credentials.length;
        if (chunk.length >= CHUNK) {
          await write(chunk);
          chunk = '';
        }
      }
      if (chunk) await write(chunk);
    },
  );
  const copyAll = (text: string, lines: string[]) =>
    copyFrom(client, text, async (write) => {
      for (let i = 0; i < lines.length; i += 512) await write(lines.slice(i, i + 512).join(''));
    });
  await copyAll('COPY orgs (id, name, created_at) FROM STDIN', rest.orgs);
  await copyAll('COPY api_keys (id, org_id, name, prefix, hash, scopes, created_at) FROM STDIN', rest.keys);
  await copyAll('COPY org_keys (org_id, key_id, wrapped, iv, tag, master_key_id, created_at) FROM STDIN', rest.orgKeys);
  await copyAll('COPY credentials (org_id, module_id, ciphertext, iv, tag, key_id, fields, created_at, updated_at) FROM STDIN', rest.credentials);

  await client.query(`SET LOCAL maintenance_work_mem = '256MB'`);
  for (const index of indexes) await client.query(index.definition);
  return { orgs: plan.orgIds.length, modules, credentials, keys };
}

/** The drops of the scratch databases still up: an interrupted run (Ctrl-C, SIGTERM) runs them before it exits. */
const live = new Set<() => Promise<void>>();
let handlersInstalled = false;
function dropOnSignal(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`bench: ${signal}: dropping the PostgreSQL scratch databases\n`);
      void Promise.allSettled([...live].map((drop) => drop())).finally(() => process.kill(process.pid, signal));
    });
  }
}

/**
 * Creates the scratch roles and databases, migrates them and loads the main store's rows and, with
 * `scale`, the scale pair's. `masterKey` seals the credentials (the gateway gets it through
 * TENANTGATE_MASTER_KEY). On any failure what was created is dropped again.
 */
export async function seedPostgres(masterKey: Buffer, log: (line: string) => void, { scale }: { scale: boolean }): Promise<PgFixture> {
  const suffix = randomBytes(4).toString('hex');
  const owner = `tgbench_owner_${suffix}`;
  const request = `tgbench_req_${suffix}`;
  const databases: string[] = [];
  const drop = async () => {
    live.delete(drop);
    await asSuperuserOn('postgres', async (c) => {
      for (const db of databases) await c.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
      await c.query(`DROP ROLE IF EXISTS "${request}"`);
      await c.query(`DROP ROLE IF EXISTS "${owner}"`);
    });
  };
  live.add(drop);
  dropOnSignal();
  const secretBox = new SecretBox(masterKey);

  const seed = async (name: string, plan: StorePlan): Promise<PgStore> => {
    const started = performance.now();
    const database = `tgbench_${suffix}_${name}`;
    await asSuperuserOn('postgres', (c) => c.query(`CREATE DATABASE "${database}" OWNER "${owner}"`));
    databases.push(database);
    const ownerUrl = url(owner, database);
    const requestUrl = url(request, database);
    await migratePostgres({ ownerUrl, requestUrl });
    const loaded = await asSuperuserOn(database, async (c) => {
      await c.query('BEGIN');
      // A scratch database rebuilt on any failure: no wait for the WAL flush; no per-row FK triggers.
      await c.query('SET LOCAL synchronous_commit = off');
      await c.query('SET LOCAL session_replication_role = replica');
      const result = await load(c, plan, secretBox);
      await c.query('COMMIT');
      await c.query('VACUUM (ANALYZE) orgs, api_keys, modules, credentials');
      return result;
    });
    const seedMs = performance.now() - started;
    log(
      `seeded PostgreSQL ${database}: ${loaded.orgs} orgs, ${loaded.modules} modules, ${loaded.credentials} credentials, ` +
        `${loaded.keys.length} keys in ${(seedMs / 1000).toFixed(1)} s`,
    );
    return { database, requestUrl, ownerUrl, plan, seedMs, ...loaded };
  };

  try {
    await asSuperuserOn('postgres', async (c) => {
      // The owning role: not a superuser (FORCE holds it too); CREATEROLE so migrating creates the request role.
      await c.query(`CREATE ROLE "${owner}" LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE`);
    });
    const main = await seed('main', PLANS.main);
    if (!scale) return { owner, request, main, drop };
    const scale10k = await seed('scale10k', PLANS.scale10k);
    const scale1m = await seed('scale1m', PLANS.scale1m);
    return { owner, request, main, scale: { scale10k, scale1m }, drop };
  } catch (error) {
    await drop().catch(() => {});
    throw error;
  }
}
