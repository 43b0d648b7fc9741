import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM for credential secrets. Each write gets a fresh 12-byte IV; the 16-byte tag and the
 * master key's id are stored with the row; the additional authenticated data binds the
 * ciphertext to (org id, module id, key id), so a ciphertext copied into another row, another
 * org or under another key id does not decrypt.
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

function aad(orgId: string, moduleId: string, keyId: string): Buffer {
  return Buffer.from(JSON.stringify([orgId, moduleId, keyId]), 'utf8');
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

  open(orgId: string, moduleId: string, sealed: Sealed): string {
    const key = this.#keys.get(sealed.keyId);
    if (!key) throw new DecryptError(`no master key with id ${sealed.keyId} is configured`);
    if (sealed.iv.length !== 12 || sealed.tag.length !== 16) throw new DecryptError('malformed ciphertext');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv);
      decipher.setAAD(aad(orgId, moduleId, sealed.keyId));
      decipher.setAuthTag(sealed.tag);
      return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]).toString('utf8');
    } catch {
      // The message carries no key material or plaintext; GCM says only "unable to authenticate".
      throw new DecryptError('credential failed authentication (wrong key or tampered row)');
    }
  }
}
