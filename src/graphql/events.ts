import type { ModuleEvent } from '../repos/module-events.ts';
import { builder } from './builder.ts';
import { systemOf } from './context.ts';
import { Module } from './modules.ts';

builder.subscriptionType({
  description:
    "Live events, served as server-sent events (POST /graphql with Accept: text/event-stream and the same bearer key); every field is scoped to the key's org unless it says admin.",
});

const ModuleEventKind = builder.enumType('ModuleEventKind', {
  description: 'What happened to a module.',
  values: {
    INSTALLED: { value: 'installed', description: 'It was installed.' },
    CHANGED: { value: 'changed', description: 'It changed: enabled or disabled, updated, its credential set or deleted, its usage recorded.' },
    HEALTH_REPORTED: { value: 'health', description: 'Its health was reported.' },
    UNINSTALLED: { value: 'uninstalled', description: 'It was uninstalled.' },
    RESYNC: { value: 'resync', description: 'Events may have been missed (the gateway lost its feed, or the client fell behind): read the modules again.' },
  } as const,
});

const ModuleEventRef = builder.objectRef<ModuleEvent>('ModuleEvent').implement({
  description: "A change to one of an org's modules, as the gateway heard it.",
  fields: (t) => ({
    kind: t.field({ type: ModuleEventKind, description: 'What happened.', resolve: (e) => e.kind }),
    orgId: t.exposeID('orgId', { description: 'The org of the module.' }),
    moduleId: t.exposeID('moduleId', { nullable: true, description: 'The module id; null for RESYNC.' }),
    module: t.field({
      type: Module,
      nullable: true,
      description: 'The module as it is now; null once uninstalled, and for RESYNC.',
      resolve: (e) => e.module,
    }),
    at: t.field({ type: 'DateTime', description: 'When the gateway heard of it.', resolve: (e) => e.at }),
  }),
});

builder.subscriptionField('moduleEvents', (t) =>
  t.field({
    type: ModuleEventRef,
    authScopes: { 'modules:read': true },
    description:
      "The org's module events as they happen, on every replica: installed, changed, health reported, uninstalled. Ends when the key is revoked or expires, or the org is suspended. At most TENANTGATE_ORG_MAX_SUBSCRIPTIONS open per org (RATE_LIMITED past it).",
    subscribe: (_root, _args, ctx) => ctx.repos.moduleEvents({ keyId: ctx.keyId, expiresAt: ctx.keyExpiresAt }),
    resolve: (event) => event,
  }),
);

builder.subscriptionField('moduleHealthEvents', (t) =>
  t.field({
    type: ModuleEventRef,
    authScopes: { admin: true },
    description: "Every org's module health reports as they happen (each event names its org). Admin only.",
    subscribe: (_root, _args, ctx) => systemOf(ctx).modules.healthEvents({ orgId: ctx.orgId, keyId: ctx.keyId, expiresAt: ctx.keyExpiresAt }),
    resolve: (event) => event,
  }),
);
