import { AUDIT_ACTIONS, MAX_AUDIT_PAGE, type AuditFilter, type AuditPage, type AuditRepo } from '../repos/audit.ts';
import type { AuditAction, AuditRecord } from '../store/types.ts';
import { badInput } from '../errors.ts';
import { builder } from './builder.ts';
import { systemOf } from './context.ts';

// The audit log (README, Audit and compliance). Read-only: records are written by the store with
// each change. The chain's hashes are not exposed (`tenantgate audit verify` checks them).

const AuditActionEnum = builder.enumType('AuditAction', {
  description: 'What an audit record records: one name per kind of change or secret read.',
  values: Object.fromEntries(AUDIT_ACTIONS.map((a) => [a, { value: a }])) as Record<AuditAction, { value: AuditAction }>,
});

const AuditOutcomeEnum = builder.enumType('AuditOutcome', {
  description: 'How the recorded operation ended.',
  values: {
    SUCCESS: { value: 'success', description: 'Made (or, for a reveal, read).' },
    NOT_FOUND: { value: 'not_found', description: 'Refused: its target is not in the org; nothing changed.' },
    CONFLICT: { value: 'conflict', description: 'Refused: the id was taken; nothing changed.' },
  } as const,
});

const AuditActorVia = builder.enumType('AuditActorVia', {
  description: 'How the actor reached the gateway.',
  values: {
    API: { value: 'api', description: 'An API key, over GraphQL.' },
    CLI: { value: 'cli', description: 'The operator, with the tenantgate CLI.' },
    SYSTEM: { value: 'system', description: 'The gateway itself (start-up, maintenance).' },
  } as const,
});

const AuditRecordRef = builder.objectRef<AuditRecord>('AuditRecord').implement({
  description: 'One audit record: who did what to which target, when, and how it ended. Never a value (no secret, config or key).',
  fields: (t) => ({
    id: t.exposeID('id', { description: "The record's id (au_...)." }),
    seq: t.exposeInt('seq', { description: "Its place in the org's hash chain: 1, 2, 3, ..." }),
    at: t.field({ type: 'DateTime', description: 'When it was recorded, with its change.', resolve: (r) => r.at }),
    action: t.field({ type: AuditActionEnum, description: 'What was done.', resolve: (r) => r.action }),
    outcome: t.field({ type: AuditOutcomeEnum, description: 'How it ended.', resolve: (r) => r.outcome }),
    actorKeyId: t.exposeID('actorKeyId', { nullable: true, description: 'The API key that acted; null for the CLI and the gateway itself.' }),
    actorKeyPrefix: t.exposeString('actorKeyPrefix', { nullable: true, description: "That key's display prefix (never enough to use it)." }),
    actorVia: t.field({ type: AuditActorVia, description: 'How the actor reached the gateway.', resolve: (r) => r.actorVia }),
    targetId: t.exposeID('targetId', { nullable: true, description: 'The id acted on: a key, module (for credentials too) or org id.' }),
    requestId: t.exposeString('requestId', { nullable: true, description: 'The id of the request that made it (in the request log line too).' }),
    clientAddress: t.exposeString('clientAddress', { nullable: true, description: 'The client address of that request.' }),
  }),
});

const AuditLogFilter = builder.inputType('AuditLogFilter', {
  description: 'Which records to list; every given condition must hold.',
  fields: (t) => ({
    actions: t.field({ type: [AuditActionEnum], description: 'Only these actions.' }),
    since: t.field({ type: 'DateTime', description: 'Only records at or after this.' }),
    until: t.field({ type: 'DateTime', description: 'Only records before this.' }),
    actorKeyId: t.id({ description: 'Only what this key did.' }),
  }),
});

type PageArgs = { first?: number | null; after?: string | null; last?: number | null; before?: string | null; filter?: AuditFilter | null };

const pageOf = async (repo: AuditRepo, args: PageArgs) => {
  if (args.last != null || args.before != null) throw badInput('auditLog pages forward (newest first) only: use first and after');
  const filter = args.filter ? { ...args.filter, actorKeyId: args.filter.actorKeyId == null ? null : String(args.filter.actorKeyId) } : null;
  const page: AuditPage = await repo.page({ first: args.first, after: args.after, filter });
  const edges = page.rows.map((node) => ({ node, cursor: repo.cursorOf(node) }));
  return {
    edges,
    pageInfo: {
      hasNextPage: page.hasNextPage,
      hasPreviousPage: args.after != null,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
};

builder.queryFields((t) => ({
  auditLog: t.connection(
    {
      type: AuditRecordRef,
      description: `The key's org's audit log, newest first, ${MAX_AUDIT_PAGE} a page at most. Needs audit:read.`,
      authScopes: { 'audit:read': true },
      args: { filter: t.arg({ type: AuditLogFilter, description: 'Which records.' }) },
      resolve: (_root, args, ctx) => pageOf(ctx.repos.audit, args),
    },
    { name: 'AuditRecordConnection', description: 'A page of audit records, newest first.' },
    { name: 'AuditRecordEdge', description: 'An audit record and its cursor.' },
  ),
  orgAuditLog: t.connection(
    {
      type: AuditRecordRef,
      description: "An org's audit log, as auditLog (the operator org's own: orgId \"default\"); NOT_FOUND for an unknown org. Admin only.",
      authScopes: { admin: true },
      args: {
        orgId: t.arg.id({ required: true, description: 'The org.' }),
        filter: t.arg({ type: AuditLogFilter, description: 'Which records.' }),
      },
      resolve: async (_root, args, ctx) => pageOf(await systemOf(ctx).audit.of(String(args.orgId)), args),
    },
    { name: 'OrgAuditRecordConnection', description: "A page of an org's audit records, newest first." },
    { name: 'OrgAuditRecordEdge', description: 'An audit record and its cursor.' },
  ),
}));
