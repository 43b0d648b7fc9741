import type { GraphQLError } from 'graphql';
import { Repeater } from 'graphql-yoga';
import { orgSuspended, rateLimited, unauthenticated, unavailable } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Change, ModuleEventKind, ModuleRecord, Store } from '../store/types.ts';

/** What a subscriber receives: one module's change in an org, or `resync` (events may have been missed). */
export interface ModuleEvent {
  kind: ModuleEventKind | 'resync';
  orgId: string;
  /** Null for `resync`. */
  moduleId: string | null;
  /** The module as it is once the event was heard; null when uninstalled, for `resync`, or if it is gone again. */
  module: ModuleRecord | null;
  /** When this process heard of it (ISO UTC). */
  at: string;
}

/** Who opens a stream: the authenticated key (its org comes from the key, never from arguments). */
export interface StreamOwner {
  orgId: string;
  keyId: string;
  /** Epoch ms, or null: the stream ends when the key expires. */
  expiresAt: number | null;
}

export interface ModuleEventHubOptions {
  store: Store;
  logger: Logger;
  /** Open streams one org may hold in this process; past it, RATE_LIMITED (limit "subscriptions"). */
  maxPerOrg: number;
  /** Open streams in this process, every org together. */
  maxTotal: number;
  /** Told of every stream refused for the caps (a metric). */
  onRefused?: () => void;
  /** Told of every event handed to a stream, by its kind (a metric). */
  onDelivered?: (kind: ModuleEvent['kind']) => void;
  now?: () => number;
}

/** Events waiting for one slow client before the rest are replaced by one `resync`. */
const MAX_PENDING_PER_STREAM = 64;
/** The longest a Node timer waits (2^31-1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Module reads waiting in one org's line before the rest are replaced by one `resync` for the org. */
const MAX_PENDING_PER_ORG = 256;

interface Stream {
  owner: StreamOwner;
  /** 'org': every module event of the owner's org; 'health': health reports of every org (admin). */
  scope: 'org' | 'health';
  deliver(event: ModuleEvent): void;
  end(error?: GraphQLError): void;
}

/**
 * Module events for GraphQL subscriptions, off the store's change feed: one listener per process
 * whatever the number of streams (in PostgreSQL the feed is the replicas' one LISTEN connection, so
 * a write on any replica reaches every replica's streams). A module the feed names is read once per
 * event through the org-bound store (under row-level security in PostgreSQL), in the order heard,
 * and handed to the org's streams only: a stream's org is its key's. When the feed says anything of
 * an org may have changed (its keys, its row), each stream of the org checks that its key is still
 * valid and the org active, and ends with the error a request would get if not. When the feed
 * cannot tell what changed ({orgId: null}: a lost LISTEN connection, another process's SQLite
 * commit), every stream gets `resync`. A slow client gets at most MAX_PENDING_PER_STREAM events
 * queued, then one `resync` once it has caught up.
 */
export class ModuleEventHub {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #options: ModuleEventHubOptions;
  readonly #now: () => number;
  readonly #streams = new Set<Stream>();
  readonly #perOrg = new Map<string, number>();
  /** Per org: the tail of its line of module reads, and how many wait in it. */
  readonly #lines = new Map<string, { tail: Promise<void>; waiting: number }>();
  /** Orgs whose streams' keys are being checked, and whether another check was asked meanwhile. */
  readonly #checking = new Map<string, boolean>();
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  constructor(options: ModuleEventHubOptions) {
    this.#store = options.store;
    this.#logger = options.logger;
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get open(): number {
    return this.#streams.size;
  }

  /**
   * A stream of events for `owner`'s org ('org') or of every org's health reports ('health', for
   * admin fields only). Refused with RATE_LIMITED when the org or the process holds as many streams
   * as allowed: here, and again when the stream starts (a stream is counted from its start, when
   * the client reads it: one that never starts, such as a subscription asked for without
   * `Accept: text/event-stream`, which Yoga answers 406, holds nothing). Ends when the client
   * leaves, the key stops being valid, or the hub closes.
   */
  subscribe(owner: StreamOwner, scope: 'org' | 'health'): AsyncIterable<ModuleEvent> {
    this.#admit(owner.orgId);
    return new Repeater<ModuleEvent>(async (push, stop) => {
      try {
        this.#admit(owner.orgId);
      } catch (error) {
        stop(error as GraphQLError);
        return;
      }
      let pending = 0;
      let missed = false;
      const stream: Stream = {
        owner,
        scope,
        deliver: (event) => {
          if (pending >= MAX_PENDING_PER_STREAM) {
            missed = true;
            return;
          }
          pending += 1;
          this.#options.onDelivered?.(event.kind);
          void push(event).then(
            () => {
              pending -= 1;
              if (missed && pending === 0) {
                missed = false;
                stream.deliver(this.#resync(owner.orgId));
              }
            },
            () => {},
          );
        },
        end: (error) => stop(error),
      };
      this.#add(stream);
      // The key was valid when the request was authenticated; a revocation or suspension since then
      // was announced before this stream listened, so it is checked once now.
      this.#check(owner.orgId);
      let expiry: NodeJS.Timeout | undefined;
      const arm = () => {
        if (owner.expiresAt === null) return;
        const left = owner.expiresAt - this.#now();
        // setTimeout holds at most 2^31-1 ms: a later expiry is waited for in steps.
        expiry = setTimeout(() => (left <= MAX_TIMER_MS ? stop(unauthenticated('invalid')) : arm()), Math.max(0, Math.min(left, MAX_TIMER_MS)));
        expiry.unref();
      };
      arm();
      try {
        await stop;
      } finally {
        if (expiry) clearTimeout(expiry);
        this.#remove(stream);
      }
    });
  }

  /** Throws what a new stream of the org gets when the hub is closing or a cap is reached. */
  #admit(orgId: string): void {
    if (this.#closed) throw unavailable('The gateway is shutting down; subscribe again in a moment');
    if ((this.#perOrg.get(orgId) ?? 0) >= this.#options.maxPerOrg || this.#streams.size >= this.#options.maxTotal) {
      this.#logger.info('subscription refused: too many open', { orgId, limit: 'subscriptions' });
      this.#options.onRefused?.();
      throw rateLimited(5, 'subscriptions');
    }
  }

  /** Ends every stream (shutdown: an open stream would keep its connection, and the drain, waiting). */
  close(): void {
    this.#closed = true;
    for (const stream of [...this.#streams]) stream.end();
  }

  #add(stream: Stream): void {
    this.#streams.add(stream);
    this.#perOrg.set(stream.owner.orgId, (this.#perOrg.get(stream.owner.orgId) ?? 0) + 1);
    this.#unsubscribe ??= this.#store.changes.subscribe((change) => this.#heard(change));
  }

  #remove(stream: Stream): void {
    if (!this.#streams.delete(stream)) return;
    const left = (this.#perOrg.get(stream.owner.orgId) ?? 1) - 1;
    if (left > 0) this.#perOrg.set(stream.owner.orgId, left);
    else this.#perOrg.delete(stream.owner.orgId);
    if (this.#streams.size === 0) {
      this.#unsubscribe?.();
      this.#unsubscribe = undefined;
    }
  }

  #resync(orgId: string): ModuleEvent {
    return { kind: 'resync', orgId, moduleId: null, module: null, at: new Date(this.#now()).toISOString() };
  }

  #heard(change: Change): void {
    if (change.orgId === null) {
      for (const stream of this.#streams) stream.deliver(this.#resync(stream.owner.orgId));
      for (const orgId of new Set([...this.#streams].map((s) => s.owner.orgId))) this.#check(orgId);
      return;
    }
    if (change.module !== undefined) return this.#moduleChanged(change.orgId, change.module.id, change.module.event);
    // Keys or the org row may have changed: streams of the org check their key and the org.
    if (change.kind === undefined) this.#check(change.orgId);
  }

  /** The streams that hear this org's event: its own org's streams, and the health streams for a health report. */
  #listeners(orgId: string, event: ModuleEventKind): Stream[] {
    const out: Stream[] = [];
    for (const stream of this.#streams) {
      if (stream.scope === 'org' ? stream.owner.orgId === orgId : event === 'health') out.push(stream);
    }
    return out;
  }

  #moduleChanged(orgId: string, moduleId: string, event: ModuleEventKind): void {
    if (this.#listeners(orgId, event).length === 0) return;
    const line = this.#lines.get(orgId) ?? { tail: Promise.resolve(), waiting: 0 };
    this.#lines.set(orgId, line);
    if (line.waiting >= MAX_PENDING_PER_ORG) {
      // The org's events outrun its reads: its streams are told to refetch instead.
      for (const stream of this.#listeners(orgId, event)) stream.deliver(this.#resync(stream.owner.orgId));
      return;
    }
    line.waiting += 1;
    line.tail = line.tail.then(async () => {
      let module: ModuleRecord | null = null;
      let failed = false;
      if (event !== 'uninstalled') {
        try {
          module = (await this.#store.forOrg(orgId).modules.get(moduleId)) ?? null;
        } catch (error) {
          failed = true;
          this.#logger.warn('a module event could not be read', { orgId, error: { name: (error as Error).name, message: (error as Error).message } });
        }
      }
      line.waiting -= 1;
      if (line.waiting === 0 && this.#lines.get(orgId) === line) this.#lines.delete(orgId);
      const at = new Date(this.#now()).toISOString();
      // Read again after the wait: a stream that ended meanwhile is gone from the set.
      for (const stream of this.#listeners(orgId, event)) {
        if (failed) {
          stream.deliver(this.#resync(stream.owner.orgId));
        } else {
          stream.deliver({ kind: event, orgId, moduleId, module, at });
        }
      }
    }).catch((error: unknown) => {
      // Nothing above throws by design; were it to, the line goes on (an unhandled rejection would end the process).
      this.#logger.error('a module event could not be delivered', { orgId, error: { name: (error as Error).name, message: (error as Error).message } });
    });
  }

  /** Ends the org's streams whose key is no longer valid, or all of them if the org is gone or suspended. One check at a time per org. */
  #check(orgId: string): void {
    if (this.#checking.has(orgId)) {
      this.#checking.set(orgId, true);
      return;
    }
    const streams = [...this.#streams].filter((s) => s.owner.orgId === orgId);
    if (streams.length === 0) return;
    this.#checking.set(orgId, false);
    void this.#verify(orgId, streams)
      .catch((error: unknown) => {
        // The store cannot answer now: the streams stay; the next change of the org checks again.
        this.#logger.warn('subscription keys could not be checked', { orgId, error: { name: (error as Error).name, message: (error as Error).message } });
      })
      .finally(() => {
        const again = this.#checking.get(orgId);
        this.#checking.delete(orgId);
        if (again) this.#check(orgId);
      });
  }

  async #verify(orgId: string, streams: Stream[]): Promise<void> {
    const org = this.#store.forOrg(orgId);
    const row = await org.org();
    if (row === undefined || row.status === 'suspended') {
      const error = row === undefined ? unauthenticated('invalid') : orgSuspended();
      for (const stream of streams) stream.end(error);
      return;
    }
    const now = this.#now();
    const valid = new Map<string, boolean>();
    for (const stream of streams) {
      const keyId = stream.owner.keyId;
      if (!valid.has(keyId)) {
        const key = await org.apiKeys.get(keyId);
        valid.set(keyId, key !== undefined && key.revokedAt === null && (key.expiresAt === null || Date.parse(key.expiresAt) > now));
      }
      if (!valid.get(keyId)) stream.end(unauthenticated('invalid'));
    }
  }
}
