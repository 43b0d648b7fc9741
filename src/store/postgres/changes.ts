import pg from 'pg';
import type { Change, ChangeFeed, ModuleChange, ModuleEventKind } from '../types.ts';

/** The channel every writing transaction notifies on; one per database. */
export const CHANGES_CHANNEL = 'tenantgate_changes';
/** Orgs whose changes are counted before the counts start over (under a new epoch). */
const MAX_COUNTED_ORGS = 100_000;
/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; an org id that long is announced as "any org". */
const MAX_PAYLOAD_BYTES = 7_900;
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 5_000;
/** How often the listening connection is probed: a connection that died silently is found within this (plus the query timeout). */
const HEARTBEAT_MS = 5_000;
/**
 * How late a heartbeat may answer before the feed stops vouching: `version` answers undefined once
 * the last good heartbeat (or notification) is older than the interval plus this margin, so a
 * listening connection that died silently vouches for at most HEARTBEAT_MS + this (6 s by default),
 * not until its heartbeat times out and the loss is noticed.
 */
const HEARTBEAT_MARGIN_MS = 1_000;

/**
 * What a writing transaction sends: `d:<org>` for modules or credentials (what cached answers
 * read: counted in the org's version), `m:<json>` for a write of one module's (the same, naming
 * the module and what happened to it: `["<org>","<module>","<event>"]`), `t:<org>` for keys and
 * org rows (announced only), `*` for any org. Ids only, never a value.
 */
export type ChangeKind = 'data' | 'touch';

const MODULE_EVENTS: ReadonlySet<string> = new Set<ModuleEventKind>(['installed', 'changed', 'health', 'uninstalled']);

export function notifyPayload(kind: ChangeKind, orgId: string, module?: ModuleChange): string {
  if (kind === 'data' && module !== undefined) {
    const named = `m:${JSON.stringify([orgId, module.id, module.event])}`;
    // Too long to notify: announced as a change of the org's data, without the module.
    if (Buffer.byteLength(named) <= MAX_PAYLOAD_BYTES) return named;
  }
  if (Buffer.byteLength(orgId) > MAX_PAYLOAD_BYTES) return '*';
  return `${kind === 'data' ? 'd' : 't'}:${orgId}`;
}

/** What a notification's payload says; '*' (or anything unreadable) for any org. */
export function readPayload(payload: string): Change {
  if (payload.length < 2 || payload[1] !== ':') return { orgId: null };
  const body = payload.slice(2);
  switch (payload[0]) {
    case 'd':
      return { orgId: body, kind: 'data' };
    case 't':
      return { orgId: body };
    case 'm': {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        return { orgId: null };
      }
      if (!Array.isArray(parsed) || parsed.length !== 3 || !parsed.every((p) => typeof p === 'string') || !MODULE_EVENTS.has(parsed[2] as string)) {
        return { orgId: null };
      }
      const [orgId, id, event] = parsed as [string, string, ModuleEventKind];
      return { orgId, kind: 'data', module: { id, event } };
    }
    default:
      return { orgId: null };
  }
}

export interface PostgresChangeFeed extends ChangeFeed {
  /** This process's own committed (or maybe committed) write: counted and announced at once, before its notification comes back. */
  wrote(kind: ChangeKind, orgId: string): void;
  /** Whether the LISTEN connection is up and the caches were flushed since it last went down. */
  readonly listening: boolean;
  close(): Promise<void>;
}

export interface ChangeFeedOptions {
  /** Connection settings of the listening client (the request role's URL): one dedicated connection, not the pool's. */
  client: pg.ClientConfig;
  /** Told once per loss and once per recovery, for the log. */
  onState?: (state: 'lost' | 'listening', error?: unknown) => void;
  /** How often the listening connection is probed (tests shorten it); the margin is the smaller of 1 s and this. */
  heartbeatMs?: number;
  /** How long a heartbeat may take before the connection is taken for lost (default: the interval). */
  heartbeatTimeoutMs?: number;
}

/**
 * The change feed over LISTEN/NOTIFY. Every writing transaction notifies (delivered at commit),
 * one dedicated connection per process listens. Versions count changes per org, exactly (a
 * bucketed counter would let one org see another's writes come and go); the map is bounded and
 * starts over under a new epoch when full. A notification is never replayed to a listener that
 * reconnects, so while the connection is down `version` answers undefined (no cache may answer),
 * and once it listens again, subscribers are told {orgId: null} (flush everything) and the epoch
 * changes before `version` vouches again. It reconnects by itself, with backoff.
 */
export async function createPostgresChangeFeed(options: ChangeFeedOptions): Promise<PostgresChangeFeed> {
  const counts = new Map<string, number>();
  const listeners = new Set<(change: Change) => void>();
  let epoch = 0;
  let listening = false;
  let closed = false;
  let client: pg.Client | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let backoff = RECONNECT_MIN_MS;
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const freshForMs = heartbeatMs + Math.min(HEARTBEAT_MARGIN_MS, heartbeatMs);
  /** When the listening connection last proved it was alive (LISTEN, a heartbeat's answer, a notification). */
  let lastGood = 0;
  const fresh = () => listening && Date.now() - lastGood <= freshForMs;

  const announce = (change: Change) => {
    for (const listener of listeners) {
      // A listener is a cache dropping entries; its failure must not turn a committed write into an error.
      try {
        listener(change);
      } catch {
        // nothing to undo: the cache's next version check still sees the change
      }
    }
  };
  const count = (orgId: string) => {
    if (!counts.has(orgId) && counts.size >= MAX_COUNTED_ORGS) {
      counts.clear();
      epoch += 1;
    }
    counts.set(orgId, (counts.get(orgId) ?? 0) + 1);
  };
  const flush = () => {
    counts.clear();
    epoch += 1;
    announce({ orgId: null });
  };

  const onNotification = (message: pg.Notification) => {
    if (message.channel !== CHANGES_CHANNEL) return;
    lastGood = Date.now();
    const change = readPayload(message.payload ?? '*');
    if (change.orgId === null) return flush();
    // A touch (anything of the org may have changed, its data included: an org deleted and made
    // again) moves the version too.
    count(change.orgId);
    announce(change);
  };

  const lost = (current: pg.Client, error?: unknown) => {
    if (client !== current) return; // already handled
    client = undefined;
    const was = listening;
    listening = false;
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = undefined;
    current.removeAllListeners('notification');
    current.end().catch(() => {});
    if (was) {
      // From now on nothing other replicas change is heard: subscribers drop what they hold (the
      // key cache), and `version` answers undefined until the connection listens again.
      announce({ orgId: null });
      options.onState?.('lost', error);
    }
    schedule();
  };

  const schedule = () => {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void connect();
    }, backoff);
    retryTimer.unref();
    backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
  };

  const connect = async (): Promise<void> => {
    if (closed || client) return;
    const next = new pg.Client({ ...options.client, keepAlive: true, query_timeout: options.heartbeatTimeoutMs ?? heartbeatMs });
    client = next;
    // An error event without a listener would crash the process; a lost connection is expected.
    next.on('error', (error) => lost(next, error));
    next.on('end', () => lost(next));
    next.on('notification', onNotification);
    try {
      await next.connect();
      await next.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (error) {
      lost(next, error);
      return;
    }
    if (client !== next || closed) return;
    backoff = RECONNECT_MIN_MS;
    // Whatever was notified while nobody listened is gone: every cached answer is suspect.
    flush();
    lastGood = Date.now();
    listening = true;
    options.onState?.('listening');
    heartbeat = setInterval(() => {
      next.query('SELECT 1').then(
        () => {
          if (client === next) lastGood = Date.now();
        },
        (error: unknown) => lost(next, error),
      );
    }, heartbeatMs);
    heartbeat.unref();
  };

  await connect();

  return {
    // Undefined (no cache may answer) while not listening, and once the last sign of life is older than
    // the heartbeat interval plus its margin: a connection that died silently cannot vouch for long.
    version: (orgId) => (fresh() ? `${epoch}:${counts.get(orgId) ?? 0}` : undefined),
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    wrote(kind, orgId) {
      count(orgId);
      announce(kind === 'data' ? { orgId, kind: 'data' } : { orgId });
    },
    get listening() {
      return listening;
    },
    async close() {
      closed = true;
      listening = false;
      if (retryTimer) clearTimeout(retryTimer);
      if (heartbeat) clearInterval(heartbeat);
      const current = client;
      client = undefined;
      if (current) {
        current.removeAllListeners('notification');
        await current.end().catch(() => {});
      }
    },
  };
}
