import { afterEach, describe, expect, it } from 'vitest';
import { Authenticator } from '../src/auth/authenticator.ts';
import { captureLogger } from '../src/logger.ts';
import type { Change, Store } from '../src/store/types.ts';
import { createTestGateway, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';

// The key cache and the change feed (issue 13 item 4): what the authenticator keeps and drops as
// the feed speaks or goes quiet. Several real processes: test/replicas.test.ts.
let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

describe('the key cache follows the change feed', () => {
  it("drops an org's keys on a change to them (not on a data write, nor another org's), everything on 'any org', and trusts none while the feed cannot vouch", async () => {
    gw = await createTestGateway({ seed: false });
    const real = gw.opened.store;
    let vouching = true;
    let lookups = 0;
    const heard: Array<(change: Change) => void> = [];
    const store: Store = {
      ...real,
      changes: {
        version: (orgId) => (vouching ? real.changes.version(orgId) : undefined),
        subscribe: (listener) => {
          heard.push(listener);
          return () => {};
        },
      },
      auth: {
        ...real.auth,
        keyByHash: (hash) => {
          lookups += 1;
          return real.auth.keyByHash(hash);
        },
      },
    };
    const auth = new Authenticator(store, { cacheTtlMs: 600_000, flushIntervalMs: 0, logger: captureLogger() });
    const tell = (change: Change) => heard.forEach((listener) => listener(change));
    const verify = async () => expect((await auth.verify(gw!.keys.a))?.orgId).toBe(ORG_A);
    try {
      expect(heard).toHaveLength(1);
      await verify();
      await verify();
      expect(lookups).toBe(1);

      tell({ orgId: ORG_A, kind: 'data' });
      tell({ orgId: ORG_B });
      await verify();
      expect(lookups).toBe(1);

      tell({ orgId: ORG_A });
      await verify();
      expect(lookups).toBe(2);
      tell({ orgId: null });
      await verify();
      expect(lookups).toBe(3);

      // The feed cannot vouch: a cached key is not trusted, every request asks the store.
      vouching = false;
      await verify();
      await verify();
      expect(lookups).toBe(5);
      // Lost, as the PostgreSQL feed announces it: and what is read meanwhile is not kept.
      tell({ orgId: null });
      await verify();
      expect(lookups).toBe(6);
      vouching = true;
      await verify();
      expect(lookups).toBe(7);
      await verify();
      expect(lookups).toBe(7);
    } finally {
      await auth.close();
    }
  });
});
