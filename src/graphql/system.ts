import { builder } from './builder.ts';
import { systemOf } from './context.ts';
import { HealthStatus, Module } from './modules.ts';

// Cross-org operations for the platform itself. Every field here requires `admin`.

builder.queryField('unhealthyModules', (t) =>
  t.field({
    type: [Module],
    description: 'Degraded and unhealthy modules of every org, each with its orgId (at most 1000). Admin only.',
    authScopes: { admin: true },
    args: { first: t.arg.int({ description: 'At most this many (default and maximum 1000).' }) },
    resolve: (_root, args, ctx) => systemOf(ctx).modules.unhealthy(args.first ?? undefined),
  }),
);

builder.mutationFields((t) => ({
  reportModuleHealth: t.field({
    type: Module,
    description: "Record a module's health in any org. Admin only.",
    authScopes: { admin: true },
    args: {
      orgId: t.arg.id({ required: true, description: 'The org.' }),
      moduleId: t.arg.id({ required: true, description: 'The module id.' }),
      status: t.arg({ type: HealthStatus, required: true, description: 'The status.' }),
      message: t.arg.string({ description: 'Details, at most 2000 characters.' }),
    },
    resolve: (_root, args, ctx) =>
      systemOf(ctx).modules.reportHealth(String(args.orgId), String(args.moduleId), args.status, args.message),
  }),
  recordModuleUsage: t.field({
    type: Module,
    description: "Add to a module's usage count and set its last use, atomically, in any org. Admin only.",
    authScopes: { admin: true },
    args: {
      orgId: t.arg.id({ required: true, description: 'The org.' }),
      moduleId: t.arg.id({ required: true, description: 'The module id.' }),
      count: t.arg.int({ description: 'How many uses (default 1).' }),
    },
    resolve: (_root, args, ctx) =>
      systemOf(ctx).modules.recordUsage(String(args.orgId), String(args.moduleId), args.count ?? 1),
  }),
}));
