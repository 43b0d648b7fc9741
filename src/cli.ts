import { parseArgs } from 'node:util';
import { SCOPES } from './auth/scopes.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger } from './logger.ts';
import { Authenticator } from './auth/authenticator.ts';
import { systemRepos } from './repos/index.ts';
import { openStore, type OpenedStore } from './store/open.ts';
import { rekeyCredentials } from './maintenance/rekey.ts';
import { main as serve } from './main.ts';
import { GraphQLError } from 'graphql';

const HELP = `tenantgate: a multi-tenant GraphQL gateway

Usage: tenantgate <command> [options]        (from a checkout: npm run cli -- <command>)

  serve                                   start the gateway (same as npm start)
  migrate                                 migrate the store (adopting a pre-tenant file) and exit
  orgs list                               list orgs
  orgs create <id> --name <name>          create an org
  keys list --org <id>                    list an org's keys (never secrets)
  keys create --org <id> --name <name> --scopes <a,b,...> [--expires <ISO time>]
                                          create a key and print its secret once
  keys revoke <key id> --org <id>         revoke a key; a running gateway stops accepting it within
                                          TENANTGATE_KEY_CACHE_TTL_MS (10 s by default)
  credentials rekey                       re-encrypt every credential under TENANTGATE_MASTER_KEY;
                                          set TENANTGATE_MASTER_KEY_PREVIOUS to the old key(s)

Scopes: ${SCOPES.join(', ')}
The CLI works on the store in TENANTGATE_DATA_DIR / TENANTGATE_DATABASE, with or without a
running gateway. Example: tenantgate keys create --org acme --name ci --scopes modules:read`;

function fail(message: string): never {
  process.stderr.write(`tenantgate: ${message}\n`);
  process.exit(2);
}

async function withStore<T>(config: Config, fn: (opened: OpenedStore) => Promise<T>): Promise<T> {
  const logger = createLogger(config.logLevel === 'debug' ? 'debug' : 'warn');
  const opened = openStore(config, logger);
  try {
    return await fn(opened);
  } finally {
    await opened.store.close();
  }
}

function print(rows: Record<string, unknown>[]): void {
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
}

export async function cli(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      org: { type: 'string' },
      name: { type: 'string' },
      scopes: { type: 'string' },
      expires: { type: 'string' },
    },
  });
  const [command, sub, arg] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  if (command === 'serve') return serve();

  const config = loadConfig();
  const logger = createLogger('warn');
  await withStore(config, async (opened) => {
    const authenticator = new Authenticator(opened.store, { cacheTtlMs: 0, flushIntervalMs: 0, logger });
    const system = systemRepos(opened.store, authenticator);
    const route = `${command} ${sub ?? ''}`.trim();
    switch (route) {
      case 'migrate': {
        const m = opened.migration;
        process.stdout.write(
          m.applied.length === 0
            ? 'store is up to date\n'
            : `applied: ${m.applied.join(', ')}${m.backupFile ? `\nbackup of the pre-tenant file: ${m.backupFile}` : ''}\n`,
        );
        return;
      }
      case 'orgs list':
        return print(await system.orgs.list());
      case 'orgs create': {
        if (!arg || !values.name) fail('usage: tenantgate orgs create <id> --name <name>');
        return print([await system.orgs.create({ id: arg, name: values.name })]);
      }
      case 'keys list': {
        if (!values.org) fail('usage: tenantgate keys list --org <id>');
        const keys = await system.apiKeys.list(values.org);
        return print(keys.map(({ hash: _hash, ...key }) => key));
      }
      case 'keys create': {
        if (!values.org || !values.name || !values.scopes) {
          fail('usage: tenantgate keys create --org <id> --name <name> --scopes <a,b,...> [--expires <ISO time>]');
        }
        const expiresAt = values.expires ? new Date(values.expires) : null;
        if (expiresAt && Number.isNaN(expiresAt.getTime())) fail('--expires must be an ISO-8601 time');
        const scopes = values.scopes.split(',').map((s) => s.trim()).filter(Boolean);
        const { apiKey, secret } = await system.apiKeys.create(
          values.org,
          { name: values.name, scopes, expiresAt },
          { keyId: null, scopes: 'all' },
        );
        process.stdout.write(`created key ${apiKey.id} in org "${apiKey.orgId}" with ${apiKey.scopes.join(', ')}\n`);
        process.stdout.write(`secret (shown once, store it now): ${secret}\n`);
        return;
      }
      case 'keys revoke': {
        if (!arg || !values.org) fail('usage: tenantgate keys revoke <key id> --org <id>');
        const { apiKey: key } = await system.apiKeys.revoke(values.org, arg, { keyId: null, scopes: 'all' });
        process.stdout.write(`revoked ${key.id} at ${key.revokedAt}\n`);
        return;
      }
      case 'credentials rekey': {
        const result = await rekeyCredentials(opened.store, opened.secretBox, { logger });
        process.stdout.write(`re-encrypted ${result.resealed} credential(s) under ${opened.secretBox.currentKeyId}\n`);
        return;
      }
      default:
        fail(`unknown command "${route}"; see tenantgate --help`);
    }
  });
}

/** Runs the CLI and turns expected failures into one line on stderr and exit code 2. */
export async function runCli(argv: string[]): Promise<void> {
  try {
    await cli(argv);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof GraphQLError) fail(error.message);
    if ((error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) fail((error as Error).message);
    fail(`failed: ${(error as Error).message}`);
  }
}

const isEntry = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isEntry) await runCli(process.argv.slice(2));
