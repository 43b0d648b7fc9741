import type { Fairness } from '../config.ts';
import { rateLimited } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Gate } from './pipeline.ts';

interface Waiter {
  admit: () => void;
  timer: NodeJS.Timeout;
}

interface OrgSlots {
  inFlight: number;
  /** When (in admissions from the queues) the org last had one admitted; 0: never. */
  served: number;
  /** Admitted requests wait here, oldest first, for their turn. */
  waiting: Waiter[];
}

/**
 * Fair sharing of the process between orgs: a scheduler for the admit stage.
 *
 * A request executes on the event loop from its admission to its answer (on SQLite without
 * yielding at all), so whichever requests are admitted together run back to back: when org A's
 * 45 connections and org B's one all have a request ready, B's would wait behind every one of
 * A's. So at most one request is admitted on the spot per turn of the event loop; the others
 * wait in their org's queue, and each turn (setImmediate, after the loop has read what arrived)
 * admits the oldest waiting request of every org, round robin. B then waits for at most one of
 * A's requests, however many A sends; the cost to a lone request is nothing, to a busy process a
 * turn of the loop.
 *
 * Besides, at most `maxInFlight` requests of one org are in flight at once (from admission to the
 * end of the record stage, or until their client leaves: on PostgreSQL requests overlap while
 * they wait for the database); at most `queue` more wait for a slot, each up to `queueTimeoutMs`; past either
 * the request answers 429 RATE_LIMITED with `extensions.limit: concurrency`. An org flooding the
 * gateway queues behind itself and gets 429s, not unbounded waiting. What a single request may
 * cost is bounded by the operation limits (TENANTGATE_MAX_COST and the rest). Per process: each
 * replica shares its own event loop.
 */
/** How long a turn of admissions may go on from release to release before the loop reads again. */
const TURN_MS = 2;

export function orgConcurrency(options: Fairness & { logger: Logger; metrics: Metrics }): Gate {
  const { maxInFlight, queue, queueTimeoutMs, logger, metrics } = options;
  const orgs = new Map<string, OrgSlots>();
  /** Orgs with waiting requests. */
  const turns = new Set<string>();
  /** Admissions from the queues so far: an org's `served` is the number of its last. */
  let admissions = 0;
  let turnStarted = 0;
  /** Whether a request was admitted in the current turn of the loop (then the next ones wait). */
  let busy = false;
  let scheduled = false;

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

  /** The oldest waiting request of the org served longest ago that has a free slot: admitted now. */
  const admitNext = (): boolean => {
    let chosen: OrgSlots | undefined;
    for (const orgId of turns) {
      const slots = orgs.get(orgId);
      if (slots === undefined || slots.waiting.length === 0) turns.delete(orgId);
      else if (slots.inFlight < maxInFlight && (chosen === undefined || slots.served < chosen.served)) chosen = slots;
    }
    if (chosen === undefined) return false;
    const next = chosen.waiting.shift()!;
    chosen.inFlight++;
    chosen.served = ++admissions;
    busy = true;
    next.admit();
    return true;
  };

  /**
   * One turn: every org with a request waiting and a slot free admits its oldest, the org served
   * longest ago first, so that an org that has just arrived goes before one that went last turn.
   * More follow from release while the turn is young (TURN_MS), so cheap requests are not held to
   * one per turn; then the loop reads what arrived meanwhile before the next turn.
   */
  const turn = () => {
    scheduled = false;
    busy = false;
    turnStarted = performance.now();
    const waiting: OrgSlots[] = [];
    for (const orgId of turns) {
      const slots = orgs.get(orgId);
      if (slots === undefined || slots.waiting.length === 0) turns.delete(orgId);
      else if (slots.inFlight < maxInFlight) waiting.push(slots);
    }
    if (waiting.length > 1) waiting.sort((a, b) => a.served - b.served);
    for (const slots of waiting) {
      const next = slots.waiting.shift()!;
      slots.inFlight++;
      slots.served = ++admissions;
      busy = true;
      next.admit();
    }
    if (busy) schedule();
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
      if (!busy && slots.waiting.length === 0 && slots.inFlight < maxInFlight) {
        slots.inFlight++;
        busy = true;
        schedule();
        return;
      }
      // Waiting for a turn is not queueing: only requests past the org's free slots count against `queue`.
      if (slots.inFlight + slots.waiting.length >= maxInFlight + queue) throw refuse(orgId, 'queue full');
      const org = slots;
      return new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          admit: () => {
            clearTimeout(waiter.timer);
            resolve();
          },
          timer: setTimeout(() => {
            const at = org.waiting.indexOf(waiter);
            if (at >= 0) org.waiting.splice(at, 1);
            if (org.waiting.length === 0 && org.inFlight === 0) orgs.delete(orgId);
            reject(refuse(orgId, 'waited too long'));
          }, queueTimeoutMs),
        };
        org.waiting.push(waiter);
        turns.add(orgId);
        schedule();
      });
    },
    release(exchange) {
      const orgId = exchange.principal!.orgId;
      const slots = orgs.get(orgId);
      if (slots === undefined) return;
      slots.inFlight--;
      if (slots.waiting.length === 0 && slots.inFlight === 0) orgs.delete(orgId);
      if (turns.size === 0) return;
      // A slot is free: while the turn is young the next request goes at once, else at the next turn.
      if (!(performance.now() - turnStarted < TURN_MS && admitNext())) schedule();
    },
  };
}
