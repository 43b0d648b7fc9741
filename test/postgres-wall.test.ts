import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { checkRequestRole, DEFINER_FUNCTIONS, migratePostgres, PG_MIGRATIONS, type PgMigrateResult } from '../src/store/postgres/migrate.ts';
import { LIMIT_TABLES } from '../src/store/postgres/limiter.ts';
import { TENANT_TABLES, WALLED_TABLES } from '../src/store/postgres/schema.ts';
import { pgServer, type Scratch } from './helpers/pg-server.ts';

// Row-level security as a second wall (issue 13, item 2), proven with the application out of the
// way: plain SQL as the request role. The superuser only creates and drops the scratch database
// and seeds rows; it never stands in for a request (it bypasses RLS even with FORCE).

const MIGRATIONS = readMigrationFiles({ migrationsFolder: PG_MIGRATIONS }).length;

// The run's PostgreSQL (test/helpers/pg-server.ts): a server, or PGlite where none answers.
const server = await pgServer();
let scratch: Scratch;
let scratch2: Scratch | undefined;
const names = { owner: '', request: '', request2: '', bypass: '' };
let ownerUrl: string;
let requestUrl: string;
let superuserUrl: string;

/** `url` with its role replaced. */
const as = (url: string, role: string) => {
  const u = new URL(url);
  u.username = role;
  u.password = '';
  return u.toString();
};

async function asSuperuser<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

let firstRun: PgMigrateResult;
let requests: pg.Pool;

const ORGS = ['A', 'B'] as const;
const PER_ORG = { A: 3, B: 2 } as const;


/** What the request role is granted on a tenant table: everything, but the audit log is append-only (records never updated or deleted) and its head row is never deleted. */
const tablePrivileges = (table: string): string[] =>
  table === 'audit_log' ? ['SELECT', 'INSERT'] : table === 'audit_heads' ? ['SELECT', 'INSERT', 'UPDATE'] : ['SELECT', 'INSERT', 'UPDATE', 'DELETE'];

describe('PostgreSQL row-level security (issue 13, item 2)', () => {
  beforeAll(async () => {
    // The owning role is not a superuser, so FORCE holds it too; it may create the request role.
    // As the database's owner it owns its public schema (pg_database_owner).
    scratch = await server.createScratch();
    names.owner = scratch.ownerRole;
    names.request = scratch.requestRole;
    names.bypass = `${scratch.database}_bypass`; // the scratch prefix: the run's teardown finds a leftover
    ({ ownerUrl, requestUrl, superuserUrl } = scratch);
    firstRun = await migratePostgres({ ownerUrl, requestUrl });
    await asSuperuser(superuserUrl, async (c) => {
      await c.query(`CREATE ROLE "${names.bypass}" LOGIN NOSUPERUSER BYPASSRLS`);
      await c.query(`DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), '${names.bypass}'); END $$`);
      await c.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "${names.bypass}"`);
      for (const org of ORGS) {
        await c.query(`INSERT INTO orgs VALUES ($1, $2, '2026-01-01T00:00:00.000Z')`, [org, `Org ${org}`]);
        for (let i = 0; i < PER_ORG[org]; i++) {
          const id = `${org.toLowerCase()}-${i}`;
          await c.query(
            `INSERT INTO modules (org_id, module_id, name, version, installed_at, updated_at)
             VALUES ($1, $2, 'm', '1.0.0', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`,
            [org, id],
          );
          await c.query(
            `INSERT INTO credentials VALUES ($1, $2, $3, $4, $5, 'k1', '["token"]', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`,
            [org, id, Buffer.from('sealed'), Buffer.alloc(12, 1), Buffer.alloc(16, 2)],
          );
          await c.query(
            `INSERT INTO api_keys (id, org_id, name, prefix, hash, scopes, created_at)
             VALUES ($1, $2, 'k', 'tg_', $3, '["read"]', '2026-01-01T00:00:00.000Z')`,
            [`key-${id}`, org, `hash-${id}`],
          );
        }
      }
    });
    // One connection: every transaction below reuses it, as a pooled request would.
    requests = new pg.Pool({ connectionString: requestUrl, max: 1 });
  });

  afterAll(async () => {
    await requests?.end();
    if (scratch && names.bypass) {
      await asSuperuser(superuserUrl, async (c) => {
        await c.query(`DROP OWNED BY "${names.bypass}"`);
        await c.query(`DROP ROLE IF EXISTS "${names.bypass}"`);
      });
    }
    await scratch2?.drop();
    await scratch?.drop();
  });

  /** One transaction on the pooled request connection, with the org set for it when given. */
  async function inTransaction<T>(org: string | undefined, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await requests.connect();
    try {
      await c.query('BEGIN');
      if (org !== undefined) await c.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      try {
        const result = await fn(c);
        await c.query('COMMIT');
        return result;
      } catch (error) {
        await c.query('ROLLBACK');
        throw error;
      }
    } finally {
      c.release();
    }
  }

  const counts = () =>
    asSuperuser(superuserUrl, async (c) => {
      const { rows } = await c.query<{ t: string; org_id: string; n: number; k1: number }>(`
        SELECT 'modules' AS t, org_id, count(*)::int AS n, 0 AS k1 FROM modules GROUP BY org_id
        UNION ALL SELECT 'credentials', org_id, count(*)::int, count(*) FILTER (WHERE key_id = 'k1')::int FROM credentials GROUP BY org_id
        UNION ALL SELECT 'api_keys', org_id, count(*)::int, 0 FROM api_keys GROUP BY org_id
        ORDER BY 1, 2`);
      return rows.map((r) => `${r.t} ${r.org_id}: ${r.n}${r.t === 'credentials' ? ` (${r.k1} under k1)` : ''}`);
    });

  it('the first migration created the schema, the request role and its grants', () => {
    expect(firstRun.applied).toHaveLength(MIGRATIONS);
    expect(firstRun.createdRole).toBe(true);
    // USAGE on the public schema is PUBLIC's by default, so it is not granted again.
    expect(firstRun.granted).toEqual([
      'SELECT ON orgs',
      ...TENANT_TABLES.flatMap((t) => tablePrivileges(t).map((p) => `${p} ON ${t}`)),
      // The shared limits (failed authentications, drizzle/pg/0003; org request rates, 0010): not org data, outside public.
      'USAGE ON SCHEMA tenantgate_limits',
      ...['auth_failures', 'org_requests'].flatMap((t) => ['SELECT', 'INSERT', 'UPDATE', 'DELETE'].map((p) => `${p} ON tenantgate_limits.${t}`)),
      ...DEFINER_FUNCTIONS.map((f) => `EXECUTE ON ${f.slice(0, f.indexOf('('))}`),
      'SELECT ON the migration journal',
    ]);
  });

  it('with no org set, statements with no org filter see nothing and change nothing', async () => {
    const before = await counts();
    for (const org of [undefined, '']) {
      const seen = await inTransaction(org, async (c) => ({
        modules: (await c.query('SELECT * FROM modules')).rowCount,
        orgs: (await c.query('SELECT * FROM orgs')).rowCount,
        keys: (await c.query('SELECT * FROM api_keys')).rowCount,
        updated: (await c.query(`UPDATE credentials SET key_id = 'k2'`)).rowCount,
        deleted: (await c.query('DELETE FROM api_keys')).rowCount,
        setting: (await c.query<{ s: string | null }>(`SELECT current_setting('app.org_id', true) AS s`)).rows[0]?.s,
      }));
      expect(seen).toMatchObject({ modules: 0, orgs: 0, keys: 0, updated: 0, deleted: 0 });
      expect(['', null]).toContain(seen.setting);
    }
    expect(await counts()).toEqual(before);
  });

  it('inserting a row for another org, or moving a row to it, is refused', async () => {
    await expect(
      inTransaction('A', (c) =>
        c.query(
          `INSERT INTO modules (org_id, module_id, name, version, installed_at, updated_at)
           VALUES ('B', 'planted', 'm', '1', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`,
        ),
      ),
    ).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/row-level security/) });
    await expect(inTransaction('A', (c) => c.query(`UPDATE modules SET org_id = 'B' WHERE module_id = 'a-0'`))).rejects.toMatchObject({
      code: '42501',
    });
    await expect(inTransaction(undefined, (c) => c.query(`INSERT INTO orgs VALUES ('C', 'C', 'x')`))).rejects.toMatchObject({ code: '42501' });
  });

  it('with org A set, SELECT, UPDATE and DELETE with no org filter reach only A\'s rows; the setting ends with the transaction', async () => {
    const before = await counts();
    expect(before).toEqual([
      'api_keys A: 3', 'api_keys B: 2',
      'credentials A: 3 (3 under k1)', 'credentials B: 2 (2 under k1)',
      'modules A: 3', 'modules B: 2',
    ]);
    const { seen, pid } = await inTransaction('A', async (c) => {
      const modules = await c.query<{ org_id: string; module_id: string }>('SELECT * FROM modules ORDER BY module_id');
      const orgs = await c.query<{ id: string }>('SELECT * FROM orgs');
      const updated = await c.query(`UPDATE credentials SET key_id = 'k2'`);
      const deleted = await c.query('DELETE FROM api_keys');
      const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      return {
        pid,
        seen: {
          modules: modules.rows.map((r) => `${r.org_id}/${r.module_id}`),
          orgs: orgs.rows.map((r) => r.id),
          updated: updated.rowCount,
          deleted: deleted.rowCount,
        },
      };
    });
    expect(seen).toEqual({ modules: ['A/a-0', 'A/a-1', 'A/a-2'], orgs: ['A'], updated: 3, deleted: 3 });
    // B's rows are as they were; A's changed.
    expect(await counts()).toEqual([
      'api_keys B: 2',
      'credentials A: 3 (0 under k1)', 'credentials B: 2 (2 under k1)',
      'modules A: 3', 'modules B: 2',
    ]);

    // The next transaction on the same pooled connection has no org: it sees nothing.
    const next = await inTransaction(undefined, async (c) => ({
      pid: (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid,
      setting: (await c.query<{ s: string | null }>(`SELECT current_setting('app.org_id', true) AS s`)).rows[0]?.s,
      modules: (await c.query('SELECT * FROM modules')).rowCount,
      credentials: (await c.query('SELECT * FROM credentials')).rowCount,
    }));
    expect(next).toEqual({ pid, setting: '', modules: 0, credentials: 0 });
  });

  it('catalog: every walled table has RLS enabled and forced; the request role owns nothing, is no superuser and cannot bypass RLS', async () => {
    const catalog = await asSuperuser(superuserUrl, async (c) => {
      const tables = await c.query<{ relname: string; relrowsecurity: boolean; relforcerowsecurity: boolean; owner: string }>(
        `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner
           FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY c.relname`,
      );
      const policies = await c.query<{ tablename: string; policyname: string; roles: string[]; qual: string | null; with_check: string | null }>(
        `SELECT tablename, policyname, roles::text[] AS roles, qual, with_check FROM pg_policies ORDER BY tablename, policyname`,
      );
      const functions = await c.query<{ proname: string; prosecdef: boolean; owner: string; proconfig: string[]; acl: string }>(
        `SELECT proname, prosecdef, pg_get_userbyid(proowner) AS owner, proconfig, proacl::text AS acl
           FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY proname`,
      );
      const role = await c.query(
        `SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin,
                (SELECT count(*)::int FROM pg_class WHERE relowner = r.oid) AS owns
           FROM pg_roles r WHERE rolname = $1`,
        [names.request],
      );
      return { tables: tables.rows, policies: policies.rows, functions: functions.rows, role: role.rows[0] };
    });
    expect(catalog.tables).toEqual(
      [...WALLED_TABLES].sort().map((relname) => ({ relname, relrowsecurity: true, relforcerowsecurity: true, owner: names.owner })),
    );
    // The wall: one policy per table for every role, on the org setting.
    const walls = catalog.policies.filter((p) => p.policyname.endsWith('_org_wall'));
    expect(walls.map((p) => p.tablename)).toEqual([...WALLED_TABLES].sort());
    for (const p of walls) {
      expect(p.roles).toEqual(['public']);
      expect(p.qual).toMatch(/current_setting\('app\.org_id'::text, true\)/);
    }
    // The cross-org path: the owner alone, and only while it acts for another session's role (inside a definer function).
    const definer = catalog.policies.filter((p) => !p.policyname.endsWith('_org_wall'));
    expect(definer.map((p) => p.policyname).sort()).toEqual([
      'api_keys_definer_read', 'api_keys_definer_touch', 'credentials_definer_read', 'modules_definer_read', 'org_keys_definer_read', 'org_quotas_definer_read',
      'orgs_definer_delete', 'orgs_definer_insert', 'orgs_definer_read', 'orgs_definer_update',
      'usage_hours_definer_insert', 'usage_hours_definer_read', 'usage_hours_definer_update',
      'usage_months_definer_insert', 'usage_months_definer_read', 'usage_months_definer_update',
    ]);
    for (const p of definer) {
      expect(p.roles).toEqual([names.owner]);
      for (const expr of [p.qual, p.with_check].filter((e) => e !== null)) expect(expr).toMatch(/CURRENT_USER <> SESSION_USER/i);
    }
    expect(catalog.functions.map((f) => f.proname)).toEqual(DEFINER_FUNCTIONS.map((f) => f.slice(0, f.indexOf('('))).sort());
    for (const f of catalog.functions) {
      expect(f).toMatchObject({ prosecdef: true, owner: names.owner, proconfig: ['search_path=pg_catalog, pg_temp'] });
      // EXECUTE for the owner and the request role only: not PUBLIC (an ACL entry "=X/owner").
      expect(f.acl).not.toMatch(/(^|[{,])=X/);
      expect(f.acl).toContain(`${names.request}=X/${names.owner}`);
    }
    expect(catalog.role).toEqual({ rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false, rolcanlogin: true, owns: 0 });
  });

  it('the cross-org functions answer the request role across orgs, and the owner in its own session nothing (FORCE still holds it)', async () => {
    const asRequest = await inTransaction(undefined, async (c) => ({
      key: (await c.query<{ org_id: string }>(`SELECT org_id FROM tenantgate_key_by_hash('hash-b-1')`)).rows,
      orgs: (await c.query<{ id: string }>('SELECT id FROM tenantgate_orgs()')).rows.map((r) => r.id),
      direct: (await c.query('SELECT * FROM api_keys')).rowCount,
    }));
    expect(asRequest).toEqual({ key: [{ org_id: 'B' }], orgs: ['A', 'B', 'default'], direct: 0 });
    const owner = new pg.Client({ connectionString: ownerUrl });
    await owner.connect();
    try {
      expect((await owner.query('SELECT * FROM api_keys')).rowCount).toBe(0);
      expect((await owner.query(`SELECT * FROM tenantgate_key_by_hash('hash-b-1')`)).rowCount).toBe(0);
      await expect(owner.query(`INSERT INTO orgs VALUES ('C', 'C', 'x')`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await owner.end();
    }
    // A role that was never granted EXECUTE cannot call them at all.
    await expect(
      (async () => {
        const bypass = new pg.Client({ connectionString: as(superuserUrl, names.bypass) });
        await bypass.connect();
        try {
          await bypass.query('SELECT * FROM tenantgate_orgs()');
        } finally {
          await bypass.end();
        }
      })(),
    ).rejects.toMatchObject({ code: '42501' });
  });

  it('the bypass check admits the request role and refuses the superuser, a BYPASSRLS role and the owner, each with one line', async () => {
    expect(await checkRequestRole(requestUrl)).toEqual({ ok: true });
    const refusals = {
      superuser: await checkRequestRole(superuserUrl),
      bypass: await checkRequestRole(as(superuserUrl, names.bypass)),
      owner: await checkRequestRole(ownerUrl),
    };
    expect(refusals.superuser).toEqual({ ok: false, reason: expect.stringMatching(/"postgres", a superuser: it bypasses row-level security$/) });
    expect(refusals.bypass).toEqual({ ok: false, reason: expect.stringMatching(/has BYPASSRLS: it bypasses row-level security$/) });
    expect(refusals.owner).toEqual({
      ok: false,
      reason: expect.stringMatching(
        /owner of api_keys, audit_heads, audit_log, credentials, modules, org_keys, org_quotas, orgs, run_unit_events, usage_hours, usage_months: it could switch row-level security off$/,
      ),
    });
    for (const r of Object.values(refusals)) if (!r.ok) expect(r.reason).not.toContain('\n');
  });

  it('migrating again changes nothing', async () => {
    const snapshot = () =>
      asSuperuser(superuserUrl, async (c) => {
        const { rows } = await c.query(`
          SELECT (SELECT json_agg(x ORDER BY id) FROM drizzle.__drizzle_migrations x) AS journal,
                 (SELECT json_agg(json_build_array(relname, relacl::text, relrowsecurity, relforcerowsecurity) ORDER BY relname)
                    FROM pg_class WHERE relnamespace = 'public'::regnamespace) AS tables,
                 (SELECT json_agg(p ORDER BY tablename, policyname) FROM pg_policies p) AS policies,
                 (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public') AS schema_acl,
                 (SELECT json_agg(o ORDER BY id) FROM orgs o) AS orgs`);
        return rows[0];
      });
    const before = await snapshot();
    expect(before.journal).toHaveLength(MIGRATIONS);
    const again = await migratePostgres({ ownerUrl, requestUrl });
    expect(again).toEqual({ applied: [], createdRole: false, granted: [] });
    expect(await snapshot()).toEqual(before);
  });

  it('two migrations at once take turns: one applies everything, the other finds it done', async () => {
    scratch2 = await server.createScratch();
    const owner2 = scratch2.ownerUrl;
    const request2 = scratch2.requestUrl;
    const results = await Promise.all([
      migratePostgres({ ownerUrl: owner2, requestUrl: request2 }),
      migratePostgres({ ownerUrl: owner2, requestUrl: request2 }),
    ]);
    const sorted = results.map((r) => ({ applied: r.applied.length, createdRole: r.createdRole, granted: r.granted.length })).sort((a, b) => b.applied - a.applied);
    expect(sorted).toEqual([
      { applied: MIGRATIONS, createdRole: true, granted: 1 + TENANT_TABLES.flatMap(tablePrivileges).length + 1 + 4 * LIMIT_TABLES.length + DEFINER_FUNCTIONS.length + 1 },
      { applied: 0, createdRole: false, granted: 0 },
    ]);
    const journal = await asSuperuser(scratch2.superuserUrl, async (c) => (await c.query('SELECT hash FROM drizzle.__drizzle_migrations')).rowCount);
    expect(journal).toBe(MIGRATIONS);
    expect(await checkRequestRole(request2)).toEqual({ ok: true });
  });
});
