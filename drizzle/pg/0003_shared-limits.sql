-- The failed-authentication limit every replica shares (src/store/postgres/limiter.ts), in the
-- layout rate-limiter-flexible's RateLimiterPostgres reads and writes (key, points, expire in epoch
-- ms). Created here by the owning role, so that the request role never creates a table at run time
-- (the limiter runs with tableCreated: true); migratePostgres grants the request role its rows.
-- Not org data (its keys are client addresses), so not under the wall, and in a schema of its own:
-- every table in public stays walled.
CREATE SCHEMA tenantgate_limits;--> statement-breakpoint
CREATE TABLE tenantgate_limits.auth_failures (
  key varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);
