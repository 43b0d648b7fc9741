-- Custom: audit log retention (issue 15). The request role appends to its org's audit log and
-- reads it (SELECT and INSERT on audit_log; SELECT, INSERT and UPDATE on audit_heads, granted by
-- migratePostgres) but can never change or delete a record. Pruning (`tenantgate audit prune`)
-- goes through this function, inside the org's own transaction (app.org_id set: the wall admits
-- the owner to that org's rows only), and deletes records through seq p_through only when a later
-- AUDIT_CHECKPOINT record of the same org vouches for exactly that seq and its hash
-- (src/store/audit-chain.ts checkpointTarget), so what is left stays verifiable.
CREATE FUNCTION public.tenantgate_audit_prune(p_through bigint) RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    WITH vouched AS (
      SELECT 1 FROM public.audit_log AS c
        JOIN public.audit_log AS r ON r.org_id = c.org_id AND r.seq = p_through
       WHERE c.org_id = current_setting('app.org_id', true) AND c.action = 'AUDIT_CHECKPOINT' AND c.seq > p_through
         AND c.target_id = 'through:' || p_through::text || ':' || r.hash
    ), deleted AS (
      DELETE FROM public.audit_log
       WHERE org_id = current_setting('app.org_id', true) AND seq <= p_through AND EXISTS (SELECT 1 FROM vouched)
      RETURNING 1
    ) SELECT count(*) FROM deleted
  $$;--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION public.tenantgate_audit_prune(bigint) FROM PUBLIC;
