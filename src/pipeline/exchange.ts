import { randomUUID } from 'node:crypto';
import type { DocumentNode } from 'graphql';
import type { Principal } from '../auth/authenticator.ts';

/** How the request log and metrics name an operation (bounded: see operationLabel). */
export interface OperationMeta {
  /** The single root field, `introspection`, `multiple`, `none`, `other` or `__typename`. */
  operation: string;
  /** The client's name for the operation, truncated; never a metric label. */
  operationName: string | null;
}

/**
 * One request's passage through the pipeline. Every path that answers a request to the GraphQL
 * endpoint (the listener's own, or Yoga's for what the listener hands over) fills the same
 * object, so the stages read and write one thing and nothing travels in side tables keyed by
 * the request. It holds no key; of the request itself only the parsed document (the response
 * cache decides by it), which nothing logs. The rest is what the stages decided.
 */
export interface Exchange {
  /** A random id of this request (crypto.randomUUID), in its log line and in the audit records it writes. */
  readonly requestId: string;
  readonly method: string;
  /** The request path without its query string, truncated. */
  readonly path: string;
  /** performance.now() when the request arrived. */
  readonly arrivedAt: number;
  /** The client address the failed-authentication limit counts by (see clientAddress). */
  readonly address: string;
  /** Set by the authenticate stage; every later stage may rely on it. */
  principal: Principal | undefined;
  operation: OperationMeta;
  /** The validated document, once validation has run (the response cache decides by it). */
  document: DocumentNode | undefined;
  /** Whether the response cache answered (`hit`) or a cacheable operation executed (`miss`). */
  cache: 'hit' | 'miss' | undefined;
  /** extensions.code of the first error of the answer, if it had errors. */
  code: string | undefined;
  errors: boolean;
  /** The HTTP status written; 0 until then. */
  status: number;
  /** Set once the record stage has run: a request is recorded exactly once. */
  recorded: boolean;
  /** How many of the pipeline's gates have admitted it (they are released in reverse). */
  admittedBy: number;
  /** Set once the gates have been released (pipeline.release): at the answer, or when the connection closed first. */
  released: boolean;
}

const MAX_PATH = 100;

/** The path of a request target without parsing it as a URL (a URL object per request costs more). */
export function pathOf(target: string): string {
  const scheme = target.indexOf('://');
  const start = scheme < 0 ? target.indexOf('/') : target.indexOf('/', scheme + 3);
  if (start < 0) return '/';
  const query = target.indexOf('?', start);
  const path = query < 0 ? target.slice(start) : target.slice(start, query);
  return path.length > MAX_PATH ? `${path.slice(0, MAX_PATH)}…` : path;
}

/**
 * The address a request came from. Behind a proxy the gateway's operator runs (TENANTGATE_TRUST_PROXY)
 * it is the last X-Forwarded-For entry, the one that proxy appended; earlier entries are whatever
 * the client sent, so taking the first would let anyone choose their own rate-limit bucket.
 */
export function clientAddress(forwardedFor: string | null | undefined, peer: string | undefined, trustProxy: boolean): string {
  if (trustProxy && forwardedFor) {
    const last = forwardedFor.split(',').at(-1)?.trim();
    if (last) return last;
  }
  return peer ?? 'unknown';
}

export function createExchange(method: string, target: string, arrivedAt: number, address: string): Exchange {
  return {
    requestId: randomUUID(),
    method,
    path: pathOf(target),
    arrivedAt,
    address,
    principal: undefined,
    operation: { operation: 'none', operationName: null },
    document: undefined,
    cache: undefined,
    code: undefined,
    errors: false,
    status: 0,
    recorded: false,
    admittedBy: 0,
    released: false,
  };
}
