import { z } from 'zod';
import { badInput, conflict, notFound } from '../errors.ts';
import { MODULE_FIELDS } from '../store/module-fields.ts';
import type { AuditActor, ModuleField, ModulePatch, ModuleRecord, OrgStore } from '../store/types.ts';
import { displayName, jsonBytes, lookupable, newId, parseInput, text } from './validate.ts';

export const MAX_CONFIG_BYTES = 64 * 1024;

export const MAX_VERSION_LENGTH = 128;

// The grammar of semver.org 2.0.0, build metadata included. semver.valid() would not do: it
// normalises ("v1.2.3" -> "1.2.3") and drops build metadata, so "1.0.0+build.1" failed a
// valid() === input check.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

const version = z
  .string()
  .max(MAX_VERSION_LENGTH, `version must be at most ${MAX_VERSION_LENGTH} characters`)
  .regex(SEMVER, 'version must be a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.3 or 2.0.0-beta.1), with no leading "v"');
// zod builds the record on a plain object, where a "__proto__" key would vanish: refuse it.
const config = z
  .unknown()
  .refine((c) => !(c !== null && typeof c === 'object' && Object.hasOwn(c, '__proto__')), 'config may not have a "__proto__" key')
  .pipe(z.record(z.string(), z.unknown()))
  .superRefine((c, ctx) => {
  const bytes = jsonBytes(c);
  if (bytes > MAX_CONFIG_BYTES) {
    ctx.addIssue({ code: 'custom', message: `config is ${bytes} bytes of JSON; at most ${MAX_CONFIG_BYTES} (64 KiB) are allowed` });
  }
});
const description = text('description').max(2000, 'description must be at most 2000 characters').nullish();

const installSchema = z.object({
  id: newId('id'),
  name: displayName('name'),
  version,
  description,
  config: config.nullish(),
  enabled: z.boolean().nullish(),
});

const updateSchema = z.object({
  name: displayName('name').nullish(),
  version: version.nullish(),
  description,
  config: config.nullish(),
});

export type InstallModuleInput = z.input<typeof installSchema>;
export type UpdateModuleInput = z.input<typeof updateSchema>;

/** The fields a page can be narrowed to (`page({ fields })`), from the store's one definition. */
export const MODULE_PAGE_FIELDS: readonly ModuleField[] = MODULE_FIELDS.map((f) => f.field);

export interface ModulePage {
  rows: ModuleRecord[];
  hasNextPage: boolean;
  /** How many modules the page is a page of, when asked for (`withCount`). */
  total?: number;
}

/** The module registry of one org. Another org's module answers exactly like a missing one. */
export function modulesForOrg(org: OrgStore) {
  const { modules } = org;
  const find = async (id: string): Promise<ModuleRecord | undefined> =>
    lookupable(id) ? modules.get(id) : undefined;
  const require = async (id: string): Promise<ModuleRecord> => {
    const row = await find(id);
    if (!row) throw notFound('Module', id);
    return row;
  };
  const change = async (id: string, patch: ModulePatch, actor: AuditActor): Promise<ModuleRecord> => {
    if (!lookupable(id)) throw notFound('Module', id);
    const row = await modules.update(id, patch, new Date().toISOString(), actor);
    if (!row) throw notFound('Module', id);
    return row;
  };

  return {
    find,
    require,

    async page(opts: {
      enabled: boolean | undefined;
      after: string;
      first: number;
      fields?: ReadonlySet<ModuleField> | undefined;
      /** Read the total count with the page (one round trip on PostgreSQL), for a query that selects totalCount. */
      withCount?: boolean;
    }): Promise<ModulePage> {
      const list = {
        enabled: opts.enabled,
        after: opts.after,
        limit: opts.first + 1,
        ...(opts.fields ? { fields: opts.fields } : {}),
      };
      if (opts.withCount) {
        const { rows, total } = await modules.listCounted(list);
        return { rows: rows.slice(0, opts.first), hasNextPage: rows.length > opts.first, total };
      }
      const rows = await modules.list(list);
      return { rows: rows.slice(0, opts.first), hasNextPage: rows.length > opts.first };
    },

    count: (enabled: boolean | undefined) => modules.count(enabled),

    async install(input: InstallModuleInput, actor: AuditActor): Promise<ModuleRecord> {
      const parsed = parseInput(installSchema, input);
      const at = new Date().toISOString();
      const inserted = await modules.insert({
        moduleId: parsed.id,
        name: parsed.name,
        version: parsed.version,
        description: parsed.description ?? null,
        config: JSON.stringify(parsed.config ?? {}),
        enabled: parsed.enabled ?? true,
        installedAt: at,
        updatedAt: at,
      }, actor);
      if (!inserted) throw conflict(`Module "${parsed.id}" is already installed`);
      return require(parsed.id);
    },

    async update(id: string, input: UpdateModuleInput, actor: AuditActor): Promise<ModuleRecord> {
      const parsed = parseInput(updateSchema, input);
      const patch: ModulePatch = {};
      if (parsed.name != null) patch.name = parsed.name;
      if (parsed.version != null) patch.version = parsed.version;
      if (parsed.description !== undefined) patch.description = parsed.description;
      if (parsed.config != null) patch.config = JSON.stringify(parsed.config);
      if (Object.keys(patch).length === 0) throw badInput('give at least one of name, version, description, config');
      return change(id, patch, actor);
    },

    setEnabled: (id: string, enabled: boolean, actor: AuditActor) => change(id, { enabled }, actor),

    /** Removes the module and its credential in one statement (the credential cascades). */
    async uninstall(id: string, actor: AuditActor): Promise<ModuleRecord> {
      const row = await require(id);
      if (!(await modules.delete(id, actor))) throw notFound('Module', id);
      return row;
    },
  };
}
