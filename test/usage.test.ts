/**
 * Metering, quotas and the per-org limits through the front door (issue 14), over the listener
 * `npm start` serves; on both dialects (vitest.config.ts runs this file again on PostgreSQL).
 * The stores' exactness under concurrency, child processes included, is proven in
 * test/usage-sqlite.test.ts and test/usage-postgres.test.ts.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { failure, ok, sleep } from './helpers/api.ts';
import { createTestGateway, DEFAULT_DIALECT, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';

const RECORD = 'mutation($i: RecordRunUnitsInput!) { recordRunUnits(input: $i) { repeat event { id units idempotencyKey moduleId occurredAt recordedAt keyId } } }';
const USAGE = '{ usage { runUnits quota remaining nearQuota warnAt requests periodStart periodEnd requestsPerMinute burst } }';

const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const gw of gateways.splice(0)) await gw.close();
});
async function gateway(env: Record<string, string> = {}, seed = true): Promise<TestGateway> {
  const gw = await createTestGateway({ env, seed });
  gateways.push(gw);
  return gw;
}

const record = (gw: TestGateway, key: string, input: Record<string, unknown>) => gw.gql(key, RECORD, { i: input });
const usage = async (gw: TestGateway, key: string) => ok(await gw.gql(key, USAGE)).usage;
const metric = async (gw: TestGateway, name: string): Promise<number> => {
  const text = await (await gw.fetch('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`) && false);
  return line === undefined ? NaN : Number(line.split(' ').at(-1));
};
const labelled = async (gw: TestGateway, name: string, label: string): Promise<number> => {
  const text = await (await gw.fetch('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${label}}`));
  return line === undefined ? NaN : Number(line.split(' ').at(-1));
};

describe('recordRunUnits', () => {
  it('records once per idempotency key: a repeat answers with the first record, whatever it carries', async () => {
    const gw = await gateway();
    const first = ok(await record(gw, gw.keys.a, { units: 40, idempotencyKey: 'run-1', moduleId: 'github' })).recordRunUnits;
    expect(first.repeat).toBe(false);
    expect(first.event).toMatchObject({ units: 40, idempotencyKey: 'run-1', moduleId: 'github' });
    expect(first.event.id).toMatch(/^ru_[a-z2-7]{24}$/);
    const viewer = ok(await gw.gql(gw.keys.a, '{ viewer { apiKey { id } } }')).viewer;
    expect(first.event.keyId).toBe(viewer.apiKey.id);

    const again = ok(await record(gw, gw.keys.a, { units: 999, idempotencyKey: 'run-1' })).recordRunUnits;
    expect(again).toEqual({ repeat: true, event: first.event });
    // Concurrent repeats of a new key: one is recorded, the rest are repeats of it.
    const burst = await Promise.all(Array.from({ length: 8 }, () => record(gw, gw.keys.a, { units: 2, idempotencyKey: 'run-2' })));
    const answers = burst.map((res) => ok(res).recordRunUnits);
    expect(answers.filter((a) => !a.repeat)).toHaveLength(1);
    expect(new Set(answers.map((a) => a.event.id)).size).toBe(1);

    expect((await usage(gw, gw.keys.a)).runUnits).toBe(42);
    expect(await metric(gw, 'tenantgate_run_units_recorded_total')).toBe(42);
    expect(await labelled(gw, 'tenantgate_run_unit_reports_total', 'result="repeat"')).toBe(8);
    // The same key in another org is that org's own report.
    expect(ok(await record(gw, gw.keys.b, { units: 5, idempotencyKey: 'run-1' })).recordRunUnits.repeat).toBe(false);
    expect((await usage(gw, gw.keys.b)).runUnits).toBe(5);
    expect((await usage(gw, gw.keys.a)).runUnits).toBe(42);
  });

  it('refuses bad reports with BAD_USER_INPUT naming the field, and records nothing', async () => {
    const gw = await gateway();
    const day = 86_400_000;
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ units: 0, idempotencyKey: 'k' }, 'units', 'units must be at least 1'],
      [{ units: -3, idempotencyKey: 'k' }, 'units', 'units must be at least 1'],
      [{ units: 1_000_000_001, idempotencyKey: 'k' }, 'units', 'units must be at most 1000000000'],
      [{ units: 1, idempotencyKey: '' }, 'idempotencyKey', 'idempotencyKey must not be empty'],
      [{ units: 1, idempotencyKey: 'has space' }, 'idempotencyKey', 'idempotencyKey must be printable ASCII without spaces'],
      [{ units: 1, idempotencyKey: 'x'.repeat(201) }, 'idempotencyKey', 'idempotencyKey must be at most 200 characters'],
      [{ units: 1, idempotencyKey: 'k', occurredAt: new Date(Date.now() + 10 * 60_000).toISOString() }, 'occurredAt', 'occurredAt must not be in the future'],
      [{ units: 1, idempotencyKey: 'k', occurredAt: new Date(Date.now() - 36 * day).toISOString() }, 'occurredAt', 'occurredAt must be at most 35 days in the past'],
    ];
    for (const [input, field, message] of cases) {
      const res = await record(gw, gw.keys.a, input);
      expect(failure(res, 'BAD_USER_INPUT'), JSON.stringify(input)).toEqual({ message, field });
    }
    // GraphQL's Int refuses a fraction and a number past 2^31 before anything runs.
    for (const units of [1.5, 2 ** 31]) {
      const res = await record(gw, gw.keys.a, { units, idempotencyKey: 'k' });
      expect(res.body.errors[0].message).toContain('Int');
    }
    // A module of another org answers like a missing one.
    const foreign = failure(await record(gw, gw.keys.a, { units: 1, idempotencyKey: 'k', moduleId: 'only-org-b' }), 'NOT_FOUND');
    expect(foreign.message).toBe('Module "only-org-b" was not found');
    expect(ok(await gw.gql(gw.keys.a, '{ runUnitEvents(first: 10) { edges { node { id } } } }')).runUnitEvents.edges).toEqual([]);
    // 35 days ago is still accepted, and counts in its own month.
    const old = new Date(Date.now() - 34 * day);
    const accepted = ok(await record(gw, gw.keys.a, { units: 3, idempotencyKey: 'late', occurredAt: old.toISOString() })).recordRunUnits;
    expect(accepted.event.occurredAt).toBe(old.toISOString());
    const month = old.toISOString().slice(0, 7);
    expect(ok(await gw.gql(gw.keys.a, `{ usage(period: "${month}") { runUnits } }`)).usage.runUnits).toBe(3);
    expect(failure(await gw.gql(gw.keys.a, '{ usage(period: "2026-13") { runUnits } }'), 'BAD_USER_INPUT').field).toBe('period');
  });
});

describe('quotas', () => {
  it("refuses a report past the org's monthly quota whole, with what is used and when it resets", async () => {
    const gw = await gateway();
    const set = await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-a", input: { runUnitsPerMonth: 10 }) { orgId runUnitsPerMonth requestsPerMinute burst updatedAt } }');
    expect(ok(set).setOrgQuota).toMatchObject({ orgId: ORG_A, runUnitsPerMonth: 10, requestsPerMinute: null, burst: null });
    ok(await record(gw, gw.keys.a, { units: 6, idempotencyKey: 'q-1' }));
    expect(await usage(gw, gw.keys.a)).toMatchObject({ runUnits: 6, quota: 10, remaining: 4, nearQuota: false, warnAt: 0.8 });

    const refused = await record(gw, gw.keys.a, { units: 5, idempotencyKey: 'q-2' });
    expect(failure(refused, 'QUOTA_EXCEEDED').message).toBe('This report would take the org past its quota of 10 run units this month (6 used); nothing was recorded');
    const now = new Date();
    const resetsAt = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString();
    expect(refused.body.errors[0].extensions).toEqual({ code: 'QUOTA_EXCEEDED', limit: 'runUnitsPerMonth', quota: 10, used: 6, resetsAt });
    expect(refused.body.data).toBeNull();
    expect((await usage(gw, gw.keys.a)).runUnits).toBe(6);
    // Nothing was kept of the refusal: the same key records once the report fits.
    ok(await record(gw, gw.keys.a, { units: 4, idempotencyKey: 'q-2' }));
    expect(await usage(gw, gw.keys.a)).toMatchObject({ runUnits: 10, remaining: 0, nearQuota: true });
    expect(await labelled(gw, 'tenantgate_run_unit_reports_total', 'result="quota_exceeded"')).toBe(1);
    const refusal = gw.logger.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'run units refused: quota');
    expect(refusal).toMatchObject({ orgId: ORG_A, limit: 'runUnitsPerMonth', quota: 10, used: 6 });
    // B has no quota of its own.
    expect((await usage(gw, gw.keys.b)).quota).toBeNull();
    ok(await record(gw, gw.keys.b, { units: 1000, idempotencyKey: 'big' }));
  });

  it('applies the configured defaults to orgs without their own, and an org quota over them', async () => {
    const gw = await gateway({ TENANTGATE_DEFAULT_RUN_UNITS_PER_MONTH: '3', TENANTGATE_QUOTA_WARN_PERCENT: '50' });
    expect(await usage(gw, gw.keys.a)).toMatchObject({ quota: 3, remaining: 3, warnAt: 0.5, nearQuota: false });
    ok(await record(gw, gw.keys.a, { units: 2, idempotencyKey: 'd-1' }));
    expect((await usage(gw, gw.keys.a)).nearQuota).toBe(true);
    failure(await record(gw, gw.keys.a, { units: 2, idempotencyKey: 'd-2' }), 'QUOTA_EXCEEDED');
    ok(await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-a", input: { runUnitsPerMonth: 100 }) { orgId } }'));
    ok(await record(gw, gw.keys.a, { units: 2, idempotencyKey: 'd-2' }));
    expect(ok(await gw.gql(gw.keys.admin, '{ orgUsage(orgId: "org-b") { quota } }')).orgUsage.quota).toBe(3);
  });

  it('refuses bad quota input', async () => {
    const gw = await gateway();
    const res = await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-a", input: { requestsPerMinute: 0 }) { orgId } }');
    expect(failure(res, 'BAD_USER_INPUT')).toEqual({ message: 'requestsPerMinute must be at least 1 (null: the default)', field: 'requestsPerMinute' });
    const fraction = await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-a", input: { runUnitsPerMonth: 2.5 }) { orgId } }');
    expect(failure(fraction, 'BAD_USER_INPUT').field).toBe('runUnitsPerMonth');
  });
});

describe('per-org request rate', () => {
  it("answers 429 RATE_LIMITED past the org's rate, cached answers included, and never spends another org's", async () => {
    const gw = await gateway();
    ok(await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-a", input: { requestsPerMinute: 60, burst: 4 }) { orgId } }'));
    const page = '{ modules(first: 2) { edges { node { id } } } }';
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<TestGateway['gql']>> | undefined;
    for (let i = 0; i < 6; i++) {
      const res = await gw.gql(gw.keys.a, page);
      statuses.push(res.status);
      if (res.status === 429) refused ??= res;
    }
    // Four fit the burst (the second and later answered from the response cache), then 429.
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
    expect(refused!.body.errors[0].extensions).toEqual({ code: 'RATE_LIMITED', limit: 'requestsPerMinute' });
    const retryAfter = Number(refused!.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(4);
    // B's budget is its own: unlimited.
    for (let i = 0; i < 10; i++) expect((await gw.gql(gw.keys.b, page)).status).toBe(200);
    expect(await labelled(gw, 'tenantgate_rate_limit_refusals_total', 'limit="requestsPerMinute"')).toBe(2);
    const lines = gw.logger.lines.filter((l) => l.includes('org rate limit'));
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0]!)).toMatchObject({ orgId: ORG_A, limit: 'requestsPerMinute', requestsPerMinute: 60, burst: 4 });
    for (const key of Object.values(gw.keys)) expect(gw.logger.lines.join('\n')).not.toContain(key);
    // A window is burst / rate minutes (4 s here): the budget comes back.
    await sleep(retryAfter * 1000 + 100);
    expect((await gw.gql(gw.keys.a, page)).status).toBe(200);
  });

  // Two replicas on one PostgreSQL database spend one budget (tenantgate_limits.org_requests).
  it.runIf(DEFAULT_DIALECT === 'postgres')('is shared by the replicas on one PostgreSQL database', async () => {
    const one = await gateway();
    const two = await createTestGateway({ database: one.postgres, seed: false, env: { TENANTGATE_MASTER_KEY: one.config.masterKey!.toString('base64') } });
    gateways.unshift(two); // closed before the first, which drops the database
    // 45 a minute, bursts of 6: a window of 8 s exactly; 7 makes it 9.333 s, which the shared
    // counter must store in whole milliseconds (a fraction made PostgreSQL refuse it, and each
    // replica fall back to a budget of its own).
    ok(await one.gql(one.keys.admin, 'mutation { setOrgQuota(orgId: "org-a", input: { requestsPerMinute: 45, burst: 7 }) { orgId } }'));
    // The second replica hears of the new quota through the change feed.
    for (let i = 0; i < 100; i++) {
      if (ok(await two.gql(one.keys.b, '{ usage { runUnits } }')) && (await two.app.services.metering.quotas.get(ORG_A)).requestsPerMinute === 45) break;
      await sleep(50);
    }
    expect((await two.app.services.metering.quotas.get(ORG_A)).requestsPerMinute).toBe(45);
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await (i % 2 === 0 ? one : two).gql(one.keys.a, '{ viewer { scopes } }')).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(7);
    expect(statuses.slice(7)).toEqual([429, 429, 429, 429, 429]);
    expect(one.logger.lines.concat(two.logger.lines).filter((l) => l.includes('rate limiter failed'))).toEqual([]);
  });

  it('takes a changed quota at once', async () => {
    const gw = await gateway({ TENANTGATE_DEFAULT_REQUESTS_PER_MINUTE: '6', TENANTGATE_DEFAULT_BURST: '1' }, false);
    expect((await gw.gql(gw.keys.a, '{ viewer { scopes } }')).status).toBe(200);
    expect((await gw.gql(gw.keys.a, '{ viewer { scopes } }')).status).toBe(429);
    // The admin's own org is limited by the default too, and has its burst of one left.
    ok(await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-a", input: { requestsPerMinute: 6000, burst: 100 }) { orgId } }'));
    expect((await gw.gql(gw.keys.a, '{ viewer { scopes } }')).status).toBe(200);
    expect(ok(await gw.gql(gw.keys.a, USAGE)).usage).toMatchObject({ requestsPerMinute: 6000, burst: 100 });
  });
});

/** Sends a request whose body never completes: it is admitted (and holds its org's slot) before the body is read. */
function stalledRequest(gw: TestGateway, key: string): Promise<net.Socket> {
  const url = new URL(gw.origin!);
  const body = JSON.stringify({ query: '{ viewer { scopes } }' });
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        `POST /graphql HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`,
      );
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

describe('fair sharing: requests of one org in flight', () => {
  it('queues and then refuses an org past its slots, and never the others', async () => {
    const gw = await gateway({ TENANTGATE_ORG_MAX_IN_FLIGHT: '2', TENANTGATE_ORG_QUEUE: '1', TENANTGATE_ORG_QUEUE_TIMEOUT_MS: '300' });
    const held = [await stalledRequest(gw, gw.keys.a), await stalledRequest(gw, gw.keys.a)];
    await sleep(100);
    // A's next request waits in the queue, then gives up: 429 with the concurrency limit.
    const started = Date.now();
    const queued = gw.gql(gw.keys.a, '{ viewer { scopes } }');
    // The queue holds one: the one behind it is refused at once.
    const overflow = await gw.gql(gw.keys.a, '{ viewer { scopes } }');
    expect(overflow.status).toBe(429);
    expect(overflow.body.errors[0].extensions).toEqual({ code: 'RATE_LIMITED', limit: 'concurrency' });
    expect(overflow.headers.get('retry-after')).toBe('1');
    // B is not behind A.
    expect(ok(await gw.gql(gw.keys.b, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_B);
    const timedOut = await queued;
    expect(timedOut.status).toBe(429);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(await labelled(gw, 'tenantgate_rate_limit_refusals_total', 'limit="concurrency"')).toBe(2);

    // A client that leaves gives its slot back: of two requests, one takes the freed slot, the
    // other waits in the queue for it and is answered when the first is.
    held[0]!.destroy();
    await sleep(100);
    const pair = await Promise.all([gw.gql(gw.keys.a, '{ viewer { scopes } }'), gw.gql(gw.keys.a, '{ viewer { scopes } }')]);
    expect(pair.map((r) => r.status)).toEqual([200, 200]);
    held[1]!.destroy();
    await sleep(100);
    // Every slot is back.
    const again = await Promise.all([gw.gql(gw.keys.a, '{ viewer { scopes } }'), gw.gql(gw.keys.a, '{ viewer { scopes } }')]);
    expect(again.map((r) => r.status)).toEqual([200, 200]);
  });
});

describe('usage figures', () => {
  it('counts served requests exactly, per org', async () => {
    const gw = await gateway();
    await gw.app.flush(); // the seeding's requests
    const before = await usage(gw, gw.keys.a);
    await gw.app.flush();
    for (let i = 0; i < 5; i++) ok(await gw.gql(gw.keys.a, '{ modules(first: 1) { totalCount } }'));
    const bBefore = await usage(gw, gw.keys.b);
    await gw.app.flush();
    const after = await usage(gw, gw.keys.a);
    // The first usage read itself, and the five pages.
    expect(after.requests).toBe(before.requests + 6);
    expect((await usage(gw, gw.keys.b)).requests).toBe(bBefore.requests + 1);
  });

  it('pages events by occurrence, filters by since, and charts hours with the gaps as zeros', async () => {
    const gw = await gateway();
    const base = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1);
    const at = (hours: number) => new Date(Math.min(base + hours * 3_600_000, Date.now())).toISOString();
    for (const [i, hours] of [3, 0, 2, 0, 5].entries()) ok(await record(gw, gw.keys.a, { units: i + 1, idempotencyKey: `e-${i}`, occurredAt: at(hours) }));
    const seen: number[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 5; pages++) {
      const conn: { edges: { node: { units: number; occurredAt: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string } } = ok(
        await gw.gql(gw.keys.a, 'query($after: String) { runUnitEvents(first: 2, after: $after) { edges { node { units occurredAt } } pageInfo { hasNextPage endCursor } } }', { after }),
      ).runUnitEvents;
      seen.push(...conn.edges.map((e) => e.node.units));
      if (!conn.pageInfo.hasNextPage) break;
      after = conn.pageInfo.endCursor;
    }
    expect(seen).toHaveLength(5);
    expect(seen.slice(0, 2).sort()).toEqual([2, 4]);
    const since = ok(await gw.gql(gw.keys.a, 'query($s: DateTime) { runUnitEvents(first: 10, since: $s) { edges { node { units } } } }', { s: at(2) })).runUnitEvents;
    expect(since.edges.map((e: { node: { units: number } }) => e.node.units).sort()).toEqual([1, 3, 5].filter((u) => Date.parse(at([3, 0, 2, 0, 5][u - 1]!)) >= Date.parse(at(2))));
    const bad = await gw.gql(gw.keys.a, '{ runUnitEvents(first: 1, after: "bm90LWEtY3Vyc29y") { edges { node { id } } } }');
    expect(failure(bad, 'BAD_USER_INPUT').field).toBe('after');
    // A cursor holding U+0000 is not one of ours (PostgreSQL text could not even compare it).
    const nul = Buffer.from('u:\u0000|x').toString('base64url');
    expect(failure(await gw.gql(gw.keys.a, `{ runUnitEvents(first: 1, after: "${nul}") { edges { node { id } } } }`), 'BAD_USER_INPUT').field).toBe('after');

    if (Date.now() >= base + 6 * 3_600_000) {
      const series = ok(
        await gw.gql(gw.keys.a, 'query($f: DateTime!, $t: DateTime!) { usageSeries(from: $f, to: $t, granularity: HOUR) { start runUnits } }', { f: at(0), t: at(6) }),
      ).usageSeries;
      expect(series.map((b: { runUnits: number }) => b.runUnits)).toEqual([2 + 4, 0, 3, 1, 0, 5]);
    }
    const tooLong = await gw.gql(gw.keys.a, '{ usageSeries(from: "2026-01-01T00:00:00Z", to: "2026-03-01T00:00:00Z", granularity: HOUR) { start } }');
    expect(failure(tooLong, 'BAD_USER_INPUT').message).toBe('a series covers at most 744 hours');
    const backwards = await gw.gql(gw.keys.a, '{ usageSeries(from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z", granularity: DAY) { start } }');
    expect(failure(backwards, 'BAD_USER_INPUT').field).toBe('to');
  });

  it('ranks orgs by use for the admin', async () => {
    const gw = await gateway();
    ok(await record(gw, gw.keys.a, { units: 5, idempotencyKey: 'r' }));
    ok(await record(gw, gw.keys.b, { units: 9, idempotencyKey: 'r' }));
    const top = ok(await gw.gql(gw.keys.admin, '{ topOrgsByUsage(first: 5) { orgId runUnits periodStart } }')).topOrgsByUsage;
    expect(top.map((t: { orgId: string; runUnits: number }) => [t.orgId, t.runUnits])).toEqual([[ORG_B, 9], [ORG_A, 5]]);
    expect(ok(await gw.gql(gw.keys.admin, '{ topOrgsByUsage(first: 1) { orgId } }')).topOrgsByUsage).toEqual([{ orgId: ORG_B }]);
    expect(failure(await gw.gql(gw.keys.admin, '{ topOrgsByUsage(first: 1001) { orgId } }'), 'BAD_USER_INPUT').field).toBe('first');
  });
});
