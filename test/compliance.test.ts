import { serverAudits } from 'graphql-http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './helpers/gateway.ts';

/**
 * The GraphQL-over-HTTP audit suite of the graphql-http package, run against the gateway in
 * process. Every request carries a valid key (the gateway answers nothing anonymous but 401), as a
 * real client's would. Every MUST audit has to pass, and so does every SHOULD and MAY audit.
 *
 * The audits query `__type`, so they need introspection: they run against the default (non
 * production) settings and against production with introspection switched on, which is the same
 * gateway with the same limits, masking and plugins.
 */
const setups: Array<[string, Record<string, string>]> = [
  ['default settings', {}],
  ['production, introspection on', { TENANTGATE_PRODUCTION: 'true', TENANTGATE_INTROSPECTION: 'true' }],
];

describe.each(setups)('GraphQL over HTTP audits (%s)', (_name, env) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ seed: false, env });
  });
  afterAll(async () => gw.close());

  const audits = serverAudits({
    url: 'http://localhost/graphql',
    fetchFn: async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      const headers = new Headers(request.headers);
      headers.set('authorization', `Bearer ${gw.keys.a}`);
      const url = new URL(request.url);
      return gw.fetch(`${url.pathname}${url.search}`, {
        method: request.method,
        headers,
        body: request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.arrayBuffer(),
      });
    },
  });

  it('has MUST audits to run', () => {
    expect(audits.filter((a) => a.name.startsWith('MUST')).length).toBeGreaterThanOrEqual(13);
  });

  for (const audit of audits) {
    it(audit.name, async () => {
      const result = await audit.fn();
      expect(result.status === 'ok' ? 'ok' : `${result.status}: ${result.reason}`).toBe('ok');
    });
  }
});
