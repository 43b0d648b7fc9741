/**
 * Org lifecycle (issue 15 item 4) through the front door, over the listener `npm start` serves,
 * on both dialects (vitest.config.ts runs this file again on PostgreSQL): rename, suspend and
 * resume, delete. What deleting does to the bytes of the store (shredding) is proven in the
 * data-key tests.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { failure, ok, SET_CREDENTIAL } from './helpers/api.ts';
import { createTestGateway, lastCache, ORG_A, ORG_B, TENANT_SCOPES, type TestGateway } from './helpers/gateway.ts';
import { rawColumns, rawRows, rawTables } from './helpers/raw.ts';

const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const gw of gateways.splice(0)) await gw.close();
});
async function gateway(): Promise<TestGateway> {
  const gw = await createTestGateway();
  gateways.push(gw);
  return gw;
}

/** Every row of the org in every table with an org_id (and its orgs row), as text, by table. */
async function rowsOf(gw: TestGateway, orgId: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of await rawTables(gw)) {
    const columns = await rawColumns(gw, table);
    const rows = columns.includes('org_id')
      ? await rawRows(gw, `SELECT * FROM "${table}" WHERE org_id = ?`, [orgId])
      : table === 'orgs'
        ? await rawRows(gw, 'SELECT * FROM orgs WHERE id = ?', [orgId])
        : [];
    out[table] = rows.map((r) => JSON.stringify(r, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v))).sort();
  }
  return out;
}

/** What the org's tenant data looks like, without the tables that grow with every request (metering, audit). */
const tenantData = (rows: Record<string, string[]>) =>
  Object.fromEntries(Object.entries(rows).filter(([table]) => !/^(usage_|audit_)/.test(table) && table !== 'api_keys' && table !== 'orgs'));

const PAGE = '{ modules(first: 10) { edges { node { id name } } } }';
const admin = (gw: TestGateway, query: string, variables?: Record<string, unknown>) => gw.gql(gw.keys.admin, query, variables);

describe('suspendOrg and resumeOrg', () => {
  it("refuses every key of a suspended org with 403 ORG_SUSPENDED, cached answers included; nothing of it changes; resuming restores it", async () => {
    const gw = await gateway();
    ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { token: 'kept-through-suspension' } }));
    // Warm the response cache, so that the suspension must also stop a cached answer.
    const page = ok(await gw.gql(gw.keys.a, PAGE));
    ok(await gw.gql(gw.keys.a, PAGE));
    expect(lastCache(gw)).toBe('hit');
    await gw.app.flush();
    const before = tenantData(await rowsOf(gw, ORG_A));

    const suspended = ok(await admin(gw, 'mutation { suspendOrg(id: "org-a", reason: "unpaid invoice") { id status suspendedAt suspendReason } }')).suspendOrg;
    expect(suspended).toMatchObject({ id: ORG_A, status: 'SUSPENDED', suspendReason: 'unpaid invoice' });
    expect(Date.parse(suspended.suspendedAt)).toBeGreaterThan(Date.now() - 60_000);

    const attempts = [
      PAGE, // the cached page
      '{ viewer { org { id } } }',
      '{ credentialSecret(moduleId: "slack") }',
      'mutation { disableModule(id: "github") { id } }',
      'mutation { setCredential(moduleId: "slack", secret: { token: "changed" }) { moduleId } }',
      'mutation { recordRunUnits(input: { units: 1, idempotencyKey: "while-suspended" }) { repeat } }',
    ];
    for (const query of attempts) {
      const res = await gw.gql(gw.keys.a, query);
      expect(res.status, query).toBe(403);
      expect(res.body.data, query).toBeUndefined();
      expect(failure(res, 'ORG_SUSPENDED').message).toBe("This API key's org is suspended; ask the operator to resume it");
      expect(res.text).not.toContain('kept-through-suspension');
    }
    // The operator cannot add a key to it either; B works as before.
    failure(await admin(gw, 'mutation { createOrgApiKey(orgId: "org-a", input: { name: "x", scopes: ["modules:read"] }) { secret } }'), 'ORG_SUSPENDED');
    expect(ok(await gw.gql(gw.keys.b, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_B);
    expect(ok(await admin(gw, '{ orgs { id status } }')).orgs).toContainEqual({ id: ORG_A, status: 'SUSPENDED' });
    const refusal = gw.logger.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request refused: org suspended');
    expect(refusal).toMatchObject({ orgId: ORG_A });
    await gw.app.flush();
    expect(tenantData(await rowsOf(gw, ORG_A))).toEqual(before);

    const orgRow = (await rowsOf(gw, ORG_A)).orgs;
    const resumed = ok(await admin(gw, 'mutation { resumeOrg(id: "org-a") { status suspendedAt suspendReason } }')).resumeOrg;
    expect(resumed).toEqual({ status: 'ACTIVE', suspendedAt: null, suspendReason: null });
    expect(orgRow?.[0]).toContain('"status":"suspended"');
    expect((await rowsOf(gw, ORG_A)).orgs?.[0]).toContain('"status":"active"');
    expect(ok(await gw.gql(gw.keys.a, PAGE))).toEqual(page);
    expect(ok(await gw.gql(gw.keys.a, '{ credentialSecret(moduleId: "slack") }')).credentialSecret).toEqual({ token: 'kept-through-suspension' });
    ok(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "github") { id } }'));
  });

  it("cannot suspend or delete the operator's org, and answers NOT_FOUND for an unknown one", async () => {
    const gw = await gateway();
    expect(failure(await admin(gw, 'mutation { suspendOrg(id: "default", reason: "x") { id } }'), 'BAD_USER_INPUT')).toEqual({
      message: 'the operator\'s org "default" cannot be suspended',
      field: 'id',
    });
    expect(failure(await admin(gw, 'mutation { deleteOrg(id: "default", confirm: "default") { id } }'), 'BAD_USER_INPUT').message).toBe(
      'the operator\'s org "default" cannot be deleted',
    );
    expect(failure(await admin(gw, 'mutation { suspendOrg(id: "org-z", reason: "x") { id } }'), 'NOT_FOUND').message).toBe('Org "org-z" was not found');
    expect(failure(await admin(gw, 'mutation { suspendOrg(id: "org-a", reason: "  ") { id } }'), 'BAD_USER_INPUT').field).toBe('reason');
    expect(ok(await gw.gql(gw.keys.admin, '{ viewer { org { id } } }')).viewer.org.id).toBe('default');
  });
});

describe('renameOrg', () => {
  it("changes the org's display name and nothing else", async () => {
    const gw = await gateway();
    expect(ok(await admin(gw, 'mutation { renameOrg(id: "org-a", name: "  Acme Inc  ") { id name status } }')).renameOrg).toEqual({
      id: ORG_A,
      name: 'Acme Inc',
      status: 'ACTIVE',
    });
    expect(ok(await gw.gql(gw.keys.a, '{ viewer { org { name } } }')).viewer.org.name).toBe('Acme Inc');
    expect(ok(await gw.gql(gw.keys.b, '{ viewer { org { name } } }')).viewer.org.name).toBe('Org B');
    expect(failure(await admin(gw, 'mutation { renameOrg(id: "org-a", name: "") { id } }'), 'BAD_USER_INPUT').field).toBe('name');
  });
});

describe('deleteOrg', () => {
  it('deletes every row of the org in every table, once the id is typed again; the other orgs keep theirs', async () => {
    const gw = await gateway();
    // A's page is in the response cache: a new org of the same id must never be answered from it.
    const cachedPage = '{ modules(first: 10) { totalCount edges { node { id config } } } }';
    ok(await gw.gql(gw.keys.a, cachedPage));
    expect(ok(await gw.gql(gw.keys.a, cachedPage)).modules.totalCount).toBe(3);
    expect(lastCache(gw)).toBe('hit');
    ok(await gw.gql(gw.keys.a, 'mutation { recordRunUnits(input: { units: 3, idempotencyKey: "before-delete" }) { repeat } }'));
    ok(await admin(gw, 'mutation { setOrgQuota(orgId: "org-a", input: { runUnitsPerMonth: 100 }) { orgId } }'));
    await gw.app.flush();
    const bBefore = tenantData(await rowsOf(gw, ORG_B));
    expect(Object.values(await rowsOf(gw, ORG_A)).flat().length).toBeGreaterThan(8);

    const mistyped = await admin(gw, 'mutation { deleteOrg(id: "org-a", confirm: "org-b") { id } }');
    expect(failure(mistyped, 'BAD_USER_INPUT')).toEqual({ message: 'confirm must repeat the id of the org to delete', field: 'confirm' });
    expect(ok(await gw.gql(gw.keys.a, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_A);

    const deleted = ok(await admin(gw, 'mutation { deleteOrg(id: "org-a", confirm: "org-a") { id deletedAt } }')).deleteOrg;
    expect(deleted.id).toBe(ORG_A);
    const left = await rowsOf(gw, ORG_A);
    expect(Object.entries(left).filter(([, rows]) => rows.length > 0)).toEqual([]);
    expect((await gw.gql(gw.keys.a, '{ viewer { org { id } } }')).status).toBe(401);
    expect(failure(await admin(gw, 'mutation { deleteOrg(id: "org-a", confirm: "org-a") { id } }'), 'NOT_FOUND').message).toBe('Org "org-a" was not found');
    expect(ok(await admin(gw, '{ orgs { id } }')).orgs.map((o: { id: string }) => o.id)).toEqual(['default', ORG_B]);
    expect(tenantData(await rowsOf(gw, ORG_B))).toEqual(bBefore);

    // The id can be used again, for an org with nothing of the old one.
    ok(await admin(gw, 'mutation { createOrg(input: { id: "org-a", name: "A again" }) { id } }'));
    const secret = ok(await admin(gw, 'mutation { createOrgApiKey(orgId: "org-a", input: { name: "k", scopes: ["modules:read", "usage:read"] }) { secret } }')).createOrgApiKey.secret;
    expect(ok(await gw.gql(secret, '{ modules(first: 10) { totalCount } usage { runUnits quota } }'))).toEqual({
      modules: { totalCount: 0 },
      usage: { runUnits: 0, quota: null },
    });
    const again = await gw.gql(await gw.key(ORG_A, TENANT_SCOPES), cachedPage);
    expect(ok(again).modules).toEqual({ totalCount: 0, edges: [] });
    expect(lastCache(gw)).toBe('miss');
  });
});
