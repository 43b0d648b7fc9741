import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Authenticator } from '../auth/authenticator.ts';
import { displayPrefix, generateKey, hashKey } from '../auth/key-format.ts';
import { normalizeScopes, SCOPES, type Scope } from '../auth/scopes.ts';
import { badInput, forbidden, notFound } from '../errors.ts';
import { DEFAULT_ORG, type ApiKeyRow, type AuditActor, type OrgStore, type Store } from '../store/types.ts';
import { displayName, lookupable, parseInput } from './validate.ts';

/** Who is creating or revoking a key: its scopes bound what it may grant, revoke and how long a key it makes may live. */
export interface Grantor {
  keyId: string | null;
  scopes: ReadonlySet<Scope> | 'all';
  /** Epoch ms when the grantor itself expires; null or absent for never. */
  expiresAt?: number | null;
}

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
 * Creates a key in `orgId`. The secret is returned once, here, and never stored. A key can never
 * mint one with scopes it does not hold, nor one that outlives it (an omitted expiry inherits
 * the grantor's). `admin` is only for keys of the operator org: a tenant holding it could reach
 * every other org.
 */
export async function issueApiKey(
  store: Store,
  orgId: string,
  input: NewKeyInput,
  grantor: Grantor,
  actor: AuditActor,
  now = new Date(),
): Promise<{ apiKey: ApiKeyRow; secret: string }> {
  const parsed = parseInput(newKeySchema, input);
  if (parsed.expiresAt && parsed.expiresAt.getTime() <= now.getTime()) {
    throw badInput('expiresAt must be in the future', 'expiresAt');
  }
  const scopes = normalizeScopes(parsed.scopes);
  if (scopes.includes('admin') && orgId !== DEFAULT_ORG.id) {
    throw badInput(`the admin scope is only for keys of the operator org "${DEFAULT_ORG.id}"`, 'scopes');
  }
  const missing = scopesNotHeld(grantor, scopes);
  if (missing.length > 0) throw forbidden(`a key cannot grant scopes it does not hold: ${missing.join(', ')}`);
  let expiresAt = parsed.expiresAt ?? null;
  if (grantor.expiresAt != null) {
    if (expiresAt && expiresAt.getTime() > grantor.expiresAt) {
      throw forbidden(`a key cannot outlive the key that creates it (${new Date(grantor.expiresAt).toISOString()})`);
    }
    expiresAt ??= new Date(grantor.expiresAt);
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
    expiresAt: expiresAt ? expiresAt.toISOString() : null,
    revokedAt: null,
    lastUsedAt: null,
    createdByKeyId: grantor.keyId,
  };
  const { orgId: _org, ...row } = apiKey;
  await store.forOrg(orgId).apiKeys.insert(row, actor);
  return { apiKey, secret };
}

function scopesNotHeld(grantor: Grantor, scopes: readonly string[]): string[] {
  if (grantor.scopes === 'all') return [];
  const held = grantor.scopes as ReadonlySet<string>;
  return scopes.filter((s) => !held.has(s));
}

export interface RevokeOptions {
  /** Also revoke every key the key created, directly or through keys it created (in its org). */
  cascade?: boolean;
}

/** What a revocation did: the key, and with `cascade` the descendants revoked with it. */
export interface Revocation {
  apiKey: ApiKeyRow;
  /** The key's descendants, all revoked now (empty without `cascade`). */
  descendants: ApiKeyRow[];
  /** Ids of the keys (the key included) that were live until this revocation. */
  revoked: string[];
}

/** Key management bound to one org: `keys` is that org's store (src/store/types.ts OrgStore). */
export function apiKeysForOrg(store: Store, org: OrgStore, authenticator: Authenticator) {
  const { orgId, apiKeys: keys } = org;
  return {
    list: () => keys.list(),
    get: async (id: string) => (lookupable(id) ? keys.get(id) : undefined),
    /** Every key `id` created, directly or transitively, in this org; empty for a key of another org. */
    descendants: async (id: string) => (lookupable(id) ? keys.descendants(id) : []),
    create: (input: NewKeyInput, grantor: Grantor, actor: AuditActor) => issueApiKey(store, orgId, input, grantor, actor),
    /**
     * A key may revoke only keys whose scopes it holds (so no tenant key revokes an admin's). With
     * `cascade`, that holds for every live descendant too, and a cascade that would touch one the
     * revoker may not revoke is refused whole: a partial cleanup would leave a key alive in a tree
     * its owner believes is dead. (Keys made through the API never hold more than their maker, so
     * a revoker that may revoke the key may revoke its tree; the check is for rows made otherwise.)
     */
    async revoke(id: string, revoker: Grantor, actor: AuditActor, options: RevokeOptions = {}): Promise<Revocation> {
      const at = new Date().toISOString();
      if (!lookupable(id)) throw notFound('API key', id);
      if (!options.cascade) {
        const target = await keys.get(id);
        if (!target) throw notFound('API key', id);
        const missing = scopesNotHeld(revoker, target.scopes);
        if (missing.length > 0) throw forbidden(`a key cannot revoke a key with scopes it does not hold: ${missing.join(', ')}`);
        const row = await keys.revoke(id, at, actor);
        if (!row) throw notFound('API key', id);
        authenticator.forget(row.id);
        return { apiKey: row, descendants: [], revoked: target.revokedAt === null ? [row.id] : [] };
      }
      const tree = await keys.revokeTree(id, at, (key, descendants) => {
        const missing = scopesNotHeld(revoker, key.scopes);
        if (missing.length > 0) throw forbidden(`a key cannot revoke a key with scopes it does not hold: ${missing.join(', ')}`);
        const live = descendants.filter((k) => k.revokedAt === null);
        const stronger = live.filter((k) => scopesNotHeld(revoker, k.scopes).length > 0);
        if (stronger.length > 0) {
          const scopes = normalizeScopes(stronger.flatMap((k) => scopesNotHeld(revoker, k.scopes)) as Scope[]);
          throw forbidden(
            `a key cannot revoke keys with scopes it does not hold: ${stronger.length} of the ${live.length} live key(s) ` +
              `created from this one hold ${scopes.join(', ')}; nothing was revoked`,
          );
        }
      }, actor);
      if (!tree) throw notFound('API key', id);
      // Every key of the tree, revoked now or before: none may answer from this node's cache.
      for (const key of [tree.key, ...tree.descendants]) authenticator.forget(key.id);
      return { apiKey: tree.key, descendants: tree.descendants, revoked: tree.revoked };
    },
  };
}
