import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';
import { createTestGateway, ORG_A, requestLines, type LogLine, type TestGateway } from './helpers/gateway.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

/**
 * One structured log line per request, and Prometheus metrics whose labels do not grow with the
 * number of orgs, keys or client-chosen operation names.
 */

async function scrape(gw: TestGateway, headers: Record<string, string> = {}): Promise<string> {
  const res = await gw.fetch('/metrics', { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** `name{labels} value` lines of one metric, as [labels, value]. */
function samples(text: string, name: string): Array<[Record<string, string>, number]> {
  const out: Array<[Record<string, string>, number]> = [];
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const part of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[part[1]!] = part[2]!;
    out.push([labels, Number(m[3])]);
  }
  return out;
}

const value = (text: string, name: string, labels: Record<string, string>) =>
  samples(text, name).find(([l]) => Object.entries(labels).every(([k, v]) => l[k] === v))?.[1];

describe('request log', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ env: { TENANTGATE_MAX_DEPTH: '4' } });
  });
  afterAll(async () => gw.close());

  it('writes exactly one line per request, whatever its fate', async () => {
    const from = gw.logger.lines.length;
    const post = (body: string, key: string | null = gw.keys.a, extra: Record<string, string> = {}) =>
      gw.fetch('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra },
        body,
      });
    const responses = [
      await gw.gql(gw.keys.a, 'query ListThem { modules { totalCount } }'),
      await gw.gql(gw.keys.a, 'mutation { enableModule(id: "github") { id } }'),
      await gw.gql(gw.keys.a, '{ module(id: "nope") { id } hasCredential(moduleId: "x") }'),
      await gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "nope") { id } }'),
      await gw.gql(null, '{ viewer { scopes } }'),
      await gw.gql('tgk_notavalidkeyatallnotavalidkeyatallnotavalid', '{ viewer { scopes } }'),
      await gw.gql(gw.keys.a, '{ modules { edges { node { health { status } } } } }'),
      await gw.gql(gw.keys.a, '{ viewer { '),
      await post('{"query": '),
      await post('{}', gw.keys.a, { 'content-length': String(10 ** 9) }),
      await gw.fetch('/health'),
      await gw.fetch('/ready'),
      await gw.fetch('/nowhere'),
    ];
    const lines = requestLines(gw, from);
    expect(lines).toHaveLength(responses.length);
    expect(lines.map((l) => l.status)).toEqual(responses.map((r) => r.status));

    const [list, enable, notFound, uninstall, anonymous, invalid, deep, parse, badJson, tooBig, health, ready, nowhere] = lines as LogLine[];
    expect(list).toMatchObject({ level: 'info', method: 'POST', path: '/graphql', status: 200, outcome: 'ok', orgId: ORG_A, operation: 'modules', operationName: 'ListThem' });
    expect(list!.keyId).toMatch(/^key_/);
    expect(typeof list!.durationMs).toBe('number');
    expect(typeof list!.time).toBe('string');
    expect(enable).toMatchObject({ outcome: 'ok', operation: 'enableModule', operationName: null });
    expect(notFound).toMatchObject({ outcome: 'ok', operation: 'multiple' });
    expect(uninstall).toMatchObject({ outcome: 'not_found', operation: 'uninstallModule', orgId: ORG_A });
    expect(anonymous).toMatchObject({ status: 401, outcome: 'unauthenticated', orgId: null, keyId: null, operation: 'none' });
    expect(invalid).toMatchObject({ status: 401, outcome: 'unauthenticated', orgId: null });
    // Rejected before execution, yet the log knows whose operation it was.
    expect(deep).toMatchObject({ outcome: 'limit_exceeded', orgId: ORG_A, operation: 'modules' });
    expect(parse).toMatchObject({ outcome: 'graphql_parse_failed', orgId: ORG_A, operation: 'none' });
    expect(badJson).toMatchObject({ status: 400, outcome: 'bad_request' });
    expect(tooBig).toMatchObject({ status: 413, outcome: 'payload_too_large', orgId: null });
    expect(health).toMatchObject({ method: 'GET', path: '/health', status: 200 });
    expect(ready).toMatchObject({ path: '/ready', status: 200 });
    expect(nowhere).toMatchObject({ path: '/nowhere', status: 404 });
  });

  it('never logs a key, a secret value, a variable or the query text', async () => {
    const from = gw.logger.lines.length;
    const secret = `obs-secret-${randomBytes(6).toString('hex')}`;
    await gw.gql(gw.keys.a, 'mutation($s: JSONObject!) { setCredential(moduleId: "slack", secret: $s) { moduleId } }', { s: { token: secret } });
    await gw.gql(gw.keys.a, `mutation { setCredential(moduleId: "github", secret: { token: "${secret}" }) { moduleId } }`);
    await gw.gql(gw.keys.a, '{ credentialSecret(moduleId: "slack") }');
    const created = await gw.gql(gw.keys.a, 'mutation { createApiKey(input: { name: "logged?", scopes: ["modules:read"] }) { secret } }');
    const newKey = created.body.data.createApiKey.secret as string;
    await gw.gql(newKey, '{ viewer { scopes } }');
    await gw.gql(`${gw.keys.b}x`, '{ viewer { scopes } }');
    await gw.gql(gw.keys.a, `query ${newKey} { viewer { scopes } }`);

    const text = gw.logger.lines.slice(from).join('\n');
    for (const needle of [secret, newKey, gw.keys.a, gw.keys.b, newKey.slice(4, 30), 'setCredential(', 'JSONObject']) {
      expect(text).not.toContain(needle);
    }
    expect(requestLines(gw, from)).toHaveLength(7);
  });
});

describe('metrics', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway();
  });
  afterAll(async () => gw.close());

  it('serve request counts and latency by operation and outcome, auth failures and store errors', async () => {
    for (let i = 0; i < 5; i++) await gw.gql(gw.keys.a, '{ modules { totalCount } }');
    await gw.gql(gw.keys.a, 'mutation { uninstallModule(id: "nope") { id } }');
    await gw.gql(null, '{ viewer { scopes } }');
    await gw.gql('tgk_wrong', '{ viewer { scopes } }');
    gw.opened.sqlite.exec('ALTER TABLE modules RENAME TO modules_moved');
    // Not the text above: the response cache would answer that one without reading the store.
    await gw.gql(gw.keys.a, '{ modules(first: 5) { totalCount } }');
    gw.opened.sqlite.exec('ALTER TABLE modules_moved RENAME TO modules');

    const text = await scrape(gw);
    expect(text).toContain('# TYPE tenantgate_graphql_requests_total counter');
    expect(text).toContain('# TYPE tenantgate_graphql_request_duration_seconds histogram');
    expect(value(text, 'tenantgate_graphql_requests_total', { operation: 'modules', outcome: 'ok' })).toBeGreaterThanOrEqual(5);
    expect(value(text, 'tenantgate_graphql_requests_total', { operation: 'uninstallModule', outcome: 'not_found' })).toBe(1);
    expect(value(text, 'tenantgate_graphql_requests_total', { operation: 'none', outcome: 'unauthenticated' })).toBe(2);
    expect(value(text, 'tenantgate_graphql_requests_total', { operation: 'modules', outcome: 'internal' })).toBe(1);
    const count = value(text, 'tenantgate_graphql_request_duration_seconds_count', { operation: 'modules', outcome: 'ok' });
    expect(value(text, 'tenantgate_graphql_request_duration_seconds_bucket', { operation: 'modules', outcome: 'ok', le: '+Inf' })).toBe(count);
    expect(value(text, 'tenantgate_graphql_request_duration_seconds_bucket', { operation: 'modules', outcome: 'ok', le: '10' })).toBe(count);
    expect(value(text, 'tenantgate_graphql_request_duration_seconds_sum', { operation: 'modules', outcome: 'ok' })).toBeGreaterThan(0);
    expect(value(text, 'tenantgate_auth_failures_total', { reason: 'missing' })).toBe(1);
    expect(value(text, 'tenantgate_auth_failures_total', { reason: 'invalid' })).toBe(1);
    expect(value(text, 'tenantgate_auth_failures_total', { reason: 'rate_limited' })).toBe(0);
    expect(value(text, 'tenantgate_store_errors_total', { kind: 'other' })).toBe(1);
    expect(value(text, 'tenantgate_store_errors_total', { kind: 'full' })).toBe(0);
    // Process metrics come along, under the same prefix.
    expect(text).toContain('tenantgate_process_resident_memory_bytes');
  });

  it('have no label that grows with orgs, keys or client-chosen names', async () => {
    // Warm up every (operation, outcome) pair the burst below will produce.
    await gw.gql(gw.keys.a, 'query Warm { modules { totalCount } }');
    await gw.gql(gw.keys.a, '{ fieldThatIsNot }');
    const before = await scrape(gw);

    const orgIds: string[] = [];
    for (let i = 0; i < 30; i++) {
      const orgId = `metrics-org-${i}-${randomBytes(3).toString('hex')}`;
      orgIds.push(orgId);
      await gw.opened.store.system.orgs.insert({ id: orgId, name: orgId, createdAt: new Date().toISOString() }, SYSTEM_ACTOR);
      const key = await gw.key(orgId, ['modules:read']);
      const name = `Op_${randomBytes(4).toString('hex')}`;
      expect((await gw.gql(key, `query ${name} { modules { totalCount } }`)).body.data.modules.totalCount).toBe(0);
      await gw.gql(key, `{ field_${randomBytes(4).toString('hex')} }`);
    }
    const after = await scrape(gw);

    const series = (text: string) => text.split('\n').filter((l) => l.startsWith('tenantgate_graphql_') || l.startsWith('tenantgate_auth_') || l.startsWith('tenantgate_store_'));
    expect(series(after).length).toBe(series(before).length);
    for (const orgId of orgIds) expect(after).not.toContain(orgId);
    expect(after).not.toMatch(/Op_[0-9a-f]{8}|field_[0-9a-f]{8}|key_/);
    expect(value(after, 'tenantgate_graphql_requests_total', { operation: 'other', outcome: 'graphql_validation_failed' })).toBe(31);

    const operations = new Set(samples(after, 'tenantgate_graphql_requests_total').map(([l]) => l.operation));
    const known = new Set(['none', 'other', 'multiple', 'introspection', '__typename', 'modules', 'module', 'viewer', 'installModule', 'setCredential', 'uninstallModule', 'enableModule']);
    for (const op of operations) expect(known.has(op!), op).toBe(true);
  });

  it('need no API key by default, and are not counted as GraphQL requests', async () => {
    const text = await scrape(gw);
    expect(text).not.toContain('operation="metrics"');
  });
});

describe('metrics switches', () => {
  it('TENANTGATE_METRICS=false removes the endpoint', async () => {
    const gw = await createTestGateway({ seed: false, env: { TENANTGATE_METRICS: 'false' } });
    try {
      expect((await gw.fetch('/metrics')).status).toBe(404);
    } finally {
      await gw.close();
    }
  });

  it('TENANTGATE_METRICS_TOKEN makes the endpoint want that bearer token (and no API key will do)', async () => {
    const token = randomBytes(24).toString('base64url');
    const gw = await createTestGateway({ seed: false, env: { TENANTGATE_METRICS_TOKEN: token } });
    try {
      const none = await gw.fetch('/metrics');
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await gw.fetch('/metrics', { headers: { authorization: `Bearer ${token}x` } })).status).toBe(401);
      expect((await gw.fetch('/metrics', { headers: { authorization: `Bearer ${gw.keys.admin}` } })).status).toBe(401);
      await scrape(gw, { authorization: `Bearer ${token}` });
      expect(gw.logger.lines.join('\n')).not.toContain(token);
    } finally {
      await gw.close();
    }
  });

  it('a metrics token too short to be one stops the start without repeating it', () => {
    let message = '';
    try {
      loadConfig({ TENANTGATE_METRICS_TOKEN: 'short-tok' });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    expect(message).toMatch(/TENANTGATE_METRICS_TOKEN/);
    expect(message).not.toContain('short-tok');
    expect(loadConfig({}).metrics).toBe(true);
    expect(loadConfig({}).metricsToken).toBeUndefined();
  });
});
