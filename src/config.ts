import path from 'node:path';
import { z } from 'zod';
import type { OperationLimit } from './errors.ts';
import { editDistance } from './edit-distance.ts';

/**
 * The only place environment variables are read. Every setting is one entry of `environment`
 * below: its default, what it accepts and what it means. A bad value stops the start with one
 * line naming the variable and what it accepts; a secret's value is never repeated.
 */

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `maxDepth`, `maxCost`, ...: one per limit an operation can be refused for (errors.ts). */
type OperationLimits = { [L in OperationLimit as `max${Capitalize<L>}`]: number };

/** Request and operation limits; over one, an operation fails with LIMIT_EXCEEDED naming it. */
export interface Limits extends OperationLimits {
  /** Largest request body in bytes; larger answers 413. */
  maxBodyBytes: number;
}

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** A SQLite file path (absolute), or a postgres:// URL naming the request role (it may hold a password: never log it). */
  database: string;
  /** The owning role's postgres:// URL, used only to migrate (on start when set, and by `tenantgate migrate`); PostgreSQL only. */
  migrationDatabase: string | undefined;
  /** The PostgreSQL pool (ignored on SQLite). */
  databasePool: DatabasePool;
  /** 32-byte key from TENANTGATE_MASTER_KEY; undefined means "use or generate the data-dir key". */
  masterKey: Buffer | undefined;
  /** Keys that older credential rows may still be encrypted with, during a rotation. */
  previousMasterKeys: Buffer[];
  production: boolean;
  logLevel: LogLevel;
  introspection: boolean;
  graphiql: boolean;
  /** Serve the operator dashboard (dist/dashboard) on GET /dashboard. */
  dashboard: boolean;
  /** Failed authentications one client address may make per minute before it gets 429. */
  authFailuresPerMinute: number;
  /** How long a verified key stays cached in process, in milliseconds. */
  keyCacheTtlMs: number;
  /** Take the client address from X-Forwarded-For (only behind a proxy you run). */
  trustProxy: boolean;
  limits: Limits;
  /** Serve Prometheus metrics at GET /metrics. */
  metrics: boolean;
  /** When set, /metrics wants `Authorization: Bearer <this>`; a secret, never logged. */
  metricsToken: string | undefined;
  /** Bytes (estimated) of query answers the response cache keeps, all orgs together; 0 turns it off. */
  responseCacheBytes: number;
  /** How operations execute: compiled (graphql-jit) once they come back, or always interpreted. */
  execution: Execution;
  /** Origins (scheme://host[:port]) whose browser pages may call the API; none by default. */
  corsOrigins: string[];
  /** A request's headers must arrive within this many ms, the whole request within requestTimeoutMs. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** What an org without a quota of its own gets (setOrgQuota), and when `usage` warns. */
  quotas: QuotaDefaults;
  /** Audit records older than this many days are pruned on start (TENANTGATE_AUDIT_RETENTION_DAYS); null keeps them. */
  auditRetentionDays: number | null;
  /** Per-org admission, so that one org cannot take the whole process. */
  fairness: Fairness;
}

export interface QuotaDefaults {
  /** null: unlimited. */
  runUnitsPerMonth: number | null;
  requestsPerMinute: number | null;
  /** null: a tenth of a minute's requests (requestsPerMinute / 6, at least 1). */
  burst: number | null;
  /** `usage.nearQuota` is true from this share of the run-unit quota on (percent). */
  warnPercent: number;
}

export interface Fairness {
  /** Requests of one org being answered at once in this process; more wait in its queue. */
  maxInFlight: number;
  /** Requests of one org that may wait for a slot; past it, 429. */
  queue: number;
  /** The longest a request waits in its org's queue before it answers 429. */
  queueTimeoutMs: number;
  /** Subscription streams one org may hold open in this process; past it, RATE_LIMITED (limit: subscriptions). */
  maxSubscriptions: number;
  /** Subscription streams open in this process, every org together. */
  maxSubscriptionsTotal: number;
}

export interface Execution {
  /** Compile queries and mutations that keep coming back (graphql-jit); false: graphql-js interprets every one. */
  compiled: boolean;
  /** Interpreted executions of an operation before it is compiled; 0 compiles on first use. */
  compileAfter: number;
}

export interface DatabasePool {
  /** Connections at most. */
  max: number;
  /** How long a request waits for a connection before the store is unavailable. */
  connectTimeoutMs: number;
  /** An idle connection is closed after this. */
  idleTimeoutMs: number;
  /** The longest a statement may run; the server cancels it then. */
  statementTimeoutMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

/** What a setting is, beside the schema that parses it. */
export interface SettingInfo {
  /** The value taken when the variable is unset or blank, as it would be written; none when it is computed. */
  default?: string;
  meaning: string;
  /** The value is a secret: no message repeats it. */
  secret?: true;
}

/** Every setting's schema is registered here with its SettingInfo. */
export const settingInfo = z.registry<SettingInfo>();

// Each value is read without surrounding whitespace, and a blank one counts as unset.
const blankIsUnset = (raw: unknown) => (typeof raw === 'string' ? raw.trim() || undefined : raw);

function withDefault<T>(fallback: string, schema: z.ZodType<T, string>, info: Omit<SettingInfo, 'default'>) {
  return z.preprocess(blankIsUnset, schema.prefault(fallback)).register(settingInfo, { ...info, default: fallback });
}

function optional<T>(schema: z.ZodType<T, string>, info: Omit<SettingInfo, 'default'>) {
  return z.preprocess(blankIsUnset, schema.optional()).register(settingInfo, info);
}

// The messages below say what a variable accepts and follow its name; one that names the
// variable itself (a rule with its own wording) is used as it is. See messageFor.

function wholeNumber(min: number, max: number) {
  const error = `must be a whole number from ${min} to ${max}`;
  return z.string({ error }).regex(/^\d+$/).transform(Number).pipe(z.number({ error }).min(min).max(max));
}

const trueOrFalse = z.stringbool({ truthy: ['1', 'true', 'yes', 'on'], falsy: ['0', 'false', 'no', 'off'], error: 'must be true or false' });

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.string().toLowerCase().pipe(z.enum(values, { error: `must be one of ${values.join(', ')}` }));
}

const hostName = z.string({ error: 'must be a host name or IP address' }).max(253).regex(/^[A-Za-z0-9.:_-]+$/);

/** A postgres:// or postgresql:// URL: the PostgreSQL store. */
export const isPostgresUrl = (value: string) => /^postgres(ql)?:\/\//i.test(value);

/**
 * A PostgreSQL URL with a role and a database. The messages name the variable and never repeat
 * the value: a URL may hold a password.
 */
function postgresUrl(name: string) {
  return z.string().superRefine((value, ctx) => {
    const fail = (why: string) => ctx.addIssue({ code: 'custom', message: `${name} ${why}` });
    if (!isPostgresUrl(value)) return fail('must be a postgres:// URL (postgres://ROLE[:PASSWORD]@HOST[:PORT]/DATABASE)');
    if (!URL.canParse(value)) return fail('is not a valid URL (a password with @, :, / or % must be percent-encoded)');
    const url = new URL(value);
    if (!url.username) return fail('names no role (postgres://ROLE@HOST/DATABASE)');
    if (!url.hostname) return fail('names no host (postgres://ROLE@HOST/DATABASE)');
    if (url.pathname.length <= 1) return fail('names no database (postgres://ROLE@HOST/DATABASE)');
  });
}

const databasePath = z.string().superRefine((value, ctx) => {
  if (isPostgresUrl(value)) {
    const checked = postgresUrl('TENANTGATE_DATABASE').safeParse(value);
    if (!checked.success) ctx.addIssue({ code: 'custom', message: checked.error.issues[0]!.message });
  } else if (value.includes('://')) {
    ctx.addIssue({ code: 'custom', message: 'TENANTGATE_DATABASE must be a SQLite file path or a postgres:// URL (got another URL)' });
  }
});

const MASTER_KEY_ACCEPTS = 'must be 32 bytes encoded as base64 (44 characters); generate one with: openssl rand -base64 32';

const masterKey = z
  .string({ error: MASTER_KEY_ACCEPTS })
  .regex(/^[A-Za-z0-9+/]+={0,2}$/)
  .transform((base64) => Buffer.from(base64, 'base64'))
  .refine((key) => key.length === 32, { error: MASTER_KEY_ACCEPTS });

const commaSeparated = z.string().transform((list) => list.split(',').map((part) => part.trim()));

/**
 * An origin exactly as a browser sends it (`https://dash.example.com`, `http://localhost:5173`):
 * no path, no wildcard, since keys travel in a header and an allowed origin is a page trusted to
 * hold one.
 */
function isOrigin(origin: string): boolean {
  if (origin.includes('*') || !URL.canParse(origin)) return false;
  const parsed = new URL(origin);
  return /^https?:$/.test(parsed.protocol) && parsed.origin === origin;
}

const origin = z.string().refine(isOrigin, {
  error: (issue) =>
    `TENANTGATE_CORS_ORIGINS must be a comma-separated list of origins like https://dash.example.com (got ${quoted(issue.input)})`,
});

const MiB = 1_048_576;

/** Every variable tenantgate reads. The README's Configuration table lists the same names (a test checks). */
export const environment = z.object({
  TENANTGATE_HOST: withDefault('127.0.0.1', hostName, { meaning: 'address to listen on' }),
  TENANTGATE_PORT: withDefault('4000', wholeNumber(0, 65535), { meaning: 'port to listen on (0 picks a free one)' }),
  TENANTGATE_DATA_DIR: withDefault('./data', z.string(), {
    meaning: 'where the SQLite store, its backups and the generated master key live',
  }),
  TENANTGATE_DATABASE: optional(databasePath, {
    meaning: "the SQLite file, or a postgres:// URL of the request role (see PostgreSQL below); <data dir>/tenantgate.db when unset",
  }),
  TENANTGATE_MIGRATION_DATABASE: optional(postgresUrl('TENANTGATE_MIGRATION_DATABASE'), {
    meaning: "PostgreSQL only: the owning role's postgres:// URL, used only to migrate (on start when set, and by tenantgate migrate)",
    secret: true,
  }),
  TENANTGATE_DATABASE_POOL_MAX: withDefault('10', wholeNumber(2, 1000), {
    meaning: 'PostgreSQL only: connections each process may hold at once',
  }),
  TENANTGATE_DATABASE_CONNECT_TIMEOUT_MS: withDefault('5000', wholeNumber(100, 600_000), {
    meaning: 'PostgreSQL only: how long a request waits for a connection before it answers SERVICE_UNAVAILABLE',
  }),
  TENANTGATE_DATABASE_STATEMENT_TIMEOUT_MS: withDefault('5000', wholeNumber(100, 600_000), {
    meaning: "PostgreSQL only: the longest a statement may run (the server's statement_timeout); longer answers SERVICE_UNAVAILABLE",
  }),
  TENANTGATE_MASTER_KEY: optional(masterKey, {
    meaning: 'the key that encrypts credentials; generated into <data dir>/master.key when unset',
    secret: true,
  }),
  TENANTGATE_MASTER_KEY_PREVIOUS: optional(commaSeparated.pipe(z.array(masterKey)), {
    meaning: 'old master keys, still accepted for reading during a rotation',
    secret: true,
  }),
  TENANTGATE_PRODUCTION: withDefault('false', trueOrFalse, {
    meaning: 'production mode: introspection and GraphiQL off unless enabled, masked errors',
  }),
  TENANTGATE_INTROSPECTION: optional(trueOrFalse, { meaning: 'allow schema introspection; on unless in production' }),
  TENANTGATE_GRAPHIQL: optional(trueOrFalse, { meaning: 'serve GraphiQL on GET /graphql; on unless in production' }),
  TENANTGATE_DASHBOARD: optional(trueOrFalse, { meaning: 'serve the operator dashboard on GET /dashboard; on unless in production' }),
  TENANTGATE_LOG_LEVEL: withDefault('info', oneOf(LOG_LEVELS), { meaning: 'the lowest level of log line written' }),
  TENANTGATE_AUTH_FAILURES_PER_MINUTE: withDefault('30', wholeNumber(1, 1_000_000), {
    meaning: 'failed authentications one client address may make per minute before it gets 429',
  }),
  TENANTGATE_KEY_CACHE_TTL_MS: withDefault('10000', wholeNumber(0, 3_600_000), {
    meaning: 'how long a verified key is cached in process; other processes see a revocation within this time',
  }),
  TENANTGATE_TRUST_PROXY: withDefault('false', trueOrFalse, {
    meaning: 'take the client address from the last X-Forwarded-For entry (only behind a proxy you run)',
  }),
  TENANTGATE_MAX_BODY_BYTES: withDefault(String(2 * MiB), wholeNumber(1024, 100 * MiB), {
    meaning: 'request body bytes; more answers 413 (a full credential, 64 fields of 16 KiB, is about 1.05 MiB of JSON)',
  }),
  TENANTGATE_MAX_DEPTH: withDefault('10', wholeNumber(1, 1000), {
    meaning: 'field nesting of an operation (the deepest useful query has 5)',
  }),
  TENANTGATE_MAX_ALIASES: withDefault('15', wholeNumber(0, 10_000), { meaning: 'aliased fields per operation' }),
  TENANTGATE_MAX_TOKENS: withDefault('2000', wholeNumber(10, 1_000_000), {
    meaning: 'lexical tokens per document (introspection has about 180)',
  }),
  TENANTGATE_MAX_DIRECTIVES: withDefault('20', wholeNumber(0, 10_000), { meaning: 'directives per operation' }),
  TENANTGATE_MAX_COST: withDefault('20000', wholeNumber(1, 10_000_000), {
    meaning: "GraphQL Armor's cost of an operation; every field of modules(first: 100) costs about 9000, so two full pages fit",
  }),
  TENANTGATE_MAX_VARIABLE_DEPTH: withDefault('32', wholeNumber(1, 1000), {
    meaning: 'nesting of objects and arrays in `variables` and in literals of the document (deeper is refused, never half-handled)',
  }),
  TENANTGATE_MAX_FIELDS: withDefault('1000', wholeNumber(1, 1_000_000), {
    meaning: "fields per document, fragment spreads expanded (GraphiQL's introspection query has 469, a page of modules 26)",
  }),
  TENANTGATE_MAX_FIELD_REPEATS: withDefault('16', wholeNumber(1, 1_000_000), {
    meaning: 'selections merged into one key of the answer (validation compares each pair of them)',
  }),
  TENANTGATE_MAX_FRAGMENT_SPREADS: withDefault('32', wholeNumber(0, 1_000_000), {
    meaning: 'fragment spreads landing at one place of the answer (validation compares each pair of fragments there)',
  }),
  TENANTGATE_METRICS: withDefault('true', trueOrFalse, { meaning: 'serve Prometheus metrics on GET /metrics' }),
  TENANTGATE_METRICS_TOKEN: optional(
    z.string({ error: 'must be at least 16 printable characters without spaces' }).regex(/^[\x21-\x7e]{16,}$/),
    { meaning: 'if set, /metrics wants Authorization: Bearer <token>', secret: true },
  ),
  TENANTGATE_RESPONSE_CACHE_BYTES: withDefault(String(8 * MiB), wholeNumber(0, 1024 * MiB), {
    meaning: 'estimated bytes of modules/module answers kept in process, all orgs together; 0 turns the cache off',
  }),
  TENANTGATE_COMPILED_EXECUTION: withDefault('true', trueOrFalse, {
    meaning: 'run queries and mutations that come back as compiled code (graphql-jit); false interprets every one (graphql-js)',
  }),
  TENANTGATE_COMPILE_AFTER: withDefault('10', wholeNumber(0, 1_000_000), {
    meaning: 'interpreted executions of an operation before it is compiled; 0 compiles it on first use',
  }),
  TENANTGATE_CORS_ORIGINS: optional(commaSeparated.pipe(z.array(origin)), {
    meaning: 'origins whose browser pages may call the API; none when unset',
  }),
  TENANTGATE_DEFAULT_RUN_UNITS_PER_MONTH: optional(wholeNumber(1, Number.MAX_SAFE_INTEGER), {
    meaning: "run units an org may record per UTC calendar month unless setOrgQuota gave it its own; unlimited when unset",
  }),
  TENANTGATE_DEFAULT_REQUESTS_PER_MINUTE: optional(wholeNumber(1, 100_000_000), {
    meaning: "requests an org may make per minute (all its keys, every replica) unless setOrgQuota gave it its own; unlimited when unset",
  }),
  TENANTGATE_DEFAULT_BURST: optional(wholeNumber(1, 100_000_000), {
    meaning: 'requests an org may make at once above its rate; a tenth of a minute\'s (requests per minute / 6) when unset',
  }),
  TENANTGATE_QUOTA_WARN_PERCENT: withDefault('80', wholeNumber(1, 100), {
    meaning: "from this share of an org's run-unit quota on, usage.nearQuota is true (dashboards warn)",
  }),
  TENANTGATE_AUDIT_RETENTION_DAYS: optional(wholeNumber(1, 36_500), {
    meaning: 'on start, audit records older than this many days are pruned (a checkpoint keeps the rest verifiable); kept forever when unset',
  }),
  TENANTGATE_ORG_MAX_IN_FLIGHT: withDefault('4', wholeNumber(1, 10_000), {
    meaning: 'requests of one org this process answers at once; more wait in the org\'s queue (one org cannot take the process)',
  }),
  TENANTGATE_ORG_QUEUE: withDefault('32', wholeNumber(0, 1_000_000), {
    meaning: 'requests of one org that may wait for a slot; more answer 429 RATE_LIMITED (limit: concurrency)',
  }),
  TENANTGATE_ORG_QUEUE_TIMEOUT_MS: withDefault('1000', wholeNumber(1, 600_000), {
    meaning: 'how long a request waits in its org\'s queue before it answers 429 RATE_LIMITED (limit: concurrency)',
  }),
  TENANTGATE_ORG_MAX_SUBSCRIPTIONS: withDefault('16', wholeNumber(1, 100_000), {
    meaning: 'subscription streams (moduleEvents) one org may hold open per process; more answer RATE_LIMITED (limit: subscriptions)',
  }),
  TENANTGATE_MAX_SUBSCRIPTIONS: withDefault('1000', wholeNumber(1, 1_000_000), {
    meaning: 'subscription streams open per process, every org together; more answer RATE_LIMITED (limit: subscriptions)',
  }),
  TENANTGATE_HEADERS_TIMEOUT_MS: withDefault('20000', wholeNumber(1000, 600_000), {
    meaning: "a request's headers must arrive within this time, else 408; at most TENANTGATE_REQUEST_TIMEOUT_MS",
  }),
  TENANTGATE_REQUEST_TIMEOUT_MS: withDefault('60000', wholeNumber(1000, 3_600_000), {
    meaning: 'the whole request, body included, must arrive within this time, else 408',
  }),
});

export type SettingName = keyof typeof environment.shape;
export const SETTING_NAMES = Object.keys(environment.shape) as SettingName[];

const config = environment.transform((env, ctx): Config => {
  if (env.TENANTGATE_HEADERS_TIMEOUT_MS > env.TENANTGATE_REQUEST_TIMEOUT_MS) {
    ctx.issues.push({
      code: 'custom',
      path: ['TENANTGATE_HEADERS_TIMEOUT_MS'],
      input: env,
      message: `TENANTGATE_HEADERS_TIMEOUT_MS (${env.TENANTGATE_HEADERS_TIMEOUT_MS}) must not be longer than TENANTGATE_REQUEST_TIMEOUT_MS (${env.TENANTGATE_REQUEST_TIMEOUT_MS})`,
    });
    return z.NEVER;
  }
  const dataDir = path.resolve(env.TENANTGATE_DATA_DIR);
  const database = env.TENANTGATE_DATABASE;
  const postgres = database !== undefined && isPostgresUrl(database);
  if (env.TENANTGATE_MIGRATION_DATABASE !== undefined && !postgres) {
    ctx.issues.push({
      code: 'custom',
      path: ['TENANTGATE_MIGRATION_DATABASE'],
      input: env,
      message: 'TENANTGATE_MIGRATION_DATABASE is for PostgreSQL only; set TENANTGATE_DATABASE to the request role\'s postgres:// URL too',
    });
    return z.NEVER;
  }
  const production = env.TENANTGATE_PRODUCTION;
  return {
    host: env.TENANTGATE_HOST,
    port: env.TENANTGATE_PORT,
    dataDir,
    database: database === undefined ? path.join(dataDir, 'tenantgate.db') : postgres ? database : path.resolve(database),
    migrationDatabase: env.TENANTGATE_MIGRATION_DATABASE,
    databasePool: {
      max: env.TENANTGATE_DATABASE_POOL_MAX,
      connectTimeoutMs: env.TENANTGATE_DATABASE_CONNECT_TIMEOUT_MS,
      idleTimeoutMs: 30_000,
      statementTimeoutMs: env.TENANTGATE_DATABASE_STATEMENT_TIMEOUT_MS,
    },
    masterKey: env.TENANTGATE_MASTER_KEY,
    previousMasterKeys: env.TENANTGATE_MASTER_KEY_PREVIOUS ?? [],
    production,
    logLevel: env.TENANTGATE_LOG_LEVEL,
    introspection: env.TENANTGATE_INTROSPECTION ?? !production,
    graphiql: env.TENANTGATE_GRAPHIQL ?? !production,
    dashboard: env.TENANTGATE_DASHBOARD ?? !production,
    authFailuresPerMinute: env.TENANTGATE_AUTH_FAILURES_PER_MINUTE,
    keyCacheTtlMs: env.TENANTGATE_KEY_CACHE_TTL_MS,
    trustProxy: env.TENANTGATE_TRUST_PROXY,
    limits: {
      maxBodyBytes: env.TENANTGATE_MAX_BODY_BYTES,
      maxDepth: env.TENANTGATE_MAX_DEPTH,
      maxAliases: env.TENANTGATE_MAX_ALIASES,
      maxTokens: env.TENANTGATE_MAX_TOKENS,
      maxDirectives: env.TENANTGATE_MAX_DIRECTIVES,
      maxCost: env.TENANTGATE_MAX_COST,
      maxVariableDepth: env.TENANTGATE_MAX_VARIABLE_DEPTH,
      maxFields: env.TENANTGATE_MAX_FIELDS,
      maxFieldRepeats: env.TENANTGATE_MAX_FIELD_REPEATS,
      maxFragmentSpreads: env.TENANTGATE_MAX_FRAGMENT_SPREADS,
    },
    metrics: env.TENANTGATE_METRICS,
    metricsToken: env.TENANTGATE_METRICS_TOKEN,
    responseCacheBytes: env.TENANTGATE_RESPONSE_CACHE_BYTES,
    execution: { compiled: env.TENANTGATE_COMPILED_EXECUTION, compileAfter: env.TENANTGATE_COMPILE_AFTER },
    corsOrigins: env.TENANTGATE_CORS_ORIGINS ?? [],
    headersTimeoutMs: env.TENANTGATE_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: env.TENANTGATE_REQUEST_TIMEOUT_MS,
    quotas: {
      runUnitsPerMonth: env.TENANTGATE_DEFAULT_RUN_UNITS_PER_MONTH ?? null,
      requestsPerMinute: env.TENANTGATE_DEFAULT_REQUESTS_PER_MINUTE ?? null,
      burst: env.TENANTGATE_DEFAULT_BURST ?? null,
      warnPercent: env.TENANTGATE_QUOTA_WARN_PERCENT,
    },
    auditRetentionDays: env.TENANTGATE_AUDIT_RETENTION_DAYS ?? null,
    fairness: {
      maxInFlight: env.TENANTGATE_ORG_MAX_IN_FLIGHT,
      queue: env.TENANTGATE_ORG_QUEUE,
      queueTimeoutMs: env.TENANTGATE_ORG_QUEUE_TIMEOUT_MS,
      maxSubscriptions: env.TENANTGATE_ORG_MAX_SUBSCRIPTIONS,
      maxSubscriptionsTotal: env.TENANTGATE_MAX_SUBSCRIPTIONS,
    },
  };
});

/** A value as a message shows it: quoted, escaped (so the message stays one line), cut when long. */
function quoted(value: unknown): string {
  const text = String(value);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

function messageFor(issue: z.core.$ZodIssue, env: Env): string {
  const name = String(issue.path[0]);
  if (issue.message.startsWith(name)) return issue.message;
  const info = settingInfo.get(environment.shape[name as SettingName]);
  return info?.secret ? `${name} ${issue.message}` : `${name} ${issue.message} (got ${quoted(env[name])})`;
}

const PREFIX = 'TENANTGATE_';

/** The setting `name` was probably meant as: one or two edits from it (one for short names), letter case aside. */
export function meantSetting(name: string): SettingName | undefined {
  const upper = name.toUpperCase();
  let meant: SettingName | undefined;
  let closest = Infinity;
  for (const setting of SETTING_NAMES) {
    if (Math.abs(setting.length - upper.length) > 2) continue;
    const allowed = Math.max(1, Math.min(2, Math.floor((setting.length - PREFIX.length) / 3)));
    const distance = editDistance(upper, setting);
    if (distance <= allowed && distance < closest) [meant, closest] = [setting, distance];
  }
  return meant;
}

/**
 * A name one or two edits from a setting is refused rather than warned about: the setting it
 * was meant to change would silently keep its default (a misspelt TENANTGATE_PRODUCTION leaves
 * introspection on, a misspelt TENANTGATE_MASTER_KEY has a new key generated), and this runs
 * before there is a logger whose warning someone might read. Names far from every setting are
 * left alone: they may belong to other tools or to another version of tenantgate.
 */
function refuseMisspelt(env: Env): void {
  for (const name of Object.keys(env)) {
    if (Object.hasOwn(environment.shape, name)) continue;
    const meant = meantSetting(name);
    // Only names: the value may be a secret.
    if (meant) throw new ConfigError(`${name} is not a tenantgate setting; did you mean ${meant}?`);
  }
}

export function loadConfig(env: Env = process.env): Config {
  refuseMisspelt(env);
  const parsed = config.safeParse(env);
  if (!parsed.success) throw new ConfigError(messageFor(parsed.error.issues[0]!, env));
  return parsed.data;
}

/** Decodes a base64 master key (from a variable or the key file); the error never repeats it. */
export function decodeMasterKey(name: string, raw: string): Buffer {
  const parsed = masterKey.safeParse(raw.trim());
  if (!parsed.success) throw new ConfigError(`${name} ${MASTER_KEY_ACCEPTS}`);
  return parsed.data;
}
