import { GraphQLError } from 'graphql';
import { maskError as yogaMaskError } from 'graphql-yoga';
import type { Logger } from '../logger.ts';
import { StoreError, type StoreErrorKind } from '../store/errors.ts';

export type { StoreErrorKind };

function rootError(error: unknown): unknown {
  let current = error;
  while (current instanceof GraphQLError && current.originalError) current = current.originalError;
  return current;
}

export interface MaskErrorOptions {
  logger: Logger;
  onStoreError?: (kind: StoreErrorKind) => void;
}

/**
 * Yoga's error mask, told never to run in development mode (whatever NODE_ENV says, so no stack
 * or original message ever reaches a client), plus: every masked error is logged here, with its
 * message, on the server side only; a store that cannot take writes (read-only, full, I/O error,
 * busy past the timeout) answers SERVICE_UNAVAILABLE, which a client can act on, instead of an
 * anonymous internal error. Neither says anything about the SQL, the file or the data.
 */
export function createMaskError({ logger, onStoreError }: MaskErrorOptions) {
  const logged = new WeakSet<object>();
  const maskError = (error: unknown, message: string): Error => {
    const masked = yogaMaskError(error, message, false);
    if (masked === error) return masked;
    if (typeof error === 'object' && error !== null) logged.add(error);
    const root = rootError(error);
    const kind = root instanceof StoreError ? root.kind : undefined;
    const path = error instanceof GraphQLError ? error.path?.join('.') : undefined;
    logger.error('unexpected error', {
      error: root instanceof Error ? { name: root.name, message: root.message } : String(root),
      ...(root instanceof StoreError ? { store: root.kind, code: root.code } : {}),
      ...(path ? { path } : {}),
    });
    if (!kind) return masked;
    onStoreError?.(kind);
    if (!(root as StoreError).retryable) return masked;
    const fieldError = error instanceof GraphQLError && error.path !== undefined;
    return new GraphQLError('The store cannot take this request right now; try again later', {
      nodes: error instanceof GraphQLError ? error.nodes : undefined,
      path: error instanceof GraphQLError ? error.path : undefined,
      // A failed field leaves the rest of the answer intact (HTTP 200, as for any field error); a
      // request that failed as a whole (e.g. the key lookup) answers 503.
      extensions: { code: 'SERVICE_UNAVAILABLE', ...(fieldError ? {} : { http: { status: 503 } }) },
    });
  };
  return {
    maskError,
    /**
     * Whether maskError logged this error already. Yoga logs every error it masks with String(error),
     * which for a GraphQLError includes the lines of the query around it, literal arguments and all
     * (a secret passed inline would land in the log); such errors are logged here instead.
     */
    logged: (error: unknown) => typeof error === 'object' && error !== null && logged.has(error),
  };
}
