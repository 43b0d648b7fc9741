import fs from 'node:fs';
import { parse, type OperationDefinitionNode } from 'graphql';
import { afterEach, expect, it } from 'vitest';
import { ok } from './helpers/api.ts';
import { createTestGateway, type TestGateway } from './helpers/gateway.ts';

// The README's "A short tour" is GraphQL a user pastes into GraphiQL, one block at a time; this
// sends each block exactly as written, in order, so that it stays true: the admin key until a
// block creates a key, that key from then on.

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
});

function tourBlocks(): string[] {
  const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('## A short tour');
  expect(start, 'README.md has no "## A short tour" section').toBeGreaterThan(-1);
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  return [...section.matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
}

it('the README tour runs block by block as pasted: create an org and a key, install a module, store a credential, read it all back', async () => {
  gw = await createTestGateway({ seed: false });
  const blocks = tourBlocks();
  expect(blocks.length).toBeGreaterThanOrEqual(3);

  let key = gw.keys.admin;
  let last: Record<string, { [k: string]: unknown }> = {};
  for (const block of blocks) {
    // GraphiQL runs a block without asking only when it holds one operation; with several it
    // cannot tell which the run button means ("Cannot infer operation").
    const operations = parse(block).definitions.filter((d): d is OperationDefinitionNode => d.kind === 'OperationDefinition');
    expect(operations, block).toHaveLength(1);
    last = ok(await gw.gql(key, block)) as typeof last;
    const created = last.createOrgApiKey ?? last.createApiKey;
    if (created) key = created.secret as string;
  }
  expect(key).not.toBe(gw.keys.admin);
  expect(last.viewer).toMatchObject({ org: { id: 'acme' } });
  expect(last.modules).toMatchObject({ totalCount: 1, edges: [{ node: { id: 'github', hasCredential: true } }] });
  expect(last.credentials).toEqual([{ moduleId: 'github', fields: ['token'] }]);
  expect(last.credentialSecret).toEqual({ token: 'ghp_…' });
});
