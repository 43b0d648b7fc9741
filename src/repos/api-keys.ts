import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Authenticator } from '../auth/authenticator.ts';
import { displayPrefix, generateKey, hashKey } from '../auth/key-format.ts';
import { normalizeScopes, SCOPES, type Scope } from '../auth/scopes.ts';
import { badInput, forbidden, notFound } from '../errors.ts';
import type { ApiKeyRow, Store } from '../store/types.ts';
import { displayName, parseInput } from './validate.ts';

export interface NewKeyInput {
  name: string;
  scopes: readonly string[];
  expiresAt?: Date | null | undefined;
}

const newKeySchema = z.object({
  name: displayName('name', 100),
  scopes: z
    .array(z.enum(SCOPES, { error: () => `scopes must be among ${SCOPES.join(', ')}` }))
    .min(1, 'a key needs at least one scope'),
  expiresAt: z.date().nullish(),
});

/**
 * Creates a key in `orgId`. The secret is returned once, here, and never stored. `grantor` is the
 * calling key's scopes: a key can never mint one with scopes it does not hold.
 */
export async function issueApiKey(
  store: Store,
  orgId: string,
  input: NewKeyInput,
  grantor: { keyId: string | null; scopes: ReadonlySet<Scope> | 'all' },
  now = new Date(),
): Promise<{ apiKey: ApiKeyRow; secret: string }> {
  const parsed = parseInput(newKeySchema, input);
  if (parsed.expiresAt && parsed.expiresAt.getTime() <= now.getTime()) {
    throw badInput('expiresAt must be in the future', 'expiresAt');
  }
  const scopes = normalizeScopes(parsed.scopes);
  if (grantor.scopes !== 'all') {
    const held = grantor.scopes;
    const missing = scopes.filter((s) => !held.has(s));
    if (missing.length > 0) throw forbidden(`a key cannot grant scopes it does not hold: ${missing.join(', ')}`);
  }
  const secret = generateKey();
  const apiKey: ApiKeyRow = {
    id: `key_${randomUUID()}`,
    orgId,
    name: parsed.name,
    prefix: displayPrefix(secret),
    hash: hashKey(secret),
    scopes,
    createdAt: now.toISOString(),
    expiresAt: parsed.expiresAt ? parsed.expiresAt.toISOString() : null,
    revokedAt: null,
    lastUsedAt: null,
    createdByKeyId: grantor.keyId,
  };
  await store.apiKeys.insert(apiKey);
  return { apiKey, secret };
}

/** Key management bound to one org. */
export function apiKeysForOrg(store: Store, authenticator: Authenticator, orgId: string) {
  return {
    list: () => store.apiKeys.listForOrg(orgId),
    get: (id: string) => store.apiKeys.getForOrg(orgId, id),
    create: (input: NewKeyInput, grantor: { keyId: string; scopes: ReadonlySet<Scope> }) =>
      issueApiKey(store, orgId, input, grantor),
    async revoke(id: string): Promise<ApiKeyRow> {
      const row = await store.apiKeys.revoke(orgId, id, new Date().toISOString());
      if (!row) throw notFound('API key', id);
      authenticator.forget(row.id);
      return row;
    },
  };
}
