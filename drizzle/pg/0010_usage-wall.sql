-- Custom: the second wall and the cross-org path for the metering tables of 0009 (issue 14), as
-- 0001, 0002, 0003 and 0008 did for the older ones.
--
-- Ids and the columns pages are ordered by compare byte for byte (COLLATE "C"), as SQLite's
-- BINARY does (0008). A column a policy reads cannot change type, so the walls drizzle-kit made
-- in 0009 are dropped and made again, as they were, in this same transaction.
DROP POLICY "run_unit_events_org_wall" ON "run_unit_events";--> statement-breakpoint
DROP POLICY "usage_months_org_wall" ON "usage_months";--> statement-breakpoint
DROP POLICY "usage_hours_org_wall" ON "usage_hours";--> statement-breakpoint
DROP POLICY "org_quotas_org_wall" ON "org_quotas";--> statement-breakpoint
ALTER TABLE "run_unit_events" ALTER COLUMN "org_id" TYPE text COLLATE "C", ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "idempotency_key" TYPE text COLLATE "C", ALTER COLUMN "module_id" TYPE text COLLATE "C",
  ALTER COLUMN "occurred_at" TYPE text COLLATE "C", ALTER COLUMN "key_id" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "usage_months" ALTER COLUMN "org_id" TYPE text COLLATE "C", ALTER COLUMN "month_start" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "usage_hours" ALTER COLUMN "org_id" TYPE text COLLATE "C", ALTER COLUMN "hour_start" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "org_quotas" ALTER COLUMN "org_id" TYPE text COLLATE "C";--> statement-breakpoint
CREATE POLICY "run_unit_events_org_wall" ON "run_unit_events" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "usage_months_org_wall" ON "usage_months" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "usage_hours_org_wall" ON "usage_hours" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "org_quotas_org_wall" ON "org_quotas" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint

-- drizzle-kit enables row-level security but never forces it (0001): without FORCE the owner bypasses the policies.
ALTER TABLE "run_unit_events" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "usage_months" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "usage_hours" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "org_quotas" FORCE ROW LEVEL SECURITY;--> statement-breakpoint

-- The cross-org path (0002): the owner alone, and only while it acts for another session's role
-- (inside the definer functions below). Each policy grants only what those functions do: the
-- served-request counter adds to months and hours (INSERT ... ON CONFLICT DO UPDATE reads the row
-- it updates, hence the reads), the ranking reads months, the gates' cache reads quotas. Run-unit
-- events are never read or written across orgs.
CREATE POLICY "usage_months_definer_read" ON "usage_months" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "usage_months_definer_insert" ON "usage_months" AS PERMISSIVE FOR INSERT TO CURRENT_USER
  WITH CHECK ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "usage_months_definer_update" ON "usage_months" AS PERMISSIVE FOR UPDATE TO CURRENT_USER
  USING ((select current_user <> session_user))
  WITH CHECK ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "usage_hours_definer_read" ON "usage_hours" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "usage_hours_definer_insert" ON "usage_hours" AS PERMISSIVE FOR INSERT TO CURRENT_USER
  WITH CHECK ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "usage_hours_definer_update" ON "usage_hours" AS PERMISSIVE FOR UPDATE TO CURRENT_USER
  USING ((select current_user <> session_user))
  WITH CHECK ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "org_quotas_definer_read" ON "org_quotas" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint

-- Served-request counts of any orgs, batched by each process (best effort, like touch_keys):
-- each entry adds its count to the org's hour and the month holding it. Entries of orgs that do
-- not exist, counts that are not positive and hours not in the store's own form
-- (YYYY-MM-DDTHH:00:00.000Z) are dropped, so no bad entry fails a batch nor plants a row. Months
-- first, then hours, each in key order: the same order as a run-unit report takes its month and
-- hour rows, so two batches, or a batch and a report, cannot deadlock.
CREATE FUNCTION public.tenantgate_add_requests(p_org_ids text[], p_hour_starts text[], p_counts bigint[]) RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    INSERT INTO public.usage_months AS m (org_id, month_start, run_units, requests)
    SELECT u.org_id, left(u.hour_start, 7) || '-01T00:00:00.000Z', 0, sum(u.n)::bigint
      FROM unnest(p_org_ids, p_hour_starts, p_counts) AS u(org_id, hour_start, n)
     WHERE u.n > 0 AND u.hour_start ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00\.000Z$'
       AND EXISTS (SELECT 1 FROM public.orgs AS o WHERE o.id = u.org_id)
     GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (org_id, month_start) DO UPDATE SET requests = m.requests + excluded.requests;

    INSERT INTO public.usage_hours AS h (org_id, hour_start, run_units, requests)
    SELECT u.org_id, u.hour_start, 0, sum(u.n)::bigint
      FROM unnest(p_org_ids, p_hour_starts, p_counts) AS u(org_id, hour_start, n)
     WHERE u.n > 0 AND u.hour_start ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00\.000Z$'
       AND EXISTS (SELECT 1 FROM public.orgs AS o WHERE o.id = u.org_id)
     GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (org_id, hour_start) DO UPDATE SET requests = h.requests + excluded.requests;
  $$;--> statement-breakpoint

-- The admin's ranking: orgs by run units in one month, most first, ties by id; only the totals.
CREATE FUNCTION public.tenantgate_usage_top(p_month_start text, p_limit integer)
  RETURNS TABLE (org_id text, run_units bigint, requests bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT m.org_id, m.run_units, m.requests FROM public.usage_months AS m
     WHERE m.month_start = p_month_start AND m.run_units > 0
     ORDER BY m.run_units DESC, m.org_id
     LIMIT p_limit
  $$;--> statement-breakpoint

-- Every org's quota row, for the gates' cache on start (few rows, nothing but the quotas).
CREATE FUNCTION public.tenantgate_org_quotas()
  RETURNS TABLE (org_id text, run_units_per_month bigint, requests_per_minute integer, burst integer, updated_at text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT q.org_id, q.run_units_per_month, q.requests_per_minute, q.burst, q.updated_at FROM public.org_quotas AS q ORDER BY q.org_id
  $$;--> statement-breakpoint

REVOKE ALL ON FUNCTION public.tenantgate_add_requests(text[], text[], bigint[]) FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_usage_top(text, integer) FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_org_quotas() FROM PUBLIC;--> statement-breakpoint

-- The per-org request-rate limit every replica shares (src/store/postgres/limiter.ts), in the
-- layout of 0003's auth_failures (rate-limiter-flexible's RateLimiterPostgres); its keys are org
-- ids, its rows counters only. migratePostgres grants the request role its rows.
CREATE TABLE tenantgate_limits.org_requests (
  key varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);
