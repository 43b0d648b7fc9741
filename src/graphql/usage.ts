import { MAX_EVENT_PAGE, MAX_IDEMPOTENCY_KEY, MAX_RUN_UNITS, type EventPage, type UsageRepo, type UsageReport } from '../repos/usage.ts';
import type { OrgQuotaRow, RunUnitEvent, UsageBucket } from '../store/types.ts';
import { badInput } from '../errors.ts';
import { builder } from './builder.ts';
import { systemOf, type Context } from './context.ts';

// Run-unit metering and quotas (README, Metering, quotas and limits). Totals are Float, like
// Module.usageCount: GraphQL's Int is 32-bit, a month of an org's units is not; exact to 2^53.

const RunUnitEventRef = builder.objectRef<RunUnitEvent>('RunUnitEvent').implement({
  description: 'One run-unit report, as recorded.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The gateway\'s id for the record.' }),
    idempotencyKey: t.exposeString('idempotencyKey', { description: 'The reporter\'s id for the report; a repeat of it is recorded once.' }),
    units: t.exposeInt('units', { description: 'Run units.' }),
    moduleId: t.exposeID('moduleId', { nullable: true, description: 'The module the work is attributed to, if any.' }),
    occurredAt: t.field({ type: 'DateTime', description: 'When the work happened; its UTC month is the one it counts in.', resolve: (e) => e.occurredAt }),
    recordedAt: t.field({ type: 'DateTime', description: 'When the gateway recorded it.', resolve: (e) => e.recordedAt }),
    keyId: t.exposeID('keyId', { nullable: true, description: 'The API key that reported it.' }),
  }),
});

const RecordRunUnitsPayload = builder.objectRef<{ event: RunUnitEvent; repeat: boolean }>('RecordRunUnitsPayload').implement({
  description: 'What recordRunUnits recorded, or had recorded for the same idempotency key before.',
  fields: (t) => ({
    event: t.field({ type: RunUnitEventRef, description: 'The record: on a repeat, the first one, whatever the repeat carried.', resolve: (p) => p.event }),
    repeat: t.exposeBoolean('repeat', { description: 'True when this idempotency key was recorded before and nothing was added now.' }),
  }),
});

const Usage = builder.objectRef<UsageReport>('Usage').implement({
  description: "An org's use in one UTC calendar month, against its quota.",
  fields: (t) => ({
    periodStart: t.field({ type: 'DateTime', description: 'The first instant of the month (UTC).', resolve: (u) => u.periodStart }),
    periodEnd: t.field({ type: 'DateTime', description: 'The first instant of the next month: when the quota resets.', resolve: (u) => u.periodEnd }),
    runUnits: t.exposeFloat('runUnits', { description: 'Run units recorded for work that happened in the month (a whole number).' }),
    quota: t.exposeFloat('quota', { nullable: true, description: 'The run-unit quota for the month; null when unlimited.' }),
    remaining: t.exposeFloat('remaining', { nullable: true, description: 'Run units left this month; null when unlimited.' }),
    warnAt: t.exposeFloat('warnAt', { description: 'The share of the quota (0-1) from which nearQuota is true (TENANTGATE_QUOTA_WARN_PERCENT).' }),
    nearQuota: t.exposeBoolean('nearQuota', { description: 'Whether the month has used at least warnAt of the quota: time to warn.' }),
    requests: t.exposeFloat('requests', { description: 'Requests served in the month (counted per process and written each second).' }),
    requestsPerMinute: t.exposeInt('requestsPerMinute', { nullable: true, description: 'The request rate limit; null when unlimited.' }),
    burst: t.exposeInt('burst', { nullable: true, description: 'Requests allowed at once above the rate; null when unlimited.' }),
  }),
});

const UsageBucketRef = builder.objectRef<UsageBucket>('UsageBucket').implement({
  description: 'Use in one hour or day (UTC).',
  fields: (t) => ({
    start: t.field({ type: 'DateTime', description: 'The bucket\'s first instant.', resolve: (b) => b.start }),
    runUnits: t.exposeFloat('runUnits', { description: 'Run units of work that happened in it.' }),
    requests: t.exposeFloat('requests', { description: 'Requests served in it.' }),
  }),
});

const UsageGranularity = builder.enumType('UsageGranularity', {
  description: 'The bucket size of a usage series.',
  values: {
    HOUR: { value: 'hour', description: 'Hours (UTC); at most 744 (31 days) a series.' },
    DAY: { value: 'day', description: 'Days (UTC); at most 400 a series.' },
  } as const,
});

const OrgQuota = builder.objectRef<Omit<OrgQuotaRow, 'updatedAt'> & { updatedAt: string | null }>('OrgQuota').implement({
  description: "An org's own quotas; null fields take the gateway's defaults (TENANTGATE_DEFAULT_*), unlimited when none.",
  fields: (t) => ({
    orgId: t.exposeID('orgId', { description: 'The org.' }),
    runUnitsPerMonth: t.exposeFloat('runUnitsPerMonth', { nullable: true, description: 'Run units per UTC calendar month.' }),
    requestsPerMinute: t.exposeInt('requestsPerMinute', { nullable: true, description: 'Requests per minute, all keys and replicas together.' }),
    burst: t.exposeInt('burst', { nullable: true, description: 'Requests at once above the rate.' }),
    updatedAt: t.field({ type: 'DateTime', nullable: true, description: 'When it was last set; null when never (the defaults apply).', resolve: (q) => q.updatedAt }),
  }),
});

const OrgQuotaInput = builder.inputType('OrgQuotaInput', {
  description: "An org's quotas; an omitted or null field takes the default (unlimited when none is configured).",
  fields: (t) => ({
    runUnitsPerMonth: t.float({ description: 'Run units per UTC calendar month (a whole number).' }),
    requestsPerMinute: t.int({ description: 'Requests per minute, all keys and replicas together.' }),
    burst: t.int({ description: 'Requests at once above the rate (default: requestsPerMinute / 6).' }),
  }),
});

const OrgUsage = builder
  .objectRef<{ orgId: string; runUnits: number; requests: number; periodStart: string; periodEnd: string }>('OrgUsage')
  .implement({
    description: "One org's use in a month, for the admin's ranking.",
    fields: (t) => ({
      orgId: t.exposeID('orgId', { description: 'The org.' }),
      runUnits: t.exposeFloat('runUnits', { description: 'Run units in the month.' }),
      requests: t.exposeFloat('requests', { description: 'Requests served in the month.' }),
      periodStart: t.field({ type: 'DateTime', description: 'The month\'s first instant.', resolve: (u) => u.periodStart }),
      periodEnd: t.field({ type: 'DateTime', description: 'The next month\'s first instant.', resolve: (u) => u.periodEnd }),
    }),
  });

const RecordRunUnitsInput = builder.inputType('RecordRunUnitsInput', {
  description: 'A runner\'s report of work done for the key\'s org.',
  fields: (t) => ({
    units: t.int({ required: true, description: `Run units: a whole number from 1 to ${MAX_RUN_UNITS}.` }),
    idempotencyKey: t.string({
      required: true,
      description: `The reporter's id for this report (1-${MAX_IDEMPOTENCY_KEY} printable ASCII characters): send the same one when retrying; it is recorded once.`,
    }),
    moduleId: t.id({ description: 'A module of the org the work is attributed to.' }),
    occurredAt: t.field({ type: 'DateTime', description: 'When the work happened: up to 35 days ago, not in the future (default: now).' }),
  }),
});

const PERIOD = 'A UTC calendar month as YYYY-MM; the current one when omitted.';

/** The connection of run-unit events, shared by the tenant's and the admin's fields. */
const eventConnection = {
  name: 'RunUnitEventConnection',
  description: 'A page of run-unit events, ordered by occurredAt then id.',
} as const;

const connectionOf = (repo: UsageRepo, page: EventPage, after: string | null | undefined) => {
  const edges = page.events.map((node) => ({ node, cursor: repo.cursorOf(node) }));
  return {
    edges,
    pageInfo: {
      hasNextPage: page.hasNextPage,
      hasPreviousPage: after != null,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
};

const pageOf = async (repo: UsageRepo, args: { first?: number | null; after?: string | null; last?: number | null; before?: string | null; since?: Date | null }) => {
  if (args.last != null || args.before != null) throw badInput('runUnitEvents pages forward only: use first and after');
  return connectionOf(repo, await repo.events(args), args.after);
};

const tenantUsage = (ctx: Context) => ctx.repos.usage;

builder.queryFields((t) => ({
  usage: t.field({
    type: Usage,
    description: "The key's org's use in a month (default: this one) against its quota. Needs usage:read.",
    authScopes: { 'usage:read': true },
    args: { period: t.arg.string({ description: PERIOD }) },
    resolve: (_root, args, ctx) => tenantUsage(ctx).usage(args.period),
  }),
  usageSeries: t.field({
    type: [UsageBucketRef],
    description: "The key's org's use per hour or day from `from` to `to` (UTC buckets, empty ones as zeros). Needs usage:read.",
    authScopes: { 'usage:read': true },
    args: {
      from: t.arg({ type: 'DateTime', required: true, description: 'The first bucket holds this instant.' }),
      to: t.arg({ type: 'DateTime', required: true, description: 'The series ends here (exclusive, rounded up to a bucket).' }),
      granularity: t.arg({ type: UsageGranularity, required: true, description: 'Hours or days.' }),
    },
    resolve: (_root, args, ctx) => tenantUsage(ctx).series(args.from, args.to, args.granularity),
  }),
  runUnitEvents: t.connection(
    {
      type: RunUnitEventRef,
      description: `The key's org's run-unit events by occurredAt, ${MAX_EVENT_PAGE} a page at most (for billing exports). Needs usage:read.`,
      authScopes: { 'usage:read': true },
      args: { since: t.arg({ type: 'DateTime', description: 'Only events that happened at or after this.' }) },
      resolve: (_root, args, ctx) => pageOf(tenantUsage(ctx), args),
    },
    eventConnection,
    { name: 'RunUnitEventEdge', description: 'A run-unit event and its cursor.' },
  ),
  orgUsage: t.field({
    type: Usage,
    description: "An org's use in a month (default: this one) against its quota; NOT_FOUND for an unknown org. Admin only.",
    authScopes: { admin: true },
    args: { orgId: t.arg.id({ required: true, description: 'The org.' }), period: t.arg.string({ description: PERIOD }) },
    resolve: async (_root, args, ctx) => (await systemOf(ctx).usage.of(String(args.orgId))).usage(args.period),
  }),
  orgUsageSeries: t.field({
    type: [UsageBucketRef],
    description: "An org's use per hour or day, as usageSeries. Admin only.",
    authScopes: { admin: true },
    args: {
      orgId: t.arg.id({ required: true, description: 'The org.' }),
      from: t.arg({ type: 'DateTime', required: true, description: 'The first bucket holds this instant.' }),
      to: t.arg({ type: 'DateTime', required: true, description: 'The series ends here (exclusive).' }),
      granularity: t.arg({ type: UsageGranularity, required: true, description: 'Hours or days.' }),
    },
    resolve: async (_root, args, ctx) => (await systemOf(ctx).usage.of(String(args.orgId))).series(args.from, args.to, args.granularity),
  }),
  orgRunUnitEvents: t.connection(
    {
      type: RunUnitEventRef,
      description: "An org's run-unit events, as runUnitEvents. Admin only.",
      authScopes: { admin: true },
      args: {
        orgId: t.arg.id({ required: true, description: 'The org.' }),
        since: t.arg({ type: 'DateTime', description: 'Only events that happened at or after this.' }),
      },
      resolve: async (_root, args, ctx) => pageOf(await systemOf(ctx).usage.of(String(args.orgId)), args),
    },
    { name: 'OrgRunUnitEventConnection', description: "A page of an org's run-unit events, ordered by occurredAt then id." },
    { name: 'OrgRunUnitEventEdge', description: 'A run-unit event and its cursor.' },
  ),
  topOrgsByUsage: t.field({
    type: [OrgUsage],
    description: 'The orgs that used the most run units in a month (default: this one), most first; orgs with none are left out. Admin only.',
    authScopes: { admin: true },
    args: {
      period: t.arg.string({ description: PERIOD }),
      first: t.arg.int({ description: 'At most this many (default 10, at most 1000).' }),
    },
    resolve: (_root, args, ctx) => systemOf(ctx).usage.top(args.period, args.first ?? undefined),
  }),
  orgQuota: t.field({
    type: OrgQuota,
    description: "An org's own quotas (all null when none were set: the defaults apply); NOT_FOUND for an unknown org. Admin only.",
    authScopes: { admin: true },
    args: { orgId: t.arg.id({ required: true, description: 'The org.' }) },
    resolve: async (_root, args, ctx) => {
      const orgId = String(args.orgId);
      return (await systemOf(ctx).usage.quota(orgId)) ?? { orgId, runUnitsPerMonth: null, requestsPerMinute: null, burst: null, updatedAt: null };
    },
  }),
}));

builder.mutationFields((t) => ({
  recordRunUnits: t.field({
    type: RecordRunUnitsPayload,
    description:
      "Record run units for the key's org, once per idempotency key: a repeat answers with the first record and repeat: true. " +
      'QUOTA_EXCEEDED, and nothing recorded, when it would take the month past the quota; NOT_FOUND for a moduleId the org does not have. Needs usage:write.',
    authScopes: { 'usage:write': true },
    args: { input: t.arg({ type: RecordRunUnitsInput, required: true }) },
    resolve: (_root, { input }, ctx) => ctx.repos.usage.record(input, ctx.keyId),
  }),
  setOrgQuota: t.field({
    type: OrgQuota,
    description: "Set an org's quotas (null fields: the defaults); takes effect on every replica within seconds. Admin only.",
    authScopes: { admin: true },
    args: {
      orgId: t.arg.id({ required: true, description: 'The org.' }),
      input: t.arg({ type: OrgQuotaInput, required: true }),
    },
    resolve: (_root, args, ctx) => systemOf(ctx).usage.setQuota(String(args.orgId), args.input, ctx.actor),
  }),
}));
