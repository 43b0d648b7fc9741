import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, SETTING_NAMES, decodeMasterKey, loadConfig, meantSetting, type Config, type SettingName } from '../src/config.ts';

const ROOT = path.resolve(new URL('..', import.meta.url).pathname);

const KEY = randomBytes(32);
const OLD_KEY = randomBytes(32);
const TOKEN = 'metrics-token-0123456789';

/** The message loadConfig stops with for `env`, or undefined when it loads. */
function refusal(env: Record<string, string>): string | undefined {
  try {
    loadConfig(env);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
}

interface Case {
  /** A value that loads, the part of the Config it sets, and what that part then is. */
  valid: [value: string, read: (config: Config) => unknown, expected: unknown];
  /** A value that is refused and the exact line it is refused with; null with a reason when every value loads. */
  invalid: [value: string, message: string] | { none: string };
  /** Other settings the value needs beside it (both the valid and the invalid value are read with them). */
  with?: Record<string, string>;
}

const whole = (name: string, min: number, max: number, got: string) =>
  `${name} must be a whole number from ${min} to ${max} (got "${got}")`;

// One row per variable (the type makes a new setting without a row fail to compile).
const CASES = {
  TENANTGATE_HOST: {
    valid: ['0.0.0.0', (c) => c.host, '0.0.0.0'],
    invalid: ['a b', 'TENANTGATE_HOST must be a host name or IP address (got "a b")'],
  },
  TENANTGATE_PORT: { valid: ['8080', (c) => c.port, 8080], invalid: ['80a', whole('TENANTGATE_PORT', 0, 65535, '80a')] },
  TENANTGATE_DATA_DIR: {
    valid: ['/srv/tg', (c) => [c.dataDir, c.database], ['/srv/tg', '/srv/tg/tenantgate.db']],
    invalid: { none: 'any path; whether it can be used is checked when the store opens (test/data-dir.test.ts)' },
  },
  TENANTGATE_DATABASE: {
    valid: ['/var/db/x.db', (c) => c.database, '/var/db/x.db'],
    invalid: ['postgres://db.example/tenantgate', 'TENANTGATE_DATABASE names no role (postgres://ROLE@HOST/DATABASE)'],
  },
  TENANTGATE_MIGRATION_DATABASE: {
    valid: ['postgres://owner:pw@db.example/tg', (c) => c.migrationDatabase, 'postgres://owner:pw@db.example/tg'],
    invalid: ['mysql://owner:pw@db.example/tg', 'TENANTGATE_MIGRATION_DATABASE must be a postgres:// URL (postgres://ROLE[:PASSWORD]@HOST[:PORT]/DATABASE)'],
    with: { TENANTGATE_DATABASE: 'postgres://tg@db.example/tg' },
  },
  TENANTGATE_DATABASE_POOL_MAX: {
    valid: ['50', (c) => c.databasePool.max, 50],
    invalid: ['1', whole('TENANTGATE_DATABASE_POOL_MAX', 2, 1000, '1')],
  },
  TENANTGATE_DATABASE_CONNECT_TIMEOUT_MS: {
    valid: ['100', (c) => c.databasePool.connectTimeoutMs, 100],
    invalid: ['99', whole('TENANTGATE_DATABASE_CONNECT_TIMEOUT_MS', 100, 600_000, '99')],
  },
  TENANTGATE_DATABASE_STATEMENT_TIMEOUT_MS: {
    valid: ['600000', (c) => c.databasePool.statementTimeoutMs, 600_000],
    invalid: ['600001', whole('TENANTGATE_DATABASE_STATEMENT_TIMEOUT_MS', 100, 600_000, '600001')],
  },
  TENANTGATE_MASTER_KEY: {
    valid: [KEY.toString('base64'), (c) => c.masterKey, KEY],
    invalid: [
      'c2hvcnQ=',
      'TENANTGATE_MASTER_KEY must be 32 bytes encoded as base64 (44 characters); generate one with: openssl rand -base64 32',
    ],
  },
  TENANTGATE_MASTER_KEY_PREVIOUS: {
    valid: [`${OLD_KEY.toString('base64')} , ${KEY.toString('base64')}`, (c) => c.previousMasterKeys, [OLD_KEY, KEY]],
    invalid: [
      `${OLD_KEY.toString('base64')},c2hvcnQ=`,
      'TENANTGATE_MASTER_KEY_PREVIOUS must be 32 bytes encoded as base64 (44 characters); generate one with: openssl rand -base64 32',
    ],
  },
  TENANTGATE_PRODUCTION: {
    valid: ['YES', (c) => [c.production, c.introspection, c.graphiql], [true, false, false]],
    invalid: ['maybe', 'TENANTGATE_PRODUCTION must be true or false (got "maybe")'],
  },
  TENANTGATE_INTROSPECTION: {
    valid: ['off', (c) => c.introspection, false],
    invalid: ['2', 'TENANTGATE_INTROSPECTION must be true or false (got "2")'],
  },
  TENANTGATE_GRAPHIQL: {
    valid: ['0', (c) => c.graphiql, false],
    invalid: ['disabled', 'TENANTGATE_GRAPHIQL must be true or false (got "disabled")'],
  },
  TENANTGATE_DASHBOARD: {
    valid: ['false', (c) => c.dashboard, false],
    invalid: ['maybe', 'TENANTGATE_DASHBOARD must be true or false (got "maybe")'],
  },
  TENANTGATE_LOG_LEVEL: {
    valid: ['Warn', (c) => c.logLevel, 'warn'],
    invalid: ['loud', 'TENANTGATE_LOG_LEVEL must be one of debug, info, warn, error (got "loud")'],
  },
  TENANTGATE_AUTH_FAILURES_PER_MINUTE: {
    valid: ['5', (c) => c.authFailuresPerMinute, 5],
    invalid: ['0', whole('TENANTGATE_AUTH_FAILURES_PER_MINUTE', 1, 1_000_000, '0')],
  },
  TENANTGATE_KEY_CACHE_TTL_MS: {
    valid: ['0', (c) => c.keyCacheTtlMs, 0],
    invalid: ['1.5', whole('TENANTGATE_KEY_CACHE_TTL_MS', 0, 3_600_000, '1.5')],
  },
  TENANTGATE_TRUST_PROXY: {
    valid: ['on', (c) => c.trustProxy, true],
    invalid: ['proxy', 'TENANTGATE_TRUST_PROXY must be true or false (got "proxy")'],
  },
  TENANTGATE_MAX_BODY_BYTES: {
    valid: ['4096', (c) => c.limits.maxBodyBytes, 4096],
    invalid: ['1023', whole('TENANTGATE_MAX_BODY_BYTES', 1024, 104_857_600, '1023')],
  },
  TENANTGATE_MAX_DEPTH: { valid: ['1', (c) => c.limits.maxDepth, 1], invalid: ['1001', whole('TENANTGATE_MAX_DEPTH', 1, 1000, '1001')] },
  TENANTGATE_MAX_ALIASES: {
    valid: ['0', (c) => c.limits.maxAliases, 0],
    invalid: ['-1', whole('TENANTGATE_MAX_ALIASES', 0, 10_000, '-1')],
  },
  TENANTGATE_MAX_TOKENS: { valid: ['10', (c) => c.limits.maxTokens, 10], invalid: ['9', whole('TENANTGATE_MAX_TOKENS', 10, 1_000_000, '9')] },
  TENANTGATE_MAX_DIRECTIVES: {
    valid: ['10000', (c) => c.limits.maxDirectives, 10_000],
    invalid: ['1e3', whole('TENANTGATE_MAX_DIRECTIVES', 0, 10_000, '1e3')],
  },
  TENANTGATE_MAX_COST: {
    valid: ['10000000', (c) => c.limits.maxCost, 10_000_000],
    invalid: ['10000001', whole('TENANTGATE_MAX_COST', 1, 10_000_000, '10000001')],
  },
  TENANTGATE_MAX_VARIABLE_DEPTH: {
    valid: ['8', (c) => c.limits.maxVariableDepth, 8],
    invalid: ['0x10', whole('TENANTGATE_MAX_VARIABLE_DEPTH', 1, 1000, '0x10')],
  },
  TENANTGATE_MAX_FIELDS: { valid: ['1000000', (c) => c.limits.maxFields, 1_000_000], invalid: ['0', whole('TENANTGATE_MAX_FIELDS', 1, 1_000_000, '0')] },
  TENANTGATE_MAX_FIELD_REPEATS: {
    valid: ['2', (c) => c.limits.maxFieldRepeats, 2],
    invalid: ['many', whole('TENANTGATE_MAX_FIELD_REPEATS', 1, 1_000_000, 'many')],
  },
  TENANTGATE_MAX_FRAGMENT_SPREADS: {
    valid: ['0', (c) => c.limits.maxFragmentSpreads, 0],
    invalid: ['-1', whole('TENANTGATE_MAX_FRAGMENT_SPREADS', 0, 1_000_000, '-1')],
  },
  TENANTGATE_METRICS: { valid: ['false', (c) => c.metrics, false], invalid: ['none', 'TENANTGATE_METRICS must be true or false (got "none")'] },
  TENANTGATE_METRICS_TOKEN: {
    valid: [` ${TOKEN} `, (c) => c.metricsToken, TOKEN],
    invalid: ['short secret', 'TENANTGATE_METRICS_TOKEN must be at least 16 printable characters without spaces'],
  },
  TENANTGATE_RESPONSE_CACHE_BYTES: {
    valid: ['0', (c) => c.responseCacheBytes, 0],
    invalid: ['-1', whole('TENANTGATE_RESPONSE_CACHE_BYTES', 0, 1_073_741_824, '-1')],
  },
  TENANTGATE_COMPILED_EXECUTION: {
    valid: ['false', (c) => c.execution.compiled, false],
    invalid: ['jit', 'TENANTGATE_COMPILED_EXECUTION must be true or false (got "jit")'],
  },
  TENANTGATE_COMPILE_AFTER: {
    valid: ['0', (c) => c.execution.compileAfter, 0],
    invalid: ['-1', whole('TENANTGATE_COMPILE_AFTER', 0, 1_000_000, '-1')],
  },
  TENANTGATE_CORS_ORIGINS: {
    valid: [' https://dash.example.com ,http://localhost:5173', (c) => c.corsOrigins, ['https://dash.example.com', 'http://localhost:5173']],
    invalid: [
      'https://dash.example.com,dash.example.com/',
      'TENANTGATE_CORS_ORIGINS must be a comma-separated list of origins like https://dash.example.com (got "dash.example.com/")',
    ],
  },
  TENANTGATE_HEADERS_TIMEOUT_MS: {
    valid: ['1000', (c) => c.headersTimeoutMs, 1000],
    invalid: ['999', whole('TENANTGATE_HEADERS_TIMEOUT_MS', 1000, 600_000, '999')],
  },
  TENANTGATE_REQUEST_TIMEOUT_MS: {
    valid: ['3600000', (c) => c.requestTimeoutMs, 3_600_000],
    invalid: ['3600001', whole('TENANTGATE_REQUEST_TIMEOUT_MS', 1000, 3_600_000, '3600001')],
  },
  TENANTGATE_DEFAULT_RUN_UNITS_PER_MONTH: {
    valid: ['1000000', (c) => c.quotas.runUnitsPerMonth, 1_000_000],
    invalid: ['0', whole('TENANTGATE_DEFAULT_RUN_UNITS_PER_MONTH', 1, Number.MAX_SAFE_INTEGER, '0')],
  },
  TENANTGATE_DEFAULT_REQUESTS_PER_MINUTE: {
    valid: ['600', (c) => c.quotas.requestsPerMinute, 600],
    invalid: ['1.5', whole('TENANTGATE_DEFAULT_REQUESTS_PER_MINUTE', 1, 100_000_000, '1.5')],
  },
  TENANTGATE_DEFAULT_BURST: {
    valid: ['50', (c) => c.quotas.burst, 50],
    invalid: ['-1', whole('TENANTGATE_DEFAULT_BURST', 1, 100_000_000, '-1')],
  },
  TENANTGATE_QUOTA_WARN_PERCENT: {
    valid: ['90', (c) => c.quotas.warnPercent, 90],
    invalid: ['101', whole('TENANTGATE_QUOTA_WARN_PERCENT', 1, 100, '101')],
  },
  TENANTGATE_AUDIT_RETENTION_DAYS: {
    valid: ['365', (c) => c.auditRetentionDays, 365],
    invalid: ['0', whole('TENANTGATE_AUDIT_RETENTION_DAYS', 1, 36_500, '0')],
  },
  TENANTGATE_ORG_MAX_IN_FLIGHT: {
    valid: ['16', (c) => c.fairness.maxInFlight, 16],
    invalid: ['0', whole('TENANTGATE_ORG_MAX_IN_FLIGHT', 1, 10_000, '0')],
  },
  TENANTGATE_ORG_QUEUE: {
    valid: ['0', (c) => c.fairness.queue, 0],
    invalid: ['many', whole('TENANTGATE_ORG_QUEUE', 0, 1_000_000, 'many')],
  },
  TENANTGATE_ORG_QUEUE_TIMEOUT_MS: {
    valid: ['250', (c) => c.fairness.queueTimeoutMs, 250],
    invalid: ['0', whole('TENANTGATE_ORG_QUEUE_TIMEOUT_MS', 1, 600_000, '0')],
  },
  TENANTGATE_ORG_MAX_SUBSCRIPTIONS: {
    valid: ['2', (c) => c.fairness.maxSubscriptions, 2],
    invalid: ['0', whole('TENANTGATE_ORG_MAX_SUBSCRIPTIONS', 1, 100_000, '0')],
  },
  TENANTGATE_MAX_SUBSCRIPTIONS: {
    valid: ['5000', (c) => c.fairness.maxSubscriptionsTotal, 5000],
    invalid: ['lots', whole('TENANTGATE_MAX_SUBSCRIPTIONS', 1, 1_000_000, 'lots')],
  },
} satisfies Record<SettingName, Case>;

const SECRETS: readonly SettingName[] = ['TENANTGATE_MASTER_KEY', 'TENANTGATE_MASTER_KEY_PREVIOUS', 'TENANTGATE_METRICS_TOKEN', 'TENANTGATE_MIGRATION_DATABASE'];

describe('configuration', () => {
  it('has a row in this table for every setting, and no other', () => {
    expect(Object.keys(CASES).sort()).toEqual([...SETTING_NAMES].sort());
  });

  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 4000,
      dataDir: path.resolve('./data'),
      database: path.resolve('./data/tenantgate.db'),
      migrationDatabase: undefined,
      databasePool: { max: 10, connectTimeoutMs: 5000, idleTimeoutMs: 30_000, statementTimeoutMs: 5000 },
      masterKey: undefined,
      previousMasterKeys: [],
      production: false,
      logLevel: 'info',
      introspection: true,
      graphiql: true,
      dashboard: true,
      authFailuresPerMinute: 30,
      keyCacheTtlMs: 10_000,
      trustProxy: false,
      limits: {
        maxBodyBytes: 2 * 1_048_576,
        maxDepth: 10,
        maxAliases: 15,
        maxTokens: 2000,
        maxDirectives: 20,
        maxCost: 20_000,
        maxVariableDepth: 32,
        maxFields: 1000,
        maxFieldRepeats: 16,
        maxFragmentSpreads: 32,
      },
      metrics: true,
      metricsToken: undefined,
      responseCacheBytes: 8 * 1_048_576,
      execution: { compiled: true, compileAfter: 10 },
      corsOrigins: [],
      headersTimeoutMs: 20_000,
      requestTimeoutMs: 60_000,
      quotas: { runUnitsPerMonth: null, requestsPerMinute: null, burst: null, warnPercent: 80 },
      auditRetentionDays: null,
      fairness: { maxInFlight: 4, queue: 32, queueTimeoutMs: 1000, maxSubscriptions: 16, maxSubscriptionsTotal: 1000 },
    } satisfies Config);
  });

  const rows = Object.entries(CASES) as [SettingName, Case][];

  it.each(rows)('reads %s', (name, { valid: [value, read, expected], with: beside }) => {
    expect(read(loadConfig({ ...beside, [name]: value }))).toEqual(expected);
  });

  it.each(rows.filter(([, c]) => Array.isArray(c.invalid)))('refuses a bad %s with one line naming it', (name, { invalid, with: beside }) => {
    const [value, message] = invalid as [string, string];
    const got = refusal({ ...beside, [name]: value });
    expect(got).toBe(message);
    expect(got).not.toContain('\n');
  });

  it.each(SECRETS)('never repeats the value of %s', (name) => {
    const { invalid, with: beside } = CASES[name] as Case;
    const [value] = invalid as [string, string];
    const secretish = `${'A'.repeat(60)}SECRETPART`;
    for (const bad of [value, `${secretish} x`, `${secretish}\u0007`]) {
      const message = refusal({ ...beside, [name]: bad });
      expect(message, bad).toMatch(new RegExp(`^${name} must be`));
      expect(message).not.toContain('SECRETPART');
      expect(message).not.toContain('AAAAAAAA');
      expect(message).not.toContain(value);
    }
  });

  it('takes a blank value as unset and reads values without surrounding whitespace', () => {
    expect(loadConfig({ TENANTGATE_PORT: '   ', TENANTGATE_DATA_DIR: '', TENANTGATE_METRICS_TOKEN: ' ' })).toMatchObject({
      port: 4000,
      dataDir: path.resolve('./data'),
      metricsToken: undefined,
    });
    expect(loadConfig({ TENANTGATE_PORT: ' 81\n', TENANTGATE_DATA_DIR: ' /srv/tg ' })).toMatchObject({ port: 81, dataDir: '/srv/tg' });
  });

  it('keeps a message on one line whatever the value holds, and cuts a long one', () => {
    expect(refusal({ TENANTGATE_PORT: '8\n0' })).toBe(whole('TENANTGATE_PORT', 0, 65535, '8\\n0'));
    const long = refusal({ TENANTGATE_LOG_LEVEL: 'x'.repeat(500) });
    expect(long).toBe(`TENANTGATE_LOG_LEVEL must be one of debug, info, warn, error (got "${'x'.repeat(80)}…")`);
  });

  it('follows production for introspection and GraphiQL unless asked', () => {
    expect(loadConfig({ TENANTGATE_PRODUCTION: 'true' })).toMatchObject({ introspection: false, graphiql: false });
    expect(loadConfig({ TENANTGATE_PRODUCTION: 'true', TENANTGATE_INTROSPECTION: 'on' })).toMatchObject({ introspection: true, graphiql: false });
    expect(loadConfig({ TENANTGATE_PRODUCTION: 'false', TENANTGATE_GRAPHIQL: 'no' })).toMatchObject({ introspection: true, graphiql: false });
  });

  it('places the database in the data dir unless given, takes a PostgreSQL URL as it is, and refuses other URLs', () => {
    expect(loadConfig({ TENANTGATE_DATA_DIR: '/srv/tg', TENANTGATE_DATABASE: 'x.db' }).database).toBe(path.resolve('x.db'));
    expect(loadConfig({ TENANTGATE_DATABASE: 'POSTGRESQL://u@h/db' }).database).toBe('POSTGRESQL://u@h/db');
    expect(loadConfig({ TENANTGATE_DATABASE: 'postgres://u:p%40ss@h:5433/db' }).database).toBe('postgres://u:p%40ss@h:5433/db');
    expect(refusal({ TENANTGATE_DATABASE: 'file:///tmp/x.db' })).toBe(
      'TENANTGATE_DATABASE must be a SQLite file path or a postgres:// URL (got another URL)',
    );
    // A password is never repeated, whatever is wrong with the URL.
    for (const bad of ['postgres://u:SECRETPW@h', 'postgres://:SECRETPW@h/db', 'postgres://u:SECRETPW@h:99999/db']) {
      const message = refusal({ TENANTGATE_DATABASE: bad });
      expect(message, bad).toMatch(/^TENANTGATE_DATABASE /);
      expect(message).not.toContain('SECRETPW');
    }
  });

  it('takes TENANTGATE_MIGRATION_DATABASE only beside a PostgreSQL TENANTGATE_DATABASE', () => {
    expect(refusal({ TENANTGATE_MIGRATION_DATABASE: 'postgres://owner:SECRETPW@h/db' })).toBe(
      "TENANTGATE_MIGRATION_DATABASE is for PostgreSQL only; set TENANTGATE_DATABASE to the request role's postgres:// URL too",
    );
  });

  it('refuses a header timeout longer than the request timeout, naming both', () => {
    expect(loadConfig({ TENANTGATE_HEADERS_TIMEOUT_MS: '20000', TENANTGATE_REQUEST_TIMEOUT_MS: '20000' }).headersTimeoutMs).toBe(20_000);
    expect(refusal({ TENANTGATE_HEADERS_TIMEOUT_MS: '30000', TENANTGATE_REQUEST_TIMEOUT_MS: '20000' })).toBe(
      'TENANTGATE_HEADERS_TIMEOUT_MS (30000) must not be longer than TENANTGATE_REQUEST_TIMEOUT_MS (20000)',
    );
    // The default request timeout (60 s) bounds a header timeout given alone.
    expect(refusal({ TENANTGATE_HEADERS_TIMEOUT_MS: '60001' })).toMatch(/^TENANTGATE_HEADERS_TIMEOUT_MS \(60001\) must not be longer/);
  });

  it('refuses each CORS entry that is not an origin, naming it', () => {
    for (const bad of ['dash.example.com', 'https://dash.example.com/', 'https://*.example.com', 'ftp://x.example', '*', '']) {
      expect(refusal({ TENANTGATE_CORS_ORIGINS: `https://ok.example,${bad}` }), bad).toBe(
        `TENANTGATE_CORS_ORIGINS must be a comma-separated list of origins like https://dash.example.com (got ${JSON.stringify(bad)})`,
      );
    }
  });

  it('decodes a key file with the same rule, naming the file and not the key', () => {
    expect(decodeMasterKey('/d/master.key', `${KEY.toString('base64')}\n`)).toEqual(KEY);
    expect(() => decodeMasterKey('/d/master.key', 'c2VjcmV0LXZhbHVl')).toThrow(
      new ConfigError('/d/master.key must be 32 bytes encoded as base64 (44 characters); generate one with: openssl rand -base64 32'),
    );
  });

  describe('a misspelt variable', () => {
    it.each([
      ['TENANTGATE_PROT', 'TENANTGATE_PORT'],
      ['tenantgate_port', 'TENANTGATE_PORT'],
      ['TENANTGATE_PRODUKTION', 'TENANTGATE_PRODUCTION'],
      ['TENANTGATE_MASTERKEY', 'TENANTGATE_MASTER_KEY'],
      ['TENANTGATE_MASTER_KEY_PREVIOUSS', 'TENANTGATE_MASTER_KEY_PREVIOUS'],
      ['TENANTGATE_CORS_ORIGIN', 'TENANTGATE_CORS_ORIGINS'],
      ['TENANTGATE_MAX_DEPHT', 'TENANTGATE_MAX_DEPTH'],
      ['TENANTGTE_LOG_LEVEL', 'TENANTGATE_LOG_LEVEL'],
    ])('%s stops the start, naming %s and not the value', (typo, meant) => {
      expect(refusal({ [typo]: 'secret-value-123' })).toBe(`${typo} is not a tenantgate setting; did you mean ${meant}?`);
    });

    it('is told apart from names that are not near any setting', () => {
      for (const name of ['TENANTGATE_FUTURE_FEATURE', 'TENANTGATE_', 'TENANTGATE_DB', 'HOSTNAME', 'PORT', 'NODE_ENV', 'PATH']) {
        expect(meantSetting(name), name).toBeUndefined();
      }
      expect(loadConfig({ TENANTGATE_FUTURE_FEATURE: 'x', PORT: '1', HOSTNAME: 'h' }).port).toBe(4000);
    });

    it('is never a real setting, even beside all the others', () => {
      const everything = Object.fromEntries(rows.filter(([, c]) => !c.with).map(([name, c]) => [name, c.valid[0]]));
      expect(loadConfig(everything)).toMatchObject({ port: 8080, database: '/var/db/x.db', limits: { maxDepth: 1 } });
    });
  });

  it('stops the process with one line on stderr for a bad value', async () => {
    const result = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, TENANTGATE_PORT: 'http' },
    }).catch((error: { code: number; stdout: string; stderr: string }) => error);
    expect((result as { code: number }).code).toBe(2);
    expect((result as { stderr: string }).stderr).toBe('tenantgate: TENANTGATE_PORT must be a whole number from 0 to 65535 (got "http")\n');
    expect((result as { stdout: string }).stdout).toBe('');
  });
});
