import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { openStore } from '../src/store/open.ts';
import { createLegacyFromFixture } from './helpers/legacy.ts';

const ROOT = path.resolve(new URL('..', import.meta.url).pathname);
const temps: string[] = [];
const immutable: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-data-dir-'));
  temps.push(dir);
  return dir;
}

afterAll(() => {
  for (const p of immutable) execFileSync('chattr', ['-i', p]);
  for (const dir of temps) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * The tests run as root, whom mode bits do not stop. An immutable file or folder (chattr +i) is
 * one that root cannot write either; it needs a file system that supports it (ext4 here).
 */
function makeImmutable(p: string): boolean {
  try {
    execFileSync('chattr', ['+i', p], { stdio: 'ignore' });
  } catch {
    return false;
  }
  immutable.push(p);
  return true;
}
const chattrWorks = (() => {
  const probe = path.join(tempDir(), 'probe');
  fs.mkdirSync(probe);
  return makeImmutable(probe);
})();

const mode = (p: string) => fs.statSync(p).mode & 0o777;

function cleanEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => !k.startsWith('TENANTGATE_') && v !== undefined)) as Record<string, string>;
}

/** Runs the real entry (the gateway, or the CLI with `args`); a hang fails the test, not the suite. */
function run(entry: 'src/main.ts' | 'src/cli.ts', env: Record<string, string>, args: string[] = []) {
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    cwd: ROOT,
    env: { ...cleanEnv(), TENANTGATE_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, 30_000);
  return new Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }>((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    }),
  );
}

function expectOneLine(result: Awaited<ReturnType<typeof run>>, line: RegExp): void {
  expect(result.timedOut).toBe(false);
  expect(result.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  expect(result.stderr).toMatch(line);
  expect(result.stdout).toBe('');
  expect(result.code).toBe(2);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe.concurrent('a data directory that cannot be used stops the start with one line and exit code 2', () => {
  it('under /proc (where Node 20 recursive mkdir loops forever)', async () => {
    const result = await run('src/main.ts', { TENANTGATE_DATA_DIR: '/proc/tenantgate-nope' });
    expectOneLine(result, /^tenantgate: could not start: TENANTGATE_DATA_DIR \/proc\/tenantgate-nope cannot be created: \/proc does not take new folders \(ENOENT\)\n$/);
  });

  it('a file where the folder should be', async () => {
    const file = path.join(tempDir(), 'data');
    fs.writeFileSync(file, 'not a folder');
    const result = await run('src/main.ts', { TENANTGATE_DATA_DIR: file });
    expectOneLine(result, new RegExp(`^tenantgate: could not start: TENANTGATE_DATA_DIR ${escape(file)} is a file, not a folder\\n$`));
    expect(fs.readFileSync(file, 'utf8')).toBe('not a folder');
  });

  it('a path under a file', async () => {
    const file = path.join(tempDir(), 'data');
    fs.writeFileSync(file, '');
    const dir = path.join(file, 'sub', 'data');
    const result = await run('src/main.ts', { TENANTGATE_DATA_DIR: dir });
    expectOneLine(result, new RegExp(`^tenantgate: could not start: TENANTGATE_DATA_DIR ${escape(dir)} cannot be created: part of the path is a file, not a folder \\(ENOTDIR\\)\\n$`));
  });

  // Skipped only where the file system has no immutable flag (not ext4, or no CAP_LINUX_IMMUTABLE).
  it.skipIf(!chattrWorks)('a folder that not even root can write in (immutable)', async () => {
    const dir = path.join(tempDir(), 'data');
    fs.mkdirSync(dir);
    expect(makeImmutable(dir)).toBe(true);
    const result = await run('src/main.ts', { TENANTGATE_DATA_DIR: dir });
    expectOneLine(result, new RegExp(`^tenantgate: could not start: TENANTGATE_DATA_DIR ${escape(dir)} is not writable: operation not permitted \\(EPERM\\)\\n$`));
  });

  it.skipIf(!chattrWorks)('a database file that cannot be written, in a writable folder', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'tenantgate.db');
    fs.writeFileSync(file, '');
    expect(makeImmutable(file)).toBe(true);
    const result = await run('src/main.ts', { TENANTGATE_DATA_DIR: dir });
    expectOneLine(result, new RegExp(`^tenantgate: could not start: TENANTGATE_DATABASE ${escape(file)} is not writable: operation not permitted \\(EPERM\\)\\n$`));
  });

  it('a database path whose folder cannot be created', async () => {
    const result = await run('src/main.ts', {
      TENANTGATE_DATA_DIR: tempDir(),
      TENANTGATE_DATABASE: '/proc/tenantgate-nope/store/tenantgate.db',
    });
    expectOneLine(
      result,
      /^tenantgate: could not start: the folder of TENANTGATE_DATABASE \/proc\/tenantgate-nope\/store cannot be created: \/proc does not take new folders \(ENOENT\)\n$/,
    );
  });

  it('the CLI says the same, without "could not start"', async () => {
    const result = await run('src/cli.ts', { TENANTGATE_DATA_DIR: '/proc/tenantgate-nope' }, ['migrate']);
    expectOneLine(result, /^tenantgate: TENANTGATE_DATA_DIR \/proc\/tenantgate-nope cannot be created: \/proc does not take new folders \(ENOENT\)\n$/);
  });

  it.skipIf(!chattrWorks)('the CLI on an immutable folder', async () => {
    const dir = path.join(tempDir(), 'data');
    fs.mkdirSync(dir);
    expect(makeImmutable(dir)).toBe(true);
    const result = await run('src/cli.ts', { TENANTGATE_DATA_DIR: dir }, ['orgs', 'list']);
    expectOneLine(result, new RegExp(`^tenantgate: TENANTGATE_DATA_DIR ${escape(dir)} is not writable: operation not permitted \\(EPERM\\)\\n$`));
  });
});

/** Every entry under `dir`, with its mode. */
function modes(dir: string): Record<string, string> {
  const out: Record<string, string> = { '.': mode(dir).toString(8) };
  for (const name of fs.readdirSync(dir)) out[name] = mode(path.join(dir, name)).toString(8);
  return out;
}

/** Runs `fn` under umask 000, so that nothing is private by accident of a strict umask. */
function permissive<T>(fn: () => T): T {
  const previous = process.umask(0);
  try {
    return fn();
  } finally {
    process.umask(previous);
  }
}

describe('files at rest are private whatever the umask', () => {
  it('a new data directory is 0700 and the store, its -wal and -shm and master.key 0600', async () => {
    const dir = path.join(tempDir(), 'nested', 'data');
    const logger = captureLogger();
    const opened = await permissive(() => openStore(loadConfig({ TENANTGATE_DATA_DIR: dir }), logger));
    try {
      // A write, so the -wal holds pages (and the -shm exists) while the store is open.
      opened.sqlite.prepare(`INSERT INTO orgs (id, name, created_at) VALUES ('acme', 'Acme', '2026-01-01T00:00:00Z')`).run();
      expect(modes(dir)).toEqual({
        '.': '700',
        'tenantgate.db': '600',
        'tenantgate.db-wal': '600',
        'tenantgate.db-shm': '600',
        'master.key': '600',
      });
    } finally {
      await opened.store.close();
    }
  });

  it('a pre-tenant file in a loose folder: folder tightened, store, -wal, -shm and backup 0600', async () => {
    const dir = path.join(tempDir(), 'data');
    permissive(() => {
      fs.mkdirSync(dir, { mode: 0o777 });
      createLegacyFromFixture(path.join(dir, 'tenantgate.db'));
    });
    expect(mode(dir)).toBe(0o777);
    expect(mode(path.join(dir, 'tenantgate.db')) & 0o077).not.toBe(0); // as the single-tenant registry left it
    const logger = captureLogger();
    const opened = await permissive(() => openStore(loadConfig({ TENANTGATE_DATA_DIR: dir }), logger));
    try {
      expect(opened.migration.adoptedLegacy).toBe(true);
      opened.sqlite.prepare(`INSERT INTO orgs (id, name, created_at) VALUES ('acme', 'Acme', '2026-01-01T00:00:00Z')`).run();
      const backup = path.basename(opened.migration.backupFile!);
      expect(modes(dir)).toEqual({
        '.': '700',
        'tenantgate.db': '600',
        'tenantgate.db-wal': '600',
        'tenantgate.db-shm': '600',
        'master.key': '600',
        [backup]: '600',
      });
      expect(logger.lines.some((l) => l.includes('tightened the permissions of the data directory'))).toBe(true);
    } finally {
      await opened.store.close();
    }
  });

  it('a loose folder that holds other files is left alone and named in a warning', async () => {
    const dir = path.join(tempDir(), 'shared');
    permissive(() => fs.mkdirSync(dir, { mode: 0o777 }));
    fs.writeFileSync(path.join(dir, 'someone-elses.txt'), '');
    const logger = captureLogger();
    const opened = await permissive(() => openStore(loadConfig({ TENANTGATE_DATA_DIR: dir }), logger));
    await opened.store.close();
    expect(mode(dir)).toBe(0o777);
    expect(mode(path.join(dir, 'tenantgate.db'))).toBe(0o600);
    const warning = logger.lines.find((l) => l.includes('"level":"warn"') && l.includes('data directory is open to other users'));
    expect(warning).toContain(JSON.stringify(dir));
  });

  it('a database outside the data directory gets a new 0700 folder of its own', async () => {
    const base = tempDir();
    const file = path.join(base, 'db', 'store.db');
    const logger = captureLogger();
    const opened = await permissive(() =>
      openStore(loadConfig({ TENANTGATE_DATA_DIR: path.join(base, 'data'), TENANTGATE_DATABASE: file }), logger),
    );
    await opened.store.close();
    expect(mode(path.dirname(file))).toBe(0o700);
    expect(mode(file)).toBe(0o600);
    expect(modes(path.join(base, 'data'))).toEqual({ '.': '700', 'master.key': '600' });
  });
});
