import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../logger.ts';
import type { ApiKeyRow, Change, Store } from '../store/types.ts';
import { hashKey, isWellFormedKey } from './key-format.ts';
import { isScope, type Scope } from './scopes.ts';

/** Who is calling: the org every operation of the request is scoped to, and what it may do. */
export interface Principal {
  orgId: string;
  keyId: string;
  /** The key's display prefix (ApiKeyRow.prefix), for the audit log: never enough to use the key. */
  keyPrefix: string;
  scopes: ReadonlySet<Scope>;
  /** Epoch milliseconds, or null for a key that does not expire. */
  expiresAt: number | null;
}

interface CacheEntry {
  principal: Principal;
  until: number;
}

const MAX_CACHED = 10_000;
/** Last-used times written per transaction (see flush). */
const TOUCH_SLICE = 200;

export interface AuthenticatorOptions {
  cacheTtlMs: number;
  /** How often batched last-used times are written. */
  flushIntervalMs?: number;
  logger: Logger;
  now?: () => number;
}

/**
 * Turns a presented key into a Principal. Verified keys are cached briefly; `forget` drops a key
 * at once (revocation is effective on the next request on this node), and a change the store's
 * feed announces for an org's keys drops that org's cached keys (other replicas: as soon as their
 * feed hears it). While the feed cannot vouch for an org (a lost or silent LISTEN connection), no
 * cached key of it is trusted and nothing read for it is kept. Last-used times are collected in
 * memory and written in one batch.
 */
export class Authenticator {
  readonly #store: Store;
  readonly #ttl: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #hashByKeyId = new Map<string, string>();
  /** Counts `forget` calls: a lookup that saw the store before one must not cache what it read. */
  #forgotten = 0;
  /** Key id → when it was last used (epoch ms), written in the next batch. */
  #pendingUse = new Map<string, number>();
  readonly #timer: NodeJS.Timeout | undefined;
  /** The flush under way, if any: the next waits for it (it never rejects). */
  #flushing: Promise<void> = Promise.resolve();
  readonly #unsubscribe: () => void;

  constructor(store: Store, options: AuthenticatorOptions) {
    this.#store = store;
    this.#ttl = options.cacheTtlMs;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    const interval = options.flushIntervalMs ?? 5000;
    if (interval > 0) {
      this.#timer = setInterval(() => void this.flush(), interval);
      this.#timer.unref();
    }
    // With no cache there is nothing to drop (and SQLite's feed polls only while someone listens).
    this.#unsubscribe = this.#ttl > 0 ? store.changes.subscribe((change) => this.#heard(change)) : () => {};
  }

  /** A change the store announced: keys of that org (or of any, for null) may have been revoked. */
  #heard(change: Change): void {
    if (change.kind === 'data') return; // modules or credentials only
    this.#forgotten += 1;
    if (change.orgId === null) {
      this.#cache.clear();
      this.#hashByKeyId.clear();
      return;
    }
    for (const [hash, entry] of this.#cache) {
      if (entry.principal.orgId !== change.orgId) continue;
      this.#cache.delete(hash);
      this.#hashByKeyId.delete(entry.principal.keyId);
    }
  }

  /**
   * The principal of a presented key, or undefined. Synchronous when the key is cached (nearly
   * every request), so the request path awaits nothing; a promise when the store must be asked.
   */
  verify(presented: string): Principal | undefined | Promise<Principal | undefined> {
    if (!isWellFormedKey(presented)) return undefined;
    const hash = hashKey(presented);
    const now = this.#now();
    const cached = this.#cache.get(hash);
    // A cached key is trusted only while the change feed vouches for its org (it would tell of a
    // revocation elsewhere): a feed that went quiet (a silently dead LISTEN connection) sends
    // every request to the store until it vouches again.
    if (cached && cached.until > now && this.#vouched(cached.principal.orgId)) return this.#admit(cached.principal, now);
    return this.#lookUp(hash, now);
  }

  #lookUp(hash: string, now: number): Promise<Principal | undefined> {
    const forgotten = this.#forgotten;
    return this.#store.auth.keyByHash(hash).then((row) => {
      if (!row || !timingSafeEqual(Buffer.from(row.hash, 'hex'), Buffer.from(hash, 'hex'))) return undefined;
      if (row.revokedAt !== null) return undefined;
      const principal = toPrincipal(row);
      // A revocation landed while the row was being read: the row may predate it, so this
      // request (which began before it) is admitted, but the row is not kept for the next.
      // Nor while the feed cannot vouch for the org: a revocation elsewhere would go unheard.
      if (forgotten === this.#forgotten && this.#vouched(principal.orgId)) this.#remember(hash, principal, now);
      return this.#admit(principal, now);
    });
  }

  /** Whether the change feed vouches for the org now; a feed that throws cannot vouch either (as in the response cache). */
  #vouched(orgId: string): boolean {
    try {
      return this.#store.changes.version(orgId) !== undefined;
    } catch {
      return false;
    }
  }

  /** An unexpired principal, its use noted for the next batch of last-used times. */
  #admit(principal: Principal, now: number): Principal | undefined {
    if (principal.expiresAt !== null && principal.expiresAt <= now) return undefined;
    this.#pendingUse.set(principal.keyId, now);
    return principal;
  }

  /** Drop a key from the cache (after revoking it). */
  forget(keyId: string): void {
    this.#forgotten += 1;
    const hash = this.#hashByKeyId.get(keyId);
    if (hash !== undefined) this.#cache.delete(hash);
    this.#hashByKeyId.delete(keyId);
  }

  /** Write collected last-used times; called on an interval and on shutdown. One at a time. */
  flush(): Promise<void> {
    const next = this.#flushing.then(() => this.#writePending());
    this.#flushing = next;
    return next;
  }

  async #writePending(): Promise<void> {
    if (this.#pendingUse.size === 0) return;
    const batch = this.#pendingUse;
    this.#pendingUse = new Map();
    try {
      const entries = [...batch].map(([id, at]) => [id, new Date(at).toISOString()] as const);
      // In slices, each its own transaction, with requests served in between: one write of every
      // key used in the last interval held the event loop for 10-15 ms with 2,000 keys.
      for (let i = 0; i < entries.length; i += TOUCH_SLICE) {
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        await this.#store.auth.touchKeys(entries.slice(i, i + TOUCH_SLICE));
      }
    } catch (error) {
      // Not worth failing requests over; keep them for the next flush unless newer ones arrived.
      for (const [id, at] of batch) if (!this.#pendingUse.has(id)) this.#pendingUse.set(id, at);
      this.#logger.warn('could not record key last-used times', { error: (error as Error).message });
    }
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#unsubscribe();
    await this.flush();
  }

  #remember(hash: string, principal: Principal, now: number): void {
    if (this.#ttl <= 0) return;
    if (this.#cache.size >= MAX_CACHED) {
      const oldest = this.#cache.entries().next().value;
      if (oldest !== undefined) {
        this.#cache.delete(oldest[0]);
        this.#hashByKeyId.delete(oldest[1].principal.keyId);
      }
    }
    this.#cache.set(hash, { principal, until: now + this.#ttl });
    this.#hashByKeyId.set(principal.keyId, hash);
  }
}

function toPrincipal(row: ApiKeyRow): Principal {
  return {
    orgId: row.orgId,
    keyId: row.id,
    keyPrefix: row.prefix,
    scopes: new Set(row.scopes.filter(isScope)),
    expiresAt: row.expiresAt === null ? null : Date.parse(row.expiresAt),
  };
}
