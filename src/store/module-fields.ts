/**
 * The fields of a module, defined once. The store's row type (ModuleRow), each dialect's column
 * list, projections and row decoding, and the GraphQL field -> field needs all derive from this
 * map; each dialect's table is checked against it (at compile time, and when the store opens).
 * Adding a column: an entry here, the column in each dialect's schema and its migration, and the
 * GraphQL field.
 */

/** How a value is stored and read back: text and integers as they are, booleans as 0/1 where the dialect has none. */
export type FieldKind = 'text' | 'integer' | 'boolean';

interface FieldSpec {
  /** The column, snake_case. */
  readonly column: string;
  readonly kind: FieldKind;
  readonly nullable: boolean;
}

const text = <C extends string>(column: C) => ({ column, kind: 'text', nullable: false }) as const;
const optionalText = <C extends string>(column: C) => ({ column, kind: 'text', nullable: true }) as const;

/** Every column of the modules table, in select order; the key (orgId, moduleId) first. */
export const MODULE_COLUMNS = {
  orgId: text('org_id'),
  moduleId: text('module_id'),
  name: text('name'),
  version: text('version'),
  description: optionalText('description'),
  /** A JSON object, as text. */
  config: text('config'),
  enabled: { column: 'enabled', kind: 'boolean', nullable: false },
  healthStatus: text('health_status'),
  healthMessage: optionalText('health_message'),
  lastHealthCheck: optionalText('last_health_check'),
  usageCount: { column: 'usage_count', kind: 'integer', nullable: false },
  lastUsedAt: optionalText('last_used_at'),
  installedAt: text('installed_at'),
  updatedAt: text('updated_at'),
} as const satisfies Record<string, FieldSpec>;

/** Fields a module record has beyond its columns, computed by each dialect in the same read. */
export const MODULE_COMPUTED = {
  /** Whether the org holds a credential for the module. */
  hasCredential: { kind: 'boolean', nullable: false },
} as const satisfies Record<string, Omit<FieldSpec, 'column'>>;

type ValueOf<S extends { kind: FieldKind; nullable: boolean }> =
  | (S['kind'] extends 'text' ? string : S['kind'] extends 'integer' ? number : boolean)
  | (S['nullable'] extends true ? null : never);

export type ModuleRow = { -readonly [K in keyof typeof MODULE_COLUMNS]: ValueOf<(typeof MODULE_COLUMNS)[K]> };
export type ModuleRecord = ModuleRow & { -readonly [K in keyof typeof MODULE_COMPUTED]: ValueOf<(typeof MODULE_COMPUTED)[K]> };

/** The fields of a module record a list can be narrowed to: all but the key. */
export type ModuleField = Exclude<keyof ModuleRecord, 'orgId' | 'moduleId'>;

/** Every ModuleField with its kind, in select order (columns, then computed fields). */
export const MODULE_FIELDS: ReadonlyArray<{ readonly field: ModuleField; readonly kind: FieldKind; readonly column: string | undefined }> = [
  ...Object.entries(MODULE_COLUMNS)
    .filter(([field]) => field !== 'orgId' && field !== 'moduleId')
    .map(([field, spec]) => ({ field: field as ModuleField, kind: spec.kind, column: spec.column as string | undefined })),
  ...Object.entries(MODULE_COMPUTED).map(([field, spec]) => ({ field: field as ModuleField, kind: spec.kind, column: undefined })),
];
