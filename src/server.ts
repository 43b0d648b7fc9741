import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, type App } from './app.ts';
import { SCOPES } from './auth/scopes.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { issueApiKey } from './repos/api-keys.ts';
import { pruneAudit } from './maintenance/audit.ts';
import { openStore, type OpenedStore } from './store/open.ts';
import { DEFAULT_ORG, SYSTEM_ACTOR } from './store/types.ts';
import type { Store } from './store/types.ts';

export interface RunningServer {
  url: string;
  /** Stop accepting, finish requests in flight, flush buffered writes, close the store. */
  stop(): Promise<void>;
}

const DRAIN_TIMEOUT_MS = 10_000;

/** When the store holds no key at all, mint an admin key for org `default`; its secret, once. */
export async function bootstrapAdminKey(store: Store): Promise<string | undefined> {
  if ((await store.system.keyCount()) > 0) return undefined;
  const { secret } = await issueApiKey(
    store,
    DEFAULT_ORG.id,
    { name: 'bootstrap admin', scopes: [...SCOPES] },
    { keyId: null, scopes: 'all' },
    SYSTEM_ACTOR,
  );
  return secret;
}

/**
 * Retention on start (TENANTGATE_AUDIT_RETENTION_DAYS): each org's records older than the cut are
 * pruned behind a checkpoint (src/maintenance/audit.ts), once for replicas starting together. A
 * failure is logged and the gateway serves on: the records stay, which is the safe side.
 */
async function applyAuditRetention(opened: OpenedStore, days: number, logger: Logger): Promise<void> {
  const before = new Date(Date.now() - days * 86_400_000).toISOString();
  try {
    const pruned = await opened.exclusive('audit-retention', () => pruneAudit(opened.store, before, SYSTEM_ACTOR));
    const records = pruned.reduce((n, p) => n + p.pruned, 0);
    if (records > 0) logger.info('audit records pruned', { records, orgs: pruned.filter((p) => p.pruned > 0).length, before });
  } catch (error) {
    logger.warn('audit retention failed; records kept', { error: { name: (error as Error).name, message: (error as Error).message } });
  }
}

/**
 * The HTTP server `npm start` runs, around the app's listener; tests serve an app through it too,
 * so that what they prove is what users get.
 */
export function createHttpServer(app: App, config: Pick<Config, 'headersTimeoutMs' | 'requestTimeoutMs'>): http.Server {
  // A client that trickles bytes holds a socket and a parser: headers must arrive within
  // TENANTGATE_HEADERS_TIMEOUT_MS and the whole request within TENANTGATE_REQUEST_TIMEOUT_MS. Node
  // enforces both only when it sweeps its connections, every 30 s by default, which let a 20 s
  // header timeout fire after 50 s; sweeping every second keeps them to within a second.
  return http.createServer(
    {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: 1000,
      keepAliveTimeout: 5000,
    },
    app.listener,
  );
}

export async function startServer(config: Config, logger: Logger, out: NodeJS.WritableStream = process.stdout): Promise<RunningServer> {
  const opened = await openStore(config, logger);
  const app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger });
  const server = createHttpServer(app, config);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}/graphql`;
  logger.info('tenantgate listening', { url, store: opened.store.location, production: config.production });

  // Replicas starting together on a fresh PostgreSQL store take turns: one mints the key, the others find it.
  const secret = await opened.exclusive('bootstrap', () => bootstrapAdminKey(opened.store));
  if (secret) {
    // The one place a key is ever printed: on first start, for the operator.
    out.write(`tenantgate: admin key for org "default" (shown once, store it now): ${secret}\n`);
    out.write(
      `tenantgate: try it: curl -s ${url} -H "Authorization: Bearer <that key>" -H "Content-Type: application/json" -d '{"query":"{ viewer { org { id name } scopes } }"}'\n`,
    );
  }

  if (config.auditRetentionDays !== null) await applyAuditRetention(opened, config.auditRetentionDays, logger);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      logger.info('shutting down');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Subscription streams end first (each gets its complete event), so their connections drain too.
      app.endStreams();
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), DRAIN_TIMEOUT_MS);
      timer.unref();
      await closed;
      clearTimeout(timer);
      await app.close();
      await opened.store.close();
      logger.info('stopped');
    })());

  return { url, stop };
}
