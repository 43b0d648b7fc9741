import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../config.ts';
import type { Logger } from '../logger.ts';

/**
 * The data directory and the store's files, checked before SQLite sees them: folders are made
 * 0700 and files 0600 whatever the umask, and a path that cannot be used stops the start with one
 * line naming it and what is wrong (exit code 2), instead of SQLite's "unable to open database
 * file" or a hang.
 */

/** A configured path that cannot be used; the message names the path and the reason. */
export class DataPathError extends ConfigError {
  override name = 'DataPathError';
}

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOTDIR: 'part of the path is a file, not a folder',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the name is too long',
};

function reason(error: unknown, enoent: string): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === undefined) throw error;
  return `${code === 'ENOENT' ? enoent : (REASONS[code] ?? 'failed')} (${code})`;
}

/**
 * mkdir -p that ends. Node's recursive mkdir (20.x) loops forever where a parent exists but
 * mkdir of a child answers ENOENT (anywhere under /proc, or a dangling symbolic link): it takes
 * ENOENT for "parent missing", makes the parent (EEXIST) and tries again. Here a second ENOENT
 * after the parent is in place is final. Returns whether `dir` was created.
 */
function makeDirectory(dir: string): boolean {
  try {
    fs.mkdirSync(dir, { mode: DIR_MODE });
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    const parent = path.dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw error;
    makeDirectory(parent);
    fs.mkdirSync(dir, { mode: DIR_MODE });
    return true;
  }
}

/** Creates and removes a file in `dir`: the only test of writability that also holds for root. */
const PROBE_PREFIX = '.tenantgate-write-check-';

function probeWritable(dir: string): void {
  const probe = path.join(dir, `${PROBE_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.closeSync(fs.openSync(probe, 'wx', FILE_MODE));
  fs.rmSync(probe, { force: true });
}

const ownedByUs = (stat: fs.Stats) => typeof process.getuid !== 'function' || stat.uid === process.getuid();

/**
 * Makes `dir` (0700) if missing and checks that it is a folder this process can write in. An
 * existing folder open to group or others is tightened to 0700 when this process owns it and it
 * holds nothing but `ours(name)` entries; otherwise a warning names it (never chmod a folder that
 * others share, such as /tmp).
 */
export function prepareDirectory(dir: string, label: string, logger: Logger, ours: (name: string) => boolean): void {
  let created: boolean;
  try {
    created = makeDirectory(dir);
  } catch (error) {
    const failed = (error as NodeJS.ErrnoException).path ?? dir; // dir itself, or the parent that failed
    throw new DataPathError(`${label} ${dir} cannot be created: ${reason(error, `${path.dirname(failed)} does not take new folders`)}`);
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch (error) {
    throw new DataPathError(`${label} ${dir} cannot be used: ${reason(error, 'it is a broken symbolic link')}`);
  }
  if (!stat.isDirectory()) throw new DataPathError(`${label} ${dir} is a file, not a folder`);
  try {
    probeWritable(dir);
  } catch (error) {
    throw new DataPathError(`${label} ${dir} is not writable: ${reason(error, 'it does not take new files')}`);
  }
  if (created) {
    fs.chmodSync(dir, DIR_MODE); // mkdir's mode is masked by the umask; this is not
    return;
  }
  if ((stat.mode & 0o077) === 0) return;
  const mode = (stat.mode & 0o7777).toString(8).padStart(4, '0');
  if (ownedByUs(stat) && (stat.mode & 0o1000) === 0 && fs.readdirSync(dir).every((name) => name.startsWith(PROBE_PREFIX) || ours(name))) {
    fs.chmodSync(dir, DIR_MODE);
    logger.info('tightened the permissions of the data directory to 0700', { dir, was: mode });
  } else {
    logger.warn('the data directory is open to other users; chmod 700 it', { dir, mode });
  }
}

/**
 * Creates `file` empty with mode 0600 if it does not exist (SQLite then gives its -wal and -shm
 * files the same mode), and checks that an existing one is a file this process can write.
 */
export function preparePrivateFile(file: string, label: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', FILE_MODE);
    try {
      fs.fchmodSync(fd, FILE_MODE); // open's mode is masked by the umask
    } finally {
      fs.closeSync(fd);
    }
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new DataPathError(`${label} ${file} cannot be created: ${reason(error, 'its folder does not take new files')}`);
    }
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    throw new DataPathError(`${label} ${file} cannot be used: ${reason(error, 'it is a broken symbolic link')}`);
  }
  if (!stat.isFile()) throw new DataPathError(`${label} ${file} is not a regular file`);
  try {
    fs.closeSync(fs.openSync(file, 'r+'));
  } catch (error) {
    throw new DataPathError(`${label} ${file} is not writable: ${reason(error, 'it disappeared')}`);
  }
}

/**
 * Sets each existing file to 0600 when this process owns it and it is open to anyone else (a store
 * written by an earlier version, or under a looser umask); names it in a warning when it cannot.
 */
export function tightenFiles(files: string[], logger: Logger): void {
  for (const file of files) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      continue; // not there (yet): SQLite creates -wal and -shm with the main file's mode
    }
    if ((stat.mode & 0o077) === 0) continue;
    const mode = (stat.mode & 0o7777).toString(8).padStart(4, '0');
    if (ownedByUs(stat)) {
      try {
        fs.chmodSync(file, FILE_MODE);
        logger.info('tightened the permissions of a store file to 0600', { file, was: mode });
        continue;
      } catch {
        // fall through to the warning
      }
    }
    logger.warn('a store file is readable by other users; chmod 600 it', { file, mode });
  }
}
