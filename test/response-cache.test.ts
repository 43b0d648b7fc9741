import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ok, sleep } from './helpers/api.ts';
import { createTestGateway, lastCache, ORG_A, ORG_B, requestLines, type TestGateway } from './helpers/gateway.ts';

/**
 * The response cache answers a repeated read without executing it, and must never answer with
 * something a fresh execution would not: not after a write (through the gateway or by another
 * connection), not across orgs, not for a key with other scopes, not for a key that is no longer
 * valid. Each case checks the answer against the store and which way it was served.
 */

const PAGE = '{ modules(first: 50) { edges { node { id name version enabled hasCredential usageCount health { status } } } totalCount } }';
const ONE = 'query($id: ID!) { module(id: $id) { id name enabled } }';

async function page(gw: TestGateway, key: string) {
  const res = await gw.gql(key, PAGE);
  const data = ok(res);
  return { cache: lastCache(gw), nodes: data.modules.edges.map((e: { node: Record<string, unknown> }) => e.node), total: data.modules.totalCount };
}

const byId = (nodes: Array<Record<string, unknown>>, id: string) => nodes.find((n) => n.id === id);

describe('response cache', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway();
  });
  afterAll(async () => gw.close());

  it('answers a repeated query from the cache, with the same bytes', async () => {
    const first = await gw.gql(gw.keys.a, PAGE);
    expect(lastCache(gw)).toBe('miss');
    const second = await gw.gql(gw.keys.a, PAGE);
    expect(lastCache(gw)).toBe('hit');
    expect(second.status).toBe(200);
    expect(second.text).toBe(first.text);
    expect(second.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(gw.app.responseCache.entries).toBeGreaterThan(0);
  });

  it('names the operation of a hit in the request log and counts hits and misses', async () => {
    await gw.gql(gw.keys.a, PAGE);
    const line = requestLines(gw).at(-1)!;
    expect(line).toMatchObject({ cache: 'hit', operation: 'modules', orgId: ORG_A, status: 200, outcome: 'ok' });
    const metrics = await (await gw.fetch('/metrics')).text();
    expect(Number(/tenantgate_response_cache_total\{result="hit"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    expect(Number(/tenantgate_response_cache_total\{result="miss"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/tenantgate_response_cache_entries (\d+)/.exec(metrics)?.[1])).toBe(gw.app.responseCache.entries);
    expect(Number(/tenantgate_response_cache_bytes (\d+)/.exec(metrics)?.[1])).toBe(gw.app.responseCache.bytes);
    expect(gw.app.responseCache.entries).toBeGreaterThan(0);
  });

  // Every write the API offers that changes what PAGE shows, each followed by a read.
  const writes: Array<[string, (gw: TestGateway) => Promise<unknown>, (nodes: Array<Record<string, unknown>>) => void]> = [
    ['installModule', (gw) => gw.gql(gw.keys.a, 'mutation { installModule(input: { id: "fresh", name: "Fresh", version: "1.0.0" }) { id } }'), (n) => expect(byId(n, 'fresh')).toBeDefined()],
    ['updateModule', (gw) => gw.gql(gw.keys.a, 'mutation { updateModule(id: "fresh", input: { name: "Renamed" }) { id } }'), (n) => expect(byId(n, 'fresh')?.name).toBe('Renamed')],
    ['disableModule', (gw) => gw.gql(gw.keys.a, 'mutation { disableModule(id: "fresh") { id } }'), (n) => expect(byId(n, 'fresh')?.enabled).toBe(false)],
    ['enableModule', (gw) => gw.gql(gw.keys.a, 'mutation { enableModule(id: "fresh") { id } }'), (n) => expect(byId(n, 'fresh')?.enabled).toBe(true)],
    ['setCredential', (gw) => gw.gql(gw.keys.a, 'mutation { setCredential(moduleId: "fresh", secret: { token: "t" }) { moduleId } }'), (n) => expect(byId(n, 'fresh')?.hasCredential).toBe(true)],
    ['deleteCredential', (gw) => gw.gql(gw.keys.a, 'mutation { deleteCredential(moduleId: "fresh") }'), (n) => expect(byId(n, 'fresh')?.hasCredential).toBe(false)],
    ['recordModuleUsage (admin)', (gw) => gw.gql(gw.keys.admin, `mutation { recordModuleUsage(orgId: "${ORG_A}", moduleId: "fresh", count: 7) { id } }`), (n) => expect(byId(n, 'fresh')?.usageCount).toBe(7)],
    ['reportModuleHealth (admin)', (gw) => gw.gql(gw.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_A}", moduleId: "fresh", status: UNHEALTHY) { id } }`), (n) => expect(byId(n, 'fresh')?.health).toEqual({ status: 'UNHEALTHY' })],
    ['uninstallModule', (gw) => gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "fresh") { id } }'), (n) => expect(byId(n, 'fresh')).toBeUndefined()],
  ];
  for (const [name, write, check] of writes) {
    it(`shows the effect of ${name} on the next read`, async () => {
      await page(gw, gw.keys.a);
      expect((await page(gw, gw.keys.a)).cache).toBe('hit');
      const res = (await write(gw)) as { body: { errors?: unknown } };
      expect(res.body.errors).toBeUndefined();
      const after = await page(gw, gw.keys.a);
      expect(after.cache).toBe('miss');
      check(after.nodes);
      expect(after.total).toBe(after.nodes.length);
    });
  }

  it('shows a write made by another connection (another process, the CLI) on the next read', async () => {
    await page(gw, gw.keys.a);
    expect((await page(gw, gw.keys.a)).cache).toBe('hit');
    const other = new Database(gw.config.database);
    try {
      other.pragma('busy_timeout = 5000');
      expect(other.prepare('UPDATE modules SET name = ? WHERE org_id = ? AND module_id = ?').run('Changed elsewhere', ORG_A, 'slack').changes).toBe(1);
    } finally {
      other.close();
    }
    const after = await page(gw, gw.keys.a);
    expect(after.cache).toBe('miss');
    expect(byId(after.nodes, 'slack')?.name).toBe('Changed elsewhere');
  });

  it('keeps each org its own answer to the same text, and one org writing leaves the other cached', async () => {
    const a1 = await page(gw, gw.keys.a);
    const b1 = await page(gw, gw.keys.b);
    const b2 = await page(gw, gw.keys.b);
    expect(b2.cache).toBe('hit');
    expect(byId(a1.nodes, `only-${ORG_A}`)).toBeDefined();
    expect(byId(a1.nodes, `only-${ORG_B}`)).toBeUndefined();
    expect(byId(b1.nodes, `only-${ORG_B}`)).toBeDefined();
    expect(byId(b1.nodes, `only-${ORG_A}`)).toBeUndefined();
    expect(b2.nodes).toEqual(b1.nodes);

    ok(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "github") { id } }'));
    const b3 = await page(gw, gw.keys.b);
    expect(b3.cache).toBe('hit');
    expect(b3.nodes).toEqual(b1.nodes);
    expect(byId(b3.nodes, 'github')?.enabled).toBe(true);
    // Control: the writing org sees its write.
    const a2 = await page(gw, gw.keys.a);
    expect(a2.cache).toBe('miss');
    expect(byId(a2.nodes, 'github')?.enabled).toBe(false);
  });

  it('never serves an answer to a key with other scopes', async () => {
    await page(gw, gw.keys.a);
    expect((await page(gw, gw.keys.a)).cache).toBe('hit');
    const noRead = await gw.key(ORG_A, ['credentials:write']);
    const denied = await gw.gql(noRead, PAGE);
    expect(denied.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(denied.body.data?.modules ?? null).toBeNull();
    // Asked again: a refusal is not kept either.
    expect((await gw.gql(noRead, PAGE)).body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(lastCache(gw)).toBe('miss');

    const readOnly = await gw.key(ORG_A, ['modules:read']);
    const first = await page(gw, readOnly);
    expect(first.cache).toBe('miss');
    expect((await page(gw, readOnly)).cache).toBe('hit');
  });

  it('never serves an answer to a key that has expired', async () => {
    // Room for the two reads before expiry even on a loaded CI machine; then wait past it.
    const expiresAt = Date.now() + 3000;
    const key = await gw.key(ORG_A, ['modules:read'], new Date(expiresAt));
    await page(gw, key);
    expect((await page(gw, key)).cache).toBe('hit');
    expect(Date.now()).toBeLessThan(expiresAt);
    await sleep(expiresAt - Date.now() + 100);
    const res = await gw.gql(key, PAGE);
    expect(res.status).toBe(401);
    expect(res.body.data).toBeUndefined();
  });

  it('never serves an answer to a key that is revoked or unknown', async () => {
    const key = await gw.key(ORG_A, ['modules:read', 'keys:manage']);
    await page(gw, key);
    expect((await page(gw, key)).cache).toBe('hit');
    const id = ok(await gw.gql(key, '{ viewer { apiKey { id } } }')).viewer.apiKey.id;
    ok(await gw.gql(key, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id }));
    const res = await gw.gql(key, PAGE);
    expect(res.status).toBe(401);
    expect(res.body.data).toBeUndefined();
    expect((await gw.gql(`${key.slice(0, -8)}AAAAAAAA`, PAGE)).status).toBe(401);
  });

  it('keys answers by variables and operation name', async () => {
    const github = ok(await gw.gql(gw.keys.a, ONE, { id: 'github' })).module;
    const slack = ok(await gw.gql(gw.keys.a, ONE, { id: 'slack' })).module;
    expect(ok(await gw.gql(gw.keys.a, ONE, { id: 'github' })).module).toEqual(github);
    expect(lastCache(gw)).toBe('hit');
    expect(ok(await gw.gql(gw.keys.a, ONE, { id: 'slack' })).module).toEqual(slack);
    expect(github.id).toBe('github');
    expect(slack.id).toBe('slack');

    const two = 'query First { module(id: "github") { id } } query Second { module(id: "slack") { id } }';
    const first = await gw.gql(gw.keys.a, two, undefined, { body: JSON.stringify({ query: two, operationName: 'First' }) });
    const second = await gw.gql(gw.keys.a, two, undefined, { body: JSON.stringify({ query: two, operationName: 'Second' }) });
    expect(ok(first).module.id).toBe('github');
    expect(ok(second).module.id).toBe('slack');
  });

  it('decides per operation name in a document holding a query and a mutation', async () => {
    const doc = 'query Q { module(id: "slack") { id enabled } } mutation M($on: Boolean!) { updateModule(id: "slack", input: { name: "Slack" }) @include(if: $on) { id } disableModule(id: "slack") { enabled } }';
    const send = (operationName: string, variables?: Record<string, unknown>) =>
      gw.gql(gw.keys.a, doc, undefined, { body: JSON.stringify({ query: doc, operationName, variables }) });
    ok(await gw.gql(gw.keys.a, 'mutation { enableModule(id: "slack") { id } }'));
    expect(ok(await send('M', { on: true })).disableModule.enabled).toBe(false);
    expect(lastCache(gw)).toBeUndefined();
    ok(await gw.gql(gw.keys.a, 'mutation { enableModule(id: "slack") { id } }'));
    expect(ok(await send('Q')).module.enabled).toBe(true);
    expect(lastCache(gw)).toBe('miss');
    expect(ok(await send('Q')).module.enabled).toBe(true);
    expect(lastCache(gw)).toBe('hit');
    // The mutation still runs every time, and the query after it sees what it did.
    expect(ok(await send('M', { on: false })).disableModule.enabled).toBe(false);
    expect(lastCache(gw)).toBeUndefined();
    expect(ok(await send('Q')).module.enabled).toBe(false);
    expect(lastCache(gw)).toBe('miss');
  });

  it('keeps no mutation, no other root field and no answer with errors', async () => {
    const before = gw.app.responseCache.entries;
    await gw.gql(gw.keys.a, '{ viewer { scopes } }');
    await gw.gql(gw.keys.a, '{ viewer { scopes } }');
    expect(lastCache(gw)).toBeUndefined();
    await gw.gql(gw.keys.a, '{ modules(first: 1) { totalCount } viewer { scopes } }');
    expect(lastCache(gw)).toBeUndefined();
    await gw.gql(gw.keys.a, 'mutation { enableModule(id: "github") { id } }');
    expect(lastCache(gw)).toBeUndefined();
    // A query that fails validation, and one that fails in a resolver, each asked twice.
    for (const [query, code] of [['{ modules(first: 1) { nope } }', 'GRAPHQL_VALIDATION_FAILED'], ['{ modules(first: -1) { totalCount } }', 'BAD_USER_INPUT']]) {
      for (let i = 0; i < 2; i++) {
        const res = await gw.gql(gw.keys.a, query!);
        expect(res.body.errors?.[0]?.extensions?.code).toBe(code);
        expect(lastCache(gw)).not.toBe('hit');
      }
    }
    expect(gw.app.responseCache.entries).toBe(before);
  });

  // Inputs that JSON or a template string would fold into a cached one: each must answer as a
  // fresh execution does, never with the cached page.
  it('answers an empty or non-string operation name as a fresh execution would', async () => {
    const query = 'query Q { modules(first: 2) { totalCount } }';
    ok(await gw.gql(gw.keys.a, query));
    ok(await gw.gql(gw.keys.a, query));
    expect(lastCache(gw)).toBe('hit');
    for (const operationName of ['', ['Q'], 7]) {
      const res = await gw.gql(gw.keys.a, query, undefined, { body: JSON.stringify({ query, operationName }) });
      expect(res.body?.data?.modules, JSON.stringify(operationName)).toBeUndefined();
      expect(res.body?.errors?.length, JSON.stringify(operationName)).toBeGreaterThan(0);
      expect(lastCache(gw)).not.toBe('hit');
    }
  });

  it('answers a variable JSON cannot key (1e400) as a fresh execution would', async () => {
    const query = 'query($f: Int) { modules(first: $f) { totalCount } }';
    ok(await gw.gql(gw.keys.a, query, { f: null }));
    ok(await gw.gql(gw.keys.a, query, { f: null }));
    expect(lastCache(gw)).toBe('hit');
    const res = await gw.gql(gw.keys.a, query, undefined, { body: `{"query": ${JSON.stringify(query)}, "variables": {"f": 1e400}}` });
    expect(res.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(lastCache(gw)).not.toBe('hit');
  });

  // GET goes to Yoga's path, which executes every request: the response cache is the listener's
  // answer stage, for the JSON POSTs dashboards send.
  it('answers GET as POST does, executed', async () => {
    const query = '{ modules(first: 3) { edges { node { id } } } }';
    const post = ok(await gw.gql(gw.keys.a, query));
    const get = () => gw.fetch(`/graphql?query=${encodeURIComponent(query)}`, { headers: { authorization: `Bearer ${gw.keys.a}`, accept: 'application/graphql-response+json' } });
    const first = await get();
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toMatch(/^application\/graphql-response\+json/);
    expect((await first.json()).data).toEqual(post);
    expect(lastCache(gw)).toBeUndefined();
  });
});

describe('response cache across orgs', () => {
  it('answers org B with B\'s page right after org A asked the same text (same data version)', async () => {
    // A fresh gateway: both orgs were seeded with the same writes, so their versions are equal
    // and only the org in the cache key tells their answers apart.
    const gw = await createTestGateway();
    try {
      expect(gw.opened.store.changes.version(ORG_A)).toBe(gw.opened.store.changes.version(ORG_B));
      const a = await page(gw, gw.keys.a);
      const b = await page(gw, gw.keys.b);
      expect(b.cache).toBe('miss');
      expect(a.nodes.map((n: { id: string }) => n.id)).toContain(`only-${ORG_A}`);
      expect(b.nodes.map((n: { id: string }) => n.id)).toEqual(['github', `only-${ORG_B}`, 'slack']);
      // Control: each org's own repeat is a hit, with its own page.
      expect(await page(gw, gw.keys.a)).toEqual({ ...a, cache: 'hit' });
      expect(await page(gw, gw.keys.b)).toEqual({ ...b, cache: 'hit' });
    } finally {
      await gw.close();
    }
  });
});

describe('response cache bounds', () => {
  const query = (i: number) => `{ modules(first: ${i + 1}) { edges { node { id name } } } }`;

  it('holds at most TENANTGATE_RESPONSE_CACHE_BYTES, an org at most an eighth, dropping the least recently used', async () => {
    const gw = await createTestGateway({ env: { TENANTGATE_RESPONSE_CACHE_BYTES: '64000' } });
    try {
      // Org B's page first; then org A asks 40 different pages.
      await gw.gql(gw.keys.b, query(0));
      for (let i = 0; i < 40; i++) await gw.gql(gw.keys.a, query(i));
      expect(gw.app.responseCache.bytes).toBeLessThanOrEqual(64000);
      expect(gw.app.responseCache.entries).toBeGreaterThan(1);
      expect(gw.app.responseCache.entries).toBeLessThan(40);
      // A's newest is still there; A's first was dropped; B's page outlived A's flood.
      await gw.gql(gw.keys.a, query(39));
      expect(lastCache(gw)).toBe('hit');
      await gw.gql(gw.keys.a, query(0));
      expect(lastCache(gw)).toBe('miss');
      await gw.gql(gw.keys.b, query(0));
      expect(lastCache(gw)).toBe('hit');
    } finally {
      await gw.close();
    }
  });

  it('counts answers by their UTF-8 bytes', async () => {
    const gw = await createTestGateway({ env: { TENANTGATE_RESPONSE_CACHE_BYTES: '1000000' } });
    try {
      const ascii = '{ modules(first: 1) { edges { node { name } } } }';
      ok(await gw.gql(gw.keys.a, ascii));
      const one = gw.app.responseCache.bytes;
      ok(await gw.gql(gw.keys.a, 'mutation { updateModule(id: "github", input: { name: "名前名前名前名前名前" }) { id } }'));
      ok(await gw.gql(gw.keys.a, ascii));
      expect(JSON.stringify(ok(await gw.gql(gw.keys.a, ascii)))).toContain('名前');
      // Same key, ten three-byte characters in place of "github for org-a" (16 bytes).
      expect(gw.app.responseCache.bytes).toBe(one - 'github for org-a'.length + Buffer.byteLength('名前名前名前名前名前'));
    } finally {
      await gw.close();
    }
  });

  it('is off with TENANTGATE_RESPONSE_CACHE_BYTES=0', async () => {
    const gw = await createTestGateway({ env: { TENANTGATE_RESPONSE_CACHE_BYTES: '0' } });
    try {
      for (let i = 0; i < 3; i++) expect(ok(await gw.gql(gw.keys.a, PAGE)).modules.totalCount).toBe(3);
      expect(lastCache(gw)).toBeUndefined();
      expect(gw.app.responseCache.entries).toBe(0);
    } finally {
      await gw.close();
    }
  });
});

describe('data version', () => {
  it('changes for an org on its own writes and on any other connection’s commit, not on another org’s writes', async () => {
    const gw = await createTestGateway();
    try {
      const version = gw.opened.store.changes.version;
      const a0 = version(ORG_A);
      const b0 = version(ORG_B);
      expect(version(ORG_A)).toBe(a0);
      ok(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "slack") { id } }'));
      expect(version(ORG_A)).not.toBe(a0);
      expect(version(ORG_B)).toBe(b0);

      const other = new Database(gw.config.database);
      try {
        other.prepare("UPDATE orgs SET name = 'x' WHERE id = ?").run(ORG_B);
      } finally {
        other.close();
      }
      // data_version is read once per synchronous run of this process's code (src/store/sqlite/changes.ts):
      // the commit is heard from the next run on, as any request arriving after it is.
      await Promise.resolve();
      expect(version(ORG_B)).not.toBe(b0);
    } finally {
      await gw.close();
    }
  });
});
