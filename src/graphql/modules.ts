import { Kind, type FieldNode, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';
import { badInput } from '../errors.ts';
import { MODULE_PAGE_FIELDS } from '../repos/modules.ts';
import type { ModuleField, ModuleRecord } from '../store/types.ts';
import { builder } from './builder.ts';

export const HealthStatus = builder.enumType('HealthStatus', {
  description: "A module's last reported health.",
  values: {
    UNKNOWN: { value: 'unknown', description: 'No report yet.' },
    HEALTHY: { value: 'healthy', description: 'Working.' },
    DEGRADED: { value: 'degraded', description: 'Working, with problems.' },
    UNHEALTHY: { value: 'unhealthy', description: 'Not working.' },
  } as const,
});

const ModuleHealth = builder.objectRef<ModuleRecord>('ModuleHealth').implement({
  description: "A module's health as last reported by the platform.",
  fields: (t) => ({
    status: t.field({ type: HealthStatus, description: 'The status.', resolve: (m) => m.healthStatus as never }),
    message: t.exposeString('healthMessage', { nullable: true, description: 'What the report said, if anything.' }),
    checkedAt: t.field({ type: 'DateTime', nullable: true, description: 'When it was reported.', resolve: (m) => m.lastHealthCheck }),
  }),
});

export const Module = builder.objectRef<ModuleRecord>('Module').implement({
  description: 'An integration installed in an org.',
  fields: (t) => ({
    id: t.exposeID('moduleId', { description: 'The module id, unique within the org.' }),
    orgId: t.exposeID('orgId', { description: 'The org that installed it.' }),
    name: t.exposeString('name', { description: 'Display name.' }),
    version: t.exposeString('version', { description: 'Semantic version.' }),
    description: t.exposeString('description', { nullable: true, description: 'What it does.' }),
    config: t.field({
      type: 'JSONObject',
      description: 'Non-secret configuration (secrets go in the credential).',
      resolve: (m) => JSON.parse(m.config) as Record<string, unknown>,
    }),
    enabled: t.exposeBoolean('enabled', { description: 'Whether the platform may use it.' }),
    health: t.field({ type: ModuleHealth, description: 'Last reported health.', resolve: (m) => m }),
    // Float, not Int: GraphQL's Int is 32-bit and a busy module passes 2^31 uses; exact to 2^53.
    usageCount: t.exposeFloat('usageCount', { description: 'How many uses have been recorded (a whole number).' }),
    lastUsedAt: t.field({ type: 'DateTime', nullable: true, description: 'When it was last used.', resolve: (m) => m.lastUsedAt }),
    installedAt: t.field({ type: 'DateTime', description: 'When it was installed.', resolve: (m) => m.installedAt }),
    updatedAt: t.field({ type: 'DateTime', description: 'When it last changed.', resolve: (m) => m.updatedAt }),
    hasCredential: t.exposeBoolean('hasCredential', { description: 'Whether a credential is stored for it.' }),
  }),
});

/**
 * The record fields each Module field reads, so that a list page reads only the columns its query
 * selects. A field named like a record field reads that field (derived from the store's one list,
 * src/store/module-fields.ts, through the repository); the others are written out. A field
 * missing here makes the page read every column: safe, only slower.
 */
export const MODULE_FIELD_NEEDS: Readonly<Record<string, readonly ModuleField[]>> = {
  ...Object.fromEntries(MODULE_PAGE_FIELDS.map((field) => [field, [field]])),
  __typename: [],
  id: [],
  orgId: [],
  health: ['healthStatus', 'healthMessage', 'lastHealthCheck'],
};

/** Every selection of a selection set, through inline fragments and fragment spreads. */
function* fieldsOf(set: SelectionSetNode | undefined, info: GraphQLResolveInfo): Generator<FieldNode> {
  for (const selection of set?.selections ?? []) {
    if (selection.kind === Kind.FIELD) yield selection;
    else if (selection.kind === Kind.INLINE_FRAGMENT) yield* fieldsOf(selection.selectionSet, info);
    else yield* fieldsOf(info.fragments[selection.name.value]?.selectionSet, info);
  }
}

/** What `edges { node { ... } }` of this connection selects, or undefined to read everything. */
function selectedModuleFields(info: GraphQLResolveInfo): Set<ModuleField> | undefined {
  const wanted = new Set<ModuleField>();
  for (const connectionField of info.fieldNodes) {
    for (const edges of fieldsOf(connectionField.selectionSet, info)) {
      if (edges.name.value !== 'edges') continue;
      for (const node of fieldsOf(edges.selectionSet, info)) {
        if (node.name.value !== 'node') continue;
        for (const field of fieldsOf(node.selectionSet, info)) {
          const needs = MODULE_FIELD_NEEDS[field.name.value];
          if (!needs) return undefined;
          for (const need of needs) wanted.add(need);
        }
      }
    }
  }
  return wanted;
}

/** Whether the connection's selection asks for totalCount (then it is read with the page). */
function selectsTotalCount(info: GraphQLResolveInfo): boolean {
  for (const connectionField of info.fieldNodes) {
    for (const field of fieldsOf(connectionField.selectionSet, info)) if (field.name.value === 'totalCount') return true;
  }
  return false;
}

export const MAX_PAGE = 100;

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!id.startsWith('m:')) throw badInput('after is not a cursor this API returned', 'after');
  return id.slice(2);
}

builder.queryField('modules', (t) =>
  t.connection(
    {
      type: Module,
      description: `The org's modules ordered by id, ${MAX_PAGE} a page at most.`,
      authScopes: { 'modules:read': true },
      args: { enabled: t.arg.boolean({ description: 'Only enabled (true) or disabled (false) modules.' }) },
      resolve: async (_root, args, ctx, info) => {
        if (args.last != null || args.before != null) throw badInput('modules pages forward only: use first and after');
        const first = args.first ?? 20;
        if (first < 0 || first > MAX_PAGE) throw badInput(`first must be from 0 to ${MAX_PAGE}`, 'first');
        const enabled = args.enabled ?? undefined;
        const page = await ctx.repos.modules.page({
          enabled,
          after: args.after ? decodeCursor(args.after) : '',
          first,
          fields: selectedModuleFields(info),
          withCount: selectsTotalCount(info),
        });
        const edges = page.rows.map((node) => ({ node, cursor: Buffer.from(`m:${node.moduleId}`).toString('base64url') }));
        return {
          edges,
          pageInfo: {
            hasNextPage: page.hasNextPage,
            hasPreviousPage: args.after != null,
            startCursor: edges[0]?.cursor ?? null,
            endCursor: edges.at(-1)?.cursor ?? null,
          },
          enabled,
          total: page.total,
        };
      },
    },
    {
      name: 'ModuleConnection',
      description: 'A page of modules.',
      fields: (c) => ({
        totalCount: c.int({
          description: 'How many modules match, on every page.',
          resolve: (conn, _args, ctx) => {
            const { enabled, total } = conn as unknown as { enabled?: boolean; total?: number };
            // Read with the page when the query selected it; counted on its own otherwise (an aliased or conditional selection).
            return total ?? ctx.repos.modules.count(enabled);
          },
        }),
      }),
    },
    { name: 'ModuleEdge', description: 'A module and its cursor.' },
  ),
);

builder.queryField('module', (t) =>
  t.field({
    type: Module,
    nullable: true,
    description: 'One module of the org, or null.',
    authScopes: { 'modules:read': true },
    args: { id: t.arg.id({ required: true, description: 'The module id.' }) },
    resolve: async (_root, { id }, ctx) => (await ctx.repos.modules.find(String(id))) ?? null,
  }),
);

const InstallModuleInput = builder.inputType('InstallModuleInput', {
  description: 'A module to install.',
  fields: (t) => ({
    id: t.string({ required: true, description: 'Id: 1-64 of a-z, 0-9, ".", "_", "-", starting with a letter or digit.' }),
    name: t.string({ required: true, description: 'Display name.' }),
    version: t.string({ required: true, description: 'Semantic version, e.g. 1.2.3.' }),
    description: t.string({ description: 'What it does.' }),
    config: t.field({ type: 'JSONObject', description: 'Non-secret configuration, at most 64 KiB of JSON.' }),
    enabled: t.boolean({ description: 'Enabled on install (default true).' }),
  }),
});

const UpdateModuleInput = builder.inputType('UpdateModuleInput', {
  description: 'Changes to a module; omitted fields stay as they are.',
  fields: (t) => ({
    name: t.string({ description: 'Display name.' }),
    version: t.string({ description: 'Semantic version.' }),
    description: t.string({ description: 'What it does; null clears it.' }),
    config: t.field({ type: 'JSONObject', description: 'Replaces the configuration.' }),
  }),
});

builder.mutationFields((t) => ({
  installModule: t.field({
    type: Module,
    description: 'Install a module in the org; CONFLICT if the org has one with this id.',
    authScopes: { 'modules:write': true },
    args: { input: t.arg({ type: InstallModuleInput, required: true }) },
    resolve: (_root, { input }, ctx) => ctx.repos.modules.install(input, ctx.actor),
  }),
  updateModule: t.field({
    type: Module,
    description: 'Change a module of the org.',
    authScopes: { 'modules:write': true },
    args: {
      id: t.arg.id({ required: true, description: 'The module id.' }),
      input: t.arg({ type: UpdateModuleInput, required: true }),
    },
    resolve: (_root, { id, input }, ctx) => ctx.repos.modules.update(String(id), input, ctx.actor),
  }),
  enableModule: t.field({
    type: Module,
    description: 'Enable a module of the org.',
    authScopes: { 'modules:write': true },
    args: { id: t.arg.id({ required: true, description: 'The module id.' }) },
    resolve: (_root, { id }, ctx) => ctx.repos.modules.setEnabled(String(id), true, ctx.actor),
  }),
  disableModule: t.field({
    type: Module,
    description: 'Disable a module of the org.',
    authScopes: { 'modules:write': true },
    args: { id: t.arg.id({ required: true, description: 'The module id.' }) },
    resolve: (_root, { id }, ctx) => ctx.repos.modules.setEnabled(String(id), false, ctx.actor),
  }),
  uninstallModule: t.field({
    type: Module,
    description: 'Uninstall a module of the org and delete its credential; returns it as it was.',
    authScopes: { 'modules:write': true },
    args: { id: t.arg.id({ required: true, description: 'The module id.' }) },
    resolve: (_root, { id }, ctx) => ctx.repos.modules.uninstall(String(id), ctx.actor),
  }),
}));
