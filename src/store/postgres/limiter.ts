import type pg from 'pg';
import { RateLimiterMemory, RateLimiterPostgres } from 'rate-limiter-flexible';
import type { FailureLimiter, FailureLimiterOptions, RequestLimiter } from '../types.ts';

/** Where drizzle/pg/0003 and 0010 keep the shared limits; migratePostgres grants the request role their rows. */
export const LIMITS_SCHEMA = 'tenantgate_limits';
export const LIMIT_TABLES = ['auth_failures', 'org_requests'] as const;

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

/**
 * The per-org request-rate limit (issue 14), shared by every replica on the database: one row per
 * org (and limit name) in tenantgate_limits.org_requests, counted by RateLimiterPostgres over the
 * request role's pool, one short upsert per request. An org past its limit is refused from memory
 * until its window ends (inMemoryBlockOnConsumed one past the points: a refusal, not the last
 * allowed request, blocks), so a flood of refused requests costs this replica no round trip each;
 * the other replicas learn of it at their next consume, which the shared row refuses. When the
 * database cannot answer, each replica counts in memory (the insurance limiter), as for
 * authentication failures.
 */
export function createPostgresRequestLimiter(pool: pg.Pool, options: FailureLimiterOptions): RequestLimiter {
  return new RateLimiterPostgres({
    storeClient: pool,
    storeType: 'pool',
    schemaName: LIMITS_SCHEMA,
    tableName: LIMIT_TABLES[1],
    tableCreated: true,
    keyPrefix: options.name,
    points: options.points,
    duration: options.durationSec,
    inMemoryBlockOnConsumed: options.points + 1,
    insuranceLimiter: new RateLimiterMemory({ points: options.points, duration: options.durationSec }),
  });
}
