import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.ts';
import { generateKey, hashKey, displayPrefix } from '../src/auth/key-format.ts';
import { loadConfig } from '../src/config.ts';
import { SecretBox } from '../src/crypto/secret-box.ts';
import { captureLogger } from '../src/logger.ts';
import { StoreError } from '../src/store/errors.ts';
import { createWalSync, openDatabase, type WalSync } from '../src/store/sqlite/connection.ts';
import { migrateSqlite } from '../src/store/sqlite/migrate.ts';
import { createSqliteStore } from '../src/store/sqlite/store.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

/**
 * Group commit (src/store/sqlite/connection.ts createWalSync): the store's connection runs at
 * synchronous=NORMAL and every write is answered only after an fdatasync of the -wal file that
 * began after it committed; writes that commit while a sync is under way share the next one.
 */

/** A sync function whose calls wait until the test lets them finish (or fail). */
function heldSyncs() {
  const calls: Array<{ target: string; release: () => void; fail: (error: Error) => void }> = [];
  let requested: (() => void) | undefined;
  const sync = (target: string) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ target, release: resolve, fail: reject });
      requested?.();
    });
  /** Resolves once `n` syncs have been asked for. */
  const asked = (n: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (calls.length >= n) resolve();
      };
      requested = check;
      check();
    });
  return { calls, sync, asked };
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('createWalSync', () => {
  it('answers a write only after a sync that began after it, and lets writes that wait share one sync', async () => {
    const held = heldSyncs();
    const wal = createWalSync('/data/tenantgate.db', held.sync);
    const done: string[] = [];
    const first = wal.synced().then(() => done.push('first'));
    await held.asked(1);
    expect(held.calls[0]!.target).toBe('/data/tenantgate.db-wal');
    // Two more writes commit while the first sync is under way: it may not cover them.
    const second = wal.synced().then(() => done.push('second'));
    const third = wal.synced().then(() => done.push('third'));
    await turns();
    expect(held.calls).toHaveLength(1);
    held.calls[0]!.release();
    // The first sync of a store also syncs the folder (a new -wal file's entry).
    await held.asked(2);
    expect(held.calls[1]!.target).toBe('/data');
    expect(done).toEqual([]);
    held.calls[1]!.release();
    await first;
    expect(done).toEqual(['first']);
    // One sync, begun now, covers both waiting writes; the folder is not synced again.
    await held.asked(3);
    expect(held.calls[2]!.target).toBe('/data/tenantgate.db-wal');
    await turns();
    expect(done).toEqual(['first']);
    held.calls[2]!.release();
    await Promise.all([second, third]);
    expect(done).toEqual(['first', 'second', 'third']);
    expect(held.calls).toHaveLength(3);
    expect(wal.failure).toBeUndefined();
  });

  it('rejects the writes of a failed sync with an io StoreError, keeps the failure until a sync succeeds', async () => {
    const held = heldSyncs();
    const wal = createWalSync('/data/tenantgate.db', held.sync);
    const failed = wal.synced();
    await held.asked(1);
    held.calls[0]!.fail(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const error = await failed.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).kind).toBe('io');
    expect(wal.failure).toBe(error);
    const retried = wal.synced();
    await held.asked(2);
    held.calls[1]!.release();
    await held.asked(3);
    held.calls[2]!.release();
    await retried;
    expect(wal.failure).toBeUndefined();
  });

  it('syncs a real -wal file, and treats a missing one (checkpointed away at close) as nothing to sync', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-wal-'));
    try {
      const file = path.join(dir, 'x.db');
      const sqlite = openDatabase(file);
      sqlite.exec('CREATE TABLE t (v TEXT)');
      sqlite.prepare('INSERT INTO t VALUES (?)').run('a');
      expect(fs.existsSync(`${file}-wal`)).toBe(true);
      await createWalSync(file).synced();
      sqlite.close();
      expect(fs.existsSync(`${file}-wal`)).toBe(false);
      await createWalSync(file).synced();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the SQLite store with group commit', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  const open = (walSync?: WalSync) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-group-commit-'));
    dirs.push(dir);
    const file = path.join(dir, 'tenantgate.db');
    const secretBox = new SecretBox(randomBytes(32));
    const sqlite = openDatabase(file);
    migrateSqlite(sqlite, file, { secretBox: () => secretBox });
    const store = createSqliteStore(sqlite, file, walSync ? { walSync } : {});
    return { dir, file, sqlite, store, secretBox };
  };

  it('runs its connection at synchronous=NORMAL, and a write resolves once synced', async () => {
    const { sqlite, store } = open();
    expect(sqlite.pragma('synchronous', { simple: true })).toBe(1);
    expect(await store.system.orgs.insert({ id: 'org-x', name: 'X', createdAt: new Date().toISOString() }, SYSTEM_ACTOR)).toBe(true);
    expect((await store.forOrg('org-x').org())?.name).toBe('X');
    await store.close();
  });

  it('holds every kind of write until its sync, while reads already see it; a failed sync fails the write and /ready', async () => {
    const held = heldSyncs();
    const { store } = open(createWalSync('/unused/tenantgate.db', held.sync));
    const at = new Date().toISOString();
    let landed = false;
    const insert = store.system.orgs.insert({ id: 'org-x', name: 'X', createdAt: at }, SYSTEM_ACTOR).then((v) => {
      landed = true;
      return v;
    });
    await held.asked(1);
    await turns();
    expect(landed).toBe(false);
    // Visible on this connection before it is durable (the README says so).
    expect((await store.forOrg('org-x').org())?.name).toBe('X');
    held.calls[0]!.release();
    await held.asked(2);
    held.calls[1]!.release();
    expect(await insert).toBe(true);

    const org = store.forOrg('org-x');
    const module = {
      moduleId: 'm1',
      name: 'M',
      version: '1.0.0',
      description: null,
      config: '{}',
      enabled: true,
      installedAt: at,
      updatedAt: at,
    };
    const writes: Array<[string, () => Promise<unknown>]> = [
      ['modules.insert', () => org.modules.insert(module, SYSTEM_ACTOR)],
      ['modules.update', () => org.modules.update('m1', { enabled: false }, at, SYSTEM_ACTOR)],
      ['system.recordUsage', () => store.system.modules.recordUsage('org-x', 'm1', 2, at)],
      ['system.reportHealth', () => store.system.modules.reportHealth('org-x', 'm1', 'degraded', null, at)],
      [
        'credentials.upsert',
        () =>
          org.credentials.upsert({
            moduleId: 'm1',
            ciphertext: Buffer.from('c'),
            iv: Buffer.alloc(12),
            tag: Buffer.alloc(16),
            keyId: 'mk_test',
            fields: ['token'],
            createdAt: at,
            updatedAt: at,
          }, SYSTEM_ACTOR),
      ],
      ['credentials.delete', () => org.credentials.delete('m1', SYSTEM_ACTOR)],
      [
        'apiKeys.insert',
        () =>
          org.apiKeys.insert({
            id: 'k1',
            name: 'k',
            prefix: 'tgk_x',
            hash: 'ab'.repeat(32),
            scopes: ['modules:read'],
            createdAt: at,
            expiresAt: null,
            revokedAt: null,
            lastUsedAt: null,
            createdByKeyId: null,
          }, SYSTEM_ACTOR),
      ],
      ['apiKeys.revoke', () => org.apiKeys.revoke('k1', at, SYSTEM_ACTOR)],
      ['modules.delete', () => org.modules.delete('m1', SYSTEM_ACTOR)],
    ];
    for (const [name, write] of writes) {
      let resolved = false;
      const pending = write().then(() => {
        resolved = true;
      });
      const n = held.calls.length + 1;
      await held.asked(n);
      await turns();
      expect(resolved, `${name} resolved before its sync`).toBe(false);
      held.calls[n - 1]!.release();
      await pending;
    }

    // Key last-used times are best effort: not waited for.
    const before = held.calls.length;
    await store.auth.touchKeys([['k1', at]]);
    expect(held.calls.length).toBe(before);

    const failing = org.modules.insert({ ...module, moduleId: 'm2' }, SYSTEM_ACTOR);
    await held.asked(before + 1);
    held.calls[before]!.fail(Object.assign(new Error('EIO'), { code: 'EIO' }));
    const error = await failing.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).kind).toBe('io');
    expect(await store.check()).toEqual({ ok: false, reason: 'store cannot sync its writes to disk' });
    const next = org.modules.update('m2', { name: 'M2' }, at, SYSTEM_ACTOR);
    await held.asked(before + 2);
    held.calls[before + 1]!.release();
    await next;
    expect(await store.check()).toEqual({ ok: true });
  });

  it('over HTTP on the served listener: a mutation is answered only after its sync, a read beside it is not held', async () => {
    const held = heldSyncs();
    const { dir, file, store, secretBox } = open(createWalSync('/unused/tenantgate.db', held.sync));
    // Org and key straight into the store, their syncs let through as they come.
    const setup = (async () => {
      const at = new Date().toISOString();
      await store.system.orgs.insert({ id: 'org-x', name: 'X', createdAt: at }, SYSTEM_ACTOR);
    })();
    await held.asked(1);
    held.calls[0]!.release();
    await held.asked(2);
    held.calls[1]!.release();
    await setup;
    const secret = generateKey();
    const keyWrite = store.forOrg('org-x').apiKeys.insert({
      id: 'key-1',
      name: 'test',
      prefix: displayPrefix(secret),
      hash: hashKey(secret),
      scopes: ['modules:read', 'modules:write'],
      createdAt: new Date().toISOString(),
      expiresAt: null,
      revokedAt: null,
      lastUsedAt: null,
      createdByKeyId: null,
    }, SYSTEM_ACTOR);
    await held.asked(3);
    held.calls[2]!.release();
    await keyWrite;

    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_DATABASE: file, TENANTGATE_PRODUCTION: 'true' });
    const app = createApp({ store, secretBox, config, logger: captureLogger() });
    const server = http.createServer(app.listener);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
    const post = (query: string, variables?: Record<string, unknown>) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        body: JSON.stringify({ query, variables }),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as { data?: Record<string, unknown>; errors?: unknown } }));
    try {
      const order: string[] = [];
      const install = post('mutation($i: InstallModuleInput!) { installModule(input: $i) { id name } }', {
        i: { id: 'github', name: 'GitHub', version: '1.0.0' },
      }).then((res) => {
        order.push('install answered');
        return res;
      });
      await held.asked(4);
      // A read sent after the write is answered while the write's sync is held (nothing waits
      // on the event loop), and already sees the module.
      const read = await post('{ modules(first: 5) { edges { node { id } } totalCount } }');
      order.push('read answered');
      expect(read.body).toEqual({ data: { modules: { edges: [{ node: { id: 'github' } }], totalCount: 1 } } });
      order.push('synced');
      held.calls[3]!.release();
      const answered = await install;
      expect(order).toEqual(['read answered', 'synced', 'install answered']);
      expect(answered).toEqual({ status: 200, body: { data: { installModule: { id: 'github', name: 'GitHub' } } } });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await app.close();
      await store.close();
    }
  });
});
