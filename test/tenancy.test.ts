/**
 * The tenancy boundary, proven through the front door.
 *
 * 1. A table with a case for EVERY root Query and Mutation field (the test fails when a field has
 *    none). For a field that takes an id, org A's key on org B's id must answer exactly as on a
 *    random missing id (status and body, after putting <id> where the id is echoed), org B's rows
 *    must not change (all of them, read with raw SQL), and the same call on A's own id must work
 *    (the control). Fields without ids must answer org A the same whatever org B does. Admin-only
 *    fields answer FORBIDDEN to tenant keys whether or not the org named exists, and NOT_FOUND to
 *    the admin for a missing org. No tenant field takes an org id: one passed fails validation.
 * 2. A property-based run of random operation sequences over three orgs, checking after every
 *    step that each org sees exactly its own modules, credentials and usage, as a model says.
 * 3. The seam itself: resolvers never import the store.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { isObjectType } from 'graphql';
import { afterEach, describe, expect, it } from 'vitest';
import { schema } from '../src/graphql/schema.ts';
import { failure, ok, SET_CREDENTIAL, sleep } from './helpers/api.ts';
import { subscribe } from './helpers/sse.ts';
import { rawColumns, rawRows, rawTables } from './helpers/raw.ts';
import { createTestGateway, DEFAULT_DIALECT, lastCache, ORG_A, ORG_B, TENANT_SCOPES, TRANSPORTS, type GqlResponse, type TestGateway, type Transport } from './helpers/gateway.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

// ---------------------------------------------------------------------------------------------
// Fixture: the seeded two-org gateway, plus a credential on each org's own-only module, a second
// key in each org, and an unhealthy module in B, so that B has something behind every id.

interface Fixture {
  gw: TestGateway;
  /** Key ids, read from the store. */
  aKeyIds: string[];
  bKeyIds: string[];
  /** A second key of A's that the control may revoke. */
  aSpareKeyId: string;
  bSpareKeyId: string;
  aMainKeyId: string;
}

const RECORD = 'mutation($i: RecordRunUnitsInput!) { recordRunUnits(input: $i) { repeat event { id units moduleId idempotencyKey keyId } } }';
/** Inside the current month (a report may not be dated in the future), so that usage() sees it. */
const FIXTURE_TIME = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)).toISOString();
const PERIOD = FIXTURE_TIME.slice(0, 7);
let bEventIds: string[] = [];
const eventCursor = (id: string) => Buffer.from(`u:${FIXTURE_TIME}|${id}`).toString('base64url');

const keyIdsOf = async (gw: TestGateway, orgId: string) =>
  (await rawRows<{ id: string }>(gw, 'SELECT id FROM api_keys WHERE org_id = ? ORDER BY id', [orgId])).map((r) => r.id);

const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const gw of gateways.splice(0)) await gw.close();
});

async function fixture(transport: Transport): Promise<Fixture> {
  const gw = await createTestGateway({ transport });
  gateways.push(gw);
  ok(await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'only-org-a', s: { apiKey: 'a-only-value' } }));
  ok(await gw.gql(gw.keys.b, SET_CREDENTIAL, { m: 'only-org-b', s: { apiKey: 'b-only-value' } }));
  ok(await gw.gql(gw.keys.admin, 'mutation { reportModuleHealth(orgId: "org-b", moduleId: "slack", status: UNHEALTHY, message: "b is down") { id } }'));
  const aMainKeyId = ok(await gw.gql(gw.keys.a, '{ viewer { apiKey { id } } }')).viewer.apiKey.id as string;
  const spare = async (key: string) =>
    ok(await gw.gql(key, 'mutation { createApiKey(input: { name: "spare", scopes: ["modules:read"] }) { apiKey { id } } }')).createApiKey.apiKey.id as string;
  const aSpareKeyId = await spare(gw.keys.a);
  const bSpareKeyId = await spare(gw.keys.b);
  // Metering: A has one report, B two (one on its own-only module, under a key A will reuse) and a quota.
  ok(await gw.gql(gw.keys.a, RECORD, { i: { units: 5, idempotencyKey: 'a-first', occurredAt: FIXTURE_TIME } }));
  ok(await gw.gql(gw.keys.b, RECORD, { i: { units: 7, idempotencyKey: 'shared-key', moduleId: 'only-org-b', occurredAt: FIXTURE_TIME } }));
  ok(await gw.gql(gw.keys.b, RECORD, { i: { units: 11, idempotencyKey: 'b-second', occurredAt: FIXTURE_TIME } }));
  ok(await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-b", input: { runUnitsPerMonth: 1000 }) { orgId } }'));
  bEventIds = (await rawRows<{ id: string }>(gw, 'SELECT id FROM run_unit_events WHERE org_id = ? ORDER BY id', [ORG_B])).map((r) => r.id);
  // Last-used times of the setup's requests are written now, not in the middle of a snapshot.
  await gw.app.flush();
  return { gw, aKeyIds: await keyIdsOf(gw, ORG_A), bKeyIds: await keyIdsOf(gw, ORG_B), aSpareKeyId, bSpareKeyId, aMainKeyId };
}

// Tables that hold no tenant data. Any other table must have an org_id column (or be `orgs`), so
// that a new table cannot escape the snapshot.
const GLOBAL_TABLES = new Set(['__drizzle_migrations']);

/** Every row of org `orgId`, in every table, read with raw SQL. */
async function rowsOf(gw: TestGateway, orgId: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of await rawTables(gw)) {
    const columns = await rawColumns(gw, table);
    let rows: unknown[];
    if (columns.includes('org_id')) rows = await rawRows(gw, `SELECT * FROM "${table}" WHERE org_id = ?`, [orgId]);
    else if (table === 'orgs') rows = await rawRows(gw, 'SELECT * FROM orgs WHERE id = ?', [orgId]);
    else if (GLOBAL_TABLES.has(table)) continue;
    else throw new Error(`table ${table} has no org_id column: say whether it holds tenant data`);
    // Served-request counts move with the org's own requests (B's, in some controls), written a
    // second later by the request counter: they are left out, and so are the rows they alone made.
    if (table === 'usage_months' || table === 'usage_hours') {
      rows = (rows as Array<Record<string, unknown>>).filter((r) => Number(r.run_units) !== 0).map(({ requests: _served, ...rest }) => rest);
    }
    out[table] = rows
      .map((row) => JSON.stringify(Object.entries(row as object).map(([k, v]) => [k, Buffer.isBuffer(v) ? `blob:${v.toString('hex')}` : v])))
      .sort();
  }
  return out;
}

const ISO_TIME = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z/g;

const cursorOf = (id: string) => Buffer.from(`m:${id}`).toString('base64url');

/** Status and body, with the id put as <id> wherever it is echoed, and times as <time>. */
function normalise(res: GqlResponse, id: string): unknown {
  const escaped = JSON.stringify(id).slice(1, -1);
  const text = res.text
    .split(escaped)
    .join('<id>')
    .split(cursorOf(id))
    .join('<cursor>')
    .split(eventCursor(id))
    .join('<cursor>')
    .replace(ISO_TIME, '<time>');
  return { status: res.status, body: JSON.parse(text) as unknown };
}

const missingId = (prefix = 'missing') => `${prefix}-${randomUUID().slice(0, 8)}`;

// ---------------------------------------------------------------------------------------------
// The table.

type Who = 'a' | 'admin';

/** A field that takes an id: B's id vs a missing one, from A's key (or the admin's), then A's own. */
interface IdCase {
  kind: 'id';
  title: string;
  query: string;
  vars: (id: string, f: Fixture) => Record<string, unknown>;
  ids: (f: Fixture) => { b: string; missing: string; own: string };
  control: (res: GqlResponse, f: Fixture) => void | Promise<void>;
  /** A second control on A's own `github`, which B has too: it must leave B's look-alike alone. */
  lookAlike?: (res: GqlResponse) => void;
}

/** A field without ids: A's answer must not depend on anything B does. */
interface IsolationCase {
  kind: 'isolation';
  title: string;
  query: string;
  vars?: Record<string, unknown>;
  control: (res: GqlResponse, f: Fixture) => void | Promise<void>;
}

/**
 * An admin-only field. Tenant keys (A's, with every tenant scope) get FORBIDDEN whether the org
 * named is B, A or missing, and nothing changes; the admin's call works (the control); where the
 * field takes an org id, the admin gets NOT_FOUND for a missing org.
 */
interface AdminCase {
  kind: 'admin';
  title: string;
  query: string;
  /** Variables naming `orgId` (ignored by fields that take none). */
  vars: (orgId: string, f: Fixture) => Record<string, unknown>;
  control: (res: GqlResponse, f: Fixture) => void | Promise<void>;
  /** For fields that take an org id: what the admin gets for a missing org. */
  missingOrg?: { message: (orgId: string) => string; sameAs?: (f: Fixture) => { vars: Record<string, unknown>; id: string } };
}

/**
 * A subscription: A's stream (or the admin's) is open while B changes everything it can, and must
 * say nothing of it; then the control's change must be the first thing it says. An admin-only
 * stream refuses A's key with FORBIDDEN.
 */
interface StreamCase {
  kind: 'stream';
  title: string;
  query: string;
  admin?: boolean;
  /** A change the stream must tell of (made after B's), and what its first event must be. */
  control: { change: (f: Fixture) => Promise<void>; expect: (event: Record<string, unknown>) => void };
}

type Case = IdCase | IsolationCase | AdminCase | StreamCase;

const MODULE_SELECTION = 'id orgId name version description config enabled usageCount lastUsedAt installedAt updatedAt hasCredential health { status message checkedAt }';
const moduleIds = (f: Fixture) => ({ b: 'only-org-b', missing: missingId(), own: 'only-org-a' });
const credentialIds = moduleIds;
const notFoundModule = (res: GqlResponse, id = 'only-org-a') => expect(failure(res, 'NOT_FOUND').message).toBe(`Module "${id}" was not found`);
const modulePage = (res: GqlResponse) => ok(res).modules.edges.map((e: { node: { id: string } }) => e.node.id) as string[];
/** A tenant field given an org id: refused before anything runs, whichever org it names. */
const noOrgArgument = (res: GqlResponse, message: string) => {
  expect(failure(res, 'GRAPHQL_VALIDATION_FAILED').message).toBe(message);
  expect(res.body.data).toBeUndefined();
};
const orgIds = () => ({ b: ORG_B, missing: missingId('org'), own: ORG_A });
const missingOrg = { message: (orgId: string) => `Org "${orgId}" was not found` };
const AUDIT_SELECTION = 'id seq at action outcome actorKeyId actorKeyPrefix actorVia targetId requestId clientAddress';
type AuditNode = { action: string; targetId: string | null; actorKeyId: string | null; outcome: string };
const keyIdsIn = (res: GqlResponse, field: string) => (ok(res)[field] as { id: string }[]).map((k) => k.id).sort();

const CASES: Record<string, Case[]> = {
  'Query.viewer': [
    {
      kind: 'isolation',
      title: "the caller's org, key and scopes",
      query: '{ viewer { org { id name createdAt } apiKey { id name prefix scopes createdAt expiresAt revokedAt } scopes } }',
      control: (res, f) => {
        const viewer = ok(res).viewer;
        expect(viewer.org).toMatchObject({ id: ORG_A, name: 'Org A' });
        expect(viewer.apiKey.id).toBe(f.aMainKeyId);
        expect(viewer.scopes).toEqual(TENANT_SCOPES);
      },
    },
  ],
  'Query.modules': [
    {
      kind: 'isolation',
      title: 'the whole list',
      query: `{ modules(first: 100) { totalCount edges { cursor node { ${MODULE_SELECTION} } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`,
      control: (res) => {
        const conn = ok(res).modules;
        expect(conn.totalCount).toBe(3);
        expect(conn.edges.map((e: { node: { id: string; orgId: string; config: { owner: string } } }) => [e.node.id, e.node.orgId, e.node.config.owner])).toEqual([
          ['github', ORG_A, ORG_A],
          ['only-org-a', ORG_A, ORG_A],
          ['slack', ORG_A, ORG_A],
        ]);
      },
    },
    {
      kind: 'isolation',
      title: 'filtered by enabled',
      query: '{ on: modules(enabled: true) { totalCount edges { node { id } } } off: modules(enabled: false) { totalCount edges { node { id } } } }',
      control: (res) => {
        expect(ok(res)).toEqual({
          on: { totalCount: 3, edges: [{ node: { id: 'github' } }, { node: { id: 'only-org-a' } }, { node: { id: 'slack' } }] },
          off: { totalCount: 0, edges: [] },
        });
      },
    },
    {
      kind: 'id',
      // A cursor names a position, so the missing id is a random one at the same position.
      title: "after a cursor naming B's module",
      query: 'query($after: String) { modules(first: 10, after: $after) { totalCount edges { node { id orgId } } pageInfo { hasNextPage hasPreviousPage } } }',
      vars: (id) => ({ after: cursorOf(id) }),
      ids: () => ({ b: 'only-org-b', missing: missingId('only-org-b'), own: 'only-org-a' }),
      control: (res) => expect(modulePage(res)).toEqual(['slack']),
    },
  ],
  'Query.module': [
    {
      kind: 'id',
      title: "B's module",
      query: `query($id: ID!) { module(id: $id) { ${MODULE_SELECTION} } }`,
      vars: (id) => ({ id }),
      ids: moduleIds,
      control: (res) => expect(ok(res).module).toMatchObject({ id: 'only-org-a', orgId: ORG_A, hasCredential: true }),
      lookAlike: (res) => expect(ok(res).module).toMatchObject({ id: 'github', orgId: ORG_A, name: 'github for org-a', config: { owner: ORG_A } }),
    },
    {
      kind: 'id',
      title: "B's unhealthy look-alike: A's own slack shows A's health",
      query: 'query($id: ID!) { module(id: $id) { id orgId health { status message } } }',
      vars: (id) => ({ id }),
      ids: () => ({ b: 'only-org-b', missing: missingId(), own: 'slack' }),
      control: (res) => expect(ok(res).module).toEqual({ id: 'slack', orgId: ORG_A, health: { status: 'UNKNOWN', message: null } }),
    },
  ],
  'Query.credentials': [
    {
      kind: 'isolation',
      title: 'the metadata list',
      query: '{ credentials { moduleId fields createdAt updatedAt } }',
      control: (res) => {
        expect(ok(res).credentials.map((c: { moduleId: string; fields: string[] }) => [c.moduleId, c.fields])).toEqual([
          ['github', ['token']],
          ['only-org-a', ['apiKey']],
        ]);
      },
    },
  ],
  'Query.hasCredential': [
    {
      kind: 'id',
      title: "B's module with a credential",
      query: 'query($id: ID!) { hasCredential(moduleId: $id) }',
      vars: (id) => ({ id }),
      ids: credentialIds,
      control: (res) => expect(ok(res).hasCredential).toBe(true),
      lookAlike: (res) => expect(ok(res).hasCredential).toBe(true),
    },
  ],
  'Query.credentialSecret': [
    {
      kind: 'id',
      title: "B's secret",
      query: 'query($id: ID!) { credentialSecret(moduleId: $id) }',
      vars: (id) => ({ id }),
      ids: credentialIds,
      control: (res) => expect(ok(res).credentialSecret).toEqual({ apiKey: 'a-only-value' }),
    },
    {
      kind: 'id',
      title: "the look-alike github: A's own secret, never B's",
      query: 'query($id: ID!) { credentialSecret(moduleId: $id) }',
      vars: (id) => ({ id }),
      ids: () => ({ b: 'only-org-b', missing: missingId(), own: 'github' }),
      control: (res) => expect(ok(res).credentialSecret).toEqual({ token: 'secret-token-of-org-a' }),
    },
  ],
  'Query.apiKeys': [
    {
      kind: 'isolation',
      title: "the org's keys",
      query: '{ apiKeys { id name prefix scopes createdAt expiresAt revokedAt } }',
      control: (res, f) => expect(ok(res).apiKeys.map((k: { id: string }) => k.id).sort()).toEqual(f.aKeyIds),
    },
    {
      kind: 'id',
      title: 'naming an org: no such argument, whichever org',
      query: 'query($org: ID) { apiKeys(orgId: $org) { id } }',
      vars: (id) => ({ org: id }),
      ids: orgIds,
      control: (res) => noOrgArgument(res, 'Unknown argument "orgId" on field "Query.apiKeys".'),
    },
  ],
  'Query.orgApiKeys': [
    {
      kind: 'admin',
      title: "B's keys",
      query: 'query($org: ID!) { orgApiKeys(orgId: $org) { id name prefix scopes createdAt expiresAt revokedAt descendants { id } } }',
      vars: (orgId) => ({ org: orgId }),
      control: (res, f) => {
        expect(keyIdsIn(res, 'orgApiKeys')).toEqual(f.bKeyIds);
        // B's spare was made by B's main key: the admin sees B's lineage, through B's own org.
        const main = ok(res).orgApiKeys.find((k: { id: string }) => k.id !== f.bSpareKeyId);
        expect(main.descendants).toEqual([{ id: f.bSpareKeyId }]);
      },
      missingOrg,
    },
  ],
  'Query.orgs': [
    {
      kind: 'admin',
      title: 'every org',
      query: '{ orgs { id name createdAt } }',
      vars: () => ({}),
      control: (res) => expect(ok(res).orgs.map((o: { id: string }) => o.id)).toEqual(['default', ORG_A, ORG_B]),
    },
  ],
  'Query.unhealthyModules': [
    {
      kind: 'admin',
      title: 'across orgs',
      query: '{ unhealthyModules { orgId id health { status message } } }',
      vars: () => ({}),
      control: (res) => expect(ok(res).unhealthyModules).toEqual([{ orgId: ORG_B, id: 'slack', health: { status: 'UNHEALTHY', message: 'b is down' } }]),
    },
  ],

  'Query.usage': [
    {
      kind: 'isolation',
      title: "the org's month against its quota",
      // Not `requests`: it counts A's own requests, this one's included (test/usage.test.ts).
      query: `{ usage { runUnits quota remaining nearQuota warnAt periodStart periodEnd requestsPerMinute burst } named: usage(period: "${PERIOD}") { runUnits } }`,
      control: (res) => {
        const usage = ok(res);
        expect(usage.usage).toMatchObject({ runUnits: 5, quota: null, remaining: null, nearQuota: false, requestsPerMinute: null, burst: null });
        expect(usage.usage.periodStart).toBe(`${PERIOD}-01T00:00:00.000Z`);
        expect(usage.named).toEqual({ runUnits: 5 });
      },
    },
  ],
  'Query.usageSeries': [
    {
      kind: 'isolation',
      title: 'hours and days',
      query: 'query($from: DateTime!, $to: DateTime!) { h: usageSeries(from: $from, to: $to, granularity: HOUR) { start runUnits } d: usageSeries(from: $from, to: $to, granularity: DAY) { start runUnits } }',
      vars: { from: FIXTURE_TIME, to: new Date(Date.parse(FIXTURE_TIME) + 2 * 3_600_000).toISOString() },
      control: (res) => {
        const series = ok(res);
        expect(series.h.map((b: { runUnits: number }) => b.runUnits)).toEqual([5, 0]);
        expect(series.d).toEqual([{ start: `${PERIOD}-01T00:00:00.000Z`, runUnits: 5 }]);
      },
    },
  ],
  'Query.runUnitEvents': [
    {
      kind: 'isolation',
      title: "the org's events",
      query: '{ runUnitEvents(first: 100) { edges { cursor node { id units idempotencyKey moduleId occurredAt keyId } } pageInfo { hasNextPage } } }',
      control: (res, f) => {
        const edges = ok(res).runUnitEvents.edges;
        expect(edges.map((e: { node: { units: number; idempotencyKey: string; keyId: string } }) => [e.node.units, e.node.idempotencyKey, e.node.keyId])).toEqual([
          [5, 'a-first', f.aMainKeyId],
        ]);
      },
    },
    {
      kind: 'id',
      // A cursor names a position: B's event there answers like a random id there.
      title: "after a cursor naming B's event",
      query: 'query($after: String) { runUnitEvents(first: 10, after: $after) { edges { node { id units } } pageInfo { hasNextPage hasPreviousPage } } }',
      vars: (id) => ({ after: eventCursor(id) }),
      // The missing id sorts right after B's, so A's events stand on the same side of both.
      ids: () => ({ b: bEventIds[0] ?? '', missing: `${bEventIds[0] ?? ''}0`, own: '' }),
      control: (res) => expect(ok(res).runUnitEvents.edges.map((e: { node: { units: number } }) => e.node.units)).toEqual([5]),
    },
  ],
  'Query.orgUsage': [
    {
      kind: 'admin',
      title: "B's month",
      query: 'query($org: ID!) { orgUsage(orgId: $org) { runUnits quota remaining nearQuota } }',
      vars: (orgId) => ({ org: orgId }),
      control: (res) => expect(ok(res).orgUsage).toEqual({ runUnits: 18, quota: 1000, remaining: 982, nearQuota: false }),
      missingOrg,
    },
  ],
  'Query.orgUsageSeries': [
    {
      kind: 'admin',
      title: "B's days",
      query: 'query($org: ID!, $from: DateTime!, $to: DateTime!) { orgUsageSeries(orgId: $org, from: $from, to: $to, granularity: DAY) { start runUnits } }',
      vars: (orgId) => ({ org: orgId, from: FIXTURE_TIME, to: new Date(Date.parse(FIXTURE_TIME) + 3_600_000).toISOString() }),
      control: (res) => expect(ok(res).orgUsageSeries).toEqual([{ start: `${PERIOD}-01T00:00:00.000Z`, runUnits: 18 }]),
      missingOrg,
    },
  ],
  'Query.orgRunUnitEvents': [
    {
      kind: 'admin',
      title: "B's events",
      query: 'query($org: ID!) { orgRunUnitEvents(orgId: $org, first: 10) { edges { node { idempotencyKey units moduleId } } } }',
      vars: (orgId) => ({ org: orgId }),
      control: (res) =>
        expect(ok(res).orgRunUnitEvents.edges.map((e: { node: unknown }) => e.node).sort((x: { units: number }, y: { units: number }) => x.units - y.units)).toEqual([
          { idempotencyKey: 'shared-key', units: 7, moduleId: 'only-org-b' },
          { idempotencyKey: 'b-second', units: 11, moduleId: null },
        ]),
      missingOrg,
    },
  ],
  'Query.auditLog': [
    {
      kind: 'isolation',
      title: "the org's own records",
      query: `{ auditLog(first: 100) { edges { cursor node { ${AUDIT_SELECTION} } } pageInfo { hasNextPage } } }`,
      control: (res, f) => {
        const nodes = ok(res).auditLog.edges.map((e: { node: AuditNode }) => e.node) as AuditNode[];
        const mine = nodes.filter((n) => n.actorKeyId === f.aMainKeyId).map((n) => [n.action, n.targetId]);
        expect(mine).toEqual(expect.arrayContaining([['CREDENTIAL_SET', 'only-org-a'], ['KEY_CREATE', f.aSpareKeyId]]));
        expect(nodes.some((n) => n.targetId === 'only-org-b' || f.bKeyIds.includes(n.actorKeyId ?? '') || f.bKeyIds.includes(n.targetId ?? ''))).toBe(false);
      },
    },
    {
      kind: 'id',
      title: "what B's key did (as the actor filter)",
      query: `query($id: ID!) { auditLog(first: 100, filter: { actorKeyId: $id }) { edges { node { ${AUDIT_SELECTION} } } pageInfo { hasNextPage } } }`,
      vars: (id) => ({ id }),
      ids: (f) => ({ b: f.bSpareKeyId, missing: missingId('key'), own: f.aMainKeyId }),
      control: (res, f) => {
        const nodes = ok(res).auditLog.edges.map((e: { node: AuditNode }) => e.node) as AuditNode[];
        expect(nodes.length).toBeGreaterThan(0);
        expect(nodes.every((n) => n.actorKeyId === f.aMainKeyId)).toBe(true);
      },
    },
  ],
  'Query.orgAuditLog': [
    {
      kind: 'admin',
      title: "B's records",
      query: `query($org: ID!) { orgAuditLog(orgId: $org, first: 100, filter: { actions: [CREDENTIAL_SET] }) { edges { node { ${AUDIT_SELECTION} } } } }`,
      vars: (orgId) => ({ org: orgId }),
      control: (res) => {
        const nodes = ok(res).orgAuditLog.edges.map((e: { node: AuditNode }) => e.node) as AuditNode[];
        // Newest first: the fixture's credential on B's own-only module, after the seed's on github.
        expect(nodes.map((n) => [n.action, n.targetId, n.outcome])).toEqual([
          ['CREDENTIAL_SET', 'only-org-b', 'SUCCESS'],
          ['CREDENTIAL_SET', 'github', 'SUCCESS'],
        ]);
      },
      missingOrg,
    },
  ],
  'Query.topOrgsByUsage': [
    {
      kind: 'admin',
      title: 'across orgs',
      query: `{ topOrgsByUsage(period: "${PERIOD}") { orgId runUnits } }`,
      vars: () => ({}),
      control: (res) => expect(ok(res).topOrgsByUsage).toEqual([{ orgId: ORG_B, runUnits: 18 }, { orgId: ORG_A, runUnits: 5 }]),
    },
  ],
  'Query.orgQuota': [
    {
      kind: 'admin',
      title: "B's quota",
      query: 'query($org: ID!) { orgQuota(orgId: $org) { orgId runUnitsPerMonth requestsPerMinute burst } }',
      vars: (orgId) => ({ org: orgId }),
      control: (res) => expect(ok(res).orgQuota).toEqual({ orgId: ORG_B, runUnitsPerMonth: 1000, requestsPerMinute: null, burst: null }),
      missingOrg,
    },
  ],

  'Mutation.installModule': [
    {
      kind: 'id',
      title: "B's module id (installs A's own, just as a fresh id would)",
      query: `mutation($i: InstallModuleInput!) { installModule(input: $i) { ${MODULE_SELECTION} } }`,
      vars: (id) => ({ i: { id, name: 'Same name', version: '1.2.3', description: 'same', config: { same: true } } }),
      ids: moduleIds,
      control: async (res, f) => {
        // A's own id is taken in A: CONFLICT, and A's module is unchanged.
        expect(failure(res, 'CONFLICT').message).toBe('Module "only-org-a" is already installed');
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ module(id: "only-org-b") { orgId name } }')).module).toEqual({ orgId: ORG_A, name: 'Same name' });
      },
    },
  ],
  'Mutation.updateModule': [
    {
      kind: 'id',
      title: "B's module",
      query: 'mutation($id: ID!) { updateModule(id: $id, input: { name: "Renamed", config: { hacked: true } }) { id orgId name config } }',
      vars: (id) => ({ id }),
      ids: moduleIds,
      control: (res) => expect(ok(res).updateModule).toEqual({ id: 'only-org-a', orgId: ORG_A, name: 'Renamed', config: { hacked: true } }),
      lookAlike: (res) => expect(ok(res).updateModule).toEqual({ id: 'github', orgId: ORG_A, name: 'Renamed', config: { hacked: true } }),
    },
  ],
  'Mutation.enableModule': [
    {
      kind: 'id',
      title: "B's module",
      query: 'mutation($id: ID!) { enableModule(id: $id) { id orgId enabled } }',
      vars: (id) => ({ id }),
      ids: moduleIds,
      control: (res) => expect(ok(res).enableModule).toEqual({ id: 'only-org-a', orgId: ORG_A, enabled: true }),
      lookAlike: (res) => expect(ok(res).enableModule).toEqual({ id: 'github', orgId: ORG_A, enabled: true }),
    },
  ],
  'Mutation.disableModule': [
    {
      kind: 'id',
      title: "B's module",
      query: 'mutation($id: ID!) { disableModule(id: $id) { id orgId enabled } }',
      vars: (id) => ({ id }),
      ids: moduleIds,
      control: (res) => expect(ok(res).disableModule).toEqual({ id: 'only-org-a', orgId: ORG_A, enabled: false }),
      lookAlike: (res) => expect(ok(res).disableModule).toEqual({ id: 'github', orgId: ORG_A, enabled: false }),
    },
  ],
  'Mutation.uninstallModule': [
    {
      kind: 'id',
      title: "B's module",
      query: 'mutation($id: ID!) { uninstallModule(id: $id) { id orgId hasCredential } }',
      vars: (id) => ({ id }),
      ids: moduleIds,
      control: async (res, f) => {
        expect(ok(res).uninstallModule).toEqual({ id: 'only-org-a', orgId: ORG_A, hasCredential: true });
        expect((await rowsOf(f.gw, ORG_A)).credentials?.some((r) => r.includes('"only-org-a"'))).toBe(false);
      },
      lookAlike: (res) => expect(ok(res).uninstallModule).toEqual({ id: 'github', orgId: ORG_A, hasCredential: true }),
    },
  ],
  'Mutation.setCredential': [
    {
      kind: 'id',
      title: "B's module",
      query: 'mutation($id: ID!) { setCredential(moduleId: $id, secret: { apiKey: "overwritten" }) { moduleId fields } }',
      vars: (id) => ({ id }),
      ids: credentialIds,
      control: async (res, f) => {
        expect(ok(res).setCredential).toEqual({ moduleId: 'only-org-a', fields: ['apiKey'] });
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ credentialSecret(moduleId: "only-org-a") }')).credentialSecret).toEqual({ apiKey: 'overwritten' });
      },
      lookAlike: (res) => expect(ok(res).setCredential).toEqual({ moduleId: 'github', fields: ['apiKey'] }),
    },
    {
      kind: 'id',
      title: 'with an invalid secret: the same BAD_USER_INPUT either way',
      query: 'mutation($id: ID!) { setCredential(moduleId: $id, secret: { apiKey: 1 }) { moduleId } }',
      vars: (id) => ({ id }),
      ids: credentialIds,
      control: (res) => expect(failure(res, 'BAD_USER_INPUT').message).toBe('secret field "apiKey" must be a string, not a number'),
    },
  ],
  'Mutation.deleteCredential': [
    {
      kind: 'id',
      title: "B's credential",
      query: 'mutation($id: ID!) { deleteCredential(moduleId: $id) }',
      vars: (id) => ({ id }),
      ids: credentialIds,
      control: (res) => expect(ok(res).deleteCredential).toBe(true),
      lookAlike: (res) => expect(ok(res).deleteCredential).toBe(true),
    },
  ],
  'Mutation.createApiKey': [
    {
      kind: 'isolation',
      title: "in the caller's org",
      query: 'mutation { createApiKey(input: { name: "isolated", scopes: ["modules:read"] }) { apiKey { name scopes revokedAt } } }',
      control: (res) => expect(ok(res).createApiKey.apiKey).toEqual({ name: 'isolated', scopes: ['modules:read'], revokedAt: null }),
    },
    {
      kind: 'id',
      title: 'naming an org in the input: no such field, whichever org',
      query: 'mutation($org: ID) { createApiKey(input: { name: "x", scopes: ["modules:read"], orgId: $org }) { apiKey { id } secret } }',
      vars: (id) => ({ org: id }),
      ids: orgIds,
      control: async (res, f) => {
        noOrgArgument(res, 'Field "orgId" is not defined by type "CreateApiKeyInput".');
        expect(await keyIdsOf(f.gw, ORG_A)).toEqual(f.aKeyIds);
      },
    },
  ],
  'Mutation.createOrgApiKey': [
    {
      kind: 'admin',
      title: 'a key in B',
      query: 'mutation($org: ID!) { createOrgApiKey(orgId: $org, input: { name: "from the operator", scopes: ["modules:read"] }) { apiKey { id name scopes } secret } }',
      vars: (orgId) => ({ org: orgId }),
      control: async (res, f) => {
        const created = ok(res).createOrgApiKey;
        expect(created.apiKey).toMatchObject({ name: 'from the operator', scopes: ['modules:read'] });
        expect(await keyIdsOf(f.gw, ORG_B)).toEqual([...f.bKeyIds, created.apiKey.id].sort());
        expect(await keyIdsOf(f.gw, ORG_A)).toEqual(f.aKeyIds);
        expect(ok(await f.gw.gql(created.secret, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_B);
      },
      missingOrg,
    },
  ],
  'Mutation.revokeApiKey': [
    {
      kind: 'id',
      title: "B's key id",
      query: 'mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }',
      vars: (id) => ({ id }),
      ids: (f) => ({ b: f.bSpareKeyId, missing: `key_${randomUUID()}`, own: f.aSpareKeyId }),
      control: (res, f) => {
        expect(ok(res).revokeApiKey.id).toBe(f.aSpareKeyId);
        expect(ok(res).revokeApiKey.revokedAt).not.toBeNull();
      },
    },
    {
      kind: 'id',
      title: "B's main key id",
      query: 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }',
      vars: (id) => ({ id }),
      ids: (f) => ({ b: f.bKeyIds.find((id) => id !== f.bSpareKeyId) ?? '', missing: `key_${randomUUID()}`, own: f.aSpareKeyId }),
      control: (res, f) => expect(ok(res).revokeApiKey.id).toBe(f.aSpareKeyId),
    },
    {
      kind: 'id',
      title: 'naming an org: no such argument, whichever org',
      query: 'mutation($id: ID!, $org: ID) { revokeApiKey(id: $id, orgId: $org) { id } }',
      vars: (org, f) => ({ id: f.aSpareKeyId, org }),
      ids: orgIds,
      control: async (res, f) => {
        noOrgArgument(res, 'Unknown argument "orgId" on field "Mutation.revokeApiKey".');
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ apiKeys { id revokedAt } }')).apiKeys.every((k: { revokedAt: unknown }) => k.revokedAt === null)).toBe(true);
      },
    },
    {
      kind: 'id',
      // B's spare was made by B's main key, so a cascade on B's main key would revoke both.
      title: "B's main key id, with cascade",
      query: 'mutation($id: ID!) { revokeApiKey(id: $id, cascade: true) { id revokedAt descendants { id revokedAt } } }',
      vars: (id) => ({ id }),
      ids: (f) => ({ b: f.bKeyIds.find((id) => id !== f.bSpareKeyId) ?? '', missing: `key_${randomUUID()}`, own: f.aMainKeyId }),
      control: async (res, f) => {
        const revoked = ok(res).revokeApiKey;
        expect(revoked.id).toBe(f.aMainKeyId);
        expect(revoked.descendants.map((d: { id: string }) => d.id)).toEqual([f.aSpareKeyId]);
        expect(revoked.descendants[0].revokedAt).toBe(revoked.revokedAt);
        expect((await f.gw.gql(f.gw.keys.a, '{ viewer { org { id } } }')).status).toBe(401);
        expect(ok(await f.gw.gql(f.gw.keys.b, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_B);
      },
    },
    {
      kind: 'id',
      title: 'naming an org, with cascade: no such argument, whichever org',
      query: 'mutation($id: ID!, $org: ID) { revokeApiKey(id: $id, orgId: $org, cascade: true) { id descendants { id } } }',
      vars: (org, f) => ({ id: f.aMainKeyId, org }),
      ids: orgIds,
      control: async (res, f) => {
        noOrgArgument(res, 'Unknown argument "orgId" on field "Mutation.revokeApiKey".');
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_A);
      },
    },
  ],
  'Mutation.revokeOrgApiKey': [
    {
      kind: 'admin',
      title: "B's spare key",
      query: 'mutation($org: ID!, $id: ID!) { revokeOrgApiKey(orgId: $org, id: $id) { id revokedAt descendants { id } } }',
      vars: (orgId, f) => ({ org: orgId, id: f.bSpareKeyId }),
      control: async (res, f) => {
        const revoked = ok(res).revokeOrgApiKey;
        expect(revoked).toMatchObject({ id: f.bSpareKeyId, descendants: [] });
        expect(revoked.revokedAt).not.toBeNull();
        // The org named is the org acted on: B's main key named in A is a missing key of A's.
        const bMain = f.bKeyIds.find((id) => id !== f.bSpareKeyId) ?? '';
        const misnamed = await f.gw.gql(f.gw.keys.admin, 'mutation($id: ID!) { revokeOrgApiKey(orgId: "org-a", id: $id) { id } }', { id: bMain });
        expect(failure(misnamed, 'NOT_FOUND').message).toBe(`API key "${bMain}" was not found`);
        expect(ok(await f.gw.gql(f.gw.keys.b, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_B);
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_A);
      },
      missingOrg,
    },
    {
      kind: 'admin',
      title: "B's main key, with cascade",
      query: 'mutation($org: ID!, $id: ID!) { revokeOrgApiKey(orgId: $org, id: $id, cascade: true) { id revokedAt descendants { id revokedAt } } }',
      vars: (orgId, f) => ({ org: orgId, id: f.bKeyIds.find((id) => id !== f.bSpareKeyId) ?? '' }),
      control: async (res, f) => {
        const revoked = ok(res).revokeOrgApiKey;
        expect(revoked.descendants).toEqual([{ id: f.bSpareKeyId, revokedAt: revoked.revokedAt }]);
        expect((await f.gw.gql(f.gw.keys.b, '{ viewer { org { id } } }')).status).toBe(401);
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_A);
        const aNow = await keyIdsOf(f.gw, ORG_A);
        expect(f.aKeyIds.every((id) => aNow.includes(id))).toBe(true);
      },
      missingOrg,
    },
  ],
  'Mutation.recordRunUnits': [
    {
      kind: 'id',
      title: "attributed to B's module",
      query: 'mutation($m: ID!) { recordRunUnits(input: { units: 3, idempotencyKey: "attributed", moduleId: $m }) { repeat event { units moduleId } } }',
      vars: (id) => ({ m: id }),
      ids: moduleIds,
      control: async (res, f) => {
        expect(ok(res).recordRunUnits).toEqual({ repeat: false, event: { units: 3, moduleId: 'only-org-a' } });
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ usage { runUnits } }')).usage.runUnits).toBe(8);
      },
    },
    {
      kind: 'isolation',
      title: "B's idempotency key: A's own report, not a repeat of B's",
      query: 'mutation { recordRunUnits(input: { units: 2, idempotencyKey: "shared-key" }) { event { units idempotencyKey moduleId } } }',
      control: async (res, f) => {
        expect(ok(res).recordRunUnits.event).toEqual({ units: 2, idempotencyKey: 'shared-key', moduleId: null });
        const again = ok(await f.gw.gql(f.gw.keys.a, 'mutation { recordRunUnits(input: { units: 2, idempotencyKey: "shared-key" }) { repeat } }'));
        expect(again.recordRunUnits.repeat).toBe(true);
      },
    },
  ],
  'Mutation.setOrgQuota': [
    {
      kind: 'admin',
      title: "B's quota",
      query: 'mutation($org: ID!) { setOrgQuota(orgId: $org, input: { runUnitsPerMonth: 20, requestsPerMinute: 600 }) { orgId runUnitsPerMonth requestsPerMinute burst } }',
      vars: (orgId) => ({ org: orgId }),
      control: async (res, f) => {
        expect(ok(res).setOrgQuota).toEqual({ orgId: ORG_B, runUnitsPerMonth: 20, requestsPerMinute: 600, burst: null });
        // B now stands at 18 of 20; A's quota is untouched (none).
        expect(ok(await f.gw.gql(f.gw.keys.b, '{ usage { quota remaining nearQuota burst } }')).usage).toEqual({ quota: 20, remaining: 2, nearQuota: true, burst: 100 });
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ usage { quota requestsPerMinute } }')).usage).toEqual({ quota: null, requestsPerMinute: null });
      },
      missingOrg,
    },
  ],

  'Mutation.renameOrg': [
    {
      kind: 'admin',
      title: 'B renamed',
      query: 'mutation($org: ID!) { renameOrg(id: $org, name: "B renamed") { id name status } }',
      vars: (orgId) => ({ org: orgId }),
      control: async (res, f) => {
        expect(ok(res).renameOrg).toEqual({ id: ORG_B, name: 'B renamed', status: 'ACTIVE' });
        expect(ok(await f.gw.gql(f.gw.keys.b, '{ viewer { org { name } } }')).viewer.org.name).toBe('B renamed');
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ viewer { org { name } } }')).viewer.org.name).toBe('Org A');
      },
      missingOrg,
    },
  ],
  'Mutation.suspendOrg': [
    {
      kind: 'admin',
      title: 'B suspended',
      query: 'mutation($org: ID!) { suspendOrg(id: $org, reason: "unpaid invoice") { id status suspendReason } }',
      vars: (orgId) => ({ org: orgId }),
      control: async (res, f) => {
        expect(ok(res).suspendOrg).toEqual({ id: ORG_B, status: 'SUSPENDED', suspendReason: 'unpaid invoice' });
        expect(failure(await f.gw.gql(f.gw.keys.b, '{ viewer { org { id } } }'), 'ORG_SUSPENDED').message).toContain('suspended');
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_A);
      },
      missingOrg,
    },
  ],
  'Mutation.resumeOrg': [
    {
      kind: 'admin',
      title: 'B resumed',
      query: 'mutation($org: ID!) { resumeOrg(id: $org) { id status suspendedAt } }',
      vars: (orgId) => ({ org: orgId }),
      control: async (res, f) => {
        expect(ok(res).resumeOrg).toEqual({ id: ORG_B, status: 'ACTIVE', suspendedAt: null });
        expect(ok(await f.gw.gql(f.gw.keys.b, '{ viewer { org { id } } }')).viewer.org.id).toBe(ORG_B);
      },
      missingOrg,
    },
  ],
  'Mutation.deleteOrg': [
    {
      kind: 'admin',
      title: 'B deleted, A untouched',
      query: 'mutation($org: ID!) { deleteOrg(id: $org, confirm: $org) { id deletedAt } }',
      vars: (orgId) => ({ org: orgId }),
      control: async (res, f) => {
        expect(ok(res).deleteOrg.id).toBe(ORG_B);
        expect(Object.values(await rowsOf(f.gw, ORG_B)).flat()).toEqual([]);
        expect((await f.gw.gql(f.gw.keys.b, '{ viewer { org { id } } }')).status).toBe(401);
        // A keeps everything it had (the fixture's rows).
        const a = await rowsOf(f.gw, ORG_A);
        expect([a.modules?.length, a.credentials?.length, a.api_keys?.length, a.run_unit_events?.length]).toEqual([3, 2, f.aKeyIds.length, 1]);
        expect(ok(await f.gw.gql(f.gw.keys.a, '{ credentialSecret(moduleId: "only-org-a") }')).credentialSecret).toEqual({ apiKey: 'a-only-value' });
      },
      missingOrg,
    },
  ],

  'Mutation.createOrg': [
    {
      kind: 'admin',
      title: "B's id (exists) or a fresh one",
      query: 'mutation($org: String!) { createOrg(input: { id: $org, name: "New" }) { id name } }',
      vars: (orgId) => ({ org: orgId }),
      control: async (res, f) => {
        expect(failure(res, 'CONFLICT').message).toBe('Org "org-b" already exists');
        const fresh = await f.gw.gql(f.gw.keys.admin, 'mutation { createOrg(input: { id: "org-new", name: "New" }) { id name } }');
        expect(ok(fresh).createOrg).toEqual({ id: 'org-new', name: 'New' });
      },
    },
  ],
  'Mutation.reportModuleHealth': [
    {
      kind: 'admin',
      title: "a module of B's",
      query: 'mutation($org: ID!, $m: ID! = "github") { reportModuleHealth(orgId: $org, moduleId: $m, status: DEGRADED, message: "from the test") { orgId id health { status message } } }',
      vars: (orgId) => ({ org: orgId }),
      control: (res) => expect(ok(res).reportModuleHealth).toEqual({ orgId: ORG_B, id: 'github', health: { status: 'DEGRADED', message: 'from the test' } }),
      missingOrg: {
        message: (orgId) => `Module "${orgId}/github" was not found`,
        // A missing org answers exactly like a missing module of an existing org.
        sameAs: () => {
          const id = missingId('module');
          return { vars: { org: ORG_B, m: id }, id: `${ORG_B}/${id}` };
        },
      },
    },
  ],
  'Subscription.moduleEvents': [
    {
      kind: 'stream',
      title: "A's module events while B changes everything",
      query: `subscription { moduleEvents { kind moduleId orgId module { ${MODULE_SELECTION} } } }`,
      control: {
        change: async ({ gw }) => void ok(await gw.gql(gw.keys.a, 'mutation { disableModule(id: "github") { id } }')),
        expect: (event) => expect(event).toMatchObject({ kind: 'CHANGED', moduleId: 'github', orgId: ORG_A, module: { orgId: ORG_A, name: expect.not.stringContaining('B ') } }),
      },
    },
  ],
  'Subscription.moduleHealthEvents': [
    {
      kind: 'stream',
      title: "every org's health reports, admin only",
      query: 'subscription { moduleHealthEvents { kind moduleId orgId module { id orgId health { status } } } }',
      admin: true,
      control: {
        change: async ({ gw }) => void ok(await gw.gql(gw.keys.admin, 'mutation { reportModuleHealth(orgId: "org-b", moduleId: "slack", status: UNHEALTHY) { id } }')),
        expect: (event) => expect(event).toMatchObject({ kind: 'HEALTH_REPORTED', orgId: ORG_B, moduleId: 'slack', module: { orgId: ORG_B, health: { status: 'UNHEALTHY' } } }),
      },
    },
  ],
  'Mutation.recordModuleUsage': [
    {
      kind: 'admin',
      title: "a module of B's",
      query: 'mutation($org: ID!, $m: ID! = "github") { recordModuleUsage(orgId: $org, moduleId: $m, count: 2) { orgId id usageCount } }',
      vars: (orgId) => ({ org: orgId }),
      control: (res) => expect(ok(res).recordModuleUsage).toEqual({ orgId: ORG_B, id: 'github', usageCount: 2 }),
      missingOrg: {
        message: (orgId) => `Module "${orgId}/github" was not found`,
        sameAs: () => {
          const id = missingId('module');
          return { vars: { org: ORG_B, m: id }, id: `${ORG_B}/${id}` };
        },
      },
    },
  ],
};

function rootFields(): string[] {
  const names: string[] = [];
  for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
    if (!isObjectType(root)) continue;
    for (const field of Object.keys(root.getFields())) names.push(`${root.name}.${field}`);
  }
  return names.sort();
}

// Every row runs over the served listener and in process: a path that answers a row differently fails it.
describe.each(TRANSPORTS)('the tenancy table, over %s', (transport) => {
  it('has a case for every root field of the schema, and no case for a field that does not exist', () => {
    const fields = rootFields();
    const missing = fields.filter((f) => !(f in CASES) || CASES[f]?.length === 0);
    expect(missing, `root fields without a tenancy case: add them to CASES in test/tenancy.test.ts`).toEqual([]);
    expect(Object.keys(CASES).filter((c) => !fields.includes(c))).toEqual([]);
  });

  const rows = Object.entries(CASES).flatMap(([field, cases]) => cases.map((c) => [field, c.kind, c.title, c] as const));

  it.each(rows)('%s (%s): %s', async (field, _kind, _title, c) => {
    const f = await fixture(transport);
    const { gw } = f;
    const keyOf = (who: Who) => (who === 'a' ? gw.keys.a : gw.keys.admin);
    const call = (who: Who, vars?: Record<string, unknown>) => gw.gql(keyOf(who), c.query, vars);
    const bBefore = await rowsOf(gw, ORG_B);

    if (c.kind === 'id') {
      const ids = c.ids(f);
      // Not vacuous: B's id names something of B's, the missing id names nothing anywhere.
      expect(ids.b).not.toBe('');
      expect(JSON.stringify(bBefore)).toContain(JSON.stringify(ids.b).slice(1, -1));
      const everyone = JSON.stringify([await rowsOf(gw, ORG_A), bBefore, await rowsOf(gw, 'default')]);
      expect(everyone).not.toContain(ids.missing);

      const onB = await call('a', c.vars(ids.b, f));
      const onMissing = await call('a', c.vars(ids.missing, f));
      expect(normalise(onB, ids.b), `${field} on B's id answered differently from a missing id`).toEqual(normalise(onMissing, ids.missing));
      expect(await rowsOf(gw, ORG_B)).toEqual(bBefore);

      await c.control(await call('a', c.vars(ids.own, f)), f);
      expect(await rowsOf(gw, ORG_B)).toEqual(bBefore);
      if (c.lookAlike) {
        c.lookAlike(await call('a', c.vars('github', f)));
        expect(await rowsOf(gw, ORG_B)).toEqual(bBefore);
      }
      return;
    }

    if (c.kind === 'stream') {
      if (c.admin) {
        const refused = await subscribe(gw, gw.keys.a, c.query);
        await refused.ended();
        expect(refused.results).toHaveLength(1);
        expect(refused.results[0].errors[0]).toMatchObject({ message: `${field} needs the admin scope, which this API key lacks`, extensions: { code: 'FORBIDDEN' } });
      }
      const stream = await subscribe(gw, c.admin ? gw.keys.admin : gw.keys.a, c.query);
      try {
        await sleep(50);
        if (!c.admin) {
          // B (and the admin, on B) changes every kind of row B has: A's stream hears none of it.
          await disturb(f);
          await sleep(400);
          expect(stream.events).toEqual([]);
        }
        await c.control.change(f);
        const first = await stream.nth(0);
        c.control.expect(Object.values(first.data as Record<string, Record<string, unknown>>)[0]!);
      } finally {
        stream.close();
      }
      return;
    }

    if (c.kind === 'isolation') {
      const first = await call('a', c.vars);
      expect(await rowsOf(gw, ORG_B)).toEqual(bBefore);
      await c.control(first, f);
      // B changes everything it can; A's answer must not move.
      await disturb(f);
      await gw.app.flush();
      const bDisturbed = await rowsOf(gw, ORG_B);
      expect(bDisturbed).not.toEqual(bBefore);
      const second = await call('a', c.vars);
      expect(await rowsOf(gw, ORG_B)).toEqual(bDisturbed);
      if (field.startsWith('Query.')) expect(normalise(second, '\u0000')).toEqual(normalise(first, '\u0000'));
      else await c.control(second, f);
      return;
    }

    // Admin-only: tenant keys are refused whatever org is named, B's, A's own or a missing one.
    const refusals: unknown[] = [];
    for (const orgId of [ORG_B, ORG_A, missingId('org')]) {
      const res = await call('a', c.vars(orgId, f));
      expect(failure(res, 'FORBIDDEN').message).toBe(`${field} needs the admin scope, which this API key lacks`);
      refusals.push(normalise(res, orgId));
    }
    expect(refusals[1]).toEqual(refusals[0]);
    expect(refusals[2]).toEqual(refusals[0]);
    expect(await rowsOf(gw, ORG_B)).toEqual(bBefore);

    if (c.missingOrg) {
      const missing = missingId('org');
      const res = await call('admin', c.vars(missing, f));
      expect(failure(res, 'NOT_FOUND').message).toBe(c.missingOrg.message(missing));
      expect(res.body.data).toBeNull();
      expect(res.status).toBe(200);
      if (c.missingOrg.sameAs) {
        const other = c.missingOrg.sameAs(f);
        const res2 = await call('admin', other.vars);
        expect(normalise(res, `${missing}/github`)).toEqual(normalise(res2, other.id));
      }
      expect(await rowsOf(gw, ORG_B)).toEqual(bBefore);
    }

    // The control: the admin's call on B works.
    await c.control(await call('admin', c.vars(ORG_B, f)), f);
  });
});

/** Org B (and the admin, on B) changes every kind of row B has. */
async function disturb(f: Fixture): Promise<void> {
  const { gw } = f;
  const b = (query: string, variables?: Record<string, unknown>) => gw.gql(gw.keys.b, query, variables).then(ok);
  await b('mutation { installModule(input: { id: "only-org-a", name: "B copies A", version: "2.0.0", config: { owner: "org-b" } }) { id } }');
  await b('mutation { installModule(input: { id: "b-extra", name: "B extra", version: "1.0.0", enabled: false }) { id } }');
  await b('mutation { updateModule(id: "github", input: { name: "B github renamed" }) { id } }');
  await b('mutation { disableModule(id: "slack") { id } }');
  await b('mutation { setCredential(moduleId: "only-org-a", secret: { apiKey: "b-copy" }) { moduleId } }');
  await b('mutation { setCredential(moduleId: "github", secret: { token: "b-rotated", extra: "x" }) { moduleId } }');
  await b('mutation { deleteCredential(moduleId: "only-org-b") }');
  await b('mutation { uninstallModule(id: "only-org-b") { id } }');
  await b('mutation { createApiKey(input: { name: "b-new", scopes: ["modules:read"] }) { secret } }');
  await b('mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id: f.bSpareKeyId });
  ok(await gw.gql(gw.keys.admin, 'mutation { createOrgApiKey(orgId: "org-b", input: { name: "b-operator", scopes: ["modules:read"] }) { secret } }'));
  ok(await gw.gql(gw.keys.admin, 'mutation { reportModuleHealth(orgId: "org-b", moduleId: "github", status: DEGRADED) { id } }'));
  ok(await gw.gql(gw.keys.admin, 'mutation { recordModuleUsage(orgId: "org-b", moduleId: "github", count: 9) { id } }'));
  await b('mutation { recordRunUnits(input: { units: 13, idempotencyKey: "a-first" }) { repeat } }');
  await b('mutation { recordRunUnits(input: { units: 17, idempotencyKey: "b-disturbed", moduleId: "github" }) { repeat } }');
  ok(await gw.gql(gw.keys.admin, 'mutation { setOrgQuota(orgId: "org-b", input: { runUnitsPerMonth: 500, requestsPerMinute: 100000 }) { orgId } }'));
}

// ---------------------------------------------------------------------------------------------
// Property-based: random operation sequences over three orgs.

const ORG_C = 'org-c';
const ORGS = [ORG_A, ORG_B, ORG_C] as const;
type OrgId = (typeof ORGS)[number];
// Few ids, shared by all orgs, so that look-alikes collide as often as possible.
const POOL = ['github', 'slack', 'm1'] as const;

interface ModelModule {
  name: string;
  enabled: boolean;
  usage: number;
  secret?: Record<string, string>;
}
type Model = Record<OrgId, Map<string, ModelModule>>;
interface Real {
  gw: TestGateway;
  keys: Record<OrgId, string>;
}

const VIEW = `query {
  modules(first: 100) { totalCount edges { node { id orgId name enabled usageCount hasCredential } } }
  credentials { moduleId fields }
  ${POOL.map((id, i) => `s${i}: credentialSecret(moduleId: "${id}") h${i}: hasCredential(moduleId: "${id}")`).join('\n  ')}
}`;

function expectedView(org: OrgId, model: Model) {
  const mods = [...model[org].entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  const view: Record<string, unknown> = {
    modules: {
      totalCount: mods.length,
      edges: mods.map(([id, m]) => ({ node: { id, orgId: org, name: m.name, enabled: m.enabled, usageCount: m.usage, hasCredential: m.secret !== undefined } })),
    },
    credentials: mods.filter(([, m]) => m.secret).map(([id, m]) => ({ moduleId: id, fields: Object.keys(m.secret ?? {}).sort() })),
  };
  POOL.forEach((id, i) => {
    const secret = model[org].get(id)?.secret;
    view[`s${i}`] = secret ?? null;
    view[`h${i}`] = secret !== undefined;
  });
  return view;
}

// The same page alone, the same text for every org: the response cache keeps it (VIEW, with its
// credential fields, is never kept), so every step also checks what the cache answers each org.
const CACHED_VIEW = 'query { modules(first: 100) { totalCount edges { node { id orgId name enabled usageCount hasCredential } } } }';

async function checkAll(model: Model, real: Real): Promise<void> {
  for (const org of ORGS) {
    const expected = expectedView(org, model);
    expect(ok(await real.gw.gql(real.keys[org], CACHED_VIEW)), `what ${org} sees (cacheable)`).toEqual({ modules: expected.modules });
    expect(ok(await real.gw.gql(real.keys[org], VIEW)), `what ${org} sees`).toEqual(expected);
    // Nothing was written since the first read: the cache answers, so the check checks it. On
    // PostgreSQL the notification of the last write may still arrive between the two reads (the
    // writer counts its write at commit and again when its NOTIFY comes back), costing one hit.
    for (let attempt = 1; ; attempt++) {
      expect(ok(await real.gw.gql(real.keys[org], CACHED_VIEW)), `what ${org} sees (cacheable, again)`).toEqual({ modules: expected.modules });
      if (lastCache(real.gw) === 'hit' || real.gw.dialect === 'sqlite' || attempt === 3) break;
    }
    expect(lastCache(real.gw), `how ${org}'s second read was served`).toBe('hit');
  }
}

abstract class Op implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly org: OrgId,
    readonly id: string,
  ) {}
  check(): boolean {
    return true;
  }
  abstract apply(model: Model, real: Real): Promise<void>;
  async run(model: Model, real: Real): Promise<void> {
    await this.apply(model, real);
    await checkAll(model, real);
  }
  gql(real: Real, query: string, variables: Record<string, unknown> = {}) {
    return real.gw.gql(real.keys[this.org], query, { id: this.id, ...variables });
  }
  abstract toString(): string;
}

class Install extends Op {
  constructor(org: OrgId, id: string, readonly enabled: boolean) {
    super(org, id);
  }
  async apply(model: Model, real: Real) {
    const res = await this.gql(real, 'mutation($id: String!, $e: Boolean) { installModule(input: { id: $id, name: $id, version: "1.0.0", enabled: $e }) { id orgId } }', { e: this.enabled });
    if (model[this.org].has(this.id)) {
      failure(res, 'CONFLICT');
      return;
    }
    expect(ok(res).installModule).toEqual({ id: this.id, orgId: this.org });
    model[this.org].set(this.id, { name: this.id, enabled: this.enabled, usage: 0 });
  }
  toString() {
    return `install(${this.org}, ${this.id}, ${this.enabled})`;
  }
}

class Uninstall extends Op {
  async apply(model: Model, real: Real) {
    const res = await this.gql(real, 'mutation($id: ID!) { uninstallModule(id: $id) { id orgId } }');
    if (!model[this.org].has(this.id)) {
      failure(res, 'NOT_FOUND');
      return;
    }
    expect(ok(res).uninstallModule).toEqual({ id: this.id, orgId: this.org });
    model[this.org].delete(this.id);
  }
  toString() {
    return `uninstall(${this.org}, ${this.id})`;
  }
}

class SetEnabled extends Op {
  constructor(org: OrgId, id: string, readonly enabled: boolean) {
    super(org, id);
  }
  async apply(model: Model, real: Real) {
    const field = this.enabled ? 'enableModule' : 'disableModule';
    const res = await this.gql(real, `mutation($id: ID!) { ${field}(id: $id) { enabled } }`);
    const m = model[this.org].get(this.id);
    if (!m) {
      failure(res, 'NOT_FOUND');
      return;
    }
    expect(ok(res)[field].enabled).toBe(this.enabled);
    m.enabled = this.enabled;
  }
  toString() {
    return `${this.enabled ? 'enable' : 'disable'}(${this.org}, ${this.id})`;
  }
}

class Rename extends Op {
  constructor(org: OrgId, id: string, readonly name: string) {
    super(org, id);
  }
  async apply(model: Model, real: Real) {
    const res = await this.gql(real, 'mutation($id: ID!, $n: String!) { updateModule(id: $id, input: { name: $n }) { name } }', { n: this.name });
    const m = model[this.org].get(this.id);
    if (!m) {
      failure(res, 'NOT_FOUND');
      return;
    }
    expect(ok(res).updateModule.name).toBe(this.name);
    m.name = this.name;
  }
  toString() {
    return `rename(${this.org}, ${this.id}, ${this.name})`;
  }
}

class SetSecret extends Op {
  constructor(org: OrgId, id: string, readonly secret: Record<string, string>) {
    super(org, id);
  }
  async apply(model: Model, real: Real) {
    const res = await this.gql(real, 'mutation($id: ID!, $s: JSONObject!) { setCredential(moduleId: $id, secret: $s) { moduleId fields } }', { s: this.secret });
    const m = model[this.org].get(this.id);
    if (!m) {
      failure(res, 'NOT_FOUND');
      return;
    }
    expect(ok(res).setCredential).toEqual({ moduleId: this.id, fields: Object.keys(this.secret).sort() });
    m.secret = this.secret;
  }
  toString() {
    return `setCredential(${this.org}, ${this.id}, ${JSON.stringify(this.secret)})`;
  }
}

class DeleteSecret extends Op {
  async apply(model: Model, real: Real) {
    const res = await this.gql(real, 'mutation($id: ID!) { deleteCredential(moduleId: $id) }');
    const m = model[this.org].get(this.id);
    expect(ok(res).deleteCredential).toBe(m?.secret !== undefined);
    if (m) delete m.secret;
  }
  toString() {
    return `deleteCredential(${this.org}, ${this.id})`;
  }
}

/** The admin's cross-org path: it must touch exactly the named org's module. */
class RecordUsage extends Op {
  constructor(org: OrgId, id: string, readonly count: number) {
    super(org, id);
  }
  async apply(model: Model, real: Real) {
    const res = await real.gw.gql(real.gw.keys.admin, 'mutation($o: ID!, $id: ID!, $n: Int) { recordModuleUsage(orgId: $o, moduleId: $id, count: $n) { orgId usageCount } }', {
      o: this.org,
      id: this.id,
      n: this.count,
    });
    const m = model[this.org].get(this.id);
    if (!m) {
      failure(res, 'NOT_FOUND');
      return;
    }
    m.usage += this.count;
    expect(ok(res).recordModuleUsage).toEqual({ orgId: this.org, usageCount: m.usage });
  }
  toString() {
    return `recordUsage(${this.org}, ${this.id}, ${this.count})`;
  }
}

describe('random operation sequences over three orgs (fast-check)', () => {
  it('never let an org see, change or detect another org\'s modules or credentials', async () => {
    const org = fc.constantFrom(...ORGS);
    const id = fc.constantFrom(...POOL);
    // The acting org's name is in every value, so a value seen by the wrong org is unmistakable.
    const secret = (o: OrgId) =>
      fc.tuple(fc.constantFrom('token', 'password', 'key'), fc.integer({ min: 0, max: 99 })).map(([field, n]) => ({ [field]: `${o}-${field}-${n}` }));
    const op = fc.oneof(
      { weight: 4, arbitrary: fc.tuple(org, id, fc.boolean()).map(([o, i, e]): Op => new Install(o, i, e)) },
      { weight: 2, arbitrary: fc.tuple(org, id).map(([o, i]): Op => new Uninstall(o, i)) },
      { weight: 2, arbitrary: fc.tuple(org, id, fc.boolean()).map(([o, i, e]): Op => new SetEnabled(o, i, e)) },
      { weight: 1, arbitrary: fc.tuple(org, id, fc.constantFrom('Alpha', 'Beta')).map(([o, i, n]): Op => new Rename(o, i, n)) },
      { weight: 3, arbitrary: fc.tuple(org, id).chain(([o, i]) => secret(o).map((s): Op => new SetSecret(o, i, s))) },
      { weight: 2, arbitrary: fc.tuple(org, id).map(([o, i]): Op => new DeleteSecret(o, i)) },
      { weight: 2, arbitrary: fc.tuple(org, id, fc.integer({ min: 1, max: 5 })).map(([o, i, n]): Op => new RecordUsage(o, i, n)) },
    );
    const commands = fc.commands([op], { maxCommands: 40 });

    await fc.assert(
      fc.asyncProperty(commands, async (cmds) => {
        const gw = await createTestGateway({ seed: false });
        try {
          await gw.opened.store.system.orgs.insert({ id: ORG_C, name: 'Org C', createdAt: new Date().toISOString() }, SYSTEM_ACTOR);
          const keys = { [ORG_A]: gw.keys.a, [ORG_B]: gw.keys.b, [ORG_C]: await gw.key(ORG_C, TENANT_SCOPES) } as Record<OrgId, string>;
          const model = { [ORG_A]: new Map(), [ORG_B]: new Map(), [ORG_C]: new Map() } as Model;
          // Every org starts with the same look-alike modules and credential field names.
          for (const o of ORGS) {
            for (const i of ['github', 'slack']) {
              await new Install(o, i, true).apply(model, { gw, keys });
              await new SetSecret(o, i, { token: `${o}-initial-${i}` }).apply(model, { gw, keys });
            }
          }
          await checkAll(model, { gw, keys });
          await fc.asyncModelRun(() => ({ model, real: { gw, keys } }), cmds);
        } finally {
          await gw.close();
        }
      }),
      // Each run is a fresh store: a scratch database on PostgreSQL, so fewer runs there.
      { numRuns: DEFAULT_DIALECT === 'postgres' ? 8 : 40 },
    );
  }, DEFAULT_DIALECT === 'postgres' ? 240_000 : undefined);
});

// ---------------------------------------------------------------------------------------------

describe('the seam', () => {
  it('resolvers reach data only through the context: no file in src/graphql imports the store, drizzle or SQLite', () => {
    const dir = path.join(ROOT, 'src/graphql');
    const offending: string[] = [];
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const source = fs.readFileSync(path.join(dir, file), 'utf8');
      for (const match of source.matchAll(/^import\s+(type\s+)?[^;]*?from\s+'([^']+)'/gms)) {
        const [, typeOnly, from = ''] = match;
        const storeish = /\/store\/|better-sqlite3|drizzle-orm/.test(from);
        // Row types may be imported (`import type`); values may not.
        if (storeish && !typeOnly) offending.push(`${file}: ${from}`);
      }
    }
    expect(offending).toEqual([]);
    const context = fs.readFileSync(path.join(dir, 'context.ts'), 'utf8');
    expect(context).not.toMatch(/\bStore\b|sqlite|drizzle/);
  });
});
