-- Custom: modules.usage_count is bigint now (0005), so the platform report's function, whose
-- result names usage_count integer (0002), is made again with the new column type (a function's
-- result type cannot be changed in place). EXECUTE is revoked from PUBLIC again; migratePostgres
-- grants it to the request role, as for every definer function.
DROP FUNCTION public.tenantgate_unhealthy_modules(integer);--> statement-breakpoint
CREATE FUNCTION public.tenantgate_unhealthy_modules(p_limit integer)
  RETURNS TABLE (
    org_id text, module_id text, name text, version text, description text, config text, enabled boolean,
    health_status text, health_message text, last_health_check text, usage_count bigint, last_used_at text,
    installed_at text, updated_at text, has_credential boolean
  )
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT m.org_id, m.module_id, m.name, m.version, m.description, m.config, m.enabled,
           m.health_status, m.health_message, m.last_health_check, m.usage_count, m.last_used_at,
           m.installed_at, m.updated_at,
           EXISTS (SELECT 1 FROM public.credentials AS c WHERE c.org_id = m.org_id AND c.module_id = m.module_id)
      FROM public.modules AS m
     WHERE m.health_status IN ('degraded', 'unhealthy')
     ORDER BY m.org_id, m.module_id
     LIMIT p_limit
  $$;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_unhealthy_modules(integer) FROM PUBLIC;
