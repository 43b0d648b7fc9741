import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';
import { prng } from './helpers/prng.ts';

/**
 * Over a thousand malformed requests, generated from a fixed seed: bad JSON, wrong variable types,
 * huge strings, deeply nested variables, unicode, SQL-shaped strings and invalid UTF-8, sent
 * over HTTP to the served listener, with and without valid keys. Afterwards: no answer was a
 * 5xx or an internal error, the gateway still serves, the store passes integrity_check, and no
 * row changed except the modules that a request did install (stored exactly as sent).
 */

// A fixed seed, so a failure reproduces; FUZZ_SEED=n explores others.
const SEED = Number(process.env.FUZZ_SEED ?? 20240605);
const random = prng(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const int = (max: number) => Math.floor(random() * max);

const SQL = [
  "' OR 1=1 --",
  "'; DROP TABLE modules; --",
  '" OR ""="',
  "github' --",
  "x') UNION SELECT secret FROM credentials --",
  '%',
  '_',
  '\\',
  "'",
  '*/ SELECT 1; /*',
  "1; UPDATE api_keys SET revoked_at = NULL; --",
  'org-b',
  "org-a' AND org_id = 'org-b",
];
const UNICODE = [
  'módulo',
  '模块',
  '🔥💥🧨',
  '\u202Eevil\u202C',
  'zero\u200Bwidth',
  'nul\u0000byte',
  'lone \ud800 surrogate',
  'tail \udfff',
  'e\u0301\u0301\u0301',
  '\uFEFFbom',
  'Ａｂｃ',
  '\u0000',
  'a\r\nb',
];
const junkString = (): string => {
  switch (int(6)) {
    case 0:
      return pick(SQL);
    case 1:
      return pick(UNICODE);
    case 2:
      return 'x'.repeat(1 + int(200_000));
    case 3:
      return pick(SQL) + pick(UNICODE);
    case 4:
      return String.fromCharCode(...Array.from({ length: 1 + int(40) }, () => int(0xffff)));
    default:
      return '';
  }
};
const nested = (depth: number, leaf: unknown = 1): unknown => {
  let value: unknown = leaf;
  for (let i = 0; i < depth; i++) value = random() < 0.5 ? { a: value } : [value];
  return value;
};
const nestedObject = (depth: number): Record<string, unknown> => {
  let value: Record<string, unknown> = { leaf: 'x' };
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
};
/**
 * Nesting too deep for JSON.stringify (ours, in this test) is written as text: the placeholder
 * string is swapped for `{"a":{"a":...}}` when the body is serialised (see toBody).
 */
const deepText = (depth: number): string => `__DEEP_${depth}__`;
const toBody = (value: unknown): string =>
  JSON.stringify(value).replace(/"__DEEP_(\d+)__"/g, (_m, n: string) => `${'{"a":'.repeat(Number(n))}1${'}'.repeat(Number(n))}`);
const wrongValue = (): unknown =>
  pick<() => unknown>([
    () => junkString(),
    () => int(1e9) - 5e8,
    () => 1e308 * (random() < 0.5 ? 1 : -1),
    () => 2 ** 31 + int(10),
    () => 0.5,
    () => true,
    () => null,
    () => [],
    () => [junkString(), 1, null],
    () => ({}),
    () => ({ [junkString().slice(0, 30)]: junkString() }),
    () => nested(1 + int(1000)),
    () => nestedObject(1 + int(1000)),
    () => deepText(1000 + int(200_000)),
  ])();

interface Case {
  kind: string;
  body?: string | Uint8Array;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** An installModule that may legitimately succeed: the id it would create, and what it sent. */
  install?: { id: string; name: string; description: unknown; config: unknown };
  /** Client address; failed authentications are rate limited per address, by design. */
  address?: string;
}

const OPERATIONS = [
  'mutation($i: InstallModuleInput!) { installModule(input: $i) { id name } }',
  'mutation($id: ID!, $i: UpdateModuleInput!) { updateModule(id: $id, input: $i) { id } }',
  'mutation($id: ID!) { enableModule(id: $id) { id } }',
  'mutation($id: ID!) { disableModule(id: $id) { id } }',
  'mutation($id: ID!) { uninstallModule(id: $id) { id } }',
  'mutation($m: ID!, $s: JSONObject!) { setCredential(moduleId: $m, secret: $s) { moduleId } }',
  'mutation($m: ID!) { deleteCredential(moduleId: $m) }',
  'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }',
  'mutation($id: ID!, $o: ID) { revokeApiKey(id: $id, orgId: $o) { id } }',
  'query($id: ID!) { module(id: $id) { id name config } }',
  'query($m: ID!) { hasCredential(moduleId: $m) credentialSecret(moduleId: $m) }',
  'query($f: Int, $a: String, $e: Boolean) { modules(first: $f, after: $a, enabled: $e) { totalCount edges { node { id } } } }',
  'query($o: ID) { apiKeys(orgId: $o) { id } }',
];
const ADMIN_OPERATIONS = [
  'mutation($o: ID!, $m: ID!, $s: HealthStatus!, $t: String) { reportModuleHealth(orgId: $o, moduleId: $m, status: $s, message: $t) { id } }',
  'mutation($o: ID!, $m: ID!, $c: Int) { recordModuleUsage(orgId: $o, moduleId: $m, count: $c) { id } }',
  'mutation($i: CreateOrgInput!) { createOrg(input: $i) { id } }',
];
const VARIABLE_NAMES = ['i', 'id', 'm', 's', 'o', 'f', 'a', 'e', 't', 'c'];

/** Ids for lookups and mutations: never an id that exists, so a lookup-mutation cannot succeed. */
const junkId = () => pick([() => pick(SQL), () => pick(UNICODE), () => 'x'.repeat(1 + int(100_000)), () => `missing-${int(1e6)}`, () => wrongValue()])();

/** encodeURIComponent, which throws on lone surrogates; GET cases add raw invalid %-bytes instead. */
const uri = (text: string) => encodeURIComponent(text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'));

let installs = 0;
function generate(n: number): Case[] {
  const cases: Case[] = [];
  const enc = new TextEncoder();
  const generators: Array<() => Case> = [
    // Bad JSON and wrong shapes of the request itself.
    () => ({
      kind: 'bad json',
      body: pick([
        '',
        '{',
        '{"query": ',
        '{"query": "{ viewer { scopes } }"',
        "{'query': '{ viewer { scopes } }'}",
        '{"query": "{ viewer { scopes } }"} trailing',
        '{"query": NaN}',
        '{"query": "\\x41"}',
        '{"query": "\\ud800"}',
        'null',
        'true',
        '123',
        '"{ viewer { scopes } }"',
        '[]',
        '[1, 2, 3]',
        '{"query": 42}',
        '{"query": ["{ viewer { scopes } }"]}',
        '{"query": {"$gt": ""}}',
        '{"query": "{ viewer { scopes } }", "variables": "not an object"}',
        '{"query": "{ viewer { scopes } }", "variables": [1]}',
        '{"query": "{ viewer { scopes } }", "operationName": {"x": 1}}',
        '{"query": "{ viewer { scopes } }", "extensions": 7}',
        '{"query": "{ viewer { scopes } }", "__proto__": {"polluted": true}}',
        '{"query": "{ viewer { scopes } }", "variables": {"__proto__": {"polluted": true}}}',
        `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
        `{"query": "{ viewer { scopes } }", "variables": ${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`,
        '{"query": "{ viewer { scopes } }", "variables": {"n": 1e400}}',
        `{"query": "${'\\\\'.repeat(1000)}"}`,
      ]),
    }),
    // Invalid UTF-8 bytes, inside and outside JSON strings.
    () => {
      const bad = pick([[0xff], [0xfe, 0xff], [0xc3, 0x28], [0xa0, 0xa1], [0xe2, 0x28, 0xa1], [0xf0, 0x28, 0x8c, 0xbc], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]]);
      const [before, after] = pick([
        ['{"query": "{ viewer { scopes } }", "operationName": "', '"}'],
        ['{"query": "mutation { installModule(input: { id: \\"u8', '\\", name: \\"x\\", version: \\"1.0.0\\" }) { id } }"}'],
        ['{"query": "{ module(id: \\"', '\\") { id } }"}'],
        ['', '{"query": "{ viewer { scopes } }"}'],
        ['{"query": "{ viewer { scopes } }"}', ''],
        ['{"query": "{ viewer ', ' { scopes } }"}'],
      ]);
      return { kind: 'invalid utf-8', body: new Uint8Array([...enc.encode(before), ...bad, ...enc.encode(after)]) };
    },
    // GraphQL syntax junk.
    () => ({
      kind: 'graphql syntax',
      body: JSON.stringify({
        query: pick([
          () => '{ viewer { scopes }',
          () => '{ viewer { scopes } } }',
          () => '"""unterminated',
          () => '{ viewer(scopes: ) { scopes } }',
          () => `{ ${'a { '.repeat(1 + int(3000))}`,
          () => `{ ${'viewer { scopes } '.repeat(int(1000))}}`,
          () => `query ${'Q'.repeat(1 + int(100_000))} { viewer { scopes } }`,
          () => '{ __schema { types { name } } }',
          () => 'subscription { viewer { scopes } }',
          () => '{ ...F } fragment F on Query { ...F }',
          () => `{ module(id: "${pick(SQL).replace(/"/g, '\\"')}") { id } }`,
          () => `{ module(id: """${pick(UNICODE)}""") { id } }`,
          () => Array.from({ length: int(100) }, () => pick(['{', '}', '(', ')', ':', '$', '@', '...', '"', 'query', 'mutation', 'viewer', '1', '#'])).join(' '),
          () => junkString(),
        ])(),
        operationName: random() < 0.2 ? junkString() : undefined,
      }),
    }),
    // Known operations with wrong, huge, nested, unicode or SQL-shaped variables.
    () => {
      const admin = random() < 0.2;
      const query = pick(admin ? ADMIN_OPERATIONS : OPERATIONS);
      const variables: Record<string, unknown> = {};
      for (const name of VARIABLE_NAMES) if (random() < 0.7) variables[name] = random() < 0.5 ? junkId() : wrongValue();
      if (query.includes('installModule') && random() < 0.5) {
        // Input objects with one or more wrong fields.
        variables.i = {
          id: random() < 0.5 ? junkId() : `fuzz-bad-${int(1e6)}`,
          name: random() < 0.5 ? wrongValue() : junkString().slice(0, 300),
          version: random() < 0.5 ? wrongValue() : pick(['1.0.0', '1', 'x.y.z', "1.0.0' --", '1.0.0-🔥']),
          config: wrongValue(),
          enabled: random() < 0.5 ? wrongValue() : true,
          extra: random() < 0.3 ? junkString() : undefined,
        };
        // Never a valid install: the id rule or another field must fail (valid ones are below).
        if (typeof variables.i === 'object' && /^[a-z0-9][a-z0-9._-]{0,63}$/.test(String((variables.i as { id: unknown }).id))) {
          (variables.i as Record<string, unknown>).version = 'not-semver';
        }
      }
      return { kind: admin ? 'admin variables' : 'variables', body: toBody({ query, variables }), headers: admin ? { authorization: 'admin' } : {} };
    },
    // Installs that may be valid: SQL-shaped, unicode or large names and configs, fresh ids.
    () => {
      const id = `fuzz-${installs++}`;
      const name = pick([() => pick(SQL), () => pick(UNICODE), () => junkString().slice(0, 200), () => 'n'.repeat(int(5000))])();
      const description = random() < 0.5 ? pick(SQL) + pick(UNICODE) : null;
      const config = pick([() => ({ q: pick(SQL) }), () => ({ u: pick(UNICODE), n: 1 }), () => nestedObject(int(40)), () => ({ big: 'b'.repeat(int(70_000)) })])();
      return {
        kind: 'install',
        body: JSON.stringify({
          query: 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id name } }',
          variables: { i: { id, name, version: '1.0.0', description, config } },
        }),
        install: { id, name, description, config },
      };
    },
    // Odd content types, methods and GET parameters.
    () =>
      pick<() => Case>([
        () => ({ kind: 'content type', body: '{"query": "{ viewer { scopes } }"}', headers: { 'content-type': pick(['text/plain', 'application/xml', 'application/json; charset=utf-16', 'application/graphql', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '', 'application/json, text/html', '*/*']) } }),
        () => ({ kind: 'form', body: `query=${uri(pick(SQL))}&variables=${uri(junkString().slice(0, 100))}%ff%c3%28`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
        () => ({ kind: 'get', method: 'GET', path: `/graphql?query=${uri(pick(['{ viewer { scopes } }', 'mutation { disableModule(id: "github") { id } }', junkString().slice(0, 2000)]))}&variables=${uri(pick(['not json', '{', '[]', '{"a":1}', junkString().slice(0, 500)]))}` }),
        () => ({ kind: 'get', method: 'GET', path: `/graphql?query=${pick(['%7B%20viewer%20%7B%20scopes%20%7D%20%7D', '%ff%fe', '%c3%28', '%', '%zz', '%ed%a0%80'])}&operationName=${pick(['%ff', '%', 'x'])}` }),
        () => ({ kind: 'method', method: pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']), body: undefined }),
        () => ({ kind: 'accept', body: '{"query": "{ viewer { scopes } }"}', headers: { accept: pick(['text/html', 'application/xml', 'application/graphql-response+json;q=0', 'garbage/////', '']) } }),
      ])(),
    // Keys that are not keys.
    () => ({
      kind: 'auth',
      address: `127.${1 + int(250)}.${installs >> 8}.${installs & 255}`,
      body: '{"query": "{ viewer { scopes } }"}',
      headers: { authorization: pick(['Bearer', 'Bearer ', 'Basic Zm9vOmJhcg==', `Bearer ${pick(SQL)}`, `Bearer tgk_${'A'.repeat(int(2000))}`, 'Bearer tgk_\u00e9', "Bearer tgk_' OR '1'='1", `Bearer ${junkString().replace(/[^\x20-\x7e]/g, '').slice(0, 4000)}`]) },
    }),
  ];
  while (cases.length < n) cases.push(pick(generators)());
  return cases;
}

type Snapshot = Record<string, Map<string, string>>;
function snapshot(gw: TestGateway): Snapshot {
  const db = gw.opened.sqlite;
  const tables: Record<string, string> = {
    orgs: 'SELECT * FROM orgs',
    // last_used_at is written by every authenticated request, by design.
    api_keys: 'SELECT id, org_id, name, prefix, hash, scopes, created_at, expires_at, revoked_at, created_by_key_id FROM api_keys',
    modules: 'SELECT * FROM modules',
    credentials: 'SELECT org_id, module_id, hex(ciphertext) AS c, hex(iv) AS iv, hex(tag) AS tag, key_id, fields, created_at, updated_at FROM credentials',
  };
  const out: Snapshot = {};
  for (const [table, sql] of Object.entries(tables)) {
    out[table] = new Map(
      (db.prepare(sql).all() as Array<Record<string, unknown>>).map((row) => [
        table === 'orgs' || table === 'api_keys' ? String(row.id) : `${String(row.org_id)}/${String(row.module_id)}`,
        JSON.stringify(row),
      ]),
    );
  }
  return out;
}

describe('a thousand malformed requests', () => {
  let gw: TestGateway;
  const results: Array<{ kind: string; status: number; text: string; install?: Case['install'] }> = [];
  let before: Snapshot;

  beforeAll(async () => {
    gw = await createTestGateway();
    before = snapshot(gw);
    const cases = generate(1200);
    for (const c of cases) {
      const headers: Record<string, string> = { 'content-type': 'application/json', ...c.headers };
      if (headers.authorization === undefined || headers.authorization === 'admin') {
        headers.authorization = `Bearer ${headers.authorization === 'admin' ? gw.keys.admin : gw.keys.a}`;
      }
      if (headers['content-type'] === '') delete headers['content-type'];
      const method = c.method ?? 'POST';
      const res = await gw.fetch(c.path ?? '/graphql', { method, headers, body: method === 'GET' || method === 'HEAD' ? undefined : (c.body as BodyInit | undefined), address: c.address });
      results.push({ kind: c.kind, status: res.status, text: await res.text(), install: c.install });
    }
  }, 120_000);
  afterAll(async () => gw.close());

  it('sent over a thousand of every kind', () => {
    expect(results.length).toBeGreaterThanOrEqual(1000);
    const kinds = new Set(results.map((r) => r.kind));
    for (const kind of ['bad json', 'invalid utf-8', 'graphql syntax', 'variables', 'admin variables', 'install', 'auth']) expect(kinds).toContain(kind);
  });

  it('answered none with a 5xx or an internal error', () => {
    const bad = results.filter((r) => r.status >= 500 || r.text.includes('INTERNAL_SERVER_ERROR') || r.text.includes('Unexpected error'));
    expect(bad.map((r) => `${r.kind} ${r.status} ${r.text.slice(0, 300)}`)).toEqual([]);
  });

  it('answered every GraphQL answer with JSON that leaks nothing', () => {
    for (const r of results) {
      if (r.text === '') continue;
      // (graphql-js's lexer may say "did you mean to use a double quote": no schema in that.)
      expect(r.text).not.toMatch(/SqliteError|no such|\bat .+:\d+:\d+|\/work\/|secret-token-of|did you mean (the enum value )?"/i);
    }
  });

  it('still serves, and the store is intact', async () => {
    const res = await gw.gql(gw.keys.a, '{ modules(first: 1) { totalCount } viewer { org { id } } }');
    expect(res.body.data.viewer.org.id).toBe(ORG_A);
    expect((await gw.fetch('/ready')).status).toBe(200);
    expect(gw.opened.sqlite.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(gw.opened.sqlite.pragma('foreign_key_check')).toEqual([]);
  });

  it('changed no row, except the modules it installed, stored exactly as sent', () => {
    const after = snapshot(gw);
    const installed = new Map<string, NonNullable<Case['install']>>();
    for (const r of results) {
      if (!r.install) continue;
      const body = JSON.parse(r.text);
      if (body.data?.installModule) {
        // Display names are trimmed by design (repos/validate.ts); nothing else may change.
        expect(body.data.installModule).toEqual({ id: r.install.id, name: r.install.name.trim() });
        installed.set(`${ORG_A}/${r.install.id}`, r.install);
      }
    }
    expect(installed.size).toBeGreaterThan(50);
    for (const table of Object.keys(before)) {
      for (const [key, row] of before[table]!) expect(after[table]!.get(key), `${table} ${key}`).toBe(row);
      for (const key of after[table]!.keys()) {
        if (before[table]!.has(key)) continue;
        expect(table === 'modules' && installed.has(key), `unexpected new row ${table} ${key}`).toBe(true);
      }
    }
    for (const [key, sent] of installed) {
      const row = JSON.parse(after.modules!.get(key)!);
      expect(row.name).toBe(sent.name.trim());
      expect(row.description).toBe(sent.description);
      expect(JSON.parse(row.config)).toEqual(sent.config);
    }
  });
});
