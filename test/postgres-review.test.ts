import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresChangeFeed } from '../src/store/postgres/changes.ts';
import { checkRequestRole, migratePostgres } from '../src/store/postgres/migrate.ts';
import { createTestGateway, ORG_A, type Dialect, type TestGateway } from './helpers/gateway.ts';
import { asSuperuser, createScratchDatabase, postgresMultiProcess, type ScratchDatabase } from './helpers/postgres.ts';
import { pgServer } from './helpers/pg-server.ts';

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

describe.skipIf(!onServer)('the cross-org definer path takes only what its callers send', () => {
  let db: ScratchDatabase;
  beforeAll(async () => {
    db = await createScratchDatabase();
    await db.query(`INSERT INTO orgs VALUES ('b', 'B', 't')`);
    await db.query(
      `INSERT INTO api_keys (id, org_id, name, prefix, hash, scopes, created_at) VALUES ('kb', 'b', 'kb', 'p', 'hash-b', '[]', '2026-01-01T00:00:00.000Z')`,
    );
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("tenantgate_touch_keys does not let the request role plant an arbitrary last-used text on another org's key", async () => {
    const c = new pg.Client({ connectionString: db.requestUrl });
    await c.connect();
    try {
      await c.query(`SELECT set_config('app.org_id', 'a', false)`);
      // Text that sorts after every time, a well-formed time years ahead, one just past the 5-minute slack, a local time.
      const soon = new Date(Date.now() + 6 * 60_000).toISOString();
      for (const planted of ['9999-not-a-time', 'zzzz', '2999-01-01T00:00:00.000Z', soon, '2026-12-02T15:00:00.000+01:00']) {
        await c.query(`SELECT public.tenantgate_touch_keys(ARRAY['kb'], ARRAY[$1])`, [planted]);
        expect(await db.query(`SELECT last_used_at FROM api_keys WHERE id = 'kb'`)).toEqual([{ last_used_at: null }]);
      }
      // A real touch afterwards must still land (a planted future value would freeze it forever).
      await c.query(`SELECT public.tenantgate_touch_keys(ARRAY['kb'], ARRAY['2026-12-02T14:00:00.000Z'])`);
    } finally {
      await c.end();
    }
    expect(await db.query(`SELECT last_used_at FROM api_keys WHERE id = 'kb'`)).toEqual([{ last_used_at: '2026-12-02T14:00:00.000Z' }]);
  });

  it("tenantgate_credentials_not_under_key names rows, never hands over another org's sealed bytes", async () => {
    await db.query(`INSERT INTO modules (org_id, module_id, name, version, installed_at, updated_at) VALUES ('b', 'mb', 'mb', '1.0.0', 't', 't')`);
    await db.query(
      `INSERT INTO credentials VALUES ('b', 'mb', '\\x0102', '\\x0304', '\\x0506', 'mk_old', '["t"]', 't', 't')`,
    );
    const c = new pg.Client({ connectionString: db.requestUrl });
    await c.connect();
    try {
      await c.query(`SELECT set_config('app.org_id', 'a', false)`);
      const res = await c.query(`SELECT * FROM public.tenantgate_credentials_not_under_key('mk_new', 10)`);
      expect(res.fields.map((f) => f.name)).toEqual(['org_id', 'module_id']);
      expect(res.rows).toEqual([{ org_id: 'b', module_id: 'mb' }]);
      // Nor does the report function hand over more than the API shows (every column is a Module field).
      const report = await c.query(`SELECT * FROM public.tenantgate_unhealthy_modules(0)`);
      expect(report.fields.map((f) => f.name)).not.toContain('ciphertext');
    } finally {
      await c.end();
    }
  });
});

// Semantics the SQLite store has and the PostgreSQL one must match, over HTTP.
describe.each<Dialect>(['sqlite', 'postgres'])('on %s, over HTTP', (dialect) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ dialect });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('a usage count past 2^31 - 1 (usageCount is a Float in the API; SQLite holds 64 bits)', async () => {
    const start = 2_147_483_000;
    if (dialect === 'postgres') {
      await gw.postgres!.query(`UPDATE modules SET usage_count = $1 WHERE org_id = $2 AND module_id = 'github'`, [start, ORG_A]);
    } else {
      gw.opened.sqlite.prepare(`UPDATE modules SET usage_count = ? WHERE org_id = ? AND module_id = 'github'`).run(start, ORG_A);
    }
    const res = await gw.gql(gw.keys.admin, `mutation { recordModuleUsage(orgId: "${ORG_A}", moduleId: "github", count: 1000000) { usageCount } }`);
    expect(res.body).toEqual({ data: { recordModuleUsage: { usageCount: start + 1_000_000 } } });
    // Past 2^32 too, and through the platform report (the definer function's column, read in array mode).
    for (let i = 0; i < 3; i++) {
      await gw.gql(gw.keys.admin, `mutation { recordModuleUsage(orgId: "${ORG_A}", moduleId: "github", count: 1000000) { usageCount } }`);
    }
    if (dialect === 'postgres') {
      await gw.postgres!.query(`UPDATE modules SET usage_count = usage_count + $1 WHERE org_id = $2 AND module_id = 'github'`, [2 ** 40, ORG_A]);
    } else {
      gw.opened.sqlite.prepare(`UPDATE modules SET usage_count = usage_count + ? WHERE org_id = ? AND module_id = 'github'`).run(2 ** 40, ORG_A);
    }
    const total = start + 4_000_000 + 2 ** 40;
    await gw.gql(gw.keys.admin, `mutation { reportModuleHealth(orgId: "${ORG_A}", moduleId: "github", status: DEGRADED) { id } }`);
    const report = await gw.gql(gw.keys.admin, '{ unhealthyModules { id orgId usageCount } }');
    expect(report.body.data.unhealthyModules).toContainEqual({ id: 'github', orgId: ORG_A, usageCount: total });
    const own = await gw.gql(gw.keys.a, '{ module(id: "github") { usageCount } }');
    expect(own.body).toEqual({ data: { module: { usageCount: total } } });
  });

  // PostgreSQL cannot store U+0000 in text or jsonb; SQLite could. Both refuse it alike (src/repos/validate.ts).
  const badInputCode = (res: { body: { errors?: Array<{ extensions?: { code?: string } }> } }) => res.body.errors?.[0]?.extensions?.code;

  it('a NUL character in a module name or description is BAD_USER_INPUT, never an internal error', async () => {
    const name = await gw.gql(gw.keys.a, 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id name } }', {
      i: { id: 'nul-name', name: 'a\u0000b', version: '1.0.0' },
    });
    const description = await gw.gql(gw.keys.a, 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id name } }', {
      i: { id: 'nul-description', name: 'ok', version: '1.0.0', description: 'x\u0000' },
    });
    for (const res of [name, description]) expect(badInputCode(res), JSON.stringify(res.body)).toBe('BAD_USER_INPUT');
    // Nothing was stored, and a NUL in a config (JSON text, where it is escaped) is kept.
    const config = await gw.gql(gw.keys.a, 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id config } }', {
      i: { id: 'nul-config', name: 'ok', version: '1.0.0', config: { 'k\u0000': 'v\u0000' } },
    });
    expect(config.body).toEqual({ data: { installModule: { id: 'nul-config', config: { 'k\u0000': 'v\u0000' } } } });
    const ids = await gw.gql(gw.keys.a, '{ modules(first: 50) { nodes { id } } }');
    expect(JSON.stringify(ids.body)).not.toContain('nul-name');
    expect(JSON.stringify(ids.body)).not.toContain('nul-description');
  });

  it('a NUL character in a credential field name, an API key name or a looked-up id is BAD_USER_INPUT, never an internal error', async () => {
    const set = await gw.gql(gw.keys.a, 'mutation($s: JSONObject!) { setCredential(moduleId: "github", secret: $s) { fields } }', { s: { 'a\u0000b': 'x' } });
    const key = await gw.gql(gw.keys.a, 'mutation($n: String!) { createApiKey(input: { name: $n, scopes: ["modules:read"] }) { apiKey { name } } }', { n: 'k\u0000' });
    const lookup = await gw.gql(gw.keys.a, 'query($id: ID!) { module(id: $id) { id } }', { id: 'git\u0000hub' });
    const has = await gw.gql(gw.keys.a, 'query($id: ID!) { hasCredential(moduleId: $id) }', { id: 'git\u0000hub' });
    for (const res of [set, key, lookup, has]) expect(badInputCode(res), JSON.stringify(res.body)).toBe('BAD_USER_INPUT');
    // A NUL in a credential value is sealed bytes, never text: it is stored and revealed as given.
    const value = await gw.gql(gw.keys.a, 'mutation($s: JSONObject!) { setCredential(moduleId: "github", secret: $s) { fields } }', { s: { token: 'x\u0000y' } });
    expect(value.body).toEqual({ data: { setCredential: { fields: ['token'] } } });
  });
});

describe('the change feed stops vouching once its heartbeat is late', () => {
  let db: ScratchDatabase;
  let proxy: net.Server;
  let frozen = false;
  const sockets = new Set<net.Socket>();
  beforeAll(async () => {
    db = await createScratchDatabase();
    const target = new URL(db.requestUrl);
    // A TCP proxy that can go silent without closing anything: what a dead peer or a dropped route looks like.
    proxy = net.createServer((inbound) => {
      const outbound = net.connect(Number(target.port || 5432), target.hostname);
      for (const s of [inbound, outbound]) {
        sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => sockets.delete(s));
      }
      inbound.on('data', (b) => frozen || outbound.write(b));
      outbound.on('data', (b) => frozen || inbound.write(b));
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => proxy?.close(() => resolve()));
    await db?.drop();
  });

  it('a silently dead listening connection vouches for at most the heartbeat interval plus its margin', async () => {
    const url = new URL(db.requestUrl);
    url.host = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const heartbeatMs = 300; // margin: min(1 s, 300 ms), so at most 600 ms
    // The heartbeat's own timeout is long here, so what ends the vouching is its lateness, not the loss being noticed.
    const feed = await createPostgresChangeFeed({ client: { connectionString: url.toString() }, heartbeatMs, heartbeatTimeoutMs: 3_000 });
    try {
      expect(feed.version(ORG_A)).toBeDefined();
      // Alive: it keeps vouching past the bound, heartbeat after heartbeat.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(feed.version(ORG_A)).toBeDefined();
      frozen = true;
      const since = Date.now();
      while (feed.version(ORG_A) !== undefined && Date.now() - since < 5_000) await new Promise((r) => setTimeout(r, 20));
      const vouchedFor = Date.now() - since;
      expect(feed.version(ORG_A)).toBeUndefined();
      expect(feed.listening).toBe(true); // the loss itself is not noticed yet
      expect(vouchedFor).toBeLessThanOrEqual(2 * heartbeatMs + 300);
    } finally {
      frozen = false;
      await feed.close();
    }
  });
});

describe.skipIf(!onServer)('ids and page order compare byte for byte, whatever the database collation', () => {
  const name = `tg_review_icu_${process.pid}`;
  let server: Awaited<ReturnType<typeof pgServer>>;
  beforeAll(async () => {
    server = await pgServer();
    await asSuperuser('postgres', (c) => c.query(`CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`));
  });
  afterAll(async () => {
    await asSuperuser('postgres', (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => {});
  });

  it('on an en-US ICU database, modules and orgs sort as SQLite (and C) sort them', async () => {
    await migratePostgres({ ownerUrl: server.superuserUrl(name) });
    const ids = ['a1', 'a_1', 'a-2', 'a.b', 'ab'];
    const rows = await asSuperuser(name, async (c) => {
      // The database's own order differs, or this case would prove nothing.
      const plain = (await c.query(`SELECT string_agg(x, ' ' ORDER BY x) AS s FROM unnest($1::text[]) AS x`, [ids])).rows[0].s;
      for (const id of ids) await c.query(`INSERT INTO orgs VALUES ($1, $1, 't')`, [id]);
      for (const id of ids) {
        await c.query(`INSERT INTO modules (org_id, module_id, name, version, installed_at, updated_at) VALUES ('ab', $1, 'm', '1.0.0', 't', 't')`, [id]);
      }
      const orgOrder = (await c.query(`SELECT string_agg(id, ' ' ORDER BY id) AS s FROM orgs WHERE id <> 'default'`)).rows[0].s;
      const page = (await c.query(`SELECT string_agg(module_id, ' ' ORDER BY module_id) AS s FROM modules WHERE org_id = 'ab' AND module_id > 'a.b'`)).rows[0].s;
      const collations = (
        await c.query(`SELECT a.attrelid::regclass::text || '.' || a.attname AS col, c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
                        WHERE a.attrelid = ANY ('{orgs,api_keys,modules,credentials}'::regclass[]) AND a.attname IN ('id', 'org_id', 'module_id', 'created_at') ORDER BY 1`)
      ).rows;
      return { plain, orgOrder, page, collations };
    });
    const sqlite = [...ids].sort(); // JavaScript compares UTF-16 units; for these ASCII ids that is SQLite's BINARY order
    expect(rows.plain).not.toBe(sqlite.join(' '));
    expect(rows.orgOrder).toBe(sqlite.join(' '));
    expect(rows.page).toBe(sqlite.filter((id) => id > 'a.b').join(' '));
    // Ids, and api_keys.created_at (keys are listed by it); other created_at columns order nothing.
    const ordering = rows.collations.filter((r: { col: string }) => !r.col.endsWith('.created_at') || r.col === 'api_keys.created_at');
    expect(ordering).toHaveLength(8);
    expect(ordering.filter((r: { collname: string }) => r.collname !== 'C')).toEqual([]);
  });
});
