/** What a key may do. A field declares the scope it needs; a key without it gets FORBIDDEN. */
export const SCOPES = [
  'modules:read',
  'modules:write',
  'credentials:write',
  'credentials:reveal',
  'keys:manage',
  'usage:read',
  'usage:write',
  'audit:read',
  'admin',
] as const;

export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Scopes in their canonical order, deduplicated. */
export function normalizeScopes(scopes: Iterable<Scope>): Scope[] {
  const set = new Set(scopes);
  return SCOPES.filter((s) => set.has(s));
}
