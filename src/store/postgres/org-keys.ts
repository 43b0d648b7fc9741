import type pg from 'pg';
import type { CredentialRow, OrgKeyRow, OrgStore, SystemStore } from '../types.ts';
import { ORG_KEY_COLUMNS, orgKeyRowOf, type OrgKeyDbRow } from '../rows.ts';

const CREDENTIAL_COLUMNS = '"org_id", "module_id", "ciphertext", "iv", "tag", "key_id", "fields", "created_at", "updated_at"';
type CredentialRecord = {
  org_id: string; module_id: string; ciphertext: Buffer; iv: Buffer; tag: Buffer; key_id: string; fields: string[]; created_at: string; updated_at: string;
};

export interface OrgKeysDeps {
  /** A read in one transaction of `orgId`, under the wall (the store's inOrg). */
  read<T>(orgId: string, work: (c: pg.PoolClient) => Promise<T>): Promise<T>;
  /** A write in one transaction of `orgId`, answered once committed; it notifies nothing (no cached answer reads org keys). */
  write<T>(orgId: string, work: (c: pg.PoolClient) => Promise<T>): Promise<T>;
  /** A definer function's statement, outside any org (the store's crossOrg). */
  crossOrg<R extends pg.QueryResultRow>(text: string, values: unknown[], name?: string): Promise<R[]>;
}

const GET = `SELECT ${ORG_KEY_COLUMNS} FROM "org_keys" WHERE "org_id" = $1`;

/**
 * The PostgreSQL half of per-org data keys (issue 15). An org's own row is read and inserted in
 * that org's transaction, under the wall. Rotation's cross-org listing goes through definer
 * functions that name orgs only (drizzle/pg/0013, as 0007 does for credentials): each wrapped key
 * is then read and re-wrapped in a transaction with its own org set.
 */
export function createPostgresOrgKeys({ read, write, crossOrg }: OrgKeysDeps) {
  const forOrg = (orgId: string): Pick<OrgStore, 'dataKey' | 'createDataKey'> => ({
    dataKey: () =>
      read(orgId, async (c) => {
        const { rows } = await c.query<OrgKeyDbRow>({ name: 'tg_org_key_get', text: GET, values: [orgId] });
        return rows[0] === undefined ? undefined : orgKeyRowOf(rows[0]);
      }),
    // Insert if absent, only for an org that exists (the wall lets the org read its own orgs row);
    // a concurrent insert of the same org waits on the primary key, then does nothing: the
    // winner's row is read by a statement of its own, which sees that commit.
    createDataKey: (row) =>
      write(orgId, async (c) => {
        await c.query({
          name: 'tg_org_key_insert',
          text: `INSERT INTO "org_keys" (${ORG_KEY_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM "orgs" WHERE "id" = $1)
                 ON CONFLICT ("org_id") DO NOTHING`,
          values: [orgId, row.keyId, row.wrapped, row.iv, row.tag, row.masterKeyId, row.createdAt],
        });
        const { rows } = await c.query<OrgKeyDbRow>({ name: 'tg_org_key_get', text: GET, values: [orgId] });
        return rows[0] === undefined ? undefined : orgKeyRowOf(rows[0]);
      }),
  });

  const system: SystemStore['orgKeys'] = {
    masterKeyIds: async () =>
      (await crossOrg<{ id: string }>('SELECT k AS id FROM public.tenantgate_org_key_master_ids() AS k', [], 'tg_org_key_master_ids')).map((r) => r.id),
    notUnderMaster: async (masterKeyId, limit) => {
      // A row re-wrapped meanwhile is skipped; if a whole batch was, the next one is asked for.
      for (let round = 0; ; round++) {
        const names = await crossOrg<{ org_id: string }>(
          'SELECT org_id FROM public.tenantgate_org_keys_not_under_master($1, $2)',
          [masterKeyId, limit],
          'tg_org_keys_not_under_master',
        );
        const rows: OrgKeyRow[] = [];
        for (const { org_id: orgId } of names) {
          const row = await read(orgId, async (c) => {
            const { rows: found } = await c.query<OrgKeyDbRow>({
              name: 'tg_org_key_not_under',
              text: `${GET} AND "master_key_id" <> $2`,
              values: [orgId, masterKeyId],
            });
            return found[0];
          });
          if (row) rows.push(orgKeyRowOf(row));
        }
        if (rows.length > 0 || names.length === 0 || round === 10) return rows;
      }
    },
    rewrap: (row, expectedIv) =>
      write(row.orgId, async (c) => {
        const { rowCount } = await c.query({
          name: 'tg_org_key_rewrap',
          text: 'UPDATE "org_keys" SET "wrapped" = $3, "iv" = $4, "tag" = $5, "master_key_id" = $6 WHERE "org_id" = $1 AND "key_id" = $2 AND "iv" = $7',
          values: [row.orgId, row.keyId, row.wrapped, row.iv, row.tag, row.masterKeyId, expectedIv],
        });
        return rowCount === 1;
      }),
  };

  /** Credentials sealed directly under a master key, named by a definer function, each read under its org's wall. */
  const underMasterKey = async (limit: number): Promise<CredentialRow[]> => {
    for (let round = 0; ; round++) {
      const names = await crossOrg<{ org_id: string; module_id: string }>(
        'SELECT org_id, module_id FROM public.tenantgate_credentials_under_master($1)',
        [limit],
        'tg_credentials_under_master',
      );
      const rows: CredentialRow[] = [];
      for (const n of names) {
        const row = await read(n.org_id, async (c) => {
          const { rows: found } = await c.query<CredentialRecord>({
            name: 'tg_credential_under_master',
            text: `SELECT ${CREDENTIAL_COLUMNS} FROM "credentials" WHERE "org_id" = $1 AND "module_id" = $2 AND left("key_id", 3) = 'mk_'`,
            values: [n.org_id, n.module_id],
          });
          return found[0];
        });
        if (row) {
          rows.push({
            orgId: row.org_id, moduleId: row.module_id, ciphertext: row.ciphertext, iv: row.iv, tag: row.tag, keyId: row.key_id,
            fields: row.fields, createdAt: row.created_at, updatedAt: row.updated_at,
          });
        }
      }
      if (rows.length > 0 || names.length === 0 || round === 10) return rows;
    }
  };

  return { forOrg, system, underMasterKey };
}
