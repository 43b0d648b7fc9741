import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';

/**
 * Operation limits (depth, aliases, tokens, directives, cost) and request limits (body size,
 * batching, mutations over GET). A rejected operation answers LIMIT_EXCEEDED naming the limit,
 * and executes nothing.
 */

const MODULE_FIELDS = 'id orgId name version description config enabled hasCredential usageCount lastUsedAt installedAt updatedAt health { status message checkedAt }';
const FULL_PAGE = `{ modules(first: 100) { totalCount pageInfo { hasNextPage endCursor startCursor hasPreviousPage } edges { cursor node { ${MODULE_FIELDS} } } } }`;

async function moduleCount(gw: TestGateway): Promise<number> {
  return (gw.opened.sqlite.prepare('SELECT count(*) AS n FROM modules WHERE org_id = ?').get(ORG_A) as { n: number }).n;
}

describe('operation limits with the defaults', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ env: { TENANTGATE_INTROSPECTION: 'true' } });
  });
  afterAll(async () => gw.close());

  it('let a full page of modules with every field through', async () => {
    const res = await gw.gql(gw.keys.a, FULL_PAGE);
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.modules.totalCount).toBe(3);
  });

  it('let two aliased full pages through, and reject fifteen on cost', async () => {
    const two = await gw.gql(gw.keys.a, `{ a: ${FULL_PAGE.slice(2, -2)} b: ${FULL_PAGE.slice(2, -2)} }`);
    expect(two.body.errors).toBeUndefined();
    const many = Array.from({ length: 15 }, (_, i) => `p${i}: ${FULL_PAGE.slice(2, -2)}`).join(' ');
    const res = await gw.gql(gw.keys.a, `{ ${many} }`);
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'cost' });
    expect(res.body.data).toBeUndefined();
  });

  it('let the introspection query GraphiQL sends through (where introspection is on)', async () => {
    const res = await gw.gql(gw.keys.a, getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }));
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.__schema.queryType.name).toBe('Query');
  });
});

describe('operation limits', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({
      env: {
        TENANTGATE_MAX_DEPTH: '4',
        TENANTGATE_MAX_ALIASES: '3',
        TENANTGATE_MAX_TOKENS: '60',
        TENANTGATE_MAX_DIRECTIVES: '2',
        TENANTGATE_MAX_COST: '200',
      },
    });
  });
  afterAll(async () => gw.close());

  // Each case: an operation at the limit (runs), one past it (rejected), and the message's words.
  const cases: Array<{ limit: string; ok: string; over: string; names: RegExp }> = [
    {
      limit: 'depth',
      ok: '{ modules { edges { node { id } } } }',
      over: '{ modules { edges { node { health { status } } } } }',
      names: /depth limit of 4 exceeded, found 5/i,
    },
    {
      limit: 'aliases',
      ok: '{ a: viewer { scopes } b: viewer { scopes } c: viewer { scopes } }',
      over: '{ a: viewer { scopes } b: viewer { scopes } c: viewer { scopes } d: viewer { scopes } }',
      names: /aliases limit of 3 exceeded, found 4/i,
    },
    {
      limit: 'tokens',
      ok: `{ ${'viewer { scopes } '.repeat(14)}}`,
      over: `{ ${'viewer { scopes } '.repeat(15)}}`,
      names: /token limit of 60 exceeded/i,
    },
    {
      limit: 'directives',
      ok: '{ viewer @include(if: true) { scopes @skip(if: false) } }',
      over: '{ viewer @include(if: true) { scopes @skip(if: false) org @skip(if: false) { id } } }',
      names: /directives limit of 2 exceeded, found 3/i,
    },
    {
      limit: 'cost',
      ok: '{ modules(first: 5) { edges { node { id name } } } }',
      over: '{ modules(first: 50) { edges { node { id name } } } }',
      names: /cost limit of 200 exceeded/i,
    },
  ];

  for (const c of cases) {
    it(`${c.limit}: at the limit runs; past it answers LIMIT_EXCEEDED naming the limit`, async () => {
      const ok = await gw.gql(gw.keys.a, c.ok);
      expect(ok.body.errors).toBeUndefined();
      expect(ok.body.data).toBeTruthy();

      const over = await gw.gql(gw.keys.a, c.over);
      expect(over.body.data).toBeUndefined();
      expect(over.body.errors).toHaveLength(1);
      expect(over.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: c.limit });
      expect(over.body.errors[0].message).toMatch(c.names);
      expect(over.body.errors[0].message).not.toMatch(/Syntax Error/);

      // With the GraphQL response media type, a rejected operation is a 4xx.
      const strict = await gw.gql(gw.keys.a, c.over, undefined, { headers: { accept: 'application/graphql-response+json' } });
      expect(strict.status).toBe(400);
      expect(strict.body.errors[0].extensions.code).toBe('LIMIT_EXCEEDED');
    });
  }
});

describe('a mutation past a limit executes nothing', () => {
  const input = (id: string, extra = '') => `input: { id: "${id}", name: "x", version: "1.0.0"${extra} }`;
  const ALL = 'id orgId name version description config enabled hasCredential usageCount lastUsedAt installedAt updatedAt health { status message checkedAt }';
  // Each gateway lowers one limit; `ok` is the control that shows the same mutation does run.
  const cases: Array<{ limit: string; env: Record<string, string>; ok: string; over: string }> = [
    {
      limit: 'depth',
      env: { TENANTGATE_MAX_DEPTH: '2' },
      ok: `mutation { installModule(${input('ok')}) { id } }`,
      over: `mutation { installModule(${input('over')}) { health { status } } }`,
    },
    {
      limit: 'aliases',
      env: { TENANTGATE_MAX_ALIASES: '1' },
      ok: `mutation { a: installModule(${input('ok')}) { id } }`,
      over: `mutation { a: installModule(${input('over')}) { id } b: installModule(${input('over2')}) { id } }`,
    },
    {
      limit: 'tokens',
      env: { TENANTGATE_MAX_TOKENS: '25' },
      ok: `mutation { installModule(${input('ok')}) { id } }`,
      over: `mutation { installModule(${input('over', ', description: "d", enabled: true')}) { id } }`,
    },
    {
      limit: 'directives',
      env: { TENANTGATE_MAX_DIRECTIVES: '1' },
      ok: `mutation { installModule(${input('ok')}) { id @skip(if: false) } }`,
      over: `mutation { installModule(${input('over')}) { id @skip(if: false) name @skip(if: false) } }`,
    },
    {
      limit: 'cost',
      env: { TENANTGATE_MAX_COST: '20' },
      ok: `mutation { installModule(${input('ok')}) { id } }`,
      over: `mutation { installModule(${input('over')}) { ${ALL} } }`,
    },
  ];

  for (const c of cases) {
    it(c.limit, async () => {
      const gw = await createTestGateway({ seed: false, env: c.env });
      try {
        const over = await gw.gql(gw.keys.a, c.over);
        expect(over.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: c.limit });
        expect(over.body.data).toBeUndefined();
        expect(await moduleCount(gw)).toBe(0);
        const ok = await gw.gql(gw.keys.a, c.ok);
        expect(ok.body.errors).toBeUndefined();
        expect(await moduleCount(gw)).toBe(1);
      } finally {
        await gw.close();
      }
    });
  }
});

describe('request limits', () => {
  const LIMIT = 64 * 1024;
  let gw: TestGateway;
  let server: http.Server;
  let port: number;
  // Counts what the app pulls from a streamed body: only in process, since over a socket the
  // client writes ahead into kernel buffers whatever the server reads (the raw-socket tests
  // below prove the same limits on the served listener).
  let inProcess: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ seed: false, env: { TENANTGATE_MAX_BODY_BYTES: String(LIMIT) } });
    inProcess = await createTestGateway({ seed: false, transport: 'yoga', env: { TENANTGATE_MAX_BODY_BYTES: String(LIMIT) } });
    server = http.createServer(gw.app.listener);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await gw.close();
    await inProcess.close();
  });

  const headers = () => ({ 'content-type': 'application/json', authorization: `Bearer ${gw.keys.a}` });
  /** A JSON body of exactly `bytes` bytes: a valid request padded with spaces. */
  const padded = (bytes: number) => {
    const json = JSON.stringify({ query: '{ viewer { scopes } }' });
    return json + ' '.repeat(bytes - json.length);
  };

  /** An endless body that counts what is pulled from it and notices being cancelled. */
  function endlessBody(chunkBytes = 16 * 1024) {
    const chunk = new TextEncoder().encode(' '.repeat(chunkBytes));
    const seen = { pulled: 0, cancelled: false };
    const stream = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          seen.pulled += chunk.byteLength;
          controller.enqueue(chunk);
        },
        cancel() {
          seen.cancelled = true;
        },
      },
      { highWaterMark: 0 },
    );
    return { stream, seen };
  }

  it('a body at the limit is served; one byte more answers 413 PAYLOAD_TOO_LARGE', async () => {
    const ok = await gw.fetch('/graphql', { method: 'POST', headers: headers(), body: padded(LIMIT) });
    expect(ok.status).toBe(200);
    expect((await ok.json()).data.viewer.scopes.length).toBeGreaterThan(0);
    const over = await gw.fetch('/graphql', { method: 'POST', headers: headers(), body: padded(LIMIT + 1) });
    expect(over.status).toBe(413);
    const body = await over.json();
    expect(body.errors[0].extensions).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', limit: 'body', maxBytes: LIMIT });
  });

  it('Content-Length over the limit answers 413 before a byte of the body is read', async () => {
    const { stream, seen } = endlessBody();
    const res = await inProcess.fetch('/graphql', {
      method: 'POST',
      headers: { ...headers(), authorization: `Bearer ${inProcess.keys.a}`, 'content-length': String(10 * 1024 ** 3) },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(seen.pulled).toBe(0);
  });

  it('a chunked body (no Content-Length) is read only up to the limit, then cancelled: 413', async () => {
    const { stream, seen } = endlessBody();
    const res = await inProcess.fetch('/graphql', { method: 'POST', headers: { ...headers(), authorization: `Bearer ${inProcess.keys.a}` }, body: stream, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(413);
    expect((await res.json()).errors[0].extensions.code).toBe('PAYLOAD_TOO_LARGE');
    expect(seen.pulled).toBeGreaterThan(LIMIT);
    expect(seen.pulled).toBeLessThanOrEqual(LIMIT + 2 * 16 * 1024);
    expect(seen.cancelled).toBe(true);
  });

  it('a chunked body under the limit is parsed and served', async () => {
    const text = padded(LIMIT);
    const parts = [text.slice(0, 10), text.slice(10, 30000), text.slice(30000)];
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of parts) controller.enqueue(new TextEncoder().encode(part));
        controller.close();
      },
    });
    const res = await gw.fetch('/graphql', { method: 'POST', headers: headers(), body: stream, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(200);
    expect((await res.json()).data.viewer.scopes).toContain('modules:read');
  });

  it('a Content-Length that is not a number answers 400', async () => {
    const res = await gw.fetch('/graphql', { method: 'POST', headers: { ...headers(), 'content-length': '12, 12' }, body: '{}' });
    expect(res.status).toBe(400);
  });

  /** Raw HTTP/1.1 over a socket: what a client that lies or streams really sends. */
  function rawRequest(head: string, write?: (send: (chunk: Buffer) => Promise<void>, answered: () => boolean) => Promise<void>) {
    return new Promise<{ response: string; sentBody: number }>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let response = '';
      let sentBody = 0;
      socket.on('data', (data) => {
        response += data.toString('latin1');
      });
      socket.on('error', (error) => (response ? undefined : reject(error)));
      socket.on('close', () => resolve({ response, sentBody }));
      socket.write(head);
      const send = async (chunk: Buffer) => {
        sentBody += chunk.length;
        if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
      };
      if (write) void write(send, () => response !== '' || socket.destroyed).catch(() => {});
      setTimeout(() => socket.destroy(), 10_000).unref();
    });
  }

  it('over HTTP: a 10 GiB Content-Length answers 413 though no body byte was sent', async () => {
    const { response, sentBody } = await rawRequest(
      `POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer ${gw.keys.a}\r\nContent-Length: ${10 * 1024 ** 3}\r\n\r\n`,
    );
    expect(sentBody).toBe(0);
    expect(response).toMatch(/^HTTP\/1\.1 413 /);
    expect(response).toMatch(/connection: close/i);
    expect(response).toContain('PAYLOAD_TOO_LARGE');
  });

  it('over HTTP: an endless chunked body answers 413 while the client is still sending', async () => {
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    const cap = 200 * LIMIT;
    const { response, sentBody } = await rawRequest(
      `POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer ${gw.keys.a}\r\nTransfer-Encoding: chunked\r\n\r\n`,
      async (send, answered) => {
        const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
        let sent = 0;
        while (!answered() && sent < cap) {
          await send(frame);
          sent += frame.length;
        }
      },
    );
    expect(response).toMatch(/^HTTP\/1\.1 413 /);
    expect(response).toContain('PAYLOAD_TOO_LARGE');
    // The server answered long before the client would have stopped (socket buffers hold some).
    expect(sentBody).toBeGreaterThan(LIMIT);
    expect(sentBody).toBeLessThan(cap);
  });

  it('over HTTP: a chunked body under the limit is served', async () => {
    const body = Buffer.from(JSON.stringify({ query: '{ viewer { scopes } }' }));
    const { response } = await rawRequest(
      `POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer ${gw.keys.a}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
      async (send) => {
        for (const part of [body.subarray(0, 7), body.subarray(7)]) await send(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
        await send(Buffer.from('0\r\n\r\n'));
      },
    );
    expect(response).toMatch(/^HTTP\/1\.1 200 /);
    expect(response).toContain('modules:read');
  });

  it('batching is off: an array body answers 400 BAD_REQUEST', async () => {
    const res = await gw.fetch('/graphql', {
      method: 'POST',
      headers: headers(),
      body: JSON.stringify([{ query: '{ viewer { scopes } }' }, { query: '{ viewer { scopes } }' }]),
    });
    expect(res.status).toBe(400);
    const body = await res.json();
    expect(body.errors[0]).toMatchObject({ message: 'Batching is not supported.', extensions: { code: 'BAD_REQUEST' } });
  });

  it('a mutation over GET answers 405 with Allow: POST, and changes nothing', async () => {
    const query = encodeURIComponent('mutation { installModule(input: { id: "via-get", name: "x", version: "1.0.0" }) { id } }');
    const res = await gw.fetch(`/graphql?query=${query}`, { headers: { authorization: `Bearer ${gw.keys.a}`, accept: 'application/json' } });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(await moduleCount(gw)).toBe(0);
    const read = await gw.fetch(`/graphql?query=${encodeURIComponent('{ viewer { scopes } }')}`, { headers: { authorization: `Bearer ${gw.keys.a}` } });
    expect(read.status).toBe(200);
  });

  it('variables nested past TENANTGATE_MAX_VARIABLE_DEPTH (32) answer LIMIT_EXCEEDED, and nothing runs', async () => {
    const deep = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    const install = (id: string, depth: number) =>
      gw.fetch('/graphql', {
        method: 'POST',
        headers: { ...headers(), accept: 'application/graphql-response+json' },
        body: `{"query": "mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }", "variables": {"i": {"id": "${id}", "name": "x", "version": "1.0.0", "config": ${deep(depth)}}}}`,
      });
    const over = await install('deep-over', 32); // i -> config -> 32 levels: 34 deep
    expect(over.status).toBe(400);
    expect((await over.json()).errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'variableDepth' });
    const huge = await install('deep-huge', 10_000); // ~60 KB, under this gateway's body limit
    expect(huge.status).toBe(400);
    expect(await moduleCount(gw)).toBe(0);
    const ok = await install('deep-ok', 30);
    expect(ok.status).toBe(200);
    expect(await moduleCount(gw)).toBe(1);
  });

  it('variables holding a lone surrogate answer 400 (SQLite would store other characters)', async () => {
    const res = await gw.fetch('/graphql', {
      method: 'POST',
      headers: headers(),
      body: '{"query": "mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }", "variables": {"i": {"id": "sur", "name": "a\\ud800b", "version": "1.0.0"}}}',
    });
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0].extensions.code).toBe('BAD_REQUEST');
    // A well-formed pair is fine.
    const pair = await gw.gql(gw.keys.a, 'mutation($i: InstallModuleInput!) { installModule(input: $i) { name } }', { i: { id: 'sur-ok', name: 'a\u{1F525}b', version: '1.0.0' } });
    expect(pair.body.data.installModule.name).toBe('a\u{1F525}b');
  });

  it('GET and form requests whose variables are not JSON answer 400, not 500', async () => {
    const get = await gw.fetch(`/graphql?query=${encodeURIComponent('{ viewer { scopes } }')}&variables=not-json`, { headers: { authorization: `Bearer ${gw.keys.a}` } });
    expect(get.status).toBe(400);
    expect((await get.json()).errors[0].extensions.code).toBe('BAD_REQUEST');
    const form = await gw.fetch('/graphql', {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.keys.a}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: `query=${encodeURIComponent('{ viewer { scopes } }')}&extensions=%7B`,
    });
    expect(form.status).toBe(400);
  });

  it('multipart bodies are not accepted (no uploads in this API)', async () => {
    const form = new FormData();
    form.set('operations', JSON.stringify({ query: '{ viewer { scopes } }' }));
    const res = await gw.fetch('/graphql', { method: 'POST', headers: { authorization: `Bearer ${gw.keys.a}` }, body: form });
    expect(res.status).toBe(415);
  });
});

describe('document limits, checked before validation', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({
      env: { TENANTGATE_MAX_FIELDS: '28', TENANTGATE_MAX_FIELD_REPEATS: '3', TENANTGATE_MAX_FRAGMENT_SPREADS: '2', TENANTGATE_MAX_VARIABLE_DEPTH: '6' },
    });
  });
  afterAll(async () => gw.close());

  // Each case: a document at the limit (runs), one past it (refused), and the message's words.
  const cases: Array<{ limit: string; ok: string; over: string; names: RegExp }> = [
    {
      limit: 'fields',
      // 9 fields in each of the first two viewers, 2 in the third, and V's own 8 (it is validated too): 28.
      ok: '{ viewer { ...V } a: viewer { ...V } b: viewer { scopes } } fragment V on Viewer { scopes org { id name } apiKey { id name prefix } }',
      over: '{ viewer { ...V } a: viewer { ...V } b: viewer { scopes org { id } } } fragment V on Viewer { scopes org { id name } apiKey { id name prefix } }',
      names: /field limit of 28 exceeded/i,
    },
    {
      limit: 'fieldRepeats',
      ok: '{ viewer { scopes scopes scopes } }',
      over: '{ viewer { scopes scopes } viewer { scopes scopes } }',
      names: /field repeat limit of 3 exceeded/i,
    },
    {
      limit: 'fieldRepeats',
      ok: '{ viewer { ...A ...B } } fragment A on Viewer { scopes } fragment B on Viewer { scopes scopes }',
      over: '{ viewer { scopes ...A ...B } } fragment A on Viewer { scopes } fragment B on Viewer { scopes scopes }',
      names: /field repeat limit of 3 exceeded/i,
    },
    {
      limit: 'fragmentSpreads',
      ok: '{ viewer { ...A ...B } } fragment A on Viewer { scopes } fragment B on Viewer { org { id } }',
      over: '{ viewer { ...A ...B } } fragment A on Viewer { scopes ...C } fragment B on Viewer { org { id } } fragment C on Viewer { apiKey { id } }',
      names: /fragment spread limit of 2 exceeded/i,
    },
    {
      limit: 'variableDepth',
      // The literal sits one level below the variables object, as a variable's value would.
      ok: 'mutation { installModule(input: { id: "lit-ok", name: "x", version: "1.0.0", config: { a: [[[1]]] } }) { id } }',
      over: 'mutation { installModule(input: { id: "lit-over", name: "x", version: "1.0.0", config: { a: [[[[1]]]] } }) { id } }',
      names: /literal nesting limit of 6 exceeded/i,
    },
  ];

  for (const c of cases) {
    it(`${c.limit}: at the limit runs; past it answers LIMIT_EXCEEDED naming the limit, and nothing runs`, async () => {
      const ok = await gw.gql(gw.keys.a, c.ok);
      expect(ok.body.errors, ok.text).toBeUndefined();
      const over = await gw.gql(gw.keys.a, c.over);
      expect(over.body.data).toBeUndefined();
      expect(over.body.errors, over.text).toHaveLength(1);
      expect(over.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: c.limit });
      expect(over.body.errors[0].message).toMatch(c.names);
      const strict = await gw.gql(gw.keys.a, c.over, undefined, { headers: { accept: 'application/graphql-response+json' } });
      expect(strict.status).toBe(400);
    });
  }

  it('a literal nested past the limit installs nothing', async () => {
    const before = await moduleCount(gw);
    const res = await gw.gql(gw.keys.a, `mutation { installModule(input: { id: "lit-deep", name: "x", version: "1.0.0", config: { a: ${'['.repeat(500)}1${']'.repeat(500)} } }) { id } }`);
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'variableDepth' });
    expect(await moduleCount(gw)).toBe(before);
  });

  it('fragments that spread each other twice are counted as the fields they expand to', async () => {
    // 2^30 fields expanded from a few hundred bytes.
    const chain = Array.from({ length: 30 }, (_, i) => `fragment F${i} on Viewer { ...F${i + 1} ...F${i + 1} }`).join(' ');
    const res = await gw.gql(gw.keys.a, `{ viewer { ...F0 } } ${chain} fragment F30 on Viewer { scopes }`);
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'fields' });
  });

  it('a fragment cycle answers graphql-js’s cycle error', async () => {
    const res = await gw.gql(gw.keys.a, '{ viewer { ...A } } fragment A on Viewer { ...B ...B } fragment B on Viewer { ...A scopes }');
    expect(res.body.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    // (Fragment names are the client's: withheld, see request-echo.ts.)
    expect(res.body.errors[0].message).toMatch(/^Cannot spread fragment "…" within itself/);
  });
});

describe('the defaults of the document limits', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ seed: false });
  });
  afterAll(async () => gw.close());

  it('refuse one field repeated 1,990 times (6 KB), before validation', async () => {
    const res = await gw.gql(gw.keys.a, `{ viewer { org { ${'id '.repeat(1990)}} } }`);
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'fields' });
  });

  it('refuse 17 selections of one key', async () => {
    const ok = await gw.gql(gw.keys.a, `{ viewer { org { ${'id '.repeat(16)}} } }`);
    expect(ok.body.errors).toBeUndefined();
    const res = await gw.gql(gw.keys.a, `{ viewer { org { ${'id '.repeat(17)}} } }`);
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'fieldRepeats' });
  });
});

describe('the cost limit counts pages asked for by variables', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ seed: false });
  });
  afterAll(async () => gw.close());

  const pages = (n: number, first: string) => `query($n: Int) { ${Array.from({ length: n }, (_, i) => `p${i}: ${FULL_PAGE.slice(2, -2).replace('first: 100', `first: ${first}`)}`).join(' ')} }`;

  it('fifteen pages of first: $n with n = 100 are refused as first: 100 is, with the same cost', async () => {
    const literal = await gw.gql(gw.keys.a, pages(15, '100'));
    expect(literal.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'cost' });
    const variable = await gw.gql(gw.keys.a, pages(15, '$n'), { n: 100 });
    expect(variable.body.data).toBeUndefined();
    expect(variable.body.errors, variable.text).toHaveLength(1);
    expect(variable.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'cost' });
    expect(variable.body.errors[0].message).toBe(literal.body.errors[0].message);
    expect(variable.status).toBe(literal.status);
    const strict = await gw.gql(gw.keys.a, pages(15, '$n'), { n: 100 }, { headers: { accept: 'application/graphql-response+json' } });
    expect(strict.status).toBe(400);
  });

  it('small pages by variable still run; a missing page counts as the largest', async () => {
    const small = await gw.gql(gw.keys.a, pages(15, '$n'), { n: 5 });
    expect(small.body.errors, small.text).toBeUndefined();
    const missing = await gw.gql(gw.keys.a, pages(15, '$n'), {});
    expect(missing.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'cost' });
    const two = await gw.gql(gw.keys.a, pages(2, '$n'), {});
    expect(two.body.errors, two.text).toBeUndefined();
  });

  it('counts variables inside fragments and a variable’s default value', async () => {
    const fragment = `query($n: Int = 100) { ${Array.from({ length: 15 }, (_, i) => `p${i}: modules(first: $n) { ...Page }`).join(' ')} } fragment Page on ModuleConnection { edges { node { ${MODULE_FIELDS} } } }`;
    const res = await gw.gql(gw.keys.a, fragment, {});
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'cost' });
  });
});
