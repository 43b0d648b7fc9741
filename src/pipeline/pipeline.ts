import { RateLimiterMemory } from 'rate-limiter-flexible';
import type { Authenticator, Principal } from '../auth/authenticator.ts';
import { rateLimited, unauthenticated } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { outcomeOf } from '../observability/outcomes.ts';
import type { FailureLimiter } from '../store/types.ts';
import type { Exchange } from './exchange.ts';

/**
 * The request pipeline, defined once. Every request to the GraphQL endpoint passes these stages
 * in this order, whichever path answers it (the listener's own, or Yoga's for what the listener
 * hands over; see listener.ts and use-pipeline.ts):
 *
 * 1. authenticate: the bearer key becomes the request's principal, or the request is refused
 *    (401, or 429 past the address's failure budget) before its body is read;
 * 2. admit: each gate in turn may refuse the request for its org (per-org rate limits, quotas and
 *    suspension join here); the operation limits are checked when the document is validated;
 * 3. answer: the response cache, or execution;
 * 4. record: each recorder sees the finished exchange once (the request log line, metrics).
 *
 * A gate or recorder added here runs on every path; test/pipeline.test.ts shows that for a cache
 * hit, an executed query, a mutation and a refused request.
 */

/** An admission check: throws one of errors.ts's errors to refuse the request. */
export interface Gate {
  readonly name: string;
  admit(exchange: Exchange & { principal: Principal }): void | Promise<void>;
  /**
   * Called once for an exchange this gate admitted, when its answer is written (before the
   * recorders) or its connection closed, whichever comes first: what `admit` holds for the
   * request (a slot) is given back here. Must not throw.
   */
  release?(exchange: Exchange): void;
}

/** Sees every finished exchange once; must not throw (a failure is logged and ignored). */
export interface Recorder {
  readonly name: string;
  record(exchange: Exchange): void;
}

export interface PipelineOptions {
  authenticator: Authenticator;
  /** Failed authentications one address may make per minute; past it, 429. */
  failuresPerMinute: number;
  /** Where failures are counted (the store's shared limiter, for several replicas); default: in memory. */
  failureLimiter?: FailureLimiter;
  logger: Logger;
  metrics: Metrics;
  /** Admission checks after authentication, in order. */
  gates?: readonly Gate[];
  /** Run after the built-in request log and metrics, in order. */
  recorders?: readonly Recorder[];
}

export interface Pipeline {
  /**
   * Stages 1 and 2 for a request presenting `authorization` (the header's value). Synchronous
   * when the key is cached and no gate waits, so the common request awaits nothing; throws (or
   * rejects with) the refusal.
   */
  authenticateAndAdmit(exchange: Exchange, authorization: string | null | undefined): void | Promise<void>;
  /** Stage 4: once per exchange, after its answer is written. Never throws. */
  record(exchange: Exchange): void;
  /**
   * Gives back what the gates hold for the exchange (see Gate.release); record does it too. For a
   * request whose connection closed before its answer was written. Idempotent; never throws.
   */
  release(exchange: Exchange): void;
  /** Whether any gate holds something until release (then a path calls release when a connection closes early). */
  readonly holds: boolean;
  /** The authenticated principal of a key already verified and still cached, without I/O. */
  readonly authenticator: Authenticator;
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | null | undefined): string | undefined {
  return header == null ? undefined : BEARER.exec(header)?.[1];
}

export function createPipeline(options: PipelineOptions): Pipeline {
  const { authenticator, logger, metrics } = options;
  const gates = options.gates ?? [];
  const recorders = options.recorders ?? [];
  const failures: FailureLimiter = options.failureLimiter ?? new RateLimiterMemory({ points: options.failuresPerMinute, duration: 60 });

  /**
   * A presented key that is not valid: 401, or 429 past the address's failure budget. Only
   * failures are limited: a valid key always works, so one guesser behind a shared address (a
   * NAT, a proxy) cannot lock out everyone else there. Verifying first costs little: a malformed
   * or mistyped key fails its checksum before any lookup.
   */
  const refuse = async (exchange: Exchange): Promise<never> => {
    const seen = await failures.get(exchange.address);
    if (seen && seen.consumedPoints >= options.failuresPerMinute) {
      metrics.authFailure('rate_limited');
      throw rateLimited(seen.msBeforeNext / 1000);
    }
    metrics.authFailure('invalid');
    logger.info('authentication failed', { address: exchange.address });
    await failures.penalty(exchange.address, 1);
    throw unauthenticated('invalid');
  };

  const admitFrom = (exchange: Exchange & { principal: Principal }, index: number): void | Promise<void> => {
    for (let i = index; i < gates.length; i++) {
      const pending = gates[i]!.admit(exchange);
      if (pending instanceof Promise) {
        return pending.then(() => {
          admittedBy(exchange, i);
          return admitFrom(exchange, i + 1);
        });
      }
      admittedBy(exchange, i);
    }
  };

  /** Gate i admitted the exchange; if it was given back meanwhile (the client left), at once. */
  const admittedBy = (exchange: Exchange, i: number) => {
    exchange.admittedBy = i + 1;
    if (exchange.released) releaseGate(exchange, i);
  };

  const releaseGate = (exchange: Exchange, i: number) => {
    const gate = gates[i]!;
    if (gate.release === undefined) return;
    try {
      gate.release(exchange);
    } catch (error) {
      logger.warn('a gate failed to release', { gate: gate.name, error: { name: (error as Error).name, message: (error as Error).message } });
    }
  };

  const release = (exchange: Exchange) => {
    if (exchange.released) return;
    exchange.released = true;
    for (let i = exchange.admittedBy - 1; i >= 0; i--) releaseGate(exchange, i);
  };

  const admitted = (exchange: Exchange, principal: Principal | undefined): void | Promise<void> => {
    if (!principal) return refuse(exchange);
    exchange.principal = principal;
    if (gates.length > 0) return admitFrom(exchange as Exchange & { principal: Principal }, 0);
  };

  const requestLog = (exchange: Exchange, outcome: string, ms: number) => {
    const principal = exchange.principal;
    logger.info('request', {
      requestId: exchange.requestId,
      method: exchange.method,
      path: exchange.path,
      status: exchange.status,
      outcome,
      durationMs: Math.round(ms * 100) / 100,
      orgId: principal?.orgId ?? null,
      keyId: principal?.keyId ?? null,
      operation: exchange.operation.operation,
      operationName: exchange.operation.operationName,
      ...(exchange.cache === undefined ? {} : { cache: exchange.cache }),
    });
  };

  return {
    authenticator,
    authenticateAndAdmit(exchange, authorization) {
      if (authorization == null || authorization.trim() === '') {
        metrics.authFailure('missing');
        throw unauthenticated('missing');
      }
      const key = bearerToken(authorization);
      const verified = key === undefined ? undefined : authenticator.verify(key);
      return verified instanceof Promise ? verified.then((p) => admitted(exchange, p)) : admitted(exchange, verified);
    },

    release,
    holds: gates.some((gate) => gate.release !== undefined),

    record(exchange) {
      if (exchange.recorded) return;
      exchange.recorded = true;
      release(exchange);
      const ms = performance.now() - exchange.arrivedAt;
      const outcome = outcomeOf(exchange.status, exchange.code, exchange.errors);
      metrics.observeRequest(exchange.operation.operation, outcome, ms / 1000);
      if (exchange.cache !== undefined) metrics.responseCache(exchange.cache === 'hit');
      requestLog(exchange, outcome, ms);
      for (const recorder of recorders) {
        try {
          recorder.record(exchange);
        } catch (error) {
          logger.warn('a recorder failed', { recorder: recorder.name, error: { name: (error as Error).name, message: (error as Error).message } });
        }
      }
    },
  };
}
