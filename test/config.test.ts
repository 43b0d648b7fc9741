import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

const ROOT = path.resolve(new URL('..', import.meta.url).pathname);

describe('configuration', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 4000,
      dataDir: path.resolve('./data'),
      database: path.resolve('./data/tenantgate.db'),
      masterKey: undefined,
      production: false,
      logLevel: 'info',
      introspection: true,
      graphiql: true,
      responseCacheBytes: 8 * 1_048_576,
    });
    expect(config.limits).toMatchObject({ maxFields: 1000, maxFieldRepeats: 16, maxFragmentSpreads: 32, maxVariableDepth: 32 });
  });

  it('turns introspection and GraphiQL off in production unless asked for', () => {
    expect(loadConfig({ TENANTGATE_PRODUCTION: 'true' })).toMatchObject({ introspection: false, graphiql: false });
    expect(loadConfig({ TENANTGATE_PRODUCTION: 'true', TENANTGATE_INTROSPECTION: 'on' })).toMatchObject({ introspection: true, graphiql: false });
  });

  it('places the database in the data dir unless given', () => {
    expect(loadConfig({ TENANTGATE_DATA_DIR: '/srv/tg' }).database).toBe('/srv/tg/tenantgate.db');
    expect(loadConfig({ TENANTGATE_DATA_DIR: '/srv/tg', TENANTGATE_DATABASE: '/var/db/x.db' }).database).toBe('/var/db/x.db');
  });

  it.each([
    ['TENANTGATE_PORT', '80a', 'TENANTGATE_PORT must be a whole number from 0 to 65535'],
    ['TENANTGATE_PORT', '70000', 'TENANTGATE_PORT must be a whole number from 0 to 65535'],
    ['TENANTGATE_PRODUCTION', 'maybe', 'TENANTGATE_PRODUCTION must be true or false'],
    ['TENANTGATE_LOG_LEVEL', 'loud', 'TENANTGATE_LOG_LEVEL must be one of debug, info, warn, error'],
    ['TENANTGATE_HOST', 'a b', 'TENANTGATE_HOST must be a host name or IP address'],
    ['TENANTGATE_DATABASE', 'postgres://u@h/db', 'TENANTGATE_DATABASE: PostgreSQL is not supported'],
    ['TENANTGATE_MASTER_KEY', 'c2hvcnQ=', 'TENANTGATE_MASTER_KEY must be 32 bytes encoded as base64'],
    ['TENANTGATE_MAX_FIELDS', '0', 'TENANTGATE_MAX_FIELDS must be a whole number from 1 to 1000000'],
    ['TENANTGATE_MAX_FIELD_REPEATS', 'many', 'TENANTGATE_MAX_FIELD_REPEATS must be a whole number from 1 to 1000000'],
    ['TENANTGATE_MAX_FRAGMENT_SPREADS', '-1', 'TENANTGATE_MAX_FRAGMENT_SPREADS must be a whole number from 0 to 1000000'],
    ['TENANTGATE_RESPONSE_CACHE_BYTES', '-1', 'TENANTGATE_RESPONSE_CACHE_BYTES must be a whole number from 0 to 1073741824'],
  ])('rejects %s=%s with a message naming it', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  it('never repeats a master key in its error', () => {
    const secretish = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    expect(() => loadConfig({ TENANTGATE_MASTER_KEY: secretish })).toThrow(/^(?!.*AAAAAAAA).*$/s);
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
