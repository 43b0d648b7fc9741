import type { CredentialRow, OrgKeyRow, OrgStore, SystemStore } from '../types.ts';
import { ORG_KEY_COLUMNS, orgKeyRowOf, type OrgKeyDbRow } from '../rows.ts';
import type { SqliteDatabase } from './connection.ts';
import { settle } from './errors.ts';


type CredentialRecord = {
  org_id: string; module_id: string; ciphertext: Buffer; iv: Buffer; tag: Buffer; key_id: string; fields: string; created_at: string; updated_at: string;
};
const credentialRow = (r: CredentialRecord): CredentialRow => ({
  orgId: r.org_id,
  moduleId: r.module_id,
  ciphertext: r.ciphertext,
  iv: r.iv,
  tag: r.tag,
  keyId: r.key_id,
  fields: JSON.parse(r.fields) as string[],
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/**
 * The SQLite half of per-org data keys (issue 15): each org's org_keys row, and the cross-org
 * reads and compare-and-swap of master-key rotation. `durable` answers a write once it is on disk.
 */
export function createSqliteOrgKeys(sqlite: SqliteDatabase, { durable }: { durable: <T>(work: () => T) => Promise<T> }) {
  const get = sqlite.prepare<[string]>(`SELECT ${ORG_KEY_COLUMNS} FROM "org_keys" WHERE "org_id" = ?`);
  // Insert if absent, and only for an org that exists (no foreign-key error to map): the winner's row is read back.
  const insert = sqlite.prepare(
    `INSERT INTO "org_keys" (${ORG_KEY_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM "orgs" WHERE "id" = ?) ON CONFLICT ("org_id") DO NOTHING`,
  );
  const masterIds = sqlite.prepare('SELECT DISTINCT "master_key_id" FROM "org_keys" ORDER BY 1').pluck();
  const notUnder = sqlite.prepare<[string, number]>(`SELECT ${ORG_KEY_COLUMNS} FROM "org_keys" WHERE "master_key_id" <> ? ORDER BY "org_id" LIMIT ?`);
  const rewrap = sqlite.prepare(
    'UPDATE "org_keys" SET "wrapped" = ?, "iv" = ?, "tag" = ?, "master_key_id" = ? WHERE "org_id" = ? AND "key_id" = ? AND "iv" = ?',
  );
  const underMaster = sqlite.prepare<[number]>(
    `SELECT "org_id", "module_id", "ciphertext", "iv", "tag", "key_id", "fields", "created_at", "updated_at" FROM "credentials"
      WHERE substr("key_id", 1, 3) = 'mk_' ORDER BY "org_id", "module_id" LIMIT ?`,
  );
  const createTx = sqlite.transaction((orgId: string, row: Omit<OrgKeyRow, 'orgId'>): OrgKeyRow | undefined => {
    insert.run(orgId, row.keyId, row.wrapped, row.iv, row.tag, row.masterKeyId, row.createdAt, orgId);
    const found = get.get(orgId) as OrgKeyDbRow | undefined;
    return found && orgKeyRowOf(found);
  });

  const forOrg = (orgId: string): Pick<OrgStore, 'dataKey' | 'createDataKey'> => ({
    dataKey: () =>
      settle(() => {
        const found = get.get(orgId) as OrgKeyDbRow | undefined;
        return found && orgKeyRowOf(found);
      }),
    createDataKey: (row) => durable(() => createTx.immediate(orgId, row)),
  });

  const system: SystemStore['orgKeys'] = {
    masterKeyIds: () => settle(() => masterIds.all() as string[]),
    notUnderMaster: (masterKeyId, limit) => settle(() => (notUnder.all(masterKeyId, limit) as OrgKeyDbRow[]).map(orgKeyRowOf)),
    rewrap: (row, expectedIv) =>
      durable(() => rewrap.run(row.wrapped, row.iv, row.tag, row.masterKeyId, row.orgId, row.keyId, expectedIv).changes === 1),
  };

  const underMasterKey = (limit: number) => settle(() => (underMaster.all(limit) as CredentialRecord[]).map(credentialRow));

  return { forOrg, system, underMasterKey };
}

/** How long a deletion's checkpoint waits, in all, for readers of older snapshots (another process) to finish. */
const CHECKPOINT_PATIENCE_MS = 2000;

/**
 * After an org's deletion: a TRUNCATE checkpoint copies the zeroed pages (secure_delete,
 * connection.ts) into the main file and empties the -wal, so no byte of the live files holds the
 * org's rows or data key. A reader in another process holding an older snapshot keeps the
 * checkpoint from finishing: tried again, without blocking the event loop in the busy handler,
 * for up to CHECKPOINT_PATIENCE_MS; false when it never finished (the next checkpoint does it).
 */
export async function checkpointShredded(sqlite: SqliteDatabase, busyTimeoutMs: number): Promise<boolean> {
  if (!sqlite.open || sqlite.name === ':memory:') return true;
  const deadline = Date.now() + CHECKPOINT_PATIENCE_MS;
  for (;;) {
    sqlite.pragma('busy_timeout = 0');
    let busy: number;
    try {
      busy = Number((sqlite.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>)[0]?.busy ?? 1);
    } catch (error) {
      if (!String((error as { code?: string }).code).startsWith('SQLITE_BUSY')) throw error;
      busy = 1;
    } finally {
      sqlite.pragma(`busy_timeout = ${busyTimeoutMs}`);
    }
    if (busy === 0) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
