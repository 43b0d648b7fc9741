import { orgSuspended } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { OrgStatus, Store } from '../store/types.ts';
import { OrgCache } from './org-cache.ts';
import type { Gate } from './pipeline.ts';

/** How long a looked-up status is trusted without a change notice (suspendOrg on another replica arrives by the feed). */
const TTL_MS = 5_000;

/**
 * The first gate: a suspended org's keys are refused with 403 ORG_SUSPENDED before anything of
 * the org is read or answered, cached answers included. The status is asked on every request
 * (OrgCache: a map lookup); a suspension reaches this process at once when made here, and by the
 * change feed from other replicas (within TTL_MS if a notice is lost). An org whose status cannot
 * be read is taken as active: its data is behind the store, which is failing anyway.
 */
export function orgStatusGate(options: { store: Store; logger: Logger }): Gate & { close(): void } {
  const { store, logger } = options;
  const statuses = new OrgCache<OrgStatus>(store, {
    what: 'org status',
    ttlMs: TTL_MS,
    load: async (orgId) => (await store.forOrg(orgId).org())?.status ?? 'active',
    fallback: () => 'active',
    logger,
  });
  const check = (orgId: string, status: OrgStatus) => {
    if (status === 'suspended') {
      logger.info('request refused: org suspended', { orgId, limit: 'suspended' });
      throw orgSuspended();
    }
  };
  return {
    name: 'org status',
    admit(exchange) {
      const orgId = exchange.principal.orgId;
      const status = statuses.peek(orgId);
      if (status !== undefined) return check(orgId, status);
      return statuses.load(orgId).then((loaded) => check(orgId, loaded));
    },
    close: () => statuses.close(),
  };
}
