import { z } from 'zod';
import { badInput, conflict, notFound } from '../errors.ts';
import type { HealthStatus, ModuleRecord, OrgRow, Store } from '../store/types.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import { apiKeysForOrg, issueApiKey, type Grantor, type NewKeyInput, type RevokeOptions } from './api-keys.ts';
import { monthOf, setQuota, usageForOrg, type Metering, type OrgQuotaInput } from './usage.ts';
import { displayName, lookupable, newId, parseInput, text } from './validate.ts';

const orgSchema = z.object({ id: newId('id'), name: displayName('name') });
const usageSchema = z.number().int('count must be a whole number').min(1, 'count must be at least 1').max(1_000_000, 'count must be at most 1000000');
const messageSchema = text('message').max(2000, 'message must be at most 2000 characters').nullish();

export const MAX_UNHEALTHY = 1000;
export const MAX_TOP_ORGS = 1000;

/**
 * Cross-org operations. Only fields that require the `admin` scope (and the CLI, which is run by
 * the operator) reach these; tenant fields use `forOrg`. An operation on one given org goes
 * through that org's store (`store.forOrg`); only what spans orgs uses `store.system`.
 */
export function systemRepos(store: Store, authenticator: Authenticator, metering?: Metering) {
  const module = (row: ModuleRecord | undefined, orgId: string, moduleId: string): ModuleRecord => {
    if (!row) throw notFound('Module', `${orgId}/${moduleId}`);
    return row;
  };
  const requireOrg = async (id: string): Promise<OrgRow> => {
    const org = lookupable(id) ? await store.forOrg(id).org() : undefined;
    if (!org) throw notFound('Org', id);
    return org;
  };

  const meteringOf = (): Metering => {
    if (metering === undefined) throw new Error('systemRepos was built without metering');
    return metering;
  };

  return {
    usage: {
      /** One org's metering, as its own keys see it (usage, series, events); NOT_FOUND for an unknown org. */
      async of(orgId: string) {
        await requireOrg(orgId);
        return usageForOrg(store.forOrg(orgId), meteringOf());
      },
      async setQuota(orgId: string, input: OrgQuotaInput) {
        await requireOrg(orgId);
        return setQuota(store.forOrg(orgId), input);
      },
      async quota(orgId: string) {
        await requireOrg(orgId);
        return store.forOrg(orgId).usage.quota();
      },
      /** Orgs by run units used in the month, most first. */
      async top(period: string | null | undefined, first: number = 10) {
        if (!Number.isInteger(first) || first < 0 || first > MAX_TOP_ORGS) throw badInput(`first must be from 0 to ${MAX_TOP_ORGS}`, 'first');
        const { start, end } = monthOf(period);
        const rows = await store.system.usage.top(start.toISOString(), first);
        return rows.map((row) => ({ ...row, periodStart: start.toISOString(), periodEnd: end.toISOString() }));
      },
    },

    orgs: {
      list: () => store.system.orgs.list(),
      require: requireOrg,
      async create(input: { id: string; name: string }): Promise<OrgRow> {
        const parsed = parseInput(orgSchema, input);
        const row = { ...parsed, createdAt: new Date().toISOString() };
        if (!(await store.system.orgs.insert(row))) throw conflict(`Org "${parsed.id}" already exists`);
        return row;
      },
    },

    apiKeys: {
      async list(orgId: string) {
        await requireOrg(orgId);
        return store.forOrg(orgId).apiKeys.list();
      },
      async revoke(orgId: string, id: string, revoker: Grantor, options?: RevokeOptions) {
        await requireOrg(orgId);
        return apiKeysForOrg(store, store.forOrg(orgId), authenticator).revoke(id, revoker, options);
      },
      descendants: (orgId: string, id: string) => store.forOrg(orgId).apiKeys.descendants(id),
      /** Issue a key in any org (the operator's way to give a new org its first key). */
      async create(orgId: string, input: NewKeyInput, grantor: Grantor) {
        await requireOrg(orgId);
        return issueApiKey(store, orgId, input, grantor);
      },
    },

    modules: {
      async reportHealth(orgId: string, moduleId: string, status: HealthStatus, message: string | null | undefined) {
        const parsedMessage = parseInput(messageSchema, message) ?? null;
        if (!lookupable(orgId, 'orgId') || !lookupable(moduleId, 'moduleId')) throw notFound('Module', `${orgId}/${moduleId}`);
        const row = await store.system.modules.reportHealth(orgId, moduleId, status, parsedMessage, new Date().toISOString());
        return module(row, orgId, moduleId);
      },
      async recordUsage(orgId: string, moduleId: string, count: number) {
        const n = parseInput(usageSchema, count);
        if (!lookupable(orgId, 'orgId') || !lookupable(moduleId, 'moduleId')) throw notFound('Module', `${orgId}/${moduleId}`);
        return module(await store.system.modules.recordUsage(orgId, moduleId, n, new Date().toISOString()), orgId, moduleId);
      },
      unhealthy: (first: number = MAX_UNHEALTHY) => {
        // Checked, not clamped: to SQLite a negative LIMIT means no limit at all.
        if (!Number.isInteger(first) || first < 0 || first > MAX_UNHEALTHY) {
          throw badInput(`first must be from 0 to ${MAX_UNHEALTHY}`, 'first');
        }
        return store.system.modules.unhealthy(first);
      },
    },
  };
}
