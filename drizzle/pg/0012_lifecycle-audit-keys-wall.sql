-- Custom: the second wall for the tables of 0011 (issue 15), as 0001, 0008 and 0010 did for the
-- older ones. Ids and ordered text columns compare byte for byte (COLLATE "C"), as SQLite's
-- BINARY does; a column a policy reads cannot change type, so the walls drizzle-kit made in 0011
-- are dropped and made again, as they were, in this same transaction. The cross-org paths these
-- tables need (deleting an org, the operator org's record of it) come with their functions.
DROP POLICY "org_keys_org_wall" ON "org_keys";--> statement-breakpoint
DROP POLICY "audit_log_org_wall" ON "audit_log";--> statement-breakpoint
DROP POLICY "audit_heads_org_wall" ON "audit_heads";--> statement-breakpoint
ALTER TABLE "org_keys" ALTER COLUMN "org_id" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "audit_log" ALTER COLUMN "org_id" TYPE text COLLATE "C", ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "at" TYPE text COLLATE "C", ALTER COLUMN "action" TYPE text COLLATE "C",
  ALTER COLUMN "actor_key_id" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "audit_heads" ALTER COLUMN "org_id" TYPE text COLLATE "C";--> statement-breakpoint
CREATE POLICY "org_keys_org_wall" ON "org_keys" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "audit_log_org_wall" ON "audit_log" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "audit_heads_org_wall" ON "audit_heads" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint

-- drizzle-kit enables row-level security but never forces it (0001): without FORCE the owner bypasses the policies.
ALTER TABLE "org_keys" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "audit_log" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "audit_heads" FORCE ROW LEVEL SECURITY;
