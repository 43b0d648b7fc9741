import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';
import { pgServer } from './helpers/pg-server.ts';
import { asSuperuser, postgresMultiProcess } from './helpers/postgres.ts';
import { startReplica, summary, type Replica } from './helpers/replica.ts';
import { subscribe } from './helpers/sse.ts';

// Several gateway processes (src/main.ts, as `npm start` runs it) on one scratch PostgreSQL
// database (issue 13 item 4). Needs a PostgreSQL server: PGlite lives inside this test process.
const multiProcess = await postgresMultiProcess();
if (!multiProcess) console.log('replicas: skipped, several processes need a PostgreSQL server (PGlite lives in the test process)');

const MODULE = 'query($id: ID!) { module(id: $id) { name } }';
const RENAME = 'mutation($n: String!) { updateModule(id: "github", input: { name: $n }) { name } }';
const VIEWER_KEY = '{ viewer { apiKey { id } } }';
const REVOKE = 'mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const FAILURES_PER_MINUTE = 6;
/** Generous bounds: the figures measured are printed, and the README quotes them. */
const PROPAGATION_BOUND_MS = 2_000;
const REVOCATION_BOUND_MS = 1_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, everyMs = 2): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

describe.skipIf(!multiProcess)('three replicas on one PostgreSQL database', () => {
  const masterKey = randomBytes(32).toString('base64');
  let seed: TestGateway;
  let replicas: Replica[] = [];
  let A: Replica;
  let B: Replica;
  let C: Replica;
  let key: string;

  beforeAll(async () => {
    // The seeding gateway (in process) migrates the scratch database, makes the orgs, keys and modules.
    seed = await createTestGateway({ dialect: 'postgres', env: { TENANTGATE_MASTER_KEY: masterKey } });
    key = seed.keys.a;
    const env = {
      TENANTGATE_DATABASE: seed.postgres!.requestUrl,
      TENANTGATE_MASTER_KEY: masterKey,
      // Far past every bound below: a revocation must reach the other replicas through the feed.
      TENANTGATE_KEY_CACHE_TTL_MS: '600000',
      TENANTGATE_AUTH_FAILURES_PER_MINUTE: String(FAILURES_PER_MINUTE),
      TENANTGATE_DATABASE_STATEMENT_TIMEOUT_MS: '2000',
    };
    replicas = await Promise.all(['a', 'b', 'c'].map((name) => startReplica(name, env)));
    [A, B, C] = replicas as [Replica, Replica, Replica];
  }, 120_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await seed?.close();
  }, 60_000);

  /** Reads github's name on `r` twice; the second answer must come from its response cache. */
  async function warm(r: Replica): Promise<string> {
    const from = r.lines.length;
    const first = await r.gql(key, MODULE, { id: 'github' });
    expect(first.status).toBe(200);
    const second = await r.gql(key, MODULE, { id: 'github' });
    expect(second.body.data.module.name).toBe(first.body.data.module.name);
    // A request's line is written once its answer is: wait for both.
    await until(`${r.name}'s request lines`, async () => (r.requests(from).length >= 2 ? true : undefined), 2_000);
    expect(r.requests(from)[1]?.cache).toBe('hit');
    return second.body.data.module.name as string;
  }

  it('a write through A: read-your-writes on A, and B and C, whose caches held the old answer, answer the new data within a bounded delay (measured)', async () => {
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      for (const r of [B, C]) await warm(r);
      const name = `renamed ${i} ${randomBytes(3).toString('hex')}`;
      const wrote = await A.gql(key, RENAME, { n: name });
      expect(wrote.body).toEqual({ data: { updateModule: { name } } });
      const acknowledged = performance.now();
      // The writing replica counts its own write at once: its cache never answers the old name.
      expect((await A.gql(key, MODULE, { id: 'github' })).body.data.module.name).toBe(name);
      await Promise.all(
        [B, C].map(async (r) => {
          await until(`${r.name} answers the new name`, async () => {
            const res = await r.gql(key, MODULE, { id: 'github' });
            expect(res.status).toBe(200);
            return res.body.data.module.name === name ? true : undefined;
          }, PROPAGATION_BOUND_MS, 1);
          delays.push(performance.now() - acknowledged);
        }),
      );
    }
    const figures = summary(delays);
    console.log(`replicas: a write on A answered by B and C ${figures.p50} ms (p50), ${figures.max} ms (max) after A acknowledged it, over ${figures.n} reads`);
    expect(figures.max).toBeLessThan(PROPAGATION_BOUND_MS);
  });

  it('B whose LISTEN connection is ended answers nothing from its caches until it listens again and has flushed them: a write on A meanwhile is read fresh on B', async () => {
    const db = seed.postgres!.name;
    let before = await warm(B);
    // New connections refused (the replicas' pooled ones stay), then every listening connection ended:
    // no replica can listen again until connections are allowed.
    await asSuperuser('postgres', (c) => c.query(`ALTER DATABASE "${db}" ALLOW_CONNECTIONS false`));
    try {
      const ended = await asSuperuser('postgres', async (c) =>
        (await c.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenantgate-listen'`,
          [db],
        )).rows[0]!.n,
      );
      expect(ended).toBeGreaterThanOrEqual(3);
      await until('B reports it is not ready', async () => ((await B.get('/ready')).status === 503 ? true : undefined), 5_000, 20);
      const from = B.lines.length;
      for (let i = 0; i < 3; i++) {
        const name = `while B is deaf ${i}`;
        expect((await A.gql(key, RENAME, { n: name })).body).toEqual({ data: { updateModule: { name } } });
        const read = await B.gql(key, MODULE, { id: 'github' });
        expect(read.body).toEqual({ data: { module: { name } } });
        before = name;
      }
      await sleep(50);
      const lines = B.requests(from).filter((l) => l.path === '/graphql');
      expect(lines.length).toBe(3);
      expect(lines.map((l) => l.cache)).not.toContain('hit');
    } finally {
      await asSuperuser('postgres', (c) => c.query(`ALTER DATABASE "${db}" ALLOW_CONNECTIONS true`));
    }
    const down = performance.now();
    await until('B is ready again', async () => ((await B.get('/ready')).status === 200 ? true : undefined), 10_000, 20);
    console.log(`replicas: B listening and ready again ${Math.round(performance.now() - down)} ms after connections were allowed`);
    // Listening again: the first read fills the cache, the next is answered from it, both fresh.
    expect(await warm(B)).toBe(before);
  });

  it("a module's events reach every replica's subscribers through the one notification channel, once each and only the org's (measured)", async () => {
    const query = 'subscription { moduleEvents { kind moduleId orgId module { name health { status } } } }';
    const [onB, onC, otherOrg] = await Promise.all([subscribe(B, key, query), subscribe(C, key, query), subscribe(B, seed.keys.b, query)]);
    try {
      await sleep(100);
      const delays: number[] = [];
      for (let i = 0; i < 5; i++) {
        const name = `live-${i}-${randomBytes(3).toString('hex')}`;
        const sent = performance.now();
        const renamed = await A.gql(key, RENAME, { n: name });
        expect(renamed.body.data.updateModule.name).toBe(name);
        for (const stream of [onB, onC]) {
          const event = (await stream.nth(i, PROPAGATION_BOUND_MS)).data.moduleEvents;
          expect(event).toMatchObject({ kind: 'CHANGED', moduleId: 'github', orgId: ORG_A, module: { name } });
          delays.push(performance.now() - sent);
        }
      }
      const report = await A.gql(seed.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_A}", moduleId: "github", status: DEGRADED) { id } }`);
      expect(report.status).toBe(200);
      expect((await onB.nth(5, PROPAGATION_BOUND_MS)).data.moduleEvents).toMatchObject({ kind: 'HEALTH_REPORTED', module: { health: { status: 'DEGRADED' } } });
      await sleep(300);
      // Once each (a replica hears each write once), and nothing of org A's on org B's stream.
      expect(onB.results).toHaveLength(6);
      expect(onC.results).toHaveLength(6);
      expect(otherOrg.events).toEqual([]);
      console.log(`replicas: module events from A reached B and C in ms ${JSON.stringify(summary(delays))}`);
    } finally {
      for (const stream of [onB, onC, otherOrg]) stream.close();
    }
  });

  it('a key revoked through A is refused by B and C within 1 s (measured), with a key-cache TTL of 10 minutes', async () => {
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const doomed = await seed.key(ORG_A, ['modules:read']);
      const id = (await B.gql(doomed, VIEWER_KEY)).body.data.viewer.apiKey.id as string;
      for (const r of [B, C]) for (let n = 0; n < 2; n++) expect((await r.gql(doomed, MODULE, { id: 'github' })).status).toBe(200);
      const revoked = await A.gql(key, REVOKE, { id });
      expect(revoked.body.data.revokeApiKey.id).toBe(id);
      const acknowledged = performance.now();
      // On A itself at once.
      // Refused: 401, or 429 once this address's failures (these polls count) pass the limit.
      expect([401, 429]).toContain((await A.gql(doomed, MODULE, { id: 'github' })).status);
      await Promise.all(
        [B, C].map(async (r) => {
          await until(`${r.name} refuses the revoked key`, async () => {
            const status = (await r.gql(doomed, MODULE, { id: 'github' })).status;
            if (status === 200) return undefined;
            expect([401, 429]).toContain(status);
            return true;
          }, REVOCATION_BOUND_MS, 1);
          delays.push(performance.now() - acknowledged);
        }),
      );
    }
    const figures = summary(delays);
    console.log(`replicas: a key revoked on A refused by B and C ${figures.p50} ms (p50), ${figures.max} ms (max) after A acknowledged it`);
    expect(figures.max).toBeLessThan(REVOCATION_BOUND_MS);
  });

  it('the failed-authentication limit is counted once across the replicas, and still admits a valid key from that address', async () => {
    const address = '127.0.0.77';
    const bad = `tgk_${'x'.repeat(40)}`;
    for (let i = 0; i < FAILURES_PER_MINUTE; i++) {
      const r = [A, B][i % 2]!;
      const res = await r.gql(bad, VIEWER_KEY, undefined, { address });
      expect(res.status).toBe(401);
    }
    // The seventh failure, on a replica that has seen none from this address: over the shared limit.
    const limited = await C.gql(bad, VIEWER_KEY, undefined, { address });
    expect(limited.status).toBe(429);
    expect(limited.body.errors[0].extensions.code).toBe('RATE_LIMITED');
    // Only failures are limited; another address is not.
    expect((await C.gql(key, VIEWER_KEY, undefined, { address })).status).toBe(200);
    expect((await C.gql(bad, VIEWER_KEY, undefined, { address: '127.0.0.78' })).status).toBe(401);
    const rows = await seed.postgres!.query<{ key: string; points: number }>(
      'SELECT key, points FROM tenantgate_limits.auth_failures WHERE key = ANY($1) ORDER BY key',
      [[`auth:${address}`, 'auth:127.0.0.78']],
    );
    expect(rows).toEqual([
      { key: `auth:${address}`, points: FAILURES_PER_MINUTE },
      { key: 'auth:127.0.0.78', points: 1 },
    ]);
  });

  it('last-used times from A and B: a touch batch waiting on a locked key row slows no request, and the latest time lands', async () => {
    const used = await seed.key(ORG_A, ['modules:read']);
    const id = (await A.gql(used, VIEWER_KEY)).body.data.viewer.apiKey.id as string;
    // The superuser locks the key's row, as a long transaction elsewhere would: each replica's next
    // batch (every 5 s) waits on it, up to the lock timeout, and keeps its times for the next batch.
    const lock = await asSuperuserSession(seed.postgres!.name);
    await lock.query('BEGIN');
    await lock.query('SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE', [id]);
    const latencies: number[] = [];
    let sawWaitingTouch = false;
    try {
      const end = performance.now() + 6_000;
      let n = 0;
      while (performance.now() < end) {
        const res = await [A, B][n++ % 2]!.gql(used, MODULE, { id: 'github' });
        expect(res.status).toBe(200);
        latencies.push(res.ms);
        if (n % 20 === 0 && !sawWaitingTouch) {
          const waiting = await seed.postgres!.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE '%tenantgate_touch_keys%'`,
            [seed.postgres!.name],
          );
          sawWaitingTouch = waiting[0]!.n > 0;
        }
      }
    } finally {
      await lock.query('COMMIT');
      await lock.end();
    }
    expect(sawWaitingTouch).toBe(true);
    const figures = summary(latencies);
    console.log(`replicas: ${figures.n} requests while a touch batch waited on the key's row: p50 ${figures.p50} ms, max ${figures.max} ms`);
    expect(figures.max).toBeLessThan(1_000);

    // Used last on B; A's time is older. B stops first, A last: A's older batch must not overwrite B's.
    await A.gql(used, MODULE, { id: 'github' });
    await sleep(5);
    const lastSent = new Date().toISOString();
    expect((await B.gql(used, MODULE, { id: 'github' })).status).toBe(200);
    const answered = new Date().toISOString();
    expect(await B.stop()).toBe(0);
    expect(await A.stop()).toBe(0);
    const [row] = await seed.postgres!.query<{ last_used_at: string }>('SELECT last_used_at FROM api_keys WHERE id = $1', [id]);
    expect(row!.last_used_at >= lastSent && row!.last_used_at <= answered).toBe(true);
  }, 60_000);
});

/** A superuser session on the scratch database (to hold a lock across statements). */
async function asSuperuserSession(db: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: (await pgServer()).superuserUrl(db) });
  await client.connect();
  return client;
}
