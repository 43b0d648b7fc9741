import { NoSchemaIntrospectionCustomRule } from 'graphql';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { Authenticator } from './auth/authenticator.ts';
import { useAuth } from './auth/plugin.ts';
import type { Config } from './config.ts';
import type { SecretBox } from './crypto/secret-box.ts';
import type { Context } from './graphql/context.ts';
import { schema } from './graphql/schema.ts';
import { useBodyLimit } from './http/body-limit.ts';
import { corsFor, useVaryOrigin } from './http/cors.ts';
import { useDocumentLimits } from './http/document-limits.ts';
import { useGraphiQLPage } from './http/graphiql.ts';
import { createHttpFront, type HttpFront } from './http/http-front.ts';
import { createMaskError } from './http/mask-error.ts';
import { Metrics } from './http/metrics.ts';
import { createObservability } from './http/observability.ts';
import { useNoSuggestions, useOperationLimits } from './http/operation-limits.ts';
import { useProbes } from './http/probes.ts';
import { useNoRequestEcho } from './http/request-echo.ts';
import { useRequestParams } from './http/request-params.ts';
import { createResponseCache, type ResponseCache } from './http/response-cache.ts';
import { useVariableCost } from './http/variable-cost.ts';
import type { Logger } from './logger.ts';
import { forOrg, systemRepos, type OrgRepos, type Services } from './repos/index.ts';
import type { Store } from './store/types.ts';

/**
 * Root fields whose answers the response cache may keep: read-only queries that read nothing but
 * the caller's org's modules and credentials, the data Store.dataVersion vouches for.
 */
const CACHEABLE_ROOT_FIELDS: ReadonlySet<string> = new Set(['modules', 'module']);

/** Orgs whose repositories stay built (a bounded map; the oldest goes first). */
const MAX_CACHED_ORGS = 10_000;

export type AppConfig = Pick<
  Config,
  | 'production'
  | 'introspection'
  | 'graphiql'
  | 'authFailuresPerMinute'
  | 'keyCacheTtlMs'
  | 'trustProxy'
  | 'limits'
  | 'metrics'
  | 'metricsToken'
  | 'responseCacheBytes'
  | 'corsOrigins'
>;

export interface AppOptions {
  store: Store;
  secretBox: SecretBox;
  config: AppConfig;
  logger: Logger;
}

export interface App {
  yoga: YogaServerInstance<Record<string, unknown>, Context>;
  /** What `npm start` serves over node:http (server.ts createHttpServer); tests serve it too. */
  listener: HttpFront['listener'];
  /** Yoga behind the HTTP front (http-front.ts). */
  front: HttpFront;
  services: Services;
  /** The gateway's Prometheus metrics (also served at /metrics unless TENANTGATE_METRICS=false). */
  metrics: Metrics;
  responseCache: ResponseCache;
  /** Flush buffered writes (key last-used times). The store is the caller's to close. */
  close(): Promise<void>;
}

function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

/** The gateway: tests call `app.yoga.fetch` or serve `app.front.listener`, as main.ts does over HTTP. */
export function createApp({ store, secretBox, config, logger }: AppOptions): App {
  const authenticator = new Authenticator(store, { cacheTtlMs: config.keyCacheTtlMs, logger });
  const services: Services = { store, secretBox, authenticator };
  const system = systemRepos(store, authenticator);

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

  const metrics = new Metrics();
  const graphqlEndpoint = '/graphql';
  const observability = createObservability({ logger, metrics, schema, graphqlEndpoint });
  const masking = createMaskError({ logger, onStoreError: (kind) => metrics.storeError(kind) });
  const auth = useAuth({
    authenticator,
    failuresPerMinute: config.authFailuresPerMinute,
    trustProxy: config.trustProxy,
    logger,
    contextFor: (principal) => ({ repos: reposFor(principal.orgId), system }),
    onFailure: (reason) => metrics.authFailure(reason),
    onSuccess: (request, principal) => observability.authenticated(request, principal),
  });
  const dataVersion = store.dataVersion?.bind(store);
  const responseCache = createResponseCache({
    // Only with a store that can say when an org's data changed (SQLite can).
    maxBytes: dataVersion ? config.responseCacheBytes : 0,
    rootFields: CACHEABLE_ROOT_FIELDS,
    dataVersion: dataVersion ?? (() => ''),
    principalOf: auth.principalOf,
    metaOf: observability.metaOf,
    onLookup: observability.cached,
  });
  metrics.watchResponseCache(() => ({ bytes: responseCache.bytes, entries: responseCache.entries }));

  const yoga = createYoga<Record<string, unknown>, Context>({
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
    cors: corsFor(config.corsOrigins),
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
    plugins: [
      observability.plugin,
      useVaryOrigin(config.corsOrigins),
      useProbes({ store, logger, metrics: config.metrics ? metrics : undefined, metricsToken: config.metricsToken }),
      ...(config.graphiql
        ? [useGraphiQLPage({ graphqlEndpoint, options: { title: 'tenantgate', headers: '{\n  "Authorization": "Bearer tgk_..."\n}' } })]
        : []),
      useBodyLimit(config.limits.maxBodyBytes),
      auth,
      useRequestParams(config.limits.maxVariableDepth),
      useDocumentLimits(config.limits),
      ...useOperationLimits(config.limits),
      useVariableCost(config.limits.maxCost),
      ...useNoSuggestions(),
      useNoRequestEcho(schema),
      ...(config.introspection ? [] : [useNoIntrospection()]),
      // Last: a lookup happens only for a request every plugin above has let through.
      responseCache.plugin,
    ],
  });

  const front = createHttpFront({
    yoga,
    graphqlEndpoint,
    authenticator,
    responseCache,
    observability,
    logger,
    maxBodyBytes: config.limits.maxBodyBytes,
    maxVariableDepth: config.limits.maxVariableDepth,
  });

  return {
    yoga,
    listener: front.listener,
    front,
    services,
    metrics,
    responseCache,
    close: () => authenticator.close(),
  };
}
