/**
 * The start-up move to per-org data keys (issue 15 item 5), killed part-way: a store whose
 * credentials are sealed directly under the master key (as every store written before data keys)
 * is opened by a child process (test/fixtures/open-store-child.ts) that SIGKILLs itself at a
 * step of the move. Afterwards every credential still opens, to its value, whichever key it is
 * sealed under by then; the next start finishes the move. SQLite (a file the child and this
 * process share); the PostgreSQL move is in test/data-keys.test.ts.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isMasterKeyId, OrgKeyring } from '../src/crypto/data-keys.ts';
import { captureLogger } from '../src/logger.ts';
import { openSqliteStore } from '../src/store/open.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const CHILD = fileURLToPath(new URL('./fixtures/open-store-child.ts', import.meta.url));
const MASTER_KEY = randomBytes(32);
const ORGS = ['org-a', 'org-b', 'org-c'];
const MODULES = Array.from({ length: 12 }, (_, i) => `m${String(i).padStart(2, '0')}`);
const valueOf = (org: string, mod: string) => JSON.stringify({ token: `legacy-${org}-${mod}` });

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const config = (dir: string) => ({ database: path.join(dir, 'tenantgate.db'), dataDir: dir, masterKey: MASTER_KEY, previousMasterKeys: [] });

/** A store as written before data keys: every credential sealed directly under the master key. */
async function legacyStore(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-move-'));
  dirs.push(dir);
  // openSqliteStore migrates but does not move (openStore does): the file keeps what is written here.
  const opened = openSqliteStore(config(dir), captureLogger());
  const at = new Date().toISOString();
  for (const org of ORGS) {
    await opened.store.system.orgs.insert({ id: org, name: org, createdAt: at }, SYSTEM_ACTOR);
    for (const mod of MODULES) {
      const store = opened.store.forOrg(org);
      await store.modules.insert({ moduleId: mod, name: mod, version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at }, SYSTEM_ACTOR);
      const sealed = opened.secretBox.seal(org, mod, valueOf(org, mod));
      await store.credentials.upsert({ moduleId: mod, ...sealed, fields: ['token'], createdAt: at, updatedAt: at }, SYSTEM_ACTOR);
    }
  }
  await opened.store.close();
  return dir;
}

/** Every credential of the file, opened as a gateway would; and how many are still under the master key. */
async function inspect(dir: string): Promise<{ values: Map<string, string>; underMaster: number; dataKeys: number }> {
  const opened = openSqliteStore(config(dir), captureLogger());
  try {
    const keys = new OrgKeyring(opened.secretBox);
    const values = new Map<string, string>();
    let underMaster = 0;
    for (const org of ORGS) {
      const store = opened.store.forOrg(org);
      for (const mod of MODULES) {
        const row = await store.credentials.get(mod);
        if (!row) throw new Error(`credential ${org}/${mod} is gone`);
        if (isMasterKeyId(row.keyId)) underMaster++;
        values.set(`${org}/${mod}`, await keys.open(store, mod, row));
      }
    }
    const dataKeys = opened.sqlite.prepare('SELECT count(*) FROM org_keys').pluck().get() as number;
    return { values, underMaster, dataKeys };
  } finally {
    await opened.store.close();
  }
}

function runChild(dir: string, killAt?: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: {
      ...process.env,
      TG_DATABASE: config(dir).database,
      TG_DATA_DIR: dir,
      TG_MASTER_KEY: MASTER_KEY.toString('base64'),
      ...(killAt ? { TG_KILL_AT: killAt } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

const expected = new Map(ORGS.flatMap((org) => MODULES.map((mod) => [`${org}/${mod}`, valueOf(org, mod)] as const)));
const total = ORGS.length * MODULES.length;

describe.skipIf(process.env.TG_TEST_DIALECT === 'postgres')('the move to per-org data keys, killed part-way', () => {
  it.each(['data-keys-made', 'credential-moving-2', 'credential-moving-17'])(
    'killed at %s: every credential still opens to its value, and the next start finishes the move',
    async (step) => {
      const dir = await legacyStore();
      expect((await inspect(dir)).underMaster).toBe(total);

      const killed = await runChild(dir, step);
      expect({ signal: killed.signal, opened: killed.stdout.includes('"opened"') }, killed.stderr).toEqual({ signal: 'SIGKILL', opened: false });
      const between = await inspect(dir);
      expect(between.values).toEqual(expected);
      expect(between.dataKeys).toBeGreaterThan(0); // the kill came after the data keys were made...
      expect(between.underMaster).toBeGreaterThan(0); // ...and before the move finished
      // Killed just before its n-th reseal: the n - 1 before it were made (each is its own commit).
      const n = step === 'data-keys-made' ? 1 : Number(step.split('-').at(-1));
      expect(between.underMaster).toBe(total - (n - 1));

      const finished = await runChild(dir);
      expect(finished.code, finished.stderr).toBe(0);
      const after = await inspect(dir);
      expect(after).toEqual({ values: expected, underMaster: 0, dataKeys: ORGS.length });

      // Idempotent: another start moves nothing and changes no row.
      const rows = () => {
        const opened = openSqliteStore(config(dir), captureLogger());
        try {
          return opened.sqlite.prepare('SELECT org_id, module_id, ciphertext, iv, key_id FROM credentials ORDER BY 1, 2').all();
        } finally {
          opened.sqlite.close();
        }
      };
      const before = rows();
      expect((await runChild(dir)).code).toBe(0);
      expect(rows()).toEqual(before);
    },
  );
});
