import { NoSchemaIntrospectionCustomRule } from 'graphql';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { Authenticator } from './auth/authenticator.ts';
import type { Config } from './config.ts';
import type { SecretBox } from './crypto/secret-box.ts';
import type { Context } from './graphql/context.ts';
import { schema } from './graphql/schema.ts';
import { useCompiledExecution, useCountedExecution } from './graphql/compiled-execution.ts';
import { useDocumentLimits } from './hardening/document-limits.ts';
import { createMaskError } from './hardening/mask-error.ts';
import { stripSuggestions, useNoSuggestions, useOperationLimits } from './hardening/operation-limits.ts';
import { createErrorSanitizer, useSafeErrors } from './hardening/request-echo.ts';
import { useRequestParams } from './hardening/request-params.ts';
import { sanitizeVariableErrors } from './hardening/variable-errors.ts';
import { useVariableCost } from './hardening/variable-cost.ts';
import { useBodyLimit } from './http/body-limit.ts';
import { corsFor, useVaryOrigin } from './http/cors.ts';
import { useDashboard } from './http/dashboard.ts';
import { useGraphiQLPage } from './http/graphiql.ts';
import { useProbes } from './http/probes.ts';
import type { Logger } from './logger.ts';
import { Metrics } from './observability/metrics.ts';
import { createListener, type GatewayListener, type RequestListener } from './pipeline/listener.ts';
import { createPipeline, type Gate, type Recorder } from './pipeline/pipeline.ts';
import { orgConcurrency } from './pipeline/org-concurrency.ts';
import { orgRateLimit } from './pipeline/org-rate-limit.ts';
import { orgStatusGate } from './pipeline/org-status.ts';
import { createRequestCounter } from './pipeline/request-counter.ts';
import { Quotas } from './usage/quotas.ts';
import { createResponseCache, type ResponseCache } from './pipeline/response-cache.ts';
import { usePipeline, yogaPathOnly, type GatewayServerContext } from './pipeline/use-pipeline.ts';
import { forOrg, systemRepos, type OrgRepos, type Services } from './repos/index.ts';
import { ModuleEventHub } from './repos/module-events.ts';
import type { Store } from './store/types.ts';
import { onAuditRecord, onAuditVerifyFailure } from './store/audit-chain.ts';

/**
 * Root fields whose answers the response cache may keep: read-only queries that read nothing but
 * the caller's org's modules and credentials, the data the store's change feed vouches for.
 */
const CACHEABLE_ROOT_FIELDS: ReadonlySet<string> = new Set(['modules', 'module']);

/** Orgs whose repositories stay built (a bounded map; the oldest goes first). */
const MAX_CACHED_ORGS = 10_000;

export type AppConfig = Pick<
  Config,
  | 'production'
  | 'introspection'
  | 'graphiql'
  | 'dashboard'
  | 'authFailuresPerMinute'
  | 'keyCacheTtlMs'
  | 'trustProxy'
  | 'limits'
  | 'metrics'
  | 'metricsToken'
  | 'responseCacheBytes'
  | 'execution'
  | 'corsOrigins'
  | 'quotas'
  | 'fairness'
>;

export interface AppOptions {
  store: Store;
  secretBox: SecretBox;
  config: AppConfig;
  logger: Logger;
  /** More pipeline stages: gates after the built-in admission, recorders after the request log. */
  stages?: { gates?: readonly Gate[]; recorders?: readonly Recorder[] };
}

export interface App {
  yoga: YogaServerInstance<GatewayServerContext, Context>;
  /** What `npm start` serves over node:http (server.ts createHttpServer); tests serve it too. */
  listener: RequestListener;
  /** The listener, with a count of the requests it answered on its own path (the rest went to Yoga). */
  gateway: GatewayListener;
  services: Services;
  /** The gateway's Prometheus metrics (also served at /metrics unless TENANTGATE_METRICS=false). */
  metrics: Metrics;
  responseCache: ResponseCache;
  /** Writes what is buffered now (key last-used times, served-request counts); the next flush would otherwise come within a second. */
  flush(): Promise<void>;
  /** Ends every open subscription stream: the first step of a shutdown (an open stream would hold its connection until the drain times out). */
  endStreams(): void;
  /** End the streams, flush buffered writes and stop the timers. The store is the caller's to close. */
  close(): Promise<void>;
}

function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

/**
 * The gateway: its listener (what `npm start` serves), and Yoga behind it. How a request flows:
 * src/pipeline/pipeline.ts names the stages; src/pipeline/listener.ts and use-pipeline.ts are the
 * two paths that run them.
 */
export function createApp({ store, secretBox, config, logger, stages }: AppOptions): App {
  const authenticator = new Authenticator(store, { cacheTtlMs: config.keyCacheTtlMs, logger });
  const metrics = new Metrics();
  const stopCountingAudit = onAuditRecord((action) => metrics.auditRecord(action));
  const stopCountingVerifyFailures = onAuditVerifyFailure(() => metrics.auditVerifyFailure());
  const quotas = new Quotas(store, config.quotas, logger);
  const metering = { quotas, metrics, logger };
  const events = new ModuleEventHub({
    store,
    logger,
    maxPerOrg: config.fairness.maxSubscriptions,
    maxTotal: config.fairness.maxSubscriptionsTotal,
    onRefused: () => metrics.rateLimitRefusal('subscriptions'),
    onDelivered: (kind) => metrics.subscriptionEvent(kind),
  });
  metrics.watchSubscriptions(() => events.open);
  const services: Services = { store, secretBox, authenticator, metering, events };
  const system = systemRepos(store, authenticator, metering, events);

  // Org-bound repositories hold no state but their org id, so one set per org serves every
  // request of that org (building them per request was about 5% of a small query's CPU).
  const reposByOrg = new Map<string, OrgRepos>();
  const reposFor = (orgId: string): OrgRepos => {
    let repos = reposByOrg.get(orgId);
    if (!repos) {
      if (reposByOrg.size >= MAX_CACHED_ORGS) reposByOrg.delete(reposByOrg.keys().next().value as string);
      repos = forOrg(services, orgId);
      reposByOrg.set(orgId, repos);
    }
    return repos;
  };

  const graphqlEndpoint = '/graphql';
  const requestCounter = createRequestCounter({ store, logger });
  const orgStatus = orgStatusGate({ store, logger });
  const masking = createMaskError({ logger, onStoreError: (kind) => metrics.storeError(kind) });
  const pipeline = createPipeline({
    authenticator,
    failuresPerMinute: config.authFailuresPerMinute,
    failureLimiter: store.failureLimiter?.({ name: 'auth', points: config.authFailuresPerMinute, durationSec: 60 }),
    logger,
    metrics,
    // Per-org admission: the org's request rate (shared across replicas where the store can
    // share it), then its share of this process; first, a suspended org's keys are refused.
    gates: [
      orgStatus,
      orgRateLimit({ store, quotas, logger, metrics }),
      orgConcurrency({ ...config.fairness, logger, metrics }),
      ...(stages?.gates ?? []),
    ],
    recorders: [requestCounter, ...(stages?.recorders ?? [])],
  });
  const responseCache = createResponseCache({
    maxBytes: config.responseCacheBytes,
    rootFields: CACHEABLE_ROOT_FIELDS,
    dataVersion: store.changes.version,
  });
  metrics.watchResponseCache(() => ({ bytes: responseCache.bytes, entries: responseCache.entries }));
  const sanitizeErrors = createErrorSanitizer(schema, [stripSuggestions, sanitizeVariableErrors]);
  const cors = corsFor(config.corsOrigins);

  const yoga = createYoga<GatewayServerContext, Context>({
    schema,
    graphqlEndpoint,
    healthCheckEndpoint: '/health',
    landingPage: false,
    // Served by useGraphiQLPage below, from the installed package (Yoga's own page loads a CDN).
    graphiql: false,
    maskedErrors: {
      // isDev false: never attach stacks or original messages, whatever NODE_ENV says.
      isDev: false,
      maskError: masking.maskError,
    },
    batching: false,
    cors,
    // No file uploads in this API: one request parser fewer to attack.
    multipart: false,
    // Replaced by useBodyLimit: Yoga's streams every body through a TransformStream (2.7x slower).
    maxRequestBodySize: false,
    logging: {
      debug: (...args) => logger.debug(String(args[0])),
      info: (...args) => logger.info(String(args[0])),
      warn: (...args) => logger.warn(String(args[0])),
      error: (...args) => {
        const [first] = args;
        if (masking.logged(first)) return;
        // Never String(error): a GraphQLError prints the query text around it, arguments and all.
        if (first instanceof Error) logger.error('yoga error', { error: { name: first.name, message: first.message } });
        else logger.error(String(first), args[1] instanceof Error ? { error: args[1] } : undefined);
      },
    },
    // The HTTP plugins (first) see only what the listener hands to Yoga; the GraphQL plugins
    // (from useRequestParams on) run on both paths, inside Yoga's getResultForParams. A plugin
    // that needs to see every request belongs in the pipeline instead (test/pipeline.test.ts
    // fails on one that would be skipped).
    plugins: [
      // Before authentication: an anonymous client cannot make the gateway read a big body. The
      // listener takes only bodies with a Content-Length within the limit.
      yogaPathOnly('the listener hands over every body it does not take', useBodyLimit(config.limits.maxBodyBytes)),
      yogaPathOnly('the pipeline itself, on Yoga\'s path', usePipeline({
        pipeline,
        schema,
        graphqlEndpoint,
        trustProxy: config.trustProxy,
        logger,
        contextFor: (principal, exchange) => ({
          orgId: principal.orgId,
          keyId: principal.keyId,
          scopes: principal.scopes,
          keyExpiresAt: principal.expiresAt,
          repos: reposFor(principal.orgId),
          system: principal.scopes.has('admin') ? system : undefined,
          actor: { keyId: principal.keyId, keyPrefix: principal.keyPrefix, requestId: exchange.requestId, address: exchange.address, via: 'api' },
        }),
      })),
      yogaPathOnly('the listener adds Vary: Origin itself', useVaryOrigin(config.corsOrigins)),
      yogaPathOnly('other endpoints than GraphQL', useProbes({ store, logger, metrics: config.metrics ? metrics : undefined, metricsToken: config.metricsToken })),
      ...(config.graphiql
        ? [yogaPathOnly('GET pages and assets', useGraphiQLPage({ graphqlEndpoint, options: { title: 'tenantgate', headers: '{\n  "Authorization": "Bearer tgk_..."\n}' } }))]
        : []),
      ...(config.dashboard ? [yogaPathOnly('GET pages and assets', useDashboard({ logger }))] : []),
      yogaPathOnly('the listener sanitizes its answers itself', useSafeErrors(sanitizeErrors)),
      yogaPathOnly('its request-parse hook is for GET and form bodies, which the listener hands over', useRequestParams(config.limits.maxVariableDepth)),
      useDocumentLimits(config.limits),
      ...useOperationLimits(config.limits),
      useVariableCost(config.limits.maxCost),
      ...useNoSuggestions(),
      ...(config.introspection ? [] : [useNoIntrospection()]),
      ...(config.execution.compiled
        ? [useCompiledExecution({ logger, compileAfter: config.execution.compileAfter, onExecuted: (engine) => metrics.execution(engine) })]
        : [useCountedExecution(() => metrics.execution('interpreted'))]),
    ],
  });

  const gateway = createListener({
    yoga,
    pipeline,
    responseCache,
    graphqlEndpoint,
    cors,
    varyOrigin: config.corsOrigins.length > 0,
    trustProxy: config.trustProxy,
    maxBodyBytes: config.limits.maxBodyBytes,
    maxVariableDepth: config.limits.maxVariableDepth,
    maskError: masking.maskError,
    sanitizeErrors,
    logger,
  });

  return {
    yoga,
    listener: gateway.listener,
    gateway,
    services,
    metrics,
    responseCache,
    flush: async () => {
      await authenticator.flush();
      await requestCounter.flush();
    },
    endStreams: () => events.close(),
    close: async () => {
      events.close();
      stopCountingAudit();
      stopCountingVerifyFailures();
      quotas.close();
      orgStatus.close();
      await Promise.all([authenticator.close(), requestCounter.close()]);
    },
  };
}
