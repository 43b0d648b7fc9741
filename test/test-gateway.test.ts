/**
 * The test gateway's transports. Most tests prove what they prove through `gw.gql` and
 * `gw.fetch`: over `http` those must reach the listener `npm start` serves, as a client would,
 * from the address the test names.
 */
import { describe, expect, it } from 'vitest';
import { generateKey } from '../src/auth/key-format.ts';
import { ok } from './helpers/api.ts';
import { createTestGateway, ORG_A, TRANSPORTS } from './helpers/gateway.ts';

const VIEWER = '{ viewer { org { id } } }';

describe('the test gateway', () => {
  it('over http, sends every request to the served listener, on one kept-alive connection', async () => {
    const gw = await createTestGateway({ seed: false });
    try {
      const connections: Array<string | undefined> = [];
      gw.server!.on('connection', (socket) => connections.push(socket.remoteAddress));
      const before = gw.app.gateway.answered;
      for (let i = 0; i < 5; i++) expect(ok(await gw.gql(gw.keys.a, VIEWER)).viewer.org.id).toBe(ORG_A);
      expect(gw.app.gateway.answered - before).toBe(5);
      expect((await gw.fetch('/health')).status).toBe(200);
      expect(connections).toEqual(['127.0.0.1']);
    } finally {
      await gw.close();
    }
  });

  it('in process (transport yoga), calls yoga.fetch and serves nothing', async () => {
    const gw = await createTestGateway({ seed: false, transport: 'yoga' });
    try {
      expect(gw.origin).toBeUndefined();
      expect(ok(await gw.gql(gw.keys.a, VIEWER)).viewer.org.id).toBe(ORG_A);
      expect(gw.app.gateway.answered).toBe(0);
    } finally {
      await gw.close();
    }
  });

  it.each(TRANSPORTS)('over %s, the server sees the address the test names, and only a loopback one is taken', async (transport) => {
    const gw = await createTestGateway({ seed: false, transport });
    try {
      const from = gw.logger.lines.length;
      expect((await gw.gql(generateKey(), VIEWER, undefined, { address: '127.4.5.6' })).status).toBe(401);
      const failed = gw.logger.lines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'authentication failed');
      expect(failed.map((l) => l.address)).toEqual(['127.4.5.6']);
      await expect(gw.gql(gw.keys.a, VIEWER, undefined, { address: '203.0.113.7' })).rejects.toThrow('127.0.0.0/8');
    } finally {
      await gw.close();
    }
  });

  it('close() stops the server and drops its kept-alive sockets, and may be called twice', async () => {
    const gw = await createTestGateway({ seed: false });
    ok(await gw.gql(gw.keys.a, VIEWER));
    const origin = gw.origin!;
    await gw.close();
    expect(gw.server!.listening).toBe(false);
    await expect(fetch(`${origin}/health`)).rejects.toThrow();
    await gw.close();
  });
});
