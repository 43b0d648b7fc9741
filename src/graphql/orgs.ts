import { SCOPES } from '../auth/scopes.ts';
import { notFound } from '../errors.ts';
import type { OrgRow } from '../store/types.ts';
import { builder } from './builder.ts';
import { systemOf } from './context.ts';
import { ApiKey } from './keys.ts';

const OrgStatus = builder.enumType('OrgStatus', {
  description: "An org's lifecycle state.",
  values: {
    ACTIVE: { value: 'active', description: 'Its keys work.' },
    SUSPENDED: { value: 'suspended', description: 'Every key of it answers ORG_SUSPENDED and nothing of it changes, until resumeOrg.' },
  } as const,
});

export const Org = builder.objectRef<OrgRow>('Org').implement({
  description: 'An organisation: the tenant that owns modules, credentials and API keys.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Stable id, unique across the gateway.' }),
    name: t.exposeString('name', { description: 'Display name.' }),
    createdAt: t.field({ type: 'DateTime', description: 'When the org was created.', resolve: (o) => o.createdAt }),
    status: t.field({ type: OrgStatus, description: 'Active or suspended.', resolve: (o) => o.status }),
    suspendedAt: t.field({ type: 'DateTime', nullable: true, description: 'When it was suspended; null while active.', resolve: (o) => o.suspendedAt }),
    suspendReason: t.exposeString('suspendReason', { nullable: true, description: "The operator's reason for the suspension; null while active." }),
  }),
});

const DeletedOrg = builder.objectRef<{ id: string; deletedAt: string }>('DeletedOrg').implement({
  description: 'An org that deleteOrg removed, with all of its data and its data key.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The id it had.' }),
    deletedAt: t.field({ type: 'DateTime', description: 'When it was deleted.', resolve: (d) => d.deletedAt }),
  }),
});

interface ViewerShape {
  orgId: string;
  keyId: string;
}

const Viewer = builder.objectRef<ViewerShape>('Viewer').implement({
  description: 'The caller: the org its key belongs to, and the key itself.',
  fields: (t) => ({
    org: t.field({
      type: Org,
      description: "The key's org; every other field is scoped to it.",
      resolve: async (_v, _args, ctx) => {
        const org = await ctx.repos.org();
        if (!org) throw notFound('Org', ctx.orgId);
        return org;
      },
    }),
    apiKey: t.field({
      type: ApiKey,
      description: 'The key this request authenticated with.',
      resolve: async (v, _args, ctx) => {
        const key = await ctx.repos.apiKeys.get(v.keyId);
        if (!key) throw notFound('API key', v.keyId);
        return key;
      },
    }),
    scopes: t.stringList({
      description: `The scopes the key holds (${SCOPES.join(', ')}).`,
      resolve: (_v, _args, ctx) => SCOPES.filter((s) => ctx.scopes.has(s)),
    }),
  }),
});

builder.queryField('viewer', (t) =>
  t.field({
    type: Viewer,
    description: 'Who is calling: needs only a valid key.',
    resolve: (_root, _args, ctx) => ({ orgId: ctx.orgId, keyId: ctx.keyId }),
  }),
);

builder.queryField('orgs', (t) =>
  t.field({
    type: [Org],
    description: 'Every org on the gateway. Admin only.',
    authScopes: { admin: true },
    resolve: (_root, _args, ctx) => systemOf(ctx).orgs.list(),
  }),
);

const CreateOrgInput = builder.inputType('CreateOrgInput', {
  description: 'A new org.',
  fields: (t) => ({
    id: t.string({ required: true, description: 'Id: 1-64 of a-z, 0-9, ".", "_", "-", starting with a letter or digit.' }),
    name: t.string({ required: true, description: 'Display name.' }),
  }),
});

builder.mutationField('createOrg', (t) =>
  t.field({
    type: Org,
    description: 'Create an org; CONFLICT if the id is taken. Admin only.',
    authScopes: { admin: true },
    args: { input: t.arg({ type: CreateOrgInput, required: true }) },
    resolve: (_root, { input }, ctx) => systemOf(ctx).orgs.create(input, ctx.actor),
  }),
);

builder.mutationFields((t) => ({
  renameOrg: t.field({
    type: Org,
    description: "Change an org's display name; NOT_FOUND for an unknown org. Admin only.",
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true, description: 'The org.' }), name: t.arg.string({ required: true, description: 'The new display name.' }) },
    resolve: (_root, args, ctx) => systemOf(ctx).orgs.rename(String(args.id), args.name, ctx.actor),
  }),
  suspendOrg: t.field({
    type: Org,
    description:
      'Suspend an org: every key of it answers HTTP 403 ORG_SUSPENDED (cached answers included) and nothing of it changes, until resumeOrg. ' +
      'The operator org "default" cannot be suspended. Admin only.',
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true, description: 'The org.' }), reason: t.arg.string({ required: true, description: 'Why (1-500 characters), shown to the operator.' }) },
    resolve: (_root, args, ctx) => systemOf(ctx).orgs.suspend(String(args.id), args.reason, ctx.actor),
  }),
  resumeOrg: t.field({
    type: Org,
    description: 'Resume a suspended org: its keys work again, with everything as it was. Admin only.',
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true, description: 'The org.' }) },
    resolve: (_root, args, ctx) => systemOf(ctx).orgs.resume(String(args.id), ctx.actor),
  }),
  deleteOrg: t.field({
    type: DeletedOrg,
    description:
      'Delete an org and everything of it (keys, modules, credentials, metering, its audit log) and its data key, so copies of its ' +
      'credentials can never be opened again. `confirm` must repeat the id. The operator org "default" cannot be deleted. Admin only.',
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true, description: 'The org.' }), confirm: t.arg.id({ required: true, description: 'The same id, typed again.' }) },
    resolve: (_root, args, ctx) => systemOf(ctx).orgs.delete(String(args.id), String(args.confirm), ctx.actor),
  }),
}));
