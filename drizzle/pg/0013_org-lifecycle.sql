-- Custom: org lifecycle (issue 15 item 4). orgs admits the request role to read its own row only
-- (0000); renaming, suspending, resuming and deleting an org are the operator's, through these
-- functions (SECURITY DEFINER, owned by the migrating role, EXECUTE granted to the request role
-- only by migratePostgres), under policies that admit the owner only inside them (0002).
--
-- Each acts only on the org the calling transaction is set to (app.org_id, as the wall reads it):
-- the store calls them inside that org's own transaction, so a path that names another org's id
-- changes nothing.
--
-- Deleting: the store first deletes the org's rows in every tenant table as the request role,
-- inside the org's own transaction (the wall admits exactly those), then calls
-- tenantgate_delete_org for the orgs row itself; tables that reference orgs ON DELETE CASCADE
-- lose anything left (referential actions are not subject to row-level security).
CREATE POLICY "orgs_definer_update" ON "orgs" AS PERMISSIVE FOR UPDATE TO CURRENT_USER
  USING ((select current_user <> session_user))
  WITH CHECK ((select current_user <> session_user));--> statement-breakpoint
CREATE POLICY "orgs_definer_delete" ON "orgs" AS PERMISSIVE FOR DELETE TO CURRENT_USER
  USING ((select current_user <> session_user));--> statement-breakpoint

CREATE FUNCTION public.tenantgate_rename_org(p_id text, p_name text) RETURNS SETOF public.orgs
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ UPDATE public.orgs SET name = p_name WHERE id = p_id AND id = current_setting('app.org_id', true) RETURNING * $$;--> statement-breakpoint

-- Suspending records when and why; resuming clears both. The operator's org is never suspended.
CREATE FUNCTION public.tenantgate_set_org_status(p_id text, p_status text, p_at text, p_reason text) RETURNS SETOF public.orgs
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    UPDATE public.orgs
       SET status = p_status,
           suspended_at = CASE WHEN p_status = 'suspended' THEN p_at END,
           suspend_reason = CASE WHEN p_status = 'suspended' THEN p_reason END
     WHERE id = p_id AND id = current_setting('app.org_id', true) AND p_status IN ('active', 'suspended')
       AND NOT (p_status = 'suspended' AND id = 'default')
    RETURNING *
  $$;--> statement-breakpoint

-- The org `default` (the operator's) is never deleted.
CREATE FUNCTION public.tenantgate_delete_org(p_id text) RETURNS boolean
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    WITH deleted AS (DELETE FROM public.orgs WHERE id = p_id AND id = current_setting('app.org_id', true) AND id <> 'default' RETURNING 1)
    SELECT count(*) = 1 FROM deleted
  $$;--> statement-breakpoint

REVOKE EXECUTE ON FUNCTION public.tenantgate_rename_org(text, text) FROM PUBLIC;--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION public.tenantgate_set_org_status(text, text, text, text) FROM PUBLIC;--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION public.tenantgate_delete_org(text) FROM PUBLIC;
