/**
 * The audit log (issue 15 items 1-4), over HTTP on the served listener, on both dialects (ON_BOTH
 * in vitest.config.ts): every change and secret read recorded once, in its own transaction, with
 * the actor (key id and prefix, request id, client address), the target and the outcome, never a
 * value; a change whose record cannot be written is not made, and a reveal is refused; auditLog
 * and orgAuditLog read it, org by org; the chain stays linear under concurrent writers (several
 * pools on PostgreSQL).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../src/auth/key-format.ts';
import { captureLogger } from '../src/logger.ts';
import { verifyAudit } from '../src/maintenance/audit.ts';
import { AUDIT_ACTIONS, SYSTEM_ACTOR, type AuditActor } from '../src/store/types.ts';
import { failure, install, ok, REVEAL, SET_CREDENTIAL } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, requestLines, type TestGateway } from './helpers/gateway.ts';
import { rawRows, rawRun } from './helpers/raw.ts';

const NODE = 'id seq at action outcome actorKeyId actorKeyPrefix actorVia targetId requestId clientAddress';
const LOG = `query($first: Int, $after: String, $filter: AuditLogFilter) { auditLog(first: $first, after: $after, filter: $filter) {
  edges { cursor node { ${NODE} } } pageInfo { hasNextPage endCursor } } }`;
const ORG_LOG = `query($org: ID!, $first: Int, $after: String, $filter: AuditLogFilter) { orgAuditLog(orgId: $org, first: $first, after: $after, filter: $filter) {
  edges { cursor node { ${NODE} } } pageInfo { hasNextPage endCursor } } }`;

type Node = {
  id: string; seq: number; at: string; action: string; outcome: string; actorKeyId: string | null; actorKeyPrefix: string | null;
  actorVia: string; targetId: string | null; requestId: string | null; clientAddress: string | null;
};

/** Recognisable values that must never reach an audit row. */
const SECRET = 'SECRET-VALUE-7c1e9a';
const CONFIG = 'CONFIG-VALUE-44b2d0';
const NAME = 'NAME-VALUE-90aa31';

let gw: TestGateway;

async function keyRow(secret: string) {
  const rows = await rawRows<{ id: string; prefix: string; org_id: string }>(gw, 'SELECT id, prefix, org_id FROM api_keys WHERE hash = ?', [hashKey(secret)]);
  return rows[0]!;
}

async function log(key: string, variables: Record<string, unknown> = {}): Promise<Node[]> {
  return ok(await gw.gql(key, LOG, { first: 100, ...variables })).auditLog.edges.map((e: { node: Node }) => e.node);
}

async function orgLog(orgId: string, variables: Record<string, unknown> = {}): Promise<Node[]> {
  return ok(await gw.gql(gw.keys.admin, ORG_LOG, { org: orgId, first: 100, ...variables })).orgAuditLog.edges.map((e: { node: Node }) => e.node);
}

/** The records `keyId` made, oldest first. */
const by = (nodes: Node[], keyId: string) => nodes.filter((n) => n.actorKeyId === keyId).reverse();

beforeAll(async () => {
  gw = await createTestGateway();
});
afterAll(async () => gw?.close());

describe('what is recorded', () => {
  it('every change and secret read of a tenant key, once, with its actor, target and outcome', async () => {
    const secretA = await gw.key(ORG_A, ['modules:read', 'modules:write', 'credentials:write', 'credentials:reveal', 'keys:manage', 'audit:read']);
    const me = await keyRow(secretA);
    const from = requestLines(gw).length;

    const created = ok(await gw.gql(secretA, 'mutation { createApiKey(input: { name: "audited", scopes: ["modules:read"] }) { apiKey { id } secret } }')).createApiKey;
    ok(await gw.gql(secretA, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id: created.apiKey.id }));
    ok(await install(gw, secretA, { id: 'audited', name: NAME, config: { token: CONFIG } }));
    failure(await install(gw, secretA, { id: 'audited' }), 'CONFLICT');
    ok(await gw.gql(secretA, 'mutation { updateModule(id: "audited", input: { version: "1.0.1" }) { id } }'));
    failure(await gw.gql(secretA, 'mutation { updateModule(id: "never-installed", input: { version: "1.0.1" }) { id } }'), 'NOT_FOUND');
    ok(await gw.gql(secretA, 'mutation { disableModule(id: "audited") { id } }'));
    ok(await gw.gql(secretA, 'mutation { enableModule(id: "audited") { id } }'));
    ok(await gw.gql(secretA, SET_CREDENTIAL, { m: 'audited', s: { token: SECRET } }));
    expect(ok(await gw.gql(secretA, REVEAL, { m: 'audited' })).credentialSecret).toEqual({ token: SECRET });
    ok(await gw.gql(secretA, 'mutation { deleteCredential(moduleId: "audited") }'));
    ok(await gw.gql(secretA, 'mutation { uninstallModule(id: "audited") { id } }'));

    const mine = by(await log(secretA), me.id);
    expect(mine.map((n) => [n.action, n.targetId, n.outcome])).toEqual([
      ['KEY_CREATE', created.apiKey.id, 'SUCCESS'],
      ['KEY_REVOKE', created.apiKey.id, 'SUCCESS'],
      ['MODULE_INSTALL', 'audited', 'SUCCESS'],
      ['MODULE_INSTALL', 'audited', 'CONFLICT'],
      ['MODULE_UPDATE', 'audited', 'SUCCESS'],
      ['MODULE_UPDATE', 'never-installed', 'NOT_FOUND'],
      ['MODULE_DISABLE', 'audited', 'SUCCESS'],
      ['MODULE_ENABLE', 'audited', 'SUCCESS'],
      ['CREDENTIAL_SET', 'audited', 'SUCCESS'],
      ['CREDENTIAL_REVEAL', 'audited', 'SUCCESS'],
      ['CREDENTIAL_DELETE', 'audited', 'SUCCESS'],
      ['MODULE_UNINSTALL', 'audited', 'SUCCESS'],
    ]);
    // The actor: the key's id and display prefix, the request (its id is in the request log line too) and its address.
    const requestIds = new Set(requestLines(gw, from).map((l) => l.requestId));
    for (const n of mine) {
      expect(n).toMatchObject({ actorKeyPrefix: me.prefix, actorVia: 'API', clientAddress: '127.0.0.1' });
      expect(n.id).toMatch(/^au_[a-z2-7]{24}$/);
      expect(requestIds.has(n.requestId), `request ${n.requestId} is in the request log`).toBe(true);
    }
    expect(new Set(mine.map((n) => n.requestId)).size).toBe(mine.length);
    expect(me.prefix.length).toBeLessThan(secretA.length / 2);
  });

  it("the admin's changes: org created (in the new org's log), renamed, suspended, resumed, quota set, deleted (in default's log)", async () => {
    const admin = await keyRow(gw.keys.admin);
    const org = `audit-org-${Date.now()}`;
    ok(await gw.gql(gw.keys.admin, 'mutation($id: String!) { createOrg(input: { id: $id, name: "Audited" }) { id } }', { id: org }));
    failure(await gw.gql(gw.keys.admin, 'mutation($id: String!) { createOrg(input: { id: $id, name: "Again" }) { id } }', { id: org }), 'CONFLICT');
    ok(await gw.gql(gw.keys.admin, 'mutation($id: ID!) { renameOrg(id: $id, name: "Renamed") { id } }', { id: org }));
    ok(await gw.gql(gw.keys.admin, 'mutation($id: ID!) { suspendOrg(id: $id, reason: "unpaid") { id } }', { id: org }));
    ok(await gw.gql(gw.keys.admin, 'mutation($id: ID!) { resumeOrg(id: $id) { id } }', { id: org }));
    ok(await gw.gql(gw.keys.admin, 'mutation($id: ID!) { setOrgQuota(orgId: $id, input: { runUnitsPerMonth: 5 }) { orgId } }', { id: org }));
    expect(by(await orgLog(org), admin.id).map((n) => [n.action, n.targetId, n.outcome])).toEqual([
      ['ORG_CREATE', org, 'SUCCESS'],
      ['ORG_CREATE', org, 'CONFLICT'],
      ['ORG_RENAME', org, 'SUCCESS'],
      ['ORG_SUSPEND', org, 'SUCCESS'],
      ['ORG_RESUME', org, 'SUCCESS'],
      ['QUOTA_SET', org, 'SUCCESS'],
    ]);

    ok(await gw.gql(gw.keys.admin, 'mutation($id: ID!) { deleteOrg(id: $id, confirm: $id) { id } }', { id: org }));
    // The org's own log went with it; the operator org's holds the deletion.
    expect(await rawRows(gw, 'SELECT seq FROM audit_log WHERE org_id = ?', [org])).toEqual([]);
    const deletion = by(await orgLog('default', { filter: { actions: ['ORG_DELETE'] } }), admin.id);
    expect(deletion.map((n) => [n.action, n.targetId, n.outcome])).toEqual([['ORG_DELETE', org, 'SUCCESS']]);
    failure(await gw.gql(gw.keys.admin, ORG_LOG, { org }), 'NOT_FOUND');
  });

  it('a revocation with cascade records each key it ended', async () => {
    const root = await gw.key(ORG_A, ['modules:read', 'keys:manage', 'audit:read']);
    const child = ok(await gw.gql(root, 'mutation { createApiKey(input: { name: "child", scopes: ["modules:read", "keys:manage"] }) { apiKey { id } secret } }')).createApiKey;
    const grandchild = ok(await gw.gql(child.secret, 'mutation { createApiKey(input: { name: "gc", scopes: ["modules:read"] }) { apiKey { id } } }')).createApiKey;
    ok(await gw.gql(root, 'mutation($id: ID!) { revokeApiKey(id: $id, cascade: true) { id } }', { id: child.apiKey.id }));
    const revocations = by(await log(root, { filter: { actions: ['KEY_REVOKE'] } }), (await keyRow(root)).id);
    expect(revocations.map((n) => n.targetId).sort()).toEqual([child.apiKey.id, grandchild.apiKey.id].sort());
  });

  it('never a value: no secret, config, name or key in any column of any record', async () => {
    const rows = await rawRows(gw, 'SELECT * FROM audit_log');
    expect(rows.length).toBeGreaterThan(10);
    const keys = await rawRows<{ hash: string; name: string }>(gw, 'SELECT hash, name FROM api_keys');
    const text = JSON.stringify(rows);
    for (const value of [SECRET, CONFIG, NAME, gw.keys.a, gw.keys.b, gw.keys.admin, 'unpaid', 'Renamed', ...keys.map((k) => k.hash)]) {
      expect(text.includes(value), `an audit row holds ${value.slice(0, 12)}…`).toBe(false);
    }
  });

  it('the start-up and test set-up act as the gateway itself (SYSTEM): org A holds its ORG_CREATE', async () => {
    const records = await orgLog(ORG_A, { filter: { actions: ['ORG_CREATE'] } });
    expect(records.map((n) => [n.actorVia, n.actorKeyId, n.targetId])).toEqual([['SYSTEM', null, ORG_A]]);
  });
});

describe('a change whose record cannot be written is not made', () => {
  const breakAudit = async () => {
    if (gw.postgres) {
      await gw.postgres.query(`CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$`);
      await gw.postgres.query('CREATE TRIGGER audit_down BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_down()');
    } else {
      gw.opened.sqlite.exec(`CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit down'); END`);
    }
  };
  const repair = async () => {
    if (gw.postgres) {
      await gw.postgres.query('DROP TRIGGER audit_down ON audit_log');
      await gw.postgres.query('DROP FUNCTION audit_down()');
    } else {
      gw.opened.sqlite.exec('DROP TRIGGER audit_down');
    }
  };

  it('writes answer SERVICE_UNAVAILABLE and change nothing; a reveal is refused without its secret', async () => {
    ok(await install(gw, gw.keys.a, { id: 'unrecorded' }));
    ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'unrecorded', s: { token: SECRET } }));
    const before = (await rawRows(gw, 'SELECT count(*) AS n FROM audit_log'))[0];
    await breakAudit();
    try {
      failure(await install(gw, gw.keys.a, { id: 'never-made' }), 'SERVICE_UNAVAILABLE');
      failure(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'unrecorded', s: { token: 'replaced' } }), 'SERVICE_UNAVAILABLE');
      failure(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "unrecorded") { id } }'), 'SERVICE_UNAVAILABLE');
      failure(await gw.gql(gw.keys.a, 'mutation { createApiKey(input: { name: "x", scopes: ["modules:read"] }) { apiKey { id } } }'), 'SERVICE_UNAVAILABLE');
      const reveal = await gw.gql(gw.keys.a, REVEAL, { m: 'unrecorded' });
      failure(reveal, 'SERVICE_UNAVAILABLE');
      expect(reveal.text).not.toContain(SECRET);
    } finally {
      await repair();
    }
    expect((await rawRows(gw, 'SELECT count(*) AS n FROM audit_log'))[0]).toEqual(before);
    expect(ok(await gw.gql(gw.keys.a, '{ module(id: "never-made") { id } }')).module).toBeNull();
    const module = ok(await gw.gql(gw.keys.a, '{ module(id: "unrecorded") { enabled } }')).module;
    expect(module).toEqual({ enabled: true });
    expect(ok(await gw.gql(gw.keys.a, REVEAL, { m: 'unrecorded' })).credentialSecret).toEqual({ token: SECRET });
    expect((await rawRows(gw, "SELECT name FROM api_keys WHERE name = 'x'")).length).toBe(0);
    const verified = await verifyAudit(gw.opened.store, { logger: captureLogger() });
    expect(verified.failures).toEqual([]);
  });
});

describe('reading the log', () => {
  it('newest first, paged by cursor, filtered by action, time and actor', async () => {
    const secret = await gw.key(ORG_A, ['modules:write', 'audit:read']);
    const me = await keyRow(secret);
    for (let i = 0; i < 5; i++) ok(await install(gw, secret, { id: `paged-${i}` }));
    const page1 = ok(await gw.gql(secret, LOG, { first: 3, filter: { actorKeyId: me.id } })).auditLog;
    expect(page1.edges.map((e: { node: Node }) => e.node.targetId)).toEqual(['paged-4', 'paged-3', 'paged-2']);
    expect(page1.pageInfo.hasNextPage).toBe(true);
    const page2 = ok(await gw.gql(secret, LOG, { first: 3, after: page1.pageInfo.endCursor, filter: { actorKeyId: me.id } })).auditLog;
    expect(page2.edges.map((e: { node: Node }) => e.node.targetId)).toEqual(['paged-1', 'paged-0']);
    expect(page2.pageInfo.hasNextPage).toBe(false);
    const seqs = [...page1.edges, ...page2.edges].map((e: { node: Node }) => e.node.seq);
    expect([...seqs].sort((x, y) => y - x)).toEqual(seqs);

    const all = await log(secret, { filter: { actorKeyId: me.id } });
    const third = all[2]!;
    const since = await log(secret, { filter: { actorKeyId: me.id, since: third.at } });
    expect(since.every((n) => n.at >= third.at)).toBe(true);
    const until = await log(secret, { filter: { actorKeyId: me.id, until: third.at } });
    expect(until.every((n) => n.at < third.at)).toBe(true);
    expect(await log(secret, { filter: { actions: ['KEY_REVOKE'], actorKeyId: me.id } })).toEqual([]);
    failure(await gw.gql(secret, LOG, { after: 'not-a-cursor' }), 'BAD_USER_INPUT');
    failure(await gw.gql(secret, LOG, { first: 101 }), 'BAD_USER_INPUT');
    // Every action has its enum value.
    const schema = ok(await gw.gql(gw.keys.admin, '{ __type(name: "AuditAction") { enumValues { name } } }'));
    expect(schema.__type.enumValues.map((v: { name: string }) => v.name).sort()).toEqual([...AUDIT_ACTIONS].sort());
  });

  it("org A never sees org B's records; B's key ids and cursors answer as missing ones do", async () => {
    ok(await install(gw, gw.keys.b, { id: 'b-audited' }));
    const b = await keyRow(gw.keys.b);
    const bLog = await log(gw.keys.b);
    expect(bLog.length).toBeGreaterThan(0);

    const aLog = await log(gw.keys.a);
    const bIds = new Set(bLog.map((n) => n.id));
    expect(aLog.some((n) => bIds.has(n.id))).toBe(false);
    expect(aLog.some((n) => n.targetId === 'b-audited' || n.actorKeyId === b.id)).toBe(false);
    // B's key id as a filter in A: nothing, exactly as an unknown key id.
    expect(await log(gw.keys.a, { filter: { actorKeyId: b.id } })).toEqual(await log(gw.keys.a, { filter: { actorKeyId: 'key_unknown' } }));
    // B's cursor in A is a position in A's own log (seq), answering what A's own cursor at that position does.
    const bCursor = ok(await gw.gql(gw.keys.b, LOG, { first: 1 })).auditLog.edges[0].cursor;
    const viaB = await log(gw.keys.a, { after: bCursor });
    expect(viaB.some((n) => bIds.has(n.id))).toBe(false);
    expect(viaB).toEqual(await log(gw.keys.a, { after: Buffer.from(`a:${bLog[0]!.seq}`).toString('base64url') }));
    // The admin reads either.
    expect((await orgLog(ORG_B)).map((n) => n.id)).toEqual(bLog.map((n) => n.id));
  });

  it('needs audit:read', async () => {
    const without = await gw.key(ORG_A, ['modules:read']);
    failure(await gw.gql(without, LOG), 'FORBIDDEN');
  });
});

describe('concurrent writers', () => {
  it('keep one linear chain per org: no gap, no fork, every record verifiable', async () => {
    const actor: AuditActor = { ...SYSTEM_ACTOR, via: 'cli' };
    const stores = [gw.opened.store];
    const extra: Array<{ close(): Promise<void> }> = [];
    if (gw.postgres) {
      // Several pools, as several replicas would have.
      const { createPostgresStore } = await import('../src/store/postgres/store.ts');
      for (let i = 0; i < 3; i++) {
        const s = await createPostgresStore({ url: gw.postgres.requestUrl, location: 'test', poolMax: 4, connectionTimeoutMs: 10_000, idleTimeoutMs: 10_000, statementTimeoutMs: 30_000 });
        stores.push(s);
        extra.push(s);
      }
    }
    try {
      const before = (await gw.opened.store.forOrg(ORG_B).audit.head())?.seq ?? 0;
      const writes = stores.flatMap((s, i) =>
        Array.from({ length: 20 }, (_, j) => {
          const at = new Date().toISOString();
          return s.forOrg(ORG_B).modules.insert(
            { moduleId: `race-${i}-${j}`, name: 'r', version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at },
            actor,
          );
        }),
      );
      expect((await Promise.all(writes)).every(Boolean)).toBe(true);
      const head = (await gw.opened.store.forOrg(ORG_B).audit.head())!;
      expect(head.seq).toBe(before + writes.length);
      const chain = await gw.opened.store.forOrg(ORG_B).audit.chain(0, 10_000);
      expect(chain.map((r) => r.seq)).toEqual(Array.from({ length: head.seq }, (_, i) => i + 1));
      const result = await verifyAudit(gw.opened.store, { orgId: ORG_B, logger: captureLogger() });
      expect(result).toMatchObject({ failures: [], checked: head.seq });
    } finally {
      for (const s of extra) await s.close();
    }
  });
});

describe('metrics and retention', () => {
  it('count the records written, by action', async () => {
    const metrics = async () => (await gw.fetch('/metrics')).text();
    const count = (text: string) => Number(/tenantgate_audit_records_total\{action="MODULE_INSTALL"\} (\d+)/.exec(text)?.[1] ?? 0);
    const before = count(await metrics());
    ok(await install(gw, gw.keys.a, { id: 'counted' }));
    expect(count(await metrics())).toBe(before + 1);
    expect(await metrics()).toContain('tenantgate_audit_verify_failures_total');
  });

  it('a prune removes what is older and leaves a checkpoint (unit of the store)', async () => {
    const org = gw.opened.store.forOrg(ORG_A);
    const headBefore = (await org.audit.head())!;
    const cutoff = new Date(Date.now() + 1).toISOString();
    await new Promise((r) => setTimeout(r, 5));
    ok(await install(gw, gw.keys.a, { id: 'after-cutoff' }));
    const pruned = await org.audit.prune(cutoff, SYSTEM_ACTOR);
    expect(pruned).toBe(headBefore.seq);
    const left = await org.audit.chain(0, 1000);
    expect(left.map((r) => r.action)).toEqual(['MODULE_INSTALL', 'AUDIT_CHECKPOINT']);
    expect(left[1]!.targetId).toBe(`through:${headBefore.seq}:${headBefore.hash}`);
    expect((await verifyAudit(gw.opened.store, { orgId: ORG_A, logger: captureLogger() })).failures).toEqual([]);
    // The request role itself can never delete a record (PostgreSQL: no DELETE granted).
    if (gw.postgres) {
      const pg = await import('pg');
      const client = new pg.default.Client({ connectionString: gw.postgres.requestUrl });
      await client.connect();
      try {
        await client.query('BEGIN');
        await client.query(`SELECT set_config('app.org_id', $1, true)`, [ORG_A]);
        await expect(client.query('DELETE FROM audit_log WHERE org_id = $1', [ORG_A])).rejects.toMatchObject({ code: '42501' });
        await client.query('ROLLBACK');
        await client.query('BEGIN');
        await client.query(`SELECT set_config('app.org_id', $1, true)`, [ORG_A]);
        await expect(client.query("UPDATE audit_log SET target_id = 'x' WHERE org_id = $1", [ORG_A])).rejects.toMatchObject({ code: '42501' });
        await client.query('ROLLBACK');
      } finally {
        await client.end();
      }
    }
    expect(await rawRun(gw, 'UPDATE audit_log SET outcome = outcome WHERE org_id = ?', [ORG_A])).toBe(2);
  });
});
