import { z } from 'zod';
import { badInput, conflict, notFound, orgSuspended } from '../errors.ts';
import { DEFAULT_ORG, type AuditActor, type HealthStatus, type ModuleRecord, type OrgRow, type Store } from '../store/types.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import { apiKeysForOrg, issueApiKey, type Grantor, type NewKeyInput, type RevokeOptions } from './api-keys.ts';
import { auditForOrg } from './audit.ts';
import type { ModuleEventHub, StreamOwner } from './module-events.ts';
import { monthOf, setQuota, usageForOrg, type Metering, type OrgQuotaInput } from './usage.ts';
import { displayName, lookupable, newId, parseInput, text } from './validate.ts';

const orgSchema = z.object({ id: newId('id'), name: displayName('name') });
const usageSchema = z.number().int('count must be a whole number').min(1, 'count must be at least 1').max(1_000_000, 'count must be at most 1000000');
const reasonSchema = displayName('reason', 500);
const messageSchema = text('message').max(2000, 'message must be at most 2000 characters').nullish();

export const MAX_UNHEALTHY = 1000;
export const MAX_TOP_ORGS = 1000;

/**
 * Cross-org operations. Only fields that require the `admin` scope (and the CLI, which is run by
 * the operator) reach these; tenant fields use `forOrg`. An operation on one given org goes
 * through that org's store (`store.forOrg`); only what spans orgs uses `store.system`.
 */
export function systemRepos(store: Store, authenticator: Authenticator, metering?: Metering, events?: ModuleEventHub) {
  const module = (row: ModuleRecord | undefined, orgId: string, moduleId: string): ModuleRecord => {
    if (!row) throw notFound('Module', `${orgId}/${moduleId}`);
    return row;
  };
  const requireOrg = async (id: string): Promise<OrgRow> => {
    const org = lookupable(id) ? await store.forOrg(id).org() : undefined;
    if (!org) throw notFound('Org', id);
    return org;
  };
  /** An org the operator changes: existing, and not suspended (nothing of a suspended org changes). */
  const requireActive = async (id: string): Promise<OrgRow> => {
    const org = await requireOrg(id);
    if (org.status === 'suspended') throw orgSuspended();
    return org;
  };
  const found = (row: OrgRow | undefined, id: string): OrgRow => {
    if (!row) throw notFound('Org', id);
    return row;
  };
  const notDefault = (id: string, what: string) => {
    if (id === DEFAULT_ORG.id) throw badInput(`the operator's org "${DEFAULT_ORG.id}" cannot be ${what}`, 'id');
  };

  const meteringOf = (): Metering => {
    if (metering === undefined) throw new Error('systemRepos was built without metering');
    return metering;
  };

  return {
    /** Any org's audit log, as its own keys read it (admin orgAuditLog, the CLI); NOT_FOUND for an unknown org. */
    audit: {
      async of(orgId: string) {
        await requireOrg(orgId);
        return auditForOrg(store.forOrg(orgId));
      },
    },

    usage: {
      /** One org's metering, as its own keys see it (usage, series, events); NOT_FOUND for an unknown org. */
      async of(orgId: string) {
        await requireOrg(orgId);
        return usageForOrg(store.forOrg(orgId), meteringOf());
      },
      async setQuota(orgId: string, input: OrgQuotaInput, actor: AuditActor) {
        await requireOrg(orgId);
        return setQuota(store.forOrg(orgId), input, actor);
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
      async create(input: { id: string; name: string }, actor: AuditActor): Promise<OrgRow> {
        const parsed = parseInput(orgSchema, input);
        const row: OrgRow = { ...parsed, createdAt: new Date().toISOString(), status: 'active', suspendedAt: null, suspendReason: null };
        if (!(await store.system.orgs.insert(row, actor))) throw conflict(`Org "${parsed.id}" already exists`);
        return row;
      },
      async rename(id: string, name: string, actor: AuditActor): Promise<OrgRow> {
        const parsed = parseInput(z.object({ name: displayName('name') }), { name }).name;
        await requireOrg(id);
        return found(await store.forOrg(id).rename(parsed, new Date().toISOString(), actor), id);
      },
      /** Every key of the org answers ORG_SUSPENDED until resumeOrg; `default` (the operator's) cannot be. */
      async suspend(id: string, reason: string, actor: AuditActor): Promise<OrgRow> {
        const parsed = parseInput(z.object({ reason: reasonSchema }), { reason }).reason;
        notDefault(id, 'suspended');
        await requireOrg(id);
        return found(await store.forOrg(id).setStatus('suspended', parsed, new Date().toISOString(), actor), id);
      },
      async resume(id: string, actor: AuditActor): Promise<OrgRow> {
        await requireOrg(id);
        return found(await store.forOrg(id).setStatus('active', null, new Date().toISOString(), actor), id);
      },
      /** Deletes the org and everything of it, its data key included; `confirm` must repeat the id. */
      async delete(id: string, confirm: string, actor: AuditActor): Promise<{ id: string; deletedAt: string }> {
        if (confirm !== id) throw badInput('confirm must repeat the id of the org to delete', 'confirm');
        notDefault(id, 'deleted');
        await requireOrg(id);
        const deletedAt = new Date().toISOString();
        if (!(await store.system.orgs.delete(id, deletedAt, actor))) throw notFound('Org', id);
        return { id, deletedAt };
      },
    },

    apiKeys: {
      async list(orgId: string) {
        await requireOrg(orgId);
        return store.forOrg(orgId).apiKeys.list();
      },
      async revoke(orgId: string, id: string, revoker: Grantor, actor: AuditActor, options?: RevokeOptions) {
        await requireOrg(orgId);
        return apiKeysForOrg(store, store.forOrg(orgId), authenticator).revoke(id, revoker, actor, options);
      },
      descendants: (orgId: string, id: string) => store.forOrg(orgId).apiKeys.descendants(id),
      /** Issue a key in any org (the operator's way to give a new org its first key). */
      async create(orgId: string, input: NewKeyInput, grantor: Grantor, actor: AuditActor) {
        await requireActive(orgId);
        return issueApiKey(store, orgId, input, grantor, actor);
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
      /** Every org's module health reports as they happen, for the admin's key (`owner`). */
      healthEvents(owner: StreamOwner) {
        if (events === undefined) throw new Error('no module event hub: systemRepos was built without one');
        return events.subscribe(owner, 'health');
      },
    },
  };
}
