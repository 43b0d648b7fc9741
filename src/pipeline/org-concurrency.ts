import type { Fairness } from '../config.ts';
import { rateLimited } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Gate } from './pipeline.ts';

interface Waiter {
  admit: () => void;
  refuse: () => void;
  /** performance.now() past which it answers 429. */
  deadline: number;
}

interface OrgSlots {
  inFlight: number;
  /** When (in admissions so far) the org last had one admitted; 0: never. */
  served: number;
  /** Requests waiting for their turn or a slot, oldest first. */
  waiting: Waiter[];
}

/**
 * How long the loop may spend admitting requests on the spot before the rest wait for a turn:
 * another org's request waits about this long, plus one request, at most.
 */
const WINDOW_MS = 2;
/** How often waiting requests are checked against their deadline. */
const SWEEP_MS = 50;

/**
 * Fair sharing of the process between orgs: a scheduler for the admit stage.
 *
 * A request executes on the event loop from its admission to its answer (on SQLite without
 * yielding at all), so requests admitted together run back to back: when org A's 45 connections
 * and org B's one all have a request ready, B's would wait behind every one of A's. So requests
 * are admitted on the spot only while the loop has spent less than WINDOW_MS since this round of
 * admissions began; the others wait in their org's queue, and each turn of the loop (setImmediate,
 * after it has read what arrived) admits the oldest waiting request of every org, the org served
 * longest ago first, and more as slots come free while the turn is young. B then waits for about
 * one of A's requests, however many A sends; a lone or cheap request is admitted at once.
 *
 * Besides, at most `maxInFlight` requests of one org are in flight at once (from admission to the
 * end of the record stage, or until their client leaves: on PostgreSQL requests overlap while
 * they wait for the database); at most `queue` more wait for a slot, each up to `queueTimeoutMs`;
 * past either the request answers 429 RATE_LIMITED with `extensions.limit: concurrency`. An org
 * flooding the gateway queues behind itself and gets 429s, not unbounded waiting. What a single
 * request may cost is bounded by the operation limits (TENANTGATE_MAX_COST and the rest). Per
 * process: each replica shares its own event loop.
 */
export function orgConcurrency(options: Fairness & { logger: Logger; metrics: Metrics }): Gate {
  const { maxInFlight, queue, queueTimeoutMs, logger, metrics } = options;
  const orgs = new Map<string, OrgSlots>();
  /** Orgs with waiting requests. */
  const turns = new Set<string>();
  let admissions = 0;
  /** Whether a round of admissions is open, and since when. */
  let open = false;
  let openedAt = 0;
  let scheduled = false;
  let sweeper: NodeJS.Timeout | undefined;

  const refuse = (orgId: string, why: 'queue full' | 'waited too long') => {
    metrics.rateLimitRefusal('concurrency');
    logger.info('request refused: org concurrency', { orgId, limit: 'concurrency', maxInFlight, queue, why });
    return rateLimited(1, 'concurrency');
  };

  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(turn);
  };

  /** Whether the current round may admit one more on the spot (opening a round if none is). */
  const young = (): boolean => {
    const now = performance.now();
    if (!open) {
      open = true;
      openedAt = now;
      schedule(); // the round ends at the next turn
      return true;
    }
    return now - openedAt < WINDOW_MS;
  };

  const take = (slots: OrgSlots) => {
    slots.inFlight++;
    slots.served = ++admissions;
  };

  /** The oldest waiting request of the org served longest ago that has a free slot: admitted now. */
  const admitNext = (): boolean => {
    let chosen: OrgSlots | undefined;
    for (const orgId of turns) {
      const slots = orgs.get(orgId);
      if (slots === undefined || slots.waiting.length === 0) turns.delete(orgId);
      else if (slots.inFlight < maxInFlight && (chosen === undefined || slots.served < chosen.served)) chosen = slots;
    }
    if (chosen === undefined) return false;
    take(chosen);
    chosen.waiting.shift()!.admit();
    return true;
  };

  /** A turn: a new round; every org with a request waiting and a slot free admits its oldest, served longest ago first. */
  const turn = () => {
    scheduled = false;
    open = false;
    if (turns.size === 0) return;
    young();
    const waiting: OrgSlots[] = [];
    for (const orgId of turns) {
      const slots = orgs.get(orgId);
      if (slots === undefined || slots.waiting.length === 0) turns.delete(orgId);
      else if (slots.inFlight < maxInFlight) waiting.push(slots);
    }
    if (waiting.length > 1) waiting.sort((a, b) => a.served - b.served);
    for (const slots of waiting) {
      take(slots);
      slots.waiting.shift()!.admit();
    }
  };

  /** Waiting requests past their deadline answer 429; the timer runs only while some wait. */
  const sweep = () => {
    const now = performance.now();
    let left = 0;
    for (const [orgId, slots] of orgs) {
      while (slots.waiting.length > 0 && slots.waiting[0]!.deadline <= now) slots.waiting.shift()!.refuse();
      left += slots.waiting.length;
      if (slots.waiting.length === 0 && slots.inFlight === 0) orgs.delete(orgId);
    }
    if (left === 0 && sweeper !== undefined) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };

  return {
    name: 'org concurrency',
    admit(exchange) {
      const orgId = exchange.principal.orgId;
      let slots = orgs.get(orgId);
      if (slots === undefined) {
        slots = { inFlight: 0, served: 0, waiting: [] };
        orgs.set(orgId, slots);
      }
      if (slots.waiting.length === 0 && slots.inFlight < maxInFlight && young()) {
        take(slots);
        return;
      }
      // Waiting for a turn is not queueing: only requests past the org's free slots count against `queue`.
      if (slots.inFlight + slots.waiting.length >= maxInFlight + queue) throw refuse(orgId, 'queue full');
      const org = slots;
      return new Promise<void>((resolve, reject) => {
        org.waiting.push({ admit: resolve, refuse: () => reject(refuse(orgId, 'waited too long')), deadline: performance.now() + queueTimeoutMs });
        turns.add(orgId);
        schedule();
        if (sweeper === undefined) {
          sweeper = setInterval(sweep, Math.min(SWEEP_MS, queueTimeoutMs));
          sweeper.unref();
        }
      });
    },
    release(exchange) {
      const orgId = exchange.principal!.orgId;
      const slots = orgs.get(orgId);
      if (slots === undefined) return;
      slots.inFlight--;
      if (slots.waiting.length === 0 && slots.inFlight === 0) orgs.delete(orgId);
      if (turns.size === 0) return;
      // A slot is free: while the round is young the next request goes at once, else at the next turn.
      if (!(open && performance.now() - openedAt < WINDOW_MS && admitNext())) schedule();
    },
  };
}
