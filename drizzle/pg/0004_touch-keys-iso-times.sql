-- Custom: tenantgate_touch_keys (0002) took any text as a last-used time, so the request role
-- could plant '9999-…' (or any text sorting after every real time) on a key of any org and freeze
-- its last-used time for good. Only times in the store's own form (toISOString: UTC, milliseconds,
-- 'Z') are kept, and none later than the database's now() plus 5 minutes (replicas' clocks differ
-- a little); anything else is ignored. Times are compared as text, as the column holds them, so a
-- bad value is dropped, never cast (a failed cast would fail the whole batch).
-- CREATE OR REPLACE keeps the owner and the grants (EXECUTE for the request role only).
CREATE OR REPLACE FUNCTION public.tenantgate_touch_keys(p_ids text[], p_ats text[]) RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    WITH latest AS (
      SELECT u.id, max(u.at) AS at FROM unnest(p_ids, p_ats) AS u(id, at)
       WHERE u.at ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z$'
         AND u.at <= to_char((now() + interval '5 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
       GROUP BY u.id
    ), locked AS (
      SELECT k.id, latest.at FROM public.api_keys AS k JOIN latest ON latest.id = k.id
       WHERE k.last_used_at IS NULL OR k.last_used_at < latest.at
       ORDER BY k.id FOR NO KEY UPDATE OF k
    )
    UPDATE public.api_keys AS k SET last_used_at = locked.at FROM locked
     WHERE k.id = locked.id AND (k.last_used_at IS NULL OR k.last_used_at < locked.at)
  $$;
