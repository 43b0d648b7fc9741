import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';

const MAX_CACHED = 100_000;

/**
 * A per-org value the gates ask on every request (an org's quota, its status), kept in process
 * so the common case costs a map lookup: filled on first use of an org, dropped when the store's
 * change feed says the org changed (here or on another replica; module and credential writes do
 * not count) and after `ttlMs` whatever the feed says. A value that cannot be loaded is
 * `fallback`, with a warning, and not kept.
 */
export class OrgCache<T> {
  readonly #cached = new Map<string, { value: T; until: number }>();
  readonly #loading = new Map<string, Promise<T>>();
  /** Change notices heard, per org (and for all): a load that began before one is not kept. */
  #generation = 0;
  readonly #unsubscribe: () => void;

  constructor(
    store: Store,
    readonly options: { what: string; ttlMs: number; load: (orgId: string) => Promise<T>; fallback: (orgId: string) => T; logger: Logger },
  ) {
    this.#unsubscribe = store.changes.subscribe((change) => {
      if (change.kind === 'data') return;
      this.#generation++;
      if (change.orgId === null) this.#cached.clear();
      else this.#cached.delete(change.orgId);
    });
  }

  /** The org's value when known in process, else undefined (then `load`). */
  peek(orgId: string): T | undefined {
    const entry = this.#cached.get(orgId);
    if (entry === undefined) return undefined;
    if (entry.until < performance.now()) {
      this.#cached.delete(orgId);
      return undefined;
    }
    return entry.value;
  }

  get(orgId: string): T | Promise<T> {
    const value = this.peek(orgId);
    return value !== undefined ? value : this.load(orgId);
  }

  load(orgId: string): Promise<T> {
    let pending = this.#loading.get(orgId);
    if (pending) return pending;
    const { load, fallback, ttlMs, logger, what } = this.options;
    const began = this.#generation;
    pending = Promise.resolve()
      .then(() => load(orgId))
      .then(
        (value) => {
          // A change heard while the value was read may be newer than it: answer it, do not keep it.
          if (began !== this.#generation) return value;
          if (this.#cached.size >= MAX_CACHED) this.#cached.delete(this.#cached.keys().next().value as string);
          this.#cached.set(orgId, { value, until: performance.now() + ttlMs });
          return value;
        },
        (error: unknown) => {
          logger.warn(`${what} lookup failed`, { orgId, error: { name: (error as Error).name, message: (error as Error).message } });
          return fallback(orgId);
        },
      )
      .finally(() => this.#loading.delete(orgId));
    this.#loading.set(orgId, pending);
    return pending;
  }

  close(): void {
    this.#unsubscribe();
  }
}
