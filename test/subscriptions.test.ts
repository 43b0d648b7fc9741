/**
 * GraphQL subscriptions over server-sent events, against the listener `npm start` serves (and, on
 * PostgreSQL, a second gateway on the same database: another replica with its own LISTEN
 * connection). What a dashboard relies on: the org's module events arrive in order, with the module
 * as it is now; another org's events never arrive, and neither does any sign of them; a key without
 * the scope, a revoked key, a suspended org and a full quota of streams are refused or ended with
 * the code a request would get.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { failure, ok, sleep } from './helpers/api.ts';
import { createTestGateway, DEFAULT_DIALECT, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';
import { subscribe, type Stream } from './helpers/sse.ts';

const MODULE_EVENTS = 'subscription { moduleEvents { kind moduleId orgId at module { id orgId name enabled hasCredential usageCount health { status message } } } }';
const HEALTH_EVENTS = 'subscription { moduleHealthEvents { kind moduleId orgId module { id orgId health { status message } } } }';
/** Long enough for a change that would arrive to have arrived (a NOTIFY round trip is well under this). */
const QUIET_MS = 400;

const gateways: TestGateway[] = [];
const streams: Stream[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  for (const gw of gateways.splice(0)) await gw.close();
});

async function gateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const gw = await createTestGateway({ env });
  gateways.push(gw);
  return gw;
}

async function open(gw: TestGateway, key: string | null, query = MODULE_EVENTS): Promise<Stream> {
  const stream = await subscribe(gw, key, query);
  streams.push(stream);
  // The stream is registered once the subscription has started; one more turn for the listener.
  await sleep(50);
  return stream;
}

const event = (result: { data?: { moduleEvents?: unknown; moduleHealthEvents?: unknown } }) =>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  (result.data?.moduleEvents ?? result.data?.moduleHealthEvents) as any;

describe('moduleEvents', () => {
  it("streams every kind of change of the key's org, in order, with the module as it is now", async () => {
    const gw = await gateway();
    const stream = await open(gw, gw.keys.a);
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);

    const a = (query: string) => gw.gql(gw.keys.a, query).then(ok);
    await a('mutation { installModule(input: { id: "live", name: "Live", version: "1.0.0" }) { id } }');
    await a('mutation { disableModule(id: "live") { id } }');
    await a('mutation { setCredential(moduleId: "live", secret: { token: "not-in-any-event" }) { moduleId } }');
    ok(await gw.gql(gw.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_A}", moduleId: "live", status: DEGRADED, message: "slow") { id } }`));
    ok(await gw.gql(gw.keys.admin, `mutation { recordModuleUsage(orgId: "${ORG_A}", moduleId: "live", count: 3) { id } }`));
    await a('mutation { deleteCredential(moduleId: "live") }');
    await a('mutation { uninstallModule(id: "live") { id } }');

    const got = [];
    for (let i = 0; i < 7; i++) got.push(event(await stream.nth(i)));
    expect(got.map((e) => [e.kind, e.moduleId, e.orgId])).toEqual([
      ['INSTALLED', 'live', ORG_A],
      ['CHANGED', 'live', ORG_A],
      ['CHANGED', 'live', ORG_A],
      ['HEALTH_REPORTED', 'live', ORG_A],
      ['CHANGED', 'live', ORG_A],
      ['CHANGED', 'live', ORG_A],
      ['UNINSTALLED', 'live', ORG_A],
    ]);
    // Each carries the module as it stood after its change (events are read in order).
    expect(got[0].module).toMatchObject({ id: 'live', orgId: ORG_A, name: 'Live', enabled: true, hasCredential: false });
    expect(got[1].module).toMatchObject({ enabled: false });
    expect(got[3].module.health).toEqual({ status: 'DEGRADED', message: 'slow' });
    expect(got[6].module).toBeNull();
    expect(Date.parse(got[0].at)).toBeGreaterThan(Date.now() - 60_000);
    // No value reaches an event or the log.
    expect(JSON.stringify(stream.events)).not.toContain('not-in-any-event');
    expect(gw.logger.lines.join('\n')).not.toContain('not-in-any-event');
    expect(gw.logger.lines.join('\n')).not.toContain(gw.keys.a);
    await sleep(QUIET_MS);
    expect(stream.results).toHaveLength(7);
    // Counted by kind, never by org.
    const metrics = await (await gw.fetch('/metrics')).text();
    expect(metrics).toContain('tenantgate_subscription_events_total{kind="changed"} 4');
    expect(metrics).toContain('tenantgate_subscription_events_total{kind="installed"} 1');
    expect(metrics).toContain('tenantgate_subscription_events_total{kind="health"} 1');
    expect(metrics).toContain('tenantgate_subscription_events_total{kind="uninstalled"} 1');
    expect(metrics).not.toMatch(/tenantgate_subscription_events_total\{[^}]*org/);
  });

  it("never delivers another org's events, look-alike ids included; the org's own arrive (control)", async () => {
    const gw = await gateway();
    const streamA = await open(gw, gw.keys.a);
    const b = (query: string) => gw.gql(gw.keys.b, query).then(ok);
    // B changes everything it can, on ids A has too ("github") and on its own.
    await b('mutation { installModule(input: { id: "b-live", name: "B", version: "1.0.0" }) { id } }');
    await b('mutation { disableModule(id: "github") { id } }');
    await b('mutation { updateModule(id: "github", input: { name: "B renamed" }) { id } }');
    await b('mutation { setCredential(moduleId: "github", secret: { token: "b-token" }) { moduleId } }');
    await b('mutation { deleteCredential(moduleId: "github") }');
    ok(await gw.gql(gw.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_B}", moduleId: "github", status: UNHEALTHY) { id } }`));
    ok(await gw.gql(gw.keys.admin, `mutation { recordModuleUsage(orgId: "${ORG_B}", moduleId: "github", count: 5) { id } }`));
    await b('mutation { uninstallModule(id: "b-live") { id } }');
    await b('mutation { createApiKey(input: { name: "b-more", scopes: ["modules:read"] }) { secret } }');
    await sleep(QUIET_MS);
    expect(streamA.events).toEqual([]);

    // The control: A's own change is the first thing A's stream says.
    await gw.gql(gw.keys.a, 'mutation { disableModule(id: "github") { id } }').then(ok);
    const first = event(await streamA.nth(0));
    expect(first).toMatchObject({ kind: 'CHANGED', moduleId: 'github', orgId: ORG_A, module: { orgId: ORG_A, enabled: false } });
    expect(first.module.name).not.toBe('B renamed');
  });

  it('is refused without modules:read, and without a key, before anything streams', async () => {
    const gw = await gateway();
    const noRead = await gw.key(ORG_A, ['credentials:write']);
    const refused = await open(gw, noRead);
    await refused.ended();
    expect(refused.results).toHaveLength(1);
    expect(refused.results[0].data ?? null).toBeNull();
    expect(refused.results[0].errors[0]).toMatchObject({
      message: 'Subscription.moduleEvents needs the modules:read scope, which this API key lacks',
      extensions: { code: 'FORBIDDEN' },
    });
    expect(gw.app.services.events.open).toBe(0);

    const anonymous = await open(gw, null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.events[0]?.data.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    const wrong = await open(gw, `${gw.keys.a.slice(0, -4)}AAAA`);
    expect(wrong.status).toBe(401);
  });

  it('ends when the key is revoked or the org suspended, with the code a request would get', async () => {
    const gw = await gateway();
    const spare = await gw.key(ORG_A, ['modules:read']);
    const revoked = await open(gw, spare);
    const kept = await open(gw, gw.keys.a);
    const id = ok(await gw.gql(spare, '{ viewer { apiKey { id } } }')).viewer.apiKey.id as string;
    ok(await gw.gql(gw.keys.a, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id }));
    await revoked.ended();
    expect(revoked.results.at(-1).errors[0].extensions.code).toBe('UNAUTHENTICATED');
    // The org's other stream goes on.
    await gw.gql(gw.keys.a, 'mutation { disableModule(id: "github") { id } }').then(ok);
    expect(event(await kept.nth(0))).toMatchObject({ kind: 'CHANGED', moduleId: 'github' });
    expect(kept.done).toBe(false);

    ok(await gw.gql(gw.keys.admin, `mutation { suspendOrg(id: "${ORG_A}", reason: "unpaid") { id } }`));
    await kept.ended();
    expect(kept.results.at(-1).errors[0].extensions.code).toBe('ORG_SUSPENDED');
    expect(gw.app.services.events.open).toBe(0);
  });

  it('ends when the key expires', async () => {
    const gw = await gateway();
    const brief = await gw.key(ORG_A, ['modules:read'], new Date(Date.now() + 1500));
    const stream = await open(gw, brief);
    expect(stream.done).toBe(false);
    await stream.ended(5000);
    expect(stream.results.at(-1).errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it("holds at most TENANTGATE_ORG_MAX_SUBSCRIPTIONS streams per org; another org's streams are not counted against it", async () => {
    const gw = await gateway({ TENANTGATE_ORG_MAX_SUBSCRIPTIONS: '2' });
    // Asked for as plain JSON, a subscription is refused by Yoga (406) and holds no place.
    for (let i = 0; i < 3; i++) {
      const plain = await gw.gql(gw.keys.a, MODULE_EVENTS);
      expect(plain.status).toBe(406);
    }
    const first = await open(gw, gw.keys.a);
    await open(gw, gw.keys.a);
    const third = await open(gw, gw.keys.a);
    await third.ended();
    expect(third.results[0].errors[0]).toMatchObject({
      message: 'Too many open subscriptions; retry in 5s',
      extensions: { code: 'RATE_LIMITED', limit: 'subscriptions' },
    });
    const metrics = await (await gw.fetch('/metrics')).text();
    expect(metrics).toContain('tenantgate_rate_limit_refusals_total{limit="subscriptions"} 1');
    expect(metrics).toContain('tenantgate_subscriptions_open 2');
    const lines = gw.logger.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === 'subscription refused: too many open')).toMatchObject({ orgId: ORG_A, limit: 'subscriptions' });
    // B's budget is its own.
    const ofB = await open(gw, gw.keys.b);
    expect(ofB.done).toBe(false);
    // A stream given back frees its place.
    first.close();
    await sleep(200);
    const again = await open(gw, gw.keys.a);
    expect(again.done).toBe(false);
    expect(gw.app.services.events.open).toBe(3);
  });

  it('ends every stream when the gateway shuts down', async () => {
    const gw = await gateway();
    const stream = await open(gw, gw.keys.a);
    gw.app.endStreams();
    await stream.ended();
    expect(stream.events.at(-1)?.event).toBe('complete');
  });

  // SQLite only (skipped in the postgres project): on PostgreSQL another process's commit notifies with the module, which 'across replicas' covers.
  it.runIf(DEFAULT_DIALECT === 'sqlite')('tells RESYNC when another process commits (the feed cannot say what changed)', async () => {
    const gw = await gateway();
    const stream = await open(gw, gw.keys.a);
    // Another connection to the file (as the CLI's would be): this process learns only that something changed.
    const other = new Database(gw.opened.sqlite.name);
    try {
      other.prepare("UPDATE modules SET name = 'edited elsewhere' WHERE org_id = ? AND module_id = 'github'").run(ORG_A);
    } finally {
      other.close();
    }
    const resync = event(await stream.nth(0, 3000));
    expect(resync).toEqual({ kind: 'RESYNC', moduleId: null, orgId: ORG_A, at: expect.any(String), module: null });
  });
});

describe('moduleHealthEvents (admin)', () => {
  it("streams every org's health reports, and only those, to an admin key; tenant keys are refused", async () => {
    const gw = await gateway();
    const tenant = await open(gw, gw.keys.a, HEALTH_EVENTS);
    await tenant.ended();
    expect(tenant.results[0].errors[0]).toMatchObject({
      message: 'Subscription.moduleHealthEvents needs the admin scope, which this API key lacks',
      extensions: { code: 'FORBIDDEN' },
    });

    const admin = await open(gw, gw.keys.admin, HEALTH_EVENTS);
    // Not a health report: not on this stream.
    await gw.gql(gw.keys.b, 'mutation { disableModule(id: "github") { id } }').then(ok);
    ok(await gw.gql(gw.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_B}", moduleId: "github", status: UNHEALTHY, message: "down") { id } }`));
    ok(await gw.gql(gw.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_A}", moduleId: "slack", status: HEALTHY) { id } }`));
    expect(event(await admin.nth(0))).toEqual({
      kind: 'HEALTH_REPORTED',
      moduleId: 'github',
      orgId: ORG_B,
      module: { id: 'github', orgId: ORG_B, health: { status: 'UNHEALTHY', message: 'down' } },
    });
    expect(event(await admin.nth(1))).toMatchObject({ kind: 'HEALTH_REPORTED', moduleId: 'slack', orgId: ORG_A });
    await sleep(QUIET_MS);
    expect(admin.results).toHaveLength(2);
    // A report on a module that does not exist changes nothing and tells nothing.
    failure(await gw.gql(gw.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_B}", moduleId: "nope", status: HEALTHY) { id } }`), 'NOT_FOUND');
    await sleep(QUIET_MS);
    expect(admin.results).toHaveLength(2);
  });
});

// PostgreSQL only (skipped in the sqlite project): two gateways on one SQLite file are not a deployment this gateway supports.
describe.runIf(DEFAULT_DIALECT === 'postgres')('across replicas (PostgreSQL)', () => {
  it("delivers a write on one gateway to another's streams, through the database's notifications, org-scoped", async () => {
    const masterKey = randomBytes(32).toString('base64');
    const one = await gateway({ TENANTGATE_MASTER_KEY: masterKey });
    const two = await createTestGateway({ database: one.postgres, seed: false, env: { TENANTGATE_MASTER_KEY: masterKey } });
    gateways.unshift(two);
    const onTwoA = await open(two, two.keys.a);
    const onTwoB = await open(two, two.keys.b);
    await one.gql(one.keys.a, 'mutation { disableModule(id: "github") { id } }').then(ok);
    ok(await one.gql(one.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_A}", moduleId: "github", status: DEGRADED) { id } }`));
    expect(event(await onTwoA.nth(0))).toMatchObject({ kind: 'CHANGED', moduleId: 'github', orgId: ORG_A, module: { enabled: false } });
    expect(event(await onTwoA.nth(1))).toMatchObject({ kind: 'HEALTH_REPORTED', module: { health: { status: 'DEGRADED' } } });
    await sleep(QUIET_MS);
    // Heard once each (a replica hears its own writes by the same notification), and never by B.
    expect(onTwoA.results).toHaveLength(2);
    expect(onTwoB.events).toEqual([]);
  });
});
