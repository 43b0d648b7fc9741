import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';
import type { Recorder } from './pipeline.ts';

const FLUSH_MS = 1000;
const HOUR_MS = 3_600_000;
/** Distinct (org, hour) counts held before a flush is started early. */
const MAX_PENDING = 10_000;

/**
 * Counts the requests each org is served (usage.requests): a recorder, so cached answers count
 * too. An authenticated request counts unless an org limit refused it (429). Counts are added up
 * in process and written in one batch a second (like key last-used times: a request never waits
 * for it); a batch that cannot be written is retried with the next one, and dropped after that
 * with a warning, so an outage costs counts, never memory or requests.
 */
export function createRequestCounter(options: { store: Store; logger: Logger; flushMs?: number }): Recorder & { flush(): Promise<void>; close(): Promise<void> } {
  const { store, logger } = options;
  let pending = new Map<string, { orgId: string; hourStart: string; count: number }>();
  let retry: Array<{ orgId: string; hourStart: string; count: number }> = [];
  let flushing: Promise<void> | undefined;
  let hour = 0;
  let hourStart = '';

  const flush = (): Promise<void> => {
    if (flushing) return flushing;
    if (pending.size === 0 && retry.length === 0) return Promise.resolve();
    const retried = retry;
    const fresh = [...pending.values()];
    pending = new Map();
    retry = [];
    flushing = store.system.usage
      .addRequests([...retried, ...fresh])
      .catch((error: unknown) => {
        // Each count is tried twice: the ones tried before are dropped, the new ones go again.
        if (retried.length > 0) {
          logger.warn('served-request counts dropped: the store did not take them twice', { entries: retried.length, error: { name: (error as Error).name, message: (error as Error).message } });
        }
        retry = fresh;
      })
      .finally(() => {
        flushing = undefined;
      });
    return flushing;
  };

  const timer = setInterval(() => void flush(), options.flushMs ?? FLUSH_MS);
  timer.unref();

  return {
    name: 'served requests',
    record(exchange) {
      const principal = exchange.principal;
      if (principal === undefined || exchange.status === 429) return;
      const now = Date.now();
      if (now - hour >= HOUR_MS || now < hour) {
        hour = now - (now % HOUR_MS);
        hourStart = new Date(hour).toISOString();
      }
      const key = `${principal.orgId}\u0000${hourStart}`;
      const entry = pending.get(key);
      if (entry) entry.count++;
      else pending.set(key, { orgId: principal.orgId, hourStart, count: 1 });
      if (pending.size >= MAX_PENDING) void flush();
    },
    flush,
    async close() {
      clearInterval(timer);
      await flushing;
      await flush();
    },
  };
}
