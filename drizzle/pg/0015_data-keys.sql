-- Custom: per-org data keys (issue 15 item 5). An org's own org_keys row is read, inserted and
-- re-wrapped as the request role inside that org's transaction, under the wall (0011, 0012). Two
-- paths cross orgs, and go through these functions only (SECURITY DEFINER, owned by the migrating
-- role, EXECUTE granted to the request role only, by migratePostgres): the start-up check of the
-- master keys in use, and master-key rotation's and the start-up move's listings. Like 0007's,
-- the listings name rows only (org ids, module ids), never a wrapped key or a sealed value: each
-- row is then read in a transaction with its own org set. The owner reads org_keys only inside
-- these functions (as 0002's policies admit it on the older tables).
CREATE POLICY "org_keys_definer_read" ON "org_keys" AS PERMISSIVE FOR SELECT TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint

-- The master keys that wrap some org's data key: each must be configured, or start-up refuses.
CREATE FUNCTION public.tenantgate_org_key_master_ids() RETURNS SETOF text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT DISTINCT k.master_key_id FROM public.org_keys AS k ORDER BY 1 $$;--> statement-breakpoint

-- Rotation: the orgs whose data key is not wrapped under the given master key.
CREATE FUNCTION public.tenantgate_org_keys_not_under_master(p_master_key_id text, p_limit integer)
  RETURNS TABLE (org_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT k.org_id FROM public.org_keys AS k WHERE k.master_key_id <> p_master_key_id ORDER BY k.org_id LIMIT p_limit $$;--> statement-breakpoint

-- The move to data keys: credentials still sealed directly under a master key (key id mk_...).
CREATE FUNCTION public.tenantgate_credentials_under_master(p_limit integer)
  RETURNS TABLE (org_id text, module_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT c.org_id, c.module_id FROM public.credentials AS c WHERE left(c.key_id, 3) = 'mk_' ORDER BY c.org_id, c.module_id LIMIT p_limit $$;--> statement-breakpoint

REVOKE ALL ON FUNCTION public.tenantgate_org_key_master_ids() FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_org_keys_not_under_master(text, integer) FROM PUBLIC;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_credentials_under_master(integer) FROM PUBLIC;
