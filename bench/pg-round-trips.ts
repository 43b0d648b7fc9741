import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { seedPostgres } from './postgres-seed.ts';
import { MODULES_PER_ORG } from './seed.ts';

/**
 * `npx tsx bench/pg-round-trips.ts [seconds]`: what the shape of the executed page's database work
 * costs, with GraphQL and HTTP out of the way. On the bench's main PostgreSQL store, as the request
 * role, with a pool of 10 and 50 concurrent callers (the bench's connections), each page (20 rows
 * and the count of one org, orgs in turn) is fetched three ways:
 *
 * - two transactions in parallel, one for the rows and one for the count, each BEGIN + set_config,
 *   the statement, COMMIT: two pooled connections and six round trips a page (the PostgreSQL
 *   store's shape when the page's resolvers call `list` and `count` separately);
 * - one transaction holding both statements: one connection, four round trips;
 * - the same transaction pipelined (node-postgres 8.23's `pipeline` mode): one round trip.
 *
 * Every answer is checked (20 rows, the org's count), so a shape that lost the org's setting would
 * fail rather than look fast.
 */

const seconds = Number(process.argv[2] ?? '4');
const CALLERS = 50;
const POOL_MAX = 10;
const PAGE = 'SELECT "org_id", "module_id", "name", "version", "enabled" FROM "modules" WHERE "org_id" = $1 AND "module_id" > $2 ORDER BY "module_id" LIMIT $3';
const COUNT = 'SELECT count(*)::integer AS n FROM "modules" WHERE "org_id" = $1';

type Shape = (pool: pg.Pool, org: string) => Promise<void>;

function check(rows: number, count: number): void {
  if (rows !== 20 || count !== MODULES_PER_ORG) throw new Error(`wrong page: ${rows} rows, count ${count}`);
}

async function inTransaction<T>(pool: pg.Pool, org: string, work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query(`BEGIN; SELECT set_config('app.org_id', ${c.escapeLiteral(org)}, true)`);
    const result = await work(c);
    await c.query('COMMIT');
    return result;
  } finally {
    c.release();
  }
}

const shapes: Array<{ name: string; pipeline: boolean; page: Shape }> = [
  {
    name: 'two transactions in parallel (rows, count): 2 connections, 6 round trips',
    pipeline: false,
    page: async (pool, org) => {
      const [rows, count] = await Promise.all([
        inTransaction(pool, org, (c) => c.query({ name: 'page', text: PAGE, values: [org, '', 20] })),
        inTransaction(pool, org, (c) => c.query<{ n: number }>({ name: 'count', text: COUNT, values: [org] })),
      ]);
      check(rows.rows.length, count.rows[0]!.n);
    },
  },
  {
    name: 'one transaction (rows, then count): 1 connection, 4 round trips',
    pipeline: false,
    page: async (pool, org) => {
      await inTransaction(pool, org, async (c) => {
        const rows = await c.query({ name: 'page', text: PAGE, values: [org, '', 20] });
        const count = await c.query<{ n: number }>({ name: 'count', text: COUNT, values: [org] });
        check(rows.rows.length, count.rows[0]!.n);
      });
    },
  },
  {
    name: 'one transaction, pipelined: 1 connection, 1 round trip',
    pipeline: true,
    page: async (pool, org) => {
      const c = await pool.connect();
      try {
        const [, , rows, count] = await Promise.all([
          c.query('BEGIN'),
          c.query("SELECT set_config('app.org_id', $1, true)", [org]),
          c.query({ name: 'page', text: PAGE, values: [org, '', 20] }),
          c.query<{ n: number }>({ name: 'count', text: COUNT, values: [org] }),
          c.query('COMMIT'),
        ]);
        check(rows.rows.length, count.rows[0]!.n);
      } finally {
        c.release();
      }
    },
  },
];

const fixture = await seedPostgres(randomBytes(32), (line) => process.stderr.write(`${line}\n`), { scale: false });
try {
  const orgs = fixture.main.plan.orgIds;
  for (const shape of shapes) {
    const pool = new pg.Pool({ connectionString: fixture.main.requestUrl, max: POOL_MAX, ...(shape.pipeline ? { pipeline: true } : {}) } as pg.PoolConfig);
    let measuring = false;
    let stop = false;
    const latencies: number[] = [];
    const caller = async (n: number) => {
      for (let i = n * Math.floor(orgs.length / CALLERS); !stop; i++) {
        const started = performance.now();
        await shape.page(pool, orgs[i % orgs.length]!);
        if (measuring) latencies.push(performance.now() - started);
      }
    };
    const callers = Array.from({ length: CALLERS }, (_, n) => caller(n));
    await new Promise((resolve) => setTimeout(resolve, 1000)); // warm-up: connections, prepared statements
    measuring = true;
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    stop = true;
    const pages = latencies.length;
    await Promise.all(callers);
    await pool.end();
    latencies.sort((a, b) => a - b);
    const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!.toFixed(1);
    process.stdout.write(`${shape.name}: ${(pages / seconds).toFixed(0)} pages/s, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms\n`);
  }
} finally {
  await fixture.drop();
}
