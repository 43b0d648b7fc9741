import type { Plugin } from 'graphql-yoga';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { rateLimited, unauthenticated } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Authenticator, Principal } from './authenticator.ts';

export interface AuthPluginOptions {
  authenticator: Authenticator;
  /** Failed authentications one address may make per minute; past it, 429. */
  failuresPerMinute: number;
  trustProxy: boolean;
  logger: Logger;
  /** Builds the rest of the context (org-bound repositories) from the principal. */
  contextFor: (principal: Principal) => Record<string, unknown>;
  /** Told of every failed authentication (metrics). */
  onFailure?: (reason: 'missing' | 'invalid' | 'rate_limited') => void;
  /** Told of every verified key (the request log names the org even when the operation fails). */
  onSuccess?: (request: Request, principal: Principal) => void;
}

interface NodeServerContext {
  req?: { socket?: { remoteAddress?: string } };
}

function clientAddress(request: Request, serverContext: unknown, trustProxy: boolean): string {
  if (trustProxy) {
    // The last entry is the one our proxy appended (the peer it saw); earlier ones are whatever
    // the client sent, so taking the first would let anyone pick their own rate-limit bucket.
    const forwarded = request.headers.get('x-forwarded-for')?.split(',').at(-1)?.trim();
    if (forwarded) return forwarded;
  }
  return (serverContext as NodeServerContext | undefined)?.req?.socket?.remoteAddress ?? 'unknown';
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | null): string | undefined {
  return header === null ? undefined : BEARER.exec(header)?.[1];
}

/**
 * The auth boundary: `Authorization: Bearer <key>` becomes the request's principal before the
 * body is parsed (so no anonymous request reaches parsing, validation or a resolver), and the
 * principal becomes the context. Keys in query strings or cookies are ignored.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the context is assembled here
export function useAuth(options: AuthPluginOptions): Plugin<Record<string, any>> & { principalOf(request: Request): Principal | undefined } {
  const { authenticator, logger } = options;
  const principals = new WeakMap<Request, Principal>();
  const failures = new RateLimiterMemory({ points: options.failuresPerMinute, duration: 60 });

  /**
   * A presented key that is not valid: 401, or 429 past the address's failure budget. Only
   * failures are limited: a valid key always works, so one guesser behind a shared address (a
   * NAT, a proxy) cannot lock out everyone else there. Verifying first costs little: a malformed
   * or mistyped key fails its checksum before any lookup.
   */
  const refuse = async (request: Request, serverContext: unknown): Promise<never> => {
    const address = clientAddress(request, serverContext, options.trustProxy);
    const seen = await failures.get(address);
    if (seen && seen.consumedPoints >= options.failuresPerMinute) {
      options.onFailure?.('rate_limited');
      throw rateLimited(seen.msBeforeNext / 1000);
    }
    options.onFailure?.('invalid');
    logger.info('authentication failed', { address });
    await failures.penalty(address, 1);
    throw unauthenticated('invalid');
  };

  return {
    /** The verified principal of a request, once onRequestParse has passed. */
    principalOf: (request) => principals.get(request),

    // Not async: with the key cached (nearly every request) the boundary awaits nothing.
    onRequestParse({ request, serverContext }) {
      const header = request.headers.get('authorization');
      if (header === null || header.trim() === '') {
        options.onFailure?.('missing');
        throw unauthenticated('missing');
      }
      const key = bearerToken(header);
      const verified = key === undefined ? undefined : authenticator.verify(key);
      const admit = (principal: Principal | undefined): void | Promise<void> => {
        if (!principal) return refuse(request, serverContext);
        principals.set(request, principal);
        options.onSuccess?.(request, principal);
      };
      return verified instanceof Promise ? verified.then(admit) : admit(verified);
    },

    onContextBuilding({ context, extendContext }) {
      const principal = principals.get(context.request);
      // onRequestParse runs first for every GraphQL request; reaching here without a principal
      // would be a bug, and is refused rather than served unscoped.
      if (!principal) throw unauthenticated('missing');
      extendContext({
        orgId: principal.orgId,
        keyId: principal.keyId,
        scopes: principal.scopes,
        keyExpiresAt: principal.expiresAt,
        ...options.contextFor(principal),
      });
    },
  };
}
