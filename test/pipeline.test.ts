import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createYoga } from 'graphql-yoga';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/app.ts';
import { SCOPES } from '../src/auth/scopes.ts';
import { loadConfig } from '../src/config.ts';
import { forbidden } from '../src/errors.ts';
import { schema } from '../src/graphql/schema.ts';
import { captureLogger } from '../src/logger.ts';
import type { Gate, Recorder } from '../src/pipeline/pipeline.ts';
import { YOGA_PATH_ONLY } from '../src/pipeline/use-pipeline.ts';
import { issueApiKey } from '../src/repos/api-keys.ts';
import { createHttpServer } from '../src/server.ts';
import { openStore, type OpenedStore } from '../src/store/open.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

/**
 * The pipeline (src/pipeline/pipeline.ts) is one list of stages. A gate and a recorder added to a
 * test app run, in order, on every path the served listener has: a cache hit, an executed query,
 * a mutation, a request the listener hands to Yoga, and refused requests. And no Yoga plugin may
 * have hooks the listener's path skips unless it says why.
 */

const PAGE = '{ modules(first: 5) { totalCount } }';

describe('the stages run on every path, in order', () => {
  const trace: string[] = [];
  let refuseNext = false;
  const gate: Gate = {
    name: 'test gate',
    admit(exchange) {
      trace.push(`admit ${exchange.principal.orgId}`);
      if (refuseNext) {
        refuseNext = false;
        throw forbidden('refused by the test gate');
      }
    },
  };
  const recorder: Recorder = {
    name: 'test recorder',
    record(exchange) {
      trace.push(`record ${exchange.status} ${exchange.cache ?? '-'} ${exchange.operation.operation}`);
    },
  };

  let dir: string;
  let opened: OpenedStore;
  let app: App;
  let url: string;
  let key: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-pipeline-'));
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64') });
    const logger = captureLogger('warn');
    opened = await openStore(config, logger);
    app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger, stages: { gates: [gate], recorders: [recorder] } });
    key = (await issueApiKey(opened.store, 'default', { name: 'test', scopes: [...SCOPES] }, { keyId: null, scopes: 'all' }, SYSTEM_ACTOR)).secret;
    const server = createHttpServer(app, config);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
    close = () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
  });
  afterAll(async () => {
    await close();
    await app.close();
    await opened.store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The stages a request passed, and its answer. */
  const run = async (init: RequestInit & { query?: string }, withKey: string | null = key) => {
    trace.length = 0;
    const { query, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (withKey !== null) headers.set('authorization', `Bearer ${withKey}`);
    if (query !== undefined) headers.set('content-type', 'application/json');
    const res = await fetch(url + (rest.method === 'GET' ? `?query=${encodeURIComponent(query ?? '')}` : ''), {
      method: 'POST',
      ...rest,
      headers,
      body: rest.method === 'GET' ? undefined : JSON.stringify({ query }),
    });
    const body = (await res.json()) as { data?: Record<string, unknown>; errors?: Array<{ extensions: { code: string } }> };
    // The recorder runs after the answer is written: give it the turn of the event loop.
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { status: res.status, body, stages: [...trace] };
  };

  it('on an executed query and then a cache hit', async () => {
    const executed = await run({ query: PAGE });
    expect(executed.stages).toEqual(['admit default', 'record 200 miss modules']);
    const hit = await run({ query: PAGE });
    expect(hit.stages).toEqual(['admit default', 'record 200 hit modules']);
    expect(hit.body).toEqual(executed.body);
  });

  it('on a mutation', async () => {
    const mutation = await run({ query: 'mutation { installModule(input: { id: "m1", name: "M", version: "1.0.0" }) { id } }' });
    expect(mutation.body.errors).toBeUndefined();
    expect(mutation.stages).toEqual(['admit default', 'record 200 - installModule']);
  });

  it("on a request the listener hands to Yoga (a GET), through Yoga's path", async () => {
    const get = await run({ method: 'GET', query: '{ viewer { org { id } } }', headers: { accept: 'application/json' } });
    expect(get.body.data).toEqual({ viewer: { org: { id: 'default' } } });
    expect(get.stages).toEqual(['admit default', 'record 200 - viewer']);
  });

  it('on a request refused by authentication: no gate, but recorded', async () => {
    const refused = await run({ query: PAGE }, 'tgk_notakey');
    expect(refused.status).toBe(401);
    expect(refused.stages).toEqual(['record 401 - none']);
    const anonymous = await run({ query: PAGE }, null);
    expect(anonymous.stages).toEqual(['record 401 - none']);
  });

  it('on a request refused by a gate: nothing answers it, even from the cache, and it is recorded', async () => {
    refuseNext = true;
    const refused = await run({ query: PAGE });
    expect(refused.body.errors?.[0]?.extensions.code).toBe('FORBIDDEN');
    expect(refused.body.data).toBeUndefined();
    expect(refused.stages).toEqual(['admit default', 'record 200 - none']);
    // The control: the same request, admitted, is answered.
    const admitted = await run({ query: PAGE });
    expect(admitted.body.data).toEqual({ modules: { totalCount: 1 } });
    expect(admitted.stages).toEqual(['admit default', expect.stringMatching(/^record 200 (hit|miss) modules$/)]);
  });
});

describe('Yoga plugins and the listener', () => {
  /** Hooks Yoga runs only on its own path: the listener's path skips them. */
  const YOGA_ONLY_HOOKS = ['onRequest', 'onRequestParse', 'onResultProcess', 'onResponse'];

  // Yoga keeps the plugin list it built (its own and ours, in order) as `plugins`.
  const pluginsOf = (yoga: unknown): object[] =>
    (yoga as { plugins: Array<object | false | null | undefined> }).plugins.filter((p): p is object => typeof p === 'object' && p !== null);
  const signature = (plugin: object) =>
    Object.keys(plugin)
      .filter((name) => name.startsWith('on'))
      .sort()
      .join(',');

  it("has no plugin whose request hooks the listener would skip, beyond Yoga's own and those that say why", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-plugins-'));
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64') });
    const opened = await openStore(config, captureLogger('warn'));
    const app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger: captureLogger('warn') });
    try {
      // Yoga's own plugins, as the app configures Yoga: they serve what the listener hands over.
      const bare = createYoga({ schema, graphiql: false, landingPage: false, batching: false, multipart: false, maxRequestBodySize: false, cors: () => false, healthCheckEndpoint: '/health' });
      const yogaOwn = new Map<string, number>();
      for (const plugin of pluginsOf(bare)) yogaOwn.set(signature(plugin), (yogaOwn.get(signature(plugin)) ?? 0) + 1);

      const unmarked: string[] = [];
      let marked = 0;
      for (const plugin of pluginsOf(app.yoga)) {
        const hooks = YOGA_ONLY_HOOKS.filter((hook) => hook in plugin);
        if (hooks.length === 0) continue;
        if (YOGA_PATH_ONLY in plugin) {
          expect(String((plugin as Record<symbol, unknown>)[YOGA_PATH_ONLY]).length).toBeGreaterThan(10);
          marked++;
          continue;
        }
        const own = yogaOwn.get(signature(plugin)) ?? 0;
        if (own > 0) {
          yogaOwn.set(signature(plugin), own - 1);
          continue;
        }
        unmarked.push(`a plugin with ${hooks.join(', ')} (${signature(plugin)})`);
      }
      expect(unmarked, 'these hooks never run for requests the listener answers: make it a pipeline stage, or mark it yogaPathOnly with why').toEqual([]);
      // The control: the app's own HTTP plugins are there, and marked.
      expect(marked).toBeGreaterThanOrEqual(5);
    } finally {
      await app.close();
      await opened.store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
