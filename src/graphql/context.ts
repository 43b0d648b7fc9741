import type { Scope } from '../auth/scopes.ts';
import type { OrgRepos, SystemRepos } from '../repos/index.ts';

/**
 * What every resolver receives. The auth plugin builds it before any resolver runs, so `orgId`
 * is always set; resolvers reach data only through `repos` (bound to `orgId`) and, on fields that
 * require the `admin` scope, `system`.
 */
export interface Context {
  orgId: string;
  keyId: string;
  scopes: ReadonlySet<Scope>;
  /** When the calling key expires (epoch ms), or null: keys it creates may not outlive it. */
  keyExpiresAt: number | null;
  repos: OrgRepos;
  system: SystemRepos;
}
