import { GraphQLError } from 'graphql';

/**
 * The closed list of error codes this code raises. Code throws only these; anything else is a
 * bug, and Yoga masks it as an internal error (no stack, no SQL, no secret).
 */
export const ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'BAD_USER_INPUT',
  'RATE_LIMITED',
  'PAYLOAD_TOO_LARGE',
  'LIMIT_EXCEEDED',
  // Yoga's own code for a malformed HTTP request (bad JSON, no query); reused for the same cases.
  'BAD_REQUEST',
  'SERVICE_UNAVAILABLE',
  // A run-unit report that would take the org past its monthly quota: refused whole.
  'QUOTA_EXCEEDED',
  // Every key of a suspended org (HTTP 403), before anything of the org is read.
  'ORG_SUSPENDED',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * The codes graphql-yoga 5.24 itself puts on errors that reach a client, beside BAD_REQUEST
 * (above): a document that does not parse, one that fails validation, an operationName the
 * document does not hold, and the masked internal error. Yoga's REQUEST_ENTITY_TOO_LARGE cannot
 * occur: its body limit and multipart are off (app.ts). graphql-js sets no codes.
 */
export const YOGA_ERROR_CODES = [
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'OPERATION_RESOLUTION_FAILURE',
  'INTERNAL_SERVER_ERROR',
] as const;
export type YogaErrorCode = (typeof YOGA_ERROR_CODES)[number];

/** Every `extensions.code` a client can see. */
export const CLIENT_ERROR_CODES = [...ERROR_CODES, ...YOGA_ERROR_CODES] as const;
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/**
 * The operation limits (TENANTGATE_MAX_*) a rejected operation names in `extensions.limit`; each
 * has its `max<Name>` in the configuration's Limits. PAYLOAD_TOO_LARGE names `body`.
 */
export const OPERATION_LIMITS = [
  'depth',
  'aliases',
  'tokens',
  'directives',
  'cost',
  'variableDepth',
  'fields',
  'fieldRepeats',
  'fragmentSpreads',
] as const;
export type OperationLimit = (typeof OPERATION_LIMITS)[number];

function appError(
  code: ErrorCode,
  message: string,
  http?: { status: number; headers?: Record<string, string> },
  extra?: Record<string, unknown>,
): GraphQLError {
  return new GraphQLError(message, {
    extensions: { code, ...extra, ...(http ? { http } : {}) },
  });
}

/** No key, or a key that does not verify. The body is the same for every invalid-key case. */
export function unauthenticated(reason: 'missing' | 'invalid'): GraphQLError {
  const challenge =
    reason === 'missing'
      ? 'Bearer realm="tenantgate"'
      : 'Bearer realm="tenantgate", error="invalid_token"';
  return appError(
    'UNAUTHENTICATED',
    reason === 'missing' ? 'An API key is required: send Authorization: Bearer <key>' : 'The API key is not valid',
    { status: 401, headers: { 'WWW-Authenticate': challenge } },
  );
}

/** A key of a suspended org: 403, whatever it asks; resuming the org restores it. */
export function orgSuspended(): GraphQLError {
  return appError('ORG_SUSPENDED', 'This API key\'s org is suspended; ask the operator to resume it', { status: 403 });
}

export function forbidden(message = 'This API key lacks the scope this field needs'): GraphQLError {
  return appError('FORBIDDEN', message);
}

export function notFound(what: string, id: string): GraphQLError {
  return appError('NOT_FOUND', `${what} "${id}" was not found`);
}

export function conflict(message: string): GraphQLError {
  return appError('CONFLICT', message);
}

export function badInput(message: string, field?: string): GraphQLError {
  return appError('BAD_USER_INPUT', message, undefined, field ? { field } : undefined);
}

/**
 * The limits a request can be refused for with RATE_LIMITED, named in `extensions.limit`:
 * failed authentications of a client address, an org's request rate, an org's requests in flight,
 * an org's (or the process's) open subscription streams.
 */
export const RATE_LIMITS = ['authFailures', 'requestsPerMinute', 'concurrency', 'subscriptions'] as const;
export type RateLimit = (typeof RATE_LIMITS)[number];

const RATE_LIMIT_MESSAGES: Record<RateLimit, string> = {
  authFailures: 'Too many failed authentications',
  requestsPerMinute: "Too many requests for this org's rate limit",
  concurrency: 'Too many requests of this org at once',
  subscriptions: 'Too many open subscriptions',
};

export function rateLimited(retryAfterSeconds: number, limit: RateLimit = 'authFailures'): GraphQLError {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return appError(
    'RATE_LIMITED',
    `${RATE_LIMIT_MESSAGES[limit]}; retry in ${seconds}s`,
    { status: 429, headers: { 'Retry-After': String(seconds) } },
    { limit },
  );
}

/** A run-unit report over the org's monthly quota: what the limit is, what is used, when it resets. */
export function quotaExceeded(quota: number, used: number, resetsAt: string): GraphQLError {
  return appError(
    'QUOTA_EXCEEDED',
    `This report would take the org past its quota of ${quota} run units this month (${used} used); nothing was recorded`,
    undefined,
    { limit: 'runUnitsPerMonth', quota, used, resetsAt },
  );
}

export function unavailable(message: string): GraphQLError {
  return appError('SERVICE_UNAVAILABLE', message, { status: 503 });
}

/**
 * An operation over one of the limits; it is rejected before anything executes. Limits checked
 * in validation get their HTTP status from Yoga (400, or 200 for application/json clients, as the
 * GraphQL-over-HTTP spec says); those checked before it pass `status`.
 */
export function limitExceeded(limit: OperationLimit, message: string, status?: number): GraphQLError {
  return appError('LIMIT_EXCEEDED', message, status === undefined ? undefined : { status }, { limit });
}

/** A request body over TENANTGATE_MAX_BODY_BYTES; the connection is closed rather than drained. */
export function payloadTooLarge(maxBytes: number): GraphQLError {
  return appError(
    'PAYLOAD_TOO_LARGE',
    `The request body exceeds the limit of ${maxBytes} bytes`,
    { status: 413, headers: { Connection: 'close' } },
    { limit: 'body', maxBytes },
  );
}

/** A malformed request the GraphQL layer never sees (e.g. a Content-Length that is not a number). */
export function badRequest(message: string): GraphQLError {
  return appError('BAD_REQUEST', message, { status: 400 });
}
