import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { failure, ok } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, TENANT_SCOPES, type TestGateway } from './helpers/gateway.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let gw: TestGateway;
beforeEach(async () => {
  // Some cases send 200-300 requests of one org at once to prove the store's increments atomic:
  // the fairness gate would refuse most of them past its queue (test/usage.test.ts proves that),
  // so here the queue takes them all.
  gw = await createTestGateway({ env: { TENANTGATE_ORG_QUEUE: '1000', TENANTGATE_ORG_QUEUE_TIMEOUT_MS: '60000' } });
});
afterEach(async () => {
  await gw.close();
});

const HEALTH = `mutation($o: ID!, $m: ID!, $s: HealthStatus!, $msg: String) {
  reportModuleHealth(orgId: $o, moduleId: $m, status: $s, message: $msg) { id orgId health { status message checkedAt } updatedAt }
}`;
const USAGE = `mutation($o: ID!, $m: ID!, $n: Int) { recordModuleUsage(orgId: $o, moduleId: $m, count: $n) { id orgId usageCount lastUsedAt } }`;
const UNHEALTHY = `query($first: Int) { unhealthyModules(first: $first) { orgId id health { status message } } }`;

function rawModule(orgId: string, moduleId: string) {
  return gw.opened.sqlite.prepare('SELECT * FROM modules WHERE org_id = ? AND module_id = ?').get(orgId, moduleId) as Record<string, unknown> | undefined;
}

/** Every row of every table, for "nothing changed" checks. */
function everything(): Record<string, unknown[]> {
  const db = gw.opened.sqlite;
  const out: Record<string, unknown[]> = {};
  for (const table of ['orgs', 'modules', 'credentials']) out[table] = db.prepare(`SELECT * FROM ${table} ORDER BY 1, 2`).all();
  out.api_keys = db.prepare('SELECT id, org_id, revoked_at FROM api_keys ORDER BY id').all();
  return out;
}

describe('reportModuleHealth (admin)', () => {
  it("records a module's health in any org, with its message and time, and nothing in the look-alike", async () => {
    const before = rawModule(ORG_A, 'github');
    const res = ok(await gw.gql(gw.keys.admin, HEALTH, { o: ORG_B, m: 'github', s: 'UNHEALTHY', msg: 'token expired' })).reportModuleHealth;
    expect(res).toMatchObject({ id: 'github', orgId: ORG_B, health: { status: 'UNHEALTHY', message: 'token expired' } });
    expect(res.health.checkedAt).toMatch(ISO);
    expect(rawModule(ORG_B, 'github')).toMatchObject({ health_status: 'unhealthy', health_message: 'token expired', last_health_check: res.health.checkedAt });
    expect(rawModule(ORG_A, 'github')).toEqual(before);
    // Org B sees it on its module.
    expect(ok(await gw.gql(gw.keys.b, '{ module(id: "github") { health { status message checkedAt } } }')).module.health).toEqual(res.health);
  });

  it('takes every status; a report without a message clears the old one', async () => {
    for (const status of ['HEALTHY', 'DEGRADED', 'UNHEALTHY', 'UNKNOWN']) {
      const r = ok(await gw.gql(gw.keys.admin, HEALTH, { o: ORG_A, m: 'slack', s: status, msg: `now ${status}` })).reportModuleHealth;
      expect(r.health).toMatchObject({ status, message: `now ${status}` });
    }
    const cleared = ok(await gw.gql(gw.keys.admin, HEALTH, { o: ORG_A, m: 'slack', s: 'HEALTHY' })).reportModuleHealth;
    expect(cleared.health.message).toBeNull();
  });

  it('validates the message and answers NOT_FOUND for a missing module or org', async () => {
    expect(failure(await gw.gql(gw.keys.admin, HEALTH, { o: ORG_A, m: 'slack', s: 'HEALTHY', msg: 'x'.repeat(2001) }), 'BAD_USER_INPUT').message).toBe(
      'message must be at most 2000 characters',
    );
    expect(failure(await gw.gql(gw.keys.admin, HEALTH, { o: ORG_A, m: 'nope', s: 'HEALTHY' }), 'NOT_FOUND').message).toBe(
      'Module "org-a/nope" was not found',
    );
    expect(failure(await gw.gql(gw.keys.admin, HEALTH, { o: 'no-such-org', m: 'github', s: 'HEALTHY' }), 'NOT_FOUND').message).toBe(
      'Module "no-such-org/github" was not found',
    );
    // An unknown status is a GraphQL input error.
    expect((await gw.gql(gw.keys.admin, HEALTH, { o: ORG_A, m: 'slack', s: 'BROKEN' })).body.errors).toHaveLength(1);
  });
});

describe('unhealthyModules (admin)', () => {
  it('lists degraded and unhealthy modules of every org, each with its org id, in a stable order', async () => {
    const report = async (o: string, m: string, s: string) => ok(await gw.gql(gw.keys.admin, HEALTH, { o, m, s, msg: `${o}/${m}` }));
    await report(ORG_B, 'slack', 'UNHEALTHY');
    await report(ORG_A, 'slack', 'DEGRADED');
    await report(ORG_A, 'github', 'HEALTHY');
    await report(ORG_B, 'github', 'DEGRADED');
    await report(ORG_B, 'only-org-b', 'UNKNOWN');
    const list = ok(await gw.gql(gw.keys.admin, UNHEALTHY, {})).unhealthyModules;
    expect(list).toEqual([
      { orgId: ORG_A, id: 'slack', health: { status: 'DEGRADED', message: 'org-a/slack' } },
      { orgId: ORG_B, id: 'github', health: { status: 'DEGRADED', message: 'org-b/github' } },
      { orgId: ORG_B, id: 'slack', health: { status: 'UNHEALTHY', message: 'org-b/slack' } },
    ]);
    expect(ok(await gw.gql(gw.keys.admin, UNHEALTHY, { first: 2 })).unhealthyModules).toEqual(list.slice(0, 2));
    expect(ok(await gw.gql(gw.keys.admin, UNHEALTHY, { first: 0 })).unhealthyModules).toEqual([]);
    // Recovering takes a module off the list.
    await report(ORG_B, 'slack', 'HEALTHY');
    expect(ok(await gw.gql(gw.keys.admin, UNHEALTHY, {})).unhealthyModules.map((m: { orgId: string; id: string }) => `${m.orgId}/${m.id}`)).toEqual([
      'org-a/slack',
      'org-b/github',
    ]);
  });

  it('refuses first outside 0..1000 (a negative LIMIT would mean no limit to SQLite)', async () => {
    for (const first of [-1, 1001]) {
      expect(failure(await gw.gql(gw.keys.admin, UNHEALTHY, { first }), 'BAD_USER_INPUT')).toEqual({ field: 'first', message: 'first must be from 0 to 1000' });
    }
  });
});

describe('recordModuleUsage (admin)', () => {
  it('adds to the count (1 by default) and sets the last use', async () => {
    const one = ok(await gw.gql(gw.keys.admin, USAGE, { o: ORG_A, m: 'slack' })).recordModuleUsage;
    expect(one).toMatchObject({ id: 'slack', orgId: ORG_A, usageCount: 1 });
    expect(one.lastUsedAt).toMatch(ISO);
    const more = ok(await gw.gql(gw.keys.admin, USAGE, { o: ORG_A, m: 'slack', n: 41 })).recordModuleUsage;
    expect(more.usageCount).toBe(42);
    expect(more.lastUsedAt >= one.lastUsedAt).toBe(true);
    expect(rawModule(ORG_B, 'slack')).toMatchObject({ usage_count: 0, last_used_at: null });
  });

  it.each([
    [0, 'count must be at least 1'],
    [-5, 'count must be at least 1'],
    [1_000_001, 'count must be at most 1000000'],
  ])('refuses count %d: %s', async (n, message) => {
    expect(failure(await gw.gql(gw.keys.admin, USAGE, { o: ORG_A, m: 'slack', n }), 'BAD_USER_INPUT').message).toBe(message);
    expect(rawModule(ORG_A, 'slack')).toMatchObject({ usage_count: 0, last_used_at: null });
  });

  it('answers NOT_FOUND for a missing module or org', async () => {
    expect(failure(await gw.gql(gw.keys.admin, USAGE, { o: ORG_A, m: 'only-org-b' }), 'NOT_FOUND').message).toBe('Module "org-a/only-org-b" was not found');
    expect(failure(await gw.gql(gw.keys.admin, USAGE, { o: 'no-such-org', m: 'slack' }), 'NOT_FOUND').message).toBe('Module "no-such-org/slack" was not found');
    expect(rawModule(ORG_B, 'only-org-b')).toMatchObject({ usage_count: 0 });
  });

  it('is an atomic increment: many concurrent calls add up exactly', async () => {
    const counts = Array.from({ length: 200 }, (_, i) => (i % 7) + 1);
    const results = await Promise.all(counts.map((n) => gw.gql(gw.keys.admin, USAGE, { o: ORG_B, m: 'github', n })));
    const totals = results.map((r) => ok(r).recordModuleUsage.usageCount as number);
    const sum = counts.reduce((a, b) => a + b, 0);
    expect(rawModule(ORG_B, 'github')).toMatchObject({ usage_count: sum });
    // Every call saw its own increment applied on top of the ones before it: no two saw the same total.
    expect(new Set(totals).size).toBe(counts.length);
    expect(Math.max(...totals)).toBe(sum);
    expect(rawModule(ORG_A, 'github')).toMatchObject({ usage_count: 0 });
  });

  it('is an atomic increment across processes sharing the store', async () => {
    const CALLS = 300;
    const children = [0, 1].map(() =>
      spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/usage-child.ts'], {
        cwd: ROOT,
        env: {
          ...process.env,
          TG_DATA_DIR: gw.dir,
          TG_MASTER_KEY: gw.config.masterKey?.toString('base64'),
          TG_ORG: ORG_B,
          TG_MODULE: 'slack',
          TG_CALLS: String(CALLS),
        },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const lines = children.map((c) => readline.createInterface({ input: c.stdout })[Symbol.asyncIterator]());
    for (const l of lines) expect((await l.next()).value).toBe('ready');
    for (const c of children) c.stdin.write('go\n');
    // This process adds its own calls through GraphQL meanwhile.
    const mine = Array.from({ length: CALLS }, () => gw.gql(gw.keys.admin, USAGE, { o: ORG_B, m: 'slack' }));
    for (const r of await Promise.all(mine)) ok(r);
    for (const l of lines) expect((await l.next()).value).toBe('done');
    await Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode === null ? c.on('exit', resolve) : resolve(null)))));
    expect(rawModule(ORG_B, 'slack')).toMatchObject({ usage_count: 3 * CALLS });
  });
});

describe('orgs and other orgs\' keys (admin)', () => {
  it('lists and creates orgs; a new org gets its first key from the admin and sees only its own data', async () => {
    expect(ok(await gw.gql(gw.keys.admin, '{ orgs { id name } }')).orgs).toEqual([
      { id: 'default', name: 'Default' },
      { id: ORG_A, name: 'Org A' },
      { id: ORG_B, name: 'Org B' },
    ]);
    const created = ok(await gw.gql(gw.keys.admin, 'mutation { createOrg(input: { id: "acme", name: "Acme Inc." }) { id name createdAt } }')).createOrg;
    expect(created).toMatchObject({ id: 'acme', name: 'Acme Inc.' });
    expect(created.createdAt).toMatch(ISO);
    expect(failure(await gw.gql(gw.keys.admin, 'mutation { createOrg(input: { id: "acme", name: "Again" }) { id } }'), 'CONFLICT').message).toBe(
      'Org "acme" already exists',
    );
    expect(failure(await gw.gql(gw.keys.admin, 'mutation { createOrg(input: { id: "Acme!", name: "x" }) { id } }'), 'BAD_USER_INPUT').field).toBe('id');

    const issued = ok(
      await gw.gql(gw.keys.admin, 'mutation($s: [String!]!) { createOrgApiKey(orgId: "acme", input: { name: "first", scopes: $s }) { secret apiKey { id scopes } } }', {
        s: TENANT_SCOPES,
      }),
    ).createOrgApiKey;
    const acme = issued.secret as string;
    expect(ok(await gw.gql(acme, '{ viewer { org { id } scopes } }')).viewer).toEqual({ org: { id: 'acme' }, scopes: TENANT_SCOPES });
    expect(ok(await gw.gql(acme, '{ modules { totalCount } credentials { moduleId } }'))).toEqual({ modules: { totalCount: 0 }, credentials: [] });
    expect(ok(await gw.gql(acme, '{ module(id: "github") { id } }')).module).toBeNull();

    // Acme's key makes one of its own; the admin sees both, with their lineage, and revokes the
    // tree; both stop working at once.
    const child = ok(await gw.gql(acme, 'mutation { createApiKey(input: { name: "child", scopes: ["modules:read"] }) { secret apiKey { id } } }')).createApiKey;
    const listed = ok(await gw.gql(gw.keys.admin, '{ orgApiKeys(orgId: "acme") { id name revokedAt descendants { id } } }')).orgApiKeys;
    expect(listed).toEqual([
      { id: issued.apiKey.id, name: 'first', revokedAt: null, descendants: [{ id: child.apiKey.id }] },
      { id: child.apiKey.id, name: 'child', revokedAt: null, descendants: [] },
    ]);
    const revoked = ok(
      await gw.gql(gw.keys.admin, 'mutation($id: ID!) { revokeOrgApiKey(orgId: "acme", id: $id, cascade: true) { revokedAt descendants { id revokedAt } } }', {
        id: issued.apiKey.id,
      }),
    ).revokeOrgApiKey;
    expect(revoked.descendants).toEqual([{ id: child.apiKey.id, revokedAt: revoked.revokedAt }]);
    expect((await gw.gql(acme, '{ viewer { org { id } } }')).status).toBe(401);
    expect((await gw.gql(child.secret, '{ viewer { org { id } } }')).status).toBe(401);
    expect((await gw.gql(gw.keys.a, '{ viewer { org { id } } }')).status).toBe(200);
  });
});

describe('tenant keys on admin fields', () => {
  const ADMIN_CALLS: [string, string, Record<string, unknown>?][] = [
    ['orgs', '{ orgs { id } }'],
    ['unhealthyModules', '{ unhealthyModules { id } }'],
    ['createOrg', 'mutation { createOrg(input: { id: "sneaky", name: "S" }) { id } }'],
    ['reportModuleHealth', HEALTH, { o: ORG_B, m: 'github', s: 'UNHEALTHY', msg: 'x' }],
    ['reportModuleHealth', HEALTH, { o: ORG_A, m: 'github', s: 'UNHEALTHY', msg: 'x' }],
    ['recordModuleUsage', USAGE, { o: ORG_B, m: 'github', n: 5 }],
    ['recordModuleUsage', USAGE, { o: ORG_A, m: 'github', n: 5 }],
    ['orgApiKeys', 'query($o: ID!) { orgApiKeys(orgId: $o) { id } }', { o: ORG_B }],
    ['orgApiKeys', 'query($o: ID!) { orgApiKeys(orgId: $o) { id } }', { o: 'default' }],
    ['createOrgApiKey', 'mutation($o: ID!) { createOrgApiKey(orgId: $o, input: { name: "x", scopes: ["modules:read"] }) { secret } }', { o: ORG_B }],
    ['createOrgApiKey', 'mutation($o: ID!) { createOrgApiKey(orgId: $o, input: { name: "x", scopes: ["modules:read"] }) { secret } }', { o: 'default' }],
    ['revokeOrgApiKey', 'mutation($o: ID!, $id: ID!) { revokeOrgApiKey(orgId: $o, id: $id) { id } }', { o: ORG_B, id: 'key_x' }],
  ];

  it.each(ADMIN_CALLS)('%s: FORBIDDEN for a key with every tenant scope, and nothing changes', async (field, query, variables) => {
    const tenantKeyInAdminsOrg = await gw.key('default', TENANT_SCOPES);
    const before = everything();
    const kind = query.trimStart().startsWith('mutation') ? 'Mutation' : 'Query';
    for (const key of [gw.keys.a, gw.keys.b, tenantKeyInAdminsOrg]) {
      const res = await gw.gql(key, query, variables);
      expect(failure(res, 'FORBIDDEN').message).toBe(`${kind}.${field} needs the admin scope, which this API key lacks`);
      expect(res.body.data).toBeNull();
    }
    expect(everything()).toEqual(before);
  });

  it('tenant key fields take no org id: naming one fails validation, for every key, the admin\'s included', async () => {
    const before = everything();
    const calls: [string, string][] = [
      ['{ apiKeys(orgId: "org-b") { id } }', 'Unknown argument "orgId" on field "Query.apiKeys".'],
      ['mutation { createApiKey(input: { name: "x", scopes: ["modules:read"], orgId: "org-b" }) { secret } }', 'Field "orgId" is not defined by type "CreateApiKeyInput".'],
      ['mutation { revokeApiKey(id: "key_x", orgId: "org-b") { id } }', 'Unknown argument "orgId" on field "Mutation.revokeApiKey".'],
      ['mutation { revokeApiKey(id: "key_x", orgId: "org-b", cascade: true) { id } }', 'Unknown argument "orgId" on field "Mutation.revokeApiKey".'],
    ];
    for (const key of [gw.keys.a, gw.keys.admin]) {
      for (const [query, message] of calls) {
        const res = await gw.gql(key, query);
        expect(failure(res, 'GRAPHQL_VALIDATION_FAILED').message).toBe(message);
        expect(res.body.data).toBeUndefined();
      }
    }
    // As variables, the input is refused by coercion: still nothing runs.
    const res = await gw.gql(gw.keys.a, 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }', {
      i: { name: 'x', scopes: ['modules:read'], orgId: ORG_B },
    });
    expect(failure(res, 'BAD_USER_INPUT').message).toContain('"orgId"');
    expect(everything()).toEqual(before);
  });
});

describe('the cross-org repositories', () => {
  // The context Yoga builds for a request, through the app's own plugins, from the principal the
  // pipeline's authenticate stage puts on the request's exchange.
  async function contextOf(key: string): Promise<Record<string, unknown>> {
    const principal = await gw.app.services.authenticator.verify(key);
    expect(principal).toBeDefined();
    const request = new Request('http://127.0.0.1/graphql', { method: 'POST' });
    const { contextFactory } = gw.app.yoga.getEnveloped({ request, exchange: { principal } } as never);
    return (await contextFactory()) as Record<string, unknown>;
  }

  it("are in the context of an admin key only: a tenant key's context has none, in any org", async () => {
    const admin = await contextOf(gw.keys.admin);
    expect(admin).toMatchObject({ orgId: 'default' });
    expect(admin.system).toBeDefined();
    for (const key of [gw.keys.a, gw.keys.b, await gw.key('default', TENANT_SCOPES), await gw.key(ORG_A, ['keys:manage'])]) {
      const tenant = await contextOf(key);
      expect(tenant.repos).toBeDefined();
      expect('system' in tenant && tenant.system !== undefined, `system in the context of a ${String(tenant.orgId)} key`).toBe(false);
    }
  });
});
