import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './helpers/gateway.ts';

const SECRET = 'sk_live_Variable0Echo0Check';
const INSTALL = 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }';

let gw: TestGateway;
beforeAll(async () => {
  gw = await createTestGateway();
});
afterAll(async () => gw.close());

// graphql-js repeats a value it cannot coerce; a credential sent as the wrong type must not come
// back in the error (a client may log errors), and the error says what was wrong without it.
describe('errors about invalid values never repeat the value', () => {
  const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['a secret that is a string', 'mutation($s: JSONObject!) { setCredential(moduleId: "github", secret: $s) { moduleId } }', { s: `${SECRET}; at "s.x"` }, /^Variable "\$s" got an invalid value: expected a JSON object, got a string$/],
    ['an object where a string goes', INSTALL, { i: { id: 'x', name: { deep: SECRET }, version: '1.0.0' } }, /^Variable "\$i" got an invalid value at "i.name": String cannot represent a non string value$/],
    ['an unknown input field', INSTALL, { i: { id: 'x', name: 'n', version: '1.0.0', bogus: SECRET } }, /^Variable "\$i" got an invalid value: field "…" is not defined by type "InstallModuleInput"$/],
    ['a missing input field', INSTALL, { i: { id: SECRET, version: '1.0.0' } }, /field "name" of required type "String!" was not provided$/],
    ['a string where an Int goes', 'query($n: Int) { modules(first: $n) { totalCount } }', { n: SECRET }, /^Variable "\$n" got an invalid value: Int cannot represent non-integer value$/],
    ['a string where a Boolean goes', 'query($e: Boolean) { modules(enabled: $e) { totalCount } }', { e: SECRET }, /Boolean cannot represent a non boolean value$/],
    ['a secret written into the document', `mutation { setCredential(moduleId: "github", secret: "${SECRET}") { moduleId } }`, {}, /expected a JSON object, got a string$/],
    ['a secret written where an Int goes', `query { modules(first: "${SECRET}") { totalCount } }`, {}, /^Int cannot represent non-integer value$/],
  ];
  for (const [name, query, variables, message] of cases) {
    it(name, async () => {
      const res = await gw.gql(gw.keys.a, query, variables);
      // A literal is refused while the document is checked; application/json answers such errors 200.
      expect(res.status, res.text).toBe(query.includes(SECRET) ? 200 : 400);
      expect(res.text).not.toContain(SECRET);
      expect(res.body.errors[0].message).toMatch(message);
      if (!query.includes(SECRET)) expect(res.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    });
  }

  it('still names a missing variable', async () => {
    const res = await gw.gql(gw.keys.a, INSTALL, {});
    expect(res.body.errors[0].message).toBe('Variable "$i" of required type "InstallModuleInput!" was not provided.');
    expect(res.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
  });
});
