import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM for credential secrets. Each write gets a fresh 12-byte IV; the 16-byte tag and the
 * sealing key's id are stored with the row; the additional authenticated data binds the
 * ciphertext to (org id, module id, key id), so a ciphertext copied into another row, another
 * org or under another key id does not decrypt. Credentials are sealed under their org's data key
 * (src/crypto/data-keys.ts); the master keys held here wrap those data keys, and open the
 * credentials still sealed directly under a master key (key id `mk_…`) until they are moved.
 */

export interface Sealed {
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  keyId: string;
}

export class DecryptError extends Error {
  override name = 'DecryptError';
}

/** A stable, non-secret name for a master key: a domain-separated hash prefix. */
export function masterKeyId(key: Buffer): string {
  return `mk_${createHash('sha256').update('tenantgate master key id\0').update(key).digest('hex').slice(0, 16)}`;
}

/** A credential's additional authenticated data: its row (org, module) and the key that sealed it. */
export function credentialAad(orgId: string, moduleId: string, keyId: string): Buffer {
  return Buffer.from(JSON.stringify([orgId, moduleId, keyId]), 'utf8');
}
const aad = credentialAad;

/** A data key's additional authenticated data: the org it belongs to and its id (src/crypto/data-keys.ts). */
function dataKeyAad(orgId: string, dataKeyId: string): Buffer {
  return Buffer.from(JSON.stringify(['tenantgate data key', orgId, dataKeyId]), 'utf8');
}

/** AES-256-GCM under `key` with a fresh 12-byte IV, binding `additional`. */
export function gcmSeal(key: Buffer, additional: Buffer, plaintext: Buffer): { ciphertext: Buffer; iv: Buffer; tag: Buffer } {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(additional);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, iv, tag: cipher.getAuthTag() };
}

/** Opens what gcmSeal sealed; a DecryptError (naming no key material) when it does not authenticate. */
export function gcmOpen(key: Buffer, additional: Buffer, sealed: { ciphertext: Buffer; iv: Buffer; tag: Buffer }, what = 'credential'): Buffer {
  if (sealed.iv.length !== 12 || sealed.tag.length !== 16) throw new DecryptError(`malformed ${what}`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv);
    decipher.setAAD(additional);
    decipher.setAuthTag(sealed.tag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
  } catch {
    // The message carries no key material or plaintext; GCM says only "unable to authenticate".
    throw new DecryptError(`${what} failed authentication (wrong key or tampered row)`);
  }
}

/** A data key as its org_keys row holds it: wrapped under the master key `masterKeyId`. */
export interface WrappedDataKey {
  wrapped: Buffer;
  iv: Buffer;
  tag: Buffer;
  masterKeyId: string;
}

export class SecretBox {
  readonly currentKeyId: string;
  readonly #current: Buffer;
  readonly #keys: Map<string, Buffer>;

  /** `current` encrypts; `current` and `previous` decrypt (so reads work during a rotation). */
  constructor(current: Buffer, previous: readonly Buffer[] = []) {
    if (current.length !== 32) throw new Error('master key must be 32 bytes');
    this.#current = current;
    this.currentKeyId = masterKeyId(current);
    this.#keys = new Map([[this.currentKeyId, current]]);
    for (const key of previous) {
      if (key.length !== 32) throw new Error('master key must be 32 bytes');
      this.#keys.set(masterKeyId(key), key);
    }
  }

  knows(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  seal(orgId: string, moduleId: string, plaintext: string): Sealed {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#current, iv);
    cipher.setAAD(aad(orgId, moduleId, this.currentKeyId));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { ciphertext, iv, tag: cipher.getAuthTag(), keyId: this.currentKeyId };
  }

  /** Opens a credential sealed directly under a master key (before per-org data keys, or by `seal`). */
  open(orgId: string, moduleId: string, sealed: Sealed): string {
    const key = this.#keys.get(sealed.keyId);
    if (!key) throw new DecryptError(`no master key with id ${sealed.keyId} is configured`);
    return gcmOpen(key, aad(orgId, moduleId, sealed.keyId), sealed).toString('utf8');
  }

  /** Wraps an org's data key under the current master key, bound to the org and the data key's id. */
  wrapDataKey(orgId: string, dataKeyId: string, dataKey: Buffer): WrappedDataKey {
    const { ciphertext, iv, tag } = gcmSeal(this.#current, dataKeyAad(orgId, dataKeyId), dataKey);
    return { wrapped: ciphertext, iv, tag, masterKeyId: this.currentKeyId };
  }

  /** The data key an org_keys row holds, unwrapped with the master key that wrapped it. */
  unwrapDataKey(orgId: string, dataKeyId: string, row: WrappedDataKey): Buffer {
    const key = this.#keys.get(row.masterKeyId);
    if (!key) throw new DecryptError(`no master key with id ${row.masterKeyId} is configured`);
    const dataKey = gcmOpen(key, dataKeyAad(orgId, dataKeyId), { ciphertext: row.wrapped, iv: row.iv, tag: row.tag }, 'data key');
    if (dataKey.length !== 32) throw new DecryptError('malformed data key');
    return dataKey;
  }
}
