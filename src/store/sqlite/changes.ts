import type { Change, ChangeFeed, ModuleChange } from '../types.ts';
import type { SqliteDatabase } from './connection.ts';

/** Orgs whose writes on this connection are counted before the counts start over. */
const MAX_COUNTED_ORGS = 100_000;
/** How often subscribers hear of other connections' commits (only while there are subscribers). */
export const POLL_MS = 250;

export interface SqliteChangeFeed extends ChangeFeed {
  /** A write of the org's modules or credentials through this connection: counted in its version, and announced (with the module it changed, if one did). */
  wrote(orgId: string, module?: ModuleChange): void;
  /** A write of the org's keys or org row: announced only (no cached answer reads them). */
  touched(orgId: string): void;
  close(): void;
}

/**
 * The change feed of one SQLite connection, exact on one machine. This connection's own writes
 * are counted per org, exactly: a bucketed counter would let one org see another's writes come
 * and go. The map is bounded; when full it starts over under a new epoch, which changes every
 * org's version at once (safe: a spurious change only costs a cache miss). SQLite's data_version
 * changes when any other connection commits, in this process or another; `version` reads it on
 * every call (a few hundred nanoseconds), subscribers hear of it within POLL_MS.
 */
export function createSqliteChangeFeed(sqlite: SqliteDatabase, pollMs = POLL_MS): SqliteChangeFeed {
  const writeCounts = new Map<string, number>();
  let writeEpoch = 0;
  const dataVersion = sqlite.prepare('PRAGMA data_version').pluck();
  // `version` is asked several times by one request (the key cache, the org cache, the response
  // cache), each a statement step of about 1.8 us. Within one synchronous run of this process's
  // code the answer is read once: another process's commit in between is heard at the next
  // run, as it would be had it committed a moment later. This process's own writes move its
  // counts, not data_version, so they are seen at once either way.
  let current: number | undefined;
  const forget = () => {
    current = undefined;
  };
  const dataVersionNow = (): number => {
    if (current === undefined) {
      current = dataVersion.get() as number;
      queueMicrotask(forget);
    }
    return current;
  };
  const listeners = new Set<(change: Change) => void>();
  let timer: NodeJS.Timeout | undefined;
  let seen = 0;

  const announce = (change: Change) => {
    for (const listener of listeners) {
      // A listener is a cache dropping entries; its failure must not turn a committed write into an error.
      try {
        listener(change);
      } catch {
        // nothing to undo: the write stands, and the cache's next version check still sees it
      }
    }
  };
  const poll = () => {
    if (!sqlite.open) return stop();
    const now = dataVersion.get() as number;
    if (now === seen) return;
    seen = now;
    announce({ orgId: null });
  };
  const start = () => {
    seen = dataVersion.get() as number;
    timer = setInterval(poll, pollMs);
    timer.unref();
  };
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };

  const count = (orgId: string) => {
    if (!writeCounts.has(orgId) && writeCounts.size >= MAX_COUNTED_ORGS) {
      writeCounts.clear();
      writeEpoch += 1;
    }
    writeCounts.set(orgId, (writeCounts.get(orgId) ?? 0) + 1);
  };

  return {
    version: (orgId) => `${dataVersionNow()}:${writeEpoch}:${writeCounts.get(orgId) ?? 0}`,
    subscribe(listener) {
      listeners.add(listener);
      if (!timer && sqlite.open) start();
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) stop();
      };
    },
    wrote(orgId, module) {
      count(orgId);
      announce(module === undefined ? { orgId, kind: 'data' } : { orgId, kind: 'data', module });
    },
    // Anything of the org may have changed, its data included (a deleted org's cached answers must
    // not reach a new org of the same id): the version moves too.
    touched(orgId) {
      count(orgId);
      announce({ orgId });
    },
    close: stop,
  };
}
