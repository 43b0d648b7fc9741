import net from 'node:net';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { checkRequestRole, migratePostgres } from '../src/store/postgres/migrate.ts';
import { choosePostgres, describeChoice, pgliteForTests, type PgServer, type Scratch } from './helpers/pg-server.ts';

// Which PostgreSQL the tests use (test/helpers/pg-server.ts), and that the fallback for a machine
// with no server, PGlite behind test/helpers/pglite-server.ts, carries the store's wall.

/** A port on which nothing listens: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('choosing the PostgreSQL of a test run', () => {
  it('falls back to PGlite outside CI when the named server does not answer, naming it without its password', async () => {
    const port = await closedPort();
    const choice = await choosePostgres({ TG_TEST_POSTGRES: `postgres://postgres:hunter2@127.0.0.1:${port}/postgres` });
    expect(choice.kind).toBe('pglite');
    const line = describeChoice(choice);
    expect(line).toContain(`127.0.0.1:${port}`);
    expect(line).toContain('skipped');
    expect(line).not.toContain('hunter2');
    expect(line.split('\n')).toHaveLength(1);
  });

  it('under CI, a server that does not answer is an error, never a fallback', async () => {
    const port = await closedPort();
    const chosen = choosePostgres({ CI: 'true', TG_TEST_POSTGRES: `postgres://postgres:hunter2@127.0.0.1:${port}` });
    await expect(chosen).rejects.toThrow(new RegExp(`no PostgreSQL answers at TG_TEST_POSTGRES \\(127\\.0\\.0\\.1:${port}/postgres\\).*\\.ci/run`));
    await expect(chosen).rejects.not.toThrow(/hunter2/);
  });

  it('refuses a setting that is no postgres:// URL, and takes "pglite" as a choice', async () => {
    await expect(choosePostgres({ TG_TEST_POSTGRES: 'mysql://x@y/z' })).rejects.toThrow('TG_TEST_POSTGRES must be a postgres:// URL (or "pglite")');
    await expect(choosePostgres({ TG_TEST_POSTGRES: 'pglite', CI: 'true' })).resolves.toEqual({ kind: 'pglite', reason: 'TG_TEST_POSTGRES=pglite' });
  });

  it('takes a server that answers (the local one unless TG_TEST_POSTGRES names another)', async () => {
    const env = { ...process.env };
    const chosen = await choosePostgres(env).catch((error: Error) => error);
    if (chosen instanceof Error || chosen.kind === 'pglite') {
      // No server here (the previous tests prove what then happens); CI always has one.
      expect(process.env.CI ? 'CI without a server' : 'no server').toBe('no server');
      return;
    }
    expect(chosen.kind).toBe('server');
    const client = new pg.Client({ connectionString: chosen.url });
    await client.connect();
    try {
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  });
});

describe('PGlite, the fallback', () => {
  let server: PgServer;
  let scratch: Scratch | undefined;
  afterAll(async () => {
    await scratch?.drop();
  });

  it('holds the wall: migrated as the owning role, the request role is no superuser and sees only the org it sets', async () => {
    // Whatever this run chose, the fallback is built here on its own.
    server = pgliteForTests();
    expect(server.kind).toBe('pglite');
    expect(server.multiProcess).toBe(false);
    scratch = await server.createScratch();
    const first = await migratePostgres({ ownerUrl: scratch.ownerUrl, requestUrl: scratch.requestUrl });
    expect(first.applied.length).toBeGreaterThan(0);
    const second = await migratePostgres({ ownerUrl: scratch.ownerUrl, requestUrl: scratch.requestUrl });
    expect(second.applied).toEqual([]);
    expect(await checkRequestRole(scratch.requestUrl)).toEqual({ ok: true });
    // The superuser plants a row for each of two orgs.
    const admin = new pg.Client({ connectionString: scratch.superuserUrl });
    await admin.connect();
    try {
      for (const org of ['A', 'B']) {
        await admin.query(`INSERT INTO orgs VALUES ($1, $1, '2026-01-01T00:00:00.000Z')`, [org]);
        await admin.query(
          `INSERT INTO modules (org_id, module_id, name, version, installed_at, updated_at) VALUES ($1, 'm', 'm', '1', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`,
          [org],
        );
      }
    } finally {
      await admin.end();
    }
    // Two clients of one pool, each in its own transaction at once: each sees its own org only.
    const pool = new pg.Pool({ connectionString: scratch.requestUrl, max: 2 });
    try {
      const role = (await pool.query<{ su: string; bypass: boolean }>(`SELECT current_setting('is_superuser') AS su, rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user`)).rows[0];
      expect(role).toEqual({ su: 'off', bypass: false });
      expect((await pool.query('SELECT * FROM modules')).rows).toEqual([]);
      const inOrg = async (org: string) => {
        const c = await pool.connect();
        try {
          await c.query('BEGIN');
          await c.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
          await new Promise((r) => setTimeout(r, 5));
          const rows = (await c.query<{ org_id: string }>('SELECT org_id FROM modules')).rows;
          await c.query('COMMIT');
          return rows.map((r) => r.org_id);
        } finally {
          c.release();
        }
      };
      expect(await Promise.all([inOrg('A'), inOrg('B'), inOrg('A')])).toEqual([['A'], ['B'], ['A']]);
    } finally {
      await pool.end();
    }
  });
});
