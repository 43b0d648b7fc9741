import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestGateway, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';
import { failure, install, INSTALL, MODULE, MODULE_FIELDS, ok, SET_CREDENTIAL, sleep } from './helpers/api.ts';
import { rawGet } from './helpers/raw.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

let gw: TestGateway;
beforeEach(async () => {
  gw = await createTestGateway();
});
afterEach(async () => {
  await gw.close();
});

const PAGE = `query($first: Int, $after: String, $enabled: Boolean) {
  modules(first: $first, after: $after, enabled: $enabled) {
    totalCount
    edges { cursor node { id orgId enabled } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

const rawModule = (orgId: string, moduleId: string) => rawGet(gw, 'SELECT * FROM modules WHERE org_id = ? AND module_id = ?', [orgId, moduleId]);

const rawCredential = (orgId: string, moduleId: string) => rawGet(gw, 'SELECT * FROM credentials WHERE org_id = ? AND module_id = ?', [orgId, moduleId]);

describe('installModule', () => {
  it('installs with every field and shows health, usage, times and credential state', async () => {
    const res = await install(gw, gw.keys.a, {
      id: 'jira',
      name: 'Jira',
      version: '2.1.0-beta.1+build.7',
      description: 'Issue tracker',
      config: { site: 'acme.atlassian.net', projects: ['OPS', 'WEB'], nested: { retries: 3 } },
    });
    const installed = ok(res).installModule;
    expect(installed).toMatchObject({
      id: 'jira',
      orgId: ORG_A,
      name: 'Jira',
      version: '2.1.0-beta.1+build.7',
      description: 'Issue tracker',
      config: { site: 'acme.atlassian.net', projects: ['OPS', 'WEB'], nested: { retries: 3 } },
      enabled: true,
      usageCount: 0,
      lastUsedAt: null,
      hasCredential: false,
      health: { status: 'UNKNOWN', message: null, checkedAt: null },
    });
    expect(installed.installedAt).toMatch(ISO);
    expect(installed.updatedAt).toBe(installed.installedAt);
    // module(id) answers the same object.
    expect(ok(await gw.gql(gw.keys.a, MODULE, { id: 'jira' })).module).toEqual(installed);
  });

  it('defaults: enabled, empty config, no description; enabled: false installs it disabled', async () => {
    const plain = ok(await gw.gql(gw.keys.a, INSTALL, { i: { id: 'plain', name: 'Plain', version: '0.0.1' } })).installModule;
    expect(plain).toMatchObject({ enabled: true, config: {}, description: null });
    const off = ok(await install(gw, gw.keys.a, { id: 'off', enabled: false })).installModule;
    expect(off.enabled).toBe(false);
  });

  it.each(['a', '0', '9lives', 'a.b_c-d', 'x'.repeat(64), 'a'.padEnd(64, '-'), 'v1.2', 'github_enterprise'])(
    'accepts the id %j',
    async (id) => {
      expect(ok(await install(gw, gw.keys.a, { id })).installModule.id).toBe(id);
    },
  );

  it.each(['', 'A', 'GitHub', '-x', '.x', '_x', 'a b', 'a/b', 'a:b', 'caf\u00e9', 'x'.repeat(65), 'abc\n', ' abc', 'a\u0000b'])(
    'rejects the id %j with a message giving the rule',
    async (id) => {
      const error = failure(await install(gw, gw.keys.a, { id }), 'BAD_USER_INPUT');
      expect(error.field).toBe('id');
      expect(error.message).toContain('^[a-z0-9][a-z0-9._-]{0,63}$');
      expect(error.message).toMatch(/1-64 characters/);
      // PostgreSQL text cannot hold NUL at all (the query for it fails), so no row can.
      if (!(gw.postgres && id.includes('\u0000'))) expect(await rawModule(ORG_A, id)).toBeUndefined();
    },
  );

  it.each([
    '0.0.0',
    '1.2.3',
    '10.20.30',
    '1.0.0-alpha',
    '1.0.0-alpha.1',
    '1.0.0-0.3.7',
    '1.0.0-x.7.z.92',
    '1.0.0+20130313144700',
    '1.0.0-beta+exp.sha.5114f85',
    '1.0.0+21AF26D3----117B344092BD',
  ])('accepts the semantic version %j', async (version) => {
    expect(ok(await install(gw, gw.keys.a, { id: 'm', version })).installModule.version).toBe(version);
  });

  it.each(['', '1', '1.0', 'v1.0.0', '01.0.0', '1.01.0', '1.0.0-', '1.0.0+', '1.0.0-01', ' 1.0.0', '1.0.0 ', '1.0.0.0', 'latest', `1.0.0-${'a'.repeat(130)}`])(
    'rejects the version %j with a message saying what a version is',
    async (version) => {
      const error = failure(await install(gw, gw.keys.a, { id: 'm', version }), 'BAD_USER_INPUT');
      expect(error.field).toBe('version');
      expect(error.message).toMatch(/^version must be (a semantic version|at most 128 characters)/);
    },
  );

  it('accepts a config of exactly 64 KiB of JSON and rejects one byte more, saying how big it is', async () => {
    const filler = (bytes: number) => ({ x: 'a'.repeat(bytes - '{"x":""}'.length) });
    expect(Buffer.byteLength(JSON.stringify(filler(65536)))).toBe(65536);
    ok(await install(gw, gw.keys.a, { id: 'exact', config: filler(65536) }));
    const error = failure(await install(gw, gw.keys.a, { id: 'over', config: filler(65537) }), 'BAD_USER_INPUT');
    expect(error).toEqual({ field: 'config', message: 'config is 65537 bytes of JSON; at most 65536 (64 KiB) are allowed' });
    // Multi-byte characters count as the bytes they take.
    const error2 = failure(await install(gw, gw.keys.a, { id: 'wide', config: { x: '\u00e9'.repeat(33_000) } }), 'BAD_USER_INPUT');
    expect(error2.message).toMatch(/^config is 66008 bytes of JSON/);
    expect(await rawModule(ORG_A, 'over')).toBeUndefined();
  });

  it.each([
    ['an array', [1, 2], 'an array'],
    ['a string', 'token=abc', 'a string'],
    ['a number', 42, 'a number'],
    ['a boolean', true, 'a boolean'],
  ])('rejects a config that is %s as BAD_USER_INPUT', async (_what, config, kind) => {
    const res = await install(gw, gw.keys.a, { id: 'm', config });
    const error = failure(res, 'BAD_USER_INPUT');
    expect(error.message).toContain(`expected a JSON object, got ${kind}`);
    expect(error.message).toContain('"i.config"');
    expect(await rawModule(ORG_A, 'm')).toBeUndefined();
  });

  it('rejects a non-object config written inline in the query as BAD_USER_INPUT', async () => {
    const res = await gw.gql(gw.keys.a, 'mutation { installModule(input: { id: "m", name: "M", version: "1.0.0", config: [1] }) { id } }');
    expect(failure(res, 'BAD_USER_INPUT').message).toBe('expected a JSON object, got an array');
  });

  it('rejects empty names and overlong descriptions, naming the field', async () => {
    expect(failure(await install(gw, gw.keys.a, { id: 'm', name: '   ' }), 'BAD_USER_INPUT')).toEqual({
      field: 'name',
      message: 'name must not be empty',
    });
    expect(failure(await install(gw, gw.keys.a, { id: 'm', description: 'd'.repeat(2001) }), 'BAD_USER_INPUT')).toEqual({
      field: 'description',
      message: 'description must be at most 2000 characters',
    });
  });

  it("answers CONFLICT for an id the caller's org already has, and changes nothing", async () => {
    const before = await rawModule(ORG_A, 'github');
    const error = failure(await install(gw, gw.keys.a, { id: 'github', name: 'Other', version: '9.9.9' }), 'CONFLICT');
    expect(error.message).toBe('Module "github" is already installed');
    expect(await rawModule(ORG_A, 'github')).toEqual(before);
  });

  it('installs an id that only another org has, without touching or revealing that org\'s module', async () => {
    const theirs = await rawModule(ORG_B, 'only-org-b');
    const mine = ok(await install(gw, gw.keys.a, { id: 'only-org-b', name: 'Mine', config: { mine: true } })).installModule;
    expect(mine).toMatchObject({ id: 'only-org-b', orgId: ORG_A, name: 'Mine', config: { mine: true }, hasCredential: false });
    expect(await rawModule(ORG_B, 'only-org-b')).toEqual(theirs);
    // The answer is the same as for an id nobody has.
    const fresh = ok(await install(gw, gw.keys.a, { id: 'nobody-has-it', name: 'Mine', config: { mine: true } })).installModule;
    const strip = (m: Record<string, unknown>) => ({ ...m, id: '<id>', installedAt: '<t>', updatedAt: '<t>' });
    expect(strip(mine)).toEqual(strip(fresh));
    expect(ok(await gw.gql(gw.keys.b, MODULE, { id: 'only-org-b' })).module).toMatchObject({ orgId: ORG_B, name: 'only-org-b for org-b' });
  });

  it('needs modules:write', async () => {
    const reader = await gw.key(ORG_A, ['modules:read']);
    expect(failure(await install(gw, reader, { id: 'm' }), 'FORBIDDEN').message).toBe(
      'Mutation.installModule needs the modules:write scope, which this API key lacks',
    );
    expect(await rawModule(ORG_A, 'm')).toBeUndefined();
  });
});

interface Connection {
  totalCount: number;
  edges: { cursor: string; node: { id: string; orgId: string; enabled: boolean } }[];
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
}

describe('modules connection', () => {
  const ids = (res: { edges: { node: { id: string } }[] }) => res.edges.map((e) => e.node.id);

  async function seedMany(): Promise<string[]> {
    // Installed out of order; some disabled.
    const extra = ['zeta', 'alpha', 'm.1', 'm-2', 'm_3', '0day', 'beta', 'omega', 'kappa', 'delta', 'eta', 'theta'];
    for (const [i, id] of extra.entries()) ok(await install(gw, gw.keys.a, { id, enabled: i % 3 !== 0 }));
    return [...extra, 'github', 'slack', 'only-org-a'].sort();
  }

  it('pages forward through every module in a stable order, with totalCount on every page', async () => {
    const all = await seedMany();
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const conn: Connection = ok(await gw.gql(gw.keys.a, PAGE, { first: 4, after })).modules;
      pages++;
      expect(conn.totalCount).toBe(all.length);
      expect(conn.pageInfo.hasPreviousPage).toBe(after !== null);
      expect(conn.pageInfo.startCursor).toBe(conn.edges[0]?.cursor ?? null);
      expect(conn.pageInfo.endCursor).toBe(conn.edges.at(-1)?.cursor ?? null);
      for (const e of conn.edges) expect(e.node.orgId).toBe(ORG_A);
      seen.push(...ids(conn));
      if (!conn.pageInfo.hasNextPage) break;
      after = conn.pageInfo.endCursor;
    }
    expect(pages).toBe(Math.ceil(all.length / 4));
    expect(seen).toEqual(all);
    // The same query twice answers the same.
    expect(ok(await gw.gql(gw.keys.a, PAGE, { first: 100 }))).toEqual(ok(await gw.gql(gw.keys.a, PAGE, { first: 100 })));
  });

  it('filters by enabled, with totalCount counting the filtered set', async () => {
    const all = await seedMany();
    const disabled = ['zeta', 'm-2', 'beta', 'delta'].sort();
    const on = ok(await gw.gql(gw.keys.a, PAGE, { first: 100, enabled: true })).modules;
    expect(ids(on)).toEqual(all.filter((id) => !disabled.includes(id)));
    expect(on.totalCount).toBe(all.length - disabled.length);
    const off = ok(await gw.gql(gw.keys.a, PAGE, { first: 2, enabled: false })).modules;
    expect(ids(off)).toEqual(disabled.slice(0, 2));
    expect(off.totalCount).toBe(disabled.length);
    const rest = ok(await gw.gql(gw.keys.a, PAGE, { first: 2, enabled: false, after: off.pageInfo.endCursor })).modules;
    expect(ids(rest)).toEqual(disabled.slice(2));
    expect(rest.pageInfo.hasNextPage).toBe(false);
  });

  it('keeps its place when modules are installed and uninstalled between pages (keyset cursor)', async () => {
    await seedMany();
    const first = ok(await gw.gql(gw.keys.a, PAGE, { first: 3 })).modules; // 0day, alpha, beta
    expect(ids(first)).toEqual(['0day', 'alpha', 'beta']);
    ok(await install(gw, gw.keys.a, { id: '00-before' })); // sorts before the cursor: not seen, not shifting
    ok(await gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "beta") { id } }')); // the cursor's own row
    const next = ok(await gw.gql(gw.keys.a, PAGE, { first: 3, after: first.pageInfo.endCursor })).modules;
    expect(ids(next)).toEqual(['delta', 'eta', 'github']);
    expect(next.totalCount).toBe(15); // 15 + 1 - 1
  });

  it('defaults to 20 a page, allows 0 to 100, and pages forward only', async () => {
    for (let i = 0; i < 20; i++) ok(await install(gw, gw.keys.a, { id: `bulk-${String(i).padStart(2, '0')}` }));
    const def = ok(await gw.gql(gw.keys.a, PAGE, {})).modules;
    expect(def.edges).toHaveLength(20);
    expect(def.totalCount).toBe(23);
    expect(def.pageInfo.hasNextPage).toBe(true);
    const none = ok(await gw.gql(gw.keys.a, PAGE, { first: 0 })).modules;
    expect(none).toMatchObject({ totalCount: 23, edges: [], pageInfo: { hasNextPage: true, startCursor: null, endCursor: null } });
    expect(failure(await gw.gql(gw.keys.a, PAGE, { first: 101 }), 'BAD_USER_INPUT')).toEqual({ field: 'first', message: 'first must be from 0 to 100' });
    expect(failure(await gw.gql(gw.keys.a, PAGE, { first: -1 }), 'BAD_USER_INPUT').field).toBe('first');
    const backwards = await gw.gql(gw.keys.a, '{ modules(last: 2) { totalCount } }');
    expect(failure(backwards, 'BAD_USER_INPUT').message).toBe('modules pages forward only: use first and after');
    expect(failure(await gw.gql(gw.keys.a, PAGE, { after: 'bm9wZQ' }), 'BAD_USER_INPUT')).toEqual({
      field: 'after',
      message: 'after is not a cursor this API returned',
    });
  });

  it("lists only the caller's org", async () => {
    const a = ok(await gw.gql(gw.keys.a, PAGE, { first: 100 })).modules;
    const b = ok(await gw.gql(gw.keys.b, PAGE, { first: 100 })).modules;
    expect(ids(a)).toEqual(['github', 'only-org-a', 'slack']);
    expect(ids(b)).toEqual(['github', 'only-org-b', 'slack']);
    expect(new Set([...a.edges, ...b.edges].map((e: { node: { orgId: string } }) => e.node.orgId))).toEqual(new Set([ORG_A, ORG_B]));
    expect(a.edges.every((e: { node: { orgId: string } }) => e.node.orgId === ORG_A)).toBe(true);
  });
});

describe('updateModule, enableModule, disableModule', () => {
  const UPDATE = `mutation($id: ID!, $i: UpdateModuleInput!) { updateModule(id: $id, input: $i) { ${MODULE_FIELDS} } }`;

  it('changes the given fields only, keeps installedAt, advances updatedAt', async () => {
    const before = ok(await install(gw, gw.keys.a, { id: 'm', description: 'old', config: { a: 1 } })).installModule;
    await sleep(5);
    const after = ok(await gw.gql(gw.keys.a, UPDATE, { id: 'm', i: { version: '1.1.0', config: { b: 2 } } })).updateModule;
    expect(after).toMatchObject({ name: before.name, description: 'old', version: '1.1.0', config: { b: 2 }, installedAt: before.installedAt });
    expect(after.updatedAt > before.updatedAt).toBe(true);
    const renamed = ok(await gw.gql(gw.keys.a, UPDATE, { id: 'm', i: { name: 'New', description: null } })).updateModule;
    expect(renamed).toMatchObject({ name: 'New', description: null, version: '1.1.0', config: { b: 2 } });
  });

  it('validates like installModule and needs at least one change', async () => {
    await install(gw, gw.keys.a, { id: 'm' });
    expect(failure(await gw.gql(gw.keys.a, UPDATE, { id: 'm', i: {} }), 'BAD_USER_INPUT').message).toBe(
      'give at least one of name, version, description, config',
    );
    expect(failure(await gw.gql(gw.keys.a, UPDATE, { id: 'm', i: { version: '2' } }), 'BAD_USER_INPUT').field).toBe('version');
    expect(failure(await gw.gql(gw.keys.a, UPDATE, { id: 'm', i: { config: { x: 'a'.repeat(70_000) } } }), 'BAD_USER_INPUT').field).toBe('config');
    expect(failure(await gw.gql(gw.keys.a, UPDATE, { id: 'm', i: { name: '' } }), 'BAD_USER_INPUT').field).toBe('name');
  });

  it('answers NOT_FOUND for a missing module', async () => {
    expect(failure(await gw.gql(gw.keys.a, UPDATE, { id: 'nope', i: { name: 'x' } }), 'NOT_FOUND').message).toBe('Module "nope" was not found');
    expect(failure(await gw.gql(gw.keys.a, 'mutation { enableModule(id: "nope") { id } }'), 'NOT_FOUND').message).toBe('Module "nope" was not found');
    expect(failure(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "nope") { id } }'), 'NOT_FOUND').message).toBe('Module "nope" was not found');
    // A very long id is certainly absent, and answers the same way.
    const long = 'x'.repeat(300);
    expect(failure(await gw.gql(gw.keys.a, 'mutation($id: ID!) { enableModule(id: $id) { id } }', { id: long }), 'NOT_FOUND').message).toBe(
      `Module "${long}" was not found`,
    );
  });

  it('disables and enables, idempotently, touching updatedAt', async () => {
    const m = ok(await install(gw, gw.keys.a, { id: 'm' })).installModule;
    await sleep(5);
    const off = ok(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "m") { enabled updatedAt installedAt } }')).disableModule;
    expect(off.enabled).toBe(false);
    expect(off.updatedAt > m.updatedAt).toBe(true);
    expect(off.installedAt).toBe(m.installedAt);
    expect(ok(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "m") { enabled } }')).disableModule.enabled).toBe(false);
    expect(ok(await gw.gql(gw.keys.a, 'mutation { enableModule(id: "m") { enabled } }')).enableModule.enabled).toBe(true);
    expect(ok(await gw.gql(gw.keys.a, 'mutation { enableModule(id: "m") { enabled } }')).enableModule.enabled).toBe(true);
    expect(await rawModule(ORG_A, 'm')).toMatchObject({ enabled: gw.dialect === 'postgres' ? true : 1 });
  });
});

describe('uninstallModule', () => {
  it('removes the module and its credential, returning the module as it was', async () => {
    const gone = ok(await gw.gql(gw.keys.a, `mutation { uninstallModule(id: "github") { ${MODULE_FIELDS} } }`)).uninstallModule;
    expect(gone).toMatchObject({ id: 'github', orgId: ORG_A, hasCredential: true });
    expect(await rawModule(ORG_A, 'github')).toBeUndefined();
    expect(await rawCredential(ORG_A, 'github')).toBeUndefined();
    // Org B's look-alike module and credential stay.
    expect(await rawModule(ORG_B, 'github')).toBeDefined();
    expect(await rawCredential(ORG_B, 'github')).toBeDefined();
    expect(ok(await gw.gql(gw.keys.a, MODULE, { id: 'github' })).module).toBeNull();
    expect(ok(await gw.gql(gw.keys.a, '{ hasCredential(moduleId: "github") }')).hasCredential).toBe(false);
    // Reinstalling does not bring the old credential back.
    expect(ok(await install(gw, gw.keys.a, { id: 'github' })).installModule.hasCredential).toBe(false);
    expect(ok(await gw.gql(gw.keys.a, '{ credentialSecret(moduleId: "github") }')).credentialSecret).toBeNull();
  });

  it('answers NOT_FOUND the second time', async () => {
    ok(await gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "slack") { id } }'));
    expect(failure(await gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "slack") { id } }'), 'NOT_FOUND').message).toBe(
      'Module "slack" was not found',
    );
  });

  it('deletes module and credential in one transaction: when the credential cannot go, the module stays', async () => {
    const module = await rawModule(ORG_A, 'github');
    const credential = await rawCredential(ORG_A, 'github');
    const block = async (on: boolean) => {
      if (gw.postgres) {
        await gw.postgres.query(
          on
            ? `CREATE FUNCTION block_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'blocked by test'; END $$;
               CREATE TRIGGER block_credential_delete BEFORE DELETE ON credentials FOR EACH ROW EXECUTE FUNCTION block_delete()`
            : 'DROP TRIGGER block_credential_delete ON credentials; DROP FUNCTION block_delete()',
        );
      } else {
        gw.opened.sqlite.exec(
          on ? `CREATE TRIGGER block_credential_delete BEFORE DELETE ON credentials BEGIN SELECT RAISE(ABORT, 'blocked by test'); END` : 'DROP TRIGGER block_credential_delete',
        );
      }
    };
    await block(true);
    try {
      const res = await gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "github") { id } }');
      const error = failure(res, 'INTERNAL_SERVER_ERROR');
      expect(error.message).toBe('Unexpected error.'); // masked: no SQL, no trigger text
      expect(res.text).not.toContain('blocked');
      expect(await rawModule(ORG_A, 'github')).toEqual(module);
      expect(await rawCredential(ORG_A, 'github')).toEqual(credential);
    } finally {
      await block(false);
    }
    ok(await gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "github") { id } }'));
    expect(await rawCredential(ORG_A, 'github')).toBeUndefined();
  });
});

describe('a module shows', () => {
  it('whether it has a credential, as credentials come and go', async () => {
    const has = async () => ok(await gw.gql(gw.keys.a, MODULE, { id: 'slack' })).module.hasCredential as boolean;
    expect(await has()).toBe(false);
    ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { token: 't' } }));
    expect(await has()).toBe(true);
    const listed = ok(await gw.gql(gw.keys.a, '{ modules { edges { node { id hasCredential } } } }')).modules.edges;
    expect(listed.map((e: { node: unknown }) => e.node)).toEqual([
      { id: 'github', hasCredential: true },
      { id: 'only-org-a', hasCredential: false },
      { id: 'slack', hasCredential: true },
    ]);
    ok(await gw.gql(gw.keys.a, 'mutation { deleteCredential(moduleId: "slack") }'));
    expect(await has()).toBe(false);
  });

  it('its health, usage count and last use as the platform reports them', async () => {
    ok(await gw.gql(gw.keys.admin, 'mutation { reportModuleHealth(orgId: "org-a", moduleId: "slack", status: DEGRADED, message: "slow") { id } }'));
    ok(await gw.gql(gw.keys.admin, 'mutation { recordModuleUsage(orgId: "org-a", moduleId: "slack", count: 3) { id } }'));
    const m = ok(await gw.gql(gw.keys.a, MODULE, { id: 'slack' })).module;
    expect(m).toMatchObject({ usageCount: 3, health: { status: 'DEGRADED', message: 'slow' } });
    expect(m.health.checkedAt).toMatch(ISO);
    expect(m.lastUsedAt).toMatch(ISO);
    // Org B's slack saw none of it.
    expect(ok(await gw.gql(gw.keys.b, MODULE, { id: 'slack' })).module).toMatchObject({
      usageCount: 0,
      lastUsedAt: null,
      health: { status: 'UNKNOWN', message: null, checkedAt: null },
    });
  });
});

describe('legacy module ids (adopted from pre-tenant files)', () => {
  const legacy = 'Legacy Module/1';

  it('stay addressable by every operation, though new installs must follow the rule', async () => {
    const at = new Date().toISOString();
    await gw.opened.store.forOrg(ORG_A).modules.insert({
      moduleId: legacy, name: 'Old', version: '0.1.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at,
    }, SYSTEM_ACTOR);
    const q = (query: string) => gw.gql(gw.keys.a, query, { id: legacy });
    expect(ok(await q(`query($id: ID!) { module(id: $id) { id } }`)).module).toEqual({ id: legacy });
    expect(ok(await gw.gql(gw.keys.a, PAGE, { first: 1 })).modules.edges[0].node.id).toBe(legacy); // 'L' sorts before 'g'
    expect(ok(await q('mutation($id: ID!) { updateModule(id: $id, input: { name: "Renamed" }) { name } }')).updateModule.name).toBe('Renamed');
    expect(ok(await q('mutation($id: ID!) { disableModule(id: $id) { enabled } }')).disableModule.enabled).toBe(false);
    expect(ok(await q('mutation($id: ID!) { enableModule(id: $id) { enabled } }')).enableModule.enabled).toBe(true);
    ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: legacy, s: { password: 'p' } }));
    expect(ok(await gw.gql(gw.keys.a, 'query($id: ID!) { hasCredential(moduleId: $id) }', { id: legacy })).hasCredential).toBe(true);
    expect(ok(await gw.gql(gw.keys.a, 'query($id: ID!) { credentialSecret(moduleId: $id) }', { id: legacy })).credentialSecret).toEqual({ password: 'p' });
    expect(failure(await install(gw, gw.keys.a, { id: legacy }), 'BAD_USER_INPUT').field).toBe('id');
    expect(ok(await q('mutation($id: ID!) { uninstallModule(id: $id) { id hasCredential } }')).uninstallModule).toEqual({ id: legacy, hasCredential: true });
    expect(await rawCredential(ORG_A, legacy)).toBeUndefined();
  });
});
