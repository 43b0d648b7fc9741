import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, type GqlResponse, type TestGateway } from './helpers/gateway.ts';
import { MODULE_FIELDS, ok } from './helpers/api.ts';

/**
 * Compiled execution (src/graphql/compiled-execution.ts) must answer what graphql-js answers. With
 * TENANTGATE_COMPILE_AFTER=1, an operation's first execution is interpreted and its second
 * compiled: every case below is sent twice over HTTP and the two answers compared, after
 * checking on /metrics that the engines really were those two. The response cache is off so that
 * the second request executes too.
 */

type Case = {
  name: string;
  query: string;
  variables?: Record<string, unknown>;
  key?: 'a' | 'b' | 'admin' | 'readOnly';
  /** A write: the second call gets these variables instead, and answers are compared with `same` applied. */
  second?: Record<string, unknown>;
  same?: (text: string) => string;
  /** Never compiled (introspection): both executions are interpreted. */
  interpreted?: true;
};

const PAGE = `query($first: Int, $after: String) {
  modules(first: $first, after: $after) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { ${MODULE_FIELDS} } } }
}`;

const READS: Case[] = [
  { name: 'a page of modules', query: PAGE, variables: { first: 2 } },
  { name: 'a filtered page, an explicit null cursor', query: PAGE.replace('modules(first: $first, after: $after)', 'modules(first: $first, after: $after, enabled: true)'), variables: { first: 1, after: null } },
  { name: 'one module, every field', query: `query($id: ID!) { module(id: $id) { ${MODULE_FIELDS} } }`, variables: { id: 'github' } },
  { name: 'a missing module is null', query: `query($id: ID!) { module(id: $id) { id } }`, variables: { id: 'nope' } },
  { name: "another org's module is null", query: `query($id: ID!) { module(id: $id) { id name } }`, variables: { id: 'only-org-b' } },
  { name: 'viewer, its org and its key', query: '{ viewer { scopes org { id name status createdAt } apiKey { id name prefix scopes expiresAt revokedAt createdAt } } }' },
  { name: 'credentials and a reveal', query: 'query($m: ID!) { credentials { moduleId fields createdAt updatedAt } hasCredential(moduleId: $m) credentialSecret(moduleId: $m) }', variables: { m: 'github' } },
  { name: 'a reveal without a credential is null', query: 'query { credentialSecret(moduleId: "slack") }' },
  {
    name: 'aliases, fragments, inline fragments, __typename',
    query: `query { first: module(id: "github") { ...Parts } second: module(id: "slack") { ... on Module { __typename id enabled } } __typename }
      fragment Parts on Module { id name health { status } }`,
  },
  {
    name: '@skip and @include from variables, also on fragments',
    query: `query($yes: Boolean!, $no: Boolean!) {
      module(id: "github") { id name @include(if: $no) version @skip(if: $no) ...F @include(if: $yes) ... on Module @skip(if: $yes) { enabled } }
    }
    fragment F on Module { config description @skip(if: $yes) }`,
    variables: { yes: true, no: false },
  },
  { name: 'a variable left out takes its default, non-null too', query: 'query($id: ID! = "slack", $first: Int = 1) { module(id: $id) { id } modules(first: $first) { edges { node { id } } } }' },
  { name: 'an explicit null is not the default', query: 'query($after: String = "not a cursor") { modules(first: 1, after: $after) { totalCount } }', variables: { after: null } },
  { name: 'enum and DateTime variables', query: 'query($g: UsageGranularity!, $from: DateTime!, $to: DateTime!) { usageSeries(from: $from, to: $to, granularity: $g) { runUnits } }', variables: { g: 'DAY', from: '2026-01-01T00:00:00Z', to: '2026-01-03T00:00:00Z' } },
  { name: 'introspection of a type', query: '{ __type(name: "Module") { name kind fields { name type { kind name ofType { kind name } } } } }', interpreted: true },
  { name: 'introspection of the schema roots', query: '{ __schema { queryType { name } mutationType { name } subscriptionType { name } } }', interpreted: true },
  { name: 'a type name beside a query', query: '{ __typename module(id: "github") { __typename id } }' },
  { name: 'an operation picked by name from several', query: 'query One { module(id: "github") { id } } query Two { module(id: "slack") { id } }', variables: undefined },
  // Errors: the answers must be the same to the byte, locations and paths included.
  { name: 'a field error (bad cursor) keeps its location and path', query: 'query {\n  ok: module(id: "github") { id }\n  modules(first: 2, after: "bm90IGEgY3Vyc29y") { totalCount }\n}' },
  { name: 'a field refused for its scope', key: 'readOnly', query: '{ module(id: "github") { id } credentialSecret(moduleId: "github") }' },
  { name: 'an admin field with a tenant key', query: 'query($o: ID!) { orgApiKeys(orgId: $o) { id } }', variables: { o: 'org-b' } },
  { name: 'a bad argument value', query: '{ modules(first: -1) { totalCount } }' },
  { name: 'a page too large', query: '{ modules(first: 101) { totalCount } }' },
];

// Mutations: the second call writes a different row, so ids and times are evened out before comparing.
const TIMES = /"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"/g;
const evenOut = (...ids: string[]) => (text: string) => ids.reduce((t, id) => t.replaceAll(id, '<id>'), text.replace(TIMES, '"<time>"'));

const WRITES: Case[] = [
  {
    name: 'installModule',
    query: `mutation($i: InstallModuleInput!) { installModule(input: $i) { ${MODULE_FIELDS} } }`,
    variables: { i: { id: 'x-one', name: 'X', version: '1.0.0', config: { a: [1, 'two', { three: null }] } } },
    second: { i: { id: 'x-two', name: 'X', version: '1.0.0', config: { a: [1, 'two', { three: null }] } } },
    same: evenOut('x-one', 'x-two'),
  },
  {
    name: 'root fields of a mutation run one after the other',
    query: 'mutation($id: ID!) { off: disableModule(id: $id) { id enabled } on: enableModule(id: $id) { id enabled } again: disableModule(id: $id) { enabled } }',
    variables: { id: 'x-one' },
    second: { id: 'x-two' },
    same: evenOut('x-one', 'x-two'),
  },
  {
    name: 'setCredential, then its fields',
    query: 'mutation($m: ID!, $s: JSONObject!) { setCredential(moduleId: $m, secret: $s) { moduleId fields createdAt updatedAt } }',
    variables: { m: 'x-one', s: { token: 't', user: 'u' } },
    second: { m: 'x-two', s: { token: 't', user: 'u' } },
    same: evenOut('x-one', 'x-two'),
  },
  {
    name: 'a write of a missing module is NOT_FOUND',
    query: 'mutation($id: ID!) { uninstallModule(id: $id) { id } }',
    variables: { id: 'missing-one' },
    second: { id: 'missing-two' },
    same: evenOut('missing-one', 'missing-two'),
  },
  {
    name: 'recordRunUnits with an enum-free input and a repeat',
    query: 'mutation($i: RecordRunUnitsInput!) { recordRunUnits(input: $i) { repeat event { units idempotencyKey moduleId } } }',
    variables: { i: { units: 3, idempotencyKey: 'k-one', moduleId: 'github' } },
    second: { i: { units: 3, idempotencyKey: 'k-two', moduleId: 'github' } },
    same: evenOut('k-one', 'k-two'),
  },
];

/** The answer with every object's keys sorted: equal content, whatever the field order. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
}

/** tenantgate_graphql_executions_total by engine, as the gateway's /metrics reports it now. */
async function executions(gw: TestGateway): Promise<{ compiled: number; interpreted: number }> {
  const text = await (await gw.fetch('/metrics')).text();
  const count = (engine: string) => Number(new RegExp(`^tenantgate_graphql_executions_total\\{engine="${engine}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { compiled: count('compiled'), interpreted: count('interpreted') };
}

/** One request, with the engine that executed it (from /metrics before and after). */
async function sendCounted(gw: TestGateway, key: string, query: string, variables?: Record<string, unknown>, operationName?: string) {
  const before = await executions(gw);
  const res: GqlResponse = await gw.gql(key, query, variables, operationName ? { body: JSON.stringify({ query, variables, operationName }) } : {});
  const after = await executions(gw);
  const engine = after.compiled > before.compiled ? 'compiled' : after.interpreted > before.interpreted ? 'interpreted' : 'none';
  return { res, engine };
}

describe('compiled execution answers what graphql-js answers', () => {
  let gw: TestGateway;
  let keys: Record<NonNullable<Case['key']>, string>;

  /** Sends the case once and returns its answer and the engine that ran it. */
  const send = (c: Case, variables: Record<string, unknown> | undefined, operationName?: string) =>
    sendCounted(gw, keys[c.key ?? 'a'], c.query, variables, operationName);

  beforeAll(async () => {
    gw = await createTestGateway({ env: { TENANTGATE_COMPILE_AFTER: '1', TENANTGATE_RESPONSE_CACHE_BYTES: '0' } });
    keys = { a: gw.keys.a, b: gw.keys.b, admin: gw.keys.admin, readOnly: await gw.key('org-a', ['modules:read']) };
  });
  afterAll(async () => {
    await gw?.close();
  });

  for (const c of READS) {
    it(`${c.name}: the compiled answer is the interpreted one`, async () => {
      const operationName = c.name.startsWith('an operation picked by name') ? 'Two' : undefined;
      const first = await send(c, c.variables, operationName);
      const second = await send(c, c.variables, operationName);
      expect([first.engine, second.engine]).toEqual(['interpreted', c.interpreted ? 'interpreted' : 'compiled']);
      expect(second.res.status).toBe(first.res.status);
      expect(second.res.body).toBeDefined();
      expect(canonical(second.res.body)).toEqual(canonical(first.res.body));
      // Errors to the byte: message, locations, path, extensions, in order.
      expect(JSON.stringify(second.res.body.errors)).toBe(JSON.stringify(first.res.body.errors));
    });
  }

  for (const c of WRITES) {
    it(`${c.name}: the compiled answer is the interpreted one`, async () => {
      const first = await send(c, c.variables);
      const second = await send(c, c.second);
      expect([first.engine, second.engine]).toEqual(['interpreted', 'compiled']);
      expect(second.res.status).toBe(first.res.status);
      const same = c.same ?? ((t: string) => t);
      expect(canonical(JSON.parse(same(second.res.text)))).toEqual(canonical(JSON.parse(same(first.res.text))));
      expect(same(JSON.stringify(second.res.body.errors ?? null))).toBe(same(JSON.stringify(first.res.body.errors ?? null)));
    });
  }

  it('answers fields in selection order, as the GraphQL spec asks', async () => {
    const query = '{ viewer { scopes org { id } } module(id: "github") { version id name } }';
    await gw.gql(keys.a, query);
    const compiled = await send({ name: 'order', query }, undefined);
    expect(compiled.engine).toBe('compiled');
    expect(compiled.res.text.indexOf('"scopes"')).toBeLessThan(compiled.res.text.indexOf('"org"'));
    expect(Object.keys(ok(compiled.res).module)).toEqual(['version', 'id', 'name']);
  });

  it('leaves refused variables to graphql-js, with its messages', async () => {
    const query = 'query($id: ID!) { module(id: $id) { id } }';
    await gw.gql(keys.a, query, { id: 'github' });
    const refused = await send({ name: 'refused', query }, { id: { not: 'an id' } });
    expect(refused.engine).toBe('interpreted');
    expect(refused.res.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(refused.res.body.errors[0].message).toMatch(/^Variable "\$id" got an invalid value/);
  });
});

describe('compiled operations are kept within a memory budget', () => {
  it('drops the least recently run, which is then interpreted until it has come back as often again', async () => {
    const gw = await createTestGateway({ env: { TENANTGATE_COMPILE_AFTER: '1', TENANTGATE_RESPONSE_CACHE_BYTES: '0' } });
    try {
      const engineOf = async (query: string) => {
        const { res, engine } = await sendCounted(gw, gw.keys.a, query);
        ok(res);
        return engine;
      };
      const small = '{ module(id: "github") { id } }';
      expect([await engineOf(small), await engineOf(small)]).toEqual(['interpreted', 'compiled']);
      // Ten documents of 15 aliased pages, every field (about 600 KB compiled each): more than the 4 MiB budget.
      const fields = `totalCount pageInfo { hasNextPage endCursor } edges { cursor node { ${MODULE_FIELDS} } }`;
      for (let d = 0; d < 10; d++) {
        const big = `{ ${Array.from({ length: 15 }, (_, i) => `p${i}: modules(first: ${d + 1}) { ${fields} }`).join(' ')} }`;
        expect([await engineOf(big), await engineOf(big)]).toEqual(['interpreted', 'compiled']);
      }
      expect([await engineOf(small), await engineOf(small)]).toEqual(['interpreted', 'compiled']);
    } finally {
      await gw.close();
    }
  });
});

describe('with TENANTGATE_COMPILED_EXECUTION=false', () => {
  it('interprets every execution', async () => {
    const gw = await createTestGateway({ env: { TENANTGATE_COMPILED_EXECUTION: 'false', TENANTGATE_RESPONSE_CACHE_BYTES: '0' } });
    try {
      for (let i = 0; i < 3; i++) ok(await gw.gql(gw.keys.a, '{ module(id: "github") { id } }'));
      const counted = await executions(gw);
      expect(counted.compiled).toBe(0);
      // The three reads and the seeding's writes.
      expect(counted.interpreted).toBeGreaterThanOrEqual(3);
    } finally {
      await gw.close();
    }
  });
});
