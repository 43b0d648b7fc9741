import type { Fairness } from '../config.ts';
import { rateLimited } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Gate } from './pipeline.ts';

interface OrgSlots {
  inFlight: number;
  /** Waiting requests, oldest first; each is called with true when it gets a slot, false when it gave up. */
  waiting: Array<(granted: boolean) => void>;
}

/**
 * Fair sharing of the process between orgs: at most `maxInFlight` requests of one org are being
 * answered at once (from admission to the end of the record stage); the next `queue` wait, in
 * order, up to `queueTimeoutMs` for a slot; the rest, and those that waited too long, answer 429
 * RATE_LIMITED with `extensions.limit: concurrency`. An org flooding the gateway thus queues
 * behind itself, never in front of the others, and gets 429s instead of unbounded waiting; what a
 * single request may cost is bounded by the operation limits (TENANTGATE_MAX_COST and the rest).
 *
 * Per process: each replica shares its own event loop, so each counts its own requests.
 */
export function orgConcurrency(options: Fairness & { logger: Logger; metrics: Metrics }): Gate {
  const { maxInFlight, queue, queueTimeoutMs, logger, metrics } = options;
  const orgs = new Map<string, OrgSlots>();

  const refuse = (orgId: string, why: 'queue full' | 'waited too long') => {
    metrics.rateLimitRefusal('concurrency');
    logger.info('request refused: org concurrency', { orgId, limit: 'concurrency', maxInFlight, queue, why });
    return rateLimited(1, 'concurrency');
  };

  return {
    name: 'org concurrency',
    admit(exchange) {
      const orgId = exchange.principal.orgId;
      let slots = orgs.get(orgId);
      if (slots === undefined) {
        slots = { inFlight: 0, waiting: [] };
        orgs.set(orgId, slots);
      }
      if (slots.inFlight < maxInFlight) {
        slots.inFlight++;
        return;
      }
      if (slots.waiting.length >= queue) throw refuse(orgId, 'queue full');
      const org = slots;
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          const at = org.waiting.indexOf(wake);
          if (at >= 0) org.waiting.splice(at, 1);
          reject(refuse(orgId, 'waited too long'));
        }, queueTimeoutMs);
        // The slot is handed over by release (inFlight stays counted for this request).
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        org.waiting.push(wake);
      });
    },
    release(exchange) {
      const orgId = exchange.principal!.orgId;
      const slots = orgs.get(orgId);
      if (slots === undefined) return;
      const next = slots.waiting.shift();
      if (next) return next(true);
      slots.inFlight--;
      if (slots.inFlight === 0) orgs.delete(orgId);
    },
  };
}
