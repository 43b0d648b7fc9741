import fs from 'node:fs';
import { parse, print, type OperationDefinitionNode } from 'graphql';
import { afterEach, expect, it } from 'vitest';
import { ok } from './helpers/api.ts';
import { createTestGateway, type TestGateway } from './helpers/gateway.ts';

// The README's "A short tour" is GraphQL a user pastes into GraphiQL; this runs it, in order, so
// that it stays true: the admin key for the first block, the key it creates for the rest.

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
});

function tourOperations(): string[][] {
  const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('## A short tour');
  expect(start, 'README.md has no "## A short tour" section').toBeGreaterThan(-1);
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const blocks = [...section.matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  return blocks.map((block) => parse(block).definitions.map((d) => print(d as OperationDefinitionNode)));
}

it('the README tour runs as written: create an org and a key, install a module, store a credential, read it all back', async () => {
  gw = await createTestGateway({ seed: false });
  const [first, ...rest] = tourOperations();
  expect(first?.length).toBeGreaterThanOrEqual(2);
  expect(rest.length).toBeGreaterThanOrEqual(1);

  let secret: string | undefined;
  for (const op of first ?? []) {
    const data = ok(await gw.gql(gw.keys.admin, op));
    if (data.createApiKey) secret = data.createApiKey.secret as string;
  }
  expect(secret).toMatch(/^tgk_/);

  const answers: Record<string, unknown>[] = [];
  for (const block of rest) for (const op of block) answers.push(ok(await gw.gql(secret ?? '', op)));
  const last = answers.at(-1) as Record<string, { [k: string]: unknown }>;
  expect(last.viewer).toMatchObject({ org: { id: 'acme' } });
  expect(last.modules).toMatchObject({ totalCount: 1, edges: [{ node: { id: 'github', hasCredential: true } }] });
  expect(last.credentials).toEqual([{ moduleId: 'github', fields: ['token'] }]);
  expect(last.credentialSecret).toEqual({ token: 'ghp_…' });
});
