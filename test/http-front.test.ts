import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER_TYPES } from '../src/http/http-front.ts';
import { ok, sleep } from './helpers/api.ts';
import { createTestGateway, ORG_A, ORG_B, requestLines, type LogLine, type TestGateway } from './helpers/gateway.ts';

/**
 * The HTTP front (src/http/http-front.ts) answers a cached query before Yoga sees it. It must
 * answer exactly what Yoga would (status, headers, body, log line, metrics) and hand Yoga every
 * request it cannot answer so; and, like every path, never answer one org with another's data.
 * Every case goes over real HTTP to `app.front.listener`, and counts what the front answered.
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
  const server = http.createServer(gw.app.front.listener);
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

/** What a server sends back for these bytes, read until it closes the connection. */
function raw(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
    socket.end(bytes);
  });
}

/** An answer without the headers that change from one response to the next. */
const unstamped = (answer: string) => answer.replace(/^Date: .*\r\n/im, '');

const json = { 'content-type': 'application/json' };
const bearer = (key: string) => ({ ...json, authorization: `Bearer ${key}` });
const body = (query: string, variables?: unknown) => JSON.stringify({ query, variables });

/** The request line without what differs between any two requests. */
const stable = (line: LogLine | undefined) => {
  const { time: _time, durationMs, ...rest } = line ?? {};
  expect(typeof durationMs).toBe('number');
  return rest;
};

/** The answer's headers, without the ones Node sets per response. */
const headersOf = (answer: Answer) => {
  const { date: _date, ...rest } = answer.headers;
  return rest;
};

describe('HTTP front', () => {
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

  /** The answer, and whether the front answered it (rather than Yoga). */
  const send = async (headers: Record<string, string | undefined>, text: string | Buffer, chunked = false) => {
    const before = gw.app.front.answered;
    const answer = await post(served.url, headers, text, chunked);
    return { ...answer, byFront: gw.app.front.answered - before === 1 };
  };

  it('answers a repeated query with the status, headers and body Yoga sends, for every Accept it takes', async () => {
    for (const [accept, contentType] of ANSWER_TYPES) {
      // A query of its own per Accept header, so the first request is a miss that Yoga answers.
      const query = `{ modules(first: 20) { totalCount edges { node { id } } } } # ${accept ?? 'none'}`;
      const fromYoga = await send({ ...bearer(gw.keys.a), accept }, body(query));
      expect(fromYoga.byFront).toBe(false);
      expect(requestLines(gw).at(-1)?.cache).toBe('miss');
      const fromFront = await send({ ...bearer(gw.keys.a), accept }, body(query));
      expect(fromFront.byFront).toBe(true);
      expect(fromFront.status).toBe(fromYoga.status);
      expect(headersOf(fromFront)).toEqual(headersOf(fromYoga));
      expect(fromFront.headers['content-type']).toBe(contentType);
      expect(fromFront.text).toBe(fromYoga.text);
      expect(JSON.parse(fromFront.text).data.modules.totalCount).toBe(3);
    }
  });

  it('logs and counts a hit as Yoga does', async () => {
    await send(bearer(gw.keys.a), body(PAGE));
    // An Accept header the front does not take: Yoga answers the hit.
    const viaYoga = await send({ ...bearer(gw.keys.a), accept: 'application/json;charset=utf-8' }, body(PAGE));
    expect(viaYoga.byFront).toBe(false);
    const yogaLine = requestLines(gw).at(-1);
    const viaFront = await send({ ...bearer(gw.keys.a), accept: 'application/json' }, body(PAGE));
    expect(viaFront.byFront).toBe(true);
    const frontLine = requestLines(gw).at(-1);
    expect(stable(frontLine)).toEqual(stable(yogaLine));
    expect(frontLine).toMatchObject({ status: 200, outcome: 'ok', orgId: ORG_A, operation: 'modules', cache: 'hit' });
    expect(viaFront.text).toBe(viaYoga.text);

    const metrics = async () => (await gw.app.metrics.registry.metrics()).split('\n');
    const count = (lines: string[], prefix: string) => Number(lines.find((l) => l.startsWith(prefix))?.split(' ').at(-1));
    const hits = 'tenantgate_response_cache_total{result="hit"}';
    const pages = 'tenantgate_graphql_requests_total{operation="modules",outcome="ok"}';
    const before = await metrics();
    expect((await send(bearer(gw.keys.a), body(PAGE))).byFront).toBe(true);
    const after = await metrics();
    expect(count(after, hits) - count(before, hits)).toBe(1);
    expect(count(after, pages) - count(before, pages)).toBe(1);
  });

  it("never answers one org with another's cached answer (org B is the control)", async () => {
    const a = await send(bearer(gw.keys.a), body(PAGE));
    const again = await send(bearer(gw.keys.a), body(PAGE));
    expect(again.byFront).toBe(true);
    expect(again.text).toBe(a.text);
    expect(a.text).toContain('only-org-a');

    // Same text, same data version shape, other org: a miss answered by Yoga with B's data.
    const b = await send(bearer(gw.keys.b), body(PAGE));
    expect(b.byFront).toBe(false);
    expect(b.text).toContain('only-org-b');
    expect(b.text).not.toContain('org-a');
    const bAgain = await send(bearer(gw.keys.b), body(PAGE));
    expect(bAgain.byFront).toBe(true);
    expect(bAgain.text).toBe(b.text);

    // A key of org A with fewer scopes gets an answer of its own, never the full key's.
    const narrow = await gw.key(ORG_A, ['modules:read']);
    const first = await send(bearer(narrow), body(PAGE));
    expect(first.byFront).toBe(false);
    expect(first.status).toBe(200);
  });

  it('serves the next read after a write made through it fresh', async () => {
    const before = await send(bearer(gw.keys.a), body(PAGE));
    expect((await send(bearer(gw.keys.a), body(PAGE))).byFront).toBe(true);
    const write = await send(bearer(gw.keys.a), body('mutation { disableModule(id: "slack") { id enabled } }'));
    expect(write.byFront).toBe(false);
    expect(JSON.parse(write.text).data.disableModule.enabled).toBe(false);
    const after = await send(bearer(gw.keys.a), body(PAGE));
    expect(after.byFront).toBe(false);
    expect(after.text).not.toBe(before.text);
    const slack = JSON.parse(after.text).data.modules.edges.find((e: { node: { id: string } }) => e.node.id === 'slack');
    expect(slack.node.enabled).toBe(false);
    expect((await send(bearer(gw.keys.a), body('mutation { enableModule(id: "slack") { id } }'))).status).toBe(200);
  });

  it('leaves to Yoga every request it cannot answer exactly as Yoga would', async () => {
    const warm = await send(bearer(gw.keys.a), body(PAGE));
    expect((await send(bearer(gw.keys.a), body(PAGE))).byFront).toBe(true);
    const cases: Array<[string, Record<string, string | undefined>, string | Buffer, (a: Answer) => void, boolean?]> = [
      ['Origin (CORS is Yoga’s)', { ...bearer(gw.keys.a), origin: 'https://dash.example' }, body(PAGE), (a) => {
        expect(a.headers['access-control-allow-origin']).toBe('https://dash.example');
        expect(a.text).toBe(warm.text);
      }],
      ['Accept: text/event-stream', { ...bearer(gw.keys.a), accept: 'text/event-stream' }, body(PAGE), (a) => {
        expect(a.headers['content-type']).toBe('text/event-stream');
        expect(a.text).toContain('event: next');
      }],
      ['a chunked body', bearer(gw.keys.a), body(PAGE), (a) => expect(a.text).toBe(warm.text), true],
      ['extensions', bearer(gw.keys.a), JSON.stringify({ query: PAGE, extensions: {} }), (a) => expect(a.text).toBe(warm.text)],
      ['an unexpected parameter', bearer(gw.keys.a), JSON.stringify({ query: PAGE, other: 1 }), (a) => {
        expect(a.status).toBe(400);
        expect(a.text).toContain('Unexpected parameter');
      }],
      ['a body that is not JSON', bearer(gw.keys.a), '{"query": ', (a) => {
        expect(a.status).toBe(400);
        expect(JSON.parse(a.text).errors[0].extensions.code).toBe('BAD_REQUEST');
      }],
      ['a batch', bearer(gw.keys.a), JSON.stringify([{ query: PAGE }]), (a) => expect(a.status).toBe(400)],
      ['variables with a lone surrogate', bearer(gw.keys.a), '{"query":"query($s: String) { modules(first: 1) { totalCount } }","variables":{"s":"\\ud800"}}', (a) => {
        expect(a.status).toBe(400);
        expect(a.text).toContain('valid Unicode');
      }],
      ['no key', json, body(PAGE), (a) => {
        expect(a.status).toBe(401);
        expect(a.text).not.toContain('only-org-a');
      }],
      ['an unknown key', bearer(`${gw.keys.a.slice(0, -8)}AAAAAAAA`), body(PAGE), (a) => {
        expect(a.status).toBe(401);
        expect(a.text).not.toContain('only-org-a');
      }],
      ['a gzipped body', { ...bearer(gw.keys.a), 'content-encoding': 'gzip' }, gzipSync(body(PAGE)), (a) => {
        expect(a.status).toBeLessThan(500);
      }],
      ['a JSON content type with another charset', { ...bearer(gw.keys.a), 'content-type': 'application/json; charset=latin1' }, body(PAGE), (a) => {
        expect(a.status).toBeLessThan(500);
      }],
      ['a body over 40 KiB', bearer(gw.keys.a), body(`${PAGE}${' '.repeat(41 * 1024)}`), (a) => expect(a.status).toBe(200)],
    ];
    for (const [name, headers, text, check, chunked] of cases) {
      const answer = await send(headers, text, chunked);
      expect(answer.byFront, name).toBe(false);
      check(answer);
    }
    // The front is still answering: none of the above changed the cached answer.
    const after = await send(bearer(gw.keys.a), body(PAGE));
    expect(after.byFront).toBe(true);
    expect(after.text).toBe(warm.text);
  });

  it('stops answering for a key once it is revoked or expired', async () => {
    const key = await gw.key(ORG_A, ['modules:read', 'keys:manage']);
    await send(bearer(key), body(PAGE));
    expect((await send(bearer(key), body(PAGE))).byFront).toBe(true);
    const viewer = JSON.parse((await send(bearer(key), body('{ viewer { apiKey { id } } }'))).text);
    const revoked = await send(bearer(key), body(`mutation { revokeApiKey(id: "${viewer.data.viewer.apiKey.id}") { id } }`));
    expect(JSON.parse(revoked.text).errors).toBeUndefined();
    const after = await send(bearer(key), body(PAGE));
    expect(after.byFront).toBe(false);
    expect(after.status).toBe(401);
    expect(after.text).not.toContain('only-org-a');

    const expiring = await gw.key(ORG_A, ['modules:read'], new Date(Date.now() + 3000));
    const start = Date.now();
    await send(bearer(expiring), body(PAGE));
    expect((await send(bearer(expiring), body(PAGE))).byFront).toBe(true);
    expect(Date.now() - start).toBeLessThan(3000);
    await sleep(3100 - (Date.now() - start));
    const expired = await send(bearer(expiring), body(PAGE));
    expect(expired.byFront).toBe(false);
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
    const before = gw.app.front.answered;
    const pieces = await raw([text.slice(0, 10), text.slice(10, 30), text.slice(30)], 30);
    expect(pieces).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(pieces).toContain('only-org-a');
    expect(gw.app.front.answered).toBe(before + 1);

    const logged = gw.logger.lines.length;
    expect(await raw([text.slice(0, 20)], 10)).toBe('');
    await sleep(50);
    // Logged as Yoga logs a body cut short.
    expect(requestLines(gw, logged)).toMatchObject([{ status: 400, outcome: 'bad_request' }]);
    const next = await send(bearer(gw.keys.a), body(PAGE));
    expect(next.status).toBe(200);
    expect(next.byFront).toBe(true);
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
        ['Content-Type in capitals (Yoga: 415)', post('', page, 'APPLICATION/JSON'), false],
        ['Content-Type in mixed case', post('', page, 'Application/Json; charset=UTF-8'), false],
        ['a second Authorization header', post('Authorization: Bearer tgk_junk\r\n'), true],
        ['Expect: 100-continue', post('Expect: 100-continue\r\n'), true],
        ['a BOM before the JSON', post('', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(page)])), false],
        ['HTTP/1.0', request('POST /graphql HTTP/1.0', ''), true],
        ['an empty body', post('', ''), false],
        ['invalid UTF-8 in a comment', post('', Buffer.concat([Buffer.from(`{"query":"${PAGE} #`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])), true],
        ['extensions: null', post('', JSON.stringify({ query: PAGE, extensions: null })), false],
        ['a __proto__ key', post('', '{"query":"{ __typename }","__proto__":{"x":1}}'), false],
        ['an absolute-form target', request('POST http://127.0.0.1/graphql HTTP/1.1', ''), false],
        ['operationName: null', post('', JSON.stringify({ query: PAGE, operationName: null })), true],
        ['variables: null', post('', JSON.stringify({ query: PAGE, variables: null })), true],
        ['a query string', request('POST /graphql?x=1 HTTP/1.1', ''), false],
      ];
      for (const [name, bytes, answersItself] of cases) {
        // Twice through Yoga first: a hit there whenever the front could have one.
        await raw(yogaPort, bytes);
        const expected = unstamped(await raw(yogaPort, bytes));
        const before = gw.app.front.answered;
        const actual = unstamped(await raw(Number(served.url.port), bytes));
        expect(actual, name).toBe(expected);
        expect(gw.app.front.answered - before, name).toBe(answersItself ? 1 : 0);
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

  it('does not take the process down when the store fails under a cached query', async () => {
    const own = await createTestGateway({ seed: false });
    const server = await serve(own);
    try {
      const page = () => post(server.url, bearer(own.keys.a), body(PAGE));
      await page();
      await page();
      expect(own.app.front.answered).toBe(1);
      await own.opened.store.close();
      const failed = await page();
      expect(failed.status).toBe(500);
      expect(JSON.parse(failed.text).errors[0].extensions.code).toBe('INTERNAL_SERVER_ERROR');
      expect(failed.text).not.toMatch(/database|node_modules/);
      expect(own.app.front.answered).toBe(1);
    } finally {
      await server.close();
      await own.app.close().catch(() => {});
      fs.rmSync(own.dir, { recursive: true, force: true });
    }
  });

  it('answers nothing itself when the response cache is off', async () => {
    const off = await createTestGateway({ env: { TENANTGATE_RESPONSE_CACHE_BYTES: '0' } });
    const server = await serve(off);
    // Not even asked: with the cache off the front leaves every body to Yoga unread.
    let asked = 0;
    const answer = off.app.responseCache.answer;
    off.app.responseCache.answer = (...args) => {
      asked++;
      return answer(...args);
    };
    try {
      for (let i = 0; i < 3; i++) {
        const answer = await post(server.url, bearer(off.keys.a), body(PAGE));
        expect(ok({ status: answer.status, body: JSON.parse(answer.text) } as never).modules.totalCount).toBe(3);
      }
      expect(off.app.front.answered).toBe(0);
      expect(asked).toBe(0);
    } finally {
      await server.close();
      await off.close();
    }
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
});
