-- Custom: master-key rotation's definer function (0002) handed the request role every org's sealed
-- credential rows (ciphertext, iv, tag). It now names only which rows are not under the given key,
-- (org_id, module_id); rekey reads each row and reseals it in a transaction with that row's org set,
-- under the wall (src/store/postgres/store.ts system.credentials). A function's result type cannot
-- be changed in place: dropped, made again, EXECUTE revoked from PUBLIC again (migratePostgres
-- grants it to the request role, as for every definer function).
DROP FUNCTION public.tenantgate_credentials_not_under_key(text, integer);--> statement-breakpoint
CREATE FUNCTION public.tenantgate_credentials_not_under_key(p_key_id text, p_limit integer)
  RETURNS TABLE (org_id text, module_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT c.org_id, c.module_id FROM public.credentials AS c WHERE c.key_id <> p_key_id ORDER BY c.org_id, c.module_id LIMIT p_limit $$;--> statement-breakpoint
REVOKE ALL ON FUNCTION public.tenantgate_credentials_not_under_key(text, integer) FROM PUBLIC;
