import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey, isWellFormedKey } from '../src/auth/key-format.ts';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { startServer } from '../src/server.ts';

const run = promisify(execFile);
const ROOT = path.resolve(new URL('..', import.meta.url).pathname);

async function cli(dataDir: string, ...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, TENANTGATE_DATA_DIR: dataDir, TENANTGATE_MASTER_KEY: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function graphql(url: string, key: string, query: string) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, body: (await res.json()) as { data?: Record<string, any>; errors?: unknown[] } };
}

describe('first start and the CLI', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-cli-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  let adminKey = '';

  it('bootstraps one admin key for org default, printed once, stored as a hash', async () => {
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_PORT: '0' });
    const out = new PassThrough();
    let printed = '';
    out.on('data', (chunk) => (printed += chunk));
    const logger = captureLogger('debug');
    const server = await startServer(config, logger, out);
    try {
      const lines = printed.trim().split('\n');
      const withKey = lines.filter((l) => /tgk_[0-9A-Za-z]{49}/.test(l));
      expect(withKey).toHaveLength(1);
      adminKey = withKey[0]!.match(/tgk_[0-9A-Za-z]{49}/)![0];
      expect(isWellFormedKey(adminKey)).toBe(true);
      expect(lines.some((l) => l.includes('curl') && l.includes(server.url))).toBe(true);
      expect(logger.lines.join('\n')).not.toContain(adminKey.slice(12));

      const viewer = await graphql(server.url, adminKey, '{ viewer { org { id } scopes } }');
      expect(viewer.body.data?.viewer.org.id).toBe('default');
      expect(viewer.body.data?.viewer.scopes).toContain('admin');
      expect(fs.statSync(path.join(dir, 'master.key')).mode & 0o777).toBe(0o600);
    } finally {
      await server.stop();
    }
    const db = fs.readFileSync(path.join(dir, 'tenantgate.db'));
    expect(db.includes(Buffer.from(adminKey))).toBe(false);
    expect(db.includes(Buffer.from(hashKey(adminKey)))).toBe(true);

    const again = new PassThrough();
    let printedAgain = '';
    again.on('data', (chunk) => (printedAgain += chunk));
    const second = await startServer(config, captureLogger(), again);
    await second.stop();
    expect(printedAgain).not.toMatch(/tgk_/);
  });

  it('manages orgs and keys on the same store without the server', async () => {
    expect((await cli(dir, 'orgs', 'create', 'acme', '--name', 'Acme Inc')).code).toBe(0);
    const orgs = await cli(dir, 'orgs', 'list');
    expect(orgs.stdout).toContain('"id":"acme"');
    expect(orgs.stdout).toContain('"id":"default"');

    const created = await cli(dir, 'keys', 'create', '--org', 'acme', '--name', 'ci', '--scopes', 'modules:read,keys:manage');
    expect(created.code).toBe(0);
    const secret = created.stdout.match(/tgk_[0-9A-Za-z]{49}/)![0];
    const keyId = created.stdout.match(/key_[0-9a-f-]{36}/)![0];

    const listed = await cli(dir, 'keys', 'list', '--org', 'acme');
    expect(listed.stdout).toContain(keyId);
    expect(listed.stdout).not.toContain(secret);
    expect(listed.stdout).not.toContain(hashKey(secret));

    // The key works against a gateway on the same store, and stops working once revoked.
    const server = await startServer(loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_PORT: '0' }), captureLogger(), new PassThrough());
    try {
      expect((await graphql(server.url, secret, '{ viewer { org { id } } }')).body.data?.viewer.org.id).toBe('acme');
      expect((await cli(dir, 'keys', 'revoke', keyId, '--org', 'acme')).code).toBe(0);
      // Another process revoked it: this node sees it once its cache entry lapses (default 10 s),
      // so check the store directly rather than waiting.
      const list = await cli(dir, 'keys', 'list', '--org', 'acme');
      expect(list.stdout).toMatch(/"revokedAt":"\d{4}-/);
    } finally {
      await server.stop();
    }
  });

  it('says what is wrong, on one line, with exit code 2', async () => {
    const cases = [
      ['keys', 'create', '--org', 'acme', '--name', 'x', '--scopes', 'root'],
      ['keys', 'create', '--org', 'ghost', '--name', 'x', '--scopes', 'modules:read'],
      ['orgs', 'create', 'acme', '--name', 'again'],
      ['keys', 'revoke', 'key_nope', '--org', 'acme'],
      ['frobnicate'],
      ['keys', 'list', '--bogus'],
    ];
    const results = await Promise.all(cases.map((args) => cli(dir, ...args)));
    for (const [i, args] of cases.entries()) {
      const r = results[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^tenantgate: /);
    }
    const bad = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'orgs', 'list'], {
      cwd: ROOT,
      env: { ...process.env, TENANTGATE_DATA_DIR: dir, TENANTGATE_PORT: 'eighty' },
    }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(2);
    expect((bad as { stderr: string }).stderr).toContain('TENANTGATE_PORT must be a whole number from 0 to 65535');
  });

  it('prints help', async () => {
    const help = await cli(dir, '--help');
    expect(help.code).toBe(0);
    for (const verb of ['serve', 'migrate', 'orgs create', 'keys create', 'keys revoke', 'credentials rekey']) expect(help.stdout).toContain(verb);
  });
});
