import type { CredentialMeta } from '../store/types.ts';
import { builder } from './builder.ts';

const Credential = builder.objectRef<CredentialMeta>('Credential').implement({
  description: "A module's stored secret, described by its field names. Values are never listed.",
  fields: (t) => ({
    moduleId: t.exposeID('moduleId', { description: 'The module it belongs to.' }),
    fields: t.exposeStringList('fields', { description: 'Names of the secret fields, sorted.' }),
    createdAt: t.field({ type: 'DateTime', description: 'When it was first stored.', resolve: (c) => c.createdAt }),
    updatedAt: t.field({ type: 'DateTime', description: 'When it was last replaced.', resolve: (c) => c.updatedAt }),
  }),
});

builder.queryFields((t) => ({
  credentials: t.field({
    type: [Credential],
    description: "The org's credentials: module ids, field names and times, never values.",
    authScopes: { 'modules:read': true },
    resolve: (_root, _args, ctx) => ctx.repos.credentials.list(),
  }),
  hasCredential: t.boolean({
    description: 'Whether the org stores a credential for the module.',
    authScopes: { 'modules:read': true },
    args: { moduleId: t.arg.id({ required: true, description: 'The module id.' }) },
    resolve: (_root, { moduleId }, ctx) => ctx.repos.credentials.has(String(moduleId)),
  }),
  credentialSecret: t.field({
    type: 'JSONObject',
    nullable: true,
    description: "The module's secret values, or null if none is stored. Needs credentials:reveal.",
    authScopes: { 'credentials:reveal': true },
    args: { moduleId: t.arg.id({ required: true, description: 'The module id.' }) },
    resolve: (_root, { moduleId }, ctx) => ctx.repos.credentials.reveal(String(moduleId), ctx.actor),
  }),
}));

builder.mutationFields((t) => ({
  setCredential: t.field({
    type: Credential,
    description:
      'Store (or replace) the secret of a module of the org: a JSON object of string values, at most 64 fields of 16 KiB each. Encrypted at rest; write-only.',
    authScopes: { 'credentials:write': true },
    args: {
      moduleId: t.arg.id({ required: true, description: 'The module id.' }),
      secret: t.arg({ type: 'JSONObject', required: true, description: 'Field name to value.' }),
    },
    resolve: (_root, { moduleId, secret }, ctx) => ctx.repos.credentials.set(String(moduleId), secret, ctx.actor),
  }),
  deleteCredential: t.boolean({
    description: "Delete a module's credential; false if there was none.",
    authScopes: { 'credentials:write': true },
    args: { moduleId: t.arg.id({ required: true, description: 'The module id.' }) },
    resolve: (_root, { moduleId }, ctx) => ctx.repos.credentials.delete(String(moduleId), ctx.actor),
  }),
}));
