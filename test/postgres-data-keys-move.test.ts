/**
 * The start-up move to per-org data keys on PostgreSQL (issue 15 item 5), killed part-way, as
 * test/data-keys-move.test.ts does on SQLite: a store whose credentials are sealed directly under
 * the master key is opened by a child process (test/fixtures/open-store-child.ts, TG_DATABASE the
 * request role's URL) that SIGKILLs itself at a step of the move. Every credential still opens to
 * its value; the next start finishes. Needs a server a child process can reach (not PGlite).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isMasterKeyId, OrgKeyring } from '../src/crypto/data-keys.ts';
import { SecretBox } from '../src/crypto/secret-box.ts';
import { createPostgresStore, type PostgresStore } from '../src/store/postgres/store.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';
import { createScratchDatabase, postgresMultiProcess, type ScratchDatabase } from './helpers/postgres.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const CHILD = fileURLToPath(new URL('./fixtures/open-store-child.ts', import.meta.url));
const MASTER_KEY = randomBytes(32);
const box = new SecretBox(MASTER_KEY);
const ORGS = ['org-a', 'org-b', 'org-c'];
const MODULES = Array.from({ length: 8 }, (_, i) => `m${i}`);
const valueOf = (org: string, mod: string) => JSON.stringify({ token: `legacy-${org}-${mod}` });
const expected = new Map(ORGS.flatMap((org) => MODULES.map((mod) => [`${org}/${mod}`, valueOf(org, mod)] as const)));
const total = ORGS.length * MODULES.length;

const multiProcess = await postgresMultiProcess();
if (!multiProcess) console.log('postgres-data-keys-move: skipped, the run uses PGlite (a child process cannot reach it)');

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The request role's store, without openStore's start-up (so without the move). */
const storeOf = (scratch: ScratchDatabase): Promise<PostgresStore> =>
  createPostgresStore({ url: scratch.requestUrl, location: scratch.name, poolMax: 4, connectionTimeoutMs: 5000, idleTimeoutMs: 10_000, statementTimeoutMs: 5000 });

async function legacyStore(): Promise<ScratchDatabase> {
  const scratch = await createScratchDatabase();
  cleanups.push(() => scratch.drop());
  const store = await storeOf(scratch);
  try {
    const at = new Date().toISOString();
    for (const org of ORGS) {
      await store.system.orgs.insert({ id: org, name: org, createdAt: at }, SYSTEM_ACTOR);
      for (const mod of MODULES) {
        const o = store.forOrg(org);
        await o.modules.insert({ moduleId: mod, name: mod, version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at }, SYSTEM_ACTOR);
        await o.credentials.upsert({ moduleId: mod, ...box.seal(org, mod, valueOf(org, mod)), fields: ['token'], createdAt: at, updatedAt: at }, SYSTEM_ACTOR);
      }
    }
  } finally {
    await store.close();
  }
  return scratch;
}

async function inspect(scratch: ScratchDatabase): Promise<{ values: Map<string, string>; underMaster: number; dataKeys: number }> {
  const store = await storeOf(scratch);
  try {
    const keys = new OrgKeyring(box);
    const values = new Map<string, string>();
    let underMaster = 0;
    for (const org of ORGS) {
      const o = store.forOrg(org);
      for (const mod of MODULES) {
        const row = await o.credentials.get(mod);
        if (!row) throw new Error(`credential ${org}/${mod} is gone`);
        if (isMasterKeyId(row.keyId)) underMaster++;
        values.set(`${org}/${mod}`, await keys.open(o, mod, row));
      }
    }
    const dataKeys = (await scratch.query<{ n: number }>('SELECT count(*)::int AS n FROM org_keys'))[0]!.n;
    return { values, underMaster, dataKeys };
  } finally {
    await store.close();
  }
}

function runChild(scratch: ScratchDatabase, killAt?: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-pg-move-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, TG_DATABASE: scratch.requestUrl, TG_DATA_DIR: dir, TG_MASTER_KEY: MASTER_KEY.toString('base64'), ...(killAt ? { TG_KILL_AT: killAt } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

describe.runIf(multiProcess)('the move to per-org data keys on PostgreSQL, killed part-way', () => {
  it.each(['data-keys-made', 'credential-moving-5'])('killed at %s: every credential still opens, and the next start finishes', async (step) => {
    const scratch = await legacyStore();
    expect((await inspect(scratch)).underMaster).toBe(total);

    const killed = await runChild(scratch, step);
    expect({ signal: killed.signal, opened: killed.stdout.includes('"opened"') }, killed.stderr).toEqual({ signal: 'SIGKILL', opened: false });
    const between = await inspect(scratch);
    expect(between.values).toEqual(expected);
    expect(between.dataKeys).toBe(ORGS.length); // made (and committed) before any credential names one
    // Killed before its 5th reseal was sent: at most the 4 before it landed (they were in flight).
    expect(between.underMaster).toBeGreaterThanOrEqual(step === 'data-keys-made' ? total : total - 4);

    const finished = await runChild(scratch);
    expect(finished.code, finished.stderr).toBe(0);
    expect(await inspect(scratch)).toEqual({ values: expected, underMaster: 0, dataKeys: ORGS.length });
    const rows = () => scratch.query('SELECT org_id, module_id, ciphertext, iv, key_id FROM credentials ORDER BY 1, 2');
    const before = await rows();
    expect((await runChild(scratch)).code).toBe(0);
    expect(await rows()).toEqual(before);
  });
});
