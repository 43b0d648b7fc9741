import type { QuotaDefaults } from '../config.ts';
import { OrgCache } from '../pipeline/org-cache.ts';
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

/** A minute's requests over six (ten seconds' worth), at least one. */
export const defaultBurst = (requestsPerMinute: number): number => Math.max(1, Math.ceil(requestsPerMinute / 6));

export function effectiveQuota(row: Pick<OrgQuotaRow, 'runUnitsPerMonth' | 'requestsPerMinute' | 'burst'> | undefined, defaults: QuotaDefaults): EffectiveQuota {
  const runUnitsPerMonth = row?.runUnitsPerMonth ?? defaults.runUnitsPerMonth;
  const requestsPerMinute = row?.requestsPerMinute ?? defaults.requestsPerMinute;
  const burst = requestsPerMinute === null ? null : (row?.burst ?? defaults.burst ?? defaultBurst(requestsPerMinute));
  return { runUnitsPerMonth, requestsPerMinute, burst };
}

/**
 * Every org's effective quota, kept in process for the gates (asked on every request; see
 * OrgCache). An org whose quota cannot be read is admitted on the defaults: a store outage does
 * not turn into every org being refused.
 */
export class Quotas {
  readonly #cache: OrgCache<EffectiveQuota>;
  readonly #store: Store;
  readonly defaults: QuotaDefaults;

  constructor(store: Store, defaults: QuotaDefaults, logger: Logger) {
    this.defaults = defaults;
    this.#store = store;
    this.#cache = new OrgCache(store, {
      what: 'quota',
      ttlMs: TTL_MS,
      load: async (orgId) => effectiveQuota(await store.forOrg(orgId).usage.quota(), defaults),
      fallback: () => effectiveQuota(undefined, defaults),
      logger,
    });
  }

  /** The org's quota when known in process, else undefined (then `load`). */
  peek(orgId: string): EffectiveQuota | undefined {
    return this.#cache.peek(orgId);
  }

  /** The org's quota, read from the store when not cached. */
  get(orgId: string): EffectiveQuota | Promise<EffectiveQuota> {
    return this.#cache.get(orgId);
  }

  load(orgId: string): Promise<EffectiveQuota> {
    return this.#cache.load(orgId);
  }

  /** The org's quota read from the store now; rejects when it cannot be read (no fallback). */
  async strict(orgId: string): Promise<EffectiveQuota> {
    return effectiveQuota(await this.#store.forOrg(orgId).usage.quota(), this.defaults);
  }

  close(): void {
    this.#cache.close();
  }
}
