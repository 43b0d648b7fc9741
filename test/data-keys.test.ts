/**
 * Per-org data keys (issue 15 item 5), on both dialects (ON_BOTH in vitest.config.ts): every
 * org's credentials are sealed under its own data key, wrapped by the master key; master-key
 * rotation re-wraps one org_keys row per org and leaves the credentials as they are; credentials
 * sealed directly under a master key (stores written before data keys) move on start; a deletion
 * of the org leaves a ciphertext copied out before it openable by nothing the gateway keeps.
 */
import { createDecipheriv, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { isMasterKeyId, OrgKeyring, orgKeyring } from '../src/crypto/data-keys.ts';
import { DecryptError, masterKeyId, SecretBox } from '../src/crypto/secret-box.ts';
import { captureLogger } from '../src/logger.ts';
import { rekeyCredentials } from '../src/maintenance/rekey.ts';
import { SYSTEM_ACTOR, type Store } from '../src/store/types.ts';
import { install, ok, REVEAL, SET_CREDENTIAL } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';
import { rawGet, rawRows, rawRun } from './helpers/raw.ts';

interface RawOrgKey {
  org_id: string;
  key_id: string;
  wrapped: Buffer;
  iv: Buffer;
  tag: Buffer;
  master_key_id: string;
}
interface RawCredential {
  org_id: string;
  module_id: string;
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  key_id: string;
}

const orgKeyOf = (gw: TestGateway, orgId: string) =>
  rawGet<RawOrgKey>(gw, 'SELECT org_id, key_id, wrapped, iv, tag, master_key_id FROM org_keys WHERE org_id = ?', [orgId]);
const credentialOf = (gw: TestGateway, orgId: string, moduleId: string) =>
  rawGet<RawCredential>(gw, 'SELECT org_id, module_id, ciphertext, iv, tag, key_id FROM credentials WHERE org_id = ? AND module_id = ?', [orgId, moduleId]);
const allCredentials = (gw: TestGateway) =>
  rawRows<RawCredential>(gw, 'SELECT org_id, module_id, ciphertext, iv, tag, key_id FROM credentials ORDER BY org_id, module_id');

/** AES-256-GCM as the README documents it, written independently of src/crypto. */
function gcmOpen(key: Buffer, aad: unknown[], iv: Buffer, tag: Buffer, data: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(Buffer.from(JSON.stringify(aad), 'utf8'));
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(data), decipher.final()]);
}
const unwrapAsDocumented = (master: Buffer, k: RawOrgKey) => gcmOpen(master, ['tenantgate data key', k.org_id, k.key_id], k.iv, k.tag, k.wrapped);
const openAsDocumented = (dataKey: Buffer, c: RawCredential) =>
  gcmOpen(dataKey, [c.org_id, c.module_id, c.key_id], c.iv, c.tag, c.ciphertext).toString('utf8');

const gateways: TestGateway[] = [];
async function gateway(options: Parameters<typeof createTestGateway>[0] = {}): Promise<TestGateway> {
  const gw = await createTestGateway(options);
  gateways.push(gw);
  return gw;
}
afterEach(async () => {
  // Second gateways on a shared scratch database first; the one that made it drops it.
  for (const gw of gateways.splice(0).reverse()) await gw.close();
});

describe('per-org data keys', () => {
  it("seals each org's credentials under its own data key, wrapped by the master key and bound to the org", async () => {
    const gw = await gateway();
    const master = gw.config.masterKey!;
    const keyA = await orgKeyOf(gw, ORG_A);
    const keyB = await orgKeyOf(gw, ORG_B);
    if (!keyA || !keyB) throw new Error('the seeded credentials made no data keys');
    expect(keyA.key_id).toMatch(/^dk_[0-9a-f]{16}$/);
    expect(keyB.key_id).not.toBe(keyA.key_id);
    expect([keyA.master_key_id, keyB.master_key_id]).toEqual([masterKeyId(master), masterKeyId(master)]);
    expect(keyA.iv).toHaveLength(12);
    expect(keyA.tag).toHaveLength(16);
    // The org `default` has set no credential: it has no data key yet.
    expect(await orgKeyOf(gw, 'default')).toBeUndefined();

    const dataKeyA = unwrapAsDocumented(master, keyA);
    expect(dataKeyA).toHaveLength(32);
    // Bound to its org: the same wrapped bytes named as org B's do not unwrap.
    expect(() => unwrapAsDocumented(master, { ...keyA, org_id: ORG_B })).toThrow();
    expect(() => unwrapAsDocumented(master, { ...keyA, key_id: keyB.key_id })).toThrow();

    const row = await credentialOf(gw, ORG_A, 'github');
    if (!row) throw new Error('no credential');
    expect(row.key_id).toBe(keyA.key_id);
    expect(JSON.parse(openAsDocumented(dataKeyA, row))).toEqual({ token: 'secret-token-of-org-a' });
    // The master key alone does not open a credential, nor does another org's data key.
    expect(() => openAsDocumented(master, row)).toThrow();
    expect(() => openAsDocumented(unwrapAsDocumented(master, keyB), row)).toThrow();
    // The row-bound authenticated data stays: the ciphertext under another module id does not open.
    expect(() => openAsDocumented(dataKeyA, { ...row, module_id: 'slack' })).toThrow();
    // No data key appears in the gateway's log.
    const log = gw.logger.lines.join('\n');
    for (const bytes of [dataKeyA, unwrapAsDocumented(master, keyB)]) {
      expect(log).not.toContain(bytes.toString('base64'));
      expect(log).not.toContain(bytes.toString('hex'));
    }
  });

  it("an org's first credentials, set at once, agree on one data key", async () => {
    const gw = await gateway({ seed: false });
    const mods = Array.from({ length: 8 }, (_, i) => `m${i}`);
    for (const m of mods) ok(await install(gw, gw.keys.a, { id: m }));
    await Promise.all(mods.map(async (m) => ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m, s: { token: `t-${m}` } }))));
    const keys = await rawRows<{ key_id: string }>(gw, 'SELECT key_id FROM org_keys WHERE org_id = ?', [ORG_A]);
    expect(keys).toHaveLength(1);
    const used = new Set((await allCredentials(gw)).map((c) => c.key_id));
    expect([...used]).toEqual([keys[0]!.key_id]);
    for (const m of mods) expect(ok(await gw.gql(gw.keys.a, REVEAL, { m })).credentialSecret).toEqual({ token: `t-${m}` });
  });

  it('two stores racing to make one org its data key agree on the row that won', async () => {
    const gw = await gateway({ seed: false });
    const second = await gateway(gw.postgres ? { database: gw.postgres, seed: false } : { seed: false });
    // On SQLite a second connection to the same file (as a second process would hold).
    const stores: Store[] = gw.postgres
      ? [gw.opened.store, second.opened.store]
      : [gw.opened.store, (await import('../src/store/sqlite/store.ts')).createSqliteStore(
          (await import('../src/store/sqlite/connection.ts')).openDatabase(gw.config.database),
          gw.config.database,
        )];
    try {
      const made = await Promise.all(
        Array.from({ length: 6 }, (_, i) => new OrgKeyring(gw.opened.secretBox).forSealing(stores[i % 2]!.forOrg(ORG_B))),
      );
      const ids = new Set(made.map((k) => k?.id));
      expect(ids.size).toBe(1);
      expect((await orgKeyOf(gw, ORG_B))?.key_id).toBe([...ids][0]);
      // An org that does not exist gets none.
      expect(await new OrgKeyring(gw.opened.secretBox).forSealing(stores[0]!.forOrg('no-such-org'))).toBeUndefined();
      expect(await orgKeyOf(gw, 'no-such-org')).toBeUndefined();
    } finally {
      if (!gw.postgres) await stores[1]!.close();
    }
  });

  it('master-key rotation re-wraps one row per org, leaves every credential as it was, and gateways keep reading', async () => {
    const OLD = randomBytes(32);
    const NEW = randomBytes(32);
    const gw = await gateway({ env: { TENANTGATE_MASTER_KEY: OLD.toString('base64') } });
    for (const m of ['m1', 'm2', 'm3']) {
      ok(await install(gw, gw.keys.a, { id: m }));
      ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m, s: { token: `a-${m}` } }));
    }
    const before = await allCredentials(gw);
    expect(before.length).toBe(5);
    expect(before.every((c) => c.key_id.startsWith('dk_'))).toBe(true);

    // A gateway holding both keys, on the same store (PostgreSQL: a second replica; SQLite: the same files).
    const rotating = await gateway({
      ...(gw.postgres ? { database: gw.postgres } : {}),
      env: {
        TENANTGATE_MASTER_KEY: NEW.toString('base64'),
        TENANTGATE_MASTER_KEY_PREVIOUS: OLD.toString('base64'),
        ...(gw.postgres ? {} : { TENANTGATE_DATA_DIR: gw.dir }),
      },
      seed: false,
    });
    const keyA = await rotating.key(ORG_A, ['credentials:reveal']);
    const keyB = await rotating.key(ORG_B, ['credentials:reveal']);
    // Count the re-wraps, and read through the gateway between them.
    const store = rotating.opened.store;
    let rewraps = 0;
    const reads: unknown[] = [];
    const counting: Store = {
      ...store,
      system: {
        ...store.system,
        orgKeys: {
          ...store.system.orgKeys,
          rewrap: async (row, iv) => {
            rewraps++;
            reads.push(ok(await rotating.gql(keyA, REVEAL, { m: 'm2' })).credentialSecret);
            reads.push(ok(await rotating.gql(keyB, REVEAL, { m: 'github' })).credentialSecret);
            return store.system.orgKeys.rewrap(row, iv);
          },
        },
      },
    };
    const result = await rekeyCredentials(counting, rotating.opened.secretBox, { logger: captureLogger() });
    expect(result).toEqual({ rewrapped: 2, moved: 0 });
    expect(rewraps).toBe(2);
    expect(reads).toEqual([{ token: 'a-m2' }, { token: 'secret-token-of-org-b' }, { token: 'a-m2' }, { token: 'secret-token-of-org-b' }]);
    // Every credential byte for byte as it was; both org keys under the new master key, same data keys.
    expect(await allCredentials(gw)).toEqual(before);
    const keys = await rawRows<RawOrgKey>(gw, 'SELECT org_id, key_id, wrapped, iv, tag, master_key_id FROM org_keys ORDER BY org_id');
    expect(keys.map((k) => [k.org_id, k.master_key_id])).toEqual([[ORG_A, masterKeyId(NEW)], [ORG_B, masterKeyId(NEW)]]);
    expect(JSON.parse(openAsDocumented(unwrapAsDocumented(NEW, keys[0]!), before.find((c) => c.module_id === 'm3')!))).toEqual({ token: 'a-m3' });
    expect(() => unwrapAsDocumented(OLD, keys[0]!)).toThrow();
    // A second run has nothing to do.
    expect(await rekeyCredentials(store, rotating.opened.secretBox, { logger: captureLogger() })).toEqual({ rewrapped: 0, moved: 0 });

    // The new key alone now opens the store; the old key alone is refused at start.
    const after = await gateway({
      ...(gw.postgres ? { database: gw.postgres } : {}),
      env: { TENANTGATE_MASTER_KEY: NEW.toString('base64'), ...(gw.postgres ? {} : { TENANTGATE_DATA_DIR: gw.dir }) },
      seed: false,
    });
    expect(ok(await after.gql(await after.key(ORG_A, ['credentials:reveal']), REVEAL, { m: 'm1' })).credentialSecret).toEqual({ token: 'a-m1' });
    await expect(
      createTestGateway({
        ...(gw.postgres ? { database: gw.postgres } : {}),
        env: { TENANTGATE_MASTER_KEY: OLD.toString('base64'), ...(gw.postgres ? {} : { TENANTGATE_DATA_DIR: gw.dir }) },
        seed: false,
      }),
    ).rejects.toThrow(new RegExp(`^wrong master key: credentials are sealed with ${masterKeyId(NEW)} but the configured key is ${masterKeyId(OLD)}`));
  });

  it('credentials sealed directly under the master key move to their data key on start, once, keeping their values', async () => {
    const gw = await gateway({ seed: false });
    const box = gw.opened.secretBox;
    const at = new Date().toISOString();
    const legacy = new Map<string, string>();
    for (const [org, key] of [[ORG_A, gw.keys.a], [ORG_B, gw.keys.b]] as const) {
      for (const m of ['x1', 'x2', 'x3']) {
        ok(await install(gw, key, { id: m }));
        const value = JSON.stringify({ token: `legacy-${org}-${m}` });
        legacy.set(`${org}/${m}`, value);
        // As a store written before data keys holds them: sealed under the master key.
        const sealed = box.seal(org, m, value);
        expect(await gw.opened.store.forOrg(org).credentials.upsert({ moduleId: m, ...sealed, fields: ['token'], createdAt: at, updatedAt: at }, SYSTEM_ACTOR)).toBe(true);
      }
    }
    expect((await allCredentials(gw)).every((c) => isMasterKeyId(c.key_id))).toBe(true);
    // Readable as they are, before the move.
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'x2' })).credentialSecret).toEqual({ token: `legacy-${ORG_A}-x2` });

    const env = { TENANTGATE_MASTER_KEY: gw.config.masterKey!.toString('base64'), ...(gw.postgres ? {} : { TENANTGATE_DATA_DIR: gw.dir }) };
    const restarted = await gateway({ ...(gw.postgres ? { database: gw.postgres } : {}), env, seed: false });
    const rows = await allCredentials(gw);
    expect(rows).toHaveLength(6);
    for (const row of rows) {
      const orgKey = await orgKeyOf(gw, row.org_id);
      expect(row.key_id).toBe(orgKey?.key_id);
      expect(openAsDocumented(unwrapAsDocumented(gw.config.masterKey!, orgKey!), row)).toBe(legacy.get(`${row.org_id}/${row.module_id}`));
    }
    const revealer = await restarted.key(ORG_B, ['credentials:reveal']);
    expect(ok(await restarted.gql(revealer, REVEAL, { m: 'x3' })).credentialSecret).toEqual({ token: `legacy-${ORG_B}-x3` });

    // Idempotent: another start changes nothing.
    const again = await gateway({ ...(gw.postgres ? { database: gw.postgres } : {}), env, seed: false });
    expect(await allCredentials(gw)).toEqual(rows);
    expect(ok(await again.gql(await again.key(ORG_A, ['credentials:reveal']), REVEAL, { m: 'x1' })).credentialSecret).toEqual({ token: `legacy-${ORG_A}-x1` });
  });

  it("after an org's deletion, a ciphertext copied out before it opens with nothing the gateway keeps", async () => {
    const gw = await gateway();
    const SECRET = `shred-me-${randomBytes(8).toString('hex')}`;
    ok(await gw.gql(gw.keys.b, SET_CREDENTIAL, { m: 'slack', s: { token: SECRET } }));
    const copied = await credentialOf(gw, ORG_B, 'slack');
    const wrappedBefore = await orgKeyOf(gw, ORG_B);
    if (!copied || !wrappedBefore) throw new Error('no rows');
    // The gateway has the key cached (the reveal unwrapped it).
    const keyring = orgKeyring(gw.opened.store, gw.opened.secretBox);
    expect(ok(await gw.gql(gw.keys.b, REVEAL, { m: 'slack' })).credentialSecret).toEqual({ token: SECRET });
    const sealed = { ciphertext: copied.ciphertext, iv: copied.iv, tag: copied.tag, keyId: copied.key_id };
    expect(await keyring.open(gw.opened.store.forOrg(ORG_B), 'slack', sealed)).toBe(JSON.stringify({ token: SECRET }));

    expect(await gw.opened.store.system.orgs.delete(ORG_B, new Date().toISOString(), SYSTEM_ACTOR)).toBe(true);

    expect(await orgKeyOf(gw, ORG_B)).toBeUndefined();
    expect(await rawRows(gw, 'SELECT org_id FROM credentials WHERE org_id = ?', [ORG_B])).toEqual([]);
    // Not the gateway's keyring (its cached key went with the org), nor a fresh one, nor the master key alone.
    await expect(keyring.open(gw.opened.store.forOrg(ORG_B), 'slack', sealed)).rejects.toThrow(DecryptError);
    await expect(new OrgKeyring(gw.opened.secretBox).open(gw.opened.store.forOrg(ORG_B), 'slack', sealed)).rejects.toThrow(DecryptError);
    expect(() => gw.opened.secretBox.open(ORG_B, 'slack', sealed)).toThrow(DecryptError);
    expect(() => gw.opened.secretBox.open(ORG_B, 'slack', { ...sealed, keyId: gw.opened.secretBox.currentKeyId })).toThrow(DecryptError);
    expect(() => openAsDocumented(gw.config.masterKey!, copied)).toThrow();
    // Nor an org made again under the same id: it gets a data key of its own.
    await gw.opened.store.system.orgs.insert({ id: ORG_B, name: 'Org B again', createdAt: new Date().toISOString() }, SYSTEM_ACTOR);
    const again = await new OrgKeyring(gw.opened.secretBox).forSealing(gw.opened.store.forOrg(ORG_B));
    expect(again?.id).not.toBe(copied.key_id);
    await expect(keyring.open(gw.opened.store.forOrg(ORG_B), 'slack', sealed)).rejects.toThrow(DecryptError);
    // Only the row as it was (which a backup would hold) and the master key open it: what the README says.
    const restored = new SecretBox(gw.config.masterKey!).unwrapDataKey(ORG_B, wrappedBefore.key_id, {
      wrapped: wrappedBefore.wrapped, iv: wrappedBefore.iv, tag: wrappedBefore.tag, masterKeyId: wrappedBefore.master_key_id,
    });
    expect(openAsDocumented(restored, copied)).toBe(JSON.stringify({ token: SECRET }));
    // The other org is untouched.
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'github' })).credentialSecret).toEqual({ token: 'secret-token-of-org-a' });
  });

  it.runIf(process.env.TG_TEST_DIALECT === 'postgres')('PostgreSQL: the request role sees its own org key only, and the cross-org listings name orgs, never a wrapped key', async () => {
    const gw = await gateway();
    const client = new pg.Client({ connectionString: gw.postgres!.requestUrl });
    await client.connect();
    try {
      expect((await client.query('SELECT org_id FROM org_keys')).rows).toEqual([]); // no org set: the wall answers nothing
      await client.query('BEGIN');
      await client.query("SELECT set_config('app.org_id', $1, true)", [ORG_A]);
      expect((await client.query('SELECT org_id FROM org_keys')).rows).toEqual([{ org_id: ORG_A }]);
      await expect(client.query('UPDATE org_keys SET master_key_id = $1 WHERE org_id = $2', ['mk_x', ORG_B])).resolves.toMatchObject({ rowCount: 0 });
      await client.query('ROLLBACK');
      const listed = await client.query('SELECT * FROM public.tenantgate_org_keys_not_under_master($1, 10)', ['mk_none']);
      expect(listed.fields.map((f) => f.name)).toEqual(['org_id']);
      expect(listed.rows).toEqual([{ org_id: ORG_A }, { org_id: ORG_B }]);
      expect((await client.query('SELECT * FROM public.tenantgate_org_key_master_ids() AS k')).rows).toEqual([{ k: masterKeyId(gw.config.masterKey!) }]);
    } finally {
      await client.end();
    }
  });

  it('a wrong master key is refused at start when only org keys name the master key', async () => {
    const gw = await gateway();
    expect((await allCredentials(gw)).some((c) => isMasterKeyId(c.key_id))).toBe(false);
    await expect(
      createTestGateway({
        ...(gw.postgres ? { database: gw.postgres } : {}),
        env: { TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64'), ...(gw.postgres ? {} : { TENANTGATE_DATA_DIR: gw.dir }) },
        seed: false,
      }),
    ).rejects.toThrow(new RegExp(`^wrong master key: credentials are sealed with ${masterKeyId(gw.config.masterKey!)}`));
    // A tampered wrapping is refused at the reveal, masked, and the credential opens again once restored.
    const row = (await orgKeyOf(gw, ORG_A))!;
    const flipped = Buffer.from(row.wrapped);
    flipped[0]! ^= 1;
    orgKeyring(gw.opened.store, gw.opened.secretBox).forget(null);
    expect(await rawRun(gw, 'UPDATE org_keys SET wrapped = ? WHERE org_id = ?', [flipped, ORG_A])).toBe(1);
    const res = await gw.gql(gw.keys.a, REVEAL, { m: 'github' });
    expect(res.body.errors?.[0]?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    expect(res.text).not.toContain('secret-token-of-org-a');
    expect(await rawRun(gw, 'UPDATE org_keys SET wrapped = ? WHERE org_id = ?', [row.wrapped, ORG_A])).toBe(1);
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'github' })).credentialSecret).toEqual({ token: 'secret-token-of-org-a' });
  });
});
