import net from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sleep } from './helpers/api.ts';
import { createTestGateway, requestLines, type TestGateway } from './helpers/gateway.ts';

/**
 * Requests found in review of the listener (src/pipeline/listener.ts) that it answered otherwise
 * than Yoga alone would, or that skipped a stage: each is sent as raw bytes over a socket.
 */

/** Every byte a server sends back for these bytes, until it closes the connection. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
    socket.end(bytes);
  });
}

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
    const answer = await raw(port, post('Bearer tgk_nope', '{"query":"{ __typename }"}', false) + post(`Bearer ${gw.keys.a}`, disable, true));
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

