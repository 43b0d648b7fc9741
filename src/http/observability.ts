import { getOperationAST, Kind, type ExecutionResult, type GraphQLSchema, type OperationDefinitionNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from '../logger.ts';
import type { Metrics } from './metrics.ts';
import type { OperationMeta } from './response-cache.ts';

interface RequestState {
  start: number;
  orgId: string | null;
  keyId: string | null;
  /** Root field of the operation, from a bounded set (see operationLabel). */
  operation: string;
  /** The client's name for the operation, if it gave one (a GraphQL Name, truncated). */
  operationName: string | null;
  /** extensions.code of the first error, if any. */
  code: string | undefined;
  errors: boolean;
  /** Whether the response cache answered (`hit`) or executed a cacheable operation (`miss`). */
  cache: 'hit' | 'miss' | undefined;
}

/** What the request line says of who called and what ran. */
type LoggedState = Pick<RequestState, 'orgId' | 'keyId' | 'operation' | 'operationName' | 'cache'>;

/** Error codes that become `outcome` as they are (lower-cased); any other code is `other`. */
const OUTCOMES = new Map(
  [
    'UNAUTHENTICATED',
    'FORBIDDEN',
    'NOT_FOUND',
    'CONFLICT',
    'BAD_USER_INPUT',
    'RATE_LIMITED',
    'PAYLOAD_TOO_LARGE',
    'LIMIT_EXCEEDED',
    'BAD_REQUEST',
    'SERVICE_UNAVAILABLE',
    'GRAPHQL_PARSE_FAILED',
    'GRAPHQL_VALIDATION_FAILED',
    'OPERATION_RESOLUTION_FAILURE',
    'INTERNAL_SERVER_ERROR',
  ].map((code) => [code, code === 'INTERNAL_SERVER_ERROR' ? 'internal' : code.toLowerCase()]),
);

function outcomeOf(status: number, state: RequestState): string {
  if (state.code !== undefined) return OUTCOMES.get(state.code) ?? 'other';
  if (status >= 500) return 'internal';
  if (status >= 400 || state.errors) return status === 405 ? 'method_not_allowed' : status === 415 ? 'unsupported_media_type' : 'bad_request';
  return 'ok';
}

const MAX_NAME = 100;

/**
 * The operation label: the single root field an operation selects (`modules`, `installModule`:
 * the names the API contract and dashboards use), `introspection`, `multiple` when it selects
 * several, `none` when there is no operation to run, `other` when the field is not in the schema.
 * Client-chosen operation names are never labels: they are unbounded.
 */
export function operationLabel(operation: OperationDefinitionNode | null | undefined, rootFields: ReadonlySet<string>): string {
  if (!operation) return 'none';
  let field: string | undefined;
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD) return 'multiple';
    const name = selection.name.value;
    if (name === '__typename') continue;
    if (field !== undefined && field !== name) return 'multiple';
    field = name;
  }
  if (field === undefined) return '__typename';
  if (field === '__schema' || field === '__type') return 'introspection';
  return rootFields.has(field) ? field : 'other';
}

function rootFieldsOf(schema: GraphQLSchema): Set<string> {
  const names = new Set<string>();
  for (const type of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
    if (type) for (const name of Object.keys(type.getFields())) names.add(name);
  }
  return names;
}

/** The path of a request URL without parsing it (a URL object per request costs more). */
function pathOf(url: string): string {
  const scheme = url.indexOf('://');
  const start = url.indexOf('/', scheme < 0 ? 0 : scheme + 3);
  if (start < 0) return '/';
  const query = url.indexOf('?', start);
  const path = query < 0 ? url.slice(start) : url.slice(start, query);
  return path.length > MAX_NAME ? `${path.slice(0, MAX_NAME)}…` : path;
}

export interface ObservabilityOptions {
  logger: Logger;
  metrics: Metrics;
  schema: GraphQLSchema;
  graphqlEndpoint: string;
}

export interface Observability {
  plugin: Plugin;
  /** Called by the auth plugin once the key is verified, so even a rejected operation names its org. */
  authenticated(request: Request, principal: { orgId: string; keyId: string }): void;
  /** The operation as the log names it, once validated (the response cache keeps it with an answer). */
  metaOf(request: Request): OperationMeta | undefined;
  /** Logs and counts a request the HTTP front answered from the response cache (200, ok). */
  answeredFromCache(request: {
    method: string;
    path: string;
    /** performance.now() when the request arrived. */
    start: number;
    principal: { orgId: string; keyId: string };
    meta: OperationMeta | undefined;
  }): void;
  /** Called by the response cache for a cacheable operation: a hit carries the stored meta. */
  cached(request: Request, hit: boolean, meta: OperationMeta | undefined): void;
}

/**
 * One log line per request, and the request metrics. The line carries org id, key id, operation,
 * status, outcome and duration; never a key, a variable or a query (they may hold secrets).
 */
export function createObservability({ logger, metrics, schema, graphqlEndpoint }: ObservabilityOptions): Observability {
  const states = new WeakMap<Request, RequestState>();
  const rootFields = rootFieldsOf(schema);

  const recordGraphQL = (method: string, path: string, status: number, outcome: string, ms: number, state: LoggedState) => {
    metrics.observeRequest(state.operation, outcome, ms / 1000);
    logger.info('request', {
      method,
      path,
      status,
      outcome,
      durationMs: Math.round(ms * 100) / 100,
      orgId: state.orgId,
      keyId: state.keyId,
      operation: state.operation,
      operationName: state.operationName,
      ...(state.cache === undefined ? {} : { cache: state.cache }),
    });
  };

  const plugin: Plugin = {
    onRequest({ request, serverContext }) {
      // The HTTP front passes when the request arrived: it may have read the body before Yoga.
      const arrivedAt = (serverContext as { arrivedAt?: unknown } | undefined)?.arrivedAt;
      states.set(request, {
        start: typeof arrivedAt === 'number' ? arrivedAt : performance.now(),
        orgId: null,
        keyId: null,
        operation: 'none',
        operationName: null,
        code: undefined,
        errors: false,
        cache: undefined,
      });
    },

    // onValidate, not onParse: it sees the parsed (or cached) document without a closure per
    // request, and every operation that parsed is validated, the rejected ones included.
    onValidate({ context, params }) {
      const request = (context as { request?: Request }).request;
      const state = request && states.get(request);
      if (!state) return;
      const requested = (context as { params?: { operationName?: unknown } }).params?.operationName;
      const operation = getOperationAST(params.documentAST, typeof requested === 'string' ? requested : undefined);
      state.operation = operationLabel(operation, rootFields);
      const name = operation?.name?.value;
      if (name !== undefined) state.operationName = name.length > MAX_NAME ? `${name.slice(0, MAX_NAME)}…` : name;
    },

    onResultProcess({ request, result }) {
      const state = states.get(request);
      if (!state) return;
      const errors = (result as ExecutionResult).errors;
      if (errors && errors.length > 0) {
        state.errors = true;
        const code = errors[0]?.extensions?.code;
        if (typeof code === 'string') state.code = code;
      }
    },

    onResponse({ request, response }) {
      const state = states.get(request);
      if (!state) {
        // Answered by a Yoga plugin that runs before ours (health check, GraphiQL, CORS preflight):
        // logged, without a duration, and not a GraphQL request for the metrics.
        logger.info('request', { method: request.method, path: pathOf(request.url), status: response.status });
        return;
      }
      states.delete(request);
      const ms = performance.now() - state.start;
      const status = response.status;
      const path = pathOf(request.url);
      if (path === graphqlEndpoint) {
        recordGraphQL(request.method, path, status, outcomeOf(status, state), ms, state);
      } else {
        logger.info('request', { method: request.method, path, status, durationMs: Math.round(ms * 100) / 100 });
      }
    },
  };

  return {
    plugin,
    authenticated(request, principal) {
      const state = states.get(request);
      if (state) {
        state.orgId = principal.orgId;
        state.keyId = principal.keyId;
      }
    },
    metaOf(request) {
      const state = states.get(request);
      return state && { operation: state.operation, operationName: state.operationName };
    },
    answeredFromCache({ method, path, start, principal, meta }) {
      metrics.responseCache(true);
      recordGraphQL(method, path, 200, 'ok', performance.now() - start, {
        orgId: principal.orgId,
        keyId: principal.keyId,
        operation: meta?.operation ?? 'none',
        operationName: meta?.operationName ?? null,
        cache: 'hit',
      });
    },
    cached(request, hit, meta) {
      const state = states.get(request);
      if (!state) return;
      state.cache = hit ? 'hit' : 'miss';
      if (meta) {
        state.operation = meta.operation;
        state.operationName = meta.operationName;
      }
      metrics.responseCache(hit);
    },
  };
}
