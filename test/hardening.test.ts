import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';

/**
 * Production mode: introspection and GraphiQL off unless switched on, no schema hints in errors,
 * and errors masked so that a failure inside the store shows no SQL, stack, file path or secret,
 * even with NODE_ENV=development (which makes Yoga's default mask attach stacks).
 */

const INTROSPECTION = [
  '{ __schema { types { name } } }',
  '{ __type(name: "Module") { fields { name } } }',
  'query { a: __schema { queryType { name } } }',
];

async function graphiql(gw: TestGateway): Promise<{ status: number; html: boolean }> {
  const res = await gw.fetch('/graphql', { headers: { accept: 'text/html' } });
  const text = await res.text();
  return { status: res.status, html: /<html/i.test(text) && /graphiql/i.test(text) };
}

describe('production mode', () => {
  let prod: TestGateway;
  let prodOpen: TestGateway;
  let dev: TestGateway;
  beforeAll(async () => {
    [prod, prodOpen, dev] = await Promise.all([
      createTestGateway({ seed: false, env: { TENANTGATE_PRODUCTION: 'true' } }),
      createTestGateway({ seed: false, env: { TENANTGATE_PRODUCTION: 'true', TENANTGATE_INTROSPECTION: 'true', TENANTGATE_GRAPHIQL: 'true' } }),
      createTestGateway({ seed: false }),
    ]);
  });
  afterAll(async () => Promise.all([prod.close(), prodOpen.close(), dev.close()]));

  it('turns introspection off by default', async () => {
    for (const query of INTROSPECTION) {
      const res = await prod.gql(prod.keys.admin, query);
      expect(res.body.data, query).toBeUndefined();
      expect(res.body.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
      expect(res.body.errors[0].message).toMatch(/introspection/i);
    }
    // __typename is not introspection of the schema; clients rely on it.
    expect((await prod.gql(prod.keys.a, '{ __typename }')).body.data).toEqual({ __typename: 'Query' });
  });

  it('turns GraphiQL off by default', async () => {
    const page = await graphiql(prod);
    expect(page.html).toBe(false);
    expect(page.status).toBeGreaterThanOrEqual(400);
  });

  it('switches introspection and GraphiQL on when asked', async () => {
    for (const query of INTROSPECTION) {
      const res = await prodOpen.gql(prodOpen.keys.a, query);
      expect(res.body.errors, query).toBeUndefined();
    }
    expect((await graphiql(prodOpen)).html).toBe(true);
  });

  it('outside production both are on by default', async () => {
    expect((await dev.gql(dev.keys.a, INTROSPECTION[0]!)).body.errors).toBeUndefined();
    expect((await graphiql(dev)).html).toBe(true);
  });

  it('GraphiQL still needs no key to load, but every query it sends does', async () => {
    const res = await prodOpen.gql(null, '{ __schema { queryType { name } } }');
    expect(res.status).toBe(401);
  });
});

describe('no field suggestions', () => {
  // Each of these would make graphql-js say "Did you mean ...", naming a field, type or value.
  const cases: Array<{ name: string; query: string; variables?: Record<string, unknown>; admin?: boolean; hidden: string }> = [
    { name: 'unknown field', query: '{ modulez { totalCount } }', hidden: '"modules"' },
    { name: 'unknown field on a type', query: '{ viewer { scope } }', hidden: '"scopes"' },
    { name: 'unknown argument', query: '{ modules(frist: 1) { totalCount } }', hidden: '"first"' },
    { name: 'unknown type in a variable', query: 'query($i: InstallModuleInpt!) { viewer { scopes } }', hidden: '"InstallModuleInput"' },
    { name: 'unknown input field (literal)', query: 'mutation { installModule(input: { id: "x", nam: "y", version: "1.0.0" }) { id } }', hidden: '"name"' },
    {
      name: 'unknown input field (variable, reported at execution)',
      query: 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }',
      variables: { i: { id: 'x', nam: 'y', version: '1.0.0' } },
      hidden: '"name"',
    },
    {
      name: 'enum value (literal)',
      query: 'mutation { reportModuleHealth(orgId: "org-a", moduleId: "github", status: HEALTHYY) { id } }',
      admin: true,
      hidden: '"HEALTHY"',
    },
    {
      name: 'enum value (variable, reported at execution)',
      query: 'mutation($s: HealthStatus!) { reportModuleHealth(orgId: "org-a", moduleId: "github", status: $s) { id } }',
      variables: { s: 'HEALTHYY' },
      admin: true,
      hidden: '"HEALTHY"',
    },
  ];

  describe.each([
    ['production', { TENANTGATE_PRODUCTION: 'true' }],
    ['development settings', {}],
  ])('%s', (_name, env) => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await createTestGateway({ seed: false, env });
    });
    afterAll(async () => gw.close());

    for (const c of cases) {
      it(c.name, async () => {
        const res = await gw.gql(c.admin ? gw.keys.admin : gw.keys.a, c.query, c.variables);
        expect(res.body.errors?.length, res.text).toBeGreaterThan(0);
        expect(res.text).not.toMatch(/did you mean/i);
        expect(res.text).not.toContain(c.hidden);
        expect(res.text).not.toMatch(/Suggestion hidden/);
      });
    }
  });
});

describe('masked errors, with NODE_ENV=development', () => {
  let gw: TestGateway;
  let savedNodeEnv: string | undefined;
  // Things no answer may contain: SQL, SQLite's words, stacks, source paths, secrets.
  const leaks = [/sqlite/i, /SELECT|INSERT|UPDATE|DELETE FROM/, /no such table/i, /constraint/i, /\bat .+:\d+:\d+/, /\.ts\b/, /\/work\/|\/tmp\//, /stack/i, /originalError/, /secret-token-of/, /inline-secret/, /tgk_/];
  const expectClean = (text: string) => {
    for (const leak of leaks) expect(text, `answer matches ${leak}`).not.toMatch(leak);
  };

  beforeAll(async () => {
    savedNodeEnv = process.env.NODE_ENV;
    process.env.NODE_ENV = 'development';
    gw = await createTestGateway({ env: { TENANTGATE_PRODUCTION: 'true' } });
  });
  afterAll(async () => {
    await gw.close();
    if (savedNodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = savedNodeEnv;
  });

  it('a resolver whose table is gone answers a bare internal error', async () => {
    const ok = await gw.gql(gw.keys.a, '{ modules { totalCount } }');
    expect(ok.body.data.modules.totalCount).toBe(3);
    gw.opened.sqlite.exec('ALTER TABLE modules RENAME TO modules_moved');
    try {
      const res = await gw.gql(gw.keys.a, '{ modules { totalCount } viewer { org { id } } }');
      expect(res.status).toBe(200);
      expect(res.body.errors).toEqual([
        { message: 'Unexpected error.', locations: [{ line: 1, column: 3 }], path: ['modules'], extensions: { code: 'INTERNAL_SERVER_ERROR' } },
      ]);
      // The rest of the answer is intact: one field failed, not the request.
      expect(res.body.data).toBeNull();
      expectClean(res.text);
      const other = await gw.gql(gw.keys.a, '{ viewer { org { id } } }');
      expect(other.body.data.viewer.org.id).toBe(ORG_A);
    } finally {
      gw.opened.sqlite.exec('ALTER TABLE modules_moved RENAME TO modules');
    }
  });

  it('a SQLite error whose message holds SQL and a secret reaches only the log', async () => {
    gw.opened.sqlite.exec(
      `CREATE TRIGGER leak BEFORE INSERT ON modules BEGIN SELECT RAISE(ABORT, 'SELECT * FROM credentials WHERE token = ''secret-token-of-org-a'''); END`,
    );
    try {
      const res = await gw.gql(gw.keys.a, 'mutation { installModule(input: { id: "leaky", name: "x", version: "1.0.0" }) { id } }');
      expect(res.body.errors[0].message).toBe('Unexpected error.');
      expect(res.body.errors[0].extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR' });
      expectClean(res.text);
    } finally {
      gw.opened.sqlite.exec('DROP TRIGGER leak');
    }
  });

  it('a credential that no longer decrypts answers an internal error without key material', async () => {
    const row = gw.opened.sqlite.prepare('SELECT hex(ciphertext) AS c, hex(iv) AS iv FROM credentials WHERE org_id = ? AND module_id = ?').get(ORG_A, 'github') as { c: string; iv: string };
    gw.opened.sqlite.prepare('UPDATE credentials SET ciphertext = randomblob(length(ciphertext)) WHERE org_id = ? AND module_id = ?').run(ORG_A, 'github');
    const res = await gw.gql(gw.keys.a, '{ credentialSecret(moduleId: "github") }');
    expect(res.body.errors[0]).toMatchObject({ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expectClean(res.text);
    expect(res.text).not.toContain(row.c.slice(0, 16));
    expect(res.text.toLowerCase()).not.toContain(row.iv.toLowerCase());
    expect(res.text).not.toMatch(/decrypt|authenticate data|cipher/i);
  });

  it('an inline secret in a failing mutation reaches neither the answer nor the log', async () => {
    gw.opened.sqlite.exec('ALTER TABLE credentials RENAME TO credentials_moved');
    const lines = gw.logger.lines.length;
    try {
      const res = await gw.gql(gw.keys.a, 'mutation { setCredential(moduleId: "slack", secret: { token: "inline-secret-0042" }) { moduleId } }');
      expect(res.body.errors[0].message).toBe('Unexpected error.');
      expectClean(res.text);
      const logged = gw.logger.lines.slice(lines).join('\n');
      expect(logged).toContain('unexpected error');
      expect(logged).not.toContain('inline-secret-0042');
    } finally {
      gw.opened.sqlite.exec('ALTER TABLE credentials_moved RENAME TO credentials');
    }
  });

  it('a store failure during authentication answers a masked error for the whole request', async () => {
    const fresh = await gw.key(ORG_A, ['modules:read']); // never verified, so not cached
    gw.opened.sqlite.exec('ALTER TABLE api_keys RENAME TO api_keys_moved');
    try {
      const res = await gw.gql(fresh, '{ modules { totalCount } }');
      expect(res.status).toBe(500);
      expect(res.body.errors).toEqual([{ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
      expectClean(res.text);
    } finally {
      gw.opened.sqlite.exec('ALTER TABLE api_keys_moved RENAME TO api_keys');
    }
  });

  it('errors the gateway means to show are shown as they are', async () => {
    const res = await gw.gql(gw.keys.a, '{ module(id: "nope") { id } credentialSecret(moduleId: "x") }', undefined);
    expect(res.body.data.module).toBeNull();
    const forbidden = await gw.gql(await gw.key(ORG_A, ['modules:read']), 'mutation { installModule(input: { id: "f", name: "x", version: "1.0.0" }) { id } }');
    expect(forbidden.body.errors[0].extensions.code).toBe('FORBIDDEN');
  });
});
