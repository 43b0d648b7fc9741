import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './helpers/gateway.ts';

/**
 * A secret sent in a malformed request never comes back, in any error, nor lands in a log line:
 * bodies that are not JSON, syntax errors on every kind of token, names the schema does not know,
 * variables and literals of the wrong type. Over real HTTP to the listener `npm start` serves,
 * in production mode and not.
 */

// Shaped like a GitHub token: a valid GraphQL name as well as a string.
const SECRET = 'ghp_EchoCheck0123456789abcdefABCDEF0000';
const INSTALL = 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }';

interface Case {
  name: string;
  /** A raw body, or a query and variables sent as JSON. */
  body?: string;
  query?: string;
  variables?: Record<string, unknown>;
  /** What the message must still say. */
  message: RegExp;
  status?: number;
}

const cases: Case[] = [
  { name: 'a body that is not JSON (unterminated)', body: `{"query": "{ viewer { scopes } }", "x": "${SECRET}`, message: /^POST body sent invalid JSON\.$/, status: 400 },
  { name: 'a body that is not JSON (bare word)', body: `{"query": ${SECRET}}`, message: /^POST body sent invalid JSON\.$/, status: 400 },
  { name: 'a large body that is not JSON', body: `{"query": "{ viewer { scopes } }", "pad": "${'x'.repeat(200_000)}", "s": "${SECRET}" ,,}`, message: /invalid JSON/, status: 400 },
  { name: 'an unknown body parameter named like a secret', body: `{"query": "{ viewer { scopes } }", "${SECRET}": 1}`, message: /^Unexpected parameter in the request body: only query, variables, operationName and extensions are taken$/, status: 400 },
  { name: 'a string token where a colon goes', query: `{ module(id "${SECRET}") { id } }`, message: /^Syntax Error: Expected ":", found String\.$/ },
  { name: 'a block string token', query: `{ module(id """${SECRET}""") { id } }`, message: /^Syntax Error: Expected ":", found BlockString\.$/ },
  { name: 'a string holding a quote', query: `{ module(id "a\\"${SECRET}") { id } }`, message: /^Syntax Error: Expected ":", found String\.$/ },
  { name: 'a name token where a value goes', query: `{ module(id: ) ${SECRET} }`, message: /^Syntax Error: / },
  { name: 'an unexpected name', query: `{ viewer { scopes } } ${SECRET}`, message: /^Syntax Error: Unexpected Name\.$/ },
  { name: 'a number token', query: `{ modules(first: 1.5e${SECRET}) { totalCount } }`, message: /^Syntax Error: Invalid number/ },
  { name: 'a bad escape', query: `{ module(id: "${SECRET}\\q") { id } }`, message: /^Syntax Error: Invalid character escape sequence\.$/ },
  { name: 'an unknown field', query: `{ viewer { ${SECRET} } }`, message: /^Cannot query field "…" on type "Viewer"\.$/ },
  { name: 'an unknown argument', query: `{ viewer(${SECRET}: 1) { scopes } }`, message: /^Unknown argument "…" on field "Query\.viewer"\.$/ },
  { name: 'an unknown type', query: `query($x: ${SECRET}) { viewer { scopes } }`, message: /^Unknown type "…"\.$/ },
  { name: 'an unknown directive', query: `{ viewer @${SECRET} { scopes } }`, message: /^Unknown directive "…"\.$/ },
  { name: 'an unknown fragment', query: `{ viewer { ...${SECRET} } }`, message: /^Unknown fragment "…"\.$/ },
  { name: 'an enum literal where an object goes', query: `mutation { setCredential(moduleId: "github", secret: ${SECRET}) { moduleId } }`, message: /^expected a JSON object, got an enum value$/ },
  { name: 'a string literal where an object goes', query: `mutation { setCredential(moduleId: "github", secret: "${SECRET}") { moduleId } }`, message: /expected a JSON object, got a string$/ },
  { name: 'a string literal where an Int goes', query: `{ modules(first: "${SECRET}") { totalCount } }`, message: /^Int cannot represent non-integer value$/ },
  { name: 'an enum literal where a Boolean goes', query: `{ modules(enabled: ${SECRET}) { totalCount } }`, message: /^Boolean cannot represent a non boolean value$/ },
  { name: 'an unknown enum value', query: `mutation { reportModuleHealth(orgId: "org-a", moduleId: "github", status: ${SECRET}) { id } }`, message: /HealthStatus/ },
  { name: 'a string variable where an object goes', query: 'mutation($s: JSONObject!) { setCredential(moduleId: "github", secret: $s) { moduleId } }', variables: { s: SECRET }, message: /^Variable "\$s" got an invalid value: expected a JSON object, got a string$/, status: 400 },
  { name: 'a variable with an unknown input field named like a secret', query: INSTALL, variables: { i: { id: 'x', name: 'n', version: '1.0.0', [SECRET]: 1 } }, message: /^Variable "\$i" got an invalid value: field "…" is not defined by type "InstallModuleInput"$/, status: 400 },
  { name: 'an object variable where a string goes', query: INSTALL, variables: { i: { id: 'x', name: { deep: SECRET }, version: '1.0.0' } }, message: /at "i\.name": String cannot represent a non string value$/, status: 400 },
  { name: 'a string variable where an Int goes', query: 'query($n: Int) { modules(first: $n) { totalCount } }', variables: { n: SECRET }, message: /^Variable "\$n" got an invalid value: Int cannot represent non-integer value$/, status: 400 },
  { name: 'a string variable where an enum goes', query: 'mutation($s: HealthStatus!) { reportModuleHealth(orgId: "org-a", moduleId: "github", status: $s) { id } }', variables: { s: SECRET }, message: /^Variable "\$s" got an invalid value/, status: 400 },
  { name: 'a string variable where a DateTime goes', query: 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }', variables: { i: { name: 'k', scopes: ['modules:read'], expiresAt: SECRET } }, message: /^Variable "\$i" got an invalid value/, status: 400 },
];

for (const production of [false, true]) {
  describe(`no request bytes in errors (${production ? 'production' : 'development'} mode)`, () => {
    let gw: TestGateway;
    let server: http.Server;
    let url: string;
    beforeAll(async () => {
      gw = await createTestGateway({ env: production ? { TENANTGATE_PRODUCTION: 'true' } : {} });
      server = http.createServer(gw.app.listener);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await gw.close();
    });

    for (const c of cases) {
      it(c.name, async () => {
        const from = gw.logger.lines.length;
        const body = c.body ?? JSON.stringify({ query: c.query, variables: c.variables });
        expect(body).toContain(SECRET); // the control: the secret was sent
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.keys.a}` }, body });
        const text = await res.text();
        expect(text).not.toContain(SECRET);
        // Not even a part of it (a message may cut a token short).
        expect(text).not.toContain(SECRET.slice(4, 16));
        const json = JSON.parse(text);
        expect(json.data ?? null, text).toBeNull();
        expect(json.errors[0].message, text).toMatch(c.message);
        if (c.status !== undefined) expect(res.status).toBe(c.status);
        // Parse and validation errors still point at what they withheld.
        if (/^GRAPHQL_(PARSE|VALIDATION)_FAILED$/.test(json.errors[0].extensions.code)) expect(json.errors[0].locations?.[0]?.line, text).toBe(1);
        const lines = gw.logger.lines.slice(from);
        expect(lines.length).toBeGreaterThan(0);
        for (const line of lines) expect(line).not.toContain(SECRET.slice(4, 16));
      });
    }
  });
}
