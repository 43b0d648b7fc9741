import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError, decodeMasterKey, type Config } from '../config.ts';
import { DataPathError } from '../store/data-dir.ts';
import type { Logger } from '../logger.ts';
import { SecretBox } from './secret-box.ts';

export const MASTER_KEY_FILE = 'master.key';

/**
 * The master key comes from TENANTGATE_MASTER_KEY, or from `<data dir>/master.key`. On the embedded
 * default that file is generated (mode 0600) on first start; `mayGenerate` is false when the store
 * already holds credentials, since a new key could never decrypt them. The data directory exists
 * and is writable by then (openStore prepares it). On PostgreSQL it is never generated: several
 * replicas share the store, and each must hold the same key.
 */
export function loadSecretBox(
  config: Pick<Config, 'masterKey' | 'previousMasterKeys' | 'dataDir'>,
  logger: Logger,
  mayGenerate: boolean,
  dialect: 'sqlite' | 'postgres' = 'sqlite',
): SecretBox {
  if (config.masterKey) return new SecretBox(config.masterKey, config.previousMasterKeys);
  const file = path.join(config.dataDir, MASTER_KEY_FILE);
  let raw: string | undefined;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === undefined) throw error;
    if (code !== 'ENOENT') throw new DataPathError(`master key file ${file} cannot be read (${code})`);
  }
  if (raw === undefined) {
    if (dialect === 'postgres') {
      throw new ConfigError(
        `no master key: on PostgreSQL every replica must use the same key, so none is generated; set TENANTGATE_MASTER_KEY (openssl rand -base64 32) or put it in ${file}`,
      );
    }
    if (!mayGenerate) {
      throw new ConfigError(
        `no master key: the store holds encrypted credentials but ${file} is missing and TENANTGATE_MASTER_KEY is not set`,
      );
    }
    const key = randomBytes(32);
    // Written whole to a private temporary file, then linked into place: link fails if the name
    // exists, so two processes starting together agree on one key and neither reads a half file.
    const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    fs.writeFileSync(temporary, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    try {
      fs.linkSync(temporary, file);
      logger.info('generated a new master key', { file });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      return loadSecretBox(config, logger, false, dialect); // another process generated it first
    } finally {
      fs.rmSync(temporary, { force: true });
    }
    return new SecretBox(key, config.previousMasterKeys);
  }
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) logger.warn('master key file is readable by other users; chmod 600 it', { file });
  return new SecretBox(decodeMasterKey(file, raw), config.previousMasterKeys);
}

/** The refusal of a key that cannot open what the store holds: the ids only, never key material. */
export function wrongKeyError(unknown: readonly string[], secretBox: SecretBox): ConfigError {
  return new ConfigError(
    `wrong master key: credentials are sealed with ${unknown.join(', ')} but the configured key is ${secretBox.currentKeyId}; ` +
      'set TENANTGATE_MASTER_KEY (and TENANTGATE_MASTER_KEY_PREVIOUS during a rotation) to the keys that sealed them',
  );
}
