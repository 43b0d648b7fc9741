import { readMigrationFiles } from 'drizzle-orm/migrator';
import pg from 'pg';
import { ConfigError } from '../../config.ts';
import { LIMIT_TABLES, LIMITS_SCHEMA } from './limiter.ts';
import { TENANT_TABLES, WALLED_TABLES } from './schema.ts';
import { findMigrations } from '../migrations-folder.ts';

export const PG_MIGRATIONS = findMigrations('pg', import.meta.url);

/**
 * The cross-org path (drizzle/pg/0002): SECURITY DEFINER functions owned by the owning role,
 * EXECUTE revoked from PUBLIC there and granted to the request role here, with their signatures.
 */
export const DEFINER_FUNCTIONS = [
  'tenantgate_key_by_hash(text)',
  'tenantgate_touch_keys(text[], text[])',
  'tenantgate_orgs()',
  'tenantgate_insert_org(text, text, text)',
  'tenantgate_key_count()',
  'tenantgate_unhealthy_modules(integer)',
  'tenantgate_credential_key_ids()',
  'tenantgate_credentials_not_under_key(text, integer)',
  // Metering across orgs (drizzle/pg/0010).
  'tenantgate_add_requests(text[], text[], bigint[])',
  'tenantgate_usage_top(text, integer)',
  'tenantgate_org_quotas()',
  // Org lifecycle (drizzle/pg/0013).
  'tenantgate_rename_org(text, text)',
  'tenantgate_set_org_status(text, text, text, text)',
  'tenantgate_delete_org(text)',
  // Audit retention (drizzle/pg/0014).
  'tenantgate_audit_prune(bigint)',
  // Per-org data keys (drizzle/pg/0015).
  'tenantgate_org_key_master_ids()',
  'tenantgate_org_keys_not_under_master(text, integer)',
  'tenantgate_credentials_under_master(integer)',
] as const;

/** The request role's privileges on the audit tables (issue 15): records are appended, never changed; the head row moves. */
const AUDIT_PRIVILEGES: Partial<Record<string, string[]>> = {
  audit_log: ['SELECT', 'INSERT'],
  audit_heads: ['SELECT', 'INSERT', 'UPDATE'],
};

/** drizzle's journal, where drizzle's own migrator keeps it, in its format, so drizzle-kit stays usable. */
const JOURNAL_SCHEMA = 'drizzle';
const JOURNAL = '__drizzle_migrations';

/** Held for the migrating transaction: replicas starting at once take turns. Any fixed bigint; this is "tgmigrat". */
const MIGRATION_LOCK = '8388347590866315636';

export interface PgMigrateOptions {
  /** The owning role's URL (the migration URL; a setting of its own once the gateway runs on PostgreSQL): it owns the tables. */
  ownerUrl: string;
  /**
   * The request role's URL (TENANTGATE_DATABASE): that role is created and granted when missing.
   * Absent: only the schema is migrated (`tenantgate copy` prepares a target as the owner alone).
   */
  requestUrl?: string | undefined;
  migrationsFolder?: string;
}

export interface PgMigrateResult {
  /** The `when` of each migration applied by this run (none when the schema was current). */
  applied: string[];
  /** Whether this run created the request role. */
  createdRole: boolean;
  /** The privileges this run granted, e.g. "SELECT ON modules"; none when all were held already. */
  granted: string[];
}

/** The role a URL connects as. */
export function roleOf(url: string): string {
  const name = decodeURIComponent(new URL(url).username);
  if (!name) throw new ConfigError('the database URL names no role (postgres://ROLE@host/db)');
  return name;
}

/**
 * Brings a PostgreSQL database to the current schema as the owning role, in one transaction under
 * an advisory lock. drizzle's own node-postgres migrator reads the journal before its transaction
 * and takes no lock, so two replicas starting together could both apply a migration; we run
 * drizzle's files and journal ourselves, reading the journal only once the lock is held.
 *
 * In the same transaction, the request role is created when missing (LOGIN, no superuser, no
 * BYPASSRLS, no CREATEROLE or CREATEDB, owning nothing) and granted what requests need, and no more:
 * USAGE on the schema, SELECT on orgs, SELECT/INSERT/UPDATE/DELETE on the tenant tables (the metering
 * tables among them; the audit log only SELECT/INSERT, its heads no DELETE) and the shared limits'
 * tables, EXECUTE on the definer functions. An existing role is never altered (beyond taking back
 * UPDATE and DELETE on the audit log): if it could bypass the wall, `checkRequestRole` refuses it.
 */
export async function migratePostgres(options: PgMigrateOptions): Promise<PgMigrateResult> {
  const migrations = readMigrationFiles({ migrationsFolder: options.migrationsFolder ?? PG_MIGRATIONS });
  const requestRole = options.requestUrl === undefined ? undefined : roleOf(options.requestUrl);
  const password = options.requestUrl === undefined ? '' : decodeURIComponent(new URL(options.requestUrl).password);
  if (requestRole !== undefined && requestRole === roleOf(options.ownerUrl)) {
    throw new ConfigError(
      "TENANTGATE_DATABASE and TENANTGATE_MIGRATION_DATABASE name the same role; requests must not run as the tables' owner",
    );
  }
  const result: PgMigrateResult = { applied: [], createdRole: false, granted: [] };
  const client = new pg.Client({ connectionString: options.ownerUrl });
  client.on('error', () => {}); // a connection lost mid-query rejects that query; unheard, the event would end the process
  await client.connect();
  try {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${JOURNAL_SCHEMA}"`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS "${JOURNAL_SCHEMA}"."${JOURNAL}" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`,
      );
      const last = await client.query<{ created_at: string }>(
        `SELECT created_at FROM "${JOURNAL_SCHEMA}"."${JOURNAL}" ORDER BY created_at DESC LIMIT 1`,
      );
      const lastMillis = last.rows[0] ? Number(last.rows[0].created_at) : 0;
      for (const migration of migrations) {
        if (migration.folderMillis <= lastMillis) continue;
        for (const statement of migration.sql) {
          if (statement.trim()) await client.query(statement);
        }
        await client.query(`INSERT INTO "${JOURNAL_SCHEMA}"."${JOURNAL}" ("hash", "created_at") VALUES ($1, $2)`, [
          migration.hash,
          migration.folderMillis,
        ]);
        result.applied.push(String(migration.folderMillis));
      }

      if (requestRole === undefined) {
        await client.query('COMMIT');
        return result;
      }
      const role = client.escapeIdentifier(requestRole);
      const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [requestRole]);
      if (exists.rowCount === 0) {
        const secret = password ? ` PASSWORD ${client.escapeLiteral(password)}` : '';
        await client.query(`CREATE ROLE ${role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT${secret}`);
        result.createdRole = true;
      }
      const schema = await client.query<{ ok: boolean }>(`SELECT has_schema_privilege($1, 'public', 'USAGE') AS ok`, [requestRole]);
      if (!schema.rows[0]?.ok) {
        await client.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
        result.granted.push('USAGE ON SCHEMA public');
      }
      const wanted: Array<[table: string, privileges: string[]]> = [
        ['orgs', ['SELECT']],
        ...TENANT_TABLES.map((t): [string, string[]] => [t, AUDIT_PRIVILEGES[t] ?? ['SELECT', 'INSERT', 'UPDATE', 'DELETE']]),
      ];
      // The audit log is append-only to requests: a record is never changed or deleted by the
      // request role (retention prunes through tenantgate_audit_prune, drizzle/pg/0014). Taken
      // back here should an older run have granted more.
      for (const [table, privileges] of Object.entries(AUDIT_PRIVILEGES)) {
        const extra = ['UPDATE', 'DELETE', 'TRUNCATE'].filter((p) => !privileges?.includes(p));
        await client.query(`REVOKE ${extra.join(', ')} ON TABLE public.${client.escapeIdentifier(table)} FROM ${role}`);
      }
      for (const [table, privileges] of wanted) {
        for (const privilege of privileges) {
          const held = await client.query<{ ok: boolean }>(`SELECT has_table_privilege($1, $2, $3) AS ok`, [
            requestRole,
            `public.${table}`,
            privilege,
          ]);
          if (held.rows[0]?.ok) continue;
          await client.query(`GRANT ${privilege} ON TABLE public.${client.escapeIdentifier(table)} TO ${role}`);
          result.granted.push(`${privilege} ON ${table}`);
        }
      }
      // The shared limits (drizzle/pg/0003): not org data, read and written by every replica.
      const limits = await client.query<{ ok: boolean }>(`SELECT has_schema_privilege($1, $2, 'USAGE') AS ok`, [requestRole, LIMITS_SCHEMA]);
      if (!limits.rows[0]?.ok) {
        await client.query(`GRANT USAGE ON SCHEMA ${client.escapeIdentifier(LIMITS_SCHEMA)} TO ${role}`);
        result.granted.push(`USAGE ON SCHEMA ${LIMITS_SCHEMA}`);
      }
      for (const table of LIMIT_TABLES) {
        for (const privilege of ['SELECT', 'INSERT', 'UPDATE', 'DELETE']) {
          const qualified = `${client.escapeIdentifier(LIMITS_SCHEMA)}.${client.escapeIdentifier(table)}`;
          const held = await client.query<{ ok: boolean }>(`SELECT has_table_privilege($1, $2, $3) AS ok`, [requestRole, qualified, privilege]);
          if (held.rows[0]?.ok) continue;
          await client.query(`GRANT ${privilege} ON TABLE ${qualified} TO ${role}`);
          result.granted.push(`${privilege} ON ${LIMITS_SCHEMA}.${table}`);
        }
      }
      for (const fn of DEFINER_FUNCTIONS) {
        const held = await client.query<{ ok: boolean }>(`SELECT has_function_privilege($1, $2, 'EXECUTE') AS ok`, [requestRole, `public.${fn}`]);
        if (held.rows[0]?.ok) continue;
        await client.query(`GRANT EXECUTE ON FUNCTION public.${fn} TO ${role}`);
        result.granted.push(`EXECUTE ON ${fn.slice(0, fn.indexOf('('))}`);
      }
      // The gateway checks at start that the schema is current (schemaStatus), reading the journal.
      const journal = await client.query<{ ok: boolean }>(`SELECT has_table_privilege($1, $2, 'SELECT') AS ok`, [
        requestRole,
        `"${JOURNAL_SCHEMA}"."${JOURNAL}"`,
      ]);
      if (!journal.rows[0]?.ok) {
        await client.query(`GRANT USAGE ON SCHEMA "${JOURNAL_SCHEMA}" TO ${role}`);
        await client.query(`GRANT SELECT ON TABLE "${JOURNAL_SCHEMA}"."${JOURNAL}" TO ${role}`);
        result.granted.push('SELECT ON the migration journal');
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  } finally {
    await client.end();
  }
  return result;
}

/**
 * Whether the role of a request URL is held by row-level security: not a superuser, not
 * BYPASSRLS, not CREATEROLE (on PostgreSQL 15 such a role can grant itself any non-superuser role,
 * the owner included), owning no walled table, and not a member (transitively, pg_has_role MEMBER,
 * whatever INHERIT says: SET ROLE takes the other role's attributes) of any role that is any of
 * these. A reason, in one line, when not.
 */
export async function checkRequestRole(url: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {}); // a connection lost mid-query rejects that query; unheard, the event would end the process
  await client.connect();
  try {
    // Every role the request role is or can become (itself included), and what each could do.
    const { rows } = await client.query<{ role: string; self: boolean; rolsuper: boolean; rolbypassrls: boolean; rolcreaterole: boolean; owns: string | null }>(
      `SELECT r.rolname AS role, r.rolname = current_user AS self, r.rolsuper, r.rolbypassrls, r.rolcreaterole,
              (SELECT string_agg(c.relname, ', ' ORDER BY c.relname)
                 FROM pg_class c
                WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname = ANY($1)
                  AND c.relowner = r.oid) AS owns
         FROM pg_roles r
        WHERE pg_has_role(current_user, r.oid, 'MEMBER')
        ORDER BY r.rolname <> current_user, r.rolname`,
      [[...WALLED_TABLES]],
    );
    const me = rows.find((r) => r.self);
    if (!me) return { ok: false, reason: 'the request role is not in pg_roles' };
    const name = JSON.stringify(me.role);
    for (const row of rows) {
      const who = row.self ? `${name}` : `${name}, a member of ${JSON.stringify(row.role)}`;
      const what = row.self ? '' : ' (it can SET ROLE to it)';
      if (row.rolsuper) return { ok: false, reason: `TENANTGATE_DATABASE connects as ${who}, a superuser${what}: it bypasses row-level security` };
      if (row.rolbypassrls) return { ok: false, reason: `TENANTGATE_DATABASE connects as ${who}, which has BYPASSRLS${what}: it bypasses row-level security` };
      if (row.owns) {
        return { ok: false, reason: `TENANTGATE_DATABASE connects as ${who}, owner of ${row.owns}${what}: it could switch row-level security off` };
      }
      if (row.rolcreaterole) {
        return { ok: false, reason: `TENANTGATE_DATABASE connects as ${who}, which has CREATEROLE${what}: it could grant itself the tables' owner` };
      }
    }
    return { ok: true };
  } finally {
    await client.end();
  }
}

/**
 * Whether the database's schema is the one this build's migrations make, read as the request
 * role: the journal's last entry against the last migration in drizzle/pg. A reason when not.
 */
export async function schemaStatus(url: string, migrationsFolder = PG_MIGRATIONS): Promise<{ ok: true } | { ok: false; reason: string }> {
  const migrations = readMigrationFiles({ migrationsFolder });
  const wanted = migrations.at(-1)?.folderMillis ?? 0;
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {}); // a connection lost mid-query rejects that query; unheard, the event would end the process
  await client.connect();
  try {
    const { rows } = await client.query<{ last: string | null }>(
      `SELECT (SELECT max(created_at) FROM "${JOURNAL_SCHEMA}"."${JOURNAL}")::text AS last`,
    );
    const last = Number(rows[0]?.last ?? 0);
    if (last < wanted) return { ok: false, reason: 'the PostgreSQL schema is not current' };
    if (last > wanted) return { ok: false, reason: 'the PostgreSQL schema is newer than this version of tenantgate' };
    return { ok: true };
  } catch (error) {
    const code = (error as { code?: string }).code;
    // No journal yet (42P01, 3F000), or a role the migration never granted it to (42501).
    if (code === '42P01' || code === '3F000' || code === '42501') return { ok: false, reason: 'the PostgreSQL schema is not migrated' };
    throw error;
  } finally {
    await client.end();
  }
}
