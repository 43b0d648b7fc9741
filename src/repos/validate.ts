import { z } from 'zod';
import { badInput } from '../errors.ts';

/** Ids of new modules and orgs. Adopted legacy ids outside this rule stay addressable. */
export const ID_RULE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Lookups accept any id up to this length, so legacy ids work; longer is certainly absent. */
export const MAX_LOOKUP_ID = 256;

/**
 * U+0000 cannot be stored in a PostgreSQL text or jsonb value (SQLite would keep it): every string
 * that reaches a text column, and every id looked up, is refused with it on both dialects alike.
 */
export const hasNul = (value: string): boolean => value.includes('\u0000');
const NUL_MESSAGE = (what: string) => `${what} must not contain the NUL character (U+0000)`;

/** A string of the client's that is stored or looked up as given: refused when it holds U+0000. */
export const text = (what: string) => z.string().refine((v) => !hasNul(v), NUL_MESSAGE(what));

/** Refuses an id holding U+0000 (BAD_USER_INPUT); false when it is too long to exist. */
export function lookupable(id: string, field = 'id'): boolean {
  if (hasNul(id)) throw badInput(NUL_MESSAGE(field), field);
  return id.length <= MAX_LOOKUP_ID;
}

export const newId = (what: string) =>
  z
    .string()
    .regex(ID_RULE, `${what} must match ${ID_RULE.source}: 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit`);

export const displayName = (what: string, max = 200) =>
  z
    .string()
    .trim()
    .min(1, `${what} must not be empty`)
    .max(max, `${what} must be at most ${max} characters`)
    .refine((v) => !hasNul(v), NUL_MESSAGE(what));

/** Runs a zod schema and turns its first issue into BAD_USER_INPUT naming the field. */
export function parseInput<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue?.path.join('.') || undefined;
  throw badInput(issue?.message ?? 'invalid input', field);
}

export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}
