import { SCOPES } from '../auth/scopes.ts';
import { notFound } from '../errors.ts';
import type { OrgRow } from '../store/types.ts';
import { builder } from './builder.ts';
import { systemOf } from './context.ts';
import { ApiKey } from './keys.ts';

export const Org = builder.objectRef<OrgRow>('Org').implement({
  description: 'An organisation: the tenant that owns modules, credentials and API keys.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Stable id, unique across the gateway.' }),
    name: t.exposeString('name', { description: 'Display name.' }),
    createdAt: t.field({ type: 'DateTime', description: 'When the org was created.', resolve: (o) => o.createdAt }),
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
    resolve: (_root, { input }, ctx) => systemOf(ctx).orgs.create(input),
  }),
);
