import type { Scope } from '../auth/scopes.ts';
import { forbidden } from '../errors.ts';
import type { OrgRepos, SystemRepos } from '../repos/index.ts';
import type { AuditActor } from '../store/types.ts';

/**
 * What every resolver receives. The pipeline builds it before any resolver runs, so `orgId` is
 * always set; resolvers reach data only through `repos` (bound to `orgId`) and, on fields that
 * declare the `admin` scope, through `systemOf(ctx)`.
 */
export interface Context {
  orgId: string;
  keyId: string;
  scopes: ReadonlySet<Scope>;
  /** When the calling key expires (epoch ms), or null: keys it creates may not outlive it. */
  keyExpiresAt: number | null;
  repos: OrgRepos;
  /**
   * The cross-org repositories, present only when the key holds `admin` (app.ts builds the
   * context): a tenant key's context has none, so no tenant field reaches another org by mistake.
   */
  system: SystemRepos | undefined;
  /** Who is acting, for the audit log: the key (id, display prefix) and the request (id, client address). */
  actor: AuditActor;
}

/**
 * The cross-org repositories, for fields that declare `authScopes: { admin: true }`. Scope-auth
 * refuses a key without `admin` before the resolver runs; reaching here without them means a
 * field that forgot to declare it, and it is refused rather than served.
 */
export function systemOf(ctx: Context): SystemRepos {
  if (ctx.system === undefined) throw forbidden('only an admin key reaches other orgs');
  return ctx.system;
}
