import type { QuotaDefaults } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { OrgQuotaRow, Store } from '../store/types.ts';

/** An org's quotas as they apply: its own where set, else the configured defaults; null is unlimited. */
export interface EffectiveQuota {
  runUnitsPerMonth: number | null;
  requestsPerMinute: number | null;
  /** Set whenever requestsPerMinute is. */
  burst: number | null;
}

/** How long a looked-up quota is trusted without a change notice (other replicas' setOrgQuota arrive by the feed). */
const TTL_MS = 30_000;
const MAX_CACHED = 100_000;

/** A minute's requests over six (ten seconds' worth), at least one. */
export const defaultBurst = (requestsPerMinute: number): number => Math.max(1, Math.ceil(requestsPerMinute / 6));

export function effectiveQuota(row: Pick<OrgQuotaRow, 'runUnitsPerMonth' | 'requestsPerMinute' | 'burst'> | undefined, defaults: QuotaDefaults): EffectiveQuota {
  const runUnitsPerMonth = row?.runUnitsPerMonth ?? defaults.runUnitsPerMonth;
  const requestsPerMinute = row?.requestsPerMinute ?? defaults.requestsPerMinute;
  const burst = requestsPerMinute === null ? null : (row?.burst ?? defaults.burst ?? defaultBurst(requestsPerMinute));
  return { runUnitsPerMonth, requestsPerMinute, burst };
}

/**
 * Every org's effective quota, kept in process for the gates (asked on every request, so the
 * common case costs a map lookup): filled on first use of an org, dropped when the store's change
 * feed says the org changed (setOrgQuota here or on another replica) and after TTL_MS whatever
 * the feed says. An org whose quota cannot be read is admitted on the defaults, with a warning:
 * a store outage does not turn into every org being refused.
 */
export class Quotas {
  readonly #store: Store;
  readonly #defaults: QuotaDefaults;
  readonly #logger: Logger;
  readonly #cached = new Map<string, { quota: EffectiveQuota; until: number }>();
  readonly #loading = new Map<string, Promise<EffectiveQuota>>();
  readonly #unsubscribe: () => void;
  readonly unlimitedByDefault: boolean;

  constructor(store: Store, defaults: QuotaDefaults, logger: Logger) {
    this.#store = store;
    this.#defaults = defaults;
    this.#logger = logger;
    this.unlimitedByDefault = defaults.requestsPerMinute === null && defaults.runUnitsPerMonth === null;
    this.#unsubscribe = store.changes.subscribe((change) => {
      if (change.kind === 'data') return;
      if (change.orgId === null) this.#cached.clear();
      else this.#cached.delete(change.orgId);
    });
  }

  get defaults(): QuotaDefaults {
    return this.#defaults;
  }

  /** The org's quota when known in process, else undefined (then `load`). */
  peek(orgId: string): EffectiveQuota | undefined {
    const entry = this.#cached.get(orgId);
    if (entry === undefined) return undefined;
    if (entry.until < performance.now()) {
      this.#cached.delete(orgId);
      return undefined;
    }
    return entry.quota;
  }

  /** The org's quota, read from the store when not cached. */
  get(orgId: string): EffectiveQuota | Promise<EffectiveQuota> {
    return this.peek(orgId) ?? this.load(orgId);
  }

  load(orgId: string): Promise<EffectiveQuota> {
    let pending = this.#loading.get(orgId);
    if (pending) return pending;
    pending = this.#store
      .forOrg(orgId)
      .usage.quota()
      .then(
        (row) => {
          const quota = effectiveQuota(row, this.#defaults);
          if (this.#cached.size >= MAX_CACHED) this.#cached.delete(this.#cached.keys().next().value as string);
          this.#cached.set(orgId, { quota, until: performance.now() + TTL_MS });
          return quota;
        },
        (error: unknown) => {
          this.#logger.warn('quota lookup failed; the defaults apply', { orgId, error: { name: (error as Error).name, message: (error as Error).message } });
          return effectiveQuota(undefined, this.#defaults);
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
