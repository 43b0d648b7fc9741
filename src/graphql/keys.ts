import { SCOPES } from '../auth/scopes.ts';
import type { ApiKeyRow } from '../store/types.ts';
import { builder } from './builder.ts';
import { systemOf, type Context } from './context.ts';

export const ApiKey = builder.objectRef<ApiKeyRow>('ApiKey');

ApiKey.implement({
  description: 'An API key. The secret itself is shown once, by createApiKey (or createOrgApiKey), and never stored.',
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
        'what revokeApiKey(cascade: true) or revokeOrgApiKey(cascade: true) revokes with it. Needs keys:manage.',
      authScopes: { 'keys:manage': true },
      // Another org's key reaches here only from the admin fields below (orgApiKeys and the like).
      resolve: (k, _args, ctx) =>
        k.orgId === ctx.orgId ? ctx.repos.apiKeys.descendants(k.id) : systemOf(ctx).apiKeys.descendants(k.orgId, k.id),
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

/** Who is issuing or revoking: the calling key, whose scopes and expiry bound what it may do. */
function grantorOf(ctx: Context) {
  return { keyId: ctx.keyId, scopes: ctx.scopes, expiresAt: ctx.keyExpiresAt };
}

const CASCADE_DESCRIPTION =
  'Also revoke the keys this key created, and theirs, in its org (after a leak: whatever the leaked key minted). ' +
  'May be repeated on a key already revoked.';

builder.queryField('apiKeys', (t) =>
  t.field({
    type: [ApiKey],
    description: "The org's API keys, revoked ones included.",
    authScopes: { 'keys:manage': true },
    resolve: (_root, _args, ctx) => ctx.repos.apiKeys.list(),
  }),
);

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  description: 'A new API key.',
  fields: (t) => ({
    name: t.string({ required: true, description: 'What the key is for.' }),
    scopes: t.stringList({ required: true, description: `Some of ${SCOPES.join(', ')}; each must be held by the calling key.` }),
    expiresAt: t.field({ type: 'DateTime', description: 'When it stops working; never if omitted.' }),
  }),
});

builder.mutationField('createApiKey', (t) =>
  t.field({
    type: CreateApiKeyPayload,
    description: "Create a key in the org; the secret is in the answer and nowhere else, ever.",
    authScopes: { 'keys:manage': true },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) => ctx.repos.apiKeys.create(input, grantorOf(ctx), ctx.actor),
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
      cascade: t.arg.boolean({ defaultValue: false, description: CASCADE_DESCRIPTION }),
    },
    resolve: async (_root, args, ctx) =>
      (await ctx.repos.apiKeys.revoke(String(args.id), grantorOf(ctx), ctx.actor, { cascade: args.cascade === true })).apiKey,
  }),
);

// The operator's key management in any org. The same rules bind the admin key as any other: it
// grants only scopes it holds, its keys do not outlive it, and `admin` stays in org `default`.

builder.queryField('orgApiKeys', (t) =>
  t.field({
    type: [ApiKey],
    description: "An org's API keys, revoked ones included; NOT_FOUND for an unknown org. Admin only.",
    authScopes: { admin: true },
    args: { orgId: t.arg.id({ required: true, description: 'The org.' }) },
    resolve: (_root, args, ctx) => systemOf(ctx).apiKeys.list(String(args.orgId)),
  }),
);

builder.mutationFields((t) => ({
  createOrgApiKey: t.field({
    type: CreateApiKeyPayload,
    description:
      'Create a key in any org, e.g. the first key of a new org; the secret is in the answer and nowhere else, ever. ' +
      'NOT_FOUND for an unknown org. Admin only.',
    authScopes: { admin: true },
    args: {
      orgId: t.arg.id({ required: true, description: 'The org.' }),
      input: t.arg({ type: CreateApiKeyInput, required: true, description: 'The key.' }),
    },
    resolve: (_root, args, ctx) => systemOf(ctx).apiKeys.create(String(args.orgId), args.input, grantorOf(ctx), ctx.actor),
  }),
  revokeOrgApiKey: t.field({
    type: ApiKey,
    description:
      'Revoke a key of any org, as revokeApiKey does in the caller\'s own. NOT_FOUND for an unknown org, or a key id ' +
      'not of that org. Admin only.',
    authScopes: { admin: true },
    args: {
      orgId: t.arg.id({ required: true, description: 'The org.' }),
      id: t.arg.id({ required: true, description: 'The key id.' }),
      cascade: t.arg.boolean({ defaultValue: false, description: CASCADE_DESCRIPTION }),
    },
    resolve: async (_root, args, ctx) =>
      (await systemOf(ctx).apiKeys.revoke(String(args.orgId), String(args.id), grantorOf(ctx), ctx.actor, { cascade: args.cascade === true })).apiKey,
  }),
}));
