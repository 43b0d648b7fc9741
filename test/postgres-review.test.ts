import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRequestRole } from '../src/store/postgres/migrate.ts';
import { createScratchDatabase, postgresMultiProcess, type ScratchDatabase } from './helpers/postgres.ts';

// Review of the PostgreSQL store (issue 13): each case states what should hold and fails while it
// does not. Roles made here are named after the scratch database and dropped with it.

const onServer = await postgresMultiProcess();
if (!onServer) console.log('postgres-review: role cases skipped on PGlite (they need a server with roles of their own)');

describe.skipIf(!onServer)('checkRequestRole refuses every role that can step around the wall', () => {
  let db: ScratchDatabase;
  let tag: string;
  const urlAs = (role: string) => {
    const u = new URL(db.requestUrl);
    u.username = role;
    u.password = '';
    return u.toString();
  };
  beforeAll(async () => {
    db = await createScratchDatabase();
    tag = db.name.replace(/[^a-z0-9_]/g, '_');
  });
  afterAll(async () => {
    for (const suffix of ['createrole', 'bypass', 'member']) {
      await db.query(`DROP OWNED BY ${tag}_${suffix}`).catch(() => {});
      await db.query(`DROP ROLE IF EXISTS ${tag}_${suffix}`).catch(() => {});
    }
    await db?.drop();
  });

  it('a role with CREATEROLE (on PostgreSQL 15 it can grant itself the owner and read every org)', async () => {
    const role = `${tag}_createrole`;
    await db.query(`CREATE ROLE ${role} LOGIN CREATEROLE`);
    await db.query(`GRANT CONNECT ON DATABASE "${db.name}" TO ${role}`);
    await db.query(`INSERT INTO orgs VALUES ('b', 'B', 't')`);
    // At start it is neither owner nor member of the owner, so the check must refuse it for CREATEROLE itself.
    const atStart = await checkRequestRole(urlAs(role));
    // What such a role can do, as itself, with no superuser help:
    const owner = decodeURIComponent(new URL(db.ownerUrl).username);
    const c = new pg.Client({ connectionString: urlAs(role) });
    await c.connect();
    try {
      await c.query(`GRANT "${owner}" TO ${role}`);
      await c.query(`SET ROLE "${owner}"`);
      expect((await c.query('SELECT id FROM public.orgs ORDER BY id')).rows.map((r) => r.id)).toContain('b');
    } finally {
      await c.end();
    }
    expect(atStart.ok).toBe(false);
  });

  it('a member of a BYPASSRLS role (SET ROLE takes the bypass)', async () => {
    const bypass = `${tag}_bypass`;
    const member = `${tag}_member`;
    await db.query(`CREATE ROLE ${bypass} NOLOGIN BYPASSRLS`);
    await db.query(`CREATE ROLE ${member} LOGIN IN ROLE ${bypass}`);
    await db.query(`GRANT CONNECT ON DATABASE "${db.name}" TO ${member}`);
    expect((await checkRequestRole(urlAs(member))).ok).toBe(false);
  });
});
