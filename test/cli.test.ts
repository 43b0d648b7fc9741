import { execFile } from 'node:child_process';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey, isWellFormedKey } from '../src/auth/key-format.ts';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { nearest } from '../src/cli.ts';
import { startServer } from '../src/server.ts';
import { createScratchDatabase, postgresMultiProcess } from './helpers/postgres.ts';

const run = promisify(execFile);
const ROOT = path.resolve(new URL('..', import.meta.url).pathname);
const multiProcess = await postgresMultiProcess();

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

async function graphql(url: string, key: string, query: string, variables?: Record<string, unknown>) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
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

  it('revokes a leaked key and every key it minted with keys revoke --cascade, and nothing else', async () => {
    const secretOf = (out: string) => out.match(/tgk_[0-9A-Za-z]{49}/)![0];
    const idOf = (out: string) => out.match(/key_[0-9a-f-]{36}/)![0];
    const manager = await cli(dir, 'keys', 'create', '--org', 'acme', '--name', 'manager', '--scopes', 'keys:manage,modules:read');
    const unrelated = await cli(dir, 'keys', 'create', '--org', 'acme', '--name', 'unrelated', '--scopes', 'modules:read');
    expect([manager.code, unrelated.code]).toEqual([0, 0]);
    // The CLI is another process: with a key cache TTL of 0 the gateway sees its revocations on
    // the next request (with the default it would within 10 s).
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_PORT: '0', TENANTGATE_KEY_CACHE_TTL_MS: '0' });
    const server = await startServer(config, captureLogger(), new PassThrough());
    try {
      const CREATE = 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id } } }';
      const mint = async (parent: string, name: string, scopes: string[]) => {
        const res = await graphql(server.url, parent, CREATE, { i: { name, scopes } });
        return res.body.data!.createApiKey as { secret: string; apiKey: { id: string } };
      };
      const leaked = await mint(secretOf(manager.stdout), 'leaked', ['keys:manage', 'modules:read']);
      const sibling = await mint(secretOf(manager.stdout), 'sibling', ['modules:read']);
      const child = await mint(leaked.secret, 'child', ['keys:manage', 'modules:read']);
      const grandchild = await mint(child.secret, 'grandchild', ['modules:read']);
      const keys = {
        manager: secretOf(manager.stdout),
        unrelated: secretOf(unrelated.stdout),
        leaked: leaked.secret,
        sibling: sibling.secret,
        child: child.secret,
        grandchild: grandchild.secret,
      };
      const statuses = async () => {
        const out: Record<string, number> = {};
        for (const [name, key] of Object.entries(keys)) out[name] = (await graphql(server.url, key, '{ viewer { org { id } } }')).status;
        return out;
      };
      const everyone = { manager: 200, unrelated: 200, leaked: 200, sibling: 200, child: 200, grandchild: 200 };
      expect(await statuses()).toEqual(everyone);

      // Without --cascade: the key alone, and a note that what it minted still works.
      const alone = await cli(dir, 'keys', 'revoke', leaked.apiKey.id, '--org', 'acme');
      expect(alone.code).toBe(0);
      expect(alone.stdout).toContain(`revoked ${leaked.apiKey.id} at `);
      expect(alone.stdout).toContain(
        `note: it created 2 key(s) that still work; tenantgate keys revoke ${leaked.apiKey.id} --org acme --cascade revokes them too`,
      );
      expect(await statuses()).toEqual({ ...everyone, leaked: 401 });

      const cascade = await cli(dir, 'keys', 'revoke', leaked.apiKey.id, '--org', 'acme', '--cascade');
      expect(cascade.code, cascade.stderr).toBe(0);
      expect(cascade.stdout.trim().split('\n')).toEqual([
        expect.stringMatching(new RegExp(`^already revoked: ${leaked.apiKey.id} at \\d{4}-`)),
        'and the 2 key(s) it created, directly or through keys it created:',
        `  ${child.apiKey.id} "child" modules:read,keys:manage: revoked now`,
        `  ${grandchild.apiKey.id} "grandchild" modules:read: revoked now`,
      ]);
      expect(await statuses()).toEqual({ ...everyone, leaked: 401, child: 401, grandchild: 401 });

      const list = await cli(dir, 'keys', 'list', '--org', 'acme');
      const rows = list.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; revokedAt: string | null });
      const revoked = rows.filter((r) => r.revokedAt !== null).map((r) => r.id);
      expect(revoked).toEqual(expect.arrayContaining([leaked.apiKey.id, child.apiKey.id, grandchild.apiKey.id]));
      for (const id of [idOf(manager.stdout), idOf(unrelated.stdout), sibling.apiKey.id]) expect(revoked).not.toContain(id);
    } finally {
      await server.stop();
    }
  });

  it('names the nearest option, command or scope, in words, on one line, with exit code 2', async () => {
    const cases: [string[], string][] = [
      [['keys', 'create', '--org', 'acme', '--name', 'x', '--scope', 'modules:read'], 'unknown option --scope for keys create; did you mean --scopes?'],
      [['keys', 'revoke', 'key_x', '--org', 'acme', '--cascad'], 'unknown option --cascad for keys revoke; did you mean --cascade?'],
      [['keys', 'create', '--nmae', 'x'], 'unknown option --nmae for keys create; did you mean --name?'],
      [['keys', 'list', '--bogus'], 'unknown option --bogus for keys list; it takes --org'],
      [['keys', 'list', '-x'], 'unknown option -x for keys list; it takes --org'],
      [['keys', 'list', '--scopes', 'x'], 'keys list does not take --scopes; it takes --org'],
      [
        ['keys', 'create', '--org', 'acme', '--name', 'x', '--scopes', 'modules:read,modules:raed'],
        'modules:raed is not a scope (did you mean modules:read?); scopes are modules:read, modules:write, credentials:write, credentials:reveal, keys:manage, usage:read, usage:write, audit:read, admin',
      ],
      [
        ['keys', 'create', '--org', 'acme', '--name', 'x', '--scopes', 'root'],
        'root is not a scope; scopes are modules:read, modules:write, credentials:write, credentials:reveal, keys:manage, usage:read, usage:write, audit:read, admin',
      ],
      [['keys', 'create', '--org'], '--org needs a value'],
      [['keys', 'revoke', 'key_x', '--org', 'acme', '--cascade=yes'], '--cascade takes no value'],
      [['keys', 'lst'], 'unknown command "keys lst"; did you mean keys list? (see tenantgate keys --help)'],
      [['kyes', 'list'], 'unknown command "kyes"; did you mean keys? (see tenantgate --help)'],
      [['orgs', 'list', 'extra'], 'unexpected argument "extra"; usage: tenantgate orgs list'],
      [['keys', 'revoke', '--org', 'acme'], 'usage: tenantgate keys revoke <key id> --org <id> [--cascade]'],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(dir, ...args)));
    for (const [i, [args, message]] of cases.entries()) {
      const r = results[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toBe(`tenantgate: ${message}\n`);
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });

  it('lists a group\'s commands: exit code 2 when the command is missing, 0 when help is asked for', async () => {
    const groups: [string, string[]][] = [
      ['keys', ['keys list --org <id>', 'keys create --org <id>', 'keys revoke <key id> --org <id> [--cascade]']],
      ['orgs', ['orgs list', 'orgs create <id> --name <name>']],
      ['credentials', ['credentials rekey']],
    ];
    const runs = await Promise.all(
      groups.flatMap(([group]) => [cli(dir, group), cli(dir, group, '--help'), group === 'keys' ? cli(dir, 'help', group) : undefined]),
    );
    for (const [i, [group, lines]] of groups.entries()) {
      const [bare, help, helpGroup] = runs.slice(i * 3, i * 3 + 3);
      expect(bare!.code, group).toBe(2);
      expect(bare!.stdout).toBe('');
      expect(bare!.stderr.split('\n')[0]).toMatch(new RegExp(`^tenantgate: ${group} needs a command: `));
      for (const r of helpGroup ? [help!, helpGroup] : [help!]) {
        expect(r.code, group).toBe(0);
        expect(r.stderr).toBe('');
        expect(r.stdout).toBe(bare!.stderr.split('\n').slice(2).join('\n'));
      }
      for (const line of lines) expect(help!.stdout, group).toContain(line);
      // Only the group's own commands.
      for (const other of groups.filter(([g]) => g !== group)) expect(help!.stdout).not.toContain(`  ${other[0]} `);
    }
    const bare = await cli(dir);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('keys revoke <key id>');
  });

  it('suggests only what is near', () => {
    expect(nearest('scope', ['org', 'name', 'scopes'])).toBe('scopes');
    expect(nearest('exp', ['org', 'expires'])).toBe('expires');
    expect(nearest('bogus', ['org', 'name', 'scopes'])).toBeUndefined();
    expect(nearest('x', ['org', 'name'])).toBeUndefined();
  });

  it('prints help', async () => {
    const help = await cli(dir, '--help');
    expect(help.code).toBe(0);
    for (const verb of ['serve', 'migrate', 'orgs create', 'keys create', 'keys revoke', 'credentials rekey', 'copy']) expect(help.stdout).toContain(verb);
  });

  it('copy without --to says what it needs, on one line, with exit code 2, and touches nothing', async () => {
    const r = await cli(dir, 'copy');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^tenantgate: copy needs --to/);
  });

  // The CLI is a process of its own, so it needs a server it can reach (not PGlite in this process).
  it.runIf(multiProcess)('copy --to copies this store into an empty PostgreSQL database, and refuses it once it holds rows', async () => {
    const target = await createScratchDatabase({ migrate: false });
    try {
      const ownerUrl = new URL(target.ownerUrl);
      ownerUrl.password = 'hunter2'; // trust auth ignores it; it must never be printed
      const first = await cli(dir, 'copy', '--to', ownerUrl.toString());
      expect(first.stderr + first.stdout).not.toContain('hunter2');
      expect(first.code, first.stderr).toBe(0);
      const orgs = await target.query<{ id: string }>('SELECT id FROM orgs ORDER BY id');
      expect(orgs.map((o) => o.id)).toEqual(['acme', 'default']);
      const [keys] = await target.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
      const source = new Database(path.join(dir, 'tenantgate.db'), { readonly: true });
      const sourceKeys = (source.prepare('SELECT count(*) AS n FROM api_keys').get() as { n: number }).n;
      source.close();
      expect(keys!.n).toBeGreaterThan(0);
      expect(keys!.n).toBe(sourceKeys);

      const again = await cli(dir, 'copy', '--to', ownerUrl.toString());
      expect(again.code).toBe(2);
      expect(again.stderr).not.toContain('hunter2');
      expect(again.stderr).toMatch(/not empty/);
    } finally {
      await target.drop();
    }
  });
});
