import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/app.ts';
import { SCOPES } from '../src/auth/scopes.ts';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import type { Gate } from '../src/pipeline/pipeline.ts';
import { issueApiKey } from '../src/repos/api-keys.ts';
import { createHttpServer } from '../src/server.ts';
import { openStore, type OpenedStore } from '../src/store/open.ts';
import { sleep, raw } from './helpers/api.ts';
import { createTestGateway, requestLines, type TestGateway } from './helpers/gateway.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

/**
 * Requests found in review of the listener (src/pipeline/listener.ts) that it answered otherwise
 * than Yoga alone would, or that skipped a stage: each is sent as raw bytes over a socket.
 */

const post = (authorization: string | undefined, text: string, last: boolean) =>
  `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n${last ? 'Connection: close\r\n' : ''}Content-Type: application/json\r\n` +
  `${authorization === undefined ? '' : `Authorization: ${authorization}\r\n`}Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;

const statuses = (answer: string) => [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

describe('the listener, on requests found in review', () => {
  let gw: TestGateway;
  let port: number;
  beforeAll(async () => {
    gw = await createTestGateway();
    port = Number(new URL(gw.origin!).port);
  });
  afterAll(async () => {
    await gw.close();
  });

  const slackEnabled = async () => (await gw.gql(gw.keys.a, '{ module(id: "slack") { enabled } }')).body.data.module.enabled as boolean;
  beforeEach(async () => {
    await gw.gql(gw.keys.a, 'mutation { enableModule(id: "slack") { id } }');
  });
  const disable = JSON.stringify({ query: 'mutation { disableModule(id: "slack") { id enabled } }' });

  it('answers a request pipelined after a refused key, as Yoga does (the refusal keeps the connection)', async () => {
    expect(await slackEnabled()).toBe(true);
    // Not half-closed: the mutation's answer waits for its sync (the last request says Connection: close).
    const answer = await raw(port, post('Bearer tgk_nope', '{"query":"{ __typename }"}', false) + post(`Bearer ${gw.keys.a}`, disable, true), { halfClose: false });
    expect(statuses(answer)).toEqual([401, 200]);
    expect(answer).toContain('"enabled":false');
    expect(await slackEnabled()).toBe(false);
  });

  it('never executes a request pipelined behind a refusal that closes the connection', async () => {
    expect(await slackEnabled()).toBe(true);
    const lines = gw.logger.lines.length;
    // No key: refused at once, before its body is parsed, so the connection closes after it.
    const answer = await raw(port, post(undefined, '{"query":"{ __typename }"}', false) + post(`Bearer ${gw.keys.a}`, disable, true));
    expect(statuses(answer)).toEqual([401]);
    expect(answer).toMatch(/^Connection: close\r$/im);
    await sleep(50);
    // Its answer could never be written: it must not run (nor be logged as answered).
    expect(await slackEnabled()).toBe(true);
    expect(requestLines(gw, lines).filter((l) => l.operation === 'disableModule')).toEqual([]);
  });
});

describe('the listener, with a gate that waits', () => {
  const gate: Gate = {
    name: 'slow gate',
    async admit() {
      await sleep(100);
    },
  };
  let dir: string;
  let opened: OpenedStore;
  let app: App;
  let logger: ReturnType<typeof captureLogger>;
  let server: http.Server;
  let port: number;
  let key: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-review-'));
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64') });
    logger = captureLogger('info');
    opened = await openStore(config, logger);
    app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger, stages: { gates: [gate] } });
    key = (await issueApiKey(opened.store, 'default', { name: 'test', scopes: [...SCOPES] }, { keyId: null, scopes: 'all' }, SYSTEM_ACTOR)).secret;
    server = createHttpServer(app, config);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await app.close();
    await opened.store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('records a request whose client left mid-body while it was being admitted', async () => {
    const lines = logger.lines.length;
    const text = JSON.stringify({ query: '{ viewer { org { id } } }' });
    await new Promise<void>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(post(`Bearer ${key}`, text, true).slice(0, -10));
        setTimeout(() => socket.destroy(), 20);
      });
      socket.on('close', () => resolve());
      socket.on('error', () => {});
    });
    await sleep(300);
    const recorded = logger.lines.slice(lines).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request');
    // As when the client leaves mid-body with no gate waiting (test/listener.test.ts): Yoga reads what there is.
    expect(recorded).toMatchObject([{ status: 400, outcome: 'bad_request', orgId: 'default' }]);
  });
});

describe('the listener, when the change feed cannot answer', () => {
  let dir: string;
  let opened: OpenedStore;
  let app: App;
  let logger: ReturnType<typeof captureLogger>;
  let key: string;
  const servers: http.Server[] = [];
  const listen = async (handler: http.RequestListener) => {
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  };
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-review-'));
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64') });
    logger = captureLogger('info');
    opened = await openStore(config, logger);
    // A networked store's feed can fail while its reads work: the cache cannot vouch for an answer then.
    const store = Object.create(opened.store, {
      changes: { value: { ...opened.store.changes, version: () => { throw new Error('change feed unreachable'); } } },
    }) as typeof opened.store;
    app = createApp({ store, secretBox: opened.secretBox, config, logger });
    key = (await issueApiKey(opened.store, 'default', { name: 'test', scopes: [...SCOPES] }, { keyId: null, scopes: 'all' }, SYSTEM_ACTOR)).secret;
  });
  afterAll(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    await app.close();
    await opened.store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('executes a cacheable query, as Yoga alone does, instead of answering 500', async () => {
    const mine = await listen(app.listener);
    const yoga = await listen(app.yoga as unknown as http.RequestListener);
    const page = post(`Bearer ${key}`, JSON.stringify({ query: '{ modules(first: 5) { totalCount } }' }), true);
    const unstamped = (answer: string) => answer.replace(/^Date: .*\r\n/gim, '');
    const alone = unstamped(await raw(yoga, page));
    expect(alone).toMatch(/^HTTP\/1\.1 200 /);
    expect(alone).toContain('"totalCount":0');
    const before = app.gateway.answered;
    expect(unstamped(await raw(mine, page))).toBe(alone);
    expect(app.gateway.answered - before).toBe(1);
    expect(logger.lines.filter((l) => l.includes('"level":"error"'))).toEqual([]);
  });
});
