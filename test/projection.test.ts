import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isObjectType } from 'graphql';
import { schema } from '../src/graphql/schema.ts';
import { MODULE_FIELD_NEEDS } from '../src/graphql/modules.ts';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';

// A list page reads only the columns its query selects. These tests pin that narrowing to the
// full answer: every Module field asked alone (and in fragments) equals the same field read whole.

const FULL = `id orgId name version description config enabled health { status message checkedAt }
  usageCount lastUsedAt installedAt updatedAt hasCredential`;

function selectionFor(field: string): string {
  return field === 'health' ? 'health { status message checkedAt }' : field;
}

let gw: TestGateway;
let whole: Record<string, Record<string, unknown>>;

beforeAll(async () => {
  gw = await createTestGateway();
  // Vary every column: health, usage, disabled, description null, credentials on some.
  await gw.gql(gw.keys.admin, 'mutation { reportModuleHealth(orgId: "org-a", moduleId: "slack", status: DEGRADED, message: "slow") { id } }');
  await gw.gql(gw.keys.admin, 'mutation { recordModuleUsage(orgId: "org-a", moduleId: "github", count: 3) { id } }');
  await gw.gql(gw.keys.a, 'mutation { disableModule(id: "slack") { id } }');
  await gw.gql(gw.keys.a, 'mutation { installModule(input: { id: "zeta", name: "Zeta", version: "0.1.0", description: "last" }) { id } }');
  const res = await gw.gql(gw.keys.a, `{ modules(first: 100) { edges { node { ${FULL} } } } }`);
  whole = Object.fromEntries(res.body.data.modules.edges.map((e: { node: { id: string } }) => [e.node.id, e.node]));
  expect(Object.keys(whole).length).toBeGreaterThanOrEqual(4);
  expect(Object.values(whole).every((m) => m.orgId === ORG_A)).toBe(true);
});
afterAll(async () => gw.close());

describe('module list projection', () => {
  const moduleType = schema.getType('Module');
  const fields = isObjectType(moduleType) ? Object.keys(moduleType.getFields()) : [];

  it('knows what every Module field reads', () => {
    expect(fields.length).toBeGreaterThan(10);
    expect(fields.filter((f) => !(f in MODULE_FIELD_NEEDS))).toEqual([]);
  });

  for (const field of fields) {
    it(`${field} alone equals ${field} read whole`, async () => {
      for (const enabled of [undefined, true, false]) {
        const res = await gw.gql(gw.keys.a, `query($e: Boolean) { modules(first: 100, enabled: $e) { edges { node { id ${selectionFor(field)} } } } }`, { e: enabled });
        expect(res.body.errors).toBeUndefined();
        const nodes = res.body.data.modules.edges.map((e: { node: Record<string, unknown> }) => e.node);
        expect(nodes.length).toBeGreaterThan(0);
        for (const node of nodes) expect(node[field], `${node.id}.${field}`).toEqual(whole[node.id as string]![field]);
      }
    });
  }

  it('follows fragments, inline fragments and aliases', async () => {
    const res = await gw.gql(
      gw.keys.a,
      `fragment Bits on Module { v: version ... on Module { health { status } } }
       { modules(first: 20) { edges { ...E } } }
       fragment E on ModuleEdge { node { id ...Bits hasCredential } }`,
    );
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    for (const { node } of res.body.data.modules.edges) {
      const full = whole[node.id]!;
      expect(node).toEqual({ id: full.id, v: full.version, health: { status: (full.health as { status: string }).status }, hasCredential: full.hasCredential });
    }
  });
});
