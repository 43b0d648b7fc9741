import { z } from 'zod';
import { badInput } from '../errors.ts';

/** Ids of new modules and orgs. Adopted legacy ids outside this rule stay addressable. */
export const ID_RULE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Lookups accept any id up to this length, so legacy ids work; longer is certainly absent. */
export const MAX_LOOKUP_ID = 256;

export const newId = (what: string) =>
  z
    .string()
    .regex(ID_RULE, `${what} must match ${ID_RULE.source}: 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit`);

export const displayName = (what: string, max = 200) =>
  z
    .string()
    .trim()
    .min(1, `${what} must not be empty`)
    .max(max, `${what} must be at most ${max} characters`);

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
