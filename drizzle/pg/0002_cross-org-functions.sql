-- Custom: the cross-org path (README "PostgreSQL"). Requests run as a role held by the org wall;
-- the few operations that must cross orgs (a key's org is learnt from its hash, last-used times
-- of keys of any org, the operator's org list and org creation, the bootstrap's key count, the
-- platform's unhealthy-module report and master-key rotation) go through these functions and no
-- other way. Each is SECURITY DEFINER, owned by the migrating role (the tables' owner), with
-- search_path pinned and every name qualified. EXECUTE is revoked from PUBLIC here and granted to
-- the request role only, by migratePostgres (src/store/postgres/migrate.ts).
--
-- The owner is held to the wall too (FORCE, 0001), so the policies below admit the owner, and no
-- other role, while it acts for another session's role: inside these functions (current_user is
-- the owner, session_user the request role). The owner's own sessions (migrations, psql) still
-- see nothing, and a role that could become the owner is refused as a request role
-- (checkRequestRole). Each policy grants only what its functions do.
CREATE POLICY "orgs_definer_read" ON "orgs" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "orgs_definer_insert" ON "orgs" AS PERMISSIVE FOR INSERT TO CURRENT_USER
  WITH CHECK ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "api_keys_definer_read" ON "api_keys" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "api_keys_definer_touch" ON "api_keys" AS PERMISSIVE FOR UPDATE TO CURRENT_USER
  USING ((select current_user <> session_user))
  WITH CHECK ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "modules_definer_read" ON "modules" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "credentials_definer_read" ON "credentials" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint

-- The one unscoped read of authentication: a key's hash is how its org is learnt.
CREATE FUNCTION public.tenantgate_key_by_hash(p_hash text) RETURNS SETOF public.api_keys
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT * FROM public.api_keys WHERE hash = p_hash $$;--> statement-breakpoint

-- Batched last-used times of keys of any org (the authenticator knows only key ids by then). A
-- time never moves backwards, so replicas flushing out of order lose nothing; rows are locked in
-- id order so two replicas' batches cannot deadlock each other.
CREATE FUNCTION public.tenantgate_touch_keys(p_ids text[], p_ats text[]) RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    WITH latest AS (
      SELECT u.id, max(u.at) AS at FROM unnest(p_ids, p_ats) AS u(id, at) GROUP BY u.id
    ), locked AS (
      SELECT k.id, latest.at FROM public.api_keys AS k JOIN latest ON latest.id = k.id
       WHERE k.last_used_at IS NULL OR k.last_used_at < latest.at
       ORDER BY k.id FOR NO KEY UPDATE OF k
    )
    UPDATE public.api_keys AS k SET last_used_at = locked.at FROM locked
     WHERE k.id = locked.id AND (k.last_used_at IS NULL OR k.last_used_at < locked.at)
  $$;--> statement-breakpoint

-- The operator's org list and org creation (admin repositories, CLI, start-up).
CREATE FUNCTION public.tenantgate_orgs() RETURNS SETOF public.orgs
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT * FROM public.orgs ORDER BY id $$;--> statement-breakpoint

CREATE FUNCTION public.tenantgate_insert_org(p_id text, p_name text, p_created_at text) RETURNS boolean
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    WITH inserted AS (
      INSERT INTO public.orgs (id, name, created_at) VALUES (p_id, p_name, p_created_at) ON CONFLICT (id) DO NOTHING RETURNING 1
    ) SELECT count(*) = 1 FROM inserted
  $$;--> statement-breakpoint

-- None means a fresh store, which gets a bootstrap admin key.
CREATE FUNCTION public.tenantgate_key_count() RETURNS integer
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT count(*)::integer FROM public.api_keys $$;--> statement-breakpoint

-- The platform's report: degraded and unhealthy modules of every org, by org then id, with the
-- computed has_credential of every module read.
CREATE FUNCTION public.tenantgate_unhealthy_modules(p_limit integer)
  RETURNS TABLE (
    org_id text, module_id text, name text, version text, description text, config text, enabled boolean,
    health_status text, health_message text, last_health_check text, usage_count integer, last_used_at text,
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

-- Master-key rotation (src/maintenance/rekey.ts): which keys seal credentials, and rows not yet
-- under the current one. Resealing a row is org-bound (the store sets its org).
CREATE FUNCTION public.tenantgate_credential_key_ids() RETURNS SETOF text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT DISTINCT key_id FROM public.credentials ORDER BY key_id $$;--> statement-breakpoint

CREATE FUNCTION public.tenantgate_credentials_not_under_key(p_key_id text, p_limit integer) RETURNS SETOF public.credentials
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT * FROM public.credentials WHERE key_id <> p_key_id ORDER BY org_id, module_id LIMIT p_limit $$;--> statement-breakpoint

REVOKE ALL ON FUNCTION public.tenantgate_key_by_hash(text) FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_touch_keys(text[], text[]) FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_orgs() FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_insert_org(text, text, text) FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_key_count() FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_unhealthy_modules(integer) FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_credential_key_ids() FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_credentials_not_under_key(text, integer) FROM PUBLIC;
