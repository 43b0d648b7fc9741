import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../src/auth/key-format.ts';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';

const CREATE = 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id scopes expiresAt } } }';
const REVOKE = 'mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const VIEWER = '{ viewer { org { id } } }';

let gw: TestGateway;
beforeAll(async () => {
  gw = await createTestGateway({ seed: false });
});
afterAll(async () => gw.close());

async function idOf(secret: string): Promise<string> {
  return (await gw.opened.store.apiKeys.listForOrg(ORG_A)).find((k) => k.hash === hashKey(secret))!.id;
}

describe('what a key may do with other keys', () => {
  it('keeps the admin scope in the operator org: a tenant holding it could reach every org', async () => {
    const res = await gw.gql(gw.keys.admin, CREATE, { i: { name: 'x', scopes: ['admin', 'modules:read'], orgId: ORG_A } });
    expect(res.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(res.body.errors[0].message).toContain('operator org "default"');
    expect(await gw.opened.store.apiKeys.listForOrg(ORG_A)).toHaveLength(1);
    const own = await gw.gql(gw.keys.admin, CREATE, { i: { name: 'second admin', scopes: ['admin'] } });
    expect(own.body.data.createApiKey.apiKey.scopes).toEqual(['admin']);
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
