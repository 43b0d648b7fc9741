import type { OrgKeyring } from '../crypto/data-keys.ts';
import { badInput, notFound } from '../errors.ts';
import type { AuditActor, CredentialMeta, OrgStore } from '../store/types.ts';
import { hasNul, lookupable } from './validate.ts';

export const MAX_SECRET_FIELDS = 64;
export const MAX_SECRET_VALUE_BYTES = 16 * 1024;

export const MAX_SECRET_FIELD_NAME = 128;

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * A secret is a JSON object of string values. Messages name the field and what is wrong with it,
 * never the value: a rejected value is still somebody's secret.
 */
export function parseSecret(secret: unknown): Record<string, string> {
  if (secret === null || typeof secret !== 'object' || Array.isArray(secret)) {
    throw badInput('secret must be a JSON object of string values', 'secret');
  }
  const entries = Object.entries(secret);
  if (entries.length === 0) throw badInput('secret must have at least one field', 'secret');
  if (entries.length > MAX_SECRET_FIELDS) {
    throw badInput(`secret has ${entries.length} fields; at most ${MAX_SECRET_FIELDS} are allowed`, 'secret');
  }
  // No prototype: a field named __proto__ is kept as a field, not taken as the object's prototype.
  const values: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of entries) {
    if (name.length === 0) throw badInput('secret field names must not be empty', 'secret');
    if (hasNul(name)) throw badInput('secret field names must not contain the NUL character (U+0000)', 'secret');
    if (name.length > MAX_SECRET_FIELD_NAME) {
      throw badInput(`secret field names must be at most ${MAX_SECRET_FIELD_NAME} characters`, 'secret');
    }
    if (typeof value !== 'string') {
      throw badInput(`secret field "${name}" must be a string, not ${kind(value)}`, `secret.${name}`);
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > MAX_SECRET_VALUE_BYTES) {
      throw badInput(
        `secret field "${name}" is ${bytes} bytes; each value may be at most ${MAX_SECRET_VALUE_BYTES} bytes (16 KiB)`,
        `secret.${name}`,
      );
    }
    values[name] = value;
  }
  return values;
}

/**
 * The credential store of one org. Values are sealed (under the org's data key) before they reach
 * the store and opened only by `reveal`; every other path sees field names and timestamps.
 */
export function credentialsForOrg(org: OrgStore, keys: OrgKeyring) {
  const { orgId, credentials } = org;
  return {
    list: (): Promise<CredentialMeta[]> => credentials.list(),

    has: async (moduleId: string): Promise<boolean> =>
      lookupable(moduleId, 'moduleId') && (await credentials.has(moduleId)),

    async set(moduleId: string, secret: unknown, actor: AuditActor): Promise<CredentialMeta> {
      const values = parseSecret(secret);
      if (!lookupable(moduleId, 'moduleId')) throw notFound('Module', moduleId);
      // Under the org's data key, made on its first credential (src/crypto/data-keys.ts).
      const sealed = await keys.seal(org, moduleId, JSON.stringify(values));
      if (!sealed) throw notFound('Module', moduleId);
      const at = new Date().toISOString();
      const existing = await credentials.get(moduleId);
      const row = {
        moduleId,
        ...sealed,
        fields: Object.keys(values).sort(),
        createdAt: existing?.createdAt ?? at,
        updatedAt: at,
      };
      if (!(await credentials.upsert(row, actor))) throw notFound('Module', moduleId);
      return { orgId, ...row };
    },

    delete: async (moduleId: string, actor: AuditActor): Promise<boolean> =>
      lookupable(moduleId, 'moduleId') && credentials.delete(moduleId, actor),

    /**
     * The only path that decrypts; the field requires `credentials:reveal`. The row is read in the
     * transaction that records the reveal (CREDENTIAL_REVEAL): no record, no secret.
     */
    async reveal(moduleId: string, actor: AuditActor): Promise<Record<string, unknown> | null> {
      if (!lookupable(moduleId, 'moduleId')) return null;
      const row = await credentials.reveal(moduleId, actor);
      if (!row) return null;
      const plaintext = await keys.open(org, moduleId, row);
      let parsed: unknown;
      try {
        parsed = JSON.parse(plaintext);
      } catch {
        parsed = undefined; // never rethrow: a SyntaxError's message quotes the plaintext
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
        // Masked for the client and logged without content: a legacy value that was not an object.
        throw new Error('stored credential is not a JSON object');
      }
      return parsed as Record<string, unknown>;
    },
  };
}
