import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER_TYPES } from '../src/pipeline/listener.ts';
import { ok, raw, sleep } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, requestLines, type LogLine, type TestGateway } from './helpers/gateway.ts';

/**
 * The listener (src/pipeline/listener.ts) answers JSON POSTs itself, from the response cache or by
 * executing through Yoga's GraphQL handling without Yoga's Fetch layer. It must answer exactly
 * what Yoga alone would (status, headers, body, log line, metrics), hand Yoga every request it
 * does not take, and, like every path, never answer one org with another's data. Every case goes
 * over real HTTP to `app.listener`, and counts what the listener answered on its own path.
 */

const PAGE = '{ modules(first: 20) { edges { node { id name enabled } } totalCount } }';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

interface Served {
  url: URL;
  close(): Promise<void>;
}

async function serve(gw: TestGateway): Promise<Served> {
  const server = http.createServer(gw.app.listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}/graphql`),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A POST with exactly these headers (fetch would add Accept and others of its own). */
function post(url: URL, headers: Record<string, string | undefined>, body: string | Buffer, chunked = false): Promise<Answer> {
  const sent: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) sent[name] = value;
  if (!chunked) sent['content-length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: sent, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (chunked) {
      // Two writes without Content-Length: Node sends them chunked.
      const half = Math.floor(body.length / 2);
      req.write(body.slice(0, half));
      req.end(body.slice(half));
    } else {
      req.end(body);
    }
  });
}

/** An answer without the headers that change from one response to the next. */
const unstamped = (answer: string) => answer.replace(/^Date: .*\r\n/im, '');

const json = { 'content-type': 'application/json' };
const bearer = (key: string) => ({ ...json, authorization: `Bearer ${key}` });
const body = (query: string, variables?: unknown) => JSON.stringify({ query, variables });

/** The request line without what differs between any two requests. */
const stable = (line: LogLine | undefined) => {
  const { time: _time, durationMs, requestId, ...rest } = line ?? {};
  expect(typeof durationMs).toBe('number');
  // Every request has an id of its own (a UUID), so two lines of the same request shape differ by it.
  expect(requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  return rest;
};

/** Yoga alone, as a node handler on the same app: what the listener's answers are compared with. */
async function serveYoga(gw: TestGateway): Promise<Served> {
  const server = http.createServer(gw.app.yoga as unknown as http.RequestListener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The answer's headers, without the ones Node sets per response. */
const headersOf = (answer: Answer) => {
  const { date: _date, ...rest } = answer.headers;
  return rest;
};

describe('the listener', () => {
  let gw: TestGateway;
  let served: Served;
  beforeAll(async () => {
    gw = await createTestGateway({ env: { TENANTGATE_CORS_ORIGINS: 'https://dash.example' } });
    served = await serve(gw);
  });
  afterAll(async () => {
    await served.close();
    await gw.close();
  });

  /** The answer, whether the listener took it (rather than Yoga), and how the response cache served it. */
  const send = async (headers: Record<string, string | undefined>, text: string | Buffer, chunked = false) => {
    const before = gw.app.gateway.answered;
    const answer = await post(served.url, headers, text, chunked);
    return { ...answer, byListener: gw.app.gateway.answered - before === 1, cache: requestLines(gw).at(-1)?.cache };
  };

  it('answers with the status, headers and body Yoga alone sends, for every Accept it takes', async () => {
    const yoga = await serveYoga(gw);
    try {
      for (const [accept, contentType] of ANSWER_TYPES) {
        for (const [what, text] of [
          ['a page', body(`${PAGE} # ${accept ?? 'none'}`)],
          ['viewer', body('{ viewer { org { id } } }')],
          ['a validation error', body('{ modules(first: 1) { nope } }')],
          ['a refused key', body('{ viewer { org { id } } }')],
        ] as const) {
          const headers = what === 'a refused key' ? { ...json, accept, authorization: 'Bearer tgk_nope' } : { ...bearer(gw.keys.a), accept };
          const alone = await post(yoga.url, headers, text);
          const mine = await send(headers, text);
          expect(mine.byListener, `${what}, ${accept}`).toBe(true);
          expect(mine.status, `${what}, ${accept}`).toBe(alone.status);
          expect(headersOf(mine), `${what}, ${accept}`).toEqual(headersOf(alone));
          expect(mine.text, `${what}, ${accept}`).toBe(alone.text);
          if (mine.status === 200) expect(mine.headers['content-type']).toBe(`${contentType}; charset=utf-8`);
        }
      }
    } finally {
      await yoga.close();
    }
  });

  it('serves a repeated page from the response cache, logged and counted as a hit', async () => {
    const query = `${PAGE} # hit`;
    const first = await send(bearer(gw.keys.a), body(query));
    expect(first).toMatchObject({ byListener: true, cache: 'miss' });
    const missLine = requestLines(gw).at(-1);
    const metrics = async () => (await gw.app.metrics.registry.metrics()).split('\n');
    const count = (lines: string[], prefix: string) => Number(lines.find((l) => l.startsWith(prefix))?.split(' ').at(-1));
    const hits = 'tenantgate_response_cache_total{result="hit"}';
    const pages = 'tenantgate_graphql_requests_total{operation="modules",outcome="ok"}';
    const before = await metrics();
    const second = await send(bearer(gw.keys.a), body(query));
    expect(second).toMatchObject({ byListener: true, cache: 'hit' });
    expect(second.text).toBe(first.text);
    const after = await metrics();
    expect(count(after, hits) - count(before, hits)).toBe(1);
    expect(count(after, pages) - count(before, pages)).toBe(1);
    const hitLine = requestLines(gw).at(-1);
    expect({ ...stable(hitLine), cache: 'miss' }).toEqual(stable(missLine));
    expect(hitLine).toMatchObject({ status: 200, outcome: 'ok', orgId: ORG_A, operation: 'modules', cache: 'hit' });
  });

  it("never answers one org with another's cached answer (org B is the control)", async () => {
    const a = await send(bearer(gw.keys.a), body(PAGE));
    const again = await send(bearer(gw.keys.a), body(PAGE));
    expect(again.cache).toBe('hit');
    expect(again.text).toBe(a.text);
    expect(a.text).toContain('only-org-a');

    // Same text, other org: a miss, answered with B's data.
    const b = await send(bearer(gw.keys.b), body(PAGE));
    expect(b.cache).toBe('miss');
    expect(b.text).toContain('only-org-b');
    expect(b.text).not.toContain('org-a');
    const bAgain = await send(bearer(gw.keys.b), body(PAGE));
    expect(bAgain.cache).toBe('hit');
    expect(bAgain.text).toBe(b.text);

    // A key of org A with fewer scopes gets an answer of its own, never the full key's.
    const narrow = await gw.key(ORG_A, ['modules:read']);
    const first = await send(bearer(narrow), body(PAGE));
    expect(first.cache).toBe('miss');
    expect(first.status).toBe(200);
  });

  it('serves the next read after a write made through it fresh', async () => {
    const before = await send(bearer(gw.keys.a), body(PAGE));
    expect((await send(bearer(gw.keys.a), body(PAGE))).cache).toBe('hit');
    const write = await send(bearer(gw.keys.a), body('mutation { disableModule(id: "slack") { id enabled } }'));
    expect(write.byListener).toBe(true);
    expect(JSON.parse(write.text).data.disableModule.enabled).toBe(false);
    const after = await send(bearer(gw.keys.a), body(PAGE));
    expect(after.cache).toBe('miss');
    expect(after.text).not.toBe(before.text);
    const slack = JSON.parse(after.text).data.modules.edges.find((e: { node: { id: string } }) => e.node.id === 'slack');
    expect(slack.node.enabled).toBe(false);
    expect((await send(bearer(gw.keys.a), body('mutation { enableModule(id: "slack") { id } }'))).status).toBe(200);
  });

  it('answers browser requests from an allowed origin itself, with CORS headers, and others without', async () => {
    const allowed = await send({ ...bearer(gw.keys.a), origin: 'https://dash.example' }, body(PAGE));
    expect(allowed.byListener).toBe(true);
    expect(allowed.headers['access-control-allow-origin']).toBe('https://dash.example');
    expect(allowed.headers['access-control-allow-credentials']).toBeUndefined();
    expect(allowed.headers.vary).toContain('Origin');
    const other = await send({ ...bearer(gw.keys.a), origin: 'https://evil.example' }, body(PAGE));
    expect(other.byListener).toBe(true);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('hands Yoga every request it does not take, and Yoga answers it', async () => {
    const cases: Array<[string, Record<string, string | undefined>, string | Buffer, (a: Answer) => void, boolean?]> = [
      ['Accept: text/event-stream', { ...bearer(gw.keys.a), accept: 'text/event-stream' }, body(PAGE), (a) => {
        expect(a.headers['content-type']).toBe('text/event-stream');
        expect(a.text).toContain('event: next');
      }],
      ['a chunked body', bearer(gw.keys.a), body(PAGE), (a) => expect(JSON.parse(a.text).data.modules.totalCount).toBe(3), true],
      ['a gzipped body', { ...bearer(gw.keys.a), 'content-encoding': 'gzip' }, gzipSync(body(PAGE)), (a) => {
        expect(a.status).toBeLessThan(500);
      }],
      ['a JSON content type with another charset', { ...bearer(gw.keys.a), 'content-type': 'application/json; charset=latin1' }, body(PAGE), (a) => {
        expect(a.status).toBeLessThan(500);
      }],
      ['an Accept it does not list', { ...bearer(gw.keys.a), accept: 'application/json;charset=utf-8' }, body(PAGE), (a) => {
        expect(JSON.parse(a.text).data.modules.totalCount).toBe(3);
      }],
      ['a body over the limit', { ...bearer(gw.keys.a) }, body(`${PAGE}${' '.repeat(2 * 1024 * 1024)}`), (a) => expect(a.status).toBe(413)],
    ];
    for (const [name, headers, text, check, chunked] of cases) {
      const answer = await send(headers, text, chunked);
      expect(answer.byListener, name).toBe(false);
      check(answer);
    }
  });

  it('refuses a key once it is revoked or expired', async () => {
    const key = await gw.key(ORG_A, ['modules:read', 'keys:manage']);
    await send(bearer(key), body(PAGE));
    expect((await send(bearer(key), body(PAGE))).cache).toBe('hit');
    const viewer = JSON.parse((await send(bearer(key), body('{ viewer { apiKey { id } } }'))).text);
    const revoked = await send(bearer(key), body(`mutation { revokeApiKey(id: "${viewer.data.viewer.apiKey.id}") { id } }`));
    expect(JSON.parse(revoked.text).errors).toBeUndefined();
    const after = await send(bearer(key), body(PAGE));
    expect(after.status).toBe(401);
    expect(after.text).not.toContain('only-org-a');

    const expiring = await gw.key(ORG_A, ['modules:read'], new Date(Date.now() + 3000));
    const start = Date.now();
    await send(bearer(expiring), body(PAGE));
    expect((await send(bearer(expiring), body(PAGE))).cache).toBe('hit');
    expect(Date.now() - start).toBeLessThan(3000);
    await sleep(3100 - (Date.now() - start));
    const expired = await send(bearer(expiring), body(PAGE));
    expect(expired.status).toBe(401);
  });

  it('answers a body that arrives in pieces, and survives a client that leaves mid-body', async () => {
    await send(bearer(gw.keys.a), body(PAGE));
    const text = body(PAGE);
    const raw = (parts: string[], delayMs: number) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(served.url.port), '127.0.0.1');
        let received = '';
        socket.on('data', (chunk) => (received += chunk.toString('utf8')));
        socket.on('end', () => resolve(received));
        socket.on('error', reject);
        socket.on('connect', async () => {
          socket.write(
            `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n` +
              `Authorization: Bearer ${gw.keys.a}\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n`,
          );
          for (const part of parts) {
            await sleep(delayMs);
            socket.write(part);
          }
          if (parts.join('') !== text) socket.destroy();
        });
        socket.on('close', () => resolve(received));
      });
    const before = gw.app.gateway.answered;
    const pieces = await raw([text.slice(0, 10), text.slice(10, 30), text.slice(30)], 30);
    expect(pieces).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(pieces).toContain('only-org-a');
    expect(gw.app.gateway.answered).toBe(before + 1);

    const logged = gw.logger.lines.length;
    expect(await raw([text.slice(0, 20)], 10)).toBe('');
    await sleep(50);
    // Logged as Yoga logs a body cut short.
    expect(requestLines(gw, logged)).toMatchObject([{ status: 400, outcome: 'bad_request' }]);
    const next = await send(bearer(gw.keys.a), body(PAGE));
    expect(next.status).toBe(200);
    expect(next.byListener).toBe(true);
  });

  it('answers byte for byte as Yoga does, for requests at the edges of what it takes', async () => {
    const yoga = http.createServer(gw.app.yoga as unknown as http.RequestListener);
    await new Promise<void>((resolve) => yoga.listen(0, '127.0.0.1', resolve));
    const yogaPort = (yoga.address() as AddressInfo).port;
    try {
      const page = JSON.stringify({ query: PAGE });
      const request = (line: string, headers: string, text: string | Buffer = page, type = 'application/json') => {
        const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
        const head =
          `${line}\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: ${type}\r\n` +
          `Authorization: Bearer ${gw.keys.a}\r\nContent-Length: ${bytes.length}\r\n${headers}\r\n`;
        return Buffer.concat([Buffer.from(head), bytes]);
      };
      const post = (headers = '', text?: string | Buffer, type?: string) => request('POST /graphql HTTP/1.1', headers, text, type);
      await raw(yogaPort, post());
      const cases: Array<[string, Buffer, boolean]> = [
        ['a cached page', post(), true],
        ['an executed query', post('', JSON.stringify({ query: '{ viewer { org { id } scopes } }' })), true],
        ['a mutation', post('', JSON.stringify({ query: 'mutation { enableModule(id: "github") { id enabled } }' })), true],
        ['a validation error', post('', JSON.stringify({ query: '{ modules(first: 1) { nope } }' })), true],
        ['a syntax error', post('', JSON.stringify({ query: '{ modules(first: 1) { ' })), true],
        ['an unexpected parameter', post('', JSON.stringify({ query: PAGE, other: 1 })), true],
        ['variables of the wrong type', post('', JSON.stringify({ query: 'query($n: Int) { modules(first: $n) { totalCount } }', variables: { n: 'x' } })), true],
        ['a field error', post('', JSON.stringify({ query: '{ module(id: "nope") { id } }' })), true],
        ['a batch', post('', JSON.stringify([{ query: PAGE }])), false],
        ['a body that is not JSON', post('', '{"query": '), false],
        ['Content-Type in capitals (Yoga: 415)', post('', page, 'APPLICATION/JSON'), false],
        ['Content-Type in mixed case', post('', page, 'Application/Json; charset=UTF-8'), false],
        ['a second Authorization header', post('Authorization: Bearer tgk_junk\r\n'), true],
        ['no key', request('POST /graphql HTTP/1.1', '').toString('latin1').replace(/Authorization: [^\r]*\r\n/, '') as unknown as Buffer, true],
        ['Expect: 100-continue', post('Expect: 100-continue\r\n'), true],
        ['a BOM before the JSON', post('', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(page)])), false],
        ['HTTP/1.0', request('POST /graphql HTTP/1.0', ''), true],
        ['an empty body', post('', ''), false],
        ['invalid UTF-8 in a comment', post('', Buffer.concat([Buffer.from(`{"query":"${PAGE} #`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])), true],
        ['extensions: null', post('', JSON.stringify({ query: PAGE, extensions: null })), true],
        ['a __proto__ key', post('', '{"query":"{ __typename }","__proto__":{"x":1}}'), true],
        ['an absolute-form target', request('POST http://127.0.0.1/graphql HTTP/1.1', ''), false],
        ['operationName: null', post('', JSON.stringify({ query: PAGE, operationName: null })), true],
        ['variables: null', post('', JSON.stringify({ query: PAGE, variables: null })), true],
        ['a query string', request('POST /graphql?x=1 HTTP/1.1', ''), false],
      ];
      for (const [name, bytes, answersItself] of cases) {
        // Once through the listener first, so a cacheable answer is a hit on the compared run.
        // Every request says Connection: close; not half-closed, so a mutation's answer (which
        // waits for its sync) is not dropped.
        await raw(Number(served.url.port), bytes, { halfClose: false });
        const expected = unstamped(await raw(yogaPort, bytes, { halfClose: false }));
        const before = gw.app.gateway.answered;
        const actual = unstamped(await raw(Number(served.url.port), bytes, { halfClose: false }));
        expect(actual, name).toBe(expected);
        expect(actual, name).toMatch(/^HTTP\/1\.[01] \d{3} /);
        expect(gw.app.gateway.answered - before, name).toBe(answersItself ? 1 : 0);
      }
    } finally {
      yoga.closeAllConnections();
      await new Promise((resolve) => yoga.close(resolve));
    }
  });

  it('answers a Host and target that make no URL with a 400, never a stack', async () => {
    for (const host of ['localhost:99999', '[:::]', '1.2.3.256', 'a b']) {
      for (const method of ['GET', 'POST']) {
        const text = JSON.stringify({ query: PAGE });
        const answer = await raw(
          Number(served.url.port),
          Buffer.from(
            `${method} /graphql HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
              `Authorization: Bearer ${gw.keys.a}\r\nContent-Length: ${text.length}\r\n\r\n${text}`,
          ),
        );
        if (host === 'a b') {
          // Node's parser refuses this one before any listener runs.
          expect(answer).toMatch(/^HTTP\/1\.1 400/);
          continue;
        }
        expect(answer, host).toMatch(/^HTTP\/1\.1 400 Bad Request/);
        expect(answer, host).toContain('"code":"BAD_REQUEST"');
        expect(answer, host).not.toMatch(/node_modules|at \w|Error/);
      }
    }
  });

  it('logs the duration from arrival when Yoga answers a body the front has read', async () => {
    const text = JSON.stringify({ query: '{ viewer { org { id } } }' });
    const slow = () =>
      new Promise<void>((resolve, reject) => {
        const req = http.request(served.url, { method: 'POST', headers: { ...bearer(gw.keys.a), 'content-length': Buffer.byteLength(text) } }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.write(text.slice(0, 5));
        setTimeout(() => req.end(text.slice(5)), 200);
      });
    await slow();
    const line = requestLines(gw).at(-1);
    expect(line).toMatchObject({ status: 200, operation: 'viewer' });
    expect(line?.durationMs as number).toBeGreaterThanOrEqual(150);
  });

  it('answers the next request on a kept-alive connection after a fallback', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const request = (text: string) =>
        new Promise<Answer>((resolve, reject) => {
          const req = http.request(served.url, { method: 'POST', agent, headers: { ...bearer(gw.keys.b), 'content-length': Buffer.byteLength(text) } }, (res) => {
            let received = '';
            res.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
            res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: received }));
          });
          req.on('error', reject);
          req.end(text);
        });
      const answers = [];
      for (const text of [body(PAGE), body(PAGE), body('{ viewer { org { id } } }'), body(PAGE)]) answers.push(await request(text));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
      expect(answers[3]!.text).toBe(answers[1]!.text);
      expect(JSON.parse(answers[2]!.text).data.viewer.org.id).toBe(ORG_B);
    } finally {
      agent.destroy();
    }
  });
  it('does not take the process down when the store fails under a cached query', async () => {
    const own = await createTestGateway({ seed: false });
    const server = await serve(own);
    try {
      const page = () => post(server.url, bearer(own.keys.a), body(PAGE));
      await page();
      expect(requestLines(own).at(-1)?.cache).toBe('miss');
      await own.opened.store.close();
      const failed = await page();
      // As Yoga alone answers it: the feed cannot vouch for a cached answer, so the query executes and fails.
      const yoga = await serveYoga(own);
      const alone = await post(yoga.url, bearer(own.keys.a), body(PAGE)).finally(() => yoga.close());
      expect(failed.status).toBe(alone.status);
      expect(failed.text).toBe(alone.text);
      expect(['INTERNAL_SERVER_ERROR', 'SERVICE_UNAVAILABLE']).toContain(JSON.parse(failed.text).errors[0].extensions.code);
      expect(failed.text).not.toMatch(/database|node_modules|sqlite/i);
      // Still serving.
      expect((await fetch(server.url.href.replace('/graphql', '/health'))).status).toBe(200);
    } finally {
      await server.close();
      await own.app.close().catch(() => {});
      fs.rmSync(own.dir, { recursive: true, force: true });
    }
  });


  it('serves no answer from a cache that is off, and executes every request', async () => {
    const off = await createTestGateway({ env: { TENANTGATE_RESPONSE_CACHE_BYTES: '0' } });
    const server = await serve(off);
    const before = off.app.gateway.answered;
    try {
      for (let i = 0; i < 3; i++) {
        const answer = await post(server.url, bearer(off.keys.a), body(PAGE));
        expect(ok({ status: answer.status, body: JSON.parse(answer.text) } as never).modules.totalCount).toBe(3);
        expect(requestLines(off).at(-1)?.cache).toBeUndefined();
      }
      expect(off.app.gateway.answered - before).toBe(3);
    } finally {
      await server.close();
      await off.close();
    }
  });
});
