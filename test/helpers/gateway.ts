import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createApp, type App } from '../../src/app.ts';
import type { Scope } from '../../src/auth/scopes.ts';
import { SCOPES } from '../../src/auth/scopes.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { captureLogger } from '../../src/logger.ts';
import { issueApiKey } from '../../src/repos/api-keys.ts';
import { openStore, type OpenedStore } from '../../src/store/open.ts';

export const ORG_A = 'org-a';
export const ORG_B = 'org-b';
export const TENANT_SCOPES: Scope[] = SCOPES.filter((s) => s !== 'admin');

export interface GqlResponse {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  text: string;
}

export interface TestGateway {
  dir: string;
  config: Config;
  app: App;
  opened: OpenedStore;
  logger: ReturnType<typeof captureLogger>;
  /** Keys holding every tenant scope in org A and org B, and an admin key in org `default`. */
  keys: { a: string; b: string; admin: string };
  /** A key in `orgId` holding exactly `scopes`. */
  key(orgId: string, scopes: readonly Scope[], expiresAt?: Date): Promise<string>;
  gql(key: string | null, query: string, variables?: Record<string, unknown>, init?: RequestInit & { address?: string }): Promise<GqlResponse>;
  fetch(pathname: string, init?: RequestInit & { address?: string }): Promise<Response>;
  close(): Promise<void>;
}

/** A line of the gateway's JSON log. */
export type LogLine = Record<string, unknown>;

/** The gateway's per-request log lines, from line `from` on. */
export function requestLines(gw: TestGateway, from = 0): LogLine[] {
  return gw.logger.lines
    .slice(from)
    .map((l) => JSON.parse(l) as LogLine)
    .filter((l) => l.msg === 'request');
}

/** How the last request was served by the response cache: 'hit', 'miss', or undefined when not cacheable. */
export function lastCache(gw: TestGateway): unknown {
  return requestLines(gw).at(-1)?.cache;
}

export interface GatewayOptions {
  env?: Record<string, string>;
  /** Install look-alike modules and credentials in both orgs (default true). */
  seed?: boolean;
}

/**
 * A gateway on a fresh store built by the real migrations, in process, with two orgs whose data
 * look alike (same module ids, same credential field names), so that a leak cannot hide.
 */
export async function createTestGateway(options: GatewayOptions = {}): Promise<TestGateway> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-test-'));
  const config = loadConfig({
    TENANTGATE_DATA_DIR: dir,
    TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64'),
    ...options.env,
  });
  const logger = captureLogger('debug');
  const opened = openStore(config, logger);
  const app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger });
  const store = opened.store;

  const key = async (orgId: string, scopes: readonly Scope[], expiresAt?: Date) =>
    (await issueApiKey(store, orgId, { name: `test ${scopes.join(' ')}`, scopes, expiresAt }, { keyId: null, scopes: 'all' })).secret;

  const now = new Date().toISOString();
  for (const id of [ORG_A, ORG_B]) await store.orgs.insert({ id, name: `Org ${id.slice(-1).toUpperCase()}`, createdAt: now });
  const keys = { a: await key(ORG_A, TENANT_SCOPES), b: await key(ORG_B, TENANT_SCOPES), admin: await key('default', SCOPES) };

  const fetchApp = (pathname: string, init: RequestInit & { address?: string } = {}) => {
    const { address = '127.0.0.1', ...rest } = init;
    return Promise.resolve(app.yoga.fetch(`http://localhost${pathname}`, rest, { req: { socket: { remoteAddress: address } } }));
  };

  const gql: TestGateway['gql'] = async (k, query, variables, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('content-type', 'application/json');
    if (k !== null) headers.set('authorization', `Bearer ${k}`);
    const res = await fetchApp('/graphql', { method: 'POST', body: JSON.stringify({ query, variables }), ...init, headers });
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: res.status, headers: res.headers, body, text };
  };

  const gateway: TestGateway = {
    dir,
    config,
    app,
    opened,
    logger,
    keys,
    key,
    gql,
    fetch: fetchApp,
    async close() {
      await app.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  if (options.seed !== false) {
    for (const [org, k] of [[ORG_A, keys.a], [ORG_B, keys.b]] as const) {
      for (const id of ['github', 'slack', `only-${org}`]) {
        const res = await gql(k, 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }', {
          i: { id, name: `${id} for ${org}`, version: '1.0.0', config: { owner: org } },
        });
        if (res.body?.errors) throw new Error(`seed failed: ${JSON.stringify(res.body.errors)}`);
      }
      const res = await gql(k, 'mutation($s: JSONObject!) { setCredential(moduleId: "github", secret: $s) { moduleId } }', {
        s: { token: `secret-token-of-${org}` },
      });
      if (res.body?.errors) throw new Error(`seed failed: ${JSON.stringify(res.body.errors)}`);
    }
  }
  return gateway;
}
