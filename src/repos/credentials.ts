import { z } from 'zod';
import type { SecretBox } from '../crypto/secret-box.ts';
import { notFound } from '../errors.ts';
import type { CredentialMeta, Store } from '../store/types.ts';
import { MAX_LOOKUP_ID, parseInput } from './validate.ts';

export const MAX_SECRET_FIELDS = 64;
export const MAX_SECRET_VALUE_BYTES = 16 * 1024;

const secretSchema = z
  .record(
    z.string().min(1, 'secret field names must not be empty').max(128, 'secret field names must be at most 128 characters'),
    z
      .string({ error: 'every secret value must be a string' })
      .refine((v) => Buffer.byteLength(v, 'utf8') <= MAX_SECRET_VALUE_BYTES, `each secret value must be at most ${MAX_SECRET_VALUE_BYTES} bytes`),
  )
  .refine((s) => Object.keys(s).length > 0, 'secret must have at least one field')
  .refine((s) => Object.keys(s).length <= MAX_SECRET_FIELDS, `secret must have at most ${MAX_SECRET_FIELDS} fields`);

/**
 * The credential store of one org. Values are sealed before they reach the store and opened only
 * by `reveal`; every other path sees field names and timestamps.
 */
export function credentialsForOrg(store: Store, secretBox: SecretBox, orgId: string) {
  return {
    list: (): Promise<CredentialMeta[]> => store.credentials.list(orgId),

    has: async (moduleId: string): Promise<boolean> =>
      moduleId.length <= MAX_LOOKUP_ID && (await store.credentials.has(orgId, moduleId)),

    async set(moduleId: string, secret: unknown): Promise<CredentialMeta> {
      const values = parseInput(secretSchema, secret);
      if (moduleId.length > MAX_LOOKUP_ID) throw notFound('Module', moduleId);
      const sealed = secretBox.seal(orgId, moduleId, JSON.stringify(values));
      const at = new Date().toISOString();
      const existing = await store.credentials.get(orgId, moduleId);
      const row = {
        orgId,
        moduleId,
        ...sealed,
        fields: Object.keys(values).sort(),
        createdAt: existing?.createdAt ?? at,
        updatedAt: at,
      };
      if (!(await store.credentials.upsert(row))) throw notFound('Module', moduleId);
      return row;
    },

    delete: async (moduleId: string): Promise<boolean> =>
      moduleId.length <= MAX_LOOKUP_ID && store.credentials.delete(orgId, moduleId),

    /** The only path that decrypts; the field requires `credentials:reveal`. */
    async reveal(moduleId: string): Promise<Record<string, unknown> | null> {
      if (moduleId.length > MAX_LOOKUP_ID) return null;
      const row = await store.credentials.get(orgId, moduleId);
      if (!row) return null;
      const plaintext = secretBox.open(orgId, moduleId, row);
      const parsed: unknown = JSON.parse(plaintext);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw new Error('stored credential is not a JSON object'); // masked: a bug or legacy junk
      }
      return parsed as Record<string, unknown>;
    },
  };
}
