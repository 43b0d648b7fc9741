/**
 * Deleting an org shreds it from the SQLite files (issue 15 item 5): after
 * store.system.orgs.delete, no byte of the main file, its -wal or its -shm (free pages included:
 * secure_delete zeroes them, and the deletion's checkpoint carries the zeroes into the main file
 * and empties the -wal) holds the org's credential plaintext, its ciphertext, its wrapped data
 * key, the data key itself, or its rows. The same scan before the deletion finds every one of
 * them in the files (the control: the scan can fail). SQLite only; PostgreSQL's side (nothing
 * the gateway keeps opens a ciphertext copied out before) is in test/data-keys.test.ts.
 */
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { SYSTEM_ACTOR } from '../src/store/types.ts';
import { install, ok, REVEAL, SET_CREDENTIAL } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, type TestGateway } from './helpers/gateway.ts';

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

/** Every live file of the store, whole: the database, -wal and -shm (those that exist). */
function liveFiles(database: string): Array<{ name: string; bytes: Buffer }> {
  return ['', '-wal', '-shm']
    .map((suffix) => `${database}${suffix}`)
    .filter((file) => fs.existsSync(file))
    .map((file) => ({ name: file.slice(database.length) || 'main', bytes: fs.readFileSync(file) }));
}

/** Which of the needles (by name) occur in which file. */
function find(database: string, needles: Record<string, Buffer>): string[] {
  const found: string[] = [];
  for (const { name, bytes } of liveFiles(database)) {
    for (const [what, needle] of Object.entries(needles)) if (bytes.includes(needle)) found.push(`${what} in ${name}`);
  }
  return found.sort();
}

describe.skipIf(process.env.TG_TEST_DIALECT === 'postgres')('deleting an org shreds it from the SQLite files', () => {
  it('leaves none of its plaintext, ciphertext, wrapped key, data key or rows in the main file, -wal, -shm or free pages', async () => {
    gw = await createTestGateway({ dialect: 'sqlite' });
    const sqlite = gw.opened.sqlite;
    expect(sqlite.pragma('secure_delete', { simple: true })).toBe(1);
    const marker = `org-b-row-${randomBytes(6).toString('hex')}`;
    const secret = `plaintext-${randomBytes(12).toString('hex')}`;
    // Enough rows of org B that deleting them frees whole pages (the free-page case), with a recognisable module name.
    for (let i = 0; i < 40; i++) ok(await install(gw, gw.keys.b, { id: `bulk-${i}`, name: `${marker}-${i}`, description: 'x'.repeat(400) }));
    ok(await gw.gql(gw.keys.b, SET_CREDENTIAL, { m: 'slack', s: { token: secret } }));
    expect(ok(await gw.gql(gw.keys.b, REVEAL, { m: 'slack' })).credentialSecret).toEqual({ token: secret });

    const credential = sqlite.prepare('SELECT ciphertext, key_id FROM credentials WHERE org_id = ? AND module_id = ?').get(ORG_B, 'slack') as { ciphertext: Buffer; key_id: string };
    const orgKey = sqlite.prepare('SELECT key_id, wrapped, iv, tag, master_key_id FROM org_keys WHERE org_id = ?').get(ORG_B) as {
      key_id: string; wrapped: Buffer; iv: Buffer; tag: Buffer; master_key_id: string;
    };
    const dataKey = gw.opened.secretBox.unwrapDataKey(ORG_B, orgKey.key_id, { wrapped: orgKey.wrapped, iv: orgKey.iv, tag: orgKey.tag, masterKeyId: orgKey.master_key_id });
    const needles = {
      plaintext: Buffer.from(secret),
      ciphertext: credential.ciphertext,
      'wrapped key': orgKey.wrapped,
      'data key': dataKey,
      'module rows': Buffer.from(marker),
    };

    // The control: before the deletion the org's rows, ciphertext and wrapped key are in the files
    // (the -wal now, the main file after a checkpoint); the plaintext and data key never are.
    const walBefore = find(gw.config.database, needles);
    expect(walBefore).toEqual(expect.arrayContaining(['ciphertext in -wal', 'module rows in -wal', 'wrapped key in -wal']));
    sqlite.pragma('wal_checkpoint(TRUNCATE)');
    expect(find(gw.config.database, needles)).toEqual(['ciphertext in main', 'module rows in main', 'wrapped key in main']);
    // A later write of the org leaves the old ciphertext behind in the WAL too, until shredded.
    ok(await gw.gql(gw.keys.b, SET_CREDENTIAL, { m: 'slack', s: { token: `${secret}-2` } }));

    expect(await gw.opened.store.system.orgs.delete(ORG_B, new Date().toISOString(), SYSTEM_ACTOR)).toBe(true);

    expect(find(gw.config.database, { ...needles, 'second plaintext': Buffer.from(`${secret}-2`) })).toEqual([]);
    // The deletion freed pages (they are on the freelist, zeroed: the scan above read them) and emptied the -wal.
    expect(Number(sqlite.pragma('freelist_count', { simple: true }))).toBeGreaterThan(0);
    expect(fs.existsSync(`${gw.config.database}-wal`) ? fs.statSync(`${gw.config.database}-wal`).size : 0).toBe(0);
    // The other org is untouched.
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'github' })).credentialSecret).toEqual({ token: `secret-token-of-${ORG_A}` });
    expect(sqlite.prepare('SELECT count(*) FROM org_keys WHERE org_id = ?').pluck().get(ORG_B)).toBe(0);
  });

  it('without secure_delete the same deletion would leave them in the file (why the store turns it on)', async () => {
    gw = await createTestGateway({ dialect: 'sqlite' });
    const sqlite = gw.opened.sqlite;
    const marker = `org-b-row-${randomBytes(6).toString('hex')}`;
    for (let i = 0; i < 40; i++) ok(await install(gw, gw.keys.b, { id: `bulk-${i}`, name: `${marker}-${i}`, description: 'x'.repeat(400) }));
    ok(await gw.gql(gw.keys.b, SET_CREDENTIAL, { m: 'slack', s: { token: 'whatever' } }));
    const ciphertext = sqlite.prepare('SELECT ciphertext FROM credentials WHERE org_id = ? AND module_id = ?').pluck().get(ORG_B, 'slack') as Buffer;
    const wrapped = sqlite.prepare('SELECT wrapped FROM org_keys WHERE org_id = ?').pluck().get(ORG_B) as Buffer;
    sqlite.pragma('secure_delete = OFF');
    expect(await gw.opened.store.system.orgs.delete(ORG_B, new Date().toISOString(), SYSTEM_ACTOR)).toBe(true);
    const found = find(gw.config.database, { ciphertext, 'wrapped key': wrapped, 'module rows': Buffer.from(marker) });
    expect(found.length, 'with secure_delete off, deleted content stays in the file').toBeGreaterThan(0);
  });
});
