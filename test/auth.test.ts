import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isObjectType, type GraphQLField } from 'graphql';
import { Authenticator } from '../src/auth/authenticator.ts';
import { generateKey, hashKey, isWellFormedKey } from '../src/auth/key-format.ts';
import { SCOPES, type Scope } from '../src/auth/scopes.ts';
import { schema } from '../src/graphql/schema.ts';
import { captureLogger } from '../src/logger.ts';
import { createTestGateway, DEFAULT_DIALECT, ORG_A, ORG_B, TENANT_SCOPES, TRANSPORTS, type TestGateway } from './helpers/gateway.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';
import { subscribe } from './helpers/sse.ts';

const VIEWER = '{ viewer { org { id name } apiKey { id prefix scopes } scopes } }';

describe('key format', () => {
  it('is tgk_ + 43 base62 characters + a 6-character checksum, and every key differs', () => {
    const keys = new Set(Array.from({ length: 200 }, generateKey));
    expect(keys.size).toBe(200);
    for (const key of keys) {
      expect(key).toMatch(/^tgk_[0-9A-Za-z]{49}$/);
      expect(isWellFormedKey(key)).toBe(true);
    }
  });

  it('rejects a key with any single character changed (checksum)', () => {
    const key = generateKey();
    let caught = 0;
    for (let i = 4; i < key.length; i++) {
      const swapped = key[i] === 'a' ? 'b' : 'a';
      if (!isWellFormedKey(key.slice(0, i) + swapped + key.slice(i + 1))) caught++;
    }
    expect(caught).toBe(key.length - 4);
    expect(isWellFormedKey(`${key}x`)).toBe(false);
    expect(isWellFormedKey(key.replace('tgk_', 'tgx_'))).toBe(false);
  });
});

describe('authentication over HTTP', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ seed: false });
  });
  afterAll(async () => gw.close());

  it('accepts a valid key and puts its org, key and scopes on the context', async () => {
    const res = await gw.gql(gw.keys.a, VIEWER);
    expect(res.status).toBe(200);
    expect(res.body.data.viewer.org).toEqual({ id: ORG_A, name: 'Org A' });
    expect(res.body.data.viewer.scopes).toEqual(TENANT_SCOPES);
    expect(res.body.data.viewer.apiKey.prefix).toBe(gw.keys.a.slice(0, 12));
  });

  it('answers 401 with a Bearer challenge when there is no key', async () => {
    const res = await gw.gql(null, VIEWER);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tenantgate"');
    expect(res.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(res.body.data).toBeUndefined();
  });

  it('answers malformed, unknown, revoked and expired keys with the same 401', async () => {
    const revoked = await gw.key(ORG_A, ['modules:read']);
    const revokedId = (await gw.gql(revoked, VIEWER)).body.data.viewer.apiKey.id;
    expect((await gw.gql(gw.keys.a, 'mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }', { id: revokedId })).body.data.revokeApiKey.revokedAt).toBeTruthy();

    const expired = generateKey();
    await gw.opened.store.forOrg(ORG_A).apiKeys.insert({
      id: 'key_expired',
      name: 'expired',
      prefix: expired.slice(0, 12),
      hash: hashKey(expired),
      scopes: ['modules:read'],
      createdAt: '2020-01-01T00:00:00.000Z',
      expiresAt: '2021-01-01T00:00:00.000Z',
      revokedAt: null,
      lastUsedAt: null,
      createdByKeyId: null,
    }, SYSTEM_ACTOR);

    const cases = {
      malformed: 'tgk_not-a-key',
      badChecksum: `${gw.keys.a.slice(0, -1)}${gw.keys.a.endsWith('a') ? 'b' : 'a'}`,
      unknown: generateKey(),
      revoked,
      expired,
      notBearer: `Basic ${Buffer.from('user:pass').toString('base64')}`,
    };
    const answers = [];
    for (const [name, key] of Object.entries(cases)) {
      const res = await gw.gql(null, VIEWER, undefined, {
        headers: { authorization: name === 'notBearer' ? key : `Bearer ${key}` },
        address: `127.9.0.${answers.length}`,
      });
      expect(res.status, name).toBe(401);
      expect(res.headers.get('www-authenticate'), name).toBe('Bearer realm="tenantgate", error="invalid_token"');
      answers.push(res.text);
    }
    expect(new Set(answers).size).toBe(1);
    expect(JSON.parse(answers[0]!).errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it('ignores keys in the query string and in cookies', async () => {
    const attempts: Array<{ url: string; headers: Record<string, string> }> = [
      { url: `/graphql?query=${encodeURIComponent(VIEWER)}&api_key=${gw.keys.a}&access_token=${gw.keys.a}`, headers: {} },
      { url: `/graphql?query=${encodeURIComponent(VIEWER)}`, headers: { cookie: `token=${gw.keys.a}; authorization=Bearer ${gw.keys.a}` } },
    ];
    for (const init of attempts) {
      const res = await gw.fetch(init.url, { headers: { accept: 'application/json', ...init.headers } });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tenantgate"');
    }
  });

  it('serves /health, /ready and the GraphiQL page without a key', async () => {
    expect((await gw.fetch('/health')).status).toBe(200);
    expect((await gw.fetch('/ready')).status).toBe(200);
    const page = await gw.fetch('/graphql', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
  });

  it('makes a revocation effective on the very next request, despite the cache', async () => {
    const key = await gw.key(ORG_A, ['modules:read']);
    expect((await gw.gql(key, VIEWER)).status).toBe(200); // now cached
    const id = (await gw.gql(key, VIEWER)).body.data.viewer.apiKey.id;
    await gw.gql(gw.keys.a, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id });
    expect((await gw.gql(key, VIEWER)).status).toBe(401);
  });

  it('lets a key revoke itself, and then it stops working', async () => {
    const key = await gw.key(ORG_A, ['keys:manage']);
    const id = (await gw.gql(key, VIEWER)).body.data.viewer.apiKey.id;
    const res = await gw.gql(key, 'mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }', { id });
    expect(res.body.data.revokeApiKey.id).toBe(id);
    expect((await gw.gql(key, VIEWER)).status).toBe(401);
  });
});

describe('the authenticator', () => {
  it('rejects badly formed keys before any store lookup', async () => {
    const gw = await createTestGateway({ seed: false });
    try {
      let lookups = 0;
      const original = gw.opened.store.auth.keyByHash;
      gw.opened.store.auth.keyByHash = (hash) => {
        lookups++;
        return original(hash);
      };
      const auth = new Authenticator(gw.opened.store, { cacheTtlMs: 0, flushIntervalMs: 0, logger: captureLogger() });
      const good = generateKey();
      expect(await auth.verify(`${good.slice(0, -1)}${good.endsWith('0') ? '1' : '0'}`)).toBeUndefined();
      expect(await auth.verify('tgk_short')).toBeUndefined();
      expect(await auth.verify('')).toBeUndefined();
      expect(lookups).toBe(0);
      expect(await auth.verify(good)).toBeUndefined(); // well formed but unknown: one lookup
      expect(lookups).toBe(1);
      await auth.close();
    } finally {
      await gw.close();
    }
  });

  it('expires a cached key at its expiry time', async () => {
    const gw = await createTestGateway({ seed: false });
    try {
      let now = Date.now();
      const auth = new Authenticator(gw.opened.store, { cacheTtlMs: 60_000, flushIntervalMs: 0, logger: captureLogger(), now: () => now });
      const key = await gw.key(ORG_A, ['modules:read'], new Date(now + 5_000));
      expect(await auth.verify(key)).toMatchObject({ orgId: ORG_A });
      now += 4_000;
      expect(await auth.verify(key)).toMatchObject({ orgId: ORG_A });
      now += 1_001;
      expect(await auth.verify(key)).toBeUndefined();
      await auth.close();
    } finally {
      await gw.close();
    }
  });

  it('does not cache a row read before a revocation it overlapped', async () => {
    const gw = await createTestGateway({ seed: false });
    try {
      const key = await gw.key(ORG_A, ['modules:read']);
      const id = (await gw.opened.store.forOrg(ORG_A).apiKeys.list()).find((k) => k.hash === hashKey(key))!.id;
      let lookups = 0;
      let release: () => void = () => {};
      const original = gw.opened.store.auth.keyByHash;
      // The row is read now, and handed over only when the test says: a revocation lands between.
      gw.opened.store.auth.keyByHash = (hash) => {
        lookups++;
        const row = original(hash);
        return lookups === 1 ? new Promise((resolve) => (release = () => resolve(row))) : row;
      };
      const auth = new Authenticator(gw.opened.store, { cacheTtlMs: 60_000, flushIntervalMs: 0, logger: captureLogger() });
      const first = auth.verify(key);
      await gw.opened.store.forOrg(ORG_A).apiKeys.revoke(id, new Date().toISOString(), SYSTEM_ACTOR);
      auth.forget(id);
      release();
      // The request that began before the revocation is admitted; the next one asks the store.
      expect(await first).toMatchObject({ keyId: id });
      expect(await auth.verify(key)).toBeUndefined();
      expect(lookups).toBe(2);
      await auth.close();
    } finally {
      await gw.close();
    }
  });

  it('writes last-used times in one batch, not per request, and flushes on close', async () => {
    const gw = await createTestGateway({ seed: false });
    try {
      let batches = 0;
      const original = gw.opened.store.auth.touchKeys;
      gw.opened.store.auth.touchKeys = (entries) => {
        batches++;
        return original(entries);
      };
      const auth = new Authenticator(gw.opened.store, { cacheTtlMs: 10_000, flushIntervalMs: 0, logger: captureLogger() });
      const keys = [gw.keys.a, gw.keys.b];
      for (let i = 0; i < 50; i++) expect(await auth.verify(keys[i % 2]!)).toBeDefined();
      expect(batches).toBe(0);
      const before = await gw.opened.store.forOrg(ORG_A).apiKeys.list();
      expect(before.every((k) => k.lastUsedAt === null)).toBe(true);
      await auth.close();
      expect(batches).toBe(1);
      const used = (await gw.opened.store.forOrg(ORG_A).apiKeys.list()).find((k) => k.hash === hashKey(gw.keys.a));
      expect(used?.lastUsedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    } finally {
      await gw.close();
    }
  });

  // SQLite's batched write (its synchronous pragma is part of the check); PostgreSQL's last-used
  // writes are test/postgres-store.test.ts's.
  it.skipIf(DEFAULT_DIALECT === 'postgres')('writes many last-used times in slices, with other work run between them, and every one lands', async () => {
    const gw = await createTestGateway({ seed: false });
    try {
      const marks: string[] = [];
      const original = gw.opened.store.auth.touchKeys;
      const synchronous = () => gw.opened.sqlite.pragma('synchronous', { simple: true });
      gw.opened.store.auth.touchKeys = (entries) => {
        marks.push(`slice ${entries.length}`);
        // 1 = NORMAL: the store syncs the -wal itself before it answers any other write
        // (test/group-commit.test.ts); the last-used times are not waited for.
        expect(synchronous()).toBe(1);
        // Queued now, it runs before the next slice only if the flush yields to the event loop.
        setImmediate(() => marks.push('other work'));
        return original(entries);
      };
      const auth = new Authenticator(gw.opened.store, { cacheTtlMs: 10_000, flushIntervalMs: 0, logger: captureLogger() });
      const keys: string[] = [];
      for (let i = 0; i < 450; i++) keys.push(await gw.key(ORG_A, ['modules:read']));
      for (const key of keys) expect(await auth.verify(key)).toBeDefined();
      // A second flush waits for the first instead of writing alongside it (it has nothing left).
      await Promise.all([auth.flush(), auth.flush()]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(marks).toEqual(['slice 200', 'other work', 'slice 200', 'other work', 'slice 50', 'other work']);
      const rows = await gw.opened.store.forOrg(ORG_A).apiKeys.list();
      expect(rows.filter((k) => k.lastUsedAt !== null).length).toBe(450);
      expect(synchronous()).toBe(1);
    } finally {
      await gw.close();
    }
  });
});

describe('brute-force protection', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ seed: false, env: { TENANTGATE_AUTH_FAILURES_PER_MINUTE: '5' } });
  });
  afterAll(async () => gw.close());

  it('answers 429 with Retry-After past the failure budget, for that address only', async () => {
    const attacker = '127.203.0.7';
    for (let i = 0; i < 5; i++) {
      expect((await gw.gql(generateKey(), VIEWER, undefined, { address: attacker })).status).toBe(401);
    }
    const limited = await gw.gql(generateKey(), VIEWER, undefined, { address: attacker });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    expect(limited.body.errors[0].extensions.code).toBe('RATE_LIMITED');
    // Further guesses stay limited, with or without a checksum that passes.
    expect((await gw.gql('tgk_short', VIEWER, undefined, { address: attacker })).status).toBe(429);
    // Another address with a valid key is unaffected, and so is a valid key from the limited
    // address: one guesser behind a shared NAT must not lock everyone there out.
    expect((await gw.gql(gw.keys.a, VIEWER, undefined, { address: '127.198.51.2' })).status).toBe(200);
    expect((await gw.gql(gw.keys.a, VIEWER, undefined, { address: attacker })).status).toBe(200);
  });

  it('behind a trusted proxy, limits by the address the proxy appended, not one the client sent', async () => {
    const proxied = await createTestGateway({ seed: false, env: { TENANTGATE_AUTH_FAILURES_PER_MINUTE: '3', TENANTGATE_TRUST_PROXY: 'true' } });
    try {
      const statuses = [];
      for (let i = 0; i < 6; i++) {
        const res = await proxied.gql(generateKey(), VIEWER, undefined, {
          headers: { 'x-forwarded-for': `10.0.0.${i}, 203.0.113.99` },
          address: '127.0.0.1',
        });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 429, 429, 429]);
    } finally {
      await proxied.close();
    }
  });

  it('does not count successful requests against the budget', async () => {
    for (let i = 0; i < 20; i++) {
      expect((await gw.gql(gw.keys.b, VIEWER, undefined, { address: '127.198.51.9' })).status).toBe(200);
    }
  });
});

// One operation per scoped root field; the table must cover every field the schema has.
type Vars = Record<string, unknown> | ((gw: TestGateway) => Promise<Record<string, unknown>>);
/** A fresh org for the cases that suspend or delete one. */
async function matrixOrg(gw: TestGateway): Promise<string> {
  const id = `matrix-${Math.random().toString(36).slice(2, 10)}`;
  const res = await gw.gql(gw.keys.admin, 'mutation($id: String!) { createOrg(input: { id: $id, name: "Matrix" }) { id } }', { id });
  expect(res.body.errors).toBeUndefined();
  return id;
}

const OPERATIONS: Record<string, { query: string; variables?: Vars }> = {
  'Query.viewer': { query: '{ viewer { org { id } } }' },
  // Streams (server-sent events): the first event is a health report made for the test.
  'Subscription.moduleEvents': { query: 'subscription { moduleEvents { kind moduleId } }' },
  'Subscription.moduleHealthEvents': { query: 'subscription { moduleHealthEvents { kind moduleId } }' },
  'Query.orgs': { query: '{ orgs { id } }' },
  'Query.apiKeys': { query: '{ apiKeys { id } }' },
  'Query.orgApiKeys': { query: '{ orgApiKeys(orgId: "org-a") { id } }' },
  'Query.modules': { query: '{ modules(first: 1) { totalCount } }' },
  'Query.module': { query: '{ module(id: "github") { id } }' },
  'Query.credentials': { query: '{ credentials { moduleId } }' },
  'Query.hasCredential': { query: '{ hasCredential(moduleId: "github") }' },
  'Query.credentialSecret': { query: '{ credentialSecret(moduleId: "github") }' },
  'Query.unhealthyModules': { query: '{ unhealthyModules { id } }' },
  'Mutation.createOrg': { query: 'mutation($id: String!) { createOrg(input: { id: $id, name: "N" }) { id } }', variables: { id: 'matrix-org' } },
  'Mutation.createApiKey': { query: 'mutation { createApiKey(input: { name: "m", scopes: ["keys:manage"] }) { apiKey { id } } }' },
  'Mutation.revokeApiKey': {
    query: 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }',
    variables: async (gw) => {
      const secret = await gw.key(ORG_A, ['keys:manage']); // a key may revoke only keys within its scopes
      const keys = await gw.opened.store.forOrg(ORG_A).apiKeys.list();
      return { id: keys.find((k) => k.hash === hashKey(secret))!.id };
    },
  },
  'Mutation.createOrgApiKey': { query: 'mutation { createOrgApiKey(orgId: "org-a", input: { name: "m", scopes: ["modules:read"] }) { apiKey { id } } }' },
  'Mutation.revokeOrgApiKey': {
    query: 'mutation($id: ID!) { revokeOrgApiKey(orgId: "org-a", id: $id) { id } }',
    variables: async (gw) => {
      const secret = await gw.key(ORG_A, ['modules:read']);
      return { id: (await gw.gql(secret, '{ viewer { apiKey { id } } }')).body.data.viewer.apiKey.id };
    },
  },
  'Mutation.installModule': { query: 'mutation($id: String!) { installModule(input: { id: $id, name: "M", version: "1.0.0" }) { id } }', variables: { id: 'matrix-mod' } },
  'Mutation.updateModule': { query: 'mutation { updateModule(id: "github", input: { name: "GH" }) { id } }' },
  'Mutation.enableModule': { query: 'mutation { enableModule(id: "github") { id } }' },
  'Mutation.disableModule': { query: 'mutation { disableModule(id: "slack") { id } }' },
  'Mutation.uninstallModule': { query: 'mutation { uninstallModule(id: "only-org-a") { id } }' },
  'Mutation.setCredential': { query: 'mutation { setCredential(moduleId: "slack", secret: { token: "t" }) { moduleId } }' },
  'Mutation.deleteCredential': { query: 'mutation { deleteCredential(moduleId: "slack") }' },
  'Mutation.reportModuleHealth': { query: 'mutation { reportModuleHealth(orgId: "org-a", moduleId: "github", status: DEGRADED, message: "slow") { id } }' },
  'Mutation.recordModuleUsage': { query: 'mutation { recordModuleUsage(orgId: "org-a", moduleId: "github", count: 2) { usageCount } }' },
  'Query.usage': { query: '{ usage { runUnits } }' },
  'Query.usageSeries': { query: '{ usageSeries(from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", granularity: DAY) { start } }' },
  'Query.runUnitEvents': { query: '{ runUnitEvents(first: 5) { edges { node { id } } } }' },
  'Query.orgUsage': { query: '{ orgUsage(orgId: "org-a") { runUnits } }' },
  'Query.orgUsageSeries': { query: '{ orgUsageSeries(orgId: "org-a", from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", granularity: HOUR) { start } }' },
  'Query.orgRunUnitEvents': { query: '{ orgRunUnitEvents(orgId: "org-a", first: 5) { edges { node { id } } } }' },
  'Query.topOrgsByUsage': { query: '{ topOrgsByUsage { orgId } }' },
  'Query.orgQuota': { query: '{ orgQuota(orgId: "org-a") { orgId } }' },
  'Mutation.recordRunUnits': { query: 'mutation($k: String!) { recordRunUnits(input: { units: 1, idempotencyKey: $k }) { repeat } }', variables: async () => ({ k: `matrix-${Math.random()}` }) },
  'Mutation.setOrgQuota': { query: 'mutation { setOrgQuota(orgId: "org-a", input: { runUnitsPerMonth: 1000000 }) { orgId } }' },
  // Org lifecycle (issue 15 item 4): suspension and deletion on an org of their own, made for the case.
  'Mutation.renameOrg': { query: 'mutation { renameOrg(id: "org-a", name: "Org A") { id } }' },
  'Mutation.suspendOrg': {
    query: 'mutation($id: ID!) { suspendOrg(id: $id, reason: "matrix") { id } }',
    variables: async (gw) => ({ id: await matrixOrg(gw) }),
  },
  'Mutation.resumeOrg': { query: 'mutation { resumeOrg(id: "org-a") { id } }' },
  'Mutation.deleteOrg': {
    query: 'mutation($id: ID!) { deleteOrg(id: $id, confirm: $id) { id } }',
    variables: async (gw) => ({ id: await matrixOrg(gw) }),
  },
  'Query.auditLog': { query: '{ auditLog(first: 5) { edges { node { id action } } } }' },
  'Query.orgAuditLog': { query: '{ orgAuditLog(orgId: "org-a", first: 5) { edges { node { id action } } } }' },
};

function rootFields(): Array<[string, GraphQLField<unknown, unknown>]> {
  const out: Array<[string, GraphQLField<unknown, unknown>]> = [];
  for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
    if (!isObjectType(root)) continue;
    for (const field of Object.values(root.getFields())) out.push([`${root.name}.${field.name}`, field]);
  }
  return out;
}

function requiredScope(field: GraphQLField<unknown, unknown>): Scope | undefined {
  const scopes = (field.extensions as { pothosOptions?: { authScopes?: Record<string, boolean> } }).pothosOptions?.authScopes;
  const names = Object.keys(scopes ?? {});
  expect(names.length, `${field.name} declares at most one scope`).toBeLessThanOrEqual(1);
  return names[0] as Scope | undefined;
}

describe.each(TRANSPORTS)('scope matrix, over %s', (transport) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ transport });
  });
  afterAll(async () => gw.close());

  it('has an operation for every root field, and every field but viewer declares a scope', () => {
    const fields = rootFields().map(([name]) => name);
    expect(fields.filter((name) => !OPERATIONS[name]), 'add these fields to OPERATIONS').toEqual([]);
    const unscoped = rootFields().filter(([, f]) => requiredScope(f) === undefined).map(([name]) => name);
    expect(unscoped).toEqual(['Query.viewer']);
  });

  for (const [name, op] of Object.entries(OPERATIONS)) {
    it(`${name}: FORBIDDEN without its scope, allowed with it`, async () => {
      const field = rootFields().find(([n]) => n === name)?.[1];
      expect(field, `${name} is in the schema`).toBeDefined();
      const scope = requiredScope(field!);
      if (scope === undefined) return; // viewer: any valid key; covered above
      const org = scope === 'admin' ? 'default' : ORG_A;
      const vars = typeof op.variables === 'function' ? await op.variables(gw) : op.variables;
      // Every other scope the org's keys may hold (admin only exists in the operator org).
      const without = await gw.key(org, (org === 'default' ? SCOPES : TENANT_SCOPES).filter((s) => s !== scope));
      if (name.startsWith('Subscription.')) {
        // Refused when it is opened, before any event; with the scope it stays open and streams.
        const denied = await subscribe(gw, without, op.query);
        await denied.ended();
        expect(denied.results).toHaveLength(1);
        expect(denied.results[0].errors[0].extensions.code).toBe('FORBIDDEN');
        expect(denied.results[0].errors[0].message).toContain(scope);
        const withIt = await gw.key(org, scope === 'admin' ? SCOPES : [scope]);
        const allowed = await subscribe(gw, withIt, op.query);
        try {
          await new Promise((resolve) => setTimeout(resolve, 50));
          const report = await gw.gql(gw.keys.admin, 'mutation { reportModuleHealth(orgId: "org-a", moduleId: "github", status: HEALTHY) { id } }');
          expect(report.body.errors).toBeUndefined();
          const first = await allowed.nth(0);
          expect(first.errors, JSON.stringify(first.errors)).toBeUndefined();
          expect(first.data[field!.name]).toMatchObject({ kind: 'HEALTH_REPORTED', moduleId: 'github' });
        } finally {
          allowed.close();
        }
        return;
      }
      const denied = await gw.gql(without, op.query, vars);
      expect(denied.status).toBe(200);
      expect(denied.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      expect(denied.body.errors[0].message).toContain(scope);
      expect(denied.body.data?.[field!.name] ?? null).toBeNull();

      const withIt = await gw.key(org, scope === 'admin' ? SCOPES : [scope]);
      const allowed = await gw.gql(withIt, op.query, vars);
      expect(allowed.body.errors, JSON.stringify(allowed.body.errors)).toBeUndefined();
      expect(allowed.body.data).not.toBeNull();
      expect(allowed.body.data[field!.name]).not.toBeNull();
    });
  }
});

describe('key management', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ seed: false });
  });
  afterAll(async () => gw.close());

  const CREATE = 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id name prefix scopes expiresAt } } }';

  it('creates a key whose secret is returned once and works at once', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const res = await gw.gql(gw.keys.a, CREATE, { i: { name: 'ci', scopes: ['modules:read'], expiresAt } });
    const { secret, apiKey } = res.body.data.createApiKey;
    expect(isWellFormedKey(secret)).toBe(true);
    expect(apiKey).toMatchObject({ name: 'ci', scopes: ['modules:read'], prefix: secret.slice(0, 12), expiresAt });
    const viewer = await gw.gql(secret, VIEWER);
    expect(viewer.body.data.viewer.org.id).toBe(ORG_A);
    const listed = await gw.gql(gw.keys.a, '{ apiKeys { id prefix } }');
    expect(listed.body.data.apiKeys.map((k: { id: string }) => k.id)).toContain(apiKey.id);
    expect(listed.text).not.toContain(secret);
    const row = await gw.opened.store.forOrg(ORG_A).apiKeys.get(apiKey.id);
    expect(Object.values(row!)).not.toContain(secret);
    expect(row!.hash).toBe(hashKey(secret));
  });

  it('never lets a key grant a scope it does not hold', async () => {
    const manager = await gw.key(ORG_A, ['keys:manage', 'modules:read']);
    const res = await gw.gql(manager, CREATE, { i: { name: 'escalate', scopes: ['modules:read', 'credentials:reveal'] } });
    expect(res.body.errors[0].extensions.code).toBe('FORBIDDEN');
    expect(res.body.errors[0].message).toContain('credentials:reveal');
    const ok = await gw.gql(manager, CREATE, { i: { name: 'subset', scopes: ['modules:read'] } });
    expect(ok.body.data.createApiKey.apiKey.scopes).toEqual(['modules:read']);
  });

  it('rejects unknown scopes, empty names and past expiry with BAD_USER_INPUT', async () => {
    for (const i of [
      { name: 'x', scopes: ['modules:delete'] },
      { name: 'x', scopes: [] },
      { name: '  ', scopes: ['modules:read'] },
      { name: 'x', scopes: ['modules:read'], expiresAt: '2000-01-01T00:00:00Z' },
    ]) {
      const res = await gw.gql(gw.keys.a, CREATE, { i });
      expect(res.body.errors[0].extensions.code, JSON.stringify(i)).toBe('BAD_USER_INPUT');
    }
  });

  it("answers another org's key id exactly like a missing one", async () => {
    const bKeys = await gw.opened.store.forOrg(ORG_B).apiKeys.list();
    const REVOKE = 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }';
    const foreign = await gw.gql(gw.keys.a, REVOKE, { id: bKeys[0]!.id });
    const missing = await gw.gql(gw.keys.a, REVOKE, { id: 'key_00000000-0000-0000-0000-000000000000' });
    expect(foreign.body.errors[0].extensions.code).toBe('NOT_FOUND');
    expect(foreign.body.errors[0].message.replace(bKeys[0]!.id, 'ID')).toBe(missing.body.errors[0].message.replace('key_00000000-0000-0000-0000-000000000000', 'ID'));
    expect((await gw.opened.store.forOrg(ORG_B).apiKeys.get(bKeys[0]!.id))?.revokedAt).toBeNull();
    expect((await gw.gql(gw.keys.b, VIEWER)).status).toBe(200);
  });

  it('takes no org from a tenant key: an org id in the input is refused, whether or not the org exists', async () => {
    const existing = await gw.gql(gw.keys.a, CREATE, { i: { name: 'x', scopes: ['modules:read'], orgId: ORG_B } });
    const missing = await gw.gql(gw.keys.a, CREATE, { i: { name: 'x', scopes: ['modules:read'], orgId: 'no-such-org' } });
    expect(existing.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(existing.text).toBe(missing.text);
    const list = await gw.gql(gw.keys.a, 'query($o: ID) { apiKeys(orgId: $o) { id } }', { o: ORG_B });
    expect(list.body.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect((await gw.opened.store.forOrg(ORG_B).apiKeys.list()).length).toBe(1);
  });

  it('lets an admin create an org and issue its first key', async () => {
    const org = await gw.gql(gw.keys.admin, 'mutation { createOrg(input: { id: "newco", name: "New Co" }) { id name } }');
    expect(org.body.data.createOrg).toEqual({ id: 'newco', name: 'New Co' });
    const again = await gw.gql(gw.keys.admin, 'mutation { createOrg(input: { id: "newco", name: "Dup" }) { id } }');
    expect(again.body.errors[0].extensions.code).toBe('CONFLICT');
    const bad = await gw.gql(gw.keys.admin, 'mutation { createOrg(input: { id: "New Co!", name: "x" }) { id } }');
    expect(bad.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    const CREATE_IN = 'mutation($o: ID!, $i: CreateApiKeyInput!) { createOrgApiKey(orgId: $o, input: $i) { secret apiKey { id } } }';
    const key = await gw.gql(gw.keys.admin, CREATE_IN, { o: 'newco', i: { name: 'first', scopes: TENANT_SCOPES } });
    const secret = key.body.data.createOrgApiKey.secret;
    expect((await gw.gql(secret, VIEWER)).body.data.viewer.org).toEqual({ id: 'newco', name: 'New Co' });
    const unknownOrg = await gw.gql(gw.keys.admin, CREATE_IN, { o: 'ghost', i: { name: 'x', scopes: ['modules:read'] } });
    expect(unknownOrg.body.errors[0].extensions.code).toBe('NOT_FOUND');
    expect(unknownOrg.body.errors[0].message).toBe('Org "ghost" was not found');
    const orgs = await gw.gql(gw.keys.admin, '{ orgs { id } }');
    expect(orgs.body.data.orgs.map((o: { id: string }) => o.id)).toEqual(['default', 'newco', ORG_A, ORG_B].sort());
  });
});

describe('secrets of keys', () => {
  let gw: TestGateway;
  afterEach(async () => gw?.close());

  it('appear in no response but createApiKey, and in no log line', async () => {
    gw = await createTestGateway();
    const created = await gw.gql(gw.keys.a, 'mutation { createApiKey(input: { name: "leak", scopes: ["modules:read", "keys:manage"] }) { secret } }');
    const secret: string = created.body.data.createApiKey.secret;
    const texts: string[] = [];
    const all = [gw.keys.a, gw.keys.b, gw.keys.admin, secret];
    for (const q of [VIEWER, '{ apiKeys { id name prefix scopes lastUsedAt } }', '{ modules { edges { node { id } } } }', '{ nope }', '{ orgs { id } }']) {
      texts.push((await gw.gql(secret, q)).text);
    }
    const nearMiss = `${secret.slice(0, -1)}${secret.endsWith('a') ? 'b' : 'a'}`;
    texts.push((await gw.gql(nearMiss, VIEWER)).text);
    texts.push((await gw.gql(generateKey(), VIEWER)).text);
    await gw.app.close(); // flush last-used, which logs nothing secret either
    for (const text of texts) for (const key of all) expect(text).not.toContain(key.slice(12));
    const logs = gw.logger.lines.join('\n');
    expect(gw.logger.lines.length).toBeGreaterThan(0);
    for (const key of [...all, nearMiss]) expect(logs).not.toContain(key.slice(12));
  });
});
