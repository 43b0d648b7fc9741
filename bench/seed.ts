import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { displayPrefix, generateKey, hashKey } from '../src/auth/key-format.ts';
import { SCOPES, type Scope } from '../src/auth/scopes.ts';
import { createLogger } from '../src/logger.ts';
import { openStore } from '../src/store/open.ts';
import { DataKey, dataKeyId } from '../src/crypto/data-keys.ts';
import type { SecretBox } from '../src/crypto/secret-box.ts';

/**
 * Seeded stores for the benchmark. Each store is created by `openStore`, so the schema comes from
 * the real migrations in drizzle/; rows are then written straight through the raw connection with
 * prepared statements in one transaction per store (the API would take minutes for a million rows).
 * Keys use the real key format and credentials the real SecretBox, so the gateway reads them
 * exactly as it reads its own.
 *
 * Seeding all three stores (1.1M modules) takes about ten seconds, so every run seeds afresh into
 * its own temporary directory: no cache that could go stale or be left half-written.
 */

export const MODULES_PER_ORG = 100;
/** Modules per org that get a sealed credential. */
export const CREDENTIALS_PER_ORG = 10;
/** The org measured in both scale stores. */
export const TARGET_ORG = 'org-target';

export const TENANT_SCOPES: Scope[] = SCOPES.filter((s) => s !== 'admin');
const READ_SCOPES: Scope[] = ['modules:read'];

export interface BenchKey {
  orgId: string;
  secret: string;
  scopes: Scope[];
}

export interface SeededStore {
  /** File name inside the seed directory. */
  file: string;
  orgs: number;
  modules: number;
  credentials: number;
  keys: BenchKey[];
  seedMs: number;
}

export interface Fixture {
  masterKey: string;
  stores: { main: SeededStore; scale?: { scale10k: SeededStore; scale1m: SeededStore } };
}

export const moduleId = (n: number) => `mod-${String(n).padStart(3, '0')}`;

export interface StorePlan {
  /** File name inside the seed directory (SQLite), or the database's suffix (PostgreSQL). */
  file: string;
  orgIds: string[];
  /** Keys minted for each org: every org gets `perOrg`, the target org `target`. */
  keys: (orgId: string) => Array<{ name: string; scopes: Scope[] }>;
}

const BASE_TIME = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (offsetSeconds: number) => new Date(BASE_TIME + offsetSeconds * 1000).toISOString();

/** One org's rows, in the column order of the INSERTs below (bench/postgres.ts loads the same rows). */
export interface OrgRows {
  org: { id: string; name: string; createdAt: string };
  keys: Array<{ id: string; name: string; prefix: string; hash: string; scopes: string; createdAt: string }>;
  modules: Array<{
    moduleId: string;
    name: string;
    version: string;
    description: string | null;
    config: string;
    enabled: boolean;
    healthStatus: string;
    usageCount: number;
    at: string;
  }>;
  credentials: Array<{ moduleId: string; ciphertext: Buffer; iv: Buffer; tag: Buffer; keyId: string; fields: string; at: string }>;
  /** The org's data key, wrapped by the master key (org_keys), under which its credentials are sealed. */
  orgKey: { keyId: string; wrapped: Buffer; iv: Buffer; tag: Buffer; masterKeyId: string; createdAt: string };
  /** The keys' secrets, for the load generator (only their hashes are stored). */
  secrets: BenchKey[];
}

const HEALTHS = ['unknown', 'healthy', 'healthy', 'healthy', 'degraded'];

/** The `o`-th org of a plan: its keys, its MODULES_PER_ORG modules and CREDENTIALS_PER_ORG sealed credentials. */
export function orgRows(plan: StorePlan, o: number, secretBox: SecretBox): OrgRows {
  const orgId = plan.orgIds[o]!;
  // As the gateway seals them: under the org's own data key (src/crypto/data-keys.ts), so no start
  // has credentials to move first.
  const raw = randomBytes(32);
  const dataKey = new DataKey(orgId, dataKeyId(raw), raw);
  const orgKey = { keyId: dataKey.id, ...secretBox.wrapDataKey(orgId, dataKey.id, raw), createdAt: iso(o) };
  const rows: OrgRows = { org: { id: orgId, name: `Bench org ${orgId}`, createdAt: iso(o) }, keys: [], modules: [], credentials: [], orgKey, secrets: [] };
  let k = 0;
  for (const spec of plan.keys(orgId)) {
    const secret = generateKey();
    rows.keys.push({ id: `key_bench_${orgId}_${k++}`, name: spec.name, prefix: displayPrefix(secret), hash: hashKey(secret), scopes: JSON.stringify(spec.scopes), createdAt: iso(o) });
    rows.secrets.push({ orgId, secret, scopes: spec.scopes });
  }
  for (let m = 0; m < MODULES_PER_ORG; m++) {
    const id = moduleId(m);
    const at = iso(o * MODULES_PER_ORG + m);
    rows.modules.push({
      moduleId: id,
      name: `Module ${m} of ${orgId}`,
      version: `1.${m % 10}.${o % 7}`,
      description: m % 3 === 0 ? null : `Integration number ${m}, installed for the benchmark.`,
      config: JSON.stringify({ region: 'eu-west-1', retries: m % 5, feature: `f${m}` }),
      enabled: m % 9 !== 8,
      healthStatus: HEALTHS[m % HEALTHS.length]!,
      usageCount: m * 3,
      at,
    });
    if (m < CREDENTIALS_PER_ORG) {
      const sealed = dataKey.seal(id, JSON.stringify({ token: `tok-${orgId}-${id}`, user: 'bench' }));
      rows.credentials.push({ moduleId: id, ...sealed, fields: JSON.stringify(['token', 'user']), at });
    }
  }
  return rows;
}

async function seedStore(dir: string, plan: StorePlan, masterKey: Buffer, log: (line: string) => void): Promise<SeededStore> {
  const started = performance.now();
  const database = path.join(dir, plan.file);
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(database + suffix, { force: true });
  const logger = createLogger('warn');
  const { sqlite, store, secretBox } = await openStore({ database, dataDir: dir, masterKey, previousMasterKeys: [] }, logger);
  // A throwaway file rebuilt on any failure: no fsync while seeding; close() checkpoints it whole.
  sqlite.pragma('synchronous = OFF');
  sqlite.pragma('cache_size = -262144');

  const insertOrg = sqlite.prepare('INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)');
  const insertKey = sqlite.prepare(
    `INSERT INTO api_keys (id, org_id, name, prefix, hash, scopes, created_at, expires_at, revoked_at, last_used_at, created_by_key_id)
     VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)`,
  );
  const insertModule = sqlite.prepare(
    `INSERT INTO modules (org_id, module_id, name, version, description, config, enabled, health_status, health_message,
       last_health_check, usage_count, last_used_at, installed_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, NULL, ?, ?)`,
  );
  const insertCredential = sqlite.prepare(
    `INSERT INTO credentials (org_id, module_id, ciphertext, iv, tag, key_id, fields, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );

  const insertOrgKey = sqlite.prepare('INSERT INTO org_keys (org_id, key_id, wrapped, iv, tag, master_key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)');

  const keys: BenchKey[] = [];
  let modules = 0;
  let credentials = 0;
  const fill = sqlite.transaction(() => {
    for (let o = 0; o < plan.orgIds.length; o++) {
      const rows = orgRows(plan, o, secretBox);
      const orgId = rows.org.id;
      insertOrg.run(orgId, rows.org.name, rows.org.createdAt);
      const k = rows.orgKey;
      insertOrgKey.run(orgId, k.keyId, k.wrapped, k.iv, k.tag, k.masterKeyId, k.createdAt);
      for (const key of rows.keys) insertKey.run(key.id, orgId, key.name, key.prefix, key.hash, key.scopes, key.createdAt);
      keys.push(...rows.secrets);
      for (const m of rows.modules) {
        insertModule.run(orgId, m.moduleId, m.name, m.version, m.description, m.config, m.enabled ? 1 : 0, m.healthStatus, m.usageCount, m.at, m.at);
      }
      modules += rows.modules.length;
      for (const c of rows.credentials) {
        insertCredential.run(orgId, c.moduleId, c.ciphertext, c.iv, c.tag, c.keyId, c.fields, c.at, c.at);
      }
      credentials += rows.credentials.length;
    }
  });
  fill();
  await store.close();
  const seedMs = performance.now() - started;
  log(`seeded ${plan.file}: ${plan.orgIds.length} orgs, ${modules} modules, ${credentials} credentials, ${keys.length} keys in ${(seedMs / 1000).toFixed(1)} s`);
  return { file: plan.file, orgs: plan.orgIds.length, modules, credentials, keys, seedMs };
}

const orgRange = (n: number, width: number) => Array.from({ length: n }, (_, i) => `org-${String(i).padStart(width, '0')}`);

/** A key per org for reads and writes, plus a read-only key (so lookups span 2 keys per org). */
const mainKeys = () => [
  { name: 'bench tenant', scopes: TENANT_SCOPES },
  { name: 'bench read-only', scopes: READ_SCOPES },
];

/** One key per org; the measured org gets several, so requests still rotate keys. */
const scaleKeys = (orgId: string) =>
  orgId === TARGET_ORG
    ? Array.from({ length: 10 }, (_, i) => ({ name: `bench target ${i}`, scopes: READ_SCOPES }))
    : [{ name: 'bench read-only', scopes: READ_SCOPES }];

/** The three stores: the main one, and the scale pair (the same target org among 10k and 1M module rows). */
export const PLANS = {
  main: { file: 'main.db', orgIds: orgRange(1000, 4), keys: mainKeys },
  scale10k: { file: 'scale-10k.db', orgIds: [...orgRange(99, 5), TARGET_ORG], keys: scaleKeys },
  scale1m: { file: 'scale-1m.db', orgIds: [...orgRange(9999, 5), TARGET_ORG], keys: scaleKeys },
} satisfies Record<string, StorePlan>;

/**
 * Seeds the main store and, when `scale` is set, the scale pair into `dir` (a fresh directory the
 * caller removes afterwards). The 1M-row store takes most of the seeding time.
 */
export async function seedFixture(dir: string, log: (line: string) => void, { scale }: { scale: boolean }): Promise<Fixture> {
  const masterKey = randomBytes(32);
  const main = await seedStore(dir, PLANS.main, masterKey, log);
  if (!scale) return { masterKey: masterKey.toString('base64'), stores: { main } };
  const scale10k = await seedStore(dir, PLANS.scale10k, masterKey, log);
  const scale1m = await seedStore(dir, PLANS.scale1m, masterKey, log);
  return { masterKey: masterKey.toString('base64'), stores: { main, scale: { scale10k, scale1m } } };
}
