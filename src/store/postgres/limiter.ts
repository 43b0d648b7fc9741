import type pg from 'pg';
import { RateLimiterMemory, RateLimiterPostgres } from 'rate-limiter-flexible';
import type { FailureLimiter, FailureLimiterOptions } from '../types.ts';

/** Where drizzle/pg/0003 keeps the shared limits; migratePostgres grants the request role its rows. */
export const LIMITS_SCHEMA = 'tenantgate_limits';
export const LIMIT_TABLES = ['auth_failures'] as const;

/**
 * The failed-authentication limit, shared by every replica on the database: one row per client
 * address in tenantgate_limits.auth_failures, counted by rate-limiter-flexible's
 * RateLimiterPostgres over the request role's pool (a failure costs two short statements; a
 * valid key costs none). The table comes from a migration (`tableCreated: true`): the request role
 * creates nothing. When the database cannot answer, each replica counts in memory instead (the
 * insurance limiter): a database outage neither locks every address out nor lets a guesser try
 * without limit; it only stops the replicas from adding up each other's counts until it is back.
 */
export function createPostgresFailureLimiter(pool: pg.Pool, options: FailureLimiterOptions): FailureLimiter {
  return new RateLimiterPostgres({
    storeClient: pool,
    storeType: 'pool',
    schemaName: LIMITS_SCHEMA,
    tableName: LIMIT_TABLES[0],
    tableCreated: true,
    keyPrefix: options.name,
    points: options.points,
    duration: options.durationSec,
    insuranceLimiter: new RateLimiterMemory({ points: options.points, duration: options.durationSec }),
  });
}
