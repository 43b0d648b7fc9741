import { forbidden } from '../errors.ts';
import type { ApiKeyRow } from '../store/types.ts';
import { builder } from './builder.ts';
import type { Context } from './context.ts';
import { SCOPES } from '../auth/scopes.ts';

export const ApiKey = builder.objectRef<ApiKeyRow>('ApiKey');

ApiKey.implement({
  description: 'An API key. The secret itself is shown once, by createApiKey, and never stored.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Stable id, used to revoke the key.' }),
    name: t.exposeString('name', { description: 'What the key is for.' }),
    prefix: t.exposeString('prefix', { description: 'The first characters of the secret, to tell keys apart.' }),
    scopes: t.exposeStringList('scopes', { description: `What the key may do: some of ${SCOPES.join(', ')}.` }),
    createdAt: t.field({ type: 'DateTime', description: 'When the key was created.', resolve: (k) => k.createdAt }),
    expiresAt: t.field({ type: 'DateTime', nullable: true, description: 'When the key stops working, if ever.', resolve: (k) => k.expiresAt }),
    revokedAt: t.field({ type: 'DateTime', nullable: true, description: 'When the key was revoked, if it was.', resolve: (k) => k.revokedAt }),
    lastUsedAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When the key was last used (recorded in batches, so up to a few seconds behind).',
      resolve: (k) => k.lastUsedAt,
    }),
    descendants: t.field({
      type: [ApiKey],
      description:
        'The keys this key created, directly or through keys it created, in its own org, revoked ones included, oldest first: ' +
        'what revokeApiKey(cascade: true) revokes with it. Needs keys:manage.',
      authScopes: { 'keys:manage': true },
      resolve: (k, _args, ctx) => {
        if (k.orgId === ctx.orgId) return ctx.repos.apiKeys.descendants(k.id);
        // Only admin fields hand out another org's keys; this guards that, should it ever change.
        if (!ctx.scopes.has('admin')) throw forbidden('only an admin key can manage another org\'s keys');
        return ctx.system.apiKeys.descendants(k.orgId, k.id);
      },
    }),
  }),
});

const CreateApiKeyPayload = builder.objectRef<{ apiKey: ApiKeyRow; secret: string }>('CreateApiKeyPayload').implement({
  description: 'A new key and its secret.',
  fields: (t) => ({
    apiKey: t.field({ type: ApiKey, description: 'The key.', resolve: (p) => p.apiKey }),
    secret: t.exposeString('secret', { description: 'The secret, shown this once: store it now.' }),
  }),
});

/** Key fields take an optional org id; naming an org other than the caller's needs `admin`. */
function targetOrg(ctx: Context, orgId: string | null | undefined): string | undefined {
  if (orgId == null || orgId === ctx.orgId) return undefined;
  if (!ctx.scopes.has('admin')) throw forbidden('only an admin key can manage another org\'s keys');
  return orgId;
}

builder.queryField('apiKeys', (t) =>
  t.field({
    type: [ApiKey],
    description: "The org's API keys, revoked ones included. An admin may name another org.",
    authScopes: { 'keys:manage': true },
    args: { orgId: t.arg.id({ description: 'Another org (admin only).' }) },
    resolve: async (_root, args, ctx) => {
      const other = targetOrg(ctx, args.orgId == null ? null : String(args.orgId));
      if (other === undefined) return ctx.repos.apiKeys.list();
      return ctx.system.apiKeys.list(other);
    },
  }),
);

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  description: 'A new API key.',
  fields: (t) => ({
    name: t.string({ required: true, description: 'What the key is for.' }),
    scopes: t.stringList({ required: true, description: `Some of ${SCOPES.join(', ')}; each must be held by the calling key.` }),
    expiresAt: t.field({ type: 'DateTime', description: 'When it stops working; never if omitted.' }),
    orgId: t.id({ description: 'Issue the key in another org (admin only), e.g. the first key of a new org.' }),
  }),
});

builder.mutationField('createApiKey', (t) =>
  t.field({
    type: CreateApiKeyPayload,
    description: 'Create a key; the secret is in the answer and nowhere else, ever.',
    authScopes: { 'keys:manage': true },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) => {
      const grantor = { keyId: ctx.keyId, scopes: ctx.scopes, expiresAt: ctx.keyExpiresAt };
      const key = { name: input.name, scopes: input.scopes, expiresAt: input.expiresAt };
      const other = targetOrg(ctx, input.orgId == null ? null : String(input.orgId));
      return other === undefined ? ctx.repos.apiKeys.create(key, grantor) : ctx.system.apiKeys.create(other, key, grantor);
    },
  }),
);

builder.mutationField('revokeApiKey', (t) =>
  t.field({
    type: ApiKey,
    description:
      'Revoke a key of the org; it stops working on the next request. With cascade, also every key it created, directly or ' +
      'through keys it created (select descendants to see them), all in one transaction. NOT_FOUND for an unknown id; ' +
      'FORBIDDEN, and nothing revoked, if any of those keys holds a scope the calling key lacks.',
    authScopes: { 'keys:manage': true },
    args: {
      id: t.arg.id({ required: true, description: 'The key id.' }),
      cascade: t.arg.boolean({
        defaultValue: false,
        description:
          'Also revoke the keys this key created, and theirs, in its org (after a leak: whatever the leaked key minted). ' +
          'May be repeated on a key already revoked.',
      }),
      orgId: t.arg.id({ description: 'Another org (admin only).' }),
    },
    resolve: async (_root, args, ctx) => {
      const other = targetOrg(ctx, args.orgId == null ? null : String(args.orgId));
      const revoker = { keyId: ctx.keyId, scopes: ctx.scopes };
      const options = { cascade: args.cascade === true };
      const revocation =
        other === undefined
          ? await ctx.repos.apiKeys.revoke(String(args.id), revoker, options)
          : await ctx.system.apiKeys.revoke(other, String(args.id), revoker, options);
      return revocation.apiKey;
    },
  }),
);
