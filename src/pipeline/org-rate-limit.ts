import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { Principal } from '../auth/authenticator.ts';
import { rateLimited } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { RequestLimiter, Store } from '../store/types.ts';
import type { EffectiveQuota, Quotas } from '../usage/quotas.ts';
import type { Exchange } from './exchange.ts';
import type { Gate } from './pipeline.ts';

/**
 * The per-org request rate (setOrgQuota's requestsPerMinute and burst): every request of an org,
 * whichever path answers it, spends one point of the org's budget, counted by
 * rate-limiter-flexible in the store's shared counter when it has one (PostgreSQL: every replica
 * spends the same budget) and in memory otherwise (SQLite: one process).
 *
 * The bucket: `burst` points per window of burst / rate minutes (to the millisecond, at most a
 * day), so the sustained rate is requestsPerMinute and at most `burst` requests pass at once (two
 * bursts back to back at a window's edge). Each distinct (rate, burst) pair has its own limiter, keyed by org id, so one
 * org's traffic never spends another's points and a changed quota starts a fresh budget.
 */
const MAX_WINDOW_SEC = 86_400;

export function orgRateLimit(options: { store: Store; quotas: Quotas; logger: Logger; metrics: Metrics }): Gate {
  const { store, quotas, logger, metrics } = options;
  const limiters = new Map<string, RequestLimiter>();

  const limiterFor = (quota: EffectiveQuota): RequestLimiter => {
    const rate = quota.requestsPerMinute!;
    const burst = quota.burst!;
    const name = `org:${rate}:${burst}`;
    let limiter = limiters.get(name);
    if (!limiter) {
      // Whole milliseconds (the shared counter stores its expiry as a bigint of them), and at most
      // a day: a longer timer would overflow setTimeout and never limit.
      const limit = { name, points: burst, durationSec: Math.min(MAX_WINDOW_SEC, Math.max(1, Math.round((burst * 60_000) / rate)) / 1000) };
      limiter = store.requestLimiter?.(limit) ?? new RateLimiterMemory({ keyPrefix: name, points: limit.points, duration: limit.durationSec });
      limiters.set(name, limiter);
    }
    return limiter;
  };

  const spend = (exchange: Exchange & { principal: Principal }, quota: EffectiveQuota): void | Promise<void> => {
    if (quota.requestsPerMinute === null) return;
    const orgId = exchange.principal.orgId;
    return limiterFor(quota)
      .consume(orgId, 1)
      .then(
        () => undefined,
        (refusal: unknown) => {
          // Anything but the limiter's "no points left" is its own failure: the request is admitted.
          if (!(refusal instanceof RateLimiterRes)) {
            logger.warn('rate limiter failed; request admitted', { orgId, error: { name: (refusal as Error).name, message: (refusal as Error).message } });
            return;
          }
          metrics.rateLimitRefusal('requestsPerMinute');
          logger.info('request refused: org rate limit', { orgId, limit: 'requestsPerMinute', requestsPerMinute: quota.requestsPerMinute, burst: quota.burst });
          throw rateLimited(refusal.msBeforeNext / 1000, 'requestsPerMinute');
        },
      );
  };

  return {
    name: 'org rate limit',
    admit(exchange) {
      const quota = quotas.peek(exchange.principal.orgId);
      if (quota !== undefined) return spend(exchange, quota);
      // The first request of an org in a while (Quotas' TTL) waits for its quota row.
      return quotas.load(exchange.principal.orgId).then((loaded) => spend(exchange, loaded));
    },
  };
}
