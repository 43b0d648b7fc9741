import { parseArgs } from 'node:util';
import { SCOPES } from './auth/scopes.ts';
import { ConfigError, isPostgresUrl, loadConfig, type Config } from './config.ts';
import { createLogger } from './logger.ts';
import type { OpenedStore } from './store/open.ts';
import { editDistance } from './edit-distance.ts';

type OptionName = 'help' | 'org' | 'name' | 'scopes' | 'expires' | 'cascade' | 'to' | 'from' | 'format' | 'since' | 'before';

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  org: { type: 'string' },
  name: { type: 'string' },
  scopes: { type: 'string' },
  expires: { type: 'string' },
  cascade: { type: 'boolean' },
  to: { type: 'string' },
  from: { type: 'string' },
  format: { type: 'string' },
  since: { type: 'string' },
  before: { type: 'string' },
} as const satisfies Record<OptionName, { type: 'boolean' | 'string'; short?: string }>;

interface Command {
  /** `keys revoke`, or `serve` for a command outside a group. */
  route: string;
  /** What follows the route in the usage line. */
  usage: string;
  /** Lines of the description, the first beside the usage when it fits. */
  text: string[];
  /** How many positional arguments it takes after its route. */
  args: number;
  options: OptionName[];
}

const COMMANDS: Command[] = [
  { route: 'serve', usage: '', text: ['start the gateway (same as npm start)'], args: 0, options: [] },
  {
    route: 'migrate',
    usage: '',
    text: ['migrate the store (adopting a pre-tenant file) and exit; on PostgreSQL', 'as TENANTGATE_MIGRATION_DATABASE, creating the request role'],
    args: 0,
    options: [],
  },
  { route: 'orgs list', usage: '', text: ['list orgs'], args: 0, options: [] },
  { route: 'orgs create', usage: '<id> --name <name>', text: ['create an org'], args: 1, options: ['name'] },
  { route: 'keys list', usage: '--org <id>', text: ["list an org's keys (never secrets)"], args: 0, options: ['org'] },
  {
    route: 'keys create',
    usage: '--org <id> --name <name> --scopes <a,b,...> [--expires <ISO time>]',
    text: ['create a key and print its secret once'],
    args: 0,
    options: ['org', 'name', 'scopes', 'expires'],
  },
  {
    route: 'keys revoke',
    usage: '<key id> --org <id> [--cascade]',
    text: [
      'revoke a key; with --cascade also every key it created, directly',
      'or through keys it created (after a leak). A running gateway stops',
      'accepting them within TENANTGATE_KEY_CACHE_TTL_MS (10 s by default)',
    ],
    args: 1,
    options: ['org', 'cascade'],
  },
  {
    route: 'credentials rekey',
    usage: '',
    text: ['re-wrap every org\'s data key under TENANTGATE_MASTER_KEY (one row', 'per org); set TENANTGATE_MASTER_KEY_PREVIOUS to the old key(s)'],
    args: 0,
    options: [],
  },
  {
    route: 'copy',
    usage: '--to <postgres://OWNER@HOST/DB>',
    text: [
      'copy this store into an empty PostgreSQL database as its',
      'owning role, in one transaction, verified row by row',
      '(README: Moving to PostgreSQL)',
    ],
    args: 0,
    options: ['to'],
  },
  {
    route: 'usage export',
    usage: '--org <id> --from <ISO date|time> --to <ISO date|time> [--format ndjson|csv]',
    text: [
      "write an org's run-unit events with occurredAt in",
      '[from, to) to stdout, oldest first: NDJSON (default)',
      'or CSV; a date is midnight UTC, a time needs its zone',
    ],
    args: 0,
    options: ['org', 'from', 'to', 'format'],
  },
  {
    route: 'audit verify',
    usage: '[--org <id>]',
    text: [
      "check every org's audit hash chain (or one org's); exit 1 naming",
      'the org and the first record edited, removed or reordered',
    ],
    args: 0,
    options: ['org'],
  },
  {
    route: 'audit export',
    usage: '--org <id> [--since <ISO date|time>] [--format ndjson]',
    text: ["write an org's audit records (at >= since) to stdout, oldest first"],
    args: 0,
    options: ['org', 'since', 'format'],
  },
  {
    route: 'audit prune',
    usage: '--before <ISO date|time> [--org <id>]',
    text: [
      'delete audit records older than --before (retention); a checkpoint',
      'record keeps what is left verifiable (README: Audit and compliance)',
    ],
    args: 0,
    options: ['before', 'org'],
  },
];

const GROUPS = [...new Set(COMMANDS.filter((c) => c.route.includes(' ')).map((c) => c.route.split(' ')[0]!))];
const TOP_LEVEL = [...new Set(COMMANDS.map((c) => c.route.split(' ')[0]!))];

const COLUMN = 42;
function describe(commands: Command[]): string {
  const lines: string[] = [];
  for (const c of commands) {
    const head = `  ${c.route}${c.usage ? ` ${c.usage}` : ''}`;
    const [first, ...rest] = c.text;
    if (head.length < COLUMN) lines.push(`${head.padEnd(COLUMN)}${first}`);
    else lines.push(head, `${' '.repeat(COLUMN)}${first}`);
    for (const line of rest) lines.push(`${' '.repeat(COLUMN)}${line}`);
  }
  return lines.join('\n');
}

const HELP = `tenantgate: a multi-tenant GraphQL gateway

Usage: tenantgate <command> [options]        (from a checkout: npm run cli -- <command>)

${describe(COMMANDS)}

Scopes: ${SCOPES.join(', ')}
The CLI works on the store in TENANTGATE_DATA_DIR / TENANTGATE_DATABASE, with or without a
running gateway. Example: tenantgate keys create --org acme --name ci --scopes modules:read`;

const commandsOf = (group: string) => COMMANDS.filter((c) => c.route.startsWith(`${group} `)).map((c) => c.route.split(' ')[1]!);

function groupHelp(group: string): string {
  return `Usage: tenantgate ${group} <command> [options]\n\n${describe(COMMANDS.filter((c) => c.route.startsWith(`${group} `)))}`;
}

/** A mistake in how the CLI was called: one line on stderr, then `detail` (help text) if any, and exit code 2. */
class UsageError extends Error {
  constructor(
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

function fail(message: string, detail?: string): never {
  process.stderr.write(`tenantgate: ${message}\n${detail ? `\n${detail}\n` : ''}`);
  process.exit(2);
}

/** The candidate nearest to `input`, if it is near enough to be what was meant. */
export function nearest(input: string, candidates: readonly string[]): string | undefined {
  const allowed = Math.max(1, Math.min(2, Math.floor(input.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(input, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  if (best !== undefined && bestDistance <= allowed) return best;
  // A prefix of exactly one candidate: --exp for --expires.
  const prefixed = input.length >= 2 ? candidates.filter((c) => c.startsWith(input)) : [];
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

const flags = (names: readonly string[]) => names.map((n) => `--${n}`).join(', ');

/** The command the positionals name, or a usage error that says what would have been right. */
function findCommand(positionals: readonly string[]): { command: Command; args: string[] } | { group: string } {
  const [first, second] = positionals;
  if (first === undefined) throw new UsageError('no command');
  if (!TOP_LEVEL.includes(first)) {
    const guess = nearest(first, TOP_LEVEL);
    throw new UsageError(
      `unknown command "${first}"${guess ? `; did you mean ${guess}?` : `; commands: ${TOP_LEVEL.join(', ')}`} (see tenantgate --help)`,
    );
  }
  if (!GROUPS.includes(first)) return { command: COMMANDS.find((c) => c.route === first)!, args: positionals.slice(1) };
  if (second === undefined) return { group: first };
  const command = COMMANDS.find((c) => c.route === `${first} ${second}`);
  if (!command) {
    const names = commandsOf(first);
    const guess = nearest(second, names);
    throw new UsageError(
      `unknown command "${first} ${second}"; ${guess ? `did you mean ${first} ${guess}?` : `${first} commands: ${names.join(', ')}`} (see tenantgate ${first} --help)`,
    );
  }
  return { command, args: positionals.slice(2) };
}

/**
 * Reads the arguments as parseArgs would (strict), but says what is wrong in words: Node's
 * ERR_PARSE_ARGS messages name no alternative and quote unevenly. Unknown options are checked
 * against the command's own options once the command is known.
 */
function readArgs(argv: string[]): { values: Partial<Record<OptionName, string | boolean>>; positionals: string[] } {
  const positionals: string[] = [];
  const given: { name: string; raw: string }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      given.push({ name, raw: `--${name}` });
      const spec = (OPTIONS as Record<string, { type: string }>)[name];
      if (spec?.type === 'string' && eq < 0) {
        const value = argv[i + 1];
        if (value === undefined || value.startsWith('-')) {
          throw new UsageError(`--${name} needs a value${value === undefined ? '' : ` (for one starting with "-", write --${name}=<value>)`}`);
        }
        i++;
      } else if (spec?.type === 'boolean' && eq >= 0) {
        throw new UsageError(`--${name} takes no value`);
      }
    } else if (arg.startsWith('-') && arg.length > 1) {
      for (const letter of arg.slice(1)) {
        const long = Object.entries(OPTIONS).find(([, o]) => 'short' in o && o.short === letter)?.[0];
        given.push({ name: long ?? `-${letter}`, raw: `-${letter}` });
      }
    } else {
      positionals.push(arg);
    }
  }

  let command: Command | undefined;
  try {
    const found = findCommand(positionals);
    if ('command' in found) command = found.command;
  } catch {
    // Reported below, after any unknown option (which may have swallowed a positional).
  }
  const accepted: string[] = command ? command.options : Object.keys(OPTIONS).filter((n) => n !== 'help');
  for (const { name, raw } of given) {
    if (name === 'help' || accepted.includes(name)) continue;
    const where = command ? ` for ${command.route}` : '';
    if (name.startsWith('-') || !(name in OPTIONS)) {
      const guess = name.startsWith('-') ? undefined : nearest(name, accepted);
      if (guess) throw new UsageError(`unknown option ${raw}${where}; did you mean --${guess}?`);
      throw new UsageError(
        `unknown option ${raw}${where}; ${accepted.length > 0 ? `it takes ${flags(accepted)}` : 'it takes no options'}`,
      );
    }
    throw new UsageError(`${command!.route} does not take --${name}; ${accepted.length > 0 ? `it takes ${flags(accepted)}` : 'it takes no options'}`);
  }

  try {
    const parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
    return { values: parsed.values, positionals: parsed.positionals };
  } catch (error) {
    // Not expected after the checks above; still a usage error, without Node's wording.
    if ((error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError(`could not read the arguments: ${(error as Error).message.split('. ')[0]!.replace(/['"]/g, '')}`);
    }
    throw error;
  }
}

/** The scopes of --scopes, each checked, naming the one that is not a scope. */
function readScopes(text: string): string[] {
  const scopes = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (scopes.length === 0) throw new UsageError(`--scopes needs at least one scope: ${SCOPES.join(', ')}`);
  for (const scope of scopes) {
    if ((SCOPES as readonly string[]).includes(scope)) continue;
    const guess = nearest(scope, SCOPES);
    throw new UsageError(`${scope} is not a scope${guess ? ` (did you mean ${guess}?)` : ''}; scopes are ${SCOPES.join(', ')}`);
  }
  return scopes;
}

async function withStore<T>(config: Config, fn: (opened: OpenedStore) => Promise<T>, logger = createLogger(config.logLevel === 'debug' ? 'debug' : 'warn')): Promise<T> {
  const { openStore } = await import('./store/open.ts');
  const opened = await openStore(config, logger);
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
  const { values, positionals } = readArgs(argv);
  if (positionals[0] === 'help') {
    const topic = positionals[1];
    if (topic === undefined) return void process.stdout.write(`${HELP}\n`);
    if (!GROUPS.includes(topic)) throw new UsageError(`no help on "${topic}"; groups: ${GROUPS.join(', ')} (see tenantgate --help)`);
    return void process.stdout.write(`${groupHelp(topic)}\n`);
  }
  if (positionals.length === 0) {
    if (values.help) return void process.stdout.write(`${HELP}\n`);
    throw new UsageError('which command? (tenantgate --help shows this on stdout)', HELP);
  }
  const found = findCommand(positionals);
  if ('group' in found) {
    if (values.help) return void process.stdout.write(`${groupHelp(found.group)}\n`);
    throw new UsageError(`${found.group} needs a command: ${commandsOf(found.group).join(', ')}`, groupHelp(found.group));
  }
  const { command, args } = found;
  if (values.help) {
    const group = command.route.split(' ')[0]!;
    return void process.stdout.write(`${GROUPS.includes(group) ? groupHelp(group) : HELP}\n`);
  }
  const usage = `usage: tenantgate ${command.route}${command.usage ? ` ${command.usage}` : ''}`;
  if (args.length > command.args) throw new UsageError(`unexpected argument "${args[command.args]}"; ${usage}`);
  const arg = args[0];
  const text = (name: OptionName) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);

  if (command.route === 'serve') return (await import('./main.ts')).main();
  if (command.route === 'copy') {
    const to = text('to');
    process.exitCode = await (await import('./maintenance/copy.ts')).runCopy(to === undefined ? [] : [`--to=${to}`], process.env);
    return;
  }
  // Checked before the store is opened: a usage error touches nothing.
  const need = (ok: unknown): void => {
    if (!ok) throw new UsageError(usage);
  };
  const org = text('org');
  const name = text('name');
  if (command.route === 'usage export') return usageExport(org, text('from'), text('to'), text('format'), usage);
  if (command.route.startsWith('audit ')) return audit(command.route, org, text('since'), text('before'), text('format'), usage);
  let scopes: string[] = [];
  let expiresAt: Date | null = null;
  switch (command.route) {
    case 'orgs create':
      need(arg && name);
      break;
    case 'keys list':
      need(org);
      break;
    case 'keys create': {
      need(org && name && text('scopes'));
      scopes = readScopes(text('scopes')!);
      const expires = text('expires');
      expiresAt = expires ? new Date(expires) : null;
      if (expiresAt && Number.isNaN(expiresAt.getTime())) throw new UsageError('--expires must be an ISO-8601 time');
      break;
    }
    case 'keys revoke':
      need(arg && org);
      break;
  }

  const config = loadConfig();
  if (command.route === 'migrate' && isPostgresUrl(config.database) && !config.migrationDatabase) {
    // The request role may not change the schema; migrating is the owning role's.
    throw new ConfigError("tenantgate migrate on PostgreSQL needs TENANTGATE_MIGRATION_DATABASE, the owning role's postgres:// URL");
  }
  const logger = createLogger('warn');
  // Loaded only now: a usage error answers without loading the store, GraphQL or the crypto.
  const [{ Authenticator }, { systemRepos }, { rekeyCredentials }] = await Promise.all([
    import('./auth/authenticator.ts'),
    import('./repos/index.ts'),
    import('./maintenance/rekey.ts'),
  ]);
  await withStore(config, async (opened) => {
    const authenticator = new Authenticator(opened.store, { cacheTtlMs: 0, flushIntervalMs: 0, logger });
    const system = systemRepos(opened.store, authenticator);
    const operator = { keyId: null, scopes: 'all' } as const;
    switch (command.route) {
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
      case 'orgs create':
        return print([await system.orgs.create({ id: arg!, name: name! }, CLI_ACTOR)]);
      case 'keys list': {
        const keys = await system.apiKeys.list(org!);
        return print(keys.map(({ hash: _hash, ...key }) => key));
      }
      case 'keys create': {
        const { apiKey, secret } = await system.apiKeys.create(org!, { name: name!, scopes, expiresAt }, operator, CLI_ACTOR);
        process.stdout.write(`created key ${apiKey.id} in org "${apiKey.orgId}" with ${apiKey.scopes.join(', ')}\n`);
        process.stdout.write(`secret (shown once, store it now): ${secret}\n`);
        return;
      }
      case 'keys revoke': {
        const cascade = values.cascade === true;
        const { apiKey, descendants, revoked } = await system.apiKeys.revoke(org!, arg!, operator, CLI_ACTOR, { cascade });
        const now = revoked.includes(apiKey.id);
        process.stdout.write(`${now ? 'revoked' : 'already revoked:'} ${apiKey.id} at ${apiKey.revokedAt}\n`);
        if (cascade) {
          process.stdout.write(
            descendants.length === 0
              ? 'it created no keys\n'
              : `and the ${descendants.length} key(s) it created, directly or through keys it created:\n`,
          );
          for (const k of descendants) {
            const when = revoked.includes(k.id) ? 'revoked now' : `already revoked at ${k.revokedAt}`;
            process.stdout.write(`  ${k.id} "${k.name}" ${k.scopes.join(',')}: ${when}\n`);
          }
        } else {
          const live = (await system.apiKeys.descendants(org!, apiKey.id)).filter((k) => k.revokedAt === null);
          if (live.length > 0) {
            process.stdout.write(
              `note: it created ${live.length} key(s) that still work; tenantgate keys revoke ${apiKey.id} --org ${org} --cascade revokes them too\n`,
            );
          }
        }
        return;
      }
      case 'credentials rekey': {
        const result = await rekeyCredentials(opened.store, opened.secretBox, { logger });
        const moved = result.moved > 0 ? `; moved ${result.moved} credential(s) to their org's data key` : '';
        process.stdout.write(`re-wrapped ${result.rewrapped} org data key(s) under ${opened.secretBox.currentKeyId}${moved}\n`);
        return;
      }
    }
  });
}

/** `usage export`: its arguments checked before the store is opened, the org's existence after. */
async function usageExport(org: string | undefined, from: string | undefined, to: string | undefined, format: string | undefined, usage: string): Promise<void> {
  if (!org || !from || !to) throw new UsageError(usage);
  const { EXPORT_FORMATS, exportRunUnits, parseExportTime } = await import('./maintenance/usage-export.ts');
  const since = parseExportTime(from);
  const until = parseExportTime(to);
  const zone = 'an ISO date (2026-12-01) or date and time with its zone (2026-12-01T00:00:00Z)';
  if (since === undefined) throw new UsageError(`--from must be ${zone}; got "${from}"`);
  if (until === undefined) throw new UsageError(`--to must be ${zone}; got "${to}"`);
  if (since >= until) throw new UsageError(`--from must be before --to (${since} is not before ${until})`);
  const chosen = format ?? 'ndjson';
  if (!(EXPORT_FORMATS as readonly string[]).includes(chosen)) {
    throw new UsageError(`--format must be ${EXPORT_FORMATS.join(' or ')}; got "${chosen}"`);
  }
  const config = loadConfig();
  // A reader that stops early (| head) closes the pipe: stop there, as Unix tools do, instead of failing.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    fail(`failed: could not write the export: ${error.message}`);
  });
  // Every log line to stderr, whatever its level: stdout is the export.
  const logger = createLogger(config.logLevel === 'debug' ? 'debug' : 'warn', (line) => process.stderr.write(`${line}\n`));
  await withStore(
    config,
    async (opened) => {
      if (!(await opened.store.forOrg(org).org())) {
        const { notFound } = await import('./errors.ts');
        throw notFound('Org', org);
      }
      await exportRunUnits(opened.store, { orgId: org, from: since, to: until, format: chosen as (typeof EXPORT_FORMATS)[number] }, process.stdout);
    },
    logger,
  );
}

/** What the audit log names as the actor of the operator's commands. */
const CLI_ACTOR = Object.freeze({ keyId: null, keyPrefix: null, requestId: null, address: null, via: 'cli' as const });

/** `audit verify|export|prune`: arguments checked before the store is opened, the org's existence after. */
async function audit(
  route: string,
  org: string | undefined,
  since: string | undefined,
  before: string | undefined,
  format: string | undefined,
  usage: string,
): Promise<void> {
  const { parseExportTime } = await import('./maintenance/usage-export.ts');
  const zone = 'an ISO date (2026-12-01) or date and time with its zone (2026-12-01T00:00:00Z)';
  const time = (flag: string, value: string | undefined): string | undefined => {
    if (value === undefined) return undefined;
    const parsed = parseExportTime(value);
    if (parsed === undefined) throw new UsageError(`--${flag} must be ${zone}; got "${value}"`);
    return parsed;
  };
  if (route === 'audit export' && !org) throw new UsageError(usage);
  if (route === 'audit export' && (format ?? 'ndjson') !== 'ndjson') throw new UsageError(`--format must be ndjson; got "${format}"`);
  if (route === 'audit prune' && !before) throw new UsageError(usage);
  const sinceAt = time('since', since);
  const beforeAt = time('before', before);
  const config = loadConfig();
  if (route === 'audit export') {
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0);
      fail(`failed: could not write the export: ${error.message}`);
    });
  }
  // Every log line to stderr, whatever its level: stdout is the answer.
  const logger = createLogger(config.logLevel === 'debug' ? 'debug' : 'warn', (line) => process.stderr.write(`${line}\n`));
  const { exportAudit, pruneAudit, verifyAudit } = await import('./maintenance/audit.ts');
  await withStore(
    config,
    async (opened) => {
      if (org !== undefined && !(await opened.store.forOrg(org).org())) {
        const { notFound } = await import('./errors.ts');
        throw notFound('Org', org);
      }
      if (route === 'audit export') {
        await exportAudit(opened.store, org!, sinceAt, process.stdout);
        return;
      }
      if (route === 'audit prune') {
        const pruned = await pruneAudit(opened.store, beforeAt!, CLI_ACTOR, org);
        const total = pruned.reduce((n, p) => n + p.pruned, 0);
        process.stdout.write(`pruned ${total} audit record(s) before ${beforeAt} in ${pruned.filter((p) => p.pruned > 0).length} org(s)\n`);
        return;
      }
      const result = await verifyAudit(opened.store, { orgId: org, logger });
      if (result.failures.length === 0) {
        process.stdout.write(`audit log intact: ${result.checked} record(s) in ${result.orgs} org(s) checked\n`);
        return;
      }
      for (const f of result.failures) {
        process.stdout.write(`org "${f.orgId}": record seq ${f.seq}${f.id ? ` (${f.id})` : ''} ${f.problem === 'head' ? 'is past the chain head' : `was ${f.problem}`}\n`);
      }
      process.stdout.write(`audit log broken in ${result.failures.length} of ${result.orgs} org(s); ${result.checked} record(s) checked\n`);
      process.exitCode = 1;
    },
    logger,
  );
}

/** Runs the CLI and turns expected failures into one line on stderr and exit code 2. */
export async function runCli(argv: string[]): Promise<void> {
  try {
    await cli(argv);
  } catch (error) {
    if (error instanceof UsageError) fail(error.message, error.detail);
    if (error instanceof ConfigError) fail(error.message);
    const { GraphQLError } = await import('graphql');
    if (error instanceof GraphQLError) fail(error.message);
    fail(`failed: ${(error as Error).message}`);
  }
}

const isEntry = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isEntry) await runCli(process.argv.slice(2));
