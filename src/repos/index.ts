import type { Authenticator } from '../auth/authenticator.ts';
import { orgKeyring } from '../crypto/data-keys.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Store } from '../store/types.ts';
import { apiKeysForOrg } from './api-keys.ts';
import { auditForOrg } from './audit.ts';
import { credentialsForOrg } from './credentials.ts';
import type { ModuleEventHub } from './module-events.ts';
import { modulesForOrg } from './modules.ts';
import { systemRepos } from './system.ts';
import { usageForOrg, type Metering } from './usage.ts';

/**
 * The tenancy seam. Everything a tenant request can touch is built here, on the org-bound store
 * (`store.forOrg`) of one org id that comes from the authenticated key, never from arguments.
 */
export interface Services {
  store: Store;
  secretBox: SecretBox;
  authenticator: Authenticator;
  metering: Metering;
  /** Module events for subscriptions, off the store's change feed. */
  events: ModuleEventHub;
}

export function forOrg(services: Services, orgId: string) {
  const { store, secretBox, authenticator, metering, events } = services;
  const org = store.forOrg(orgId);
  return {
    orgId,
    org: () => org.org(),
    modules: modulesForOrg(org),
    credentials: credentialsForOrg(org, orgKeyring(store, secretBox)),
    apiKeys: apiKeysForOrg(store, org, authenticator),
    usage: usageForOrg(org, metering),
    audit: auditForOrg(org),
    /** The org's module events as they happen, for a key of the org (its id and expiry: the stream ends with the key). */
    moduleEvents: (key: { keyId: string; expiresAt: number | null }) => events.subscribe({ orgId, ...key }, 'org'),
  };
}

export type OrgRepos = ReturnType<typeof forOrg>;
export type SystemRepos = ReturnType<typeof systemRepos>;
export { systemRepos };
