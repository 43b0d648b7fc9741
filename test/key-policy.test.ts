import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../src/auth/key-format.ts';
import { SCOPES, type Scope } from '../src/auth/scopes.ts';
import { issueApiKey } from '../src/repos/api-keys.ts';
import { failure, ok } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, TENANT_SCOPES, type GqlResponse, type TestGateway } from './helpers/gateway.ts';
import { rawRun } from './helpers/raw.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

const CREATE = 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id scopes expiresAt } } }';
const REVOKE = 'mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const VIEWER = '{ viewer { org { id } } }';
const CREATE_IN = 'mutation($o: ID!, $i: CreateApiKeyInput!) { createOrgApiKey(orgId: $o, input: $i) { secret apiKey { id scopes expiresAt } } }';
const REVOKE_IN = 'mutation($o: ID!, $id: ID!, $c: Boolean) { revokeOrgApiKey(orgId: $o, id: $id, cascade: $c) { id revokedAt descendants { id } } }';

let gw: TestGateway;
beforeAll(async () => {
  gw = await createTestGateway({ seed: false });
});
afterAll(async () => gw.close());

async function idOf(secret: string): Promise<string> {
  return (await gw.opened.store.forOrg(ORG_A).apiKeys.list()).find((k) => k.hash === hashKey(secret))!.id;
}

describe('what a key may do with other keys', () => {
  it('keeps the admin scope in the operator org: a tenant holding it could reach every org', async () => {
    const res = await gw.gql(gw.keys.admin, CREATE_IN, { o: ORG_A, i: { name: 'x', scopes: ['admin', 'modules:read'] } });
    expect(failure(res, 'BAD_USER_INPUT').message).toContain('operator org "default"');
    expect(await gw.opened.store.forOrg(ORG_A).apiKeys.list()).toHaveLength(1);
    const own = await gw.gql(gw.keys.admin, CREATE, { i: { name: 'second admin', scopes: ['admin'] } });
    expect(own.body.data.createApiKey.apiKey.scopes).toEqual(['admin']);
    const named = await gw.gql(gw.keys.admin, CREATE_IN, { o: 'default', i: { name: 'third admin', scopes: ['admin'] } });
    expect(ok(named).createOrgApiKey.apiKey.scopes).toEqual(['admin']);
  });

  it('never lets a key outlive the key that creates it', async () => {
    const until = new Date(Date.now() + 3_600_000);
    const expiring = await gw.key(ORG_A, ['keys:manage', 'modules:read'], until);
    const inherited = await gw.gql(expiring, CREATE, { i: { name: 'child', scopes: ['modules:read'] } });
    expect(inherited.body.data.createApiKey.apiKey.expiresAt).toBe(until.toISOString());
    const later = await gw.gql(expiring, CREATE, {
      i: { name: 'longer', scopes: ['modules:read'], expiresAt: new Date(until.getTime() + 1000).toISOString() },
    });
    expect(later.body.errors[0].extensions.code).toBe('FORBIDDEN');
    const sooner = new Date(until.getTime() - 60_000).toISOString();
    const ok = await gw.gql(expiring, CREATE, { i: { name: 'shorter', scopes: ['modules:read'], expiresAt: sooner } });
    expect(ok.body.data.createApiKey.apiKey.expiresAt).toBe(sooner);
  });

  it('lets a key revoke only keys whose scopes it holds', async () => {
    const manager = await gw.key(ORG_A, ['keys:manage']);
    const strong = await gw.key(ORG_A, ['keys:manage', 'credentials:reveal']);
    const denied = await gw.gql(manager, REVOKE, { id: await idOf(strong) });
    expect(denied.body.errors[0].extensions.code).toBe('FORBIDDEN');
    expect(denied.body.errors[0].message).toContain('credentials:reveal');
    expect((await gw.gql(strong, VIEWER)).status).toBe(200);
    const weak = await gw.key(ORG_A, ['keys:manage']);
    expect((await gw.gql(strong, REVOKE, { id: await idOf(weak) })).body.data.revokeApiKey.revokedAt).toBeTruthy();
    expect((await gw.gql(weak, VIEWER)).status).toBe(401);
  });
});

describe("the operator's key fields (createOrgApiKey, revokeOrgApiKey): the same rules bind the admin key", () => {
  it('grants only scopes the admin key holds', async () => {
    const narrowAdmin = await gw.key('default', ['admin']);
    const LIST = '{ orgApiKeys(orgId: "org-a") { id } }';
    const before = ok(await gw.gql(gw.keys.admin, LIST));
    const denied = await gw.gql(narrowAdmin, CREATE_IN, { o: ORG_A, i: { name: 'x', scopes: ['modules:read'] } });
    expect(failure(denied, 'FORBIDDEN').message).toBe('a key cannot grant scopes it does not hold: modules:read');
    expect(ok(await gw.gql(gw.keys.admin, LIST))).toEqual(before);
    const readingAdmin = await gw.key('default', ['admin', 'modules:read']);
    const made = ok(await gw.gql(readingAdmin, CREATE_IN, { o: ORG_A, i: { name: 'y', scopes: ['modules:read'] } })).createOrgApiKey;
    expect(made.apiKey.scopes).toEqual(['modules:read']);
    expect(ok(await gw.gql(made.secret, VIEWER)).viewer.org.id).toBe(ORG_A);
  });

  it('makes no key that outlives the admin key', async () => {
    const until = new Date(Date.now() + 3_600_000);
    const expiringAdmin = await gw.key('default', SCOPES, until);
    const inherited = ok(await gw.gql(expiringAdmin, CREATE_IN, { o: ORG_B, i: { name: 'child', scopes: ['modules:read'] } })).createOrgApiKey;
    expect(inherited.apiKey.expiresAt).toBe(until.toISOString());
    const later = await gw.gql(expiringAdmin, CREATE_IN, {
      o: ORG_B,
      i: { name: 'longer', scopes: ['modules:read'], expiresAt: new Date(until.getTime() + 1000).toISOString() },
    });
    expect(failure(later, 'FORBIDDEN').message).toBe(`a key cannot outlive the key that creates it (${until.toISOString()})`);
  });

  it('revokes only keys whose scopes the admin key holds, with or without cascade, and nothing on a refusal', async () => {
    const readingAdmin = await gw.key('default', ['admin', 'modules:read']);
    const strong = await gw.key(ORG_A, ['modules:read', 'credentials:reveal']);
    const strongId = ok(await gw.gql(strong, '{ viewer { apiKey { id } } }')).viewer.apiKey.id as string;
    for (const c of [false, true]) {
      const denied = await gw.gql(readingAdmin, REVOKE_IN, { o: ORG_A, id: strongId, c });
      expect(failure(denied, 'FORBIDDEN').message).toBe('a key cannot revoke a key with scopes it does not hold: credentials:reveal');
    }
    expect((await gw.gql(strong, VIEWER)).status).toBe(200);
    // A tree whose root the admin may revoke but whose live child holds more: refused whole.
    const root = await issueApiKey(gw.opened.store, ORG_A, { name: 'root', scopes: ['modules:read'] }, { keyId: null, scopes: 'all' }, SYSTEM_ACTOR);
    const child = await issueApiKey(gw.opened.store, ORG_A, { name: 'child', scopes: ['credentials:reveal'] }, { keyId: root.apiKey.id, scopes: 'all' }, SYSTEM_ACTOR);
    const refused = await gw.gql(readingAdmin, REVOKE_IN, { o: ORG_A, id: root.apiKey.id, c: true });
    expect(failure(refused, 'FORBIDDEN').message).toContain('nothing was revoked');
    expect((await gw.gql(root.secret, VIEWER)).status).toBe(200);
    expect((await gw.gql(child.secret, VIEWER)).status).toBe(200);
    // The admin holding every scope takes the tree.
    const taken = ok(await gw.gql(gw.keys.admin, REVOKE_IN, { o: ORG_A, id: root.apiKey.id, c: true })).revokeOrgApiKey;
    expect(taken.descendants).toEqual([{ id: child.apiKey.id }]);
    expect((await gw.gql(root.secret, VIEWER)).status).toBe(401);
    expect((await gw.gql(child.secret, VIEWER)).status).toBe(401);
  });
});

describe('revoking a key with cascade, over HTTP', () => {
  const CASCADE = 'mutation($id: ID!, $c: Boolean) { revokeApiKey(id: $id, cascade: $c) { id revokedAt descendants { id name revokedAt } } }';
  const PAGE = '{ modules(first: 5) { totalCount } }';
  let gw: TestGateway;
  let server: http.Server;
  let url: string;

  beforeAll(async () => {
    gw = await createTestGateway();
    server = http.createServer(gw.app.listener);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gw.close();
  });

  /** A GraphQL request over real HTTP to the listener `npm start` serves. */
  async function post(key: string, query: string, variables?: Record<string, unknown>): Promise<GqlResponse> {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query, variables }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: JSON.parse(text), text };
  }

  async function mint(parent: string, name: string, scopes: Scope[]): Promise<{ id: string; secret: string }> {
    const created = ok(await post(parent, 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id } } }', { i: { name, scopes } }));
    return { id: created.createApiKey.apiKey.id, secret: created.createApiKey.secret };
  }

  /** 200 or 401 for each key, on both paths: Yoga (viewer) and the HTTP front (a page it may answer from cache). */
  async function statuses(keys: Record<string, string>): Promise<Record<string, number[]>> {
    const out: Record<string, number[]> = {};
    for (const [name, key] of Object.entries(keys)) out[name] = [(await post(key, VIEW)).status, (await post(key, PAGE)).status];
    return out;
  }
  const VIEW = '{ viewer { apiKey { id } } }';
  const live = [200, 200];
  const dead = [401, 401];

  it('revokes the key and everything it minted, directly or not, and nothing else, at once on this node', async () => {
    // P (the org's manager) made the leaked key A and its sibling S; A made B, B made C. U is unrelated.
    const pId = ok(await post(gw.keys.a, VIEW)).viewer.apiKey.id as string;
    const a = await mint(gw.keys.a, 'leaked', ['keys:manage', 'modules:read']);
    const s = await mint(gw.keys.a, 'sibling', ['keys:manage', 'modules:read']);
    const b = await mint(a.secret, 'child', ['keys:manage', 'modules:read']);
    const c = await mint(b.secret, 'grandchild', ['modules:read']);
    const u = { secret: await gw.key(ORG_A, ['keys:manage', 'modules:read']) };
    const keys = { p: gw.keys.a, a: a.secret, s: s.secret, b: b.secret, c: c.secret, u: u.secret, orgB: gw.keys.b };
    // Every key has been verified (and so cached) on both paths before the revocation.
    expect(await statuses(keys)).toEqual({ p: live, a: live, s: live, b: live, c: live, u: live, orgB: live });
    const bRowsBefore = await gw.opened.store.forOrg(ORG_B).apiKeys.list();

    // What a cascade would take, before taking it: the descendants, oldest first.
    const before = ok(await post(gw.keys.a, '{ apiKeys { id descendants { id } } }')).apiKeys as { id: string; descendants: { id: string }[] }[];
    expect(before.find((k) => k.id === a.id)?.descendants.map((d) => d.id)).toEqual([b.id, c.id]);
    expect(before.find((k) => k.id === pId)?.descendants.map((d) => d.id)).toEqual([a.id, s.id, b.id, c.id]);

    // Revoking A alone leaves what it minted working: the gap cascade closes.
    const alone = ok(await post(u.secret, CASCADE, { id: a.id })).revokeApiKey;
    expect(alone.descendants.map((d: { revokedAt: string | null }) => d.revokedAt)).toEqual([null, null]);
    expect(await statuses({ a: a.secret, b: b.secret, c: c.secret })).toEqual({ a: dead, b: live, c: live });

    // The cleanup, by an unrelated key of the org: repeated on the revoked A, with cascade.
    const res = ok(await post(u.secret, CASCADE, { id: a.id, c: true })).revokeApiKey;
    expect(res.id).toBe(a.id);
    expect(res.revokedAt).toBe(alone.revokedAt);
    expect(res.descendants.map((d: { id: string; name: string }) => [d.id, d.name])).toEqual([
      [b.id, 'child'],
      [c.id, 'grandchild'],
    ]);
    for (const d of res.descendants) expect(d.revokedAt).toMatch(/^\d{4}-/);
    expect(await statuses(keys)).toEqual({ p: live, a: dead, s: live, b: dead, c: dead, u: live, orgB: live });
    expect(await gw.opened.store.forOrg(ORG_B).apiKeys.list()).toEqual(bRowsBefore);

    // The org's list shows the same: revoked exactly A, B and C.
    const listed = ok(await post(u.secret, '{ apiKeys { id revokedAt } }')).apiKeys as { id: string; revokedAt: string | null }[];
    expect(listed.filter((k) => k.revokedAt !== null).map((k) => k.id).sort()).toEqual([a.id, b.id, c.id].sort());
  });

  it('refuses the whole cascade when a live descendant holds a scope the revoker lacks, and revokes nothing', async () => {
    const root = await mint(gw.keys.a, 'root', ['keys:manage', 'modules:read']);
    const rootId = root.id;
    // Keys made through the API never hold more than their maker; rows made otherwise can.
    const strong = await issueApiKey(gw.opened.store, ORG_A, { name: 'strong', scopes: ['modules:read', 'credentials:reveal'] }, { keyId: rootId, scopes: 'all' }, SYSTEM_ACTOR);
    const weakRevoker = await gw.key(ORG_A, ['keys:manage', 'modules:read']);
    const denied = await post(weakRevoker, CASCADE, { id: rootId, c: true });
    const { message } = failure(denied, 'FORBIDDEN');
    expect(message).toBe(
      'a key cannot revoke keys with scopes it does not hold: 1 of the 1 live key(s) created from this one hold credentials:reveal; nothing was revoked',
    );
    expect(denied.body.data).toBeNull();
    expect(await statuses({ root: root.secret, strong: strong.secret })).toEqual({ root: live, strong: live });
    // A key holding every scope of the tree takes it all.
    const res = ok(await post(gw.keys.a, CASCADE, { id: rootId, c: true })).revokeApiKey;
    expect(res.descendants.map((d: { id: string }) => d.id)).toEqual([strong.apiKey.id]);
    expect(await statuses({ root: root.secret, strong: strong.secret })).toEqual({ root: dead, strong: dead });
  });

  it('never leaves the org: keys of other orgs made by, or naming, a key of the tree stay untouched and unlisted', async () => {
    // A real cross-org lineage: an operator's admin key issues a key in org A.
    const admin = await gw.key('default', SCOPES);
    const adminId = ok(await post(admin, VIEW)).viewer.apiKey.id as string;
    const made = ok(
      await post(admin, 'mutation($i: CreateApiKeyInput!) { createOrgApiKey(orgId: "org-a", input: $i) { secret apiKey { id } } }', { i: { name: 'from the operator', scopes: TENANT_SCOPES } }),
    ).createOrgApiKey;
    expect((await gw.opened.store.forOrg(ORG_A).apiKeys.get(made.apiKey.id))?.createdByKeyId).toBe(adminId);
    // And a row of org B naming a key of org A as its maker (as colliding ids would).
    const aRoot = await mint(gw.keys.a, 'a root', ['keys:manage', 'modules:read']);
    const aChild = await mint(aRoot.secret, 'a child', ['modules:read']);
    const foreign = await issueApiKey(gw.opened.store, ORG_B, { name: 'b, naming a', scopes: ['modules:read'] }, { keyId: aRoot.id, scopes: 'all' }, SYSTEM_ACTOR);
    // ...and a key of org A made by that one: reachable only through org B, so not of the tree.
    const back = await issueApiKey(gw.opened.store, ORG_A, { name: 'a, naming b', scopes: ['modules:read'] }, { keyId: foreign.apiKey.id, scopes: 'all' }, SYSTEM_ACTOR);

    const adminRevoked = ok(await post(admin, CASCADE, { id: adminId, c: true })).revokeApiKey;
    expect(adminRevoked.descendants).toEqual([]);
    expect(await statuses({ admin, made: made.secret })).toEqual({ admin: dead, made: live });

    const bBefore = await gw.opened.store.forOrg(ORG_B).apiKeys.list();
    const res = ok(await post(gw.keys.a, CASCADE, { id: aRoot.id, c: true })).revokeApiKey;
    expect(res.descendants.map((d: { id: string }) => d.id)).toEqual([aChild.id]);
    expect(await statuses({ root: aRoot.secret, child: aChild.secret, foreign: foreign.secret, back: back.secret })).toEqual({
      root: dead,
      child: dead,
      foreign: live,
      back: live,
    });
    expect(await gw.opened.store.forOrg(ORG_B).apiKeys.list()).toEqual(bBefore);
  });

  it('ends on a cycle in hand-edited rows', async () => {
    const x = await mint(gw.keys.a, 'x', ['keys:manage', 'modules:read']);
    const y = await mint(x.secret, 'y', ['modules:read']);
    expect(await rawRun(gw, 'UPDATE api_keys SET created_by_key_id = ? WHERE id = ?', [y.id, x.id])).toBe(1);
    const res = ok(await post(gw.keys.a, CASCADE, { id: x.id, c: true })).revokeApiKey;
    expect(res.descendants.map((d: { id: string }) => d.id)).toEqual([y.id]);
    expect(await statuses({ x: x.secret, y: y.secret })).toEqual({ x: dead, y: dead });
  });

  it("answers org B's key id with cascade exactly as a missing id, and touches none of B's keys", async () => {
    const bKeys = await gw.opened.store.forOrg(ORG_B).apiKeys.list();
    const bMain = bKeys.find((k) => k.hash === hashKey(gw.keys.b))!;
    const missing = 'key_00000000-0000-0000-0000-000000000000';
    const onB = await post(gw.keys.a, CASCADE, { id: bMain.id, c: true });
    const onMissing = await post(gw.keys.a, CASCADE, { id: missing, c: true });
    expect(failure(onB, 'NOT_FOUND').message).toBe(`API key "${bMain.id}" was not found`);
    expect(onB.text.replace(bMain.id, '<id>')).toBe(onMissing.text.replace(missing, '<id>'));
    expect(await gw.opened.store.forOrg(ORG_B).apiKeys.list()).toEqual(bKeys);
    expect((await post(gw.keys.b, VIEW)).status).toBe(200);
  });
});
