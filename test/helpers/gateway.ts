import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createApp, type App } from '../../src/app.ts';
import type { Scope } from '../../src/auth/scopes.ts';
import { SCOPES } from '../../src/auth/scopes.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { captureLogger } from '../../src/logger.ts';
import { issueApiKey } from '../../src/repos/api-keys.ts';
import { createHttpServer } from '../../src/server.ts';
import { openStore, type OpenedStore } from '../../src/store/open.ts';
import { createScratchDatabase, type ScratchDatabase } from './postgres.ts';
import { SYSTEM_ACTOR } from '../../src/store/types.ts';

export const ORG_A = 'org-a';
export const ORG_B = 'org-b';
export const TENANT_SCOPES: Scope[] = SCOPES.filter((s) => s !== 'admin');

/**
 * How a test gateway's requests reach the app. `http`: over a real socket to `app.listener`,
 * served by createHttpServer (what `npm start` runs). `yoga`: `app.yoga.fetch` in process, for
 * the few tests that need Yoga's own entry point.
 */
export type Transport = 'http' | 'yoga';
export const TRANSPORTS: readonly Transport[] = ['http', 'yoga'];

/** Request options of `gw.fetch` and `gw.gql`. */
export type TestRequestInit = RequestInit & {
  /**
   * The client address the server sees: any address in 127.0.0.0/8 (Linux routes all of it to
   * the loopback), which the HTTP client binds as its local address. Default 127.0.0.1.
   */
  address?: string;
};

export interface GqlResponse {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  text: string;
}

/** Which store a test gateway runs on. */
export type Dialect = 'sqlite' | 'postgres';
/** The dialect test gateways use unless a test names one: TG_TEST_DIALECT=postgres runs a suite on PostgreSQL. */
export const DEFAULT_DIALECT: Dialect = process.env.TG_TEST_DIALECT === 'postgres' ? 'postgres' : 'sqlite';

export interface TestGateway {
  dir: string;
  dialect: Dialect;
  /** The scratch database (PostgreSQL only): its URLs, and superuser `query` to inspect rows; dropped by close(). */
  postgres: ScratchDatabase | undefined;
  config: Config;
  app: App;
  opened: OpenedStore;
  logger: ReturnType<typeof captureLogger>;
  transport: Transport;
  /** `http://127.0.0.1:<port>` of the served listener (transport `http` only). */
  origin: string | undefined;
  /** The server createHttpServer made around `app.listener` (transport `http` only). */
  server: http.Server | undefined;
  /** Keys holding every tenant scope in org A and org B, and an admin key in org `default`. */
  keys: { a: string; b: string; admin: string };
  /** A key in `orgId` holding exactly `scopes`. */
  key(orgId: string, scopes: readonly Scope[], expiresAt?: Date): Promise<string>;
  gql(key: string | null, query: string, variables?: Record<string, unknown>, init?: TestRequestInit): Promise<GqlResponse>;
  fetch(pathname: string, init?: TestRequestInit): Promise<Response>;
  /** Stop the server (and its keep-alive sockets), flush and close the app and the store (once); then delete the data dir unless `keepDir`. */
  close(options?: { keepDir?: boolean }): Promise<void>;
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
  /** Default `http`. */
  transport?: Transport;
  /**
   * Default DEFAULT_DIALECT (SQLite unless TG_TEST_DIALECT=postgres). On PostgreSQL the gateway
   * gets a scratch database of its own (test/helpers/postgres.ts), migrated on start through
   * TENANTGATE_MIGRATION_DATABASE, served as the request role, dropped by close().
   */
  dialect?: Dialect;
  /** PostgreSQL: use this scratch database instead of a new one (a second gateway on the same store); close() then leaves it. */
  database?: ScratchDatabase;
}

const LOOPBACK = /^127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)$/;

function clientAddress(address: string | undefined): string {
  if (address === undefined) return '127.0.0.1';
  // Checked on both transports, so that a test passes or fails the same way on each.
  if (!LOOPBACK.test(address)) throw new Error(`test address ${address}: use one in 127.0.0.0/8, which an HTTP client can bind`);
  return address;
}

/** A served listener and a keep-alive client for it. */
interface Served {
  origin: string;
  server: http.Server;
  fetch(pathname: string, init: RequestInit, address: string): Promise<Response>;
  close(): Promise<void>;
}

// Statuses whose responses have no body (the Response constructor refuses one).
const NULL_BODY = new Set([204, 205, 304]);

async function serve(app: App, config: Config): Promise<Served> {
  const server = createHttpServer(app, config);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  // One pool of kept-alive sockets per local address (the agent keys its pools by it).
  const agent = new http.Agent({ keepAlive: true });

  interface Outgoing {
    method: string;
    target: string;
    headers: Record<string, string>;
    body: Buffer | ReadableStream<Uint8Array> | undefined;
    address: string;
    signal: AbortSignal | undefined;
    /** On a connection of its own, closed after: the request's framing cannot be trusted. */
    alone: boolean;
  }

  const send = (out: Outgoing) =>
    new Promise<Response | 'reset'>((resolve, reject) => {
      let answered = false;
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: out.target,
          method: out.method,
          headers: out.alone ? { ...out.headers, connection: 'close' } : out.headers,
          agent: out.alone ? false : agent,
          localAddress: out.address,
          signal: out.signal,
        },
        (res) => {
          answered = true;
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            // Answered before the whole body was sent (a 413 for one): this socket is not reusable.
            if (!req.writableFinished) req.destroy();
            const headers = new Headers();
            for (let i = 0; i < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
            const status = res.statusCode ?? 0;
            const bytes = out.method === 'HEAD' || NULL_BODY.has(status) ? null : Buffer.concat(chunks);
            resolve(new Response(bytes, { status, statusText: res.statusMessage, headers }));
          });
        },
      );
      req.on('error', (error: NodeJS.ErrnoException) => {
        // Once answered, the answer stands (the server may close on a body it will not read).
        if (answered) return;
        // A kept-alive socket that the server closed as it was reused fails before any answer;
        // Node's docs (request.reusedSocket) say to send again. Only a buffered body can be.
        if (req.reusedSocket && error.code === 'ECONNRESET' && !(out.body instanceof ReadableStream)) resolve('reset');
        else reject(error);
      });
      if (out.body instanceof ReadableStream) {
        const source = Readable.fromWeb(out.body as NodeReadableStream<Uint8Array>);
        source.on('error', reject);
        req.on('close', () => source.destroy());
        source.pipe(req);
      } else req.end(out.body);
    });

  return {
    origin,
    server,
    async fetch(pathname, init, address) {
      // The Request says what a fetch would send: the method, the headers (with the content type
      // a string or URLSearchParams body implies) and the body's bytes.
      const url = new URL(pathname, origin);
      const request = new Request(url, init);
      const headers: Record<string, string> = {};
      request.headers.forEach((value, name) => (headers[name] = value));
      let body: Buffer | ReadableStream<Uint8Array> | undefined;
      let alone = false;
      if (init.body instanceof ReadableStream) body = request.body ?? undefined;
      else if (request.body !== null) {
        body = Buffer.from(await request.arrayBuffer());
        // A test may send a Content-Length that lies: the server then reads past this request.
        if (headers['content-length'] !== undefined && headers['content-length'] !== String(body.length)) alone = true;
        headers['content-length'] ??= String(body.length);
      }
      const out: Outgoing = { method: request.method, target: url.pathname + url.search, headers, body, address, signal: init.signal ?? undefined, alone };
      const first = await send(out);
      if (first !== 'reset') return first;
      const again = await send(out);
      if (again !== 'reset') return again;
      throw new Error(`${out.method} ${pathname}: the connection was reset twice`);
    },
    async close() {
      const closed = new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
      agent.destroy();
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * A PostgreSQL gateway's requests never run as a role that could bypass row-level security
 * (openStore refuses one too; this checks the tests' own set-up, as the request role sees itself).
 */
async function assertRequestRole(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ role: string; su: boolean; bypass: boolean }>(
      'SELECT rolname AS role, rolsuper AS su, rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user',
    );
    const row = rows[0];
    if (!row || row.su || row.bypass) throw new Error(`test gateway serves as ${JSON.stringify(row)}: a role that bypasses row-level security`);
  } finally {
    await client.end();
  }
}

/**
 * A gateway on a fresh store built by the real migrations, with two orgs whose data look alike
 * (same module ids, same credential field names), so that a leak cannot hide. Its requests go
 * over HTTP to the listener `npm start` serves, unless `transport: 'yoga'`.
 */
export async function createTestGateway(options: GatewayOptions = {}): Promise<TestGateway> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-test-'));
  const dialect = options.database ? 'postgres' : (options.dialect ?? DEFAULT_DIALECT);
  const scratch = dialect === 'postgres' ? (options.database ?? (await createScratchDatabase({ migrate: false }))) : undefined;
  const dropScratch = async () => {
    if (scratch && !options.database) await scratch.drop();
  };
  const logger = captureLogger('debug');
  let config: Config;
  let opened: OpenedStore;
  try {
    config = loadConfig({
      TENANTGATE_DATA_DIR: dir,
      TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64'),
      ...(scratch ? { TENANTGATE_DATABASE: scratch.requestUrl, TENANTGATE_MIGRATION_DATABASE: scratch.ownerUrl } : {}),
      // Every query and mutation of the suite runs compiled, from its first execution (the default
      // compiles on the eleventh); test/compiled-execution.test.ts compares the two engines' answers.
      TENANTGATE_COMPILE_AFTER: '0',
      ...options.env,
    });
    opened = await openStore(config, logger);
    if (scratch) await assertRequestRole(config.database);
  } catch (error) {
    await dropScratch();
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger });
  const store = opened.store;

  const key = async (orgId: string, scopes: readonly Scope[], expiresAt?: Date) =>
    (await issueApiKey(store, orgId, { name: `test ${scopes.join(' ')}`.slice(0, 100), scopes, expiresAt }, { keyId: null, scopes: 'all' }, SYSTEM_ACTOR)).secret;

  const now = new Date().toISOString();
  // A second gateway on the same scratch database finds the orgs there.
  for (const id of [ORG_A, ORG_B]) await store.system.orgs.insert({ id, name: `Org ${id.slice(-1).toUpperCase()}`, createdAt: now }, SYSTEM_ACTOR);
  const keys = { a: await key(ORG_A, TENANT_SCOPES), b: await key(ORG_B, TENANT_SCOPES), admin: await key('default', SCOPES) };

  const transport = options.transport ?? 'http';
  const served = transport === 'http' ? await serve(app, config) : undefined;
  const fetchApp = async (pathname: string, init: TestRequestInit = {}): Promise<Response> => {
    const { address, ...rest } = init;
    const from = clientAddress(address);
    if (served) return served.fetch(pathname, rest, from);
    return app.yoga.fetch(`http://localhost${pathname}`, rest, { req: { socket: { remoteAddress: from } } });
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

  let closing: Promise<void> | undefined;
  const gateway: TestGateway = {
    dir,
    dialect,
    postgres: scratch,
    config,
    app,
    opened,
    logger,
    transport,
    origin: served?.origin,
    server: served?.server,
    keys,
    key,
    gql,
    fetch: fetchApp,
    async close({ keepDir = false } = {}) {
      // Once: some tests close early and an afterEach closes again.
      closing ??= (async () => {
        await served?.close();
        await app.close();
        await store.close();
        await dropScratch();
      })();
      await closing;
      if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
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
