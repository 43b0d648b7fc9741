import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * API keys: `tgk_` + 32 random bytes in base62 (43 characters) + a 6-character base62 CRC32 of
 * everything before it. The checksum lets us reject typos and random guesses before any lookup;
 * only the SHA-256 of the whole key is stored (a 256-bit random secret needs no slow hash).
 */

export const KEY_PREFIX = 'tgk_';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LENGTH = 43;
const CHECKSUM_LENGTH = 6;
const KEY_SHAPE = /^tgk_[0-9A-Za-z]{49}$/;

function base62(value: bigint, width: number): string {
  let out = '';
  let n = value;
  while (n > 0n) {
    out = ALPHABET[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out.padStart(width, '0');
}

function checksum(text: string): string {
  // A CRC32 fits a double exactly, so plain arithmetic (no BigInt) on this per-request path.
  let n = crc32(text);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

export function generateKey(): string {
  const body = base62(BigInt(`0x${randomBytes(32).toString('hex')}`), BODY_LENGTH);
  const head = KEY_PREFIX + body;
  return head + checksum(head);
}

/** Shape and checksum only: true does not mean the key exists. */
export function isWellFormedKey(key: string): boolean {
  if (!KEY_SHAPE.test(key)) return false;
  const head = key.slice(0, KEY_PREFIX.length + BODY_LENGTH);
  return key.slice(head.length) === checksum(head);
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** What lists and logs may show of a key: enough to tell keys apart, useless to an attacker. */
export function displayPrefix(key: string): string {
  return key.slice(0, KEY_PREFIX.length + 8);
}
