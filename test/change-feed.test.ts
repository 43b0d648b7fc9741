import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { Change } from '../src/store/types.ts';
import { ok } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';

let gw: TestGateway | undefined;
afterEach(async () => {
  const open = gw;
  gw = undefined;
  await open?.close();
});

const until = async (condition: () => boolean) => {
  const end = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out waiting for the change feed');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('the store change feed (store.changes)', () => {
  it("tells subscribers of this process's writes with their org, and of other connections' commits as 'anything'", async () => {
    gw = await createTestGateway();
    const heard: Change[] = [];
    const unsubscribe = gw.opened.store.changes.subscribe((change) => heard.push(change));
    try {
      const a0 = gw.opened.store.changes.version(ORG_A);
      const b0 = gw.opened.store.changes.version(ORG_B);
      ok(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "slack") { id } }'));
      // A data write says so (the key cache need not drop the org's keys for it), and names the module it changed.
      expect(heard).toEqual([{ orgId: ORG_A, kind: 'data', module: { id: 'slack', event: 'changed' } }]);
      expect(gw.opened.store.changes.version(ORG_A)).not.toBe(a0);
      expect(gw.opened.store.changes.version(ORG_B)).toBe(b0);

      // A key's revocation is heard (a key cache drops it), though no cached answer reads keys.
      const made = ok(await gw.gql(gw.keys.a, 'mutation { createApiKey(input: { name: "x", scopes: ["modules:read"] }) { apiKey { id } } }'));
      ok(await gw.gql(gw.keys.a, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id: made.createApiKey.apiKey.id }));
      // Heard without a kind: anything of the org's, its keys included, may have changed.
      expect(heard.slice(1)).toEqual([{ orgId: ORG_A }, { orgId: ORG_A }]);
      expect(heard.some((c) => c.orgId === ORG_B)).toBe(false);

      // Another connection (another process, the CLI) commits: heard as "anything may have changed".
      const other = new Database(gw.config.database);
      try {
        other.prepare("UPDATE modules SET name = 'elsewhere' WHERE org_id = ? AND module_id = 'github'").run(ORG_B);
      } finally {
        other.close();
      }
      await until(() => heard.some((c) => c.orgId === null));
      expect(gw.opened.store.changes.version(ORG_B)).not.toBe(b0);
    } finally {
      unsubscribe();
    }
    const count = heard.length;
    ok(await gw.gql(gw.keys.b, 'mutation { disableModule(id: "slack") { id } }'));
    expect(heard.length).toBe(count);
  });

  it('keeps a write that a failing listener heard of: the answer and the data stand', async () => {
    gw = await createTestGateway();
    const unsubscribe = gw.opened.store.changes.subscribe(() => {
      throw new Error('listener broke');
    });
    try {
      const res = ok(await gw.gql(gw.keys.a, 'mutation { installModule(input: { id: "kept", name: "K", version: "1.0.0" }) { id } }'));
      expect(res.installModule.id).toBe('kept');
      expect((await gw.opened.store.forOrg(ORG_A).modules.get('kept'))?.name).toBe('K');
      expect(await gw.opened.store.forOrg(ORG_B).modules.get('kept')).toBeUndefined();
    } finally {
      unsubscribe();
    }
  });
});
