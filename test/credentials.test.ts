import { execFile, spawn } from 'node:child_process';
import { createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { isObjectType } from 'graphql';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { orgKeyring } from '../src/crypto/data-keys.ts';
import { masterKeyId } from '../src/crypto/secret-box.ts';
import { schema } from '../src/graphql/schema.ts';
import { captureLogger } from '../src/logger.ts';
import { rekeyCredentials } from '../src/maintenance/rekey.ts';
import { openStore } from '../src/store/open.ts';
import type { Store } from '../src/store/types.ts';
import { failure, install, ok, REVEAL, SET_CREDENTIAL, sleep } from './helpers/api.ts';
import { rawGet, rawRun } from './helpers/raw.ts';
import { createTestGateway, DEFAULT_DIALECT, ORG_A, ORG_B, TENANT_SCOPES, type GqlResponse, type TestGateway } from './helpers/gateway.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');

interface RawCredential {
  org_id: string;
  module_id: string;
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  key_id: string;
  fields: string;
  created_at: string;
  updated_at: string;
}

/** The stored row; `fields` as SQLite stores it (JSON text; PostgreSQL's jsonb is read as text too). */
function raw(gw: TestGateway, orgId: string, moduleId: string): Promise<RawCredential | undefined> {
  const fields = gw.postgres ? 'fields::text AS fields' : 'fields';
  return rawGet<RawCredential>(
    gw,
    `SELECT org_id, module_id, ciphertext, iv, tag, key_id, ${fields}, created_at, updated_at FROM credentials WHERE org_id = ? AND module_id = ?`,
    [orgId, moduleId],
  );
}

const masterKeyOf = (gw: TestGateway): Buffer => {
  if (!gw.config.masterKey) throw new Error('test gateways configure TENANTGATE_MASTER_KEY');
  return gw.config.masterKey;
};

/**
 * The org's data key (issue 15), unwrapped from its org_keys row with the master key: AES-256-GCM,
 * additional data ["tenantgate data key", org id, data key id], written independently of src/crypto.
 */
async function dataKeyOf(gw: TestGateway, orgId: string): Promise<Buffer> {
  const row = await rawGet<{ key_id: string; wrapped: Buffer; iv: Buffer; tag: Buffer }>(gw, 'SELECT key_id, wrapped, iv, tag FROM org_keys WHERE org_id = ?', [orgId]);
  if (!row) throw new Error(`org ${orgId} has no data key`);
  const decipher = createDecipheriv('aes-256-gcm', masterKeyOf(gw), row.iv);
  decipher.setAAD(Buffer.from(JSON.stringify(['tenantgate data key', orgId, row.key_id]), 'utf8'));
  decipher.setAuthTag(row.tag);
  return Buffer.concat([decipher.update(row.wrapped), decipher.final()]);
}

/** AES-256-GCM as DESIGN.md documents it, written independently of src/crypto; `key` is the org's data key. */
function decryptAsDocumented(key: Buffer, row: RawCredential, orgId = row.org_id, moduleId = row.module_id): string {
  const decipher = createDecipheriv('aes-256-gcm', key, row.iv);
  decipher.setAAD(Buffer.from(JSON.stringify([orgId, moduleId, row.key_id]), 'utf8'));
  decipher.setAuthTag(row.tag);
  return Buffer.concat([decipher.update(row.ciphertext), decipher.final()]).toString('utf8');
}

describe('credentials over GraphQL', () => {
  let gw: TestGateway;
  beforeEach(async () => {
    gw = await createTestGateway();
  });
  afterEach(async () => {
    await gw.close();
  });

  it('stores a JSON object of string values, lists names and times only, and reveals values only with credentials:reveal', async () => {
    const set = ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { webhook: 'https://hooks.example/x', botToken: 'xoxb-1' } }));
    expect(set.setCredential).toMatchObject({ moduleId: 'slack', fields: ['botToken', 'webhook'] });
    expect(set.setCredential.createdAt).toBe(set.setCredential.updatedAt);

    const listed = ok(await gw.gql(gw.keys.a, '{ credentials { moduleId fields createdAt updatedAt } }')).credentials;
    expect(listed.map((c: { moduleId: string; fields: string[] }) => [c.moduleId, c.fields])).toEqual([
      ['github', ['token']],
      ['slack', ['botToken', 'webhook']],
    ]);
    expect(ok(await gw.gql(gw.keys.a, '{ hasCredential(moduleId: "slack") }')).hasCredential).toBe(true);
    expect(ok(await gw.gql(gw.keys.a, '{ hasCredential(moduleId: "only-org-a") }')).hasCredential).toBe(false);
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'slack' })).credentialSecret).toEqual({ webhook: 'https://hooks.example/x', botToken: 'xoxb-1' });
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'only-org-a' })).credentialSecret).toBeNull();
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'not-installed' })).credentialSecret).toBeNull();

    // No field of the Credential type can carry a value.
    const type = schema.getType('Credential');
    expect(isObjectType(type) && Object.keys(type.getFields()).sort()).toEqual(['createdAt', 'fields', 'moduleId', 'updatedAt']);

    // Without credentials:reveal the values stay hidden; metadata is still readable.
    const writer = await gw.key(ORG_A, ['modules:read', 'credentials:write']);
    expect(failure(await gw.gql(writer, REVEAL, { m: 'slack' }), 'FORBIDDEN').message).toBe(
      'Query.credentialSecret needs the credentials:reveal scope, which this API key lacks',
    );
    expect(ok(await gw.gql(writer, '{ credentials { moduleId } }')).credentials).toHaveLength(2);
    const reader = await gw.key(ORG_A, ['modules:read']);
    expect(failure(await gw.gql(reader, SET_CREDENTIAL, { m: 'slack', s: { x: 'y' } }), 'FORBIDDEN').message).toContain('credentials:write');
    expect(failure(await gw.gql(reader, 'mutation { deleteCredential(moduleId: "slack") }'), 'FORBIDDEN').message).toContain('credentials:write');
  });

  it('upserts: a second write replaces the values and fields, keeps createdAt and advances updatedAt', async () => {
    const first = ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { a: '1', b: '2' } })).setCredential;
    await sleep(5);
    const second = ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { c: '3' } })).setCredential;
    expect(second.fields).toEqual(['c']);
    expect(second.createdAt).toBe(first.createdAt);
    expect(second.updatedAt > first.updatedAt).toBe(true);
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'slack' })).credentialSecret).toEqual({ c: '3' });
    expect(await rawGet(gw, 'SELECT CAST(count(*) AS INTEGER) AS n FROM credentials WHERE org_id = ?', [ORG_A])).toEqual({ n: 2 });
  });

  it('needs the module to exist in the caller\'s org', async () => {
    expect(failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'nope', s: { a: 'b' } }), 'NOT_FOUND').message).toBe('Module "nope" was not found');
    expect(failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'only-org-b', s: { a: 'b' } }), 'NOT_FOUND').message).toBe(
      'Module "only-org-b" was not found',
    );
    expect(await raw(gw, ORG_A, 'only-org-b')).toBeUndefined();
  });

  it('deletes: true when there was one, false after', async () => {
    expect(ok(await gw.gql(gw.keys.a, 'mutation { deleteCredential(moduleId: "github") }')).deleteCredential).toBe(true);
    expect(ok(await gw.gql(gw.keys.a, 'mutation { deleteCredential(moduleId: "github") }')).deleteCredential).toBe(false);
    expect(ok(await gw.gql(gw.keys.a, 'mutation { deleteCredential(moduleId: "nope") }')).deleteCredential).toBe(false);
    expect(ok(await gw.gql(gw.keys.a, '{ hasCredential(moduleId: "github") }')).hasCredential).toBe(false);
    expect(await raw(gw, ORG_A, 'github')).toBeUndefined();
    expect(await raw(gw, ORG_B, 'github')).toBeDefined();
    // The module stays.
    expect(ok(await gw.gql(gw.keys.a, '{ module(id: "github") { id hasCredential } }')).module).toEqual({ id: 'github', hasCredential: false });
  });

  describe('limits', () => {
    const fields = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${String(i).padStart(2, '0')}`, `v${i}`]));

    it('allows 64 fields and refuses 65, saying so', async () => {
      expect(ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: fields(64) })).setCredential.fields).toHaveLength(64);
      const error = failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'github', s: fields(65) }), 'BAD_USER_INPUT');
      expect(error).toEqual({ field: 'secret', message: 'secret has 65 fields; at most 64 are allowed' });
    });

    it('allows a value of 16 KiB and refuses one byte more, counting UTF-8 bytes', async () => {
      const exact = `${'\u00e9'.repeat(8191)}ab`; // 8191 * 2 + 2 = 16384 bytes
      expect(Buffer.byteLength(exact)).toBe(16384);
      ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { cert: exact } }));
      expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'slack' })).credentialSecret).toEqual({ cert: exact });
      const error = failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { ok: 'x', cert: `${exact}c` } }), 'BAD_USER_INPUT');
      expect(error).toEqual({ field: 'secret.cert', message: 'secret field "cert" is 16385 bytes; each value may be at most 16384 bytes (16 KiB)' });
    });

    it.each([
      ['a number', 42],
      ['a boolean', true],
      ['null', null],
      ['an object', { nested: 'x' }],
      ['an array', ['x']],
    ])('refuses %s as a value, naming the field', async (kind, value) => {
      const error = failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { good: 'x', bad: value } }), 'BAD_USER_INPUT');
      expect(error).toEqual({ field: 'secret.bad', message: `secret field "bad" must be a string, not ${kind}` });
    });

    it('refuses an empty secret, an empty field name, and a secret that is not an object', async () => {
      expect(failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: {} }), 'BAD_USER_INPUT').message).toBe('secret must have at least one field');
      expect(failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { '': 'x' } }), 'BAD_USER_INPUT').message).toBe(
        'secret field names must not be empty',
      );
      expect(failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { ['n'.repeat(129)]: 'x' } }), 'BAD_USER_INPUT').message).toBe(
        'secret field names must be at most 128 characters',
      );
      expect(failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: ['x'] }), 'BAD_USER_INPUT').message).toContain(
        'expected a JSON object, got an array',
      );
    });

    it('leaves the stored credential as it was when a write is refused', async () => {
      const before = await raw(gw, ORG_A, 'github');
      failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'github', s: { token: 1 } }), 'BAD_USER_INPUT');
      failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'github', s: fields(65) }), 'BAD_USER_INPUT');
      expect(await raw(gw, ORG_A, 'github')).toEqual(before);
      expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'github' })).credentialSecret).toEqual({ token: 'secret-token-of-org-a' });
    });
  });
});

describe('encryption at rest', () => {
  let gw: TestGateway;
  beforeEach(async () => {
    gw = await createTestGateway();
  });
  afterEach(async () => {
    await gw.close();
  });

  it('stores AES-256-GCM ciphertext with a 12-byte IV, a 16-byte tag, the key id, and AAD (org, module, key id)', async () => {
    const secret = { token: 'ghp_plaintext_value', user: 'octo' };
    ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: secret }));
    const row = await raw(gw, ORG_A, 'slack');
    if (!row) throw new Error('no row');
    expect(row.iv).toHaveLength(12);
    expect(row.tag).toHaveLength(16);
    // Sealed under the org's data key (issue 15), named as its org_keys row names it.
    expect(row.key_id).toMatch(/^dk_[0-9a-f]{16}$/);
    expect(row.key_id).toBe((await rawGet<{ key_id: string }>(gw, 'SELECT key_id FROM org_keys WHERE org_id = ?', [ORG_A]))?.key_id);
    expect(JSON.parse(row.fields)).toEqual(['token', 'user']);
    expect(row.ciphertext.includes(Buffer.from('ghp_plaintext_value'))).toBe(false);
    // An independent decryption with the documented construction yields the secret...
    const dataKey = await dataKeyOf(gw, ORG_A);
    expect(JSON.parse(decryptAsDocumented(dataKey, row))).toEqual(secret);
    // ...and only with the documented AAD, and only under the org's data key (not the master key, not another org's).
    expect(() => decryptAsDocumented(dataKey, row, ORG_B)).toThrow();
    expect(() => decryptAsDocumented(dataKey, row, ORG_A, 'github')).toThrow();
    expect(() => decryptAsDocumented(masterKeyOf(gw), row)).toThrow();
    const otherOrgKey = await dataKeyOf(gw, ORG_B);
    expect(() => decryptAsDocumented(otherOrgKey, row)).toThrow();
  });

  it('uses a fresh IV on every write, even of the same value', async () => {
    const ivs = new Set<string>();
    const ciphertexts = new Set<string>();
    for (let i = 0; i < 8; i++) {
      ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { token: 'same' } }));
      const row = await raw(gw, ORG_A, 'slack');
      if (!row) throw new Error('no row');
      ivs.add(row.iv.toString('hex'));
      ciphertexts.add(row.ciphertext.toString('hex'));
    }
    // The same value in another org and another module: different IVs as well.
    ok(await gw.gql(gw.keys.b, SET_CREDENTIAL, { m: 'slack', s: { token: 'same' } }));
    ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'only-org-a', s: { token: 'same' } }));
    for (const [org, mod] of [[ORG_B, 'slack'], [ORG_A, 'only-org-a']] as const) {
      const row = await raw(gw, org, mod);
      if (!row) throw new Error('no row');
      ivs.add(row.iv.toString('hex'));
      ciphertexts.add(row.ciphertext.toString('hex'));
    }
    expect(ivs.size).toBe(10);
    expect(ciphertexts.size).toBe(10);
  });

  async function copySealed(from: RawCredential, toOrg: string, toModule: string): Promise<void> {
    const changed = await rawRun(gw, 'UPDATE credentials SET ciphertext = ?, iv = ?, tag = ?, key_id = ?, fields = ? WHERE org_id = ? AND module_id = ?', [
      from.ciphertext, from.iv, from.tag, from.key_id, from.fields, toOrg, toModule,
    ]);
    expect(changed).toBe(1);
  }

  function expectMaskedFailure(res: GqlResponse, plaintext: string): void {
    expect(failure(res, 'INTERNAL_SERVER_ERROR').message).toBe('Unexpected error.');
    expect(res.body.data).toEqual({ credentialSecret: null });
    expect(res.text).not.toContain(plaintext);
    expect(res.text).not.toMatch(/decrypt|authenticat|DecryptError|aes|gcm/i);
  }

  it("does not decrypt a ciphertext copied into another org's row", async () => {
    const fromA = await raw(gw, ORG_A, 'github');
    if (!fromA) throw new Error('no row');
    await copySealed(fromA, ORG_B, 'github');
    const res = await gw.gql(gw.keys.b, REVEAL, { m: 'github' });
    expectMaskedFailure(res, 'secret-token-of-org-a');
    expect(gw.logger.lines.join('\n')).not.toContain('secret-token-of-org-a');
    // Org A's own credential still opens.
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'github' })).credentialSecret).toEqual({ token: 'secret-token-of-org-a' });
  });

  it("does not decrypt a ciphertext copied into another module's row of the same org", async () => {
    ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { token: 'slack-token' } }));
    const fromGithub = await raw(gw, ORG_A, 'github');
    if (!fromGithub) throw new Error('no row');
    await copySealed(fromGithub, ORG_A, 'slack');
    expectMaskedFailure(await gw.gql(gw.keys.a, REVEAL, { m: 'slack' }), 'secret-token-of-org-a');
  });

  it('does not decrypt a tampered ciphertext, tag or key id', async () => {
    const row = await raw(gw, ORG_A, 'github');
    if (!row) throw new Error('no row');
    const flip = (b: Buffer) => {
      const c = Buffer.from(b);
      c[0] = (c[0] ?? 0) ^ 1;
      return c;
    };
    const restore = {
      run: (...values: unknown[]) => rawRun(gw, 'UPDATE credentials SET ciphertext = ?, tag = ?, key_id = ? WHERE org_id = ? AND module_id = ?', values),
    };
    for (const [ciphertext, tag] of [[flip(row.ciphertext), row.tag], [row.ciphertext, flip(row.tag)]] as const) {
      await restore.run(ciphertext, tag, row.key_id, ORG_A, 'github');
      expectMaskedFailure(await gw.gql(gw.keys.a, REVEAL, { m: 'github' }), 'secret-token-of-org-a');
    }
    await restore.run(row.ciphertext, row.tag, 'mk_0000000000000000', ORG_A, 'github');
    expectMaskedFailure(await gw.gql(gw.keys.a, REVEAL, { m: 'github' }), 'secret-token-of-org-a');
    await restore.run(row.ciphertext, row.tag, row.key_id, ORG_A, 'github');
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'github' })).credentialSecret).toEqual({ token: 'secret-token-of-org-a' });
  });
});

// The master key's life in a data directory and the rekey runs below open SQLite stores of their
// own; on PostgreSQL a start never generates a key (test/postgres-store.test.ts proves it).
describe.skipIf(DEFAULT_DIALECT === 'postgres')('the master key', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-key-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A store in `dir` holding one credential, sealed under `key` (or the generated file key). */
  async function storeWithCredential(dir: string, key?: Buffer): Promise<void> {
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, ...(key ? { TENANTGATE_MASTER_KEY: key.toString('base64') } : {}) });
    const opened = await openStore(config, captureLogger());
    const at = new Date().toISOString();
    await opened.store.forOrg('default').modules.insert({ moduleId: 'github', name: 'GitHub', version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at }, SYSTEM_ACTOR);
    const sealed = opened.secretBox.seal('default', 'github', JSON.stringify({ token: 'the-plaintext' }));
    await opened.store.forOrg('default').credentials.upsert({ moduleId: 'github', ...sealed, fields: ['token'], createdAt: at, updatedAt: at }, SYSTEM_ACTOR);
    await opened.store.close();
  }

  const open = (dir: string, env: Record<string, string> = {}) => openStore(loadConfig({ TENANTGATE_DATA_DIR: dir, ...env }), captureLogger());

  it('is generated into the data directory with mode 0600 on first start, and reused after', async () => {
    const dir = tempDir();
    const previousUmask = process.umask(0); // the mode must not depend on a strict umask
    let logger;
    try {
      logger = captureLogger();
      const opened = await openStore(loadConfig({ TENANTGATE_DATA_DIR: dir }), logger);
      await opened.store.close();
    } finally {
      process.umask(previousUmask);
    }
    const file = path.join(dir, 'master.key');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const content = fs.readFileSync(file, 'utf8');
    expect(content).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(Buffer.from(content.trim(), 'base64')).toHaveLength(32);
    expect(logger.lines.some((l) => l.includes('generated a new master key'))).toBe(true);
    expect(logger.lines.join('\n')).not.toContain(content.trim());
    expect(fs.readdirSync(dir).filter((f) => f.includes('master.key'))).toEqual(['master.key']); // no temporary left behind

    // The second start reuses it: what the first sealed, the second opens.
    await storeWithCredential(dir);
    const again = await open(dir);
    try {
      expect(again.secretBox.currentKeyId).toBe(masterKeyId(Buffer.from(content.trim(), 'base64')));
      const row = await again.store.forOrg('default').credentials.get('github');
      if (!row) throw new Error('no row');
      // Moved to the org's data key at this start (it was sealed under the master key).
      expect(row.keyId).toMatch(/^dk_/);
      expect(JSON.parse(await orgKeyring(again.store, again.secretBox).open(again.store.forOrg('default'), 'github', row))).toEqual({ token: 'the-plaintext' });
    } finally {
      await again.store.close();
    }
    expect(fs.readFileSync(file, 'utf8')).toBe(content);
  });

  it('warns when the key file is readable by others', async () => {
    const dir = tempDir();
    await (await openStore(loadConfig({ TENANTGATE_DATA_DIR: dir }), captureLogger())).store.close();
    fs.chmodSync(path.join(dir, 'master.key'), 0o644);
    const logger = captureLogger();
    await (await openStore(loadConfig({ TENANTGATE_DATA_DIR: dir }), logger)).store.close();
    expect(logger.lines.some((l) => l.includes('"level":"warn"') && l.includes('chmod 600'))).toBe(true);
  });

  it('a wrong TENANTGATE_MASTER_KEY stops openStore with a clear message naming the variables, and no key material', async () => {
    const dir = tempDir();
    const right = randomBytes(32);
    const wrong = randomBytes(32);
    await storeWithCredential(dir, right);
    let error: unknown;
    try {
      await open(dir, { TENANTGATE_MASTER_KEY: wrong.toString('base64') });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/^wrong master key: credentials are sealed with mk_[0-9a-f]{16} but the configured key is mk_[0-9a-f]{16}/);
    expect(message).toContain(masterKeyId(right));
    expect(message).toContain('TENANTGATE_MASTER_KEY');
    for (const key of [right, wrong]) {
      expect(message).not.toContain(key.toString('base64'));
      expect(message).not.toContain(key.toString('hex'));
    }
    // The right key opens it, and the refused attempt changed nothing.
    const opened = await open(dir, { TENANTGATE_MASTER_KEY: right.toString('base64') });
    try {
      const row = await opened.store.forOrg('default').credentials.get('github');
      if (!row) throw new Error('no row');
      expect(JSON.parse(await orgKeyring(opened.store, opened.secretBox).open(opened.store.forOrg('default'), 'github', row))).toEqual({ token: 'the-plaintext' });
    } finally {
      await opened.store.close();
    }
  });

  it('a wrong key in the data-directory file stops openStore too', async () => {
    const dir = tempDir();
    await storeWithCredential(dir); // generated key
    fs.writeFileSync(path.join(dir, 'master.key'), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    await expect(open(dir)).rejects.toThrow(/^wrong master key/);
  });

  it('a missing key stops openStore when the store holds credentials, and no new key is generated', async () => {
    const dir = tempDir();
    await storeWithCredential(dir, randomBytes(32));
    await expect(open(dir)).rejects.toThrow(
      new ConfigError(
        `no master key: the store holds encrypted credentials but ${path.join(dir, 'master.key')} is missing and TENANTGATE_MASTER_KEY is not set`,
      ),
    );
    expect(fs.existsSync(path.join(dir, 'master.key'))).toBe(false);
  });

  it.each(['short', 'A'.repeat(44), `${randomBytes(31).toString('base64')}`, `${randomBytes(33).toString('base64')}`])(
    'a malformed TENANTGATE_MASTER_KEY (%#) is refused without repeating it',
    (value) => {
      expect(() => loadConfig({ TENANTGATE_MASTER_KEY: value })).toThrow(ConfigError);
      try {
        loadConfig({ TENANTGATE_MASTER_KEY: value });
      } catch (error) {
        expect((error as Error).message).toBe(
          'TENANTGATE_MASTER_KEY must be 32 bytes encoded as base64 (44 characters); generate one with: openssl rand -base64 32',
        );
      }
    },
  );

  it('a wrong key stops the gateway process itself, with the message on stderr', async () => {
    const dir = tempDir();
    await storeWithCredential(dir, randomBytes(32));
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: { ...cleanEnv(), TENANTGATE_DATA_DIR: dir, TENANTGATE_PORT: '0', TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^tenantgate: could not start: wrong master key: credentials are sealed with mk_/);
    expect(stdout).not.toContain('listening');
  });
});

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('TENANTGATE_')) delete env[name];
  return env;
}

// Since per-org data keys (issue 15), rotation re-wraps one org_keys row per org and leaves the
// credentials as they are; test/data-keys.test.ts holds the same on PostgreSQL.
describe.skipIf(DEFAULT_DIALECT === 'postgres')('rekeying credentials under a new master key', () => {
  const OLD = randomBytes(32);
  const NEW = randomBytes(32);
  const ORGS = [ORG_A, ORG_B];
  const MODULES = Array.from({ length: 20 }, (_, i) => `m${String(i).padStart(2, '0')}`);
  const secretOf = (org: string, mod: string) => ({ token: `token-${org}-${mod}`, extra: `x-${mod}` });
  let gw: TestGateway;
  let dir: string;

  beforeEach(async () => {
    gw = await createTestGateway({ env: { TENANTGATE_MASTER_KEY: OLD.toString('base64') } });
    dir = gw.dir;
    for (const [org, key] of [[ORG_A, gw.keys.a], [ORG_B, gw.keys.b]] as const) {
      for (const mod of MODULES) {
        ok(await install(gw, key, { id: mod }));
        ok(await gw.gql(key, SET_CREDENTIAL, { m: mod, s: secretOf(org, mod) }));
      }
    }
    // Stop this gateway (the old key only) and keep its files.
    await gw.app.close();
    await gw.opened.store.close();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A gateway on the same files, as a restart with `env` would give. */
  async function restart(env: Record<string, string>) {
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, ...env });
    const logger = captureLogger();
    const opened = await openStore(config, logger);
    const app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger });
    const gql = async (key: string, query: string, variables?: Record<string, unknown>): Promise<GqlResponse> => {
      const res = await app.yoga.fetch(
        'http://localhost/graphql',
        { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ query, variables }) },
        { req: { socket: { remoteAddress: '127.0.0.1' } } },
      );
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: JSON.parse(text), text };
    };
    return {
      opened,
      logger,
      gql,
      /** The master keys wrapping the org keys, with how many each wraps. */
      keyIds: () => opened.sqlite.prepare('SELECT master_key_id AS key_id, count(*) AS n FROM org_keys GROUP BY master_key_id ORDER BY 1').all() as { key_id: string; n: number }[],
      credentialRows: () => opened.sqlite.prepare('SELECT org_id, module_id, ciphertext, iv, tag, key_id FROM credentials ORDER BY 1, 2').all() as Array<{ org_id: string; module_id: string }>,
      async close() {
        await app.close();
        await opened.store.close();
      },
    };
  }

  const rotationEnv = { TENANTGATE_MASTER_KEY: NEW.toString('base64'), TENANTGATE_MASTER_KEY_PREVIOUS: OLD.toString('base64') };
  const keyFor = (org: string) => (org === ORG_A ? gw.keys.a : gw.keys.b);
  const total = ORGS.length; // one data key per org: what a rotation re-wraps

  it("re-wraps every org's data key, leaves the credentials as they were, while reads (and writes) through the gateway keep working, interleaved", async () => {
    const node = await restart(rotationEnv);
    try {
      expect(node.keyIds()).toEqual([{ key_id: masterKeyId(OLD), n: total }]);
      const credentialsBefore = node.credentialRows();
      expect(credentialsBefore).toHaveLength(ORGS.length * (MODULES.length + 1)); // + the seeded github credential
      // Each re-wrap waits a little first, so that requests run between the rotation's steps.
      const store = node.opened.store;
      const yielding: Store = {
        ...store,
        system: {
          ...store.system,
          orgKeys: {
            ...store.system.orgKeys,
            rewrap: async (row, iv) => {
              await sleep(50);
              return store.system.orgKeys.rewrap(row, iv);
            },
          },
        },
      };
      const expected = new Map<string, Record<string, string>>();
      for (const org of ORGS) for (const mod of MODULES) expected.set(`${org}/${mod}`, secretOf(org, mod));

      let done = false;
      const mixedStates = new Set<number>();
      let reads = 0;
      const reader = (async () => {
        let i = 0;
        while (!done) {
          const org = ORGS[i % 2] as string;
          const mod = MODULES[(i * 7) % MODULES.length] as string;
          i++;
          const underNew = node.keyIds().find((r) => r.key_id === masterKeyId(NEW))?.n ?? 0;
          if (underNew > 0 && underNew < total) mixedStates.add(underNew);
          const res = await node.gql(keyFor(org), REVEAL, { m: mod });
          expect(ok(res).credentialSecret).toEqual(expected.get(`${org}/${mod}`));
          reads++;
          // A request on this synchronous store completes in microtasks; yield so the rotation runs.
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const writer = (async () => {
        // Replaced during the rotation: the new values must survive it (the reseal is a compare-and-swap).
        for (const mod of ['m03', 'm11', 'm19']) {
          await new Promise((resolve) => setImmediate(resolve));
          const value = { token: `rotated-${mod}` };
          ok(await node.gql(gw.keys.a, SET_CREDENTIAL, { m: mod, s: value }));
          expected.set(`${ORG_A}/${mod}`, value);
        }
      })();
      const result = await rekeyCredentials(yielding, node.opened.secretBox, { logger: node.logger, batchSize: 7 }).finally(() => {
        done = true;
      });
      await Promise.all([reader, writer]);

      expect(reads).toBeGreaterThan(10);
      expect(mixedStates.size).toBe(1); // reads really ran in the middle of the rotation (one org's key re-wrapped, the other's not yet)
      expect(result).toEqual({ rewrapped: total, moved: 0 });
      expect(node.keyIds()).toEqual([{ key_id: masterKeyId(NEW), n: total }]);
      // No credential was touched but the three the writer replaced.
      const replaced = new Set(['m03', 'm11', 'm19']);
      const untouched = (rows: Array<{ org_id: string; module_id: string }>) => rows.filter((r) => !(r.org_id === ORG_A && replaced.has(r.module_id)));
      expect(untouched(node.credentialRows())).toEqual(untouched(credentialsBefore));
      for (const [id, value] of expected) {
        const [org, mod] = id.split('/') as [string, string];
        expect(ok(await node.gql(keyFor(org), REVEAL, { m: mod })).credentialSecret).toEqual(value);
      }
      expect(node.logger.lines.some((l) => l.includes('org data keys re-wrapped'))).toBe(true);
    } finally {
      await node.close();
    }

    // Afterwards the new key alone opens the store, and the old key alone is refused.
    const after = await restart({ TENANTGATE_MASTER_KEY: NEW.toString('base64') });
    try {
      expect(ok(await after.gql(gw.keys.b, REVEAL, { m: 'm07' })).credentialSecret).toEqual(secretOf(ORG_B, 'm07'));
      expect(ok(await after.gql(gw.keys.a, REVEAL, { m: 'github' })).credentialSecret).toEqual({ token: 'secret-token-of-org-a' });
    } finally {
      await after.close();
    }
    await expect(restart({ TENANTGATE_MASTER_KEY: OLD.toString('base64') })).rejects.toThrow(/^wrong master key/);
  });

  it("`npm run cli -- credentials rekey` re-wraps every org's data key while a gateway holding both keys keeps serving", async () => {
    const node = await restart(rotationEnv);
    try {
      const env = { ...cleanEnv(), TENANTGATE_DATA_DIR: dir, ...rotationEnv };
      const cli = run('npm', ['run', '--silent', 'cli', '--', 'credentials', 'rekey'], { cwd: ROOT, env });
      let settled = false;
      void cli.finally(() => {
        settled = true;
      });
      let reads = 0;
      do {
        const org = ORGS[reads % 2] as string;
        const mod = MODULES[reads % MODULES.length] as string;
        expect(ok(await node.gql(keyFor(org), REVEAL, { m: mod })).credentialSecret).toEqual(secretOf(org, mod));
        reads++;
        await sleep(2);
      } while (!settled);
      const { stdout } = await cli;
      expect(stdout).toBe(`re-wrapped ${total} org data key(s) under ${masterKeyId(NEW)}\n`);
      expect(node.keyIds()).toEqual([{ key_id: masterKeyId(NEW), n: total }]);
      for (const org of ORGS) {
        for (const mod of MODULES) expect(ok(await node.gql(keyFor(org), REVEAL, { m: mod })).credentialSecret).toEqual(secretOf(org, mod));
      }
      // A second run has nothing left to do.
      expect((await run('npm', ['run', '--silent', 'cli', '--', 'credentials', 'rekey'], { cwd: ROOT, env })).stdout).toBe(
        `re-wrapped 0 org data key(s) under ${masterKeyId(NEW)}\n`,
      );
    } finally {
      await node.close();
    }
  });

  it('refuses to run without the old key, and changes nothing', async () => {
    const env = { ...cleanEnv(), TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: NEW.toString('base64') };
    const error = await run('npm', ['run', '--silent', 'cli', '--', 'credentials', 'rekey'], { cwd: ROOT, env }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(error?.code).toBe(2);
    expect(error?.stderr).toMatch(/^tenantgate: wrong master key: credentials are sealed with mk_/);
    const node = await restart({ TENANTGATE_MASTER_KEY: OLD.toString('base64') });
    try {
      expect(node.keyIds()).toEqual([{ key_id: masterKeyId(OLD), n: total }]);
    } finally {
      await node.close();
    }
  });
});

describe('scopes for credentials', () => {
  it('a key with every tenant scope but reveal can write and list, never read values', async () => {
    const gw = await createTestGateway();
    try {
      const key = await gw.key(ORG_A, TENANT_SCOPES.filter((s) => s !== 'credentials:reveal'));
      ok(await gw.gql(key, SET_CREDENTIAL, { m: 'slack', s: { t: 'v' } }));
      const res = await gw.gql(key, '{ credentials { moduleId fields } module(id: "slack") { hasCredential } }');
      expect(ok(res)).toEqual({ credentials: [{ moduleId: 'github', fields: ['token'] }, { moduleId: 'slack', fields: ['t'] }], module: { hasCredential: true } });
      expect(failure(await gw.gql(key, REVEAL, { m: 'slack' }), 'FORBIDDEN').message).toContain('credentials:reveal');
    } finally {
      await gw.close();
    }
  });
});
