import { createHash, randomBytes } from 'node:crypto';
import type { OrgKeyRow, OrgStore, Store } from '../store/types.ts';
import { credentialAad, DecryptError, gcmOpen, gcmSeal, type SecretBox, type Sealed } from './secret-box.ts';

/**
 * Per-org data keys (envelope encryption, issue 15). Each org's credentials are sealed under its
 * own random 32-byte data key; the org_keys row holds that key wrapped (AES-256-GCM) by a master
 * key, bound to the org and the data key's id. Deleting the row (deleting the org) leaves the
 * org's ciphertexts with no key anywhere: crypto-shredding. Rotating the master key re-wraps one
 * row per org (src/maintenance/rekey.ts) and leaves the credentials as they are.
 */

/** Credentials sealed directly under a master key carry its id; those under a data key, `dk_…`. */
export const isMasterKeyId = (keyId: string): boolean => keyId.startsWith('mk_');

/** A stable, non-secret name for a data key: a domain-separated hash prefix (as masterKeyId). */
export function dataKeyId(key: Buffer): string {
  return `dk_${createHash('sha256').update('tenantgate data key id\0').update(key).digest('hex').slice(0, 16)}`;
}

/** An unwrapped data key of one org. Never logged: nothing here prints or serialises the key. */
export class DataKey {
  readonly #key: Buffer;
  constructor(
    readonly orgId: string,
    readonly id: string,
    key: Buffer,
  ) {
    this.#key = key;
  }

  seal(moduleId: string, plaintext: string): Sealed {
    return { ...gcmSeal(this.#key, credentialAad(this.orgId, moduleId, this.id), Buffer.from(plaintext, 'utf8')), keyId: this.id };
  }

  open(moduleId: string, sealed: Sealed): string {
    if (sealed.keyId !== this.id) throw new DecryptError(`credential is sealed under ${sealed.keyId}, not under the org's data key`);
    return gcmOpen(this.#key, credentialAad(this.orgId, moduleId, this.id), sealed).toString('utf8');
  }

  toJSON(): string {
    return `[data key ${this.id}]`;
  }
}

/** How many unwrapped data keys a process keeps (least recently used dropped first). */
export const MAX_CACHED_DATA_KEYS = 1024;

/**
 * The data keys of one store's orgs, for one set of master keys. Unwrapped keys are cached in
 * process, bounded, and dropped when the store announces a change of their org that is not a
 * data write (a deletion among them) or of any org (another process's write on SQLite, a lost
 * feed on PostgreSQL): a deleted org's key does not outlive its row here.
 */
export class OrgKeyring {
  readonly #cache = new Map<string, DataKey>();

  constructor(
    readonly secretBox: SecretBox,
    private readonly max = MAX_CACHED_DATA_KEYS,
  ) {}

  /** Drops the cached key of `orgId`, or every cached key (null). */
  forget(orgId: string | null): void {
    if (orgId === null) this.#cache.clear();
    else this.#cache.delete(orgId);
  }

  get cachedCount(): number {
    return this.#cache.size;
  }

  #unwrap(row: OrgKeyRow): DataKey {
    const cached = this.#cache.get(row.orgId);
    if (cached && cached.id === row.keyId) {
      this.#cache.delete(row.orgId);
      this.#cache.set(row.orgId, cached);
      return cached;
    }
    const key = new DataKey(row.orgId, row.keyId, this.secretBox.unwrapDataKey(row.orgId, row.keyId, row));
    this.#cache.delete(row.orgId);
    this.#cache.set(row.orgId, key);
    if (this.#cache.size > this.max) this.#cache.delete(this.#cache.keys().next().value!);
    return key;
  }

  /**
   * The org's data key for sealing, made on first need: a new random key is wrapped and inserted
   * if the org has none, and the row then in place is used, so processes racing to make one agree
   * on the winner's. The row is always read (sealing is rare), so a key is never used that the
   * store does not hold. Undefined when the org does not exist.
   */
  async forSealing(org: OrgStore): Promise<DataKey | undefined> {
    let row = await org.dataKey();
    if (!row) {
      const key = randomBytes(32);
      const id = dataKeyId(key);
      row = await org.createDataKey({ keyId: id, ...this.secretBox.wrapDataKey(org.orgId, id, key), createdAt: new Date().toISOString() });
      key.fill(0);
      if (!row) return undefined;
    }
    return this.#unwrap(row);
  }

  /** The org's data key named `keyId`, for opening; a DecryptError when the org holds no such key. */
  async forOpening(org: OrgStore, keyId: string): Promise<DataKey> {
    const cached = this.#cache.get(org.orgId);
    if (cached && cached.id === keyId) return cached;
    const row = await org.dataKey();
    if (!row || row.keyId !== keyId) throw new DecryptError(`the org holds no data key ${keyId}`);
    return this.#unwrap(row);
  }

  /** Seals under the org's data key; undefined when the org does not exist. */
  async seal(org: OrgStore, moduleId: string, plaintext: string): Promise<Sealed | undefined> {
    return (await this.forSealing(org))?.seal(moduleId, plaintext);
  }

  /** Opens a credential of the org: under its data key, or (not yet moved) directly under a master key. */
  async open(org: OrgStore, moduleId: string, sealed: Sealed): Promise<string> {
    if (isMasterKeyId(sealed.keyId)) return this.secretBox.open(org.orgId, moduleId, sealed);
    return (await this.forOpening(org, sealed.keyId)).open(moduleId, sealed);
  }
}

const keyrings = new WeakMap<Store, WeakMap<SecretBox, OrgKeyring>>();

/** The keyring of a store and a set of master keys: one per pair, listening to the store's changes. */
export function orgKeyring(store: Store, secretBox: SecretBox): OrgKeyring {
  let bySecretBox = keyrings.get(store);
  if (!bySecretBox) keyrings.set(store, (bySecretBox = new WeakMap()));
  let keyring = bySecretBox.get(secretBox);
  if (!keyring) {
    const made = new OrgKeyring(secretBox);
    store.changes.subscribe((change) => {
      if (change.kind !== 'data') made.forget(change.orgId);
    });
    bySecretBox.set(secretBox, (keyring = made));
  }
  return keyring;
}
