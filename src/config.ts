import path from 'node:path';

/**
 * The only place environment variables are read. Every setting is validated here, so a bad value
 * stops the start with one line naming the variable and what it accepts.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Request and operation limits. Defaults, and why:
 *
 * | variable                     | default | meaning                                                  |
 * |------------------------------|---------|----------------------------------------------------------|
 * | TENANTGATE_MAX_BODY_BYTES    | 2097152 | request body bytes; more answers 413 (a full credential, |
 * |                              |         | 64 fields of 16 KiB, is about 1.05 MiB of JSON)          |
 * | TENANTGATE_MAX_DEPTH         | 10      | field nesting (the deepest useful query has 5)           |
 * | TENANTGATE_MAX_ALIASES       | 15      | aliased fields per operation                             |
 * | TENANTGATE_MAX_TOKENS        | 2000    | lexical tokens per document (introspection has ~180)     |
 * | TENANTGATE_MAX_DIRECTIVES    | 20      | directives per operation                                 |
 * | TENANTGATE_MAX_COST          | 20000   | GraphQL Armor cost; every field of modules(first: 100)   |
 * |                              |         | costs about 9000, so two full pages fit, fifteen do not  |
 * | TENANTGATE_MAX_VARIABLE_DEPTH| 32      | nesting of objects and arrays in `variables` (a module   |
 * |                              |         | config deeper than this is refused, never half-handled)  |
 * |                              |         | and of those written in the document                     |
 * | TENANTGATE_MAX_FIELDS        | 1000    | fields per document, fragment spreads expanded (GraphiQL's|
 * |                              |         | introspection query has 469, a full page of modules 26)  |
 * | TENANTGATE_MAX_FIELD_REPEATS | 16      | selections merged into one key of the answer (validation |
 * |                              |         | compares each pair of them)                              |
 * | TENANTGATE_MAX_FRAGMENT_SPREADS | 32   | fragment spreads landing at one place of the answer      |
 * |                              |         | (validation compares each pair of fragments spread there) |
 *
 * An operation over a limit fails validation with LIMIT_EXCEEDED (extensions.limit names it) and
 * nothing executes.
 */
export interface Limits {
  /** Largest request body in bytes; larger answers 413. */
  maxBodyBytes: number;
  maxDepth: number;
  maxAliases: number;
  maxTokens: number;
  maxDirectives: number;
  maxCost: number;
  maxVariableDepth: number;
  maxFields: number;
  maxFieldRepeats: number;
  maxFragmentSpreads: number;
}

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** A SQLite file path (or, later, a postgres:// URL). */
  database: string;
  /** 32-byte key from TENANTGATE_MASTER_KEY; undefined means "use or generate the data-dir key". */
  masterKey: Buffer | undefined;
  /** Keys that older credential rows may still be encrypted with, during a rotation. */
  previousMasterKeys: Buffer[];
  production: boolean;
  logLevel: LogLevel;
  introspection: boolean;
  graphiql: boolean;
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
  /** Origins (scheme://host[:port]) whose browser pages may call the API; none by default. */
  corsOrigins: string[];
  /** A request's headers must arrive within this many ms, the whole request within requestTimeoutMs. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function readString(env: Env, name: string, fallback: string): string {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  return raw;
}

function readInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
  }
  const value = Number(raw.trim());
  if (value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
  }
  return value;
}

function readBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new ConfigError(`${name} must be true or false (got "${raw}")`);
}

function readEnum<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = raw.trim().toLowerCase() as T;
  if (!allowed.includes(value)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')} (got "${raw}")`);
  }
  return value;
}

/** Decodes a base64 master key; the error never repeats the value, since it is a secret. */
export function decodeMasterKey(name: string, raw: string): Buffer {
  const trimmed = raw.trim();
  const key = /^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
  if (key.length !== 32) {
    throw new ConfigError(
      `${name} must be 32 bytes encoded as base64 (44 characters); generate one with: openssl rand -base64 32`,
    );
  }
  return key;
}

function readHost(env: Env): string {
  const host = readString(env, 'TENANTGATE_HOST', '127.0.0.1').trim();
  if (!/^[A-Za-z0-9.:_-]+$/.test(host) || host.length > 253) {
    throw new ConfigError(`TENANTGATE_HOST must be a host name or IP address (got "${host}")`);
  }
  return host;
}

function readDatabase(env: Env, dataDir: string): string {
  const raw = readString(env, 'TENANTGATE_DATABASE', '');
  if (raw === '') return path.join(dataDir, 'tenantgate.db');
  if (/^postgres(ql)?:\/\//i.test(raw)) {
    throw new ConfigError(
      'TENANTGATE_DATABASE: PostgreSQL is not supported by this version yet; use a SQLite file path',
    );
  }
  if (raw.includes('://')) {
    throw new ConfigError(`TENANTGATE_DATABASE must be a SQLite file path (got a URL)`);
  }
  return path.resolve(raw);
}

function readMetricsToken(env: Env): string | undefined {
  const raw = env.TENANTGATE_METRICS_TOKEN;
  if (raw === undefined || raw.trim() === '') return undefined;
  const token = raw.trim();
  // The value is a secret: the message never repeats it.
  if (token.length < 16 || !/^[\x21-\x7e]+$/.test(token)) {
    throw new ConfigError('TENANTGATE_METRICS_TOKEN must be at least 16 printable characters without spaces');
  }
  return token;
}

/**
 * Browser origins allowed to call the API. Each must be an origin exactly as a browser sends it
 * (`https://dash.example.com`, `http://localhost:5173`): no path, no wildcard, since keys travel in
 * a header and an allowed origin is a page trusted to hold one.
 */
function readCorsOrigins(env: Env): string[] {
  const raw = readString(env, 'TENANTGATE_CORS_ORIGINS', '').trim();
  if (raw === '') return [];
  return raw.split(',').map((part) => {
    const origin = part.trim();
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin || origin.includes('*')) {
      throw new ConfigError(
        `TENANTGATE_CORS_ORIGINS must be a comma-separated list of origins like https://dash.example.com (got "${origin}")`,
      );
    }
    return origin;
  });
}

export function loadConfig(env: Env = process.env): Config {
  const headersTimeoutMs = readInt(env, 'TENANTGATE_HEADERS_TIMEOUT_MS', 20_000, 1000, 600_000);
  const requestTimeoutMs = readInt(env, 'TENANTGATE_REQUEST_TIMEOUT_MS', 60_000, 1000, 3_600_000);
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError(
      `TENANTGATE_HEADERS_TIMEOUT_MS (${headersTimeoutMs}) must not be longer than TENANTGATE_REQUEST_TIMEOUT_MS (${requestTimeoutMs})`,
    );
  }
  const dataDir = path.resolve(readString(env, 'TENANTGATE_DATA_DIR', './data'));
  const production = readBool(env, 'TENANTGATE_PRODUCTION', false);
  const masterKeyRaw = env.TENANTGATE_MASTER_KEY;
  const previousRaw = env.TENANTGATE_MASTER_KEY_PREVIOUS;
  return {
    host: readHost(env),
    port: readInt(env, 'TENANTGATE_PORT', 4000, 0, 65535),
    dataDir,
    database: readDatabase(env, dataDir),
    masterKey:
      masterKeyRaw === undefined || masterKeyRaw === ''
        ? undefined
        : decodeMasterKey('TENANTGATE_MASTER_KEY', masterKeyRaw),
    previousMasterKeys:
      previousRaw === undefined || previousRaw.trim() === ''
        ? []
        : previousRaw.split(',').map((part) => decodeMasterKey('TENANTGATE_MASTER_KEY_PREVIOUS', part)),
    production,
    logLevel: readEnum<LogLevel>(env, 'TENANTGATE_LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error']),
    introspection: readBool(env, 'TENANTGATE_INTROSPECTION', !production),
    graphiql: readBool(env, 'TENANTGATE_GRAPHIQL', !production),
    authFailuresPerMinute: readInt(env, 'TENANTGATE_AUTH_FAILURES_PER_MINUTE', 30, 1, 1_000_000),
    keyCacheTtlMs: readInt(env, 'TENANTGATE_KEY_CACHE_TTL_MS', 10_000, 0, 3_600_000),
    trustProxy: readBool(env, 'TENANTGATE_TRUST_PROXY', false),
    limits: {
      maxBodyBytes: readInt(env, 'TENANTGATE_MAX_BODY_BYTES', 2 * 1_048_576, 1024, 100 * 1_048_576),
      maxDepth: readInt(env, 'TENANTGATE_MAX_DEPTH', 10, 1, 1000),
      maxAliases: readInt(env, 'TENANTGATE_MAX_ALIASES', 15, 0, 10_000),
      maxTokens: readInt(env, 'TENANTGATE_MAX_TOKENS', 2000, 10, 1_000_000),
      maxDirectives: readInt(env, 'TENANTGATE_MAX_DIRECTIVES', 20, 0, 10_000),
      maxCost: readInt(env, 'TENANTGATE_MAX_COST', 20_000, 1, 10_000_000),
      maxVariableDepth: readInt(env, 'TENANTGATE_MAX_VARIABLE_DEPTH', 32, 1, 1000),
      maxFields: readInt(env, 'TENANTGATE_MAX_FIELDS', 1000, 1, 1_000_000),
      maxFieldRepeats: readInt(env, 'TENANTGATE_MAX_FIELD_REPEATS', 16, 1, 1_000_000),
      maxFragmentSpreads: readInt(env, 'TENANTGATE_MAX_FRAGMENT_SPREADS', 32, 0, 1_000_000),
    },
    metrics: readBool(env, 'TENANTGATE_METRICS', true),
    metricsToken: readMetricsToken(env),
    responseCacheBytes: readInt(env, 'TENANTGATE_RESPONSE_CACHE_BYTES', 8 * 1_048_576, 0, 1024 * 1_048_576),
    corsOrigins: readCorsOrigins(env),
    headersTimeoutMs,
    requestTimeoutMs,
  };
}
